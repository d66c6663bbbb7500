/* The inspection log's schema, writer thread and submitting (db/db.h). */
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
#include <unistd.h>

#include <glib.h>
#include <glib/gstdio.h>
#include <sqlite3.h>

#include "core/bqueue.h"
#include "core/part.h"
#include "db/db-private.h"

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
	/* 5: readings of Modbus vibration transmitters: periodic trend points
	 * (part_id NULL) and the reading attached to each part. */
	"CREATE TABLE trend ("
	"  id INTEGER PRIMARY KEY,"
	"  source TEXT NOT NULL,"
	"  t_wall_us INTEGER NOT NULL,"
	"  part_id INTEGER,"
	"  velocity_mm_s REAL,"
	"  accel_g REAL,"
	"  temperature_c REAL,"
	"  stale INTEGER NOT NULL"
	");"
	"CREATE INDEX trend_source_time ON trend (source, t_wall_us);",
};

#define DB_SCHEMA_VERSION ((int)G_N_ELEMENTS(migrations))

int db__schema_version(void)
{
	return DB_SCHEMA_VERSION;
}

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

static const char sql_insert_trend[] =
	"INSERT INTO trend (source, t_wall_us, part_id, velocity_mm_s, accel_g, temperature_c,"
	" stale) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)";

static const char sql_insert_media[] =
	"INSERT INTO media (inspection_id, camera, kind, path, bytes) VALUES (?1, ?2, ?3, ?4, ?5)";

/* The first camera's image is also the row's image_path. */
static const char sql_set_image_path[] =
	"UPDATE inspections SET image_path = ?1 WHERE id = ?2 AND image_path IS NULL";

static const char sql_set_latency[] = "UPDATE inspections SET latency_ms = ?1 WHERE id = ?2";

/* Strings that leave this module go through malloc so that callers free()
 * them, as db.h promises; internal copies use GLib. */
void db__set_error(char **err, const char *fmt, ...)
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
const char *db__sqlite_message(sqlite3 *conn, int rc)
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
int db__class_from_name(const char *name)
{
	if (!name)
		return -1;
	for (int c = VIGIL_CLASS_NONE; c <= VIGIL_CLASS_BOTH; c++)
		if (strcmp(name, vigil_class_name((enum vigil_defect_class)c)) == 0)
			return c;
	return -1;
}

