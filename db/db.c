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
	/* 6: the model's own verdict and fused score, beside the verdict the
	 * PLC was told: they differ when a fault or the deadline forced a
	 * fail-safe reject (NULL: no model judged the part). */
	"ALTER TABLE inspections ADD COLUMN model_verdict TEXT;"
	"ALTER TABLE inspections ADD COLUMN model_score REAL;",
};

#define DB_SCHEMA_VERSION ((int)G_N_ELEMENTS(migrations))

int db__schema_version(void)
{
	return DB_SCHEMA_VERSION;
}

static const char sql_insert_inspection[] =
	"INSERT INTO inspections (part_id, trigger_counter, seq, t_wall_us,"
	" verdict, verdict_code, defect_class, flags, score, vision_score,"
	" signal_score, latency_ms, infer_ms, model_version, image_path, model_verdict,"
	" model_score)"
	" VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)";

/* The model's late judgement of a part whose fail-safe row was written at
 * the deadline: beside the verdict the PLC got, never in its place. */
static const char sql_set_late[] =
	"UPDATE inspections SET flags = flags | ?1, vision_score = ?2, signal_score = ?3,"
	" infer_ms = ?4, model_version = ?5, model_verdict = ?6, model_score = ?7,"
	" verdict = ?9, verdict_code = ?10, score = ?11"
	" WHERE id = ?8";

static const char sql_insert_vibration[] =
	"INSERT OR REPLACE INTO vibration (inspection_id, rms_velocity_mm_s, iso_zone, rms_accel_g,"
	" hf_accel_g, peak_g, crest_factor, kurtosis, ftf_env, bpfo_env, bpfi_env, bsf_env)"
	" VALUES (?12, ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)";

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
static int bind_model_verdict(sqlite3_stmt *st, int col, const struct db_inspection *r);
static int insert_vibration(db_log *db, struct db_item *it, sqlite3_stmt **used);

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
	case DB_ITEM_LATE:
		if (!(it->rowid = ticket_rowid(db, it->late_ticket))) {
			/* The fail-safe row itself failed (or is long gone):
			 * this becomes the part's row, with the verdict the PLC
			 * got, as if no row had been queued at the deadline. */
			it->kind = DB_ITEM_INSPECTION;
			break;
		}
		st = db->set_late;
		*used = st;
		if ((rc = sqlite3_bind_int64(st, 1, it->row.flags)) != SQLITE_OK ||
		    (rc = sqlite3_bind_double(st, 2, it->row.vision_score)) != SQLITE_OK ||
		    (rc = sqlite3_bind_double(st, 3, it->row.signal_score)) != SQLITE_OK ||
		    (rc = sqlite3_bind_double(st, 4, it->row.infer_ms)) != SQLITE_OK ||
		    (rc = db__bind_text_or_null(st, 5, it->row.model_version)) != SQLITE_OK ||
		    (rc = bind_model_verdict(st, 6, &it->row)) != SQLITE_OK ||
		    (rc = sqlite3_bind_int64(st, 8, it->rowid)) != SQLITE_OK ||
		    (rc = db__bind_text_or_null(st, 9, vigil_verdict_name(
						(enum vigil_verdict)it->row.verdict))) != SQLITE_OK ||
		    (rc = sqlite3_bind_int(st, 10, it->row.verdict)) != SQLITE_OK ||
		    (rc = sqlite3_bind_double(st, 11, it->row.score)) != SQLITE_OK)
			return rc;
		if ((rc = sqlite3_step(st)) != SQLITE_DONE)
			return rc;
		return insert_vibration(db, it, used);
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
	    (rc = db__bind_text_or_null(st, 15, r->image_path)) != SQLITE_OK ||
	    (rc = bind_model_verdict(st, 16, r)) != SQLITE_OK)
		return rc;
	rc = sqlite3_step(st);
	if (rc != SQLITE_DONE)
		return rc;
	it->rowid = sqlite3_last_insert_rowid(db->conn);
	return insert_vibration(db, it, used);
}

/* The model's verdict and score at column col and col + 1; NULL when no
 * model judged the part. */
