#include "db/db.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <glib.h>
#include <glib/gstdio.h>
#include <sqlite3.h>

#include "core/bqueue.h"
#include "core/part.h"
#include "fusion/cvwrap.h"

/* Rows written per transaction at most. One commit per burst instead of one
 * per row is what keeps the writer ahead of the line; 256 rows of about
 * 200 bytes keeps a transaction short enough that readers see rows promptly. */
#define DB_BATCH_MAX 256

/* How long a connection retries a lock held by another process (the sqlite3
 * CLI, a backup, vigil-sim reading) before giving up with SQLITE_BUSY. */
#define DB_BUSY_TIMEOUT_MS 5000

/* Schema migrations: migrations[i] takes a database from user_version i to
 * i + 1, inside the same transaction that sets user_version. Append a step
 * for each new version; never edit a step that has shipped, since databases
 * in the field have already run it. The steps carry no IF NOT EXISTS on
 * purpose: running one twice is a bug and should fail loudly. */
static const char *const migrations[] = {
	/* 1: the inspection log and operator-visible events. verdict and
	 * defect_class are stored as text for people reading the file with
	 * the sqlite3 CLI; verdict_code keeps the number the PLC saw. */
	"CREATE TABLE inspections ("
	"  id INTEGER PRIMARY KEY,"
	"  part_id INTEGER NOT NULL,"
	"  trigger_counter INTEGER NOT NULL,"
	"  seq INTEGER NOT NULL,"
	"  t_wall_us INTEGER NOT NULL,"
	"  verdict TEXT NOT NULL CHECK (verdict IN ('accept', 'reject', 'marginal')),"
	"  verdict_code INTEGER NOT NULL,"
	"  defect_class TEXT NOT NULL,"
	"  flags INTEGER NOT NULL,"
	"  score REAL,"
	"  vision_score REAL,"
	"  signal_score REAL,"
	"  latency_ms REAL,"
	"  infer_ms REAL,"
	"  model_version TEXT,"
	"  image_path TEXT"
	");"
	"CREATE INDEX inspections_part_id ON inspections (part_id);"
	"CREATE INDEX inspections_t_wall_us ON inspections (t_wall_us);"
	"CREATE TABLE events ("
	"  id INTEGER PRIMARY KEY,"
	"  t_wall_us INTEGER NOT NULL,"
	"  kind TEXT NOT NULL,"
	"  message TEXT NOT NULL"
	");",
	/* 2: vibration condition figures per inspected part (fusion/condition.h). */
	"CREATE TABLE vibration ("
	"  inspection_id INTEGER PRIMARY KEY REFERENCES inspections (id),"
	"  rms_velocity_mm_s REAL,"
	"  iso_zone TEXT,"
	"  rms_accel_g REAL,"
	"  hf_accel_g REAL,"
	"  peak_g REAL,"
	"  crest_factor REAL,"
	"  kurtosis REAL,"
	"  ftf_env REAL,"
	"  bpfo_env REAL,"
	"  bpfi_env REAL,"
	"  bsf_env REAL"
	");",
	/* 3: QA reviews: a confirmation or an overruling of a verdict, with a
	 * note; the latest review of an inspection is the one that counts. */
	"CREATE TABLE reviews ("
	"  id INTEGER PRIMARY KEY,"
	"  inspection_id INTEGER NOT NULL REFERENCES inspections (id),"
	"  t_wall_us INTEGER NOT NULL,"
	"  decision TEXT NOT NULL CHECK (decision IN ('confirm', 'overrule')),"
	"  verdict TEXT NOT NULL CHECK (verdict IN ('accept', 'reject', 'marginal')),"
	"  note TEXT,"
	"  reviewer TEXT"
	");"
	"CREATE INDEX reviews_inspection ON reviews (inspection_id);",
	/* 4: files kept with an inspection (images, defect maps, vibration
	 * windows), by path relative to the media directory; and settings
	 * readers need, such as where that directory is. */
	"CREATE TABLE media ("
	"  id INTEGER PRIMARY KEY,"
	"  inspection_id INTEGER NOT NULL REFERENCES inspections (id),"
	"  camera TEXT,"
	"  kind TEXT NOT NULL CHECK (kind IN ('image', 'heatmap', 'vibration')),"
	"  path TEXT NOT NULL,"
	"  bytes INTEGER"
	");"
	"CREATE INDEX media_inspection ON media (inspection_id);"
	"CREATE TABLE meta ("
	"  key TEXT PRIMARY KEY,"
	"  value TEXT"
	");",
};

#define DB_SCHEMA_VERSION ((int)G_N_ELEMENTS(migrations))

static const char sql_insert_inspection[] =
	"INSERT INTO inspections (part_id, trigger_counter, seq, t_wall_us,"
	" verdict, verdict_code, defect_class, flags, score, vision_score,"
	" signal_score, latency_ms, infer_ms, model_version, image_path)"
	" VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)";

static const char sql_insert_vibration[] =
	"INSERT INTO vibration (inspection_id, rms_velocity_mm_s, iso_zone, rms_accel_g,"
	" hf_accel_g, peak_g, crest_factor, kurtosis, ftf_env, bpfo_env, bpfi_env, bsf_env)"
	" VALUES (last_insert_rowid(), ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)";

static const char sql_insert_event[] =
	"INSERT INTO events (t_wall_us, kind, message) VALUES (?1, ?2, ?3)";

/* The latest review of each inspection rides along with its row. */
static const char sql_select_inspections[] =
	"SELECT i.part_id, i.trigger_counter, i.seq, i.t_wall_us, i.verdict_code,"
	" i.defect_class, i.flags, i.score, i.vision_score, i.signal_score, i.latency_ms,"
	" i.infer_ms, i.model_version, i.image_path, i.id, r.decision, r.verdict, r.note"
	" FROM inspections i LEFT JOIN reviews r ON r.id ="
	" (SELECT max(id) FROM reviews WHERE inspection_id = i.id)";

static const char sql_insert_media[] =
	"INSERT INTO media (inspection_id, camera, kind, path, bytes) VALUES (?1, ?2, ?3, ?4, ?5)";

/* The first camera's image is also the row's image_path. */
static const char sql_set_image_path[] =
	"UPDATE inspections SET image_path = ?1 WHERE id = ?2 AND image_path IS NULL";

static const char sql_set_latency[] = "UPDATE inspections SET latency_ms = ?1 WHERE id = ?2";

enum db_item_kind {
	DB_ITEM_INSPECTION,
	DB_ITEM_EVENT,
	DB_ITEM_MEDIA,      /* files written: their media rows */
	DB_ITEM_LATENCY,    /* latency_ms of an earlier row, by ticket */
	DB_ITEM_RETAIN,     /* run retention now (db_retain_now) */
	DB_ITEM_SYNC,       /* wake whoever waits for everything before it */
};

/* A file the media thread wrote, relative to the media directory. */
struct media_file {
	char *camera;       /* NULL but for images */
	const char *kind;   /* static: "image", "heatmap", "vibration" */
	char *path;
	int64_t bytes;
};

/* One queued row. Owns its strings (g_strdup, freed by item_free): the
 * submitter's buffers may be gone by the time the writer gets to it. */
struct db_item {
	enum db_item_kind kind;
	union {
		struct db_inspection row;   /* strings point at the copies below */
		struct {
			int64_t t_wall_us;
		} event;
		struct {
			int64_t inspection_id;
			int nfiles;
			struct media_file files[DB_MEDIA_MAX_IMAGES + 2];
		} media;
		struct {
			uint64_t ticket;
			double ms;
		} latency;
	};
	char *str1, *str2;  /* model_version, image_path; or kind, message */
	struct db_media_set *media_set;  /* an inspection's files, to be written */
	uint64_t ticket;                 /* inspections: the place in write order */
	int64_t t_queued_us;
	/* Set by the writer while the item's transaction is open. */
	int64_t rowid;
	bool in_transaction;
};

/* The files of one committed inspection, for the media thread. */
struct media_job {
	int64_t inspection_id;
	int64_t t_wall_us;
	uint32_t part_id;
	struct db_media_set *set;
};

/* Tickets of recent rows and their row ids, so that a latency that comes
 * after the row finds it. A ticket older than the ring is forgotten: its
 * row keeps latency NULL. */
#define DB_TICKET_RING 16384

struct db_log {
	char *path;
	char *media_dir;                /* absolute */
	struct db_options opt;
	/* Used by db_open, then only by the writer thread until db_close has
	 * joined it. */
	sqlite3 *conn;
	sqlite3_stmt *insert_inspection;
	sqlite3_stmt *insert_vibration;
	sqlite3_stmt *insert_event;
	sqlite3_stmt *insert_media;
	sqlite3_stmt *set_image_path;
	sqlite3_stmt *set_latency;
	bqueue *queue;                  /* struct db_item *, owned by the queue's reader */
	GThread *writer;
	struct db_item *batch[DB_BATCH_MAX];
	struct {
		uint64_t ticket;
		int64_t rowid;
	} tickets[DB_TICKET_RING];
	int64_t next_retention_us;
	uint64_t media_drops_logged;
	int64_t next_drop_event_us;
	char *recovered;                /* where a corrupt file was moved, for the event */

	bqueue *media_queue;            /* struct media_job * */
	GThread *media_writer;

	GMutex submit_lock;             /* ticket order is queue order */
	uint64_t next_ticket;           /* under submit_lock */
	uint64_t accepted_seen;         /* under submit_lock */

	GMutex sync_lock;
	GCond sync_cond;
	uint64_t syncs;                 /* RETAIN and SYNC items done, under sync_lock */

	_Atomic uint64_t rows_written;
	_Atomic uint64_t rows_failed;
	_Atomic uint64_t settled;
	_Atomic int ok;
	_Atomic uint64_t media_dropped, media_written;
	_Atomic int64_t lag_us, lag_max_us;

	GMutex error_lock;
	char *last_error;               /* malloc, under error_lock */
};

/* Strings that leave this module go through malloc so that callers free()
 * them, as db.h promises; internal copies use GLib. */
static void set_error(char **err, const char *fmt, ...) G_GNUC_PRINTF(2, 3);