/* Runs a statement that yields one integer (a PRAGMA). */
int db__query_int(sqlite3 *conn, const char *sql, int64_t *value)
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
		db__set_error(err, "cannot open %s: %s", db->path, sqlite3_errmsg(db->conn));
		goto out;
	}
	mode = (const char *)sqlite3_column_text(st, 0);
	if (!mode || g_ascii_strcasecmp(mode, "wal") != 0) {
		db__set_error(err, "cannot open %s: cannot switch to WAL (journal mode stays %s)",
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
	db__set_error(err, "cannot open %s: its schema version (user_version %" PRId64
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
	rc = db__query_int(db->conn, "PRAGMA user_version", &version);
	if (rc != SQLITE_OK) {
		db__set_error(err, "cannot open %s: %s", db->path, sqlite3_errmsg(db->conn));
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
		db__set_error(err, "cannot open %s: %s", db->path, sqlite3_errmsg(db->conn));
		goto out;
	}
	/* The writer's page cache keeps every page it wrote until the cache
	 * is full: about 0.37 kB a part, which looks like a leak for the first
	 * few thousand parts of a run (docs/performance.md, "Soak"). Set here
	 * rather than left to how SQLite was compiled, so that the bound on
	 * vigild's memory is ours. */
	if (sqlite3_exec(db->conn, "PRAGMA cache_size = -" G_STRINGIFY(DB_WRITER_CACHE_KIB),
			 NULL, NULL, NULL) != SQLITE_OK) {
		db__set_error(err, "cannot open %s: %s", db->path, sqlite3_errmsg(db->conn));
		goto out;
	}

	if (version == DB_SCHEMA_VERSION) {
		ret = 0;
		goto out;
	}

	/* IMMEDIATE takes the write lock now, so the version read next cannot
	 * be changed by another process migrating the same file at once. */
	if (sqlite3_exec(db->conn, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK) {
		db__set_error(err, "cannot open %s: %s", db->path, sqlite3_errmsg(db->conn));
		goto out;
	}
	in_transaction = true;
	rc = db__query_int(db->conn, "PRAGMA user_version", &version);
	if (rc != SQLITE_OK) {
		db__set_error(err, "cannot open %s: %s", db->path, sqlite3_errmsg(db->conn));
		goto out;
	}
	if (version > DB_SCHEMA_VERSION) {
		refuse_newer(db, version, err);
		goto out;
	}
	for (int64_t v = version; v < DB_SCHEMA_VERSION; v++) {
		if (sqlite3_exec(db->conn, migrations[v], NULL, NULL, NULL) != SQLITE_OK) {
			db__set_error(err, "cannot migrate %s to schema version %" PRId64 ": %s",
				  db->path, v + 1, sqlite3_errmsg(db->conn));
			goto out;
		}
	}
	/* PRAGMA takes no bound parameters; the value is our own constant. */
	sql = sqlite3_mprintf("PRAGMA user_version = %d", DB_SCHEMA_VERSION);
	if (!sql || sqlite3_exec(db->conn, sql, NULL, NULL, NULL) != SQLITE_OK ||
	    sqlite3_exec(db->conn, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
		db__set_error(err, "cannot migrate %s to schema version %d: %s", db->path,
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

void db__item_free(struct db_item *it)
{
	if (!it)
		return;
	g_free(it->str1);
	g_free(it->str2);
	if (it->kind == DB_ITEM_MEDIA)
		for (int i = 0; i < it->media.nfiles; i++) {
			g_free(it->media.files[i].camera);
			g_free(it->media.files[i].path);
			g_free(it->media.files[i].staged);
		}
	db_media_set_free(it->media_set);
	g_free(it);
}

int db__bind_text_or_null(sqlite3_stmt *st, int i, const char *s)
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
		    (rc = db__bind_text_or_null(st, 2, it->str1)) != SQLITE_OK ||
		    (rc = db__bind_text_or_null(st, 3, it->str2)) != SQLITE_OK)
			return rc;
		return sqlite3_step(st);
	case DB_ITEM_TREND: {
		const struct db_trend *t = &it->trend;

		st = db->insert_trend;
		*used = st;
		if ((rc = db__bind_text_or_null(st, 1, it->str1)) != SQLITE_OK ||
		    (rc = sqlite3_bind_int64(st, 2, t->t_wall_us)) != SQLITE_OK ||
		    (rc = t->part_id < 0 ? sqlite3_bind_null(st, 3)
					 : sqlite3_bind_int64(st, 3, t->part_id)) != SQLITE_OK ||
		    (rc = sqlite3_bind_double(st, 4, t->velocity_mm_s)) != SQLITE_OK ||
		    (rc = sqlite3_bind_double(st, 5, t->accel_g)) != SQLITE_OK ||
		    (rc = sqlite3_bind_double(st, 6, t->temperature_c)) != SQLITE_OK ||
		    (rc = sqlite3_bind_int(st, 7, t->stale ? 1 : 0)) != SQLITE_OK)
			return rc;
		return sqlite3_step(st);
	}
	case DB_ITEM_MEDIA:
		for (int i = 0; i < it->media.nfiles; i++) {
			const struct media_file *f = &it->media.files[i];

			st = db->insert_media;
			*used = st;
			if ((rc = sqlite3_bind_int64(st, 1, it->media.inspection_id)) != SQLITE_OK ||
			    (rc = db__bind_text_or_null(st, 2, f->camera)) != SQLITE_OK ||
			    (rc = db__bind_text_or_null(st, 3, f->kind)) != SQLITE_OK ||
			    (rc = db__bind_text_or_null(st, 4, f->path)) != SQLITE_OK ||
			    (rc = sqlite3_bind_int64(st, 5, f->bytes)) != SQLITE_OK)
				return rc;
			if ((rc = sqlite3_step(st)) != SQLITE_DONE)
				return rc;
			sqlite3_reset(st);
			if (strcmp(f->kind, "image") != 0)
				continue;
			st = db->set_image_path;
			*used = st;
			if ((rc = db__bind_text_or_null(st, 1, f->path)) != SQLITE_OK ||
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
	    (rc = db__bind_text_or_null(st, 5, vigil_verdict_name((enum vigil_verdict)r->verdict))) != SQLITE_OK ||
	    (rc = sqlite3_bind_int(st, 6, r->verdict)) != SQLITE_OK ||
	    (rc = db__bind_text_or_null(st, 7, vigil_class_name((enum vigil_defect_class)r->defect_class))) != SQLITE_OK ||
	    (rc = sqlite3_bind_int64(st, 8, r->flags)) != SQLITE_OK ||
	    (rc = sqlite3_bind_double(st, 9, r->score)) != SQLITE_OK ||
	    (rc = sqlite3_bind_double(st, 10, r->vision_score)) != SQLITE_OK ||
	    (rc = sqlite3_bind_double(st, 11, r->signal_score)) != SQLITE_OK ||
	    (rc = sqlite3_bind_double(st, 12, r->latency_ms)) != SQLITE_OK ||
	    (rc = sqlite3_bind_double(st, 13, r->infer_ms)) != SQLITE_OK ||
	    (rc = db__bind_text_or_null(st, 14, r->model_version)) != SQLITE_OK ||
	    (rc = db__bind_text_or_null(st, 15, r->image_path)) != SQLITE_OK)
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
	    (rc = db__bind_text_or_null(st, 2, v->iso_zone ? zone : NULL)) != SQLITE_OK ||
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

/* Counts the rows (inspections, events and trend readings) among items. */
static uint64_t rows_in(struct db_item *it)
{
	return it->kind == DB_ITEM_INSPECTION || it->kind == DB_ITEM_EVENT ||
	       it->kind == DB_ITEM_TREND;
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

static void write_event_at(db_log *db, int64_t t_wall_us, const char *kind,
			   const char *message);

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

void db__write_event(db_log *db, const char *kind, const char *message)
{
	write_event_at(db, vigil_wall_us(), kind, message);
}

static void write_event_at(db_log *db, int64_t t_wall_us, const char *kind,
			   const char *message)
{
	struct db_item it = { .kind = DB_ITEM_EVENT, .event.t_wall_us = t_wall_us };
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
	if (in_transaction && db->opt.commit_delay_ms > 0)
		g_usleep((gulong)db->opt.commit_delay_ms * 1000);
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
				db__hand_media(db, it);
		} else if (it->kind == DB_ITEM_MEDIA) {
			/* No row will point at these files: they go now rather
			 * than wait for the sweep at the next start. */
			db__remove_media_files(db, it);
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
	if (rep.fault && atomic_load(&db->ok)) {
		/* The event cannot be written now (the disk is full, or the
		 * file fails): it is written, with this time, once writing
		 * works again. */
		db->fault_since_us = vigil_wall_us();
		db->fault_failed_before = atomic_load(&db->rows_failed);
		g_free(db->fault_error);
		db->fault_error = g_strdup(rep.error ? rep.error : "out of memory");
		atomic_store(&db->ok, 0);
	}
	atomic_fetch_add(&db->rows_failed, rep.failed);
	if (!rep.fault && rep.written > 0 && !atomic_load(&db->ok)) {
		char *msg = g_strdup_printf("writes failed from here on: %s; %" PRIu64
					    " row(s) not written", db->fault_error,
					    atomic_load(&db->rows_failed) -
						    db->fault_failed_before);

		g_message("database %s: writing works again", db->path);
		write_event_at(db, db->fault_since_us, "db-fault", msg);
		g_free(msg);
		db__write_event(db, "db-ok", "the database accepts writes again");
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

static gpointer writer_main(gpointer data)
{
	db_log *db = data;
	void *item;
	int rc;

	if (db->recovered) {
		char *msg = g_strdup_printf("%s failed its integrity check; it was moved to %s "
					    "and this log started afresh", db->path, db->recovered);

		db__write_event(db, "db-recovered", msg);
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

		if (db__retention_on(db))
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
			db__item_free(db->batch[i]);
			db->batch[i] = NULL;
		}
		db__log_media_drops(db);
		if (retain_asked || (db__retention_on(db) && vigil_now_us() >= db->next_retention_us)) {
			/* A backlog goes in slices, a second apart, rows between. */
			db->next_retention_us = vigil_now_us() +
				(db__retain(db) ? G_USEC_PER_SEC
						: (int64_t)db->opt.retention_period_s * G_USEC_PER_SEC);
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
			db__set_error(err, "cannot move the corrupt database %s aside to %s: %s", from,
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
		{ sql_insert_trend, &db->insert_trend },
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

char *db__default_media_dir(const char *db_path)
{
	return g_strconcat(db_path, ".media", NULL);
}

/* The media directory is recorded in the log, so that readers (vigilctl,
 * the review page) find the files from the database file alone. Given in
 * the options (vigild's [database] media_dir, or its default) it replaces
 * the record; not given (vigilctl upgrade, tools), the recorded one stays
 * in force and only a log without one gets the default. */
static int settle_media_dir(db_log *db, bool given)
{
	sqlite3_stmt *st = NULL;
	int rc;

	if (!given) {
		rc = sqlite3_prepare_v2(db->conn, "SELECT value FROM meta WHERE key = 'media_dir'",
					-1, &st, NULL);
		if (rc == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW &&
		    sqlite3_column_text(st, 0)) {
			g_free(db->media_dir);
			db->media_dir = g_strdup((const char *)sqlite3_column_text(st, 0));
			db->opt.media_dir = db->media_dir;
		}
		sqlite3_finalize(st);
		st = NULL;
	}
	rc = sqlite3_prepare_v2(db->conn, given ? "INSERT OR REPLACE INTO meta (key, value)"
				" VALUES ('media_dir', ?1)" : "INSERT OR IGNORE INTO meta (key, value)"
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
		db__set_error(err, "cannot open %s: %s", path ? path : "(no path)",
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
	db->media_lock_fd = -1;
	db->path = g_strdup(path);
	db->opt = opt;
	dir = opt.media_dir ? g_strdup(opt.media_dir) : db__default_media_dir(path);
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
		db__set_error(err, "cannot open %s: %s", path, db__sqlite_message(db->conn, rc));
		goto fail;
	}
	sqlite3_busy_timeout(db->conn, DB_BUSY_TIMEOUT_MS);

	if (prepare_schema(db, err) < 0)
		goto fail;
	if (settle_media_dir(db, opt.media_dir != NULL) < 0 || prepare_statements(db) < 0) {
		db__set_error(err, "cannot open %s: %s", path, sqlite3_errmsg(db->conn));
		goto fail;
	}
	if (opt.max_pages > 0) {
		char *sql = sqlite3_mprintf("PRAGMA max_page_count = %lld", (long long)opt.max_pages);

		sqlite3_exec(db->conn, sql, NULL, NULL, NULL);
		sqlite3_free(sql);
	}
	if (g_mkdir_with_parents(db->media_dir, 0755) < 0) {
		db__set_error(err, "cannot open %s: cannot create the media directory %s: %s", path,
			  db->media_dir, g_strerror(errno));
		goto fail;
	}
	/* Before the media thread starts: what a crash left half done. */
	db__sweep_media(db);

	db->next_retention_us = vigil_now_us();
	db->queue = bqueue_new(opt.queue_depth);
	db->media_queue = bqueue_new(opt.media_queue);
	db->writer = g_thread_try_new("db-writer", writer_main, db, &gerr);
	if (db->writer)
		db->media_writer = g_thread_try_new("db-media", db__media_main, db, &gerr);
	if (!db->writer || !db->media_writer) {
		db__set_error(err, "cannot open %s: cannot start the writer threads: %s", path,
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
		db__item_free(it);
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
			db__item_free(it);
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

int db_trend(db_log *db, const struct db_trend *row)
{
	struct db_item *it;

	if (!db || !row || !row->source)
		return -EINVAL;
	it = g_new0(struct db_item, 1);
	it->kind = DB_ITEM_TREND;
	it->trend = *row;
	it->str1 = g_strdup(row->source);
	it->trend.source = it->str1;
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
	sqlite3_finalize(db->insert_trend);
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
	g_free(db->fault_error);
	if (db->media_lock_fd >= 0)
		close(db->media_lock_fd);
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


