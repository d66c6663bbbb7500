/* The log's file at open: its schema and the user_version migrations, the
 * connection's journal and cache settings, and the integrity check that
 * moves a corrupt file aside (db/db-private.h). */
#include "db/db.h"

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include <glib.h>
#include <glib/gstdio.h>
#include <sqlite3.h>

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
	/* 7: labels worth training on: QA's defect type (the package's classes
	 * or the plant's own list) and the region QA painted, a 0/255 PNG mask
	 * of the image's size by path relative to the media directory (NULL:
	 * none painted). */
	"ALTER TABLE reviews ADD COLUMN defect_type TEXT;"
	"ALTER TABLE reviews ADD COLUMN mask_path TEXT;",
	/* 8: files of the recent ring (media/recent/), kept only for the
	 * ring's window; the partial index lets the writer find the oldest
	 * of them without a scan of the media table. */
	"ALTER TABLE media ADD COLUMN recent INTEGER NOT NULL DEFAULT 0;"
	"CREATE INDEX media_recent ON media (id) WHERE recent = 1;",
	/* 9: tracing escapes: the job in force and the station per row (a
	 * central log mixes stations), indexed for the review page's filters;
	 * and the parts reported as escapes (found defective downstream or by
	 * the customer), several reports of one part allowed. */
	"ALTER TABLE inspections ADD COLUMN job INTEGER;"
	"ALTER TABLE inspections ADD COLUMN station TEXT;"
	"CREATE INDEX inspections_job ON inspections (job, t_wall_us);"
	"CREATE INDEX inspections_station ON inspections (station, t_wall_us);"
	"CREATE INDEX inspections_model ON inspections (model_version, t_wall_us);"
	"CREATE TABLE escapes ("
	"  id INTEGER PRIMARY KEY,"
	"  inspection_id INTEGER NOT NULL REFERENCES inspections (id),"
	"  t_wall_us INTEGER NOT NULL,"
	"  note TEXT,"
	"  reporter TEXT"
	");"
	"CREATE INDEX escapes_inspection ON escapes (inspection_id);",
	/* 10: reviews made in the plant's central database and pulled down by
	 * the forwarder (db/plant.h) carry their central id: unique, so one
	 * pulled twice is stored once, and never forwarded back up. */
	"ALTER TABLE reviews ADD COLUMN central_id INTEGER;"
	"CREATE UNIQUE INDEX reviews_central ON reviews (central_id) WHERE central_id IS NOT NULL;",
	/* 11: inspections changed after the forwarder may have read them (the
	 * image path the media thread sets, the latency, the model's late
	 * verdict), so that it sends them again: a row is forwarded once, but
	 * the writer completes it later. Only rows up to the forwarder's
	 * plant_read_upto (meta) are recorded, so without a forwarder, or
	 * while the plant database is away, nothing accumulates. */
	"CREATE TABLE plant_changed ("
	"  id INTEGER PRIMARY KEY,"
	"  inspection_id INTEGER NOT NULL"
	");"
	"CREATE TRIGGER plant_changed_inspections AFTER UPDATE ON inspections"
	"  WHEN NEW.id <= CAST((SELECT value FROM meta WHERE key = 'plant_read_upto') AS INTEGER)"
	"  BEGIN INSERT INTO plant_changed (inspection_id) VALUES (NEW.id); END;",
	/* 12: media kind 'anomaly', a fused package's anomaly map (its
	 * good-only model's) kept beside the defect map. SQLite cannot change
	 * a CHECK in place, so the table is rebuilt the way
	 * https://www.sqlite.org/lang_altertable.html#otheralter describes:
	 * a new table with every column media has by now, the rows copied
	 * with their ids (the plant forwarder reads media by id, and the
	 * ring's bookkeeping follows ids), the old one dropped, the new one
	 * renamed, its indexes made again. Nothing else names media: no
	 * foreign key points at it, no trigger or view reads it, and the
	 * connection leaves foreign_keys off, so dropping it cascades
	 * nothing. */
	"CREATE TABLE media_new ("
	"  id INTEGER PRIMARY KEY,"
	"  inspection_id INTEGER NOT NULL REFERENCES inspections (id),"
	"  camera TEXT,"
	"  kind TEXT NOT NULL CHECK (kind IN ('image', 'heatmap', 'anomaly', 'vibration')),"
	"  path TEXT NOT NULL,"
	"  bytes INTEGER,"
	"  recent INTEGER NOT NULL DEFAULT 0"
	");"
	"INSERT INTO media_new (id, inspection_id, camera, kind, path, bytes, recent)"
	"  SELECT id, inspection_id, camera, kind, path, bytes, recent FROM media;"
	"DROP TABLE media;"
	"ALTER TABLE media_new RENAME TO media;"
	"CREATE INDEX media_inspection ON media (inspection_id);"
	"CREATE INDEX media_recent ON media (id) WHERE recent = 1;",
};

#define DB_SCHEMA_VERSION ((int)G_N_ELEMENTS(migrations))

int db__schema_version(void)
{
	return DB_SCHEMA_VERSION;
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
int db__prepare_schema(db_log *db, char **err)
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

/* PRAGMA quick_check on a file that exists: 1 when it passes, 0 when it
 * fails (corrupt), -1 when the file cannot be judged (not a database, no
 * access): that is left to the normal open to report. */
int db__check_integrity(const char *path, char **why)
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
char *db__move_aside(const char *path, char **err)
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