static void set_error(char **err, const char *fmt, ...)
{
	va_list ap;

	if (!err)
		return;
	va_start(ap, fmt);
	if (vasprintf(err, fmt, ap) < 0)
		*err = NULL;
	va_end(ap);
}

/* SQLite's message for the last failure on conn; conn is NULL when
 * sqlite3_open_v2 could not even allocate a handle. */
static const char *sqlite_message(sqlite3 *conn, int rc)
{
	return conn ? sqlite3_errmsg(conn) : sqlite3_errstr(rc);
}

static bool verdict_valid(int v)
{
	return v >= VIGIL_VERDICT_ACCEPT && v <= VIGIL_VERDICT_MARGINAL;
}

/* Keep in step with enum vigil_defect_class (core/part.h). */
static bool class_valid(int c)
{
	return c >= VIGIL_CLASS_NONE && c <= VIGIL_CLASS_BOTH;
}

/* The log stores the class by name; the read side maps it back. */
static int class_from_name(const char *name)
{
	if (!name)
		return -1;
	for (int c = VIGIL_CLASS_NONE; c <= VIGIL_CLASS_BOTH; c++)
		if (strcmp(name, vigil_class_name((enum vigil_defect_class)c)) == 0)
			return c;
	return -1;
}

/* Runs a statement that yields one integer (a PRAGMA). */
static int query_int(sqlite3 *conn, const char *sql, int64_t *value)
{
	sqlite3_stmt *st = NULL;
	int rc;

	rc = sqlite3_prepare_v2(conn, sql, -1, &st, NULL);
	if (rc != SQLITE_OK)
		goto out;
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		*value = sqlite3_column_int64(st, 0);
		rc = SQLITE_OK;
	} else if (rc == SQLITE_DONE) {
		rc = SQLITE_ERROR;
	}
out:
	sqlite3_finalize(st);
	return rc;
}

/* Switches conn to WAL. PRAGMA journal_mode answers with the mode in force,
 * which stays "delete" (or "memory") where WAL is impossible rather than
 * failing, so the answer has to be checked. */