static int bind_model_verdict(sqlite3_stmt *st, int col, const struct db_inspection *r)
{
	int rc;

	if (!verdict_valid(r->model_verdict)) {
		if ((rc = sqlite3_bind_null(st, col)) != SQLITE_OK)
			return rc;
		return sqlite3_bind_null(st, col + 1);
	}
	if ((rc = sqlite3_bind_text(st, col,
				    vigil_verdict_name((enum vigil_verdict)r->model_verdict), -1,
				    SQLITE_STATIC)) != SQLITE_OK)
		return rc;
	return sqlite3_bind_double(st, col + 1, r->model_score);
}

/* The part's condition figures, for the inspection row it->rowid. */
static int insert_vibration(db_log *db, struct db_item *it, sqlite3_stmt **used)
{
	const struct db_inspection *r = &it->row;
	sqlite3_stmt *st;
	int rc;

	if (!r->has_vibration)
		return SQLITE_DONE;
	if (*used)
		sqlite3_reset(*used);

	const struct vigil_vibration *v = &r->vibration;
	char zone[2] = { v->iso_zone, '\0' };

	st = db->insert_vibration;
	*used = st;
	if ((rc = sqlite3_bind_int64(st, 12, it->rowid)) != SQLITE_OK ||
	    (rc = sqlite3_bind_double(st, 1, v->rms_velocity_mm_s)) != SQLITE_OK ||
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

/* Errors of the file or the disk, as opposed to one row refused by a
 * constraint or trigger: these make the database fault, and the rows wait
 * in the spool for the disk to come back. */
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

/* The table an item's row goes to, or -1 for items that are not counted
 * as rows (media rows, latencies, control items). */
static int item_table(const struct db_item *it)
{
	switch (it->kind) {
	case DB_ITEM_INSPECTION:
		return DB_TABLE_INSPECTIONS;
	case DB_ITEM_EVENT:
		return DB_TABLE_EVENTS;
	case DB_ITEM_TREND:
		return DB_TABLE_TREND;
	default:
		return -1;
	}
}

static bool is_control(const struct db_item *it)
{
	return it->kind == DB_ITEM_RETAIN || it->kind == DB_ITEM_SYNC;
}

/* The failure of a batch for the warning and db_last_error: the first,
 * unless a fault follows a refused row (the fault is what the operator
 * has to act on). */
static void note_failure(db_log *db, char **error, const char *during, bool fault)
{
	int rc = sqlite3_extended_errcode(db->conn);

	if (*error && !fault)
		return;
	free(*error);
	if (asprintf(error, "%s: %s (%s)", during, sqlite3_errmsg(db->conn),
		     sqlite3_errstr(rc)) < 0)
		*error = NULL;
}

/* Writes batch[0..n) in one transaction and sets each item's outcome. A
 * row the database refuses on its own (a constraint, a trigger) is
 * refused and the rest commit; if its error took the transaction with it
 * (RAISE(ROLLBACK)), the rows before it go again in a new one. A fault of
 * the file or the disk (full, I/O, locked) stops the batch: the
 * transaction is rolled back and every row not refused is pending, to be
 * tried again. Returns true on a fault; *error (malloc) is the first
 * failure, if any. */
static bool write_batch(db_log *db, struct db_item **batch, size_t n, char **error)
{
	bool in_transaction = false, fault = false;
	size_t first = 0, i = 0;

	for (size_t k = 0; k < n; k++) {
		batch[k]->outcome = DB_ITEM_UNTRIED;
		batch[k]->in_transaction = false;
	}
	while (i < n && !fault) {
		struct db_item *it = batch[i];
		sqlite3_stmt *st = NULL;
		int rc;

		if (it->outcome == DB_ITEM_REFUSED) {
			i++;
			continue;
		}
		if (!in_transaction) {
			if (sqlite3_exec(db->conn, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK) {
				note_failure(db, error, "begin", true);
				fault = true;
				break;
			}
			in_transaction = true;
			first = i;
		}
		rc = insert_item(db, it, &st);
		if (rc == SQLITE_DONE) {
			it->in_transaction = true;
		} else if (is_fault(sqlite3_extended_errcode(db->conn))) {
			note_failure(db, error, "insert", true);
			fault = true;
		} else {
			note_failure(db, error, "insert", false);
			it->outcome = DB_ITEM_REFUSED;
			it->rowid = 0;
			if (sqlite3_get_autocommit(db->conn)) {
				for (size_t k = first; k < i; k++) {
					batch[k]->in_transaction = false;
					batch[k]->rowid = 0;
				}
				in_transaction = false;
				if (st)
					sqlite3_reset(st);
				i = first;
				continue;
			}
		}
		if (st)
			sqlite3_reset(st);
		i++;
	}
	if (in_transaction && !fault) {
		if (db->opt.commit_delay_ms > 0)
			g_usleep((gulong)db->opt.commit_delay_ms * 1000);
		if (sqlite3_exec(db->conn, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
			note_failure(db, error, "commit", true);
			fault = true;
		}
	}
	/* After SQLITE_FULL SQLite may have rolled back the statement only,
	 * or the whole transaction; either way nothing of it may stay open. */
	if (fault && !sqlite3_get_autocommit(db->conn))
		sqlite3_exec(db->conn, "ROLLBACK", NULL, NULL, NULL);
	for (size_t k = 0; k < n; k++) {
		struct db_item *it = batch[k];

		if (it->outcome == DB_ITEM_REFUSED)
			continue;
		it->outcome = fault ? DB_ITEM_PENDING : DB_ITEM_WRITTEN;
		if (fault)
			it->rowid = 0;
		it->in_transaction = false;
	}
	return fault;
}

/* Counts an item given up for good (its files go with it). */
static void drop_item(db_log *db, struct db_item *it, enum db_drop_cause cause)
{
	int table = item_table(it);

	if (table >= 0) {
		atomic_fetch_add(&db->dropped[table][cause], 1);
		atomic_fetch_add(&db->rows_failed, 1);
	}
	if (it->kind == DB_ITEM_MEDIA) {
		/* No row will point at these files: they go now rather than
		 * wait for the sweep at the next start. */
		db__remove_media_files(db, it);
		atomic_fetch_add(&db->media_dropped, 1);
	}
}

/* What follows a write: written rows counted, remembered by ticket and
 * their files handed on; refused ones dropped. Pending ones are the
 * caller's. */
static void settle_items(db_log *db, struct db_item **batch, size_t n)
{
	int64_t now = vigil_now_us(), lag = -1;
	uint64_t written = 0;

	for (size_t i = 0; i < n; i++) {
		struct db_item *it = batch[i];

		if (it->outcome == DB_ITEM_REFUSED) {
			drop_item(db, it, DB_DROP_REFUSED);
			continue;
		}
		if (it->outcome != DB_ITEM_WRITTEN || is_control(it))
			continue;
		written += item_table(it) >= 0;
		if (it->ticket && it->rowid) {
			size_t slot = it->ticket % DB_TICKET_RING;

			db->tickets[slot].ticket = it->ticket;
			db->tickets[slot].rowid = it->rowid;
		}
		if (it->media_set && it->rowid)
			db__hand_media(db, it);
		lag = MAX(lag, now - it->t_queued_us);
	}
	atomic_fetch_add(&db->rows_written, written);
	if (lag >= 0) {
		atomic_store(&db->lag_us, lag);
		if (lag > atomic_load(&db->lag_max_us))
			atomic_store(&db->lag_max_us, lag);
	}
}

static void set_last_error(db_log *db, char *error)
{
	g_mutex_lock(&db->error_lock);
	free(db->last_error);
	db->last_error = error;
	g_mutex_unlock(&db->error_lock);
}

/* Writes one event now, in a transaction of its own, and never spools it:
 * for the events that say how a fault went. True when it committed. */
static bool write_event_now(db_log *db, int64_t t_wall_us, const char *kind,
			    const char *message)
{
	struct db_item it = { .kind = DB_ITEM_EVENT, .event.t_wall_us = t_wall_us };
	struct db_item *one = &it;
	char *error = NULL;

	it.str1 = (char *)kind;
	it.str2 = (char *)message;
	write_batch(db, &one, 1, &error);
	free(error);
	if (it.outcome != DB_ITEM_WRITTEN)
		return false;
	atomic_fetch_add(&db->rows_written, 1);
	return true;
}

/* What comes later for a row still in the spool goes into the row itself,
 * so that it is written once, whole: its latency; or the model's late
 * judgement (db_set_late), which takes the row's place as the UPDATE would
 * have changed it (flags added, the judgement's fields replacing the
 * row's; time, ids, latency and image path kept). Takes over it and
 * returns true when it did so. */
static bool absorb_spooled(db_log *db, struct db_item *it)
{
	uint64_t ticket = it->kind == DB_ITEM_LATENCY ? it->latency.ticket
			: it->kind == DB_ITEM_LATE   ? it->late_ticket
						     : 0;
	struct db_item *row = ticket ? g_hash_table_lookup(db->spooled, &ticket) : NULL;
	GList *link;
	char *keep;

	if (!row)
		return false;
	if (it->kind == DB_ITEM_LATENCY) {
		row->row.latency_ms = it->latency.ms;
		db__item_free(it);
		return true;
	}
	it->kind = DB_ITEM_INSPECTION;
	it->ticket = row->ticket;
	it->late_ticket = 0;
	it->row.flags |= row->row.flags;
	it->row.part_id = row->row.part_id;
	it->row.trigger_counter = row->row.trigger_counter;
	it->row.seq = row->row.seq;
	it->row.t_wall_us = row->row.t_wall_us;
	it->row.latency_ms = row->row.latency_ms;
	keep = it->str2;
	it->str2 = row->str2;
	it->row.image_path = it->str2;
	row->str2 = keep;
	if (it->media_set) {
		db_media_set_free(it->media_set);
		it->media_set = NULL;
		atomic_fetch_add(&db->media_dropped, 1);
	}
	link = g_queue_find(&db->spool, row);
	link->data = it;
	g_hash_table_remove(db->spooled, &row->ticket);
	g_hash_table_insert(db->spooled, &it->ticket, it);
	db__item_free(row);
	return true;
}

/* Accepted parts and trend readings go first when the spool is full: the
 * rejects and marginals are what QA reviews and traceability asks for.
 * Among equals the oldest goes: the newest rows are of the parts still in
 * the plant, the ones QA can still act on. */
static bool expendable(const struct db_item *it)
{
	return it->kind == DB_ITEM_TREND || it->kind == DB_ITEM_LATENCY ||
	       (it->kind == DB_ITEM_INSPECTION && it->row.verdict == VIGIL_VERDICT_ACCEPT);
}

/* Makes room for incoming in a full spool: drops the oldest expendable
 * item, incoming included (then returns false: incoming is gone), else the
 * oldest item. */
static bool spool_evict(db_log *db, struct db_item *incoming)
{
	GList *victim = NULL;
	struct db_item *it;

	for (GList *l = db->spool.head; l && !victim; l = l->next)
		if (expendable(l->data))
			victim = l;
	if (!victim && expendable(incoming)) {
		it = incoming;
	} else {
		victim = victim ? victim : db->spool.head;
		it = victim->data;
		g_queue_delete_link(&db->spool, victim);
		if (it->kind == DB_ITEM_INSPECTION)
			g_hash_table_remove(db->spooled, &it->ticket);
	}
	if (!db->spool_overflowed) {
		g_warning("database %s: the spool is full (%zu rows): rows are dropped from now "
			  "on until writes work again, accepted parts and trend readings first",
			  db->path, db->opt.spool_rows);
		db->spool_overflowed = true;
	}
	drop_item(db, it, DB_DROP_SPOOL_FULL);
	db__item_free(it);
	return victim != NULL;
}

/* Takes over it: to the spool's tail (or its head: items coming back from
 * a retry, pushed newest first), making room if the spool is full. An
 * inspection's files are not kept: they would need the disk that fails,
 * and memory for thousands of images. */
static void spool_push(db_log *db, struct db_item *it, bool head)
{
	if (is_control(it)) {
		db__item_free(it);
		return;
	}
	if (absorb_spooled(db, it))
		return;
	if (it->media_set) {
		db_media_set_free(it->media_set);
		it->media_set = NULL;
		atomic_fetch_add(&db->media_dropped, 1);
	}
	if (!head) {
		db->fault_spooled += item_table(it) >= 0;
		if (g_queue_get_length(&db->spool) >= db->opt.spool_rows &&
		    !spool_evict(db, it))
			return;
	}
	if (head)
		g_queue_push_head(&db->spool, it);
	else
		g_queue_push_tail(&db->spool, it);
	if (it->kind == DB_ITEM_INSPECTION && it->ticket)
		g_hash_table_insert(db->spooled, &it->ticket, it);
	atomic_store(&db->spool_depth, g_queue_get_length(&db->spool));
}

static void begin_fault(db_log *db, const char *error)
{
	if (db->faulted)
		return;
	db->faulted = true;
	db->fault_since_us = vigil_wall_us();
	g_free(db->fault_error);
	db->fault_error = g_strdup(error ? error : "out of memory");
	for (int t = 0; t < DB_NTABLES; t++)
		for (int c = 0; c < DB_NDROP_CAUSES; c++)
			db->fault_dropped_before[t][c] = atomic_load(&db->dropped[t][c]);
	db->fault_spooled = 0;
	db->fault_logged = db->drops_logged = db->spool_overflowed = false;
	db->next_retry_us = vigil_now_us() + DB_RETRY_MS * 1000;
	g_warning("database %s: writes fail (%s): rows wait in memory (at most %zu) and are "
		  "written once the disk takes them again", db->path, db->fault_error,
		  db->opt.spool_rows);
	atomic_store(&db->ok, 0);
}

/* Writes items[0..n) (in queue order) or, while writes fail, keeps them
 * in the spool; takes over every item it keeps (items[i] set to NULL). */
static void write_items(db_log *db, struct db_item **items, size_t n)
{
	uint64_t settled = 0;

	for (size_t i = 0; i < n; i++)
		if (items[i]->ticket)
			settled = items[i]->ticket;
	if (!db->faulted) {
		char *error = NULL;
		bool fault = write_batch(db, items, n, &error);
		uint64_t refused = 0;

		settle_items(db, items, n);
		for (size_t i = 0; i < n; i++)
			refused += items[i]->outcome == DB_ITEM_REFUSED && item_table(items[i]) >= 0;
		if (refused)
			g_warning("database %s: %" PRIu64 " of %zu rows not written: %s", db->path,
				  refused, n, error ? error : "out of memory");
		if (fault)
			begin_fault(db, error);
		/* The error is in place before the counters move, so that
		 * whoever sees rows_failed grow finds db_last_error set. */
		if (error)
			set_last_error(db, error);
		for (size_t i = 0; fault && i < n; i++)
			if (items[i]->outcome == DB_ITEM_PENDING) {
				spool_push(db, items[i], false);
				items[i] = NULL;
			}
	} else {
		for (size_t i = 0; i < n; i++) {
			spool_push(db, items[i], false);
			items[i] = NULL;
		}
	}
	/* Last: a submitter that sees its ticket settled finds db_ok and the
	 * counters already telling how it went. */
	if (settled)
		atomic_store(&db->settled, settled);
}

void db__write_event(db_log *db, const char *kind, const char *message)
{
	struct db_item *it = g_new0(struct db_item, 1);

	it->kind = DB_ITEM_EVENT;
	it->event.t_wall_us = vigil_wall_us();
	it->t_queued_us = vigil_now_us();
	it->str1 = g_strdup(kind);
	it->str2 = g_strdup(message);
	write_items(db, &it, 1);
	db__item_free(it);
}

static void drops_since_fault(db_log *db, uint64_t by_cause[DB_NDROP_CAUSES],
			      uint64_t by_table[DB_NTABLES])
{
	memset(by_cause, 0, sizeof(uint64_t) * DB_NDROP_CAUSES);
	memset(by_table, 0, sizeof(uint64_t) * DB_NTABLES);
	for (int t = 0; t < DB_NTABLES; t++)
		for (int c = 0; c < DB_NDROP_CAUSES; c++) {
			uint64_t d = atomic_load(&db->dropped[t][c]) - db->fault_dropped_before[t][c];

			by_cause[c] += d;
			by_table[t] += d;
		}
}

/* While in fault, every DB_RETRY_MS: the "db-fault" event first (the
 * cheapest probe of whether the disk takes writes again), then the spool,
 * oldest first, in batches; once it is empty, "db-rows-dropped" (if any
 * were) and "db-ok", and the fault is over. Whatever fails waits for the
 * next try, in place. */
static void retry_spool(db_log *db)
{
	struct db_item *batch[DB_BATCH_MAX];
	uint64_t by_cause[DB_NDROP_CAUSES], by_table[DB_NTABLES], total = 0;
	char *msg;

	db->next_retry_us = vigil_now_us() + DB_RETRY_MS * 1000;
	if (!db->fault_logged) {
		msg = g_strdup_printf("writes failed from here on: %s", db->fault_error);
		db->fault_logged = write_event_now(db, db->fault_since_us, "db-fault", msg);
		g_free(msg);
		if (!db->fault_logged)
			return;
	}
	while (!g_queue_is_empty(&db->spool)) {
		char *error = NULL;
		size_t n = 0;
		bool fault;

		while (n < DB_BATCH_MAX && !g_queue_is_empty(&db->spool)) {
			batch[n] = g_queue_pop_head(&db->spool);
			if (batch[n]->kind == DB_ITEM_INSPECTION)
				g_hash_table_remove(db->spooled, &batch[n]->ticket);
			n++;
		}
		fault = write_batch(db, batch, n, &error);
		settle_items(db, batch, n);
		if (error)
			set_last_error(db, error);
		for (size_t i = n; i-- > 0;) {
			if (batch[i]->outcome == DB_ITEM_PENDING)
				spool_push(db, batch[i], true);
			else
				db__item_free(batch[i]);
		}
		atomic_store(&db->spool_depth, g_queue_get_length(&db->spool));
		if (fault)
			return;
	}
	/* Pages the full disk kept in the WAL go to the file now. */
	sqlite3_wal_checkpoint_v2(db->conn, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
	drops_since_fault(db, by_cause, by_table);
	for (int c = 0; c < DB_NDROP_CAUSES; c++)
		total += by_cause[c];
	if (total && !db->drops_logged) {
		msg = g_strdup_printf("%" PRIu64 " row(s) dropped during the fault: %" PRIu64
				      " because the spool was full (spool_rows %zu), %" PRIu64
				      " refused by the database; %" PRIu64 " inspection(s), %" PRIu64
				      " event(s), %" PRIu64 " trend reading(s)",
				      total, by_cause[DB_DROP_SPOOL_FULL], db->opt.spool_rows,
				      by_cause[DB_DROP_REFUSED], by_table[DB_TABLE_INSPECTIONS],
				      by_table[DB_TABLE_EVENTS], by_table[DB_TABLE_TREND]);
		db->drops_logged = write_event_now(db, vigil_wall_us(), "db-rows-dropped", msg);
		g_free(msg);
		if (!db->drops_logged)
			return;
	}
	msg = g_strdup_printf("the database accepts writes again; %" PRIu64 " row(s) written "
			      "from the spool, %" PRIu64 " dropped", db->fault_spooled - total,
			      total);
	if (!write_event_now(db, vigil_wall_us(), "db-ok", msg)) {
		g_free(msg);
		return;
	}
	g_message("database %s: writing works again: %s", db->path, msg);
	g_free(msg);
	db->faulted = false;
	atomic_store(&db->ok, 1);
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
	/* Block for the first row (or until retention or a retry is due),
	 * then take what else is already waiting, so that a burst costs one
	 * commit. The pop fails only once db_close has closed the queue and
	 * everything in it has been written. */
	for (;;) {
		int64_t wait = -1;
		size_t n = 0;
		bool retain_asked = false, sync_asked = false;

		if (db__retention_on(db))
			wait = MAX(db->next_retention_us - vigil_now_us(), 0);
		if (db->faulted) {
			int64_t retry = MAX(db->next_retry_us - vigil_now_us(), 0);

			wait = wait < 0 ? retry : MIN(wait, retry);
		}
		rc = bqueue_pop(db->queue, &item, wait);
		if (rc == -EPIPE)
			break;
		if (rc == 0) {
			db->batch[n++] = item;
			while (n < DB_BATCH_MAX && bqueue_pop(db->queue, &item, 0) == 0)
				db->batch[n++] = item;
			for (size_t i = 0; i < n; i++) {
				retain_asked |= db->batch[i]->kind == DB_ITEM_RETAIN;
				sync_asked |= db->batch[i]->kind == DB_ITEM_SYNC;
			}
			write_items(db, db->batch, n);
		}
		for (size_t i = 0; i < n; i++) {
			db__item_free(db->batch[i]);
			db->batch[i] = NULL;
		}
		if (db->faulted && vigil_now_us() >= db->next_retry_us)
			retry_spool(db);
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
	/* Closing: one last try; what the disk still refuses is lost. */
	if (db->faulted)
		retry_spool(db);
	if (!g_queue_is_empty(&db->spool))
		g_warning("database %s: closing with writes still failing: %u row(s) waiting in "
			  "the spool are lost", db->path, g_queue_get_length(&db->spool));
	g_hash_table_remove_all(db->spooled);
	while (!g_queue_is_empty(&db->spool)) {
		struct db_item *it = g_queue_pop_head(&db->spool);

		drop_item(db, it, DB_DROP_CLOSED);
		db__item_free(it);
	}
	atomic_store(&db->spool_depth, 0);
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
		{ sql_set_late, &db->set_late },
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
	if (opt.spool_rows == 0)
		opt.spool_rows = defaults.spool_rows;

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
	for (int t = 0; t < DB_NTABLES; t++)
		for (int c = 0; c < DB_NDROP_CAUSES; c++)
			atomic_init(&db->dropped[t][c], 0);
	atomic_init(&db->spool_depth, 0);
	g_queue_init(&db->spool);
	db->spooled = g_hash_table_new(g_int64_hash, g_int64_equal);
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

/* A queued copy of row, owning its strings and media. */
static struct db_item *new_row_item(enum db_item_kind kind, const struct db_inspection *row,
				    struct db_media_set *media)
{
	struct db_item *it = g_new0(struct db_item, 1);

	it->kind = kind;
	it->row = *row;
	it->str1 = g_strdup(row->model_version);
	it->str2 = g_strdup(row->image_path);
	it->row.model_version = it->str1;
	it->row.image_path = it->str2;
	it->media_set = media;
	return it;
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
	it = new_row_item(DB_ITEM_INSPECTION, row, media);

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

int db_set_late(db_log *db, uint64_t ticket, const struct db_inspection *row,
		struct db_media_set *media)
{
	struct db_item *it;

	if (!db || !ticket || !row || !verdict_valid(row->verdict) ||
	    !class_valid(row->defect_class)) {
		db_media_set_free(media);
		return -EINVAL;
	}
	it = new_row_item(DB_ITEM_LATE, row, media);
	it->late_ticket = ticket;
	return enqueue(db, it, -1);
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
	sqlite3_finalize(db->set_late);
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
	/* Items the writer left spooled only when it never ran. */
	g_queue_clear_full(&db->spool, (GDestroyNotify)db__item_free);
	if (db->spooled)
		g_hash_table_destroy(db->spooled);
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

uint64_t db_rows_dropped(db_log *db, enum db_table table, enum db_drop_cause cause)
{
	if (!db || (int)table < 0 || table >= DB_NTABLES || (int)cause < 0 ||
	    cause >= DB_NDROP_CAUSES)
		return 0;
	return atomic_load(&db->dropped[table][cause]);
}

const char *db_table_name(enum db_table table)
{
	static const char *const names[DB_NTABLES] = { "inspections", "events", "trend" };

	return (int)table >= 0 && table < DB_NTABLES ? names[table] : "unknown";
}

const char *db_drop_cause_name(enum db_drop_cause cause)
{
	static const char *const names[DB_NDROP_CAUSES] = { "spool_full", "refused", "closed" };

	return (int)cause >= 0 && cause < DB_NDROP_CAUSES ? names[cause] : "unknown";
}

size_t db_spool_depth(db_log *db)
{
	return db ? atomic_load(&db->spool_depth) : 0;
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


