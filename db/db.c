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
#include <sqlite3.h>

#include "core/bqueue.h"
#include "core/part.h"

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
	/* 4: readings of Modbus vibration transmitters: periodic trend points
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

/* The latest review of each inspection rides along with its row. */
static const char sql_select_inspections[] =
	"SELECT i.part_id, i.trigger_counter, i.seq, i.t_wall_us, i.verdict_code,"
	" i.defect_class, i.flags, i.score, i.vision_score, i.signal_score, i.latency_ms,"
	" i.infer_ms, i.model_version, i.image_path, i.id, r.decision, r.verdict, r.note"
	" FROM inspections i LEFT JOIN reviews r ON r.id ="
	" (SELECT max(id) FROM reviews WHERE inspection_id = i.id)";

enum db_item_kind {
	DB_ITEM_INSPECTION,
	DB_ITEM_EVENT,
	DB_ITEM_TREND,
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
		struct db_trend trend;      /* source points at str1 */
	};
	char *str1, *str2;  /* model_version, image_path; or kind, message; or source */
};

struct db_log {
	char *path;
	/* Used by db_open, then only by the writer thread until db_close has
	 * joined it. */
	sqlite3 *conn;
	sqlite3_stmt *insert_inspection;
	sqlite3_stmt *insert_vibration;
	sqlite3_stmt *insert_event;
	sqlite3_stmt *insert_trend;
	bqueue *queue;                  /* struct db_item *, owned by the queue's reader */
	GThread *writer;
	struct db_item *batch[DB_BATCH_MAX];