static int enable_wal(db_log *db, char **err)
{
	sqlite3_stmt *st = NULL;
	const char *mode;
	int rc, ret = DB_ESQLITE;

	rc = sqlite3_prepare_v2(db->conn, "PRAGMA journal_mode=WAL", -1, &st, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_step(st);
	if (rc != SQLITE_ROW) {
		set_error(err, "cannot open %s: %s", db->path, sqlite3_errmsg(db->conn));
		goto out;
	}
	mode = (const char *)sqlite3_column_text(st, 0);
	if (!mode || g_ascii_strcasecmp(mode, "wal") != 0) {
		set_error(err, "cannot open %s: cannot switch to WAL (journal mode stays %s)",
			  db->path, mode ? mode : "unknown");
		goto out;
	}
	ret = 0;
out:
	sqlite3_finalize(st);
	return ret;
}

static void refuse_newer(db_log *db, int64_t version, char **err)
{
	set_error(err, "cannot open %s: its schema version (user_version %" PRId64
		  ") is newer than the version %d this build knows; refusing to write to it",
		  db->path, version, DB_SCHEMA_VERSION);
}

/* Brings the schema to DB_SCHEMA_VERSION and sets the connection up for the
 * writer. A database from a newer build is refused before anything in it is
 * changed, the journal mode included. */
static int prepare_schema(db_log *db, char **err)
{
	int64_t version = 0;
	bool in_transaction = false;
	char *sql = NULL;
	int rc, ret = DB_ESQLITE;

	/* Also the first read of the file: a file that is not a database
	 * fails here with "file is not a database". */
	rc = query_int(db->conn, "PRAGMA user_version", &version);
	if (rc != SQLITE_OK) {
		set_error(err, "cannot open %s: %s", db->path, sqlite3_errmsg(db->conn));
		goto out;
	}
	if (version > DB_SCHEMA_VERSION) {
		refuse_newer(db, version, err);
		goto out;
	}

	if (enable_wal(db, err) < 0)
		goto out;

	/* In WAL mode, synchronous=NORMAL syncs the WAL only at checkpoints,
	 * not at each commit. A committed transaction survives a crash of
	 * vigild (it is in the WAL, in the OS page cache); an OS crash or
	 * power loss may lose the last transactions, but never corrupts the
	 * file. Losing the last rows of a log is acceptable; an fsync per
	 * batch on a slow SD card or eMMC is not. */
	if (sqlite3_exec(db->conn, "PRAGMA synchronous=NORMAL", NULL, NULL, NULL) != SQLITE_OK) {
		set_error(err, "cannot open %s: %s", db->path, sqlite3_errmsg(db->conn));
		goto out;
	}

	if (version == DB_SCHEMA_VERSION) {
		ret = 0;
		goto out;
	}

	/* IMMEDIATE takes the write lock now, so the version read next cannot
	 * be changed by another process migrating the same file at once. */
	if (sqlite3_exec(db->conn, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK) {
		set_error(err, "cannot open %s: %s", db->path, sqlite3_errmsg(db->conn));
		goto out;
	}
	in_transaction = true;
	rc = query_int(db->conn, "PRAGMA user_version", &version);
	if (rc != SQLITE_OK) {
		set_error(err, "cannot open %s: %s", db->path, sqlite3_errmsg(db->conn));
		goto out;
	}
	if (version > DB_SCHEMA_VERSION) {
		refuse_newer(db, version, err);
		goto out;
	}
	for (int64_t v = version; v < DB_SCHEMA_VERSION; v++) {
		if (sqlite3_exec(db->conn, migrations[v], NULL, NULL, NULL) != SQLITE_OK) {
			set_error(err, "cannot migrate %s to schema version %" PRId64 ": %s",
				  db->path, v + 1, sqlite3_errmsg(db->conn));
			goto out;
		}
	}
	/* PRAGMA takes no bound parameters; the value is our own constant. */
	sql = sqlite3_mprintf("PRAGMA user_version = %d", DB_SCHEMA_VERSION);
	if (!sql || sqlite3_exec(db->conn, sql, NULL, NULL, NULL) != SQLITE_OK ||
	    sqlite3_exec(db->conn, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
		set_error(err, "cannot migrate %s to schema version %d: %s", db->path,
			  DB_SCHEMA_VERSION, sql ? sqlite3_errmsg(db->conn) : "out of memory");
		goto out;
	}
	in_transaction = false;
	ret = 0;
out:
	if (in_transaction && !sqlite3_get_autocommit(db->conn))
		sqlite3_exec(db->conn, "ROLLBACK", NULL, NULL, NULL);
	sqlite3_free(sql);
	return ret;
}

/* ---- file formats of the media directory ---- */

/* Files appear whole or not at all: each is written under a temporary name
 * (same extension, so OpenCV picks the format) and renamed. */
static char *temp_name(const char *path)
{
	const char *ext = strrchr(path, '.');

	return g_strdup_printf("%.*s.tmp%s", (int)(ext ? ext - path : (ptrdiff_t)strlen(path)),
			       path, ext ? ext : "");
}

static int finish_file(char *tmp, const char *path, int rc)
{
	if (rc == 0 && rename(tmp, path) < 0)
		rc = -errno;
	if (rc < 0)
		g_remove(tmp);
	g_free(tmp);
	return rc;
}

static int media_write_png(const char *path, const uint8_t *gray, int w, int h)
{
	char *tmp = temp_name(path);

	return finish_file(tmp, path, cvw_imwrite_gray(tmp, gray, w, h, w));
}

/* The defect map as 8-bit gray, 0..1 -> 0..255 (NaN as 0). */
static int media_write_heatmap(const char *path, const float *map, int w, int h)
{
	uint8_t *px = g_malloc((gsize)w * (gsize)h);
	int rc;

	for (size_t i = 0; i < (size_t)w * (size_t)h; i++) {
		float v = isfinite(map[i]) ? CLAMP(map[i], 0.0f, 1.0f) : 0.0f;

		px[i] = (uint8_t)lrintf(v * 255.0f);
	}
	rc = media_write_png(path, px, w, h);
	g_free(px);
	return rc;
}

static void put_le(uint8_t *p, uint32_t v, int n)
{
	for (int i = 0; i < n; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

/* A mono IEEE float WAV (RIFF, WAVE_FORMAT_IEEE_FLOAT = 3, 32 bits) at the
 * sensor rate, which audio tools and Python's soundfile/scipy read as is.
 * Samples are stored little-endian as the format requires. */
static int media_write_wav(const char *path, const float *samples, size_t n, double rate_hz)
{
	uint8_t hdr[44];
	uint32_t data_bytes = (uint32_t)(n * 4), rate = (uint32_t)lrint(rate_hz);
	char *tmp = temp_name(path);
	FILE *f;
	int rc = 0;

	if (n > UINT32_MAX / 8 || rate == 0)
		return finish_file(tmp, path, -EINVAL);
	memcpy(hdr, "RIFF", 4);
	put_le(hdr + 4, 36 + data_bytes, 4);
	memcpy(hdr + 8, "WAVEfmt ", 8);
	put_le(hdr + 16, 16, 4);          /* fmt chunk size */
	put_le(hdr + 20, 3, 2);           /* IEEE float */
	put_le(hdr + 22, 1, 2);           /* mono */
	put_le(hdr + 24, rate, 4);
	put_le(hdr + 28, rate * 4, 4);    /* bytes per second */
	put_le(hdr + 32, 4, 2);           /* block align */
	put_le(hdr + 34, 32, 2);          /* bits per sample */
	memcpy(hdr + 36, "data", 4);
	put_le(hdr + 40, data_bytes, 4);
	if (!(f = fopen(tmp, "wb")))
		return finish_file(tmp, path, -errno);
	if (fwrite(hdr, sizeof hdr, 1, f) != 1)
		rc = -EIO;
	for (size_t i = 0; i < n && rc == 0; i++) {
		uint8_t b[4];
		uint32_t bits;

		memcpy(&bits, &samples[i], 4);
		put_le(b, bits, 4);
		if (fwrite(b, 4, 1, f) != 1)
			rc = -EIO;
	}
	if (fclose(f) != 0 && rc == 0)
		rc = -errno;
	return finish_file(tmp, path, rc);
}

void db_media_set_free(struct db_media_set *m)
{
	if (!m)
		return;
	for (int i = 0; i < m->nimages && i < DB_MEDIA_MAX_IMAGES; i++) {
		g_free(m->images[i].camera);
		g_free(m->images[i].gray);
	}
	g_free(m->heatmap);
	g_free(m->vibration);
	g_free(m);
}

static void item_free(struct db_item *it)
{
	if (!it)
		return;
	g_free(it->str1);
	g_free(it->str2);
	if (it->kind == DB_ITEM_MEDIA)
		for (int i = 0; i < it->media.nfiles; i++) {
			g_free(it->media.files[i].camera);
			g_free(it->media.files[i].path);
		}
	db_media_set_free(it->media_set);
	g_free(it);
}

static int bind_text_or_null(sqlite3_stmt *st, int i, const char *s)
{
	/* SQLITE_STATIC: the item outlives the step and reset that use it. */
	return s ? sqlite3_bind_text(st, i, s, -1, SQLITE_STATIC) : sqlite3_bind_null(st, i);
}

static int64_t ticket_rowid(db_log *db, uint64_t ticket)
{
	size_t slot = ticket % DB_TICKET_RING;

	return db->tickets[slot].ticket == ticket ? db->tickets[slot].rowid : 0;
}

/* A failed bind leaves the previous row's value in place, so every bind is
 * checked rather than letting the step write stale data. Returns the
 * SQLite code; SQLITE_DONE on success. The statement is reset by the
 * caller after it has read the error message. */
static int insert_item(db_log *db, struct db_item *it, sqlite3_stmt **used)
{
	sqlite3_stmt *st;
	int rc;

	switch (it->kind) {
	case DB_ITEM_EVENT:
		st = db->insert_event;
		*used = st;
		if ((rc = sqlite3_bind_int64(st, 1, it->event.t_wall_us)) != SQLITE_OK ||
		    (rc = bind_text_or_null(st, 2, it->str1)) != SQLITE_OK ||
		    (rc = bind_text_or_null(st, 3, it->str2)) != SQLITE_OK)
			return rc;
		return sqlite3_step(st);
	case DB_ITEM_MEDIA:
		for (int i = 0; i < it->media.nfiles; i++) {
			const struct media_file *f = &it->media.files[i];

			st = db->insert_media;
			*used = st;
			if ((rc = sqlite3_bind_int64(st, 1, it->media.inspection_id)) != SQLITE_OK ||
			    (rc = bind_text_or_null(st, 2, f->camera)) != SQLITE_OK ||
			    (rc = bind_text_or_null(st, 3, f->kind)) != SQLITE_OK ||
			    (rc = bind_text_or_null(st, 4, f->path)) != SQLITE_OK ||
			    (rc = sqlite3_bind_int64(st, 5, f->bytes)) != SQLITE_OK)
				return rc;
			if ((rc = sqlite3_step(st)) != SQLITE_DONE)
				return rc;
			sqlite3_reset(st);
			if (strcmp(f->kind, "image") != 0)
				continue;
			st = db->set_image_path;
			*used = st;
			if ((rc = bind_text_or_null(st, 1, f->path)) != SQLITE_OK ||
			    (rc = sqlite3_bind_int64(st, 2, it->media.inspection_id)) != SQLITE_OK)
				return rc;
			if ((rc = sqlite3_step(st)) != SQLITE_DONE)
				return rc;
			sqlite3_reset(st);
		}
		*used = NULL;
		return SQLITE_DONE;
	case DB_ITEM_LATENCY: {
		int64_t rowid = ticket_rowid(db, it->latency.ticket);

		*used = NULL;
		if (!rowid)
			return SQLITE_DONE;   /* its row failed, or is long gone */
		st = db->set_latency;
		*used = st;
		if ((rc = sqlite3_bind_double(st, 1, it->latency.ms)) != SQLITE_OK ||
		    (rc = sqlite3_bind_int64(st, 2, rowid)) != SQLITE_OK)
			return rc;
		return sqlite3_step(st);
	}
	case DB_ITEM_RETAIN:
	case DB_ITEM_SYNC:
		*used = NULL;
		return SQLITE_DONE;
	case DB_ITEM_INSPECTION:
		break;
	}

	const struct db_inspection *r = &it->row;

	st = db->insert_inspection;
	*used = st;
	/* A NaN double is bound as NULL by SQLite; the read side turns it
	 * back into NaN. seq is stored as its int64 bit pattern. */
	if ((rc = sqlite3_bind_int64(st, 1, r->part_id)) != SQLITE_OK ||
	    (rc = sqlite3_bind_int64(st, 2, r->trigger_counter)) != SQLITE_OK ||
	    (rc = sqlite3_bind_int64(st, 3, (sqlite3_int64)r->seq)) != SQLITE_OK ||
	    (rc = sqlite3_bind_int64(st, 4, r->t_wall_us)) != SQLITE_OK ||
	    (rc = bind_text_or_null(st, 5, vigil_verdict_name((enum vigil_verdict)r->verdict))) != SQLITE_OK ||
	    (rc = sqlite3_bind_int(st, 6, r->verdict)) != SQLITE_OK ||
	    (rc = bind_text_or_null(st, 7, vigil_class_name((enum vigil_defect_class)r->defect_class))) != SQLITE_OK ||
	    (rc = sqlite3_bind_int64(st, 8, r->flags)) != SQLITE_OK ||
	    (rc = sqlite3_bind_double(st, 9, r->score)) != SQLITE_OK ||
	    (rc = sqlite3_bind_double(st, 10, r->vision_score)) != SQLITE_OK ||
	    (rc = sqlite3_bind_double(st, 11, r->signal_score)) != SQLITE_OK ||
	    (rc = sqlite3_bind_double(st, 12, r->latency_ms)) != SQLITE_OK ||
	    (rc = sqlite3_bind_double(st, 13, r->infer_ms)) != SQLITE_OK ||
	    (rc = bind_text_or_null(st, 14, r->model_version)) != SQLITE_OK ||
	    (rc = bind_text_or_null(st, 15, r->image_path)) != SQLITE_OK)
		return rc;
	rc = sqlite3_step(st);
	if (rc != SQLITE_DONE)
		return rc;
	it->rowid = sqlite3_last_insert_rowid(db->conn);
	if (!r->has_vibration)
		return rc;
	sqlite3_reset(st);

	const struct vigil_vibration *v = &r->vibration;
	char zone[2] = { v->iso_zone, '\0' };

	st = db->insert_vibration;
	*used = st;
	if ((rc = sqlite3_bind_double(st, 1, v->rms_velocity_mm_s)) != SQLITE_OK ||
	    (rc = bind_text_or_null(st, 2, v->iso_zone ? zone : NULL)) != SQLITE_OK ||
	    (rc = sqlite3_bind_double(st, 3, v->rms_accel_g)) != SQLITE_OK ||
	    (rc = sqlite3_bind_double(st, 4, v->hf_accel_g)) != SQLITE_OK ||
	    (rc = sqlite3_bind_double(st, 5, v->peak_g)) != SQLITE_OK ||
	    (rc = sqlite3_bind_double(st, 6, v->crest_factor)) != SQLITE_OK ||
	    (rc = sqlite3_bind_double(st, 7, v->kurtosis)) != SQLITE_OK ||
	    (rc = sqlite3_bind_double(st, 8, v->ftf_env)) != SQLITE_OK ||
	    (rc = sqlite3_bind_double(st, 9, v->bpfo_env)) != SQLITE_OK ||
	    (rc = sqlite3_bind_double(st, 10, v->bpfi_env)) != SQLITE_OK ||
	    (rc = sqlite3_bind_double(st, 11, v->bsf_env)) != SQLITE_OK)
		return rc;
	rc = sqlite3_step(st);
	if (rc != SQLITE_DONE)
		it->rowid = 0;
	return rc;
}

/* What went wrong in one batch, reported once per batch so that a full disk
 * gives one warning per commit rather than one per row. */
struct batch_report {
	uint64_t written;
	uint64_t failed;
	char *error;       /* first failure, malloc */
	bool fault;        /* the database itself failed, not one row */
};

/* Errors of the file or the disk, as opposed to one row refused by a
 * constraint or trigger: these make the database fault. */
static bool is_fault(int rc)
{
	switch (rc & 0xff) {
	case SQLITE_FULL:
	case SQLITE_IOERR:
	case SQLITE_CORRUPT:
	case SQLITE_NOTADB:
	case SQLITE_READONLY:
	case SQLITE_CANTOPEN:
	case SQLITE_NOMEM:
	case SQLITE_BUSY:
	case SQLITE_LOCKED:
	case SQLITE_PROTOCOL:
		return true;
	}
	return false;
}

/* Counts the rows (inspections and events) among items. */
static uint64_t rows_in(struct db_item *it)
{
	return it->kind == DB_ITEM_INSPECTION || it->kind == DB_ITEM_EVENT ? 1 : 0;
}

static void note_failure(db_log *db, struct batch_report *rep, uint64_t rows,
			 const char *during)
{
	rep->failed += rows;
	if (is_fault(sqlite3_extended_errcode(db->conn)))
		rep->fault = true;
	if (!rep->error && asprintf(&rep->error, "%s: %s (%s)", during,
				    sqlite3_errmsg(db->conn),
				    sqlite3_errstr(sqlite3_extended_errcode(db->conn))) < 0)
		rep->error = NULL;
}

/* Items inserted in a transaction that is now gone are lost with it. */
static void lose_transaction(db_log *db, struct batch_report *rep, struct db_item **batch,
			     size_t upto, const char *during)
{
	uint64_t lost = 0;

	for (size_t i = 0; i < upto; i++)
		if (batch[i]->in_transaction) {
			lost += rows_in(batch[i]);
			batch[i]->in_transaction = false;
			batch[i]->rowid = 0;
		}
	note_failure(db, rep, lost, during);
}

static void write_event_now(db_log *db, const char *kind, const char *message)
{
	struct db_item it = { .kind = DB_ITEM_EVENT, .event.t_wall_us = vigil_wall_us() };
	sqlite3_stmt *st = NULL;

	it.str1 = (char *)kind;
	it.str2 = (char *)message;
	if (insert_item(db, &it, &st) == SQLITE_DONE)
		atomic_fetch_add(&db->rows_written, 1);
	else
		g_warning("database %s: cannot log event %s: %s", db->path, kind,
			  sqlite3_errmsg(db->conn));
	if (st)
		sqlite3_reset(st);
}

static void hand_media(db_log *db, struct db_item *it);

/* Writes batch[0..n) in one transaction. A row that fails on its own
 * (a constraint, a trigger) is counted and skipped, and the rest commit.
 * Some errors (disk full, I/O) make SQLite roll the whole transaction
 * back: then the rows already inserted are lost too, are counted as
 * failed, and the rest of the batch goes on in a new transaction. */
static void write_batch(db_log *db, struct db_item **batch, size_t n)
{
	struct batch_report rep = { 0 };
	bool in_transaction = false;
	int64_t now = vigil_now_us(), lag = 0;
	uint64_t settled = 0;

	for (size_t i = 0; i < n; i++) {
		sqlite3_stmt *st = NULL;
		int rc;

		if (!in_transaction) {
			if (sqlite3_exec(db->conn, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK) {
				uint64_t rows = 0;

				for (size_t k = i; k < n; k++)
					rows += rows_in(batch[k]);
				note_failure(db, &rep, rows, "begin");
				break;
			}
			in_transaction = true;
		}
		rc = insert_item(db, batch[i], &st);
		if (rc == SQLITE_DONE) {
			batch[i]->in_transaction = true;
		} else {
			batch[i]->rowid = 0;
			note_failure(db, &rep, rows_in(batch[i]), "insert");
			if (sqlite3_get_autocommit(db->conn)) {
				lose_transaction(db, &rep, batch, i, "insert");
				in_transaction = false;
			}
		}
		if (st)
			sqlite3_reset(st);
	}
	if (in_transaction && sqlite3_exec(db->conn, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
		lose_transaction(db, &rep, batch, n, "commit");
		if (!sqlite3_get_autocommit(db->conn))
			sqlite3_exec(db->conn, "ROLLBACK", NULL, NULL, NULL);
	}

	for (size_t i = 0; i < n; i++) {
		struct db_item *it = batch[i];

		if (it->ticket)
			settled = it->ticket;
		if (it->in_transaction) {
			rep.written += rows_in(it);
			if (it->ticket && it->rowid) {
				size_t slot = it->ticket % DB_TICKET_RING;

				db->tickets[slot].ticket = it->ticket;
				db->tickets[slot].rowid = it->rowid;
			}
			if (it->media_set && it->rowid)
				hand_media(db, it);
		}
		if (it->kind != DB_ITEM_RETAIN && it->kind != DB_ITEM_SYNC)
			lag = MAX(lag, now - it->t_queued_us);
		it->in_transaction = false;
	}

	/* The error is in place before the counters move, so that whoever
	 * sees rows_failed grow finds db_last_error already set. */
	if (rep.error) {
		g_warning("database %s: %" PRIu64 " of %zu rows not written: %s", db->path,
			  rep.failed, n, rep.error);
		g_mutex_lock(&db->error_lock);
		free(db->last_error);
		db->last_error = rep.error;
		g_mutex_unlock(&db->error_lock);
	} else if (rep.failed > 0) {
		g_warning("database %s: %" PRIu64 " of %zu rows not written: out of memory",
			  db->path, rep.failed, n);
	}
	if (rep.fault)
		atomic_store(&db->ok, 0);
	atomic_fetch_add(&db->rows_failed, rep.failed);
	if (!rep.fault && rep.written > 0 && !atomic_load(&db->ok)) {
		g_message("database %s: writing works again", db->path);
		write_event_now(db, "db-ok", "the database accepts writes again");
		atomic_store(&db->ok, 1);
	}
	atomic_fetch_add(&db->rows_written, rep.written);
	atomic_store(&db->lag_us, lag);
	if (lag > atomic_load(&db->lag_max_us))
		atomic_store(&db->lag_max_us, lag);
	/* Last: a submitter that sees its ticket settled finds the counters
	 * and db_ok already telling how it went. */
	if (settled)
		atomic_store(&db->settled, settled);
}

/* ---- media files: their own thread, so that encoding and writing images
 * never holds up the rows ---- */

/* Hands a committed inspection's files to the media thread, or drops them
 * when it is behind: the line never waits for a disk. */
static void hand_media(db_log *db, struct db_item *it)
{
	struct media_job *job = g_new0(struct media_job, 1);

	job->inspection_id = it->rowid;
	job->t_wall_us = it->row.t_wall_us;
	job->part_id = it->row.part_id;
	job->set = it->media_set;
	if (bqueue_push(db->media_queue, job, 0) == 0) {
		it->media_set = NULL;
	} else {
		atomic_fetch_add(&db->media_dropped, 1);
		g_free(job);
	}
}

/* One event per period at most, however many files were dropped. */
#define DB_DROP_EVENT_PERIOD_US (10 * G_USEC_PER_SEC)

static void log_media_drops(db_log *db)
{
	uint64_t dropped = atomic_load(&db->media_dropped);
	int64_t now = vigil_now_us();
	char *msg;

	if (dropped == db->media_drops_logged || now < db->next_drop_event_us)
		return;
	msg = g_strdup_printf("%" PRIu64 " part(s)' files not kept (%" PRIu64 " in all): the "
			      "media writer is behind or the disk refuses them",
			      dropped - db->media_drops_logged, dropped);
	g_warning("database %s: %s", db->path, msg);
	write_event_now(db, "media-dropped", msg);
	g_free(msg);
	db->media_drops_logged = dropped;
	db->next_drop_event_us = now + DB_DROP_EVENT_PERIOD_US;
}

static bool name_is_safe(const char *name)
{
	if (!name || !*name || strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
		return false;
	for (const char *c = name; *c; c++)
		if (!g_ascii_isalnum(*c) && *c != '-' && *c != '_' && *c != '.')
			return false;
	return true;
}

/* Writes one job's files under <media_dir>/<UTC day>/ and queues their rows.
 * A file that cannot be written is left out (and counted). */
static void write_job(db_log *db, struct media_job *job)
{
	struct db_media_set *m = job->set;
	struct db_item *it = g_new0(struct db_item, 1);
	GDateTime *t = g_date_time_new_from_unix_utc(job->t_wall_us / G_USEC_PER_SEC);
	char *day = t ? g_date_time_format(t, "%Y%m%d") : g_strdup("undated");
	char *dir = g_build_filename(db->media_dir, day, NULL);
	bool failed = false;

	if (t)
		g_date_time_unref(t);
	it->kind = DB_ITEM_MEDIA;
	it->media.inspection_id = job->inspection_id;
	if (g_mkdir_with_parents(dir, 0755) < 0) {
		g_warning("database %s: cannot create %s: %s", db->path, dir, g_strerror(errno));
		failed = true;
		goto out;
	}
	for (int i = 0; i <= m->nimages + 1 && i < DB_MEDIA_MAX_IMAGES + 2; i++) {
		struct media_file *f = &it->media.files[it->media.nfiles];
		char *name, *full;
		int rc;

		if (i < m->nimages) {
			const char *cam = name_is_safe(m->images[i].camera) ? m->images[i].camera
									   : "camera";

			if (!m->images[i].gray)
				continue;
			name = g_strdup_printf("%" PRId64 "-%u-%s.png", job->inspection_id,
					       job->part_id, cam);
			full = g_build_filename(dir, name, NULL);
			rc = media_write_png(full, m->images[i].gray, m->images[i].width,
					     m->images[i].height);
			f->camera = g_strdup(m->images[i].camera);
			f->kind = "image";
		} else if (i == m->nimages) {
			if (!m->heatmap || m->heatmap_w <= 0 || m->heatmap_h <= 0)
				continue;
			name = g_strdup_printf("%" PRId64 "-%u-heatmap.png", job->inspection_id,
					       job->part_id);
			full = g_build_filename(dir, name, NULL);
			rc = media_write_heatmap(full, m->heatmap, m->heatmap_w, m->heatmap_h);
			f->kind = "heatmap";
		} else {
			if (!m->vibration || m->vibration_len == 0)
				continue;
			name = g_strdup_printf("%" PRId64 "-%u-vibration.wav", job->inspection_id,
					       job->part_id);
			full = g_build_filename(dir, name, NULL);
			rc = media_write_wav(full, m->vibration, m->vibration_len, m->rate_hz);
			f->kind = "vibration";
		}
		if (rc < 0) {
			g_warning("database %s: cannot write %s: %s", db->path, full, g_strerror(-rc));
			g_remove(full);
			g_free(f->camera);
			f->camera = NULL;
			failed = true;
		} else {
			GStatBuf sb;

			f->path = g_build_filename(day, name, NULL);
			f->bytes = g_stat(full, &sb) == 0 ? (int64_t)sb.st_size : -1;
			it->media.nfiles++;
			atomic_fetch_add(&db->media_written, 1);
		}
		g_free(name);
		g_free(full);
	}
out:
	if (failed)
		atomic_fetch_add(&db->media_dropped, 1);
	g_free(dir);
	g_free(day);
	it->t_queued_us = vigil_now_us();
	/* The writer drains its queue until db_close has joined this thread,
	 * so this push cannot wait for ever. */
	if (it->media.nfiles == 0 || bqueue_push(db->queue, it, -1) < 0)
		item_free(it);
}

static gpointer media_main(gpointer data)
{
	db_log *db = data;
	void *item;

	while (bqueue_pop(db->media_queue, &item, -1) == 0) {
		struct media_job *job = item;

		write_job(db, job);
		db_media_set_free(job->set);
		g_free(job);
	}
	return NULL;
}

/* ---- retention, run by the writer between batches ---- */

#define DB_RETAIN_CHUNK 500   /* rows or files per transaction */
#define DAY_US (INT64_C(86400) * G_USEC_PER_SEC)

/* Deletes the files of the media rows `where` selects (oldest first, at
 * most DB_RETAIN_CHUNK, and no more than it takes to free `need` bytes
 * when need > 0), then the rows. Returns the number removed, or -1 on an
 * SQLite error; *bytes grows by their size. */
static int64_t drop_media(db_log *db, const char *where, int64_t bind, int64_t *bytes,
			  int64_t need)
{
	int64_t freed = 0;
	sqlite3_stmt *st = NULL;
	char *sql = g_strdup_printf("SELECT id, path, bytes FROM media WHERE %s LIMIT %d",
				    where, DB_RETAIN_CHUNK);
	GArray *ids = g_array_new(FALSE, FALSE, sizeof(int64_t));
	int64_t n = -1;
	int rc;

	rc = sqlite3_prepare_v2(db->conn, sql, -1, &st, NULL);
	g_free(sql);
	if (rc != SQLITE_OK)
		goto out;
	sqlite3_bind_int64(st, 1, bind);
	while ((need <= 0 || freed < need) && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		int64_t id = sqlite3_column_int64(st, 0);
		const char *rel = (const char *)sqlite3_column_text(st, 1);
		char *full = rel ? g_build_filename(db->media_dir, rel, NULL) : NULL;

		/* A file already gone is as good as removed. */
		if (full && g_remove(full) < 0 && errno != ENOENT)
			g_warning("database %s: cannot remove %s: %s", db->path, full,
				  g_strerror(errno));
		g_free(full);
		freed += MAX(sqlite3_column_int64(st, 2), 0);
		g_array_append_val(ids, id);
	}
	sqlite3_finalize(st);
	st = NULL;
	if (rc != SQLITE_DONE && rc != SQLITE_ROW)
		goto out;
	*bytes += freed;
	if (sqlite3_exec(db->conn, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
		goto out;
	rc = sqlite3_prepare_v2(db->conn, "DELETE FROM media WHERE id = ?1", -1, &st, NULL);
	for (guint i = 0; rc == SQLITE_OK && i < ids->len; i++) {
		sqlite3_bind_int64(st, 1, g_array_index(ids, int64_t, i));
		if (sqlite3_step(st) != SQLITE_DONE)
			rc = SQLITE_ERROR;
		sqlite3_reset(st);
	}
	sqlite3_finalize(st);
	st = NULL;
	if (rc == SQLITE_OK && sqlite3_exec(db->conn, "COMMIT", NULL, NULL, NULL) == SQLITE_OK)
		n = ids->len;
	else if (!sqlite3_get_autocommit(db->conn))
		sqlite3_exec(db->conn, "ROLLBACK", NULL, NULL, NULL);
out:
	sqlite3_finalize(st);
	g_array_free(ids, TRUE);
	return n;
}

/* Deletes up to DB_RETAIN_CHUNK of the oldest inspections before cut_us with
 * everything that hangs off them (their media files first). Returns the
 * number of inspections removed, or -1. */
static int64_t drop_rows(db_log *db, int64_t cut_us, int64_t *files, int64_t *bytes)
{
	static const char *const del[] = {
		"DELETE FROM vibration WHERE inspection_id IN (SELECT id FROM doomed)",
		"DELETE FROM reviews WHERE inspection_id IN (SELECT id FROM doomed)",
		"DELETE FROM inspections WHERE id IN (SELECT id FROM doomed)",
	};
	sqlite3_stmt *st = NULL;
	int64_t n, m, ret = -1;
	char *sql;

	/* Media first, so that no row is gone while its file stays. */
	do {
		m = drop_media(db, "inspection_id IN (SELECT id FROM inspections WHERE"
			       " t_wall_us < ?1 ORDER BY id LIMIT " G_STRINGIFY(DB_RETAIN_CHUNK) ")",
			       cut_us, bytes, 0);
		if (m < 0)
			return -1;
		*files += m;
	} while (m == DB_RETAIN_CHUNK);

	if (sqlite3_exec(db->conn, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
		return -1;
	sql = g_strdup_printf("CREATE TEMP TABLE doomed AS SELECT id FROM inspections"
			      " WHERE t_wall_us < ?1 ORDER BY id LIMIT %d", DB_RETAIN_CHUNK);
	if (sqlite3_prepare_v2(db->conn, sql, -1, &st, NULL) != SQLITE_OK)
		goto out;
	sqlite3_bind_int64(st, 1, cut_us);
	if (sqlite3_step(st) != SQLITE_DONE)
		goto out;
	sqlite3_finalize(st);
	st = NULL;
	for (size_t i = 0; i < G_N_ELEMENTS(del); i++)
		if (sqlite3_exec(db->conn, del[i], NULL, NULL, NULL) != SQLITE_OK)
			goto out;
	n = sqlite3_changes64(db->conn);
	if (sqlite3_exec(db->conn, "DROP TABLE doomed", NULL, NULL, NULL) != SQLITE_OK ||
	    sqlite3_exec(db->conn, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
		goto out;
	ret = n;
out:
	g_free(sql);
	sqlite3_finalize(st);
	if (!sqlite3_get_autocommit(db->conn))
		sqlite3_exec(db->conn, "ROLLBACK", NULL, NULL, NULL);
	return ret;
}

/* Bytes the log takes on disk: pages in use plus the media files. */
static int64_t disk_use(db_log *db)
{
	int64_t pages = 0, free_pages = 0, page_size = 0, media = 0;

	query_int(db->conn, "PRAGMA page_count", &pages);
	query_int(db->conn, "PRAGMA freelist_count", &free_pages);
	query_int(db->conn, "PRAGMA page_size", &page_size);
	query_int(db->conn, "SELECT coalesce(sum(bytes), 0) FROM media", &media);
	return (pages - free_pages) * page_size + media;
}

/* Age first: rows older than max_age_days go, with their files. Then the
 * disk budget: images go first (oldest first), then the other files, then
 * whole rows, oldest first - but never a row of the last protect_days. */
static void retain(db_log *db)
{
	int64_t now = vigil_wall_us();
	int64_t protect_cut = now - (int64_t)db->opt.protect_days * DAY_US;
	int64_t rows = 0, files = 0, bytes = 0, n;
	bool over = false, failed = false;

	if (db->opt.max_age_days > 0) {
		int64_t cut = MIN(now - (int64_t)db->opt.max_age_days * DAY_US, protect_cut);

		while ((n = drop_rows(db, cut, &files, &bytes)) > 0)
			rows += n;
		failed |= n < 0;
		/* Files whose row went before the media thread wrote them. */
		while (!failed && (n = drop_media(db, "inspection_id NOT IN (SELECT id FROM"
						  " inspections) AND ?1 ORDER BY id", 1, &bytes, 0)) > 0)
			files += n;
		failed |= n < 0;
	}
	if (db->opt.disk_budget_mb > 0) {
		int64_t budget = db->opt.disk_budget_mb * 1024 * 1024;
		static const char *const order[] = { "kind = 'image' ORDER BY id",
						     "?1 ORDER BY id" };

		for (size_t k = 0; k < G_N_ELEMENTS(order) && !failed; k++)
			while ((over = disk_use(db) > budget)) {
				n = drop_media(db, order[k], 1, &bytes, disk_use(db) - budget);
				if (n <= 0) {
					failed |= n < 0;
					break;
				}
				files += n;
			}
		while (!failed && (over = disk_use(db) > budget)) {
			if ((n = drop_rows(db, protect_cut, &files, &bytes)) <= 0) {
				failed |= n < 0;
				break;
			}
			rows += n;
		}
	}
	if (failed)
		g_warning("database %s: retention: %s", db->path, sqlite3_errmsg(db->conn));
	if (rows || files || over) {
		char *msg = g_strdup_printf("removed %" PRId64 " inspection(s) and %" PRId64
					    " file(s) (%" PRId64 " bytes)%s", rows, files, bytes,
					    over ? "; still over the disk budget: the rest is of the"
						   " protected last days" : "");

		g_message("database %s: retention: %s", db->path, msg);
		write_event_now(db, over ? "retention-over-budget" : "retention", msg);
		g_free(msg);
	}
}

static bool retention_on(const db_log *db)
{
	return db->opt.max_age_days > 0 || db->opt.disk_budget_mb > 0;
}

static gpointer writer_main(gpointer data)
{
	db_log *db = data;
	void *item;
	int rc;

	if (db->recovered) {
		char *msg = g_strdup_printf("%s failed its integrity check; it was moved to %s "
					    "and this log started afresh", db->path, db->recovered);

		write_event_now(db, "db-recovered", msg);
		g_free(msg);
	}
	/* Block for the first row (or until retention is due), then take what
	 * else is already waiting, so that a burst costs one commit. The pop
	 * fails only once db_close has closed the queue and everything in it
	 * has been written. */
	for (;;) {
		int64_t wait = -1;
		size_t n = 0;
		bool retain_asked = false, sync_asked = false;

		if (retention_on(db))
			wait = MAX(db->next_retention_us - vigil_now_us(), 0);
		rc = bqueue_pop(db->queue, &item, wait);
		if (rc == -EPIPE)
			break;
		if (rc == 0) {
			db->batch[n++] = item;
			while (n < DB_BATCH_MAX && bqueue_pop(db->queue, &item, 0) == 0)
				db->batch[n++] = item;
			write_batch(db, db->batch, n);
		}
		for (size_t i = 0; i < n; i++) {
			retain_asked |= db->batch[i]->kind == DB_ITEM_RETAIN;
			sync_asked |= db->batch[i]->kind == DB_ITEM_SYNC;
			item_free(db->batch[i]);
			db->batch[i] = NULL;
		}
		log_media_drops(db);
		if (retain_asked || (retention_on(db) && vigil_now_us() >= db->next_retention_us)) {
			retain(db);
			db->next_retention_us = vigil_now_us() +
						(int64_t)db->opt.retention_period_s * G_USEC_PER_SEC;
		}
		if (retain_asked || sync_asked) {
			g_mutex_lock(&db->sync_lock);
			db->syncs++;
			g_cond_broadcast(&db->sync_cond);
			g_mutex_unlock(&db->sync_lock);
		}
	}
	return NULL;
}

/* PRAGMA quick_check on a file that exists: 1 when it passes, 0 when it
 * fails (corrupt), -1 when the file cannot be judged (not a database, no
 * access): that is left to the normal open to report. */
static int check_integrity(const char *path, char **why)
{
	sqlite3 *conn = NULL;
	sqlite3_stmt *st = NULL;
	int rc, ret = -1;

	if (!g_file_test(path, G_FILE_TEST_EXISTS))
		return 1;
	if (sqlite3_open_v2(path, &conn, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK)
		goto out;
	sqlite3_busy_timeout(conn, DB_BUSY_TIMEOUT_MS);
	rc = sqlite3_prepare_v2(conn, "PRAGMA quick_check", -1, &st, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		const char *res = (const char *)sqlite3_column_text(st, 0);

		ret = res && strcmp(res, "ok") == 0;
		if (!ret)
			*why = g_strdup(res ? res : "no answer");
	} else if ((rc & 0xff) == SQLITE_CORRUPT) {
		ret = 0;
		*why = g_strdup(sqlite3_errmsg(conn));
	}
out:
	sqlite3_finalize(st);
	sqlite3_close(conn);
	return ret;
}

/* Moves path and its -wal and -shm aside (never deletes them); returns the
 * new name of the database file, or NULL with *err set. */
static char *move_aside(const char *path, char **err)
{
	GDateTime *now = g_date_time_new_now_utc();
	char *stamp = g_date_time_format(now, "%Y%m%dT%H%M%SZ");
	char *aside = g_strdup_printf("%s.corrupt-%s", path, stamp);
	static const char *const sfx[] = { "", "-wal", "-shm" };

	g_date_time_unref(now);
	g_free(stamp);
	for (size_t i = 0; i < G_N_ELEMENTS(sfx); i++) {
		char *from = g_strconcat(path, sfx[i], NULL);
		char *to = g_strconcat(aside, sfx[i], NULL);
		int rc = g_rename(from, to);

		if (rc < 0 && (i == 0 || errno != ENOENT)) {
			set_error(err, "cannot move the corrupt database %s aside to %s: %s", from,
				  to, g_strerror(errno));
			g_free(from);
			g_free(to);
			g_free(aside);
			return NULL;
		}
		g_free(from);
		g_free(to);
	}
	return aside;
}

static int prepare_statements(db_log *db)
{
	struct {
		const char *sql;
		sqlite3_stmt **st;
	} all[] = {
		{ sql_insert_inspection, &db->insert_inspection },
		{ sql_insert_vibration, &db->insert_vibration },
		{ sql_insert_event, &db->insert_event },
		{ sql_insert_media, &db->insert_media },
		{ sql_set_image_path, &db->set_image_path },
		{ sql_set_latency, &db->set_latency },
	};

	for (size_t i = 0; i < G_N_ELEMENTS(all); i++)
		if (sqlite3_prepare_v3(db->conn, all[i].sql, -1, SQLITE_PREPARE_PERSISTENT,
				       all[i].st, NULL) != SQLITE_OK)
			return DB_ESQLITE;
	return 0;
}

static char *default_media_dir(const char *db_path)
{
	return g_strconcat(db_path, ".media", NULL);
}

/* The media directory is recorded in the log, so that readers (vigilctl,
 * the review page) find the files from the database file alone. */
static int record_media_dir(db_log *db)
{
	sqlite3_stmt *st = NULL;
	int rc;

	rc = sqlite3_prepare_v2(db->conn, "INSERT OR REPLACE INTO meta (key, value)"
				" VALUES ('media_dir', ?1)", -1, &st, NULL);
	if (rc == SQLITE_OK) {
		sqlite3_bind_text(st, 1, db->media_dir, -1, SQLITE_STATIC);
		rc = sqlite3_step(st) == SQLITE_DONE ? SQLITE_OK : SQLITE_ERROR;
	}
	sqlite3_finalize(st);
	return rc == SQLITE_OK ? 0 : DB_ESQLITE;
}

db_log *db_open_with(const char *path, const struct db_options *opt_in, char **err)
{
	static const struct db_options defaults = DB_OPTIONS_DEFAULT;
	struct db_options opt = opt_in ? *opt_in : defaults;
	db_log *db;
	GError *gerr = NULL;
	char *why = NULL, *dir;
	int rc;

	if (!path || opt.queue_depth == 0) {
		set_error(err, "cannot open %s: %s", path ? path : "(no path)",
			  path ? "queue depth must be at least 1" : "no path given");
		return NULL;
	}
	if (opt.media_queue == 0)
		opt.media_queue = defaults.media_queue;
	if (opt.retention_period_s <= 0)
		opt.retention_period_s = defaults.retention_period_s;

	db = g_new0(db_log, 1);
	g_mutex_init(&db->error_lock);
	g_mutex_init(&db->submit_lock);
	g_mutex_init(&db->sync_lock);
	g_cond_init(&db->sync_cond);
	atomic_init(&db->rows_written, 0);
	atomic_init(&db->rows_failed, 0);
	atomic_init(&db->settled, 0);
	atomic_init(&db->ok, 1);
	atomic_init(&db->media_dropped, 0);
	atomic_init(&db->media_written, 0);
	atomic_init(&db->lag_us, 0);
	atomic_init(&db->lag_max_us, 0);
	db->path = g_strdup(path);
	db->opt = opt;
	dir = opt.media_dir ? g_strdup(opt.media_dir) : default_media_dir(path);
	db->media_dir = g_canonicalize_filename(dir, NULL);
	g_free(dir);
	db->opt.media_dir = db->media_dir;

	if (check_integrity(path, &why) == 0) {
		db->recovered = move_aside(path, err);
		if (!db->recovered) {
			g_free(why);
			goto fail;
		}
		g_warning("database %s is corrupt (quick_check: %s); moved it to %s and starting "
			  "a fresh log", path, why, db->recovered);
		g_free(why);
	}

	rc = sqlite3_open_v2(path, &db->conn, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL);
	if (rc != SQLITE_OK) {
		set_error(err, "cannot open %s: %s", path, sqlite_message(db->conn, rc));
		goto fail;
	}
	sqlite3_busy_timeout(db->conn, DB_BUSY_TIMEOUT_MS);

	if (prepare_schema(db, err) < 0)
		goto fail;
	if (record_media_dir(db) < 0 || prepare_statements(db) < 0) {
		set_error(err, "cannot open %s: %s", path, sqlite3_errmsg(db->conn));
		goto fail;
	}
	if (opt.max_pages > 0) {
		char *sql = sqlite3_mprintf("PRAGMA max_page_count = %lld", (long long)opt.max_pages);

		sqlite3_exec(db->conn, sql, NULL, NULL, NULL);
		sqlite3_free(sql);
	}
	if (g_mkdir_with_parents(db->media_dir, 0755) < 0) {
		set_error(err, "cannot open %s: cannot create the media directory %s: %s", path,
			  db->media_dir, g_strerror(errno));
		goto fail;
	}

	db->next_retention_us = vigil_now_us();
	db->queue = bqueue_new(opt.queue_depth);
	db->media_queue = bqueue_new(opt.media_queue);
	db->writer = g_thread_try_new("db-writer", writer_main, db, &gerr);
	if (db->writer)
		db->media_writer = g_thread_try_new("db-media", media_main, db, &gerr);
	if (!db->writer || !db->media_writer) {
		set_error(err, "cannot open %s: cannot start the writer threads: %s", path,
			  gerr->message);
		g_error_free(gerr);
		goto fail;
	}
	return db;

fail:
	db_close(db);
	return NULL;
}

db_log *db_open(const char *path, size_t queue_depth, char **err)
{
	struct db_options opt = DB_OPTIONS_DEFAULT;

	opt.queue_depth = queue_depth;
	return db_open_with(path, &opt, err);
}

static int enqueue(db_log *db, struct db_item *it, int64_t timeout_us)
{
	int rc;

	it->t_queued_us = vigil_now_us();
	rc = bqueue_push(db->queue, it, timeout_us);
	if (rc < 0) {
		item_free(it);
		return rc == -EPIPE ? DB_ECLOSED : rc == -ETIMEDOUT ? -EAGAIN : rc;
	}
	return 0;
}

int db_submit_media(db_log *db, const struct db_inspection *row, struct db_media_set *media,
		    int64_t timeout_us, uint64_t *ticket)
{
	struct db_item *it;
	uint64_t t;
	int rc;

	if (!db || !row || !verdict_valid(row->verdict) || !class_valid(row->defect_class)) {
		db_media_set_free(media);
		return -EINVAL;
	}
	it = g_new0(struct db_item, 1);
	it->kind = DB_ITEM_INSPECTION;
	it->row = *row;
	it->str1 = g_strdup(row->model_version);
	it->str2 = g_strdup(row->image_path);
	it->row.model_version = it->str1;
	it->row.image_path = it->str2;
	it->media_set = media;

	/* One lock for the ticket and the push: tickets reach the writer in
	 * the order they were handed out. A caller that may not wait does not
	 * wait for the lock either (another submitter may hold it while it
	 * waits for room). */
	if (timeout_us == 0) {
		if (!g_mutex_trylock(&db->submit_lock)) {
			item_free(it);
			return -EAGAIN;
		}
	} else {
		g_mutex_lock(&db->submit_lock);
	}
	if (media && row->verdict == VIGIL_VERDICT_ACCEPT &&
	    (db->opt.keep_accepted_every <= 0 ||
	     db->accepted_seen++ % (uint64_t)db->opt.keep_accepted_every != 0)) {
		db_media_set_free(it->media_set);
		it->media_set = NULL;
	}
	t = it->ticket = ++db->next_ticket;
	rc = enqueue(db, it, timeout_us);
	g_mutex_unlock(&db->submit_lock);
	if (rc == 0 && ticket)
		*ticket = t;
	return rc;
}


int db_submit(db_log *db, const struct db_inspection *row)
{
	return db_submit_media(db, row, NULL, -1, NULL);
}

int db_set_latency(db_log *db, uint64_t ticket, double latency_ms)
{
	struct db_item *it;

	if (!db || !ticket)
		return -EINVAL;
	it = g_new0(struct db_item, 1);
	it->kind = DB_ITEM_LATENCY;
	it->latency.ticket = ticket;
	it->latency.ms = latency_ms;
	return enqueue(db, it, 0);
}

int db_event(db_log *db, const char *kind, const char *message)
{
	struct db_item *it;

	if (!db || !kind || !message)
		return -EINVAL;
	it = g_new0(struct db_item, 1);
	it->kind = DB_ITEM_EVENT;
	it->event.t_wall_us = vigil_wall_us();
	it->str1 = g_strdup(kind);
	it->str2 = g_strdup(message);
	return enqueue(db, it, -1);
}

/* Queues an item of kind and waits until the writer has dealt with it and
 * everything queued before it. */
static int writer_sync(db_log *db, enum db_item_kind kind)
{
	struct db_item *it = g_new0(struct db_item, 1);
	uint64_t runs;
	int rc;

	it->kind = kind;
	g_mutex_lock(&db->sync_lock);
	runs = db->syncs;
	g_mutex_unlock(&db->sync_lock);
	if ((rc = enqueue(db, it, -1)) < 0)
		return rc;
	g_mutex_lock(&db->sync_lock);
	while (db->syncs == runs)
		g_cond_wait(&db->sync_cond, &db->sync_lock);
	g_mutex_unlock(&db->sync_lock);
	return 0;
}

int db_retain_now(db_log *db)
{
	return db ? writer_sync(db, DB_ITEM_RETAIN) : -EINVAL;
}

void db_close(db_log *db)
{
	int rc;

	if (!db)
		return;
	/* Rows first, so that every committed part's files are handed to
	 * the media thread; then the media thread, which may still queue rows
	 * for its files, which the writer, still running, takes. Then the
	 * writer drains its queue and returns. */
	if (db->writer && db->media_writer)
		writer_sync(db, DB_ITEM_SYNC);
	if (db->media_queue)
		bqueue_close(db->media_queue);
	if (db->media_writer)
		g_thread_join(db->media_writer);
	if (db->queue)
		bqueue_close(db->queue);
	if (db->writer)
		g_thread_join(db->writer);
	sqlite3_finalize(db->insert_inspection);
	sqlite3_finalize(db->insert_vibration);
	sqlite3_finalize(db->insert_event);
	sqlite3_finalize(db->insert_media);
	sqlite3_finalize(db->set_image_path);
	sqlite3_finalize(db->set_latency);
	/* The last connection to close checkpoints the WAL into the file and
	 * removes it. */
	rc = sqlite3_close(db->conn);
	if (rc != SQLITE_OK)
		g_warning("database %s: close: %s", db->path, sqlite3_errstr(rc));
	if (db->media_queue) {
		void *job;

		/* Jobs left when the media thread could not start. */
		while (bqueue_pop(db->media_queue, &job, 0) == 0) {
			db_media_set_free(((struct media_job *)job)->set);
			g_free(job);
		}
	}
	bqueue_free(db->media_queue);
	bqueue_free(db->queue);
	g_mutex_clear(&db->error_lock);
	g_mutex_clear(&db->submit_lock);
	g_mutex_clear(&db->sync_lock);
	g_cond_clear(&db->sync_cond);
	free(db->last_error);
	g_free(db->recovered);
	g_free(db->media_dir);
	g_free(db->path);
	g_free(db);
}

uint64_t db_rows_written(db_log *db)
{
	return db ? atomic_load(&db->rows_written) : 0;
}

uint64_t db_rows_failed(db_log *db)
{
	return db ? atomic_load(&db->rows_failed) : 0;
}

uint64_t db_settled(db_log *db)
{
	return db ? atomic_load(&db->settled) : 0;
}

int db_ok(db_log *db)
{
	return db ? atomic_load(&db->ok) : 0;
}

uint64_t db_media_dropped(db_log *db)
{
	return db ? atomic_load(&db->media_dropped) : 0;
}

uint64_t db_media_written(db_log *db)
{
	return db ? atomic_load(&db->media_written) : 0;
}

size_t db_queue_high_water(db_log *db)
{
	return db && db->queue ? bqueue_high_water(db->queue) : 0;
}

double db_write_lag_ms(db_log *db)
{
	return db ? (double)atomic_load(&db->lag_us) / 1000.0 : 0.0;
}

double db_write_lag_max_ms(db_log *db)
{
	return db ? (double)atomic_load(&db->lag_max_us) / 1000.0 : 0.0;
}

char *db_last_error(db_log *db)
{
	char *copy = NULL;

	if (!db)
		return NULL;
	g_mutex_lock(&db->error_lock);
	if (db->last_error)
		copy = strdup(db->last_error);
	g_mutex_unlock(&db->error_lock);
	return copy;
}

const char *db_strerror(int code)
{
	switch (code) {
	case 0:
		return "success";
	case DB_ESQLITE:
		return "SQLite error";
	case DB_ECLOSED:
		return "database log is closed";
	}
	if (code < 0 && code > -DB_ENOBASE)
		return g_strerror(-code);
	return "unknown error";
}


/* ---- read side ---- */

/* One statement on a connection of its own: open, prepare, bind, step
 * through the rows, report, finalize, close - the steps every reader (and
 * db_review) share. Readers open read-only, so that tools can read while
 * vigild writes: in WAL mode readers and the writer do not block each
 * other. */
struct statement {
	const char *path;
	bool write;              /* a read-write connection (db_review) */
	bool current_schema;     /* refuse a log older than this build */
	const char *sql;
	const char *doing;       /* for messages: "read", "review in" */
	/* Binds the parameters; returns an SQLite code. NULL: none. */
	int (*bind)(sqlite3_stmt *st, void *data);
	/* Called per row; non-zero stops. NULL: rows are not expected. */
	int (*row)(sqlite3_stmt *st, void *data);
	void *data;
	int64_t rows, changes;   /* out */
};

static int run_statement(struct statement *s, char **err)
{
	sqlite3 *conn = NULL;
	sqlite3_stmt *st = NULL;
	int rc, ret = DB_ESQLITE;

	if (!s->path) {
		set_error(err, "cannot open (no path): no path given");
		return DB_ESQLITE;
	}
	rc = sqlite3_open_v2(s->path, &conn, s->write ? SQLITE_OPEN_READWRITE
						       : SQLITE_OPEN_READONLY, NULL);
	if (rc != SQLITE_OK) {
		set_error(err, "cannot open %s: %s", s->path, sqlite_message(conn, rc));
		goto out;
	}
	sqlite3_busy_timeout(conn, DB_BUSY_TIMEOUT_MS);
	if (s->current_schema) {
		int64_t version = 0;

		if (query_int(conn, "PRAGMA user_version", &version) == SQLITE_OK &&
		    version < DB_SCHEMA_VERSION) {
			set_error(err, "cannot read %s: its schema version %" PRId64 " is older "
				  "than this build's %d; vigild upgrades it when it next opens it "
				  "(or run: vigilctl --db FILE upgrade)",
				  s->path, version, DB_SCHEMA_VERSION);
			goto out;
		}
	}
	if ((rc = sqlite3_prepare_v2(conn, s->sql, -1, &st, NULL)) != SQLITE_OK)
		goto sqlite_fail;
	if (s->bind && (rc = s->bind(st, s->data)) != SQLITE_OK)
		goto sqlite_fail;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		s->rows++;
		if (s->row && s->row(st, s->data) != 0) {
			rc = SQLITE_DONE;
			break;
		}
	}
	if (rc != SQLITE_DONE)
		goto sqlite_fail;
	s->changes = sqlite3_changes64(conn);
	ret = 0;
	goto out;

sqlite_fail:
	set_error(err, "cannot %s %s: %s", s->doing ? s->doing : "read", s->path,
		  sqlite3_errmsg(conn));
out:
	sqlite3_finalize(st);
	sqlite3_close(conn);
	return ret;
}

static double column_real(sqlite3_stmt *st, int i)
{
	return sqlite3_column_type(st, i) == SQLITE_NULL ? NAN : sqlite3_column_double(st, i);
}

static int verdict_code(const char *name)
{
	for (int v = VIGIL_VERDICT_ACCEPT; v <= VIGIL_VERDICT_MARGINAL; v++)
		if (name && strcmp(name, vigil_verdict_name((enum vigil_verdict)v)) == 0)
			return v;
	return 0;
}

struct query_ctx {
	const struct db_filter *f;
	const struct db_row_cb *cb;
};

/* Binding a number the statement does not use fails harmlessly
 * (SQLITE_RANGE); the ones it uses cannot fail. */
static int bind_filter(sqlite3_stmt *st, void *data)
{
	const struct db_filter *f = ((struct query_ctx *)data)->f;

	sqlite3_bind_int64(st, 1, f->since_us);
	sqlite3_bind_int64(st, 2, f->until_us);
	sqlite3_bind_text(st, 3, f->verdict, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 4, f->defect_class, -1, SQLITE_STATIC);
	sqlite3_bind_double(st, 5, f->min_score);
	sqlite3_bind_double(st, 6, f->max_score);
	sqlite3_bind_int64(st, 7, f->part_id);
	sqlite3_bind_int64(st, 8, f->limit);
	return SQLITE_OK;
}

static int inspection_row(sqlite3_stmt *st, void *data)
{
	const struct db_row_cb *cb = ((struct query_ctx *)data)->cb;
	struct db_inspection row = {
		.part_id = (uint32_t)sqlite3_column_int64(st, 0),
		.trigger_counter = (uint32_t)sqlite3_column_int64(st, 1),
		.seq = (uint64_t)sqlite3_column_int64(st, 2),
		.t_wall_us = sqlite3_column_int64(st, 3),
		.verdict = sqlite3_column_int(st, 4),
		.defect_class = class_from_name((const char *)sqlite3_column_text(st, 5)),
		.flags = (uint32_t)sqlite3_column_int64(st, 6),
		.score = column_real(st, 7),
		.vision_score = column_real(st, 8),
		.signal_score = column_real(st, 9),
		.latency_ms = column_real(st, 10),
		.infer_ms = column_real(st, 11),
		.model_version = (const char *)sqlite3_column_text(st, 12),
		.image_path = (const char *)sqlite3_column_text(st, 13),
		.id = sqlite3_column_int64(st, 14),
		.review = (const char *)sqlite3_column_text(st, 15),
		.review_verdict = verdict_code((const char *)sqlite3_column_text(st, 16)),
		.review_note = (const char *)sqlite3_column_text(st, 17),
	};

	return cb->fn(&row, cb->data);
}

int db_query(const char *path, const struct db_filter *f, const struct db_row_cb *cb,
	     char **err)
{
	static const struct db_filter all = DB_FILTER_ALL;
	struct query_ctx ctx;
	struct statement s = { .path = path, .current_schema = true, .bind = bind_filter,
			       .row = inspection_row, .data = &ctx };
	GString *sql;
	int rc;

	if (!cb || !cb->fn) {
		set_error(err, "cannot read %s: no callback given", path ? path : "(no path)");
		return -EINVAL;
	}
	if (!f)
		f = &all;
	if (f->verdict && !verdict_code(f->verdict)) {
		set_error(err, "verdict '%s' is not accept, reject or marginal", f->verdict);
		return -EINVAL;
	}
	if (f->defect_class && class_from_name(f->defect_class) < 0) {
		set_error(err, "class '%s' is not none, surface, vibration or surface+vibration",
			  f->defect_class);
		return -EINVAL;
	}
	ctx = (struct query_ctx){ f, cb };
	/* Every value is a numbered parameter; the text only grows by fixed
	 * fragments, so no filter value can change the statement. */
	sql = g_string_new("SELECT * FROM (");
	g_string_append(sql, sql_select_inspections);
	g_string_append(sql, " WHERE 1");
	if (f->since_us)
		g_string_append(sql, " AND i.t_wall_us >= ?1");
	if (f->until_us)
		g_string_append(sql, " AND i.t_wall_us < ?2");
	if (f->verdict)
		g_string_append(sql, " AND i.verdict = ?3");
	if (f->defect_class)
		g_string_append(sql, " AND i.defect_class = ?4");
	if (!isnan(f->min_score))
		g_string_append(sql, " AND i.score >= ?5");
	if (!isnan(f->max_score))
		g_string_append(sql, " AND i.score <= ?6");
	if (f->part_id >= 0)
		g_string_append(sql, " AND i.part_id = ?7");
	if (f->reviewed == 0)
		g_string_append(sql, " AND r.id IS NULL");
	else if (f->reviewed == 1)
		g_string_append(sql, " AND r.id IS NOT NULL");
	g_string_append(sql, " ORDER BY i.id DESC");
	if (f->limit > 0)
		g_string_append(sql, " LIMIT ?8");
	g_string_append(sql, ") ORDER BY 15");
	s.sql = sql->str;
	rc = run_statement(&s, err);
	g_string_free(sql, TRUE);
	return rc;
}

int db_read_inspections(const char *path, const struct db_row_cb *cb, char **err)
{
	return db_query(path, NULL, cb, err);
}

struct review_args {
	int64_t part_id;
	const char *decision, *verdict, *note, *reviewer;
};

static int bind_review(sqlite3_stmt *st, void *data)
{
	const struct review_args *a = data;
	int rc;

	if ((rc = sqlite3_bind_int64(st, 1, a->part_id)) != SQLITE_OK ||
	    (rc = sqlite3_bind_int64(st, 2, g_get_real_time())) != SQLITE_OK ||
	    (rc = sqlite3_bind_text(st, 3, a->decision, -1, SQLITE_STATIC)) != SQLITE_OK ||
	    (rc = sqlite3_bind_text(st, 4, a->verdict, -1, SQLITE_STATIC)) != SQLITE_OK ||
	    (rc = bind_text_or_null(st, 5, a->note)) != SQLITE_OK)
		return rc;
	return bind_text_or_null(st, 6, a->reviewer);
}

int db_review(const char *path, int64_t part_id, const char *decision, int verdict,
	      const char *note, const char *reviewer, char **err)
{
	struct review_args a = { part_id, decision, NULL, note, reviewer };
	/* One statement: the review goes to the latest inspection of the
	 * part, or nowhere when there is none. */
	struct statement s = {
		.path = path, .write = true, .doing = "review in", .bind = bind_review, .data = &a,
		.sql = "INSERT INTO reviews (inspection_id, t_wall_us, decision, verdict, note,"
		       " reviewer) SELECT id, ?2, ?3, ?4, ?5, ?6 FROM inspections"
		       " WHERE part_id = ?1 ORDER BY id DESC LIMIT 1",
	};
	int rc;

	if (!decision || (strcmp(decision, "confirm") != 0 && strcmp(decision, "overrule") != 0)) {
		set_error(err, "a review is 'confirm' or 'overrule', not '%s'",
			  decision ? decision : "(none)");
		return -EINVAL;
	}
	if (verdict < VIGIL_VERDICT_ACCEPT || verdict > VIGIL_VERDICT_MARGINAL) {
		set_error(err, "a review needs the right verdict: accept, reject or marginal");
		return -EINVAL;
	}
	a.verdict = vigil_verdict_name((enum vigil_verdict)verdict);
	if ((rc = run_statement(&s, err)) < 0)
		return rc;
	if (s.changes == 0) {
		set_error(err, "%s: no inspection of part %" PRId64, path, part_id);
		return -ENOENT;
	}
	return 0;
}

static int int64_row(sqlite3_stmt *st, void *data)
{
	*(int64_t *)data = sqlite3_column_int64(st, 0);
	return 1;
}

int64_t db_count_inspections(const char *path, char **err)
{
	int64_t count = 0;
	struct statement s = { .path = path, .sql = "SELECT count(*) FROM inspections",
			       .row = int64_row, .data = &count };
	int rc = run_statement(&s, err);

	return rc < 0 ? rc : count;
}

struct vibration_ctx {
	int64_t id;
	struct vigil_vibration *out;
};

static int bind_vibration(sqlite3_stmt *st, void *data)
{
	return sqlite3_bind_int64(st, 1, ((struct vibration_ctx *)data)->id);
}

static int vibration_row(sqlite3_stmt *st, void *data)
{
	const char *zone = (const char *)sqlite3_column_text(st, 1);

	*((struct vibration_ctx *)data)->out = (struct vigil_vibration){
		.rms_velocity_mm_s = column_real(st, 0),
		.iso_zone = zone && zone[0] >= 'A' && zone[0] <= 'D' ? zone[0] : 0,
		.rms_accel_g = column_real(st, 2),
		.hf_accel_g = column_real(st, 3),
		.peak_g = column_real(st, 4),
		.crest_factor = column_real(st, 5),
		.kurtosis = column_real(st, 6),
		.ftf_env = column_real(st, 7),
		.bpfo_env = column_real(st, 8),
		.bpfi_env = column_real(st, 9),
		.bsf_env = column_real(st, 10),
	};
	return 1;
}

int db_read_vibration(const char *path, int64_t inspection_id, struct vigil_vibration *out,
		      char **err)
{
	struct vibration_ctx ctx = { inspection_id, out };
	struct statement s = {
		.path = path, .bind = bind_vibration, .row = vibration_row, .data = &ctx,
		.sql = "SELECT rms_velocity_mm_s, iso_zone, rms_accel_g, hf_accel_g, peak_g,"
		       " crest_factor, kurtosis, ftf_env, bpfo_env, bpfi_env, bsf_env"
		       " FROM vibration WHERE inspection_id = ?1",
	};
	int rc;

	if (!out)
		return -EINVAL;
	if ((rc = run_statement(&s, err)) < 0)
		return rc;
	return s.rows ? 0 : -ENOENT;
}

struct media_ctx {
	int64_t inspection_id;
	int (*fn)(const struct db_media *m, void *data);
	void *data;
};

static int bind_media(sqlite3_stmt *st, void *data)
{
	return sqlite3_bind_int64(st, 1, ((struct media_ctx *)data)->inspection_id);
}

static int media_row(sqlite3_stmt *st, void *data)
{
	struct media_ctx *c = data;
	struct db_media m = {
		.id = sqlite3_column_int64(st, 0),
		.inspection_id = sqlite3_column_int64(st, 1),
		.camera = (const char *)sqlite3_column_text(st, 2),
		.kind = (const char *)sqlite3_column_text(st, 3),
		.path = (const char *)sqlite3_column_text(st, 4),
		.bytes = sqlite3_column_int64(st, 5),
	};

	return c->fn(&m, c->data);
}

int db_read_media(const char *db_path, int64_t inspection_id,
		  int (*fn)(const struct db_media *m, void *data), void *data, char **err)
{
	struct media_ctx ctx = { inspection_id, fn, data };
	struct statement s = {
		.path = db_path, .current_schema = true, .bind = bind_media, .row = media_row,
		.data = &ctx,
		.sql = "SELECT id, inspection_id, camera, kind, path, bytes FROM media"
		       " WHERE inspection_id = ?1 ORDER BY kind != 'image', id",
	};

	if (!fn) {
		set_error(err, "cannot read %s: no callback given", db_path ? db_path : "(no path)");
		return -EINVAL;
	}
	return run_statement(&s, err);
}

static int text_row(sqlite3_stmt *st, void *data)
{
	const char *v = (const char *)sqlite3_column_text(st, 0);

	*(char **)data = v ? strdup(v) : NULL;
	return 1;
}

char *db_media_dir(const char *db_path, char **err)
{
	char *dir = NULL;
	int64_t version = 0;
	struct statement probe = { .path = db_path, .sql = "PRAGMA user_version",
				   .row = int64_row, .data = &version };
	struct statement s = { .path = db_path, .row = text_row, .data = &dir,
			       .sql = "SELECT value FROM meta WHERE key = 'media_dir'" };

	if (run_statement(&probe, err) < 0)
		return NULL;
	/* A log from before schema 4 has no meta table: the default holds. */
	if (version >= 4 && run_statement(&s, err) < 0)
		return NULL;
	if (!dir) {
		char *def = default_media_dir(db_path);

		dir = strdup(def);
		g_free(def);
	}
	return dir;
}