	_Atomic uint64_t rows_written;
	_Atomic uint64_t rows_failed;

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

static void item_free(struct db_item *it)
{
	if (!it)
		return;
	g_free(it->str1);
	g_free(it->str2);
	g_free(it);
}

static int bind_text_or_null(sqlite3_stmt *st, int i, const char *s)
{
	/* SQLITE_STATIC: the item outlives the step and reset that use it. */
	return s ? sqlite3_bind_text(st, i, s, -1, SQLITE_STATIC) : sqlite3_bind_null(st, i);
}

/* A failed bind leaves the previous row's value in place, so every bind is
 * checked rather than letting the step write stale data. Returns the
 * SQLite code; SQLITE_DONE on success. The statement is reset by the
 * caller after it has read the error message. */
static int insert_item(db_log *db, const struct db_item *it, sqlite3_stmt **used)
{
	sqlite3_stmt *st;
	int rc;

	if (it->kind == DB_ITEM_EVENT) {
		st = db->insert_event;
		*used = st;
		if ((rc = sqlite3_bind_int64(st, 1, it->event.t_wall_us)) != SQLITE_OK ||
		    (rc = bind_text_or_null(st, 2, it->str1)) != SQLITE_OK ||
		    (rc = bind_text_or_null(st, 3, it->str2)) != SQLITE_OK)
			return rc;
		return sqlite3_step(st);
	}
	if (it->kind == DB_ITEM_TREND) {
		const struct db_trend *t = &it->trend;

		st = db->insert_trend;
		*used = st;
		if ((rc = bind_text_or_null(st, 1, it->str1)) != SQLITE_OK ||
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
	if (rc != SQLITE_DONE || !r->has_vibration)
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
	return sqlite3_step(st);
}

/* What went wrong in one batch, reported once per batch so that a full disk
 * gives one warning per commit rather than one per row. */
struct batch_report {
	uint64_t written;
	uint64_t failed;
	char *error;       /* first failure, malloc */
};

static void note_failure(db_log *db, struct batch_report *rep, uint64_t rows,
			 const char *during)
{
	rep->failed += rows;
	if (!rep->error && asprintf(&rep->error, "%s: %s (%s)", during,
				    sqlite3_errmsg(db->conn),
				    sqlite3_errstr(sqlite3_extended_errcode(db->conn))) < 0)
		rep->error = NULL;
}

/* Writes batch[0..n) in one transaction. A row that fails on its own
 * (a constraint, a trigger) is counted and skipped, and the rest commit.
 * Some errors (disk full, I/O) make SQLite roll the whole transaction
 * back: then the rows already inserted are lost too, are counted as
 * failed, and the rest of the batch goes on in a new transaction. */
static void write_batch(db_log *db, struct db_item **batch, size_t n)
{
	struct batch_report rep = { 0 };
	uint64_t pending = 0;       /* inserted in the open transaction */
	bool in_transaction = false;

	for (size_t i = 0; i < n; i++) {
		sqlite3_stmt *st = NULL;
		int rc;

		if (!in_transaction) {
			if (sqlite3_exec(db->conn, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK) {
				note_failure(db, &rep, n - i, "begin");
				break;
			}
			in_transaction = true;
		}
		rc = insert_item(db, batch[i], &st);
		if (rc == SQLITE_DONE) {
			pending++;
		} else {
			note_failure(db, &rep, 1, "insert");
			if (sqlite3_get_autocommit(db->conn)) {
				note_failure(db, &rep, pending, "insert");
				pending = 0;
				in_transaction = false;
			}
		}
		sqlite3_reset(st);
	}
	if (in_transaction) {
		if (sqlite3_exec(db->conn, "COMMIT", NULL, NULL, NULL) == SQLITE_OK) {
			rep.written += pending;
		} else {
			note_failure(db, &rep, pending, "commit");
			if (!sqlite3_get_autocommit(db->conn))
				sqlite3_exec(db->conn, "ROLLBACK", NULL, NULL, NULL);
		}
	}

	/* The error is in place before the counters move, so that whoever
	 * sees rows_failed grow finds db_last_error already set. */
	if (rep.failed > 0) {
		g_warning("database %s: %" PRIu64 " of %zu rows not written: %s", db->path,
			  rep.failed, n, rep.error ? rep.error : "out of memory");
		g_mutex_lock(&db->error_lock);
		free(db->last_error);
		db->last_error = rep.error;
		g_mutex_unlock(&db->error_lock);
		atomic_fetch_add(&db->rows_failed, rep.failed);
	} else {
		free(rep.error);
	}
	atomic_fetch_add(&db->rows_written, rep.written);
}

static gpointer writer_main(gpointer data)
{
	db_log *db = data;
	void *item;

	/* Block for the first row, then take what else is already waiting,
	 * so that a burst costs one commit. The pop fails only once db_close
	 * has closed the queue and everything in it has been written. */
	while (bqueue_pop(db->queue, &item, -1) == 0) {
		size_t n = 0;

		db->batch[n++] = item;
		while (n < DB_BATCH_MAX && bqueue_pop(db->queue, &item, 0) == 0)
			db->batch[n++] = item;
		write_batch(db, db->batch, n);
		for (size_t i = 0; i < n; i++) {
			item_free(db->batch[i]);
			db->batch[i] = NULL;
		}
	}
	return NULL;
}

db_log *db_open(const char *path, size_t queue_depth, char **err)
{
	db_log *db;
	GError *gerr = NULL;
	int rc;

	if (!path || queue_depth == 0) {
		set_error(err, "cannot open %s: %s", path ? path : "(no path)",
			  path ? "queue depth must be at least 1" : "no path given");
		return NULL;
	}

	db = g_new0(db_log, 1);
	g_mutex_init(&db->error_lock);
	atomic_init(&db->rows_written, 0);
	atomic_init(&db->rows_failed, 0);
	db->path = g_strdup(path);

	rc = sqlite3_open_v2(path, &db->conn, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL);
	if (rc != SQLITE_OK) {
		set_error(err, "cannot open %s: %s", path, sqlite_message(db->conn, rc));
		goto fail;
	}
	sqlite3_busy_timeout(db->conn, DB_BUSY_TIMEOUT_MS);

	if (prepare_schema(db, err) < 0)
		goto fail;

	if (sqlite3_prepare_v3(db->conn, sql_insert_inspection, -1, SQLITE_PREPARE_PERSISTENT,
			       &db->insert_inspection, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v3(db->conn, sql_insert_vibration, -1, SQLITE_PREPARE_PERSISTENT,
			       &db->insert_vibration, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v3(db->conn, sql_insert_event, -1, SQLITE_PREPARE_PERSISTENT,
			       &db->insert_event, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v3(db->conn, sql_insert_trend, -1, SQLITE_PREPARE_PERSISTENT,
			       &db->insert_trend, NULL) != SQLITE_OK) {
		set_error(err, "cannot open %s: %s", path, sqlite3_errmsg(db->conn));
		goto fail;
	}

	db->queue = bqueue_new(queue_depth);
	db->writer = g_thread_try_new("db-writer", writer_main, db, &gerr);
	if (!db->writer) {
		set_error(err, "cannot open %s: cannot start the writer thread: %s", path,
			  gerr->message);
		g_error_free(gerr);
		goto fail;
	}
	return db;

fail:
	db_close(db);
	return NULL;
}

static int enqueue(db_log *db, struct db_item *it)
{
	int rc = bqueue_push(db->queue, it, -1);

	if (rc < 0) {
		item_free(it);
		return rc == -EPIPE ? DB_ECLOSED : rc;
	}
	return 0;
}

int db_submit(db_log *db, const struct db_inspection *row)
{
	struct db_item *it;

	if (!db || !row || !verdict_valid(row->verdict) || !class_valid(row->defect_class))
		return -EINVAL;
	it = g_new0(struct db_item, 1);
	it->kind = DB_ITEM_INSPECTION;
	it->row = *row;
	it->str1 = g_strdup(row->model_version);
	it->str2 = g_strdup(row->image_path);
	it->row.model_version = it->str1;
	it->row.image_path = it->str2;
	return enqueue(db, it);
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
	return enqueue(db, it);
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
	return enqueue(db, it);
}

void db_close(db_log *db)
{
	int rc;

	if (!db)
		return;
	/* Closing the queue lets the writer drain it and then return. */
	if (db->queue)
		bqueue_close(db->queue);
	if (db->writer)
		g_thread_join(db->writer);
	sqlite3_finalize(db->insert_inspection);
	sqlite3_finalize(db->insert_vibration);
	sqlite3_finalize(db->insert_event);
	sqlite3_finalize(db->insert_trend);
	/* The last connection to close checkpoints the WAL into the file and
	 * removes it. */
	rc = sqlite3_close(db->conn);
	if (rc != SQLITE_OK)
		g_warning("database %s: close: %s", db->path, sqlite3_errstr(rc));
	bqueue_free(db->queue);
	g_mutex_clear(&db->error_lock);
	free(db->last_error);
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

/* A read-only connection of its own, so that tools can read while vigild
 * writes: in WAL mode readers and the writer do not block each other. */
static sqlite3 *open_reader(const char *path, char **err)
{
	sqlite3 *conn = NULL;
	int rc;

	if (!path) {
		set_error(err, "cannot open (no path): no path given");
		return NULL;
	}
	rc = sqlite3_open_v2(path, &conn, SQLITE_OPEN_READONLY, NULL);
	if (rc != SQLITE_OK) {
		set_error(err, "cannot open %s: %s", path, sqlite_message(conn, rc));
		sqlite3_close(conn);
		return NULL;
	}
	sqlite3_busy_timeout(conn, DB_BUSY_TIMEOUT_MS);
	return conn;
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

int db_query(const char *path, const struct db_filter *f, const struct db_row_cb *cb,
	     char **err)
{
	static const struct db_filter all = DB_FILTER_ALL;
	sqlite3 *conn;
	sqlite3_stmt *st = NULL;
	GString *sql;
	int rc, ret = DB_ESQLITE;

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
	if (!(conn = open_reader(path, err)))
		return DB_ESQLITE;
	{
		int64_t version = 0;

		if (query_int(conn, "PRAGMA user_version", &version) == SQLITE_OK &&
		    version < DB_SCHEMA_VERSION) {
			set_error(err, "cannot read %s: its schema version %" PRId64 " is older "
				  "than this build's %d; vigild upgrades it when it next opens it "
				  "(or run: vigilctl --db FILE upgrade)",
				  path, version, DB_SCHEMA_VERSION);
			sqlite3_close(conn);
			return DB_ESQLITE;
		}
	}
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
	rc = sqlite3_prepare_v2(conn, sql->str, -1, &st, NULL);
	g_string_free(sql, TRUE);
	if (rc != SQLITE_OK)
		goto sqlite_fail;
	/* Binding a number the statement does not use fails harmlessly
	 * (SQLITE_RANGE); the ones it uses cannot fail. */
	sqlite3_bind_int64(st, 1, f->since_us);
	sqlite3_bind_int64(st, 2, f->until_us);
	sqlite3_bind_text(st, 3, f->verdict, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 4, f->defect_class, -1, SQLITE_STATIC);
	sqlite3_bind_double(st, 5, f->min_score);
	sqlite3_bind_double(st, 6, f->max_score);
	sqlite3_bind_int64(st, 7, f->part_id);
	sqlite3_bind_int64(st, 8, f->limit);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
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

		if (cb->fn(&row, cb->data) != 0) {
			rc = SQLITE_DONE;
			break;
		}
	}
	if (rc != SQLITE_DONE)
		goto sqlite_fail;
	ret = 0;
	goto out;

sqlite_fail:
	set_error(err, "cannot read %s: %s", path, sqlite3_errmsg(conn));
out:
	sqlite3_finalize(st);
	sqlite3_close(conn);
	return ret;
}

int db_read_inspections(const char *path, const struct db_row_cb *cb, char **err)
{
	return db_query(path, NULL, cb, err);
}

int db_review(const char *path, int64_t part_id, const char *decision, int verdict,
	      const char *note, const char *reviewer, char **err)
{
	sqlite3 *conn = NULL;
	sqlite3_stmt *st = NULL;
	int64_t inspection = -1;
	int rc, ret = DB_ESQLITE;

	if (!decision || (strcmp(decision, "confirm") != 0 && strcmp(decision, "overrule") != 0)) {
		set_error(err, "a review is 'confirm' or 'overrule', not '%s'",
			  decision ? decision : "(none)");
		return -EINVAL;
	}
	if (verdict < VIGIL_VERDICT_ACCEPT || verdict > VIGIL_VERDICT_MARGINAL) {
		set_error(err, "a review needs the right verdict: accept, reject or marginal");
		return -EINVAL;
	}
	rc = sqlite3_open_v2(path, &conn, SQLITE_OPEN_READWRITE, NULL);
	if (rc != SQLITE_OK)
		goto sqlite_fail;
	sqlite3_busy_timeout(conn, DB_BUSY_TIMEOUT_MS);
	rc = sqlite3_prepare_v2(conn, "SELECT id FROM inspections WHERE part_id = ?1"
				" ORDER BY id DESC LIMIT 1", -1, &st, NULL);
	if (rc != SQLITE_OK)
		goto sqlite_fail;
	sqlite3_bind_int64(st, 1, part_id);
	if ((rc = sqlite3_step(st)) == SQLITE_ROW)
		inspection = sqlite3_column_int64(st, 0);
	else if (rc != SQLITE_DONE)
		goto sqlite_fail;
	sqlite3_finalize(st);
	st = NULL;
	if (inspection < 0) {
		set_error(err, "%s: no inspection of part %" PRId64, path, part_id);
		ret = -ENOENT;
		goto out;
	}
	rc = sqlite3_prepare_v2(conn, "INSERT INTO reviews (inspection_id, t_wall_us, decision,"
				" verdict, note, reviewer) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
				-1, &st, NULL);
	if (rc != SQLITE_OK)
		goto sqlite_fail;
	sqlite3_bind_int64(st, 1, inspection);
	sqlite3_bind_int64(st, 2, g_get_real_time());
	sqlite3_bind_text(st, 3, decision, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 4, vigil_verdict_name((enum vigil_verdict)verdict), -1, SQLITE_STATIC);
	bind_text_or_null(st, 5, note);
	bind_text_or_null(st, 6, reviewer);
	if ((rc = sqlite3_step(st)) != SQLITE_DONE)
		goto sqlite_fail;
	ret = 0;
	goto out;

sqlite_fail:
	set_error(err, "cannot review in %s: %s", path, conn ? sqlite3_errmsg(conn) : "cannot open");
out:
	sqlite3_finalize(st);
	sqlite3_close(conn);
	return ret;
}

int64_t db_count_inspections(const char *path, char **err)
{
	sqlite3 *conn;
	int64_t count = 0;

	if (!(conn = open_reader(path, err)))
		return DB_ESQLITE;
	if (query_int(conn, "SELECT count(*) FROM inspections", &count) != SQLITE_OK) {
		set_error(err, "cannot read %s: %s", path, sqlite3_errmsg(conn));
		count = DB_ESQLITE;
	}
	sqlite3_close(conn);
	return count;
}

int db_read_vibration(const char *path, int64_t inspection_id, struct vigil_vibration *out,
		      char **err)
{
	sqlite3 *conn;
	sqlite3_stmt *st = NULL;
	int rc, ret = DB_ESQLITE;

	if (!out)
		return -EINVAL;
	if (!(conn = open_reader(path, err)))
		return DB_ESQLITE;
	rc = sqlite3_prepare_v2(conn, "SELECT rms_velocity_mm_s, iso_zone, rms_accel_g,"
				" hf_accel_g, peak_g, crest_factor, kurtosis, ftf_env, bpfo_env,"
				" bpfi_env, bsf_env FROM vibration WHERE inspection_id = ?1",
				-1, &st, NULL);
	if (rc != SQLITE_OK)
		goto sqlite_fail;
	sqlite3_bind_int64(st, 1, inspection_id);
	rc = sqlite3_step(st);
	if (rc == SQLITE_DONE) {
		ret = -ENOENT;
		goto out;
	}
	if (rc != SQLITE_ROW)
		goto sqlite_fail;
	{
		const char *zone = (const char *)sqlite3_column_text(st, 1);

		*out = (struct vigil_vibration){
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
	}
	ret = 0;
	goto out;

sqlite_fail:
	set_error(err, "cannot read %s: %s", path, sqlite3_errmsg(conn));
out:
	sqlite3_finalize(st);
	sqlite3_close(conn);
	return ret;
}
