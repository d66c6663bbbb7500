/* Tests for db/: the inspection log against a real SQLite file in a
 * temporary directory, written from several threads and read back both
 * through db_read_inspections and directly with SQLite. */
#include "db/db.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <glib.h>
#include <glib/gstdio.h>
#include <sqlite3.h>

#include "core/part.h"
#include "cvwrap/cvwrap.h"
#include "db/db-private.h"   /* db__schema_version: the newest, whatever its number */

/* The newest schema: tables inspections, events, vibration, reviews, media,
 * meta, trend, escapes; their indexes (media_recent and reviews_central among
 * them), meta's primary-key index. */
#define SCHEMA_VERSION db__schema_version()
#define SCHEMA_OBJECTS 22

#define ROWS_PER_THREAD 1000
#define WRITER_THREADS 2
#define ROWS_TOTAL (ROWS_PER_THREAD * WRITER_THREADS)

struct fixture {
	char *dir;
	char *path;
};

static void fixture_setup(struct fixture *fx, gconstpointer data)
{
	GError *gerr = NULL;

	(void)data;
	fx->dir = g_dir_make_tmp("vigil-test-db-XXXXXX", &gerr);
	g_assert_no_error(gerr);
	fx->path = g_build_filename(fx->dir, "log.db", NULL);
}

/* Removes the database and whatever -wal, -shm or test files sit next to
 * it; the tests create nothing deeper than one subdirectory. */
static void remove_tree(const char *dir)
{
	GDir *d = g_dir_open(dir, 0, NULL);
	const char *name;

	if (!d)
		return;
	while ((name = g_dir_read_name(d))) {
		char *p = g_build_filename(dir, name, NULL);

		if (g_file_test(p, G_FILE_TEST_IS_DIR))
			remove_tree(p);
		else
			g_assert_cmpint(g_remove(p), ==, 0);
		g_free(p);
	}
	g_dir_close(d);
	g_assert_cmpint(g_rmdir(dir), ==, 0);
}

static void fixture_teardown(struct fixture *fx, gconstpointer data)
{
	(void)data;
	remove_tree(fx->dir);
	g_free(fx->path);
	g_free(fx->dir);
}

/* ---- direct SQLite access, independent of the module under test ---- */

static sqlite3 *sql_open(const char *path)
{
	sqlite3 *conn = NULL;

	g_assert_cmpint(sqlite3_open_v2(path, &conn, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE,
					NULL), ==, SQLITE_OK);
	sqlite3_busy_timeout(conn, 5000);
	return conn;
}

static void sql_exec(const char *path, const char *sql)
{
	sqlite3 *conn = sql_open(path);
	char *msg = NULL;

	if (sqlite3_exec(conn, sql, NULL, NULL, &msg) != SQLITE_OK)
		g_error("%s: %s", sql, msg);
	sqlite3_close(conn);
}

static int64_t sql_int(const char *path, const char *sql)
{
	sqlite3 *conn = sql_open(path);
	sqlite3_stmt *st = NULL;
	int64_t v;

	g_assert_cmpint(sqlite3_prepare_v2(conn, sql, -1, &st, NULL), ==, SQLITE_OK);
	g_assert_cmpint(sqlite3_step(st), ==, SQLITE_ROW);
	v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	sqlite3_close(conn);
	return v;
}

static char *sql_text(const char *path, const char *sql)
{
	sqlite3 *conn = sql_open(path);
	sqlite3_stmt *st = NULL;
	char *v;

	g_assert_cmpint(sqlite3_prepare_v2(conn, sql, -1, &st, NULL), ==, SQLITE_OK);
	g_assert_cmpint(sqlite3_step(st), ==, SQLITE_ROW);
	v = g_strdup((const char *)sqlite3_column_text(st, 0));
	sqlite3_finalize(st);
	sqlite3_close(conn);
	return v;
}

/* ---- rows ---- */

/* Every field of row i is derived from i, so that any row read back can be
 * checked in full. Strings are written into the caller's buffers. */
static void make_row(uint32_t i, struct db_inspection *r, char *model, size_t model_len,
		     char *image, size_t image_len)
{
	memset(r, 0, sizeof *r);
	r->part_id = i;
	r->trigger_counter = i % 65535 + 1;
	r->seq = ((uint64_t)1 << 40) + i;
	r->t_wall_us = INT64_C(1700000000000000) + (int64_t)i * 1000;
	r->verdict = VIGIL_VERDICT_ACCEPT + (int)(i % 3);
	r->defect_class = (int)(i % 4);
	r->flags = i & 0x3f;
	r->score = 0.125 + i / 4096.0;
	r->vision_score = 1.0 / (i + 3);
	r->signal_score = -0.5 * i;
	r->latency_ms = 12.25 + i;
	r->infer_ms = 3.0 + i / 7.0;
	if (i % 7 == 0) {
		r->model_version = NULL;
	} else {
		snprintf(model, model_len, "resnet18-2024.%u", i % 13);
		r->model_version = model;
	}
	if (i % 5 == 0) {
		r->image_path = NULL;
	} else {
		snprintf(image, image_len, "/var/lib/vigil/images/%06u-%s.png", i,
			 i % 2 ? "front" : "side");
		r->image_path = image;
	}
}

static void assert_row_matches(const struct db_inspection *got)
{
	struct db_inspection want;
	char model[64], image[128];

	make_row(got->part_id, &want, model, sizeof model, image, sizeof image);
	g_assert_cmpuint(got->part_id, ==, want.part_id);
	g_assert_cmpuint(got->trigger_counter, ==, want.trigger_counter);
	g_assert_cmpuint(got->seq, ==, want.seq);
	g_assert_cmpint(got->t_wall_us, ==, want.t_wall_us);
	g_assert_cmpint(got->verdict, ==, want.verdict);
	g_assert_cmpint(got->defect_class, ==, want.defect_class);
	g_assert_cmpuint(got->flags, ==, want.flags);
	/* REAL is an IEEE double: values come back bit for bit. */
	g_assert_cmpfloat(got->score, ==, want.score);
	g_assert_cmpfloat(got->vision_score, ==, want.vision_score);
	g_assert_cmpfloat(got->signal_score, ==, want.signal_score);
	g_assert_cmpfloat(got->latency_ms, ==, want.latency_ms);
	g_assert_cmpfloat(got->infer_ms, ==, want.infer_ms);
	g_assert_cmpstr(got->model_version, ==, want.model_version);
	g_assert_cmpstr(got->image_path, ==, want.image_path);
}

/* Submits rows from a stack buffer that is scribbled over right after, so a
 * module that kept the caller's pointers would read garbage. */
static void submit_range(db_log *db, uint32_t first, uint32_t count)
{
	for (uint32_t i = first; i < first + count; i++) {
		struct db_inspection r;
		char model[64], image[128];

		make_row(i, &r, model, sizeof model, image, sizeof image);
		g_assert_cmpint(db_submit(db, &r), ==, 0);
		memset(model, 'X', sizeof model - 1);
		memset(image, 'X', sizeof image - 1);
		model[sizeof model - 1] = image[sizeof image - 1] = '\0';
	}
}

struct producer {
	db_log *db;
	uint32_t first, count;
};

static gpointer producer_main(gpointer data)
{
	struct producer *p = data;

	submit_range(p->db, p->first, p->count);
	return NULL;
}

/* One snapshot of the log's counters. */
static struct db_stats stats(db_log *db)
{
	struct db_stats st;

	db_get_stats(db, &st);
	return st;
}

/* The writer commits asynchronously; wait until it has dealt with
 * `expected` rows one way or the other. */
static void wait_settled(db_log *db, uint64_t expected)
{
	gint64 deadline = g_get_monotonic_time() + 30 * G_USEC_PER_SEC;
	struct db_stats st;

	for (st = stats(db); st.rows_written + st.rows_failed < expected; st = stats(db)) {
		if (g_get_monotonic_time() > deadline)
			g_error("writer settled only %" PRIu64 " + %" PRIu64 " of %" PRIu64 " rows",
				st.rows_written, st.rows_failed, expected);
		g_usleep(2000);
	}
}

static db_log *open_ok(const char *path, size_t depth)
{
	char *err = NULL;
	db_log *db = db_open(path, depth, &err);

	if (!db)
		g_error("db_open(%s): %s", path, err);
	g_assert_null(err);
	return db;
}

/* ---- tests ---- */

struct read_check {
	int64_t rows;
	uint8_t *seen;
	int64_t last_in_range[WRITER_THREADS];
};

static int check_row(const struct db_inspection *row, void *data)
{
	struct read_check *c = data;
	uint32_t producer;

	c->rows++;
	g_assert_cmpuint(row->part_id, <, ROWS_TOTAL);
	g_assert_cmpuint(c->seen[row->part_id]++, ==, 0);
	assert_row_matches(row);
	/* Rows come back in the order written; each producer's rows keep
	 * the order it submitted them in. */
	producer = row->part_id / ROWS_PER_THREAD;
	g_assert_cmpint((int64_t)row->part_id, >, c->last_in_range[producer]);
	c->last_in_range[producer] = row->part_id;
	return 0;
}

static void test_write_read(struct fixture *fx, gconstpointer data)
{
	/* A small queue so the producers hit back-pressure. */
	db_log *db = open_ok(fx->path, 64);
	struct producer prod[WRITER_THREADS];
	GThread *threads[WRITER_THREADS];
	struct read_check check = { 0 };
	struct db_row_cb cb = { check_row, &check };
	int64_t seen_count = 0;
	char *err = NULL;

	(void)data;
	for (int t = 0; t < WRITER_THREADS; t++) {
		prod[t] = (struct producer){ db, (uint32_t)t * ROWS_PER_THREAD, ROWS_PER_THREAD };
		threads[t] = g_thread_new("producer", producer_main, &prod[t]);
	}
	/* Read while the writer writes, as vigil-sim does: the count never
	 * fails and never goes backwards. */
	while (stats(db).rows_written < ROWS_TOTAL / 2) {
		int64_t n = db_count_inspections(fx->path, &err);

		if (n < 0)
			g_error("count while writing: %s", err);
		g_assert_cmpint(n, >=, seen_count);
		seen_count = n;
		g_usleep(1000);
	}
	for (int t = 0; t < WRITER_THREADS; t++)
		g_thread_join(threads[t]);
	wait_settled(db, ROWS_TOTAL);
	g_assert_cmpuint(stats(db).rows_written, ==, ROWS_TOTAL);
	g_assert_cmpuint(stats(db).rows_failed, ==, 0);
	g_assert_null(db_last_error(db));
	db_close(db);

	g_assert_cmpint(db_count_inspections(fx->path, &err), ==, ROWS_TOTAL);
	g_assert_null(err);

	check.seen = g_new0(uint8_t, ROWS_TOTAL);
	for (int t = 0; t < WRITER_THREADS; t++)
		check.last_in_range[t] = -1;
	g_assert_cmpint(db_read_inspections(fx->path, &cb, &err), ==, 0);
	g_assert_null(err);
	g_assert_cmpint(check.rows, ==, ROWS_TOTAL);
	g_free(check.seen);
}

/* The stored text columns agree with the codes, checked with SQLite alone. */
static void test_columns(struct fixture *fx, gconstpointer data)
{
	db_log *db = open_ok(fx->path, 16);
	sqlite3 *conn;
	sqlite3_stmt *st = NULL;
	int64_t rows = 0;

	(void)data;
	submit_range(db, 0, 300);
	db_close(db);

	conn = sql_open(fx->path);
	g_assert_cmpint(sqlite3_prepare_v2(conn,
		"SELECT verdict, verdict_code, defect_class, part_id FROM inspections",
		-1, &st, NULL), ==, SQLITE_OK);
	while (sqlite3_step(st) == SQLITE_ROW) {
		int code = sqlite3_column_int(st, 1);
		uint32_t part = (uint32_t)sqlite3_column_int64(st, 3);

		g_assert_cmpint(code, ==, VIGIL_VERDICT_ACCEPT + (int)(part % 3));
		g_assert_cmpstr((const char *)sqlite3_column_text(st, 0), ==,
				vigil_verdict_name((enum vigil_verdict)code));
		g_assert_cmpstr((const char *)sqlite3_column_text(st, 2), ==,
				vigil_class_name((enum vigil_defect_class)(part % 4)));
		rows++;
	}
	sqlite3_finalize(st);
	g_assert_cmpint(rows, ==, 300);

	/* One row, every column, as stored. */
	g_assert_cmpint(sqlite3_prepare_v2(conn,
		"SELECT part_id, trigger_counter, seq, t_wall_us, verdict, verdict_code,"
		" defect_class, flags, score, vision_score, signal_score, latency_ms,"
		" infer_ms, model_version, image_path FROM inspections WHERE part_id = 263",
		-1, &st, NULL), ==, SQLITE_OK);
	g_assert_cmpint(sqlite3_step(st), ==, SQLITE_ROW);
	g_assert_cmpint(sqlite3_column_int64(st, 0), ==, 263);
	g_assert_cmpint(sqlite3_column_int64(st, 1), ==, 264);
	g_assert_cmpint(sqlite3_column_int64(st, 2), ==, (INT64_C(1) << 40) + 263);
	g_assert_cmpint(sqlite3_column_int64(st, 3), ==, INT64_C(1700000000263000));
	g_assert_cmpstr((const char *)sqlite3_column_text(st, 4), ==, "marginal");
	g_assert_cmpint(sqlite3_column_int(st, 5), ==, VIGIL_VERDICT_MARGINAL);
	g_assert_cmpstr((const char *)sqlite3_column_text(st, 6), ==, "surface+vibration");
	g_assert_cmpint(sqlite3_column_int64(st, 7), ==, 263 & 0x3f);
	g_assert_cmpfloat(sqlite3_column_double(st, 8), ==, 0.125 + 263 / 4096.0);
	g_assert_cmpfloat(sqlite3_column_double(st, 9), ==, 1.0 / 266);
	g_assert_cmpfloat(sqlite3_column_double(st, 10), ==, -0.5 * 263);
	g_assert_cmpfloat(sqlite3_column_double(st, 11), ==, 12.25 + 263);
	g_assert_cmpfloat(sqlite3_column_double(st, 12), ==, 3.0 + 263 / 7.0);
	g_assert_cmpstr((const char *)sqlite3_column_text(st, 13), ==, "resnet18-2024.3");
	g_assert_cmpstr((const char *)sqlite3_column_text(st, 14), ==,
			"/var/lib/vigil/images/000263-front.png");
	sqlite3_finalize(st);

	/* NULL strings stay NULL (part 0: no model version, no image). */
	g_assert_cmpint(sqlite3_prepare_v2(conn,
		"SELECT model_version IS NULL AND image_path IS NULL FROM inspections"
		" WHERE part_id = 0", -1, &st, NULL), ==, SQLITE_OK);
	g_assert_cmpint(sqlite3_step(st), ==, SQLITE_ROW);
	g_assert_cmpint(sqlite3_column_int(st, 0), ==, 1);
	sqlite3_finalize(st);
	sqlite3_close(conn);
}

static int keep_row(const struct db_inspection *row, void *data)
{
	struct db_inspection *out = data;

	*out = *row;
	out->model_version = out->image_path = NULL; /* not valid after the call */
	return 0;
}

static void test_nan_scores(struct fixture *fx, gconstpointer data)
{
	db_log *db = open_ok(fx->path, 4);
	struct db_inspection r = { .part_id = 7, .verdict = VIGIL_VERDICT_REJECT,
				   .flags = VIGIL_FLAG_NO_FRAME | VIGIL_FLAG_FAILSAFE,
				   .score = 1.0, .vision_score = NAN, .signal_score = 0.25,
				   .latency_ms = NAN, .infer_ms = NAN };
	struct db_inspection got;
	struct db_row_cb cb = { keep_row, &got };

	(void)data;
	g_assert_cmpint(db_submit(db, &r), ==, 0);
	db_close(db);
	g_assert_cmpint(db_read_inspections(fx->path, &cb, NULL), ==, 0);
	g_assert_cmpuint(got.part_id, ==, 7);
	g_assert_cmpfloat(got.score, ==, 1.0);
	g_assert_true(isnan(got.vision_score));
	g_assert_cmpfloat(got.signal_score, ==, 0.25);
	g_assert_true(isnan(got.latency_ms));
	g_assert_true(isnan(got.infer_ms));
	g_assert_cmpint(sql_int(fx->path,
		"SELECT vision_score IS NULL FROM inspections WHERE part_id = 7"), ==, 1);
}

static void test_reopen(struct fixture *fx, gconstpointer data)
{
	db_log *db = open_ok(fx->path, 16);
	int64_t schema_cookie;

	(void)data;
	submit_range(db, 0, 10);
	db_close(db);
	g_assert_cmpint(sql_int(fx->path, "PRAGMA user_version"), ==, SCHEMA_VERSION);
	g_assert_cmpint(sql_int(fx->path, "SELECT count(*) FROM sqlite_master"), ==, SCHEMA_OBJECTS);
	/* The schema cookie moves with every schema change: unchanged means
	 * no migration ran again. */
	schema_cookie = sql_int(fx->path, "PRAGMA schema_version");

	db = open_ok(fx->path, 16);
	submit_range(db, 10, 5);
	db_close(db);
	g_assert_cmpint(sql_int(fx->path, "PRAGMA user_version"), ==, SCHEMA_VERSION);
	g_assert_cmpint(sql_int(fx->path, "PRAGMA schema_version"), ==, schema_cookie);
	g_assert_cmpint(sql_int(fx->path, "SELECT count(*) FROM sqlite_master"), ==, SCHEMA_OBJECTS);
	g_assert_cmpint(db_count_inspections(fx->path, NULL), ==, 15);
}

/* The schema as each earlier release left it, to migrate from: each
 * version's text adds to the one before, as the shipped migrations did. */
static const char *const old_schema[] = {
	/* 1 */
	"CREATE TABLE inspections (id INTEGER PRIMARY KEY, part_id INTEGER NOT NULL,"
	" trigger_counter INTEGER NOT NULL, seq INTEGER NOT NULL,"
	" t_wall_us INTEGER NOT NULL, verdict TEXT NOT NULL CHECK (verdict IN"
	" ('accept', 'reject', 'marginal')), verdict_code INTEGER NOT NULL,"
	" defect_class TEXT NOT NULL, flags INTEGER NOT NULL, score REAL,"
	" vision_score REAL, signal_score REAL, latency_ms REAL, infer_ms REAL,"
	" model_version TEXT, image_path TEXT);"
	"CREATE INDEX inspections_part_id ON inspections (part_id);"
	"CREATE INDEX inspections_t_wall_us ON inspections (t_wall_us);"
	"CREATE TABLE events (id INTEGER PRIMARY KEY, t_wall_us INTEGER NOT NULL,"
	" kind TEXT NOT NULL, message TEXT NOT NULL);"
	"INSERT INTO inspections VALUES (1, 5, 1, 0, 10, 'accept', 1, 'none', 0,"
	" 0.1, 0.1, 0.1, 2.0, 1.0, 'synthetic-1', NULL);",
	/* 2 */
	"CREATE TABLE vibration (inspection_id INTEGER PRIMARY KEY REFERENCES inspections (id),"
	" rms_velocity_mm_s REAL, iso_zone TEXT, rms_accel_g REAL, hf_accel_g REAL,"
	" peak_g REAL, crest_factor REAL, kurtosis REAL, ftf_env REAL, bpfo_env REAL,"
	" bpfi_env REAL, bsf_env REAL);"
	"INSERT INTO vibration (inspection_id, rms_velocity_mm_s, iso_zone) VALUES (1, 1.5, 'B');",
	/* 3 */
	"CREATE TABLE reviews (id INTEGER PRIMARY KEY,"
	" inspection_id INTEGER NOT NULL REFERENCES inspections (id),"
	" t_wall_us INTEGER NOT NULL,"
	" decision TEXT NOT NULL CHECK (decision IN ('confirm', 'overrule')),"
	" verdict TEXT NOT NULL CHECK (verdict IN ('accept', 'reject', 'marginal')),"
	" note TEXT, reviewer TEXT);"
	"CREATE INDEX reviews_inspection ON reviews (inspection_id);"
	"INSERT INTO reviews VALUES (1, 1, 20, 'overrule', 'reject', 'scratch', 'qa');",
	/* 4: with two long-term files of inspection 1, ids with gaps (rows
	 * retention removed) so that a rebuild that renumbers them shows. */
	"CREATE TABLE media (id INTEGER PRIMARY KEY,"
	" inspection_id INTEGER NOT NULL REFERENCES inspections (id), camera TEXT,"
	" kind TEXT NOT NULL CHECK (kind IN ('image', 'heatmap', 'vibration')),"
	" path TEXT NOT NULL, bytes INTEGER);"
	"CREATE INDEX media_inspection ON media (inspection_id);"
	"CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT);"
	"INSERT INTO media VALUES (3, 1, 'top', 'image', '19700101/1-5-top.png', 1000);"
	"INSERT INTO media VALUES (7, 1, NULL, 'heatmap', '19700101/1-5-heatmap.png', 200);",
	/* 5 */
	"CREATE TABLE trend (id INTEGER PRIMARY KEY, source TEXT NOT NULL,"
	" t_wall_us INTEGER NOT NULL, part_id INTEGER, velocity_mm_s REAL, accel_g REAL,"
	" temperature_c REAL, stale INTEGER NOT NULL);"
	"CREATE INDEX trend_source_time ON trend (source, t_wall_us);",
	/* 6 */
	"ALTER TABLE inspections ADD COLUMN model_verdict TEXT;"
	"ALTER TABLE inspections ADD COLUMN model_score REAL;",
	/* 7 */
	"ALTER TABLE reviews ADD COLUMN defect_type TEXT;"
	"ALTER TABLE reviews ADD COLUMN mask_path TEXT;",
	/* 8: with a file of the recent ring. */
	"ALTER TABLE media ADD COLUMN recent INTEGER NOT NULL DEFAULT 0;"
	"CREATE INDEX media_recent ON media (id) WHERE recent = 1;"
	"INSERT INTO media VALUES (11, 1, 'side', 'image', 'recent/19700101/1-5-side.png', 900, 1);",
	/* 9 */
	"ALTER TABLE inspections ADD COLUMN job INTEGER;"
	"ALTER TABLE inspections ADD COLUMN station TEXT;"
	"CREATE INDEX inspections_job ON inspections (job, t_wall_us);"
	"CREATE INDEX inspections_station ON inspections (station, t_wall_us);"
	"CREATE INDEX inspections_model ON inspections (model_version, t_wall_us);"
	"CREATE TABLE escapes (id INTEGER PRIMARY KEY,"
	" inspection_id INTEGER NOT NULL REFERENCES inspections (id),"
	" t_wall_us INTEGER NOT NULL, note TEXT, reporter TEXT);"
	"CREATE INDEX escapes_inspection ON escapes (inspection_id);",
	/* 10 */
	"ALTER TABLE reviews ADD COLUMN central_id INTEGER;"
	"CREATE UNIQUE INDEX reviews_central ON reviews (central_id) WHERE central_id IS NOT NULL;",
	/* 11 */
	"CREATE TABLE plant_changed (id INTEGER PRIMARY KEY, inspection_id INTEGER NOT NULL);"
	"CREATE TRIGGER plant_changed_inspections AFTER UPDATE ON inspections"
	"  WHEN NEW.id <= CAST((SELECT value FROM meta WHERE key = 'plant_read_upto') AS INTEGER)"
	"  BEGIN INSERT INTO plant_changed (inspection_id) VALUES (NEW.id); END;",
};

/* Builds the database as schema version `version` left it (old_schema). */
static void make_old_database(const char *path, int version)
{
	char *sql;

	g_assert_cmpint(version, <=, (int)G_N_ELEMENTS(old_schema));
	for (int v = 0; v < version; v++)
		sql_exec(path, old_schema[v]);
	sql = g_strdup_printf("PRAGMA user_version = %d", version);
	sql_exec(path, sql);
	g_free(sql);
}

static int count_media(const struct db_media *m, void *data)
{
	(void)m;
	++*(int *)data;
	return 0;
}

/* A database written by an earlier schema version (as each release left it)
 * is migrated in place: its rows stay, the later tables appear and work. */
static void test_migrate(struct fixture *fx, gconstpointer data)
{
	int from = GPOINTER_TO_INT(data);
	struct db_inspection row = { .part_id = 77, .trigger_counter = 3, .seq = 2,
				     .t_wall_us = 1000, .verdict = 2, .defect_class = 2,
				     .score = 0.9, .has_vibration = 1,
				     .vibration = { .rms_velocity_mm_s = 2.5, .iso_zone = 'C',
						    .bpfo_env = 31.0 } };
	struct db_media_set *m = g_new0(struct db_media_set, 1);
	db_log *db;
	int nmedia = 0;

	make_old_database(fx->path, from);
	db = open_ok(fx->path, 16);
	m->vibration = g_new0(float, 64);
	m->vibration_len = 64;
	m->rate_hz = 1000;
	g_assert_cmpint(db_submit_media(db, &row, m, -1, NULL), ==, 0);
	db_close(db);
	g_assert_cmpint(sql_int(fx->path, "PRAGMA user_version"), ==, SCHEMA_VERSION);
	g_assert_cmpint(sql_int(fx->path, "SELECT count(*) FROM sqlite_master"), ==, SCHEMA_OBJECTS);
	g_assert_cmpint(db_count_inspections(fx->path, NULL), ==, 2);
	g_assert_cmpint(sql_int(fx->path, "SELECT part_id FROM inspections WHERE id = 1"), ==, 5);
	g_assert_cmpint(sql_int(fx->path, "SELECT count(*) FROM vibration"), ==, from >= 2 ? 2 : 1);
	g_assert_cmpint(sql_int(fx->path, "SELECT i.part_id FROM vibration v JOIN inspections i"
				" ON i.id = v.inspection_id WHERE v.iso_zone = 'C'"
				" AND v.bpfo_env = 31.0"), ==, 77);
	g_assert_cmpint(sql_int(fx->path, "SELECT count(*) FROM reviews"), ==, from >= 3 ? 1 : 0);
	/* Schema 4: the reject's vibration window is kept as a file. */
	g_assert_cmpint(db_read_media(fx->path, 2, count_media, &nmedia, NULL), ==, 0);
	g_assert_cmpint(nmedia, ==, 1);
}

static void test_newer_schema_refused(struct fixture *fx, gconstpointer data)
{
	char *err = NULL;
	char *mode;

	(void)data;
	sql_exec(fx->path, "CREATE TABLE future (x); PRAGMA user_version = 99;");
	g_assert_null(db_open(fx->path, 16, &err));
	g_assert_nonnull(err);
	g_test_message("refusal: %s", err);
	g_assert_nonnull(strstr(err, fx->path));
	g_assert_nonnull(strstr(err, "99"));
	g_assert_nonnull(strstr(err, "newer"));
	free(err);
	/* Left as it was: neither migrated nor switched to WAL. */
	g_assert_cmpint(sql_int(fx->path, "PRAGMA user_version"), ==, 99);
	mode = sql_text(fx->path, "PRAGMA journal_mode");
	g_assert_cmpstr(mode, ==, "delete");
	g_free(mode);
}

static void test_open_errors(struct fixture *fx, gconstpointer data)
{
	char *missing = g_build_filename(fx->dir, "no-such-dir", "log.db", NULL);
	char *garbage = g_build_filename(fx->dir, "garbage.db", NULL);
	char *want, *err = NULL;
	struct db_row_cb cb = { keep_row, NULL };

	(void)data;
	g_assert_null(db_open(missing, 16, &err));
	want = g_strdup_printf("cannot open %s: unable to open database file", missing);
	g_assert_cmpstr(err, ==, want);
	free(err);
	err = NULL;

	g_assert_cmpint(db_count_inspections(missing, &err), ==, DB_ESQLITE);
	g_assert_cmpstr(err, ==, want);
	free(err);
	err = NULL;
	g_assert_cmpint(db_read_inspections(missing, &cb, &err), ==, DB_ESQLITE);
	g_assert_cmpstr(err, ==, want);
	free(err);
	err = NULL;
	g_free(want);

	/* A file that is not SQLite is refused, not overwritten. */
	g_assert_true(g_file_set_contents(garbage, "this is not a database, but it is long"
					  " enough to have a header: 0123456789abcdef", -1, NULL));
	g_assert_null(db_open(garbage, 16, &err));
	g_test_message("garbage: %s", err);
	g_assert_nonnull(strstr(err, garbage));
	g_assert_nonnull(strstr(err, "not a database"));
	free(err);
	err = NULL;

	/* No err pointer: still fails cleanly. */
	g_assert_null(db_open(missing, 16, NULL));
	g_assert_null(db_open(fx->path, 0, &err));
	g_assert_nonnull(err);
	free(err);

	g_free(garbage);
	g_free(missing);
}

static void test_wal(struct fixture *fx, gconstpointer data)
{
	db_log *db = open_ok(fx->path, 16);
	char *mode;

	(void)data;
	/* Queried on a connection of our own while the writer holds one. */
	mode = sql_text(fx->path, "PRAGMA journal_mode");
	g_assert_cmpstr(mode, ==, "wal");
	g_free(mode);
	submit_range(db, 0, 3);
	db_close(db);
	/* WAL is a property of the file and persists. */
	mode = sql_text(fx->path, "PRAGMA journal_mode");
	g_assert_cmpstr(mode, ==, "wal");
	g_free(mode);
}

/* Transmitter readings: a trend point and a part's reading, NaN as NULL. */
static void test_trend(struct fixture *fx, gconstpointer data)
{
	db_log *db = open_ok(fx->path, 16);
	char source[8] = "tx1";
	struct db_trend point = { .source = source, .t_wall_us = 1700000000000000, .part_id = -1,
				  .velocity_mm_s = 4.53, .accel_g = 1.25, .temperature_c = NAN };
	struct db_trend part = { .source = "tx1", .t_wall_us = 1700000000100000, .part_id = 42,
				 .velocity_mm_s = 4.5, .accel_g = 1.0, .temperature_c = 20,
				 .stale = 1 };

	(void)data;
	g_assert_cmpint(db_trend(db, &point), ==, 0);
	source[0] = 'X'; /* the module kept a copy */
	g_assert_cmpint(db_trend(db, &part), ==, 0);
	g_assert_cmpint(db_trend(db, NULL), ==, -EINVAL);
	wait_settled(db, 2);
	db_close(db);
	g_assert_cmpint(sql_int(fx->path, "SELECT count(*) FROM trend WHERE source = 'tx1'"), ==, 2);
	g_assert_cmpint(sql_int(fx->path, "SELECT count(*) FROM trend WHERE part_id IS NULL "
				"AND temperature_c IS NULL AND stale = 0 AND accel_g = 1.25"), ==, 1);
	g_assert_cmpint(sql_int(fx->path, "SELECT part_id FROM trend WHERE stale = 1"), ==, 42);
}

static void test_events(struct fixture *fx, gconstpointer data)
{
	db_log *db = open_ok(fx->path, 16);
	int64_t before = vigil_wall_us(), after;
	char message[64];
	sqlite3 *conn;
	sqlite3_stmt *st = NULL;
	int n = 0;

	(void)data;
	g_strlcpy(message, "vigild 0.1.0 started", sizeof message);
	g_assert_cmpint(db_event(db, "start", message), ==, 0);
	memset(message, 'X', sizeof message - 1); /* the module kept a copy */
	submit_range(db, 0, 5);
	g_assert_cmpint(db_event(db, "plc-fault", "PLC 10.0.0.2:502: connection lost"), ==, 0);
	g_assert_cmpint(db_event(db, "stop", "SIGTERM"), ==, 0);
	g_assert_cmpint(db_event(db, NULL, "x"), ==, -EINVAL);
	g_assert_cmpint(db_event(db, "x", NULL), ==, -EINVAL);
	g_assert_cmpint(db_event(NULL, "x", "y"), ==, -EINVAL);
	wait_settled(db, 8);
	g_assert_cmpuint(stats(db).rows_written, ==, 8); /* rows and events together */
	db_close(db);
	after = vigil_wall_us();

	conn = sql_open(fx->path);
	g_assert_cmpint(sqlite3_prepare_v2(conn,
		"SELECT t_wall_us, kind, message FROM events ORDER BY id", -1, &st, NULL),
		==, SQLITE_OK);
	while (sqlite3_step(st) == SQLITE_ROW) {
		static const char *const kinds[] = { "start", "plc-fault", "stop" };
		static const char *const messages[] = {
			"vigild 0.1.0 started", "PLC 10.0.0.2:502: connection lost", "SIGTERM",
		};

		g_assert_cmpint(n, <, 3);
		g_assert_cmpint(sqlite3_column_int64(st, 0), >=, before);
		g_assert_cmpint(sqlite3_column_int64(st, 0), <=, after);
		g_assert_cmpstr((const char *)sqlite3_column_text(st, 1), ==, kinds[n]);
		g_assert_cmpstr((const char *)sqlite3_column_text(st, 2), ==, messages[n]);
		n++;
	}
	sqlite3_finalize(st);
	sqlite3_close(conn);
	g_assert_cmpint(n, ==, 3);
	g_assert_cmpint(db_count_inspections(fx->path, NULL), ==, 5);
}

/* A row the database refuses (here through a trigger added behind the
 * writer's back) is counted and reported; the rest of its batch commits. */
static void test_row_failure(struct fixture *fx, gconstpointer data)
{
	db_log *db = open_ok(fx->path, 512);
	char *last;

	(void)data;
	sql_exec(fx->path,
		 "CREATE TRIGGER refuse_13 BEFORE INSERT ON inspections WHEN NEW.part_id = 13"
		 " BEGIN SELECT RAISE(ABORT, 'injected failure'); END;");
	g_test_expect_message(G_LOG_DOMAIN, G_LOG_LEVEL_WARNING,
			      "*1 of * rows not written*injected failure*");
	submit_range(db, 0, 100);
	wait_settled(db, 100);
	g_assert_cmpuint(stats(db).rows_failed, ==, 1);
	g_assert_cmpuint(stats(db).rows_written, ==, 99);
	last = db_last_error(db);
	g_assert_nonnull(last);
	g_assert_nonnull(strstr(last, "injected failure"));
	free(last);
	db_close(db);
	g_test_assert_expected_messages();
	g_assert_cmpint(db_count_inspections(fx->path, NULL), ==, 99);
	g_assert_cmpint(sql_int(fx->path,
		"SELECT count(*) FROM inspections WHERE part_id = 13"), ==, 0);
}

/* An error that rolls the whole transaction back (RAISE(ROLLBACK)) takes
 * only its own row: the rows inserted before it in the same transaction go
 * again in a new one, and the counters say so. */
static void test_transaction_failure(struct fixture *fx, gconstpointer data)
{
	db_log *db = open_ok(fx->path, 512);
	uint64_t written, failed;

	(void)data;
	sql_exec(fx->path,
		 "CREATE TRIGGER rollback_13 BEFORE INSERT ON inspections WHEN NEW.part_id = 13"
		 " BEGIN SELECT RAISE(ROLLBACK, 'injected rollback'); END;");
	g_test_expect_message(G_LOG_DOMAIN, G_LOG_LEVEL_WARNING, "*injected rollback*");
	submit_range(db, 0, 100);
	wait_settled(db, 100);
	written = stats(db).rows_written;
	failed = stats(db).rows_failed;
	g_assert_cmpuint(stats(db).rows_dropped[DB_TABLE_INSPECTIONS][DB_DROP_REFUSED], ==, 1);
	g_assert_true(stats(db).ok);
	db_close(db);
	g_test_assert_expected_messages();
	g_test_message("written %" PRIu64 ", failed %" PRIu64, written, failed);
	g_assert_cmpuint(written, ==, 99);
	g_assert_cmpuint(failed, ==, 1);
	g_assert_cmpint(db_count_inspections(fx->path, NULL), ==, (int64_t)written);
}

static int stop_after_three(const struct db_inspection *row, void *data)
{
	int *n = data;

	(void)row;
	return ++*n == 3;
}

static void test_read_stops(struct fixture *fx, gconstpointer data)
{
	db_log *db = open_ok(fx->path, 16);
	int n = 0;
	struct db_row_cb cb = { stop_after_three, &n };

	(void)data;
	submit_range(db, 0, 10);
	db_close(db);
	g_assert_cmpint(db_read_inspections(fx->path, &cb, NULL), ==, 0);
	g_assert_cmpint(n, ==, 3);
}

static void test_bad_arguments(struct fixture *fx, gconstpointer data)
{
	db_log *db = open_ok(fx->path, 4);
	struct db_inspection r = { .verdict = VIGIL_VERDICT_ACCEPT };

	(void)data;
	g_assert_cmpint(db_submit(NULL, &r), ==, -EINVAL);
	g_assert_cmpint(db_submit(db, NULL), ==, -EINVAL);
	r.verdict = VIGIL_VERDICT_NONE;
	g_assert_cmpint(db_submit(db, &r), ==, -EINVAL);
	r.verdict = 4;
	g_assert_cmpint(db_submit(db, &r), ==, -EINVAL);
	r.verdict = VIGIL_VERDICT_REJECT;
	r.defect_class = 9;
	g_assert_cmpint(db_submit(db, &r), ==, -EINVAL);
	r.defect_class = VIGIL_CLASS_VIBRATION;
	g_assert_cmpint(db_submit(db, &r), ==, 0);
	db_close(db);
	db_close(NULL);
	g_assert_cmpuint(stats(NULL).rows_written, ==, 0);
	g_assert_cmpuint(stats(NULL).rows_failed, ==, 0);
	g_assert_cmpint(stats(NULL).ok, ==, 0);
	g_assert_null(db_last_error(NULL));
	g_assert_cmpint(db_count_inspections(fx->path, NULL), ==, 1);

	g_assert_cmpstr(db_strerror(DB_ECLOSED), ==, "database log is closed");
	g_assert_cmpstr(db_strerror(DB_ESQLITE), ==, "SQLite error");
	g_assert_cmpstr(db_strerror(-EINVAL), ==, g_strerror(EINVAL));
}

/* ---- media, retention, recovery, a full disk ---- */

/* Pixel i of camera c: noise, so that PNG cannot shrink it much. */
static uint8_t pixel(int i, int seed, int c)
{
	uint32_t x = (uint32_t)i + (uint32_t)seed * 0x9e3779b9u + (uint32_t)c * 0x85ebca6bu;

	x ^= x >> 16;
	x *= 0x7feb352du;
	x ^= x >> 15;
	x *= 0x846ca68bu;
	x ^= x >> 16;
	return (uint8_t)x;
}

/* A part's files as vigild hands them over: two cameras, a defect map and
 * the vibration window, each with content derived from seed. */
static struct db_media_set *make_media(int seed, int width, int height)
{
	struct db_media_set *m = g_new0(struct db_media_set, 1);

	m->nimages = 2;
	for (int c = 0; c < 2; c++) {
		m->images[c].camera = g_strdup(c ? "side" : "top");
		m->images[c].width = width;
		m->images[c].height = height;
		m->images[c].gray = g_malloc((gsize)width * height);
		for (int i = 0; i < width * height; i++)
			m->images[c].gray[i] = pixel(i, seed, c);
	}
	m->heatmap_w = 8;
	m->heatmap_h = 4;
	m->heatmap = g_new(float, 32);
	for (int i = 0; i < 32; i++)
		m->heatmap[i] = (float)i / 31.0f;
	m->vibration_len = 256;
	m->vibration = g_new(float, 256);
	for (int i = 0; i < 256; i++)
		m->vibration[i] = sinf((float)i * 0.1f) * (float)(seed + 1);
	m->rate_hz = 25600;
	return m;
}

struct media_list {
	int n;
	struct db_media got[8];
	char *paths[8], *cameras[8], *kinds[8];
};

static int collect_media(const struct db_media *m, void *data)
{
	struct media_list *l = data;

	g_assert_cmpint(l->n, <, 8);
	l->got[l->n] = *m;
	l->paths[l->n] = g_strdup(m->path);
	l->cameras[l->n] = g_strdup(m->camera);
	l->kinds[l->n] = g_strdup(m->kind);
	l->n++;
	return 0;
}

static void media_list_clear(struct media_list *l)
{
	for (int i = 0; i < l->n; i++) {
		g_free(l->paths[i]);
		g_free(l->cameras[i]);
		g_free(l->kinds[i]);
	}
	memset(l, 0, sizeof *l);
}

static db_log *open_opts(const char *path, const struct db_options *opt)
{
	char *err = NULL;
	db_log *db = db_open_with(path, opt, &err);

	if (!db)
		g_error("db_open_with(%s): %s", path, err);
	return db;
}

/* A reject keeps every file: images as 8-bit gray PNG with the camera's
 * pixels, the defect map as PNG, the vibration window as float32 WAV;
 * rows in table media with paths relative to the media directory, and
 * the first camera's image as the row's image_path. */
static void test_media_files(struct fixture *fx, gconstpointer data)
{
	struct db_options opt = DB_OPTIONS_DEFAULT;
	struct db_inspection r;
	char model[64], image[128];
	struct media_list l = { 0 };
	char *dir, *want_dir, *full, *text;
	uint8_t *px = NULL;
	int w = 0, h = 0;
	gsize len;
	db_log *db;

	(void)data;
	want_dir = g_build_filename(fx->dir, "media", NULL);
	opt.media_dir = want_dir;
	db = open_opts(fx->path, &opt);
	make_row(2, &r, model, sizeof model, image, sizeof image);
	r.image_path = NULL;
	r.verdict = VIGIL_VERDICT_REJECT;
	g_assert_cmpint(db_submit_media(db, &r, make_media(3, 40, 30), -1, NULL), ==, 0);
	db_close(db);

	dir = db_media_dir(fx->path, NULL);
	g_assert_cmpstr(dir, ==, want_dir);
	/* A tool opening the log without a media_dir (vigilctl upgrade)
	 * keeps the recorded one. */
	db_close(open_ok(fx->path, 16));
	free(dir);
	dir = db_media_dir(fx->path, NULL);
	g_assert_cmpstr(dir, ==, want_dir);
	g_assert_cmpint(db_read_media(fx->path, 1, collect_media, &l, NULL), ==, 0);
	g_assert_cmpint(l.n, ==, 4);
	g_assert_cmpstr(l.kinds[0], ==, "image");
	g_assert_cmpstr(l.cameras[0], ==, "top");
	g_assert_cmpstr(l.kinds[1], ==, "image");
	g_assert_cmpstr(l.cameras[1], ==, "side");
	g_assert_cmpstr(l.kinds[2], ==, "heatmap");
	g_assert_cmpstr(l.kinds[3], ==, "vibration");
	text = sql_text(fx->path, "SELECT image_path FROM inspections WHERE id = 1");
	g_assert_cmpstr(text, ==, l.paths[0]);
	g_free(text);
	for (int i = 0; i < l.n; i++) {
		GStatBuf sb;

		g_assert_false(g_path_is_absolute(l.paths[i]));
		g_assert_null(strstr(l.paths[i], ".."));
		g_assert_cmpint(l.got[i].inspection_id, ==, 1);
		full = g_build_filename(dir, l.paths[i], NULL);
		g_assert_cmpint(g_stat(full, &sb), ==, 0);
		g_assert_cmpint(sb.st_size, ==, l.got[i].bytes);
		g_free(full);
	}

	/* The side camera's pixels come back exactly (PNG is lossless). */
	full = g_build_filename(dir, l.paths[1], NULL);
	g_assert_cmpint(cvw_imread_gray(full, &px, &w, &h), ==, 0);
	g_assert_cmpint(w, ==, 40);
	g_assert_cmpint(h, ==, 30);
	for (int i = 0; i < w * h; i++)
		g_assert_cmpuint(px[i], ==, pixel(i, 3, 1));
	free(px);
	g_free(full);

	/* The defect map: 0 .. 1 as 0 .. 255. */
	full = g_build_filename(dir, l.paths[2], NULL);
	g_assert_cmpint(cvw_imread_gray(full, &px, &w, &h), ==, 0);
	g_assert_cmpint(w, ==, 8);
	g_assert_cmpint(h, ==, 4);
	g_assert_cmpuint(px[0], ==, 0);
	g_assert_cmpuint(px[31], ==, 255);
	free(px);
	g_free(full);

	/* The WAV: RIFF, IEEE float (3), mono, the sensor rate, the samples. */
	full = g_build_filename(dir, l.paths[3], NULL);
	g_assert_true(g_file_get_contents(full, &text, &len, NULL));
	g_assert_cmpuint(len, ==, 44 + 256 * 4);
	g_assert_cmpint(memcmp(text, "RIFF", 4), ==, 0);
	g_assert_cmpint(memcmp(text + 8, "WAVEfmt ", 8), ==, 0);
	g_assert_cmpuint(GUINT16_FROM_LE(*(uint16_t *)(text + 20)), ==, 3);
	g_assert_cmpuint(GUINT16_FROM_LE(*(uint16_t *)(text + 22)), ==, 1);
	g_assert_cmpuint(GUINT32_FROM_LE(*(uint32_t *)(text + 24)), ==, 25600);
	g_assert_cmpuint(GUINT16_FROM_LE(*(uint16_t *)(text + 34)), ==, 32);
	{
		float v;

		memcpy(&v, text + 44 + 4 * 10, 4);
		g_assert_cmpfloat(v, ==, sinf(1.0f) * 4.0f);
	}
	g_free(text);
	g_free(full);

	media_list_clear(&l);
	free(dir);
	g_free(want_dir);
}

/* Accepted parts keep their files one in keep_accepted_every; defects
 * always. Without media_dir the files sit beside the database. */
static void test_media_sampling(struct fixture *fx, gconstpointer data)
{
	struct db_options opt = DB_OPTIONS_DEFAULT;
	db_log *db;
	char *dir, *want;

	(void)data;
	opt.keep_accepted_every = 4;
	db = open_opts(fx->path, &opt);
	for (uint32_t i = 0; i < 20; i++) {
		struct db_inspection r;
		char model[64], image[128];

		make_row(i, &r, model, sizeof model, image, sizeof image);
		r.image_path = NULL;
		r.verdict = i < 16 ? VIGIL_VERDICT_ACCEPT
			  : i < 18 ? VIGIL_VERDICT_REJECT : VIGIL_VERDICT_MARGINAL;
		g_assert_cmpint(db_submit_media(db, &r, make_media((int)i, 16, 16), -1, NULL), ==, 0);
	}
	db_close(db);
	/* 16 accepted: 4 kept; 2 rejects and 2 marginals: all kept. */
	g_assert_cmpint(sql_int(fx->path, "SELECT count(DISTINCT inspection_id) FROM media"), ==, 8);
	g_assert_cmpint(sql_int(fx->path, "SELECT count(*) FROM media m JOIN inspections i ON"
				" i.id = m.inspection_id WHERE i.verdict = 'accept'"), ==, 4 * 4);
	g_assert_cmpint(sql_int(fx->path, "SELECT count(*) FROM inspections WHERE"
				" image_path IS NOT NULL"), ==, 8);
	dir = db_media_dir(fx->path, NULL);
	want = g_strconcat(fx->path, ".media", NULL);
	g_assert_cmpstr(dir, ==, want);
	g_assert_true(g_file_test(want, G_FILE_TEST_IS_DIR));
	free(dir);
	g_free(want);
}

/* A fused package's anomaly map, 8 x 4 like make_media's defect map but
 * falling where that one rises, with a NaN and values outside [0, 1]. */
static void add_anomaly_map(struct db_media_set *m)
{
	m->anomaly_map = g_new(float, 32);
	for (int i = 0; i < 32; i++)
		m->anomaly_map[i] = 1.0f - (float)i / 31.0f;
	m->anomaly_map[5] = NAN;
	m->anomaly_map[6] = 2.0f;
	m->anomaly_map[7] = -1.0f;
}

/* Pixel i of add_anomaly_map's map as the log must store it: 0 .. 1 as
 * 0 .. 255, clamped, NaN as 0. */
static unsigned anomaly_pixel(int i)
{
	if (i == 5 || i == 7)
		return 0;
	if (i == 6)
		return 255;
	return (unsigned)lrint(255.0 * (1.0 - (double)i / 31.0));
}

/* Checks the anomaly map of row k of l, a part with add_anomaly_map's map:
 * its file's name, size and every pixel. */
static void assert_anomaly_file(const char *media_dir, const struct media_list *l, int k,
				int64_t inspection_id, uint32_t part_id)
{
	char *full = g_build_filename(media_dir, l->paths[k], NULL);
	char *base = g_path_get_basename(l->paths[k]);
	char *want = g_strdup_printf("%" PRId64 "-%u-anomaly.png", inspection_id, part_id);
	uint8_t *px = NULL;
	int w = 0, h = 0;
	GStatBuf sb;

	g_assert_cmpstr(l->kinds[k], ==, "anomaly");
	g_assert_null(l->cameras[k]);
	g_assert_cmpstr(base, ==, want);
	g_assert_cmpint(g_stat(full, &sb), ==, 0);
	g_assert_cmpint(sb.st_size, ==, l->got[k].bytes);
	g_assert_cmpint(cvw_imread_gray(full, &px, &w, &h), ==, 0);
	g_assert_cmpint(w, ==, 8);
	g_assert_cmpint(h, ==, 4);
	for (int i = 0; i < w * h; i++)
		g_assert_cmpuint(px[i], ==, anomaly_pixel(i));
	free(px);
	g_free(want);
	g_free(base);
	g_free(full);
}

/* The anomaly map goes where the defect map goes: a reject's long-term,
 * a ring part's into the ring (recent = 1, under recent/), each a PNG of
 * the map's pixels in a row of kind 'anomaly' right after the heatmap's;
 * a set without one keeps no such row, and image_path stays the image's. */
static void test_media_anomaly(struct fixture *fx, gconstpointer data)
{
	struct db_options opt = DB_OPTIONS_DEFAULT;
	static const int verdicts[] = { VIGIL_VERDICT_REJECT, VIGIL_VERDICT_ACCEPT,
					VIGIL_VERDICT_REJECT };
	static const char *const kinds[] = { "image", "image", "heatmap", "anomaly", "vibration" };
	struct media_list l = { 0 };
	char *dir;
	db_log *db;

	(void)data;
	opt.keep_accepted_every = 0;      /* accepted parts: the ring only */
	opt.recent_images_mb = 64;
	db = open_opts(fx->path, &opt);
	for (uint32_t i = 0; i < G_N_ELEMENTS(verdicts); i++) {
		struct db_inspection r;
		char model[64], image[128];
		struct db_media_set *m = make_media((int)i, 24, 16);

		make_row(i, &r, model, sizeof model, image, sizeof image);
		r.image_path = NULL;
		r.verdict = verdicts[i];
		if (i < 2)
			add_anomaly_map(m);
		g_assert_cmpint(db_submit_media(db, &r, m, -1, NULL), ==, 0);
	}
	db_close(db);
	dir = db_media_dir(fx->path, NULL);

	/* Inspections 1 (reject) and 2 (ring): five files each. */
	for (int64_t id = 1; id <= 2; id++) {
		g_assert_cmpint(db_read_media(fx->path, id, collect_media, &l, NULL), ==, 0);
		g_assert_cmpint(l.n, ==, 5);
		for (int k = 0; k < l.n; k++) {
			g_assert_cmpstr(l.kinds[k], ==, kinds[k]);
			g_assert_cmpint(l.got[k].recent, ==, id == 2);
			g_assert_true(g_str_has_prefix(l.paths[k], "recent/") == (id == 2));
		}
		assert_anomaly_file(dir, &l, 3, id, (uint32_t)(id - 1));
		media_list_clear(&l);
	}
	g_assert_cmpint(sql_int(fx->path, "SELECT count(*) FROM inspections i JOIN media m ON"
				" m.id = (SELECT min(id) FROM media WHERE inspection_id = 1)"
				" WHERE i.id = 1 AND m.kind = 'image' AND i.image_path = m.path"), ==, 1);
	/* Inspection 3: no anomaly map handed, none kept. */
	g_assert_cmpint(db_read_media(fx->path, 3, collect_media, &l, NULL), ==, 0);
	g_assert_cmpint(l.n, ==, 4);
	for (int k = 0; k < l.n; k++)
		g_assert_cmpstr(l.kinds[k], !=, "anomaly");
	media_list_clear(&l);
	g_assert_cmpint(sql_int(fx->path, "SELECT count(*) FROM media WHERE kind = 'anomaly'"), ==, 2);
	free(dir);
}

/* One media row as text, for comparing a table before and after. */
#define MEDIA_ROWS_SQL \
	"SELECT group_concat(r, ';') FROM (SELECT id || ',' || inspection_id || ',' ||" \
	" coalesce(camera, '-') || ',' || kind || ',' || path || ',' || bytes || ',' || recent" \
	" AS r FROM media WHERE id <= 11 ORDER BY id)"

/* Schema 12 rebuilt table media to allow kind 'anomaly'. A log as schema 11
 * left it keeps its media rows as they were (ids with their gaps, cameras,
 * paths, sizes, ring flags), its indexes (media_recent partial again), its
 * trigger working, and then takes an anomaly map while the CHECK still
 * refuses a kind it does not know. */
static void test_migrate_media_kinds(struct fixture *fx, gconstpointer data)
{
	struct db_options opt = DB_OPTIONS_DEFAULT;
	struct db_inspection r;
	char model[64], image[128];
	struct db_media_set *m = make_media(4, 24, 16);
	struct media_list l = { 0 };
	char *before, *after, *dir;
	sqlite3 *conn;
	db_log *db;
	int rc;

	(void)data;
	make_old_database(fx->path, 11);
	before = sql_text(fx->path, MEDIA_ROWS_SQL);
	g_assert_cmpstr(before, ==, "3,1,top,image,19700101/1-5-top.png,1000,0;"
			"7,1,-,heatmap,19700101/1-5-heatmap.png,200,0;"
			"11,1,side,image,recent/19700101/1-5-side.png,900,1");
	/* The old CHECK: the reason for the migration. */
	conn = sql_open(fx->path);
	rc = sqlite3_exec(conn, "INSERT INTO media (inspection_id, kind, path) VALUES"
			  " (1, 'anomaly', 'x.png')", NULL, NULL, NULL);
	g_assert_cmpint(rc, ==, SQLITE_CONSTRAINT);
	sqlite3_close(conn);

	/* The ring on, so that it keeps its old row for the check below. */
	opt.recent_images_mb = 64;
	db = open_opts(fx->path, &opt);
	make_row(9, &r, model, sizeof model, image, sizeof image);
	r.image_path = NULL;
	r.verdict = VIGIL_VERDICT_REJECT;
	add_anomaly_map(m);
	g_assert_cmpint(db_submit_media(db, &r, m, -1, NULL), ==, 0);
	db_close(db);

	g_assert_cmpint(sql_int(fx->path, "PRAGMA user_version"), ==, SCHEMA_VERSION);
	g_assert_cmpint(sql_int(fx->path, "SELECT count(*) FROM sqlite_master"), ==, SCHEMA_OBJECTS);
	after = sql_text(fx->path, MEDIA_ROWS_SQL);
	g_assert_cmpstr(after, ==, before);
	g_assert_cmpint(sql_int(fx->path, "SELECT count(*) FROM sqlite_master WHERE"
				" name = 'media_new'"), ==, 0);
	g_assert_cmpint(sql_int(fx->path, "SELECT count(*) FROM sqlite_master WHERE type = 'index'"
				" AND tbl_name = 'media' AND ((name = 'media_inspection' AND"
				" sql LIKE '%(inspection_id)') OR (name = 'media_recent' AND"
				" sql LIKE '%WHERE recent = 1'))"), ==, 2);
	g_assert_cmpint(sql_int(fx->path, "SELECT count(*) FROM pragma_foreign_key_check"), ==, 0);
	g_free(after);
	after = sql_text(fx->path, "PRAGMA integrity_check");
	g_assert_cmpstr(after, ==, "ok");
	g_free(after);

	/* The new part: its anomaly map kept, after the old rows' ids. */
	g_assert_cmpint(db_read_media(fx->path, 2, collect_media, &l, NULL), ==, 0);
	g_assert_cmpint(l.n, ==, 5);
	g_assert_cmpint(l.got[0].id, >, 11);
	dir = db_media_dir(fx->path, NULL);
	assert_anomaly_file(dir, &l, 3, 2, 9);
	free(dir);
	media_list_clear(&l);

	/* The CHECK is still there for what it does not know. */
	conn = sql_open(fx->path);
	rc = sqlite3_exec(conn, "INSERT INTO media (inspection_id, kind, path) VALUES"
			  " (1, 'thumbnail', 'x.png')", NULL, NULL, NULL);
	g_assert_cmpint(rc, ==, SQLITE_CONSTRAINT);
	sqlite3_close(conn);
	/* The plant forwarder's trigger on inspections survived the rename. */
	sql_exec(fx->path, "INSERT OR REPLACE INTO meta (key, value) VALUES ('plant_read_upto', '1');"
		 "DELETE FROM plant_changed;"
		 "UPDATE inspections SET latency_ms = 3.0 WHERE id = 1;");
	g_assert_cmpint(sql_int(fx->path, "SELECT count(*) FROM plant_changed WHERE"
				" inspection_id = 1"), ==, 1);
	g_free(before);
}

/* A media writer that falls behind drops files, never rows, and never
 * makes db_submit_media wait: drops are counted and logged as an event. */
static void test_media_drops(struct fixture *fx, gconstpointer data)
{
	struct db_options opt = DB_OPTIONS_DEFAULT;
	db_log *db;
	uint64_t dropped, written;

	(void)data;
	opt.media_queue = 1;
	db = open_opts(fx->path, &opt);
	g_test_expect_message(G_LOG_DOMAIN, G_LOG_LEVEL_WARNING, "*files not kept*");
	for (uint32_t i = 0; i < 200; i++) {
		struct db_inspection r;
		char model[64], image[128];

		make_row(i, &r, model, sizeof model, image, sizeof image);
		r.verdict = VIGIL_VERDICT_REJECT;
		/* Large images: the PNG encoder cannot keep up. */
		g_assert_cmpint(db_submit_media(db, &r, make_media((int)i, 640, 480), 0, NULL), ==, 0);
	}
	/* Ticket 200 settled: every row is in and its files handed over or
	 * dropped; the media thread still writes, drops no more. */
	while (stats(db).settled < 200)
		g_usleep(1000);
	dropped = stats(db).media_dropped;
	written = stats(db).media_written;
	db_close(db);
	g_test_assert_expected_messages();
	g_test_message("media: %" PRIu64 " parts dropped, %" PRIu64 " files written",
		       dropped, written);
	g_assert_cmpuint(dropped, >, 0);
	g_assert_cmpint(db_count_inspections(fx->path, NULL), ==, 200);
	g_assert_cmpint(sql_int(fx->path, "SELECT count(*) FROM events WHERE"
				" kind = 'media-dropped'"), >=, 1);
	g_assert_cmpint(sql_int(fx->path, "SELECT count(DISTINCT inspection_id) FROM media"),
			==, 200 - (int64_t)dropped);
}

/* Counts the warnings whose text holds `needle` while it is installed
 * (warning_count_start .. warning_count_stop), the others passing
 * silently. Warnings are fatal under g_test: the handler takes them with
 * the fatal flag, and the fatal handler lets them pass. */
struct warning_count {
	const char *needle;
	int n;                  /* atomic: warnings come from the log's threads */
	guint handler;
};

static void count_warning(const gchar *domain, GLogLevelFlags level, const gchar *msg,
			  gpointer data)
{
	struct warning_count *c = data;

	(void)domain, (void)level;
	if (strstr(msg, c->needle))
		g_atomic_int_inc(&c->n);
}

static gboolean warnings_not_fatal(const gchar *domain, GLogLevelFlags level, const gchar *msg,
				   gpointer data)
{
	(void)domain, (void)level, (void)msg, (void)data;
	return FALSE;
}

static void warning_count_start(struct warning_count *c, const char *needle)
{
	c->needle = needle;
	c->n = 0;
	c->handler = g_log_set_handler(G_LOG_DOMAIN, G_LOG_LEVEL_WARNING | G_LOG_FLAG_FATAL,
				       count_warning, c);
	g_test_log_set_fatal_handler(warnings_not_fatal, NULL);
}

static void warning_count_stop(struct warning_count *c)
{
	g_log_remove_handler(G_LOG_DOMAIN, c->handler);
	g_test_log_set_fatal_handler(NULL, NULL);
}

/* A media folder that cannot be written to (here a file took its place)
 * costs one warning a period (10 s, db-media.c), the rest counted into the
 * next, not one a part; the parts' files are dropped and counted, every
 * row is kept. */
static void test_media_warnings(struct fixture *fx, gconstpointer data)
{
	struct db_options opt = DB_OPTIONS_DEFAULT;
	char *dir = g_build_filename(fx->dir, "media", NULL);
	gint64 t0 = g_get_monotonic_time(), deadline = t0 + 60 * G_USEC_PER_SEC, elapsed;
	const int parts = 40;
	struct warning_count media_warnings;
	db_log *db;

	(void)data;
	opt.media_dir = dir;
	db = open_opts(fx->path, &opt);
	remove_tree(dir);
	g_assert_true(g_file_set_contents(dir, "not a folder", -1, NULL));
	warning_count_start(&media_warnings, "cannot create");
	for (int i = 0; i < parts; i++) {
		struct db_inspection r;
		char model[64], image[128];

		make_row((uint32_t)i, &r, model, sizeof model, image, sizeof image);
		r.verdict = VIGIL_VERDICT_REJECT;
		g_assert_cmpint(db_submit_media(db, &r, make_media(i, 40, 30), -1, NULL), ==, 0);
		/* One part at a time through the media thread, so that none is
		 * dropped for a full queue rather than the folder. */
		while (stats(db).media_dropped < (uint64_t)i + 1) {
			if (g_get_monotonic_time() > deadline)
				g_error("media thread dealt with %" PRIu64 " of %d parts",
					stats(db).media_dropped, i + 1);
			g_usleep(1000);
		}
	}
	elapsed = g_get_monotonic_time() - t0;
	db_close(db);
	warning_count_stop(&media_warnings);
	g_test_message("%d parts, %d warnings in %.1f s", parts, g_atomic_int_get(&media_warnings.n),
		       (double)elapsed / G_USEC_PER_SEC);
	g_assert_cmpint(g_atomic_int_get(&media_warnings.n), >=, 1);
	g_assert_cmpint(g_atomic_int_get(&media_warnings.n), <=,
			1 + (int)(elapsed / (10 * G_USEC_PER_SEC)));
	g_assert_cmpint(db_count_inspections(fx->path, NULL), ==, parts);
	g_assert_cmpint(sql_int(fx->path, "SELECT count(*) FROM media"), ==, 0);
	g_assert_cmpint(g_unlink(dir), ==, 0);
	g_free(dir);
}

/* A log another process holds the write lock on (the sqlite3 shell in a
 * transaction, a backup) opens once the lock goes, with a warning that it
 * waits, rather than refusing the start after the usual 5 s. The test lets
 * go of the lock when the warning comes, never after a set time. */
struct opener {
	const char *path;
	db_log *db;
	char *err;
};

static gpointer open_in_thread(gpointer data)
{
	struct opener *o = data;

	o->db = db_open_with(o->path, NULL, &o->err);
	return NULL;
}

static void test_open_waits_for_lock(struct fixture *fx, gconstpointer data)
{
	struct opener o = { .path = fx->path };
	gint64 deadline = g_get_monotonic_time() + 50 * G_USEC_PER_SEC;
	struct db_inspection r;
	char model[64], image[128];
	struct warning_count lock_warnings;
	sqlite3 *holder;
	GThread *t;

	(void)data;
	db_close(open_ok(fx->path, 16));
	g_assert_cmpint(sqlite3_open(fx->path, &holder), ==, SQLITE_OK);
	g_assert_cmpint(sqlite3_exec(holder, "BEGIN IMMEDIATE", NULL, NULL, NULL), ==, SQLITE_OK);
	warning_count_start(&lock_warnings, "is locked by another process; waiting");
	t = g_thread_new("opener", open_in_thread, &o);
	while (!g_atomic_int_get(&lock_warnings.n)) {
		if (g_get_monotonic_time() > deadline)
			g_error("no warning that the log is locked");
		g_usleep(1000);
	}
	g_assert_cmpint(sqlite3_exec(holder, "COMMIT", NULL, NULL, NULL), ==, SQLITE_OK);
	sqlite3_close(holder);
	g_thread_join(t);
	warning_count_stop(&lock_warnings);
	if (!o.db)
		g_error("the log did not open once the lock went: %s", o.err);
	make_row(1, &r, model, sizeof model, image, sizeof image);
	g_assert_cmpint(db_submit(o.db, &r), ==, 0);
	db_close(o.db);
	g_assert_cmpint(db_count_inspections(fx->path, NULL), ==, 1);
	g_assert_cmpint(g_atomic_int_get(&lock_warnings.n), ==, 1);
}

/* ---- the recent ring ---- */

/* Submits accepted part i (or a reject) with two 256x256 noise images and
 * waits until its files are dealt with: ring files counted in (or removed
 * by) the ring, long-term ones written. One part at a time, so that the
 * queues are empty and the ring never has to skip a part. */
static void ring_submit(db_log *db, uint32_t i, int verdict, int64_t t_wall_us)
{
	struct db_inspection r;
	char model[64], image[128];
	struct db_stats before = stats(db), now;
	gint64 deadline = g_get_monotonic_time() + 30 * G_USEC_PER_SEC;

	make_row(i, &r, model, sizeof model, image, sizeof image);
	r.image_path = NULL;
	r.verdict = verdict;
	if (t_wall_us)
		r.t_wall_us = t_wall_us;
	g_assert_cmpint(db_submit_media(db, &r, make_media((int)i, 256, 256), -1, NULL), ==, 0);
	for (;;) {
		now = stats(db);
		if (now.ring_files + now.ring_removed > before.ring_files + before.ring_removed ||
		    now.media_written > before.media_written ||
		    now.ring_dropped > before.ring_dropped || now.media_dropped > before.media_dropped)
			break;
		g_assert_cmpint(g_get_monotonic_time(), <, deadline);
		g_usleep(1000);
	}
	/* The writer trims right after the batch that added the files: a
	 * round trip through it waits for that. */
	g_assert_cmpint(db_retain_now(db), ==, 0);
}

/* Sum of the sizes of the files under dir (recursively), and their count. */
static int64_t bytes_under(const char *dir, int64_t *files)
{
	GDir *d = g_dir_open(dir, 0, NULL);
	const char *name;
	int64_t n = 0;

	if (!d)
		return 0;
	while ((name = g_dir_read_name(d))) {
		char *p = g_build_filename(dir, name, NULL);
		GStatBuf sb;

		if (g_file_test(p, G_FILE_TEST_IS_DIR)) {
			n += bytes_under(p, files);
		} else if (g_stat(p, &sb) == 0) {
			n += sb.st_size;
			(*files)++;
		}
		g_free(p);
	}
	g_dir_close(d);
	return n;
}

static int ring_media_cb(const struct db_media *m, void *data)
{
	int *recent = data;

	*recent += m->recent ? 1 : 0;
	g_assert_true(g_str_has_prefix(m->path, "recent/") == (m->recent != 0));
	return 0;
}

/* Every accepted part's files go to the ring (media/recent/) unless the
 * sample keeps them long-term (then only there); over many parts the ring
 * stays under recent_images_mb and keeps the newest; long-term files are
 * never removed for it; its totals match the folder, and are rebuilt from
 * the rows at the next open, which trims to a smaller bound. */
static void test_recent_ring(struct fixture *fx, gconstpointer data)
{
	enum { PARTS = 60 };
	struct db_options opt = DB_OPTIONS_DEFAULT;
	int64_t bound = 1024 * 1024, files = 0, bytes, newest_missing;
	char *ring_dir = g_strconcat(fx->path, ".media/recent", NULL);
	struct db_stats st;
	int recent = 0;
	db_log *db;

	(void)data;
	opt.keep_accepted_every = 10;     /* parts 0, 10, 20 ... of the accepted */
	opt.recent_images_mb = 1;
	db = open_opts(fx->path, &opt);
	for (uint32_t i = 0; i < PARTS; i++) {
		/* Every 7th part a reject: long-term, whatever the ring does. */
		ring_submit(db, i, i % 7 == 3 ? VIGIL_VERDICT_REJECT : VIGIL_VERDICT_ACCEPT, 0);
		st = stats(db);
		g_assert_cmpuint(st.ring_bytes, <=, (uint64_t)bound);
	}
	st = stats(db);
	g_assert_cmpuint(st.ring_dropped, ==, 0);
	g_assert_cmpuint(st.ring_removed, >, 0);   /* 60 parts of ~130 KB overflow 1 MB */
	g_assert_cmpuint(st.ring_files, >, 0);
	/* The totals are the folder's. */
	bytes = bytes_under(ring_dir, &files);
	g_assert_cmpint(files, ==, (int64_t)st.ring_files);
	g_assert_cmpint(bytes, ==, (int64_t)st.ring_bytes);
	g_assert_cmpint(sql_int(fx->path, "SELECT count(*) FROM media WHERE recent = 1"), ==,
			(int64_t)st.ring_files);
	g_assert_cmpint(st.ring_oldest_us, ==,
			sql_int(fx->path, "SELECT min(i.t_wall_us) FROM media m JOIN inspections"
				" i ON i.id = m.inspection_id WHERE m.recent = 1"));
	db_close(db);

	/* Stored once: no part has both. */
	g_assert_cmpint(sql_int(fx->path, "SELECT count(*) FROM (SELECT inspection_id FROM media"
				" GROUP BY inspection_id HAVING min(recent) = 0 AND"
				" max(recent) = 1)"), ==, 0);
	/* Long-term: the 9 rejects and 6 of the 51 accepted (one in 10),
	 * whole (4 files each), none removed. */
	g_assert_cmpint(sql_int(fx->path, "SELECT count(DISTINCT inspection_id) FROM media"
				" WHERE recent = 0"), ==, 9 + 6);
	g_assert_cmpint(sql_int(fx->path, "SELECT count(*) FROM media WHERE recent = 0"), ==,
			(9 + 6) * 4);
	/* The ring keeps the newest: every ring-eligible part after the
	 * newest one missing is in it, whole (images, map, window). */
	newest_missing = sql_int(fx->path,
		"SELECT coalesce(max(i.id), 0) FROM inspections i WHERE NOT EXISTS (SELECT 1"
		" FROM media m WHERE m.inspection_id = i.id)");
	g_assert_cmpint(newest_missing, >, 0);
	g_assert_cmpint(sql_int(fx->path, "SELECT min(inspection_id) FROM media WHERE recent = 1"),
			>, newest_missing);
	g_assert_cmpint(sql_int(fx->path, "SELECT count(*) FROM media WHERE recent = 1"), ==,
			4 * sql_int(fx->path, "SELECT count(DISTINCT inspection_id) FROM media"
				    " WHERE recent = 1"));
	g_assert_cmpint(sql_int(fx->path, "SELECT count(*) FROM inspections i JOIN media m ON"
				" m.inspection_id = i.id AND m.recent = 1 WHERE"
				" i.image_path IS NOT NULL"), ==, 0);
	/* Readers see which files are the ring's. */
	g_assert_cmpint(db_read_media(fx->path, sql_int(fx->path, "SELECT max(inspection_id) FROM"
						      " media WHERE recent = 1"),
				      ring_media_cb, &recent, NULL), ==, 0);
	g_assert_cmpint(recent, ==, 4);

	/* Reopened: totals from the rows. Turned off, the ring is emptied at
	 * the first batch, and again only ring files go; accepted parts are
	 * only sampled. */
	opt.recent_images_mb = 0;
	db = open_opts(fx->path, &opt);
	g_assert_cmpuint(stats(db).ring_files, ==, st.ring_files);
	g_assert_cmpuint(stats(db).ring_bytes, ==, st.ring_bytes);
	ring_submit(db, PARTS, VIGIL_VERDICT_REJECT, 0);
	g_assert_cmpuint(stats(db).ring_files, ==, 0);
	g_assert_cmpuint(stats(db).ring_bytes, ==, 0);
	db_close(db);
	files = 0;
	g_assert_cmpint(bytes_under(ring_dir, &files), ==, 0);
	g_assert_cmpint(sql_int(fx->path, "SELECT count(*) FROM media WHERE recent = 0"), ==,
			(9 + 6 + 1) * 4);
	g_free(ring_dir);
}

/* recent_images_hours: ring files of parts older than that go, however
 * much room is left; the long-term ones stay. */
static void test_recent_ring_hours(struct fixture *fx, gconstpointer data)
{
	struct db_options opt = DB_OPTIONS_DEFAULT;
	int64_t now = g_get_real_time(), hour = INT64_C(3600) * G_USEC_PER_SEC;
	db_log *db;

	(void)data;
	opt.recent_images_mb = 64;
	opt.recent_images_hours = 2;
	/* Parts 0 to 2 stamped 3 hours ago by an earlier run (this run's
	 * own rows are no older than the time since it wrote them). */
	opt.recent_images_hours = 0;
	db = open_opts(fx->path, &opt);
	for (uint32_t i = 0; i < 3; i++)
		ring_submit(db, i, i == 1 ? VIGIL_VERDICT_REJECT : VIGIL_VERDICT_ACCEPT,
			    now - 3 * hour);
	db_close(db);
	opt.recent_images_hours = 2;
	db = open_opts(fx->path, &opt);
	for (uint32_t i = 3; i < 6; i++)
		ring_submit(db, i, VIGIL_VERDICT_ACCEPT, now - hour / 2);
	/* The old ones (parts 0 and 2; 1 is a reject) were trimmed at the
	 * writer's first turn, so the ring holds parts 3 to 5. */
	g_assert_cmpuint(stats(db).ring_files, ==, 3 * 4);
	g_assert_cmpint(stats(db).ring_oldest_us, ==, now - hour / 2);
	db_close(db);
	g_assert_cmpint(sql_int(fx->path, "SELECT count(*) FROM media WHERE recent = 0"), ==, 4);
	g_assert_cmpint(sql_int(fx->path, "SELECT min(inspection_id) FROM media WHERE"
				" recent = 1"), ==, 4);
}

/* A full disk: the ring is the first to give way. The file may not grow
 * (max_pages); the first write it refuses halves the ring at once, files
 * and rows, never a long-term file; while writes fail no part goes to the
 * ring (counted), and the line's rows wait in the spool as ever. */
static void test_recent_ring_gives_way(struct fixture *fx, gconstpointer data)
{
	struct db_options opt = DB_OPTIONS_DEFAULT;
	char *ring_dir = g_strconcat(fx->path, ".media/recent", NULL);
	int64_t files = 0, pages, long_term;
	gint64 deadline = g_get_monotonic_time() + 30 * G_USEC_PER_SEC;
	struct db_stats before, st;
	uint32_t i;
	db_log *db;

	(void)data;
	opt.keep_accepted_every = 0;
	opt.recent_images_mb = 64;
	db = open_opts(fx->path, &opt);
	for (i = 0; i < 8; i++)
		ring_submit(db, i, i == 2 ? VIGIL_VERDICT_REJECT : VIGIL_VERDICT_ACCEPT, 0);
	before = stats(db);
	g_assert_cmpuint(before.ring_files, ==, 7 * 4);
	db_close(db);
	long_term = sql_int(fx->path, "SELECT count(*) FROM media WHERE recent = 0");
	g_assert_cmpint(long_term, ==, 4);
	pages = sql_int(fx->path, "PRAGMA page_count");

	/* The file full from now on: rows go until the pages' free room is
	 * used up, then the writer faults. */
	opt.max_pages = pages;
	g_test_expect_message(G_LOG_DOMAIN, G_LOG_LEVEL_WARNING,
			      "*writes fail*database or disk is full*");
	db = open_opts(fx->path, &opt);
	for (i = 100; stats(db).ok; i++) {
		struct db_inspection r;
		char model[64], image[128];

		g_assert_cmpuint(i, <, 5000);
		make_row(i, &r, model, sizeof model, image, sizeof image);
		r.verdict = VIGIL_VERDICT_REJECT;
		g_assert_cmpint(db_submit(db, &r), ==, 0);
		wait_settled(db, i - 100 + 1);
	}
	while (stats(db).ring_removed == 0) {
		g_assert_cmpint(g_get_monotonic_time(), <, deadline);
		g_usleep(1000);
	}
	g_test_assert_expected_messages();
	st = stats(db);
	g_assert_cmpuint(st.ring_bytes, <=, before.ring_bytes / 2);
	/* Halved once for the fault, not again at every retry; whole parts. */
	g_assert_cmpuint(st.ring_files, >=, 3 * 4);
	g_assert_cmpuint(st.ring_files % 4, ==, 0);
	g_assert_cmpuint(st.ring_files + st.ring_removed, ==, before.ring_files);
	g_assert_cmpint(bytes_under(ring_dir, &files), ==, (int64_t)st.ring_bytes);
	g_assert_cmpint(files, ==, (int64_t)st.ring_files);
	/* While writes fail, an accepted part's files are not taken for the
	 * ring: counted, and its row waits in the spool. */
	{
		struct db_inspection r;
		char model[64], image[128];

		make_row(i, &r, model, sizeof model, image, sizeof image);
		r.verdict = VIGIL_VERDICT_ACCEPT;
		g_assert_cmpint(db_submit_media(db, &r, make_media(1, 16, 16), -1, NULL), ==, 0);
	}
	g_assert_cmpuint(stats(db).ring_dropped, ==, 1);
	g_test_expect_message(G_LOG_DOMAIN, G_LOG_LEVEL_WARNING, "*closing with writes still failing*");
	db_close(db);
	g_test_assert_expected_messages();
	g_assert_cmpint(sql_int(fx->path, "SELECT count(*) FROM media WHERE recent = 0"), ==,
			long_term);
	g_free(ring_dir);
}

/* DAY_US: db/db-private.h's. */

/* Rows of ages in days, each a reject with its files. */
static void submit_aged(db_log *db, uint32_t first, int n, double age_days, int img)
{
	int64_t now = g_get_real_time();

	for (int i = 0; i < n; i++) {
		struct db_inspection r;
		char model[64], image[128];

		make_row(first + (uint32_t)i, &r, model, sizeof model, image, sizeof image);
		r.image_path = NULL;
		r.verdict = VIGIL_VERDICT_REJECT;
		r.t_wall_us = now - (int64_t)(age_days * (double)DAY_US) + i;
		g_assert_cmpint(db_submit_media(db, &r, make_media(i, img, img), -1, NULL), ==, 0);
	}
}

static int64_t files_under(const char *dir)
{
	GDir *d = g_dir_open(dir, 0, NULL);
	const char *name;
	int64_t n = 0;

	if (!d)
		return 0;
	while ((name = g_dir_read_name(d))) {
		char *p = g_build_filename(dir, name, NULL);

		n += g_file_test(p, G_FILE_TEST_IS_DIR) ? files_under(p) : 1;
		g_free(p);
	}
	g_dir_close(d);
	return n;
}

/* What a crash leaves in the media directory - a temporary file, a file
 * whose row never committed - is removed when the log is next opened, but
 * only by the log that holds the directory: while another log writes
 * there, its files on their way to a row are left alone. Files that are
 * not the log's (another name) are never touched, and every file with a
 * row stays, whole. */
static void test_media_sweep(struct fixture *fx, gconstpointer data)
{
	struct db_options opt = DB_OPTIONS_DEFAULT;
	static const char *const planted[] = {
		"999-7-top.tmp.png", "999-7-vibration.tmp.wav", "998-7-heatmap.png",
		"notes.txt",
	};
	struct media_list l = { 0 };
	char *mdir, *day, *path;
	db_log *a, *b;

	(void)data;
	mdir = g_build_filename(fx->dir, "media", NULL);
	opt.media_dir = mdir;
	a = open_opts(fx->path, &opt);
	for (uint32_t i = 0; i < 2; i++) {
		struct db_inspection r;
		char model[64], image[128];

		make_row(i, &r, model, sizeof model, image, sizeof image);
		r.image_path = NULL;
		r.verdict = VIGIL_VERDICT_REJECT;
		g_assert_cmpint(db_submit_media(a, &r, make_media((int)i, 24, 20), -1, NULL), ==, 0);
	}
	db_close(a);
	g_assert_cmpint(files_under(mdir), ==, 8);
	g_assert_cmpint(db_read_media(fx->path, 1, collect_media, &l, NULL), ==, 0);
	day = g_path_get_dirname(l.paths[0]);

	a = open_opts(fx->path, &opt);
	for (size_t i = 0; i < G_N_ELEMENTS(planted); i++) {
		path = g_build_filename(mdir, day, planted[i], NULL);
		g_assert_true(g_file_set_contents(path, "half", 4, NULL));
		g_free(path);
	}
	/* a holds the directory: b leaves everything as it is. */
	b = open_opts(fx->path, &opt);
	db_close(b);
	g_assert_cmpint(files_under(mdir), ==, 8 + 4);
	db_close(a);

	a = open_opts(fx->path, &opt);
	db_close(a);
	g_assert_cmpint(files_under(mdir), ==, 8 + 1);
	path = g_build_filename(mdir, day, "notes.txt", NULL);
	g_assert_true(g_file_test(path, G_FILE_TEST_EXISTS));
	g_free(path);
	for (int i = 0; i < l.n; i++) {
		GStatBuf sb;

		path = g_build_filename(mdir, l.paths[i], NULL);
		g_assert_cmpint(g_stat(path, &sb), ==, 0);
		g_assert_cmpint(sb.st_size, ==, l.got[i].bytes);
		g_free(path);
	}
	media_list_clear(&l);
	g_free(day);
	g_free(mdir);
}

struct labels_seen {
	int rows;
	char *type, *mask;
	int verdict;
};

static int labels_cb(const struct db_inspection *r, void *data)
{
	struct labels_seen *seen = data;

	seen->rows++;
	g_free(seen->type);
	g_free(seen->mask);
	seen->type = g_strdup(r->review_defect_type);
	seen->mask = g_strdup(r->review_mask);
	seen->verdict = r->review_verdict;
	return 0;
}

/* A review's label (defect type and mask path) is stored with it and read
 * back with the part's row; the latest review counts, and a review
 * without a label reads back as none. */
static void test_review_labels(struct fixture *fx, gconstpointer data)
{
	struct db_filter f = DB_FILTER_ALL;
	struct labels_seen seen = { 0 };
	struct db_row_cb cb = { labels_cb, &seen };
	struct db_review_label label = { "crack", "masks/3-1.png" };
	db_log *db = open_ok(fx->path, 64);

	(void)data;
	submit_range(db, 1, 5);
	db_close(db);
	g_assert_cmpint(db_review_labeled(fx->path, 3, "overrule", VIGIL_VERDICT_REJECT, NULL,
					  "qa", &label, NULL), ==, 0);
	f.part_id = 3;
	g_assert_cmpint(db_query(fx->path, &f, &cb, NULL), ==, 0);
	g_assert_cmpint(seen.rows, ==, 1);
	g_assert_cmpstr(seen.type, ==, "crack");
	g_assert_cmpstr(seen.mask, ==, "masks/3-1.png");
	g_assert_cmpint(seen.verdict, ==, VIGIL_VERDICT_REJECT);
	g_assert_cmpint(db_review(fx->path, 3, "confirm", VIGIL_VERDICT_REJECT, NULL, "qa", NULL),
			==, 0);
	g_assert_cmpint(db_query(fx->path, &f, &cb, NULL), ==, 0);
	g_assert_null(seen.type);
	g_assert_null(seen.mask);
	g_assert_cmpint(db_review_labeled(fx->path, 99, "confirm", VIGIL_VERDICT_REJECT, NULL,
					  "qa", &label, NULL), ==, -ENOENT);
	g_free(seen.type);
	g_free(seen.mask);
}

/* A part id the line used twice (its counter started over): db_review_at
 * reviews the inspection named, not the latest, and refuses an inspection
 * of another part; inspection -1 is the latest, as db_review. */
static void test_review_at(struct fixture *fx, gconstpointer data)
{
	db_log *db = open_ok(fx->path, 64);
	int64_t older, newer, other;

	(void)data;
	submit_range(db, 1, 5);
	submit_range(db, 1, 3);
	db_close(db);
	older = sql_int(fx->path, "SELECT min(id) FROM inspections WHERE part_id = 2");
	newer = sql_int(fx->path, "SELECT max(id) FROM inspections WHERE part_id = 2");
	other = sql_int(fx->path, "SELECT id FROM inspections WHERE part_id = 4");
	g_assert_cmpint(older, <, newer);
	g_assert_cmpint(db_review_at(fx->path, 2, older, "overrule", VIGIL_VERDICT_ACCEPT, "old",
				     "qa", NULL, NULL), ==, 0);
	g_assert_cmpint(db_review_at(fx->path, 2, other, "confirm", VIGIL_VERDICT_REJECT, NULL,
				     "qa", NULL, NULL), ==, -ENOENT);
	g_assert_cmpint(db_review_at(fx->path, 2, -1, "confirm", VIGIL_VERDICT_REJECT, "new", "qa",
				     NULL, NULL), ==, 0);
	g_assert_cmpint(sql_int(fx->path, "SELECT count(*) FROM reviews"), ==, 2);
	g_assert_cmpint(sql_int(fx->path, "SELECT inspection_id FROM reviews WHERE note = 'old'"),
			==, older);
	g_assert_cmpint(sql_int(fx->path, "SELECT inspection_id FROM reviews WHERE note = 'new'"),
			==, newer);
}

/* By age: rows (with reviews, vibration and files) older than
 * max_age_days go; rows younger stay. */
static void test_retention_age(struct fixture *fx, gconstpointer data)
{
	struct db_options opt = DB_OPTIONS_DEFAULT;
	char *dir;
	db_log *db;

	(void)data;
	db = open_opts(fx->path, &opt);
	submit_aged(db, 0, 10, 40.0, 16);     /* too old */
	submit_aged(db, 100, 10, 20.0, 16);   /* kept */
	db_close(db);
	dir = db_media_dir(fx->path, NULL);
	g_assert_cmpint(files_under(dir), ==, 80);
	g_assert_cmpint(db_review(fx->path, 3, "overrule", VIGIL_VERDICT_ACCEPT, "ok", "qa", NULL), ==, 0);

	opt.max_age_days = 30;
	opt.protect_days = 7;
	db = open_opts(fx->path, &opt);
	g_assert_cmpint(db_retain_now(db), ==, 0);
	db_close(db);
	g_assert_cmpint(db_count_inspections(fx->path, NULL), ==, 10);
	g_assert_cmpint(sql_int(fx->path, "SELECT min(part_id) FROM inspections"), ==, 100);
	g_assert_cmpint(sql_int(fx->path, "SELECT count(*) FROM media"), ==, 40);
	g_assert_cmpint(sql_int(fx->path, "SELECT count(*) FROM reviews"), ==, 0);
	g_assert_cmpint(sql_int(fx->path, "SELECT count(*) FROM media m LEFT JOIN inspections i"
				" ON i.id = m.inspection_id WHERE i.id IS NULL"), ==, 0);
	g_assert_cmpint(files_under(dir), ==, 40);
	g_assert_cmpint(sql_int(fx->path, "SELECT count(*) FROM events WHERE kind = 'retention'"
				" AND message LIKE 'removed 10 inspection(s) and 40 file(s)%'"), ==, 1);
	free(dir);
}

/* The wall clock stepped forward after rows were written (db-clock.c):
 * this run's rows, however old their stamps, are no older than the time
 * since it wrote them, so the age bound does not take them; an earlier
 * run's rows of the same age go. */
static void test_retention_clock_step(struct fixture *fx, gconstpointer data)
{
	struct db_options opt = DB_OPTIONS_DEFAULT;
	db_log *db;

	(void)data;
	db = open_opts(fx->path, &opt);
	submit_aged(db, 0, 10, 400.0, 16);    /* an earlier run's */
	db_close(db);

	opt.max_age_days = 30;
	opt.protect_days = 7;
	db = open_opts(fx->path, &opt);
	/* Stamped 400 days ago: the clock was that far behind when it wrote
	 * them. The earlier run's rows went at the first retention run. */
	submit_aged(db, 100, 10, 400.0, 16);
	g_assert_cmpint(db_retain_now(db), ==, 0);
	db_close(db);
	g_assert_cmpint(db_count_inspections(fx->path, NULL), ==, 10);
	g_assert_cmpint(sql_int(fx->path, "SELECT min(part_id) FROM inspections"), ==, 100);

	/* To the next run they are an earlier run's: they go, but for the
	 * newest, which stays so that the next row never takes a used id. */
	db = open_opts(fx->path, &opt);
	g_assert_cmpint(db_retain_now(db), ==, 0);
	submit_aged(db, 200, 1, 0.0, 16);
	g_assert_cmpint(db_retain_now(db), ==, 0);
	db_close(db);
	g_assert_cmpint(db_count_inspections(fx->path, NULL), ==, 1);
	g_assert_cmpint(sql_int(fx->path, "SELECT part_id FROM inspections"), ==, 200);
	g_assert_cmpint(sql_int(fx->path, "SELECT id FROM inspections"), ==, 21);
}

/* Events age out with the rows: those older than max_age_days go, in
 * transactions of 500, wherever they sit in the table; younger ones stay,
 * and so does every event of the last protect_days even when max_age_days
 * would take it. */
static void test_retention_events(struct fixture *fx, gconstpointer data)
{
	struct db_options opt = DB_OPTIONS_DEFAULT;
	int64_t now = g_get_real_time();
	char *sql;
	db_log *db;

	(void)data;
	db_close(open_ok(fx->path, 16));
	/* 1200 events 40 days old, 5 of 20 days, one of 40 days written after
	 * them (the clock was set back), 3 of 2 days. */
	sql = g_strdup_printf(
		"WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 1199)"
		" INSERT INTO events (t_wall_us, kind, message)"
		"  SELECT %" PRId64 " + i, 'camera-down', 'old ' || i FROM n;"
		"WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 4)"
		" INSERT INTO events (t_wall_us, kind, message)"
		"  SELECT %" PRId64 " + i, 'camera-up', 'kept' FROM n;"
		"INSERT INTO events (t_wall_us, kind, message) VALUES (%" PRId64 ", 'x', 'late old');"
		"WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 2)"
		" INSERT INTO events (t_wall_us, kind, message)"
		"  SELECT %" PRId64 " + i, 'sensor-ok', 'protected' FROM n;"
		/* Transmitter readings: 700 of 40 days, 4 of 2 days. */
		"WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 699)"
		" INSERT INTO trend (source, t_wall_us, part_id, velocity_mm_s, stale)"
		"  SELECT 'motor', %" PRId64 " + i, -1, 1.5, 0 FROM n;"
		"WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 3)"
		" INSERT INTO trend (source, t_wall_us, part_id, velocity_mm_s, stale)"
		"  SELECT 'motor', %" PRId64 " + i, -1, 2.5, 0 FROM n;",
		now - 40 * DAY_US, now - 20 * DAY_US, now - 40 * DAY_US, now - 2 * DAY_US,
		now - 40 * DAY_US, now - 2 * DAY_US);
	sql_exec(fx->path, sql);
	g_free(sql);

	opt.max_age_days = 30;
	opt.protect_days = 7;
	db = open_opts(fx->path, &opt);
	g_assert_cmpint(db_retain_now(db), ==, 0);
	db_close(db);
	g_assert_cmpint(sql_int(fx->path, "SELECT count(*) FROM events WHERE message LIKE 'old%'"
				" OR message = 'late old'"), ==, 0);
	g_assert_cmpint(sql_int(fx->path, "SELECT count(*) FROM events WHERE message = 'kept'"),
			==, 5);
	g_assert_cmpint(sql_int(fx->path, "SELECT count(*) FROM events WHERE"
				" message = 'protected'"), ==, 3);
	g_assert_cmpint(sql_int(fx->path, "SELECT count(*) FROM events WHERE kind = 'retention'"
				" AND message LIKE 'removed 0 inspection(s) and 0 file(s) (0 bytes),"
				" 1201 event(s), 700 trend reading(s)'"), ==, 1);
	g_assert_cmpint(sql_int(fx->path, "SELECT count(*) FROM trend WHERE velocity_mm_s = 1.5"),
			==, 0);
	g_assert_cmpint(sql_int(fx->path, "SELECT count(*) FROM trend WHERE velocity_mm_s = 2.5"),
			==, 4);

	/* max_age_days inside the protected days: protect_days wins. */
	opt.max_age_days = 1;
	opt.protect_days = 7;
	db = open_opts(fx->path, &opt);
	g_assert_cmpint(db_retain_now(db), ==, 0);
	db_close(db);
	g_assert_cmpint(sql_int(fx->path, "SELECT count(*) FROM events WHERE"
				" message = 'protected'"), ==, 3);
	g_assert_cmpint(sql_int(fx->path, "SELECT count(*) FROM events WHERE message = 'kept'"),
			==, 0);
	g_assert_cmpint(sql_int(fx->path, "SELECT count(*) FROM trend"), ==, 4);
}

/* A backlog (retention switched on over many old rows) goes in slices,
 * with the writer free to write rows between them. */
static void test_retention_slices(struct fixture *fx, gconstpointer data)
{
	struct db_options opt = DB_OPTIONS_DEFAULT;
	int64_t now = g_get_real_time(), left;
	int calls = 0;
	db_log *db;

	(void)data;
	db = open_opts(fx->path, &opt);
	for (uint32_t i = 0; i < 16000; i++) {
		struct db_inspection r;
		char model[64], image[128];

		make_row(i, &r, model, sizeof model, image, sizeof image);
		r.t_wall_us = now - 100 * DAY_US + i;
		g_assert_cmpint(db_submit(db, &r), ==, 0);
	}
	db_close(db);

	opt.max_age_days = 30;
	db = open_opts(fx->path, &opt);
	do {
		g_assert_cmpint(db_retain_now(db), ==, 0);
		calls++;
		/* Rows still go in between slices. */
		{
			struct db_inspection r;
			char model[64], image[128];

			make_row(100000 + (uint32_t)calls, &r, model, sizeof model, image,
				 sizeof image);
			r.t_wall_us = g_get_real_time();
			g_assert_cmpint(db_submit(db, &r), ==, 0);
		}
		left = sql_int(fx->path, "SELECT count(*) FROM inspections WHERE part_id < 100000");
		g_assert_cmpint(calls, <, 10);
	} while (left > 0);
	db_close(db);
	g_test_message("%d calls", calls);
	g_assert_cmpint(calls, >=, 2);
	g_assert_cmpint(db_count_inspections(fx->path, NULL), ==, calls);
	g_assert_cmpint(sql_int(fx->path, "SELECT count(*) FROM events WHERE kind = 'retention'"
				" AND message LIKE '%more to remove%'"), >=, 1);
}

/* By disk budget: images go first, oldest first; then the other files,
 * then rows - but never the rows of the last protect_days. */
static void test_retention_budget(struct fixture *fx, gconstpointer data)
{
	struct db_options opt = DB_OPTIONS_DEFAULT;
	int64_t images_before, images_old, images_new;
	char *dir;
	db_log *db;

	(void)data;
	opt.media_queue = 1024;
	db = open_opts(fx->path, &opt);
	/* 40 parts 10 days old and 40 parts 1 day old, 2 x 9 KiB images
	 * each, of noise that PNG barely compresses. */
	submit_aged(db, 0, 40, 10.0, 96);
	submit_aged(db, 1000, 40, 1.0, 96);
	db_close(db);
	images_before = sql_int(fx->path, "SELECT sum(bytes) FROM media WHERE kind = 'image'");
	g_test_message("images: %" PRId64 " bytes", images_before);

	/* A budget the old images' removal alone meets. */
	opt.disk_budget_mb = 1;
	opt.protect_days = 3;
	g_assert_cmpint(images_before, >, 1024 * 1024);
	db = open_opts(fx->path, &opt);
	g_assert_cmpint(db_retain_now(db), ==, 0);
	db_close(db);
	images_old = sql_int(fx->path, "SELECT count(*) FROM media m JOIN inspections i ON"
			     " i.id = m.inspection_id WHERE m.kind = 'image' AND i.part_id < 1000");
	images_new = sql_int(fx->path, "SELECT count(*) FROM media m JOIN inspections i ON"
			     " i.id = m.inspection_id WHERE m.kind = 'image' AND i.part_id >= 1000");
	g_test_message("images left: %" PRId64 " old, %" PRId64 " new", images_old, images_new);
	/* Oldest first, and no more than the budget needs. */
	g_assert_cmpint(images_new, ==, 80);
	g_assert_cmpint(images_old, <, 80);
	g_assert_cmpint(images_old, >, 0);
	g_assert_cmpint(sql_int(fx->path, "SELECT max(m.id) FROM media m WHERE kind = 'image' AND"
				" m.inspection_id <= 40") -
			sql_int(fx->path, "SELECT min(m.id) FROM media m WHERE kind = 'image' AND"
				" m.inspection_id <= 40"), <, 4 * images_old);
	/* Heatmaps and vibration stay while removing images was enough. */
	g_assert_cmpint(sql_int(fx->path, "SELECT count(*) FROM media WHERE kind != 'image'"), ==, 160);
	g_assert_cmpint(db_count_inspections(fx->path, NULL), ==, 80);

	/* A budget nothing meets: all files and the old rows go; the last
	 * three days' rows stay, and the event says the budget is not met. */
	opt.disk_budget_mb = 0;
	opt.max_pages = 0;
	{
		struct db_options tiny = opt;

		tiny.disk_budget_mb = 1;
		db = open_opts(fx->path, &opt);
		submit_aged(db, 5000, 1, 1.0, 16);
		db_close(db);   /* its files written, before retention looks */
		db = open_opts(fx->path, &tiny);
		/* Make the log itself weigh more than the budget. */
		sql_exec(fx->path, "CREATE TABLE ballast (b BLOB);"
			 "INSERT INTO ballast VALUES (zeroblob(1200000));");
		g_assert_cmpint(db_retain_now(db), ==, 0);
		db_close(db);
	}
	g_assert_cmpint(sql_int(fx->path, "SELECT count(*) FROM media"), ==, 0);
	g_assert_cmpint(sql_int(fx->path, "SELECT count(*) FROM inspections WHERE part_id < 1000"), ==, 0);
	g_assert_cmpint(sql_int(fx->path, "SELECT count(*) FROM inspections WHERE part_id >= 1000"), ==, 41);
	g_assert_cmpint(sql_int(fx->path, "SELECT count(*) FROM events WHERE"
				" kind = 'retention-over-budget'"), >=, 1);
	dir = db_media_dir(fx->path, NULL);
	g_assert_cmpint(files_under(dir), ==, 0);
	free(dir);
}

/* A log that fails its integrity check is moved aside, not deleted; a
 * fresh one starts and says so in its first event. */
static void test_corrupt_recovered(struct fixture *fx, gconstpointer data)
{
	db_log *db = open_ok(fx->path, 64);
	int64_t page_size;
	FILE *f;
	char *aside = NULL, *event;
	GDir *d;
	const char *name;

	(void)data;
	submit_range(db, 0, 2000);
	db_close(db);
	page_size = sql_int(fx->path, "PRAGMA page_size");
	/* Scribble over pages in the middle of the inspections b-tree. */
	f = fopen(fx->path, "r+b");
	g_assert_nonnull(f);
	for (int p = 10; p < 14; p++) {
		char junk[256];

		memset(junk, 0x5a, sizeof junk);
		g_assert_cmpint(fseek(f, (long)(p * page_size + 8), SEEK_SET), ==, 0);
		g_assert_cmpuint(fwrite(junk, sizeof junk, 1, f), ==, 1);
	}
	fclose(f);

	g_test_expect_message(G_LOG_DOMAIN, G_LOG_LEVEL_WARNING, "*log.db is corrupt*moved it to*");
	db = open_ok(fx->path, 16);
	submit_range(db, 0, 5);
	db_close(db);
	g_test_assert_expected_messages();

	d = g_dir_open(fx->dir, 0, NULL);
	while ((name = g_dir_read_name(d)))
		if (g_str_has_prefix(name, "log.db.corrupt-") && !g_str_has_suffix(name, "-wal") &&
		    !g_str_has_suffix(name, "-shm"))
			aside = g_build_filename(fx->dir, name, NULL);
	g_dir_close(d);
	g_assert_nonnull(aside);
	/* Moved whole: the bad file is still there, byte for byte its size. */
	g_assert_cmpint(sql_int(aside, "PRAGMA page_count"), >, 14);
	g_assert_cmpint(db_count_inspections(fx->path, NULL), ==, 5);
	event = sql_text(fx->path, "SELECT message FROM events WHERE kind = 'db-recovered'");
	g_assert_nonnull(strstr(event, aside));
	g_free(event);
	g_free(aside);
}

/* ---- the log's file deleted or moved under the writer (db_check_path) ---- */

#define FOLLOW_ROWS 300

struct part_marks {
	uint8_t seen[FOLLOW_ROWS];
	int64_t rows;
	uint32_t first, last;  /* the lowest and highest part id seen */
};

static int mark_part(const struct db_inspection *row, void *data)
{
	struct part_marks *m = data;

	g_assert_cmpuint(row->part_id, <, FOLLOW_ROWS);
	assert_row_matches(row);
	m->seen[row->part_id]++;
	if (m->rows++ == 0 || row->part_id < m->first)
		m->first = row->part_id;
	m->last = MAX(m->last, row->part_id);
	return 0;
}

static void read_parts(const char *path, struct part_marks *m)
{
	struct db_row_cb cb = { mark_part, m };
	char *err = NULL;

	memset(m, 0, sizeof *m);
	if (db_read_inspections(path, &cb, &err) < 0)
		g_error("reading %s: %s", path, err);
}

static void remove_with_journals(const char *path)
{
	static const char *const sfx[] = { "", "-wal", "-shm" };

	for (size_t i = 0; i < G_N_ELEMENTS(sfx); i++) {
		char *name = g_strconcat(path, sfx[i], NULL);

		g_assert_true(g_remove(name) == 0 || errno == ENOENT);
		g_free(name);
	}
}

static void assert_intact(const char *path)
{
	char *res = sql_text(path, "PRAGMA integrity_check");

	g_assert_cmpstr(res, ==, "ok");
	g_free(res);
}

static int64_t events_of(const char *path, const char *kind)
{
	char *sql = g_strdup_printf("SELECT count(*) FROM events WHERE kind = '%s'", kind);
	int64_t n = sql_int(path, sql);

	g_free(sql);
	return n;
}

/* rm log.db* while the writer writes: the rows before the delete, those
 * written into the unlinked file before the writer looked, and those after
 * are all in the file at the path, once each, with a warning and an event
 * db-deleted; the writer wrote no row into a file nobody can open. */
static void test_file_deleted(struct fixture *fx, gconstpointer data)
{
	db_log *db = open_ok(fx->path, 64);
	struct warning_count deleted;
	struct part_marks m;
	char *rescue = g_strconcat(fx->path, ".rescue", NULL);

	(void)data;
	submit_range(db, 0, 100);
	wait_settled(db, 100);
	remove_with_journals(fx->path);
	warning_count_start(&deleted, "was deleted while vigild wrote it");
	/* Written into the open file, which has no name now. */
	submit_range(db, 100, 100);
	wait_settled(db, 200);
	g_assert_cmpint(db_check_path(db), ==, 0);
	g_assert_true(g_file_test(fx->path, G_FILE_TEST_EXISTS));
	g_assert_cmpuint(stats(db).file_moves, ==, 1);
	g_assert_cmpint(stats(db).file_away, ==, 0);
	submit_range(db, 200, 100);
	db_close(db);
	warning_count_stop(&deleted);
	g_assert_cmpint(g_atomic_int_get(&deleted.n), ==, 1);

	read_parts(fx->path, &m);
	g_assert_cmpint(m.rows, ==, FOLLOW_ROWS);
	for (int i = 0; i < FOLLOW_ROWS; i++)
		g_assert_cmpuint(m.seen[i], ==, 1);
	g_assert_cmpint(events_of(fx->path, "db-deleted"), ==, 1);
	g_assert_false(g_file_test(rescue, G_FILE_TEST_EXISTS));
	assert_intact(fx->path);
	g_free(rescue);
}

/* mv log.db moved.db (log rotation) while the writer writes: the moved
 * file holds the rows up to the switch, complete without the -wal that
 * kept the old name (checkpointed into it), and a last event saying
 * where the log went on; the path holds a fresh log with every row after
 * it; no row is in neither file, none in both. */
static void test_file_moved(struct fixture *fx, gconstpointer data)
{
	db_log *db = open_ok(fx->path, 64);
	char *moved = g_build_filename(fx->dir, "moved.db", NULL);
	char *old_wal = g_strconcat(fx->path, "-wal", NULL);
	struct warning_count warned;
	struct part_marks before, after;
	char *text;

	(void)data;
	submit_range(db, 0, 100);
	wait_settled(db, 100);
	g_assert_cmpint(g_rename(fx->path, moved), ==, 0);
	warning_count_start(&warned, "was renamed or moved while vigild wrote it");
	submit_range(db, 100, 50);
	wait_settled(db, 150);
	g_assert_cmpint(db_check_path(db), ==, 0);
	g_assert_cmpuint(stats(db).file_moves, ==, 1);
	submit_range(db, 150, 150);
	/* Closed before the moved file is read: only then does a move that
	 * was not followed leave the moved file short of its -wal. */
	db_close(db);
	warning_count_stop(&warned);
	g_assert_cmpint(g_atomic_int_get(&warned.n), ==, 1);

	read_parts(moved, &before);
	read_parts(fx->path, &after);
	g_test_message("moved file: parts %u..%u, fresh log: parts %u..%u", before.first,
		       before.last, after.first, after.last);
	/* The switch came after part 149 at the latest (db_check_path) and
	 * after 99 at the earliest (the rows settled before the move). */
	g_assert_cmpint(before.rows, >=, 100);
	g_assert_cmpint(before.rows, <=, 150);
	g_assert_cmpint(before.rows + after.rows, ==, FOLLOW_ROWS);
	for (int i = 0; i < FOLLOW_ROWS; i++)
		g_assert_cmpuint(before.seen[i] + after.seen[i], ==, 1);
	g_assert_cmpuint(before.last + 1, ==, after.first);
	/* Each says what happened, and the moved file stands alone. */
	text = sql_text(moved, "SELECT message FROM events WHERE kind = 'db-moved'");
	g_assert_nonnull(strstr(text, fx->path));
	g_free(text);
	text = sql_text(fx->path, "SELECT message FROM events WHERE kind = 'db-moved'");
	g_assert_nonnull(strstr(text, moved));
	g_free(text);
	g_assert_false(g_file_test(old_wal, G_FILE_TEST_EXISTS));
	assert_intact(moved);
	assert_intact(fx->path);
	g_assert_cmpint(sql_int(fx->path, "PRAGMA user_version"), ==, SCHEMA_VERSION);
	g_free(old_wal);
	g_free(moved);
}

/* The folder itself gone with the file (rm -r): the line goes on, rows
 * into the open file, a warning (not one a look) that it cannot be
 * written back, db_stats.file_away; once the folder is back the next try
 * writes every row to the path. */
static void test_file_deleted_folder_gone(struct fixture *fx, gconstpointer data)
{
	char *dir = g_build_filename(fx->dir, "logs", NULL);
	char *path = g_build_filename(dir, "log.db", NULL);
	struct warning_count cannot, deleted;
	struct part_marks m;
	db_log *db;

	(void)data;
	g_assert_cmpint(g_mkdir(dir, 0755), ==, 0);
	db = open_ok(path, 64);
	submit_range(db, 0, 100);
	wait_settled(db, 100);
	remove_tree(dir);
	warning_count_start(&cannot, "cannot be written back yet");
	submit_range(db, 100, 100);
	wait_settled(db, 200);
	g_assert_cmpint(db_check_path(db), ==, 0);
	g_assert_cmpint(db_check_path(db), ==, 0);
	g_assert_cmpint(stats(db).file_away, ==, 1);
	g_assert_cmpuint(stats(db).file_moves, ==, 0);
	warning_count_stop(&cannot);
	g_assert_cmpint(g_atomic_int_get(&cannot.n), ==, 1);

	g_assert_cmpint(g_mkdir(dir, 0755), ==, 0);
	warning_count_start(&deleted, "was deleted while vigild wrote it");
	g_assert_cmpint(db_check_path(db), ==, 0);
	g_assert_cmpint(stats(db).file_away, ==, 0);
	submit_range(db, 200, 100);
	db_close(db);
	warning_count_stop(&deleted);
	g_assert_cmpint(g_atomic_int_get(&deleted.n), ==, 1);
	read_parts(path, &m);
	g_assert_cmpint(m.rows, ==, FOLLOW_ROWS);
	for (int i = 0; i < FOLLOW_ROWS; i++)
		g_assert_cmpuint(m.seen[i], ==, 1);
	g_free(path);
	g_free(dir);
}

/* The media folder removed while the log runs (rm -r log.db.media): the
 * next part's files are still kept, in the folder made again, with one
 * warning and an event saying so. */
static void test_media_folder_gone(struct fixture *fx, gconstpointer data)
{
	struct db_options opt = DB_OPTIONS_DEFAULT;
	char *dir = g_build_filename(fx->dir, "media", NULL);
	gint64 deadline = g_get_monotonic_time() + 30 * G_USEC_PER_SEC;
	struct warning_count gone;
	struct media_list l = { 0 };
	db_log *db;

	(void)data;
	opt.media_dir = dir;
	db = open_opts(fx->path, &opt);
	remove_tree(dir);
	warning_count_start(&gone, "was removed while vigild ran");
	for (uint32_t i = 0; i < 2; i++) {
		struct db_inspection r;
		char model[64], image[128];

		make_row(i, &r, model, sizeof model, image, sizeof image);
		r.verdict = VIGIL_VERDICT_REJECT;
		g_assert_cmpint(db_submit_media(db, &r, make_media((int)i, 40, 30), -1, NULL), ==,
				0);
		while (stats(db).media_written < 4 * (i + 1)) {
			if (g_get_monotonic_time() > deadline)
				g_error("part %u's files not written", i);
			g_usleep(1000);
		}
	}
	g_assert_cmpuint(stats(db).media_dropped, ==, 0);
	db_close(db);
	warning_count_stop(&gone);
	g_assert_cmpint(g_atomic_int_get(&gone.n), ==, 1);
	g_assert_cmpint(events_of(fx->path, "media-folder-gone"), ==, 1);
	for (int64_t id = 1; id <= 2; id++) {
		g_assert_cmpint(db_read_media(fx->path, id, collect_media, &l, NULL), ==, 0);
		for (int i = 0; i < l.n; i++) {
			char *full = g_build_filename(dir, l.paths[i], NULL);

			g_assert_true(g_file_test(full, G_FILE_TEST_IS_REGULAR));
			g_free(full);
		}
		g_assert_cmpint(l.n, ==, 4);
		media_list_clear(&l);
	}
	g_free(dir);
}

/* Submits row i and waits until the writer has dealt with it (committed,
 * refused, or spooled); its ticket. */
static uint64_t submit_settled(db_log *db, uint32_t i)
{
	struct db_inspection r;
	char model[64], image[128];
	uint64_t ticket = 0;
	gint64 deadline = g_get_monotonic_time() + 30 * G_USEC_PER_SEC;

	make_row(i, &r, model, sizeof model, image, sizeof image);
	g_assert_cmpint(db_submit_media(db, &r, NULL, -1, &ticket), ==, 0);
	while (stats(db).settled < ticket) {
		g_assert_cmpint(g_get_monotonic_time(), <, deadline);
		g_usleep(500);
	}
	return ticket;
}

/* A log whose file may not grow past its size now plus 8 pages (SQLite's
 * max_page_count, a full disk), rows in the spool at most spool_rows;
 * rows go in one per batch until a write fails. Returns the log and, in
 * *full_at, the first row that failed. */
static db_log *open_until_full(struct fixture *fx, size_t spool_rows, uint32_t *full_at)
{
	struct db_options opt = DB_OPTIONS_DEFAULT;
	db_log *db;
	uint32_t i = 0;

	db = open_ok(fx->path, 16);
	db_close(db);
	opt.max_pages = sql_int(fx->path, "PRAGMA page_count") + 8;
	opt.spool_rows = spool_rows;
	db = open_opts(fx->path, &opt);
	g_assert_true(stats(db).ok);
	while (stats(db).ok) {
		g_assert_cmpuint(i, <, 100000);
		submit_settled(db, i++);
	}
	*full_at = i - 1;
	return db;
}

/* A full disk (max_page_count): the row that fails waits in the spool, and
 * so do the rows after it, settled at once (the line never waits for a
 * disk); past spool_rows the accepted parts go first, then the oldest,
 * counted by cause. A latency for a spooled row lands on it. Once space
 * returns the writer, with nothing more submitted, writes the spool and
 * events "db-fault" (with the error), "db-rows-dropped" (the counts) and
 * "db-ok", in that order; the counters agree with the file. */
static void test_disk_full(struct fixture *fx, gconstpointer data)
{
	enum { SPOOL = 8, MORE = 21 };
	db_log *db;
	uint32_t full_at, last_reject = 0;
	uint64_t ticket = 0, kept = 0;
	int64_t before, deleted;
	gint64 deadline;
	char *sql, *msg;

	(void)data;
	g_test_expect_message(G_LOG_DOMAIN, G_LOG_LEVEL_WARNING,
			      "*writes fail*database or disk is full*");
	db = open_until_full(fx, SPOOL, &full_at);
	g_assert_cmpuint(stats(db).rows_failed, ==, 0);
	g_assert_cmpuint(stats(db).spool_depth, ==, 1);
	before = sql_int(fx->path, "SELECT count(*) FROM inspections");
	g_assert_cmpint(before, ==, full_at);

	g_test_expect_message(G_LOG_DOMAIN, G_LOG_LEVEL_WARNING, "*spool is full (8 rows)*");
	for (uint32_t i = 100000; i < 100000 + MORE; i++) {
		uint64_t t = submit_settled(db, i);

		if (i % 3 != 0) {
			last_reject = i;
			ticket = t;
		}
	}
	g_test_assert_expected_messages();
	g_assert_false(stats(db).ok);
	g_assert_cmpuint(stats(db).spool_depth, ==, SPOOL);
	g_assert_cmpuint(stats(db).rows_dropped[DB_TABLE_INSPECTIONS][DB_DROP_SPOOL_FULL], ==,
			 1 + MORE - SPOOL);
	g_assert_cmpuint(stats(db).rows_failed, ==, 1 + MORE - SPOOL);
	g_assert_cmpint(db_set_latency(db, ticket, 99.5), ==, 0);
	{
		/* The model's late judgement of a spooled fail-safe row: the
		 * row is written once, completed. */
		struct db_inspection late;
		char model[64], image[128];

		make_row(last_reject, &late, model, sizeof model, image, sizeof image);
		late.flags = 0x100;
		late.verdict = VIGIL_VERDICT_REJECT;
		late.model_verdict = VIGIL_VERDICT_ACCEPT;
		late.model_score = 0.25;
		late.image_path = NULL;
		g_assert_cmpint(db_set_late(db, ticket, &late, NULL), ==, 0);
	}
	g_assert_cmpint(sql_int(fx->path, "SELECT count(*) FROM inspections"), ==, before);

	/* Space returns (another connection frees pages); nothing more is
	 * submitted: the writer comes back by itself. */
	deleted = sql_int(fx->path, "SELECT count(*) FROM inspections WHERE part_id < 100");
	sql_exec(fx->path, "DELETE FROM inspections WHERE part_id < 100");
	deadline = g_get_monotonic_time() + 30 * G_USEC_PER_SEC;
	while (!stats(db).ok) {
		g_assert_cmpint(g_get_monotonic_time(), <, deadline);
		g_usleep(10000);
	}
	g_assert_cmpuint(stats(db).spool_depth, ==, 0);
	g_assert_cmpuint(stats(db).rows_written, ==,
			 (uint64_t)(sql_int(fx->path, "SELECT count(*) FROM inspections") +
				    sql_int(fx->path, "SELECT count(*) FROM events") + deleted));
	db_close(db);

	/* The spool kept the 8 newest rejects and marginals of the fault. */
	for (uint32_t i = 100000 + MORE; i-- > 100000 && kept < SPOOL;)
		if (i % 3 != 0) {
			sql = g_strdup_printf("SELECT count(*) FROM inspections WHERE part_id = %u", i);
			g_assert_cmpint(sql_int(fx->path, sql), ==, 1);
			g_free(sql);
			kept++;
		}
	sql = g_strdup_printf("SELECT count(*) FROM inspections WHERE part_id >= 100000"
			      " OR part_id = %u", full_at);
	g_assert_cmpint(sql_int(fx->path, sql), ==, SPOOL);
	g_free(sql);
	sql = g_strdup_printf("SELECT count(*) FROM inspections WHERE part_id = %u AND"
			      " latency_ms = 99.5 AND model_verdict = 'accept' AND model_score = 0.25"
			      " AND verdict = 'reject' AND flags = (0x100 | %u) AND image_path LIKE"
			      " '%%%06u%%'", last_reject, last_reject & 0x3f, last_reject);
	g_assert_cmpint(sql_int(fx->path, sql), ==, 1);
	g_free(sql);
	sql = g_strdup_printf("SELECT count(*) FROM inspections WHERE part_id = %u", last_reject);
	g_assert_cmpint(sql_int(fx->path, sql), ==, 1);
	g_free(sql);
	/* The fault could not be logged while the disk was full: it is
	 * logged once writing works, stamped with the time it began, then
	 * what was dropped, then db-ok. */
	g_assert_cmpint(sql_int(fx->path, "SELECT count(*) FROM events WHERE kind = 'db-fault'"
				" AND message LIKE '%database or disk is full%'"), ==, 1);
	msg = sql_text(fx->path, "SELECT group_concat(kind, ' ') FROM (SELECT kind FROM events"
			  " ORDER BY id)");
	g_assert_cmpstr(msg, ==, "db-fault db-rows-dropped db-ok");
	g_free(msg);
	msg = sql_text(fx->path, "SELECT message FROM events WHERE kind = 'db-rows-dropped'");
	g_assert_nonnull(strstr(msg, "14 row(s) dropped during the fault: 14 because the spool "
				"was full (spool_rows 8), 0 refused by the database; 14 inspection(s)"));
	g_free(msg);
	g_assert_cmpint(sql_int(fx->path, "SELECT (SELECT t_wall_us FROM events WHERE kind ="
				" 'db-ok') - (SELECT t_wall_us FROM events WHERE kind = 'db-fault')"),
			>, 0);
}

/* Closed while the disk is still full: the spooled rows are lost, said so
 * in a warning; the file keeps what was committed, and passes its check. */
static void test_spool_closed(struct fixture *fx, gconstpointer data)
{
	db_log *db;
	uint32_t full_at;

	(void)data;
	g_test_expect_message(G_LOG_DOMAIN, G_LOG_LEVEL_WARNING,
			      "*writes fail*database or disk is full*");
	db = open_until_full(fx, 64, &full_at);
	submit_settled(db, 100000);
	submit_settled(db, 100001);
	g_assert_cmpuint(stats(db).spool_depth, ==, 3);
	g_test_expect_message(G_LOG_DOMAIN, G_LOG_LEVEL_WARNING,
			      "*closing with writes still failing: 3 row(s)*lost*");
	db_close(db);
	g_test_assert_expected_messages();
	g_assert_cmpint(sql_int(fx->path, "SELECT count(*) FROM inspections"), ==, full_at);
	g_assert_cmpstr(sql_text(fx->path, "PRAGMA integrity_check"), ==, "ok");
}

/* Tickets: once settled (db_get_stats) reaches a row's ticket, the row is in the file
 * (read on another connection); its latency, set later, lands on it. */
static void test_tickets(struct fixture *fx, gconstpointer data)
{
	db_log *db = open_ok(fx->path, 64);
	uint64_t tickets[50];

	(void)data;
	for (uint32_t i = 0; i < 50; i++) {
		struct db_inspection r;
		char model[64], image[128];
		gint64 deadline = g_get_monotonic_time() + 10 * G_USEC_PER_SEC;
		char *sql;

		make_row(i, &r, model, sizeof model, image, sizeof image);
		r.latency_ms = NAN;
		g_assert_cmpint(db_submit_media(db, &r, NULL, 0, &tickets[i]), ==, 0);
		if (i > 0)
			g_assert_cmpuint(tickets[i], >, tickets[i - 1]);
		while (stats(db).settled < tickets[i]) {
			g_assert_cmpint(g_get_monotonic_time(), <, deadline);
			g_usleep(100);
		}
		sql = g_strdup_printf("SELECT count(*) FROM inspections WHERE part_id = %u", i);
		g_assert_cmpint(sql_int(fx->path, sql), ==, 1);
		g_free(sql);
		g_assert_cmpint(db_set_latency(db, tickets[i], 1.5 + i), ==, 0);
	}
	g_assert_cmpuint(stats(db).queue_high_water, >=, 1);
	g_assert_cmpfloat(stats(db).write_lag_max_ms, >=, 0.0);
	db_close(db);
	g_assert_cmpint(sql_int(fx->path, "SELECT count(*) FROM inspections WHERE"
				" latency_ms = 1.5 + part_id"), ==, 50);
}

/* db_get_stats at a moment the caller knows nothing moves: a second call
 * gives the same figures, and they agree with each other. lag_fields:
 * whether the write lag and rows written are settled too (nothing is
 * written meanwhile). */
static void assert_stats_agree(db_log *db, const struct db_stats *st,
			       gboolean lag_fields)
{
	struct db_stats again;
	uint64_t dropped = 0;

	db_get_stats(db, &again);
	g_assert_cmpuint(st->settled, ==, db_settled(db));
	g_assert_cmpint(st->ok, ==, db_ok(db));
	g_assert_cmpuint(st->rows_failed, ==, again.rows_failed);
	for (int t = 0; t < DB_NTABLES; t++)
		for (int c = 0; c < DB_NDROP_CAUSES; c++) {
			g_assert_cmpuint(st->rows_dropped[t][c], ==, again.rows_dropped[t][c]);
			dropped += st->rows_dropped[t][c];
		}
	g_assert_cmpuint(st->rows_failed, ==, dropped);
	g_assert_cmpuint(st->spool_depth, ==, again.spool_depth);
	g_assert_cmpuint(st->media_written, ==, again.media_written);
	g_assert_cmpuint(st->media_dropped, ==, again.media_dropped);
	g_assert_cmpuint(st->queue_high_water, ==, again.queue_high_water);
	g_assert_cmpuint(st->queue_high_water, >=, 1);
	g_assert_cmpfloat(st->write_lag_ms, >=, 0.0);
	g_assert_cmpfloat(st->write_lag_max_ms, >=, st->write_lag_ms);
	if (lag_fields) {
		g_assert_cmpuint(st->rows_written, ==, again.rows_written);
		g_assert_cmpfloat(st->write_lag_ms, ==, again.write_lag_ms);
		g_assert_cmpfloat(st->write_lag_max_ms, ==, again.write_lag_max_ms);
	}
}

/* Submits part i (a reject with files when media is not NULL) and waits
 * until its ticket has settled; its ticket. */
static uint64_t submit_media_settled(db_log *db, uint32_t i, struct db_media_set *media)
{
	struct db_inspection r;
	char model[64], image[128];
	uint64_t ticket = 0;
	gint64 deadline = g_get_monotonic_time() + 30 * G_USEC_PER_SEC;

	make_row(i, &r, model, sizeof model, image, sizeof image);
	if (media)
		r.verdict = VIGIL_VERDICT_REJECT;
	g_assert_cmpint(db_submit_media(db, &r, media, -1, &ticket), ==, 0);
	while (stats(db).settled < ticket) {
		g_assert_cmpint(g_get_monotonic_time(), <, deadline);
		g_usleep(500);
	}
	return ticket;
}

/* db_get_stats after a known sequence: rows, events and a trend reading
 * written, one row refused, one part's four files written; then a full
 * disk: rows spooled, a part's files dropped with it, rows dropped from the
 * full spool; then space again. At each quiet point every field matches
 * the single getters, what was done, and the file. */
static void test_stats(struct fixture *fx, gconstpointer data)
{
	enum { SPOOL = 8, MORE = 10, DROPPED = 5 };
	struct db_options opt = DB_OPTIONS_DEFAULT;
	struct db_trend tr = { .source = "tx1", .t_wall_us = 1700000000000000, .part_id = -1,
			       .velocity_mm_s = 1.5, .accel_g = 0.5, .temperature_c = 30 };
	struct db_stats st;
	db_log *db;
	uint64_t ticket = 0, spooled;
	uint32_t i;
	int64_t deleted;
	gint64 deadline;
	char *msg, *want;

	(void)data;
	db = open_ok(fx->path, 16);
	db_close(db);
	sql_exec(fx->path,
		 "CREATE TRIGGER refuse_13 BEFORE INSERT ON inspections WHEN NEW.part_id = 13"
		 " BEGIN SELECT RAISE(ABORT, 'injected failure'); END;");
	opt.max_pages = sql_int(fx->path, "PRAGMA page_count") + 16;
	opt.spool_rows = SPOOL;
	db = open_opts(fx->path, &opt);

	/* Writes work: 20 parts (part 13 refused, part 1 with files), two
	 * events, a trend reading. Part 13's batch may also hold part 1's
	 * late row update from the media thread, which runs when the CPU
	 * allows (nice 10), so the batch's size is not fixed: one row of it
	 * fails either way. */
	g_test_expect_message(G_LOG_DOMAIN, G_LOG_LEVEL_WARNING,
			      "*: 1 of * rows not written*injected failure*");
	for (i = 0; i < 20; i++)
		ticket = submit_media_settled(db, i, i == 1 ? make_media(1, 32, 24) : NULL);
	g_test_assert_expected_messages();
	g_assert_cmpint(db_event(db, "start", "test"), ==, 0);
	g_assert_cmpint(db_trend(db, &tr), ==, 0);
	g_assert_cmpint(db_event(db, "stop", "test"), ==, 0);
	wait_settled(db, 23);
	/* The files are written, then their rows committed; then nothing
	 * moves once the writer has dealt with what came before. */
	deadline = g_get_monotonic_time() + 30 * G_USEC_PER_SEC;
	while (sql_int(fx->path, "SELECT count(*) FROM media") < 4) {
		g_assert_cmpint(g_get_monotonic_time(), <, deadline);
		g_usleep(1000);
	}
	g_assert_cmpint(db_retain_now(db), ==, 0);
	st = stats(db);
	assert_stats_agree(db, &st, TRUE);
	g_assert_cmpuint(st.settled, ==, ticket);
	g_assert_true(st.ok);
	g_assert_cmpuint(st.rows_written, ==, 19 + 2 + 1);
	g_assert_cmpuint(st.rows_failed, ==, 1);
	g_assert_cmpuint(st.rows_dropped[DB_TABLE_INSPECTIONS][DB_DROP_REFUSED], ==, 1);
	g_assert_cmpuint(st.spool_depth, ==, 0);
	g_assert_cmpuint(st.media_written, ==, 4);
	g_assert_cmpuint(st.media_dropped, ==, 0);
	g_assert_cmpint(sql_int(fx->path, "SELECT count(*) FROM inspections"), ==, 19);

	/* The disk fills: the row that fails waits in the spool. */
	g_test_expect_message(G_LOG_DOMAIN, G_LOG_LEVEL_WARNING,
			      "*writes fail*database or disk is full*");
	for (i = 20; stats(db).ok; i++) {
		g_assert_cmpuint(i, <, 100000);
		submit_media_settled(db, i, NULL);
	}
	g_test_assert_expected_messages();
	/* A reject with files while writes fail: its row is spooled, its
	 * files dropped, and the drop's event waits in the spool too. */
	g_test_expect_message(G_LOG_DOMAIN, G_LOG_LEVEL_WARNING, "*1 part(s)' files not kept*");
	submit_media_settled(db, 100000, make_media(2, 32, 24));
	deadline = g_get_monotonic_time() + 30 * G_USEC_PER_SEC;
	while (stats(db).spool_depth < 3) {
		g_assert_cmpint(g_get_monotonic_time(), <, deadline);
		g_usleep(1000);
	}
	g_test_assert_expected_messages();
	g_assert_cmpuint(stats(db).media_dropped, ==, 1);
	/* Past spool_rows: the accepted parts go first, then the oldest. */
	g_test_expect_message(G_LOG_DOMAIN, G_LOG_LEVEL_WARNING, "*spool is full (8 rows)*");
	for (i = 100001; i <= 100000 + MORE; i++)
		ticket = submit_media_settled(db, i, NULL);
	g_test_assert_expected_messages();
	spooled = 3 + MORE;
	st = stats(db);
	/* rows_written and the lag are left out: the writer may log the fault
	 * meanwhile, if a page with room takes the event. */
	assert_stats_agree(db, &st, FALSE);
	g_assert_cmpuint(st.settled, ==, ticket);
	g_assert_false(st.ok);
	g_assert_cmpuint(st.spool_depth, ==, SPOOL);
	g_assert_cmpuint(spooled - SPOOL, ==, DROPPED);
	g_assert_cmpuint(st.rows_dropped[DB_TABLE_INSPECTIONS][DB_DROP_SPOOL_FULL], ==, DROPPED);
	g_assert_cmpuint(st.rows_failed, ==, 1 + DROPPED);
	g_assert_cmpuint(st.media_written, ==, 4);
	g_assert_cmpuint(st.media_dropped, ==, 1);

	/* Space returns: the spool is written, the fault's events say what
	 * was dropped, and the counters agree with the file. */
	deleted = sql_int(fx->path, "SELECT count(*) FROM inspections WHERE part_id < 100000");
	sql_exec(fx->path, "DELETE FROM inspections WHERE part_id < 100000");
	deadline = g_get_monotonic_time() + 30 * G_USEC_PER_SEC;
	while (!stats(db).ok) {
		g_assert_cmpint(g_get_monotonic_time(), <, deadline);
		g_usleep(10000);
	}
	st = stats(db);
	assert_stats_agree(db, &st, TRUE);
	g_assert_cmpuint(st.settled, ==, ticket);
	g_assert_cmpuint(st.spool_depth, ==, 0);
	g_assert_cmpuint(st.rows_failed, ==, 1 + DROPPED);
	g_assert_cmpuint(st.media_dropped, ==, 1);
	g_assert_cmpuint(st.rows_written, ==,
			 (uint64_t)(sql_int(fx->path, "SELECT count(*) FROM inspections") +
				    sql_int(fx->path, "SELECT count(*) FROM events") +
				    sql_int(fx->path, "SELECT count(*) FROM trend") + deleted));
	msg = sql_text(fx->path, "SELECT message FROM events WHERE kind = 'db-rows-dropped'");
	want = g_strdup_printf("%" PRIu64 " row(s) dropped during the fault: %" PRIu64
			       " because the spool was full",
			       st.rows_dropped[DB_TABLE_INSPECTIONS][DB_DROP_SPOOL_FULL],
			       st.rows_dropped[DB_TABLE_INSPECTIONS][DB_DROP_SPOOL_FULL]);
	g_assert_nonnull(strstr(msg, want));
	g_free(want);
	g_free(msg);
	db_close(db);
	g_assert_cmpint(sql_int(fx->path, "SELECT count(*) FROM events WHERE"
				" kind = 'media-dropped'"), ==, 1);
}

/* The writer's memory levels off: its page cache (the bulk of what SQLite
 * holds) stops growing once full, however long the log grows. Rounds of
 * rows until the file is several times the cache, SQLite's own count of
 * the memory it holds after each. */
#define CACHE_ROUNDS 4
#define CACHE_ROUND_ROWS 10000

static void test_writer_memory_bounded(struct fixture *fx, gconstpointer data)
{
	db_log *db = open_ok(fx->path, 4096);
	int64_t used[CACHE_ROUNDS];
	int64_t file_kib;

	(void)data;
	for (int k = 0; k < CACHE_ROUNDS; k++) {
		for (uint32_t i = 0; i < CACHE_ROUND_ROWS; i++) {
			struct db_inspection r;
			char model[64], image[128];

			make_row((uint32_t)k * CACHE_ROUND_ROWS + i, &r, model, sizeof model, image,
				 sizeof image);
			g_assert_cmpint(db_submit(db, &r), ==, 0);
		}
		wait_settled(db, (uint64_t)(k + 1) * CACHE_ROUND_ROWS);
		used[k] = sqlite3_memory_used();
		g_test_message("after %d rows: SQLite holds %" PRId64 " KiB",
			       (k + 1) * CACHE_ROUND_ROWS, used[k] / 1024);
	}
	g_assert_cmpuint(stats(db).rows_failed, ==, 0);
	/* Measured with the writer alone; sql_int opens a connection. */
	file_kib = sql_int(fx->path, "PRAGMA page_count") * sql_int(fx->path, "PRAGMA page_size") /
		   1024;
	db_close(db);
	g_test_message("file %" PRId64 " KiB", file_kib);
	/* The rounds outgrew the cache (2,000 KiB, db/db-private.h) ... */
	g_assert_cmpint(file_kib, >, 3 * 2000);
	/* ... which SQLite keeps to its bound (plus schema, statements and
	 * lookaside) ... */
	for (int k = 0; k < CACHE_ROUNDS; k++)
		g_assert_cmpint(used[k], <, (2000 + 1024) * 1024);
	/* ... and no longer grows once full. */
	g_assert_cmpint(used[CACHE_ROUNDS - 1] - used[1], <, 128 * 1024);
}

/* [database] as vigild reads it: the documented defaults, the media
 * folder beside the file, and errors named by file, line and key. */
static void test_database_settings(void)
{
	static const char good[] = "[database]\npath = /var/lib/vigil/vigil.db\n";
	static const char bad[] =
		"[database]\n"
		"path = vigil.db\n"
		"max_age_days = 3\n";
	static const char ring_budget[] =
		"[database]\n"
		"path = vigil.db\n"
		"disk_budget_mb = 512\n"
		"recent_images_mb = 512\n";
	static const char small_budget[] =
		"[database]\n"
		"path = vigil.db\n"
		"disk_budget_mb = 400\n";
	static const char ring_negative[] =
		"[database]\n"
		"path = vigil.db\n"
		"recent_images_hours = -1\n";
	struct db_settings s;
	char *err = NULL;
	config *c = config_load_data(good, "line.conf", &err);

	g_assert_nonnull(c);
	g_assert_cmpint(db_options_read(c, &s, &err), ==, 0);
	g_assert_cmpstr(s.path, ==, "/var/lib/vigil/vigil.db");
	g_assert_cmpstr(s.opt.media_dir, ==, "/var/lib/vigil/vigil.db.media");
	g_assert_cmpuint(s.opt.queue_depth, ==, 4096);
	g_assert_cmpuint(s.opt.media_queue, ==, 64);
	g_assert_cmpint(s.opt.keep_accepted_every, ==, 100);
	g_assert_cmpint(s.opt.max_age_days, ==, 0);
	g_assert_cmpint(s.opt.protect_days, ==, 7);
	g_assert_cmpint(s.opt.disk_budget_mb, ==, 0);
	g_assert_cmpint(s.opt.retention_period_s, ==, 600);
	g_assert_cmpuint(s.opt.spool_rows, ==, 4096);
	g_assert_cmpint(s.commit_timeout_ms, ==, 100);
	g_assert_cmpstr(s.opt.shifts, ==, "early 06:00, late 14:00, night 22:00");
	g_assert_cmpint(s.opt.recent_images_mb, ==, 1024);
	g_assert_cmpint(s.opt.recent_images_hours, ==, 0);
	db_settings_clear(&s);
	config_free(c);

	/* Under a small disk budget the default ring is a quarter of it. */
	c = config_load_data(small_budget, "line.conf", &err);
	g_assert_nonnull(c);
	g_assert_cmpint(db_options_read(c, &s, &err), ==, 0);
	g_assert_cmpint(s.opt.recent_images_mb, ==, 100);
	db_settings_clear(&s);
	config_free(c);

	/* A ring that would take the whole disk budget, and one of a
	 * negative age, are named by file, line and key. */
	c = config_load_data(ring_budget, "line.conf", &err);
	g_assert_nonnull(c);
	g_assert_cmpint(db_options_read(c, &s, &err), ==, -EINVAL);
	g_assert_cmpstr(err, ==, "line.conf:4: [database] recent_images_mb: 512 is not less than "
			"disk_budget_mb (512): the ring would take the whole budget");
	g_free(err);
	err = NULL;
	db_settings_clear(&s);
	config_free(c);
	c = config_load_data(ring_negative, "line.conf", &err);
	g_assert_nonnull(c);
	g_assert_cmpint(db_options_read(c, &s, &err), ==, -EINVAL);
	g_assert_true(g_str_has_prefix(err, "line.conf:3: [database] recent_images_hours"));
	g_free(err);
	err = NULL;
	db_settings_clear(&s);
	config_free(c);

	/* The shift plan is checked, written canonically and recorded in the
	 * log for readers; a log that records none reads as the default. */
	{
		static const char shifts[] = "[database]\npath = x.db\nshifts = b 18:00,a 6:00\n";
		static const char bad_shifts[] = "[database]\npath = x.db\nshifts = a 06:00, b 25:00\n";
		char *dir = g_dir_make_tmp("vigil-shifts-XXXXXX", NULL);
		char *path = g_build_filename(dir, "log.db", NULL);
		char *plan;
		db_log *db;

		c = config_load_data(shifts, "line.conf", &err);
		g_assert_cmpint(db_options_read(c, &s, &err), ==, 0);
		g_assert_cmpstr(s.opt.shifts, ==, "a 06:00, b 18:00");
		s.opt.media_dir = NULL;
		db = db_open_with(path, NULL, &err);
		g_assert_nonnull(db);
		db_close(db);
		plan = db_shifts(path, &err);
		g_assert_cmpstr(plan, ==, "early 06:00, late 14:00, night 22:00");
		free(plan);
		db = db_open_with(path, &s.opt, &err);
		g_assert_nonnull(db);
		db_close(db);
		plan = db_shifts(path, &err);
		g_assert_cmpstr(plan, ==, "a 06:00, b 18:00");
		free(plan);
		db_settings_clear(&s);
		config_free(c);

		c = config_load_data(bad_shifts, "line.conf", &err);
		g_assert_cmpint(db_options_read(c, &s, &err), ==, -EINVAL);
		g_assert_cmpstr(err, ==, "line.conf:3: [database] shifts: shift 'b' starts at "
				"'25:00', not a time HH:MM from 00:00 to 23:59");
		g_clear_pointer(&err, g_free);
		db_settings_clear(&s);
		config_free(c);
		remove_tree(dir);
		g_free(path);
		g_free(dir);
	}

	c = config_load_data(bad, "line.conf", &err);
	g_assert_nonnull(c);
	g_assert_cmpint(db_options_read(c, &s, &err), ==, -EINVAL);
	g_assert_cmpstr(err, ==, "line.conf:3: [database] max_age_days: 3 is less than "
			"protect_days (7): rows of the protected last days are never removed");
	g_free(err);
	db_settings_clear(&s);
	db_settings_clear(NULL);
	config_free(c);
}

/* db_count_buckets: rows submitted at chosen times are counted in the
 * bucket [edges[i], edges[i+1]) they fall in, by verdict and class; an
 * edge itself belongs to the bucket it starts; empty buckets are zero;
 * edges going backwards are refused. */
static void test_count_buckets(struct fixture *fx, gconstpointer data)
{
	const int64_t t0 = 1794960000000000LL, h = 3600LL * 1000000;
	int64_t edges[] = { t0, t0 + h, t0 + 2 * h, t0 + 3 * h };
	struct db_bucket_counts c[3];
	char *err = NULL;
	db_log *db;

	(void)data;
	db = db_open(fx->path, 64, &err);
	g_assert_nonnull(db);
	for (int i = 0; i < 30; i++) {
		/* 10 parts in hour 0 (2 rejects, 1 marginal), 20 in hour 2 (all
		 * rejects, vibration), the first exactly on hour 2's edge; and
		 * one before and one at the end edge, outside every bucket. */
		struct db_inspection r = {
			.part_id = (uint32_t)i + 1, .seq = (uint64_t)i + 1,
			.t_wall_us = i < 10 ? t0 + i * 60000000LL : t0 + 2 * h + (i - 10) * 1000000LL,
			.verdict = i >= 10 || i < 2 ? VIGIL_VERDICT_REJECT
				 : i == 2 ? VIGIL_VERDICT_MARGINAL : VIGIL_VERDICT_ACCEPT,
			.score = 0.5, .vision_score = 0.5, .signal_score = 0.5,
			.latency_ms = NAN, .infer_ms = NAN,
		};

		r.defect_class = i >= 10 ? VIGIL_CLASS_VIBRATION
			       : i < 3 ? VIGIL_CLASS_SURFACE : VIGIL_CLASS_NONE;
		g_assert_cmpint(db_submit(db, &r), ==, 0);
	}
	{
		struct db_inspection r = { .part_id = 98, .t_wall_us = t0 - 1,
					   .verdict = VIGIL_VERDICT_REJECT, .score = NAN,
					   .vision_score = NAN, .signal_score = NAN,
					   .latency_ms = NAN, .infer_ms = NAN };

		g_assert_cmpint(db_submit(db, &r), ==, 0);
		r.part_id = 99;
		r.t_wall_us = t0 + 3 * h;
		g_assert_cmpint(db_submit(db, &r), ==, 0);
	}
	db_close(db);
	g_assert_cmpint(db_count_buckets(fx->path, edges, 3, c, &err), ==, 0);
	g_assert_cmpint(c[0].start_us, ==, t0);
	g_assert_cmpint(c[0].end_us, ==, t0 + h);
	g_assert_cmpint(c[0].parts, ==, 10);
	g_assert_cmpint(c[0].accepted, ==, 7);
	g_assert_cmpint(c[0].rejected, ==, 2);
	g_assert_cmpint(c[0].marginal, ==, 1);
	g_assert_cmpint(c[0].by_class[VIGIL_CLASS_SURFACE], ==, 3);
	g_assert_cmpint(c[0].by_class[VIGIL_CLASS_NONE], ==, 7);
	g_assert_cmpint(c[1].parts, ==, 0);
	g_assert_cmpint(c[2].parts, ==, 20);
	g_assert_cmpint(c[2].rejected, ==, 20);
	g_assert_cmpint(c[2].by_class[VIGIL_CLASS_VIBRATION], ==, 20);
	edges[2] = t0;
	g_assert_cmpint(db_count_buckets(fx->path, edges, 3, c, &err), ==, -EINVAL);
	g_assert_nonnull(strstr(err, "bucket 1"));
	free(err);
}

int main(int argc, char **argv)
{
	g_test_init(&argc, &argv, NULL);

#define ADD(name, fn) \
	g_test_add(name, struct fixture, NULL, fixture_setup, fn, fixture_teardown)
	ADD("/db/write-read-two-threads", test_write_read);
	ADD("/db/columns", test_columns);
	ADD("/db/nan-scores", test_nan_scores);
	ADD("/db/reopen", test_reopen);
	ADD("/db/count-buckets", test_count_buckets);
	g_test_add("/db/migrate-from-v1", struct fixture, GINT_TO_POINTER(1), fixture_setup,
		   test_migrate, fixture_teardown);
	g_test_add("/db/migrate-from-v2", struct fixture, GINT_TO_POINTER(2), fixture_setup,
		   test_migrate, fixture_teardown);
	g_test_add("/db/migrate-from-v3", struct fixture, GINT_TO_POINTER(3), fixture_setup,
		   test_migrate, fixture_teardown);
	g_test_add("/db/migrate-from-v11", struct fixture, GINT_TO_POINTER(11), fixture_setup,
		   test_migrate, fixture_teardown);
	ADD("/db/migrate-media-kinds", test_migrate_media_kinds);
	ADD("/db/newer-schema-refused", test_newer_schema_refused);
	ADD("/db/open-errors", test_open_errors);
	ADD("/db/wal", test_wal);
	ADD("/db/events", test_events);
	ADD("/db/trend", test_trend);
	ADD("/db/row-failure", test_row_failure);
	ADD("/db/transaction-failure", test_transaction_failure);
	ADD("/db/read-stops", test_read_stops);
	ADD("/db/bad-arguments", test_bad_arguments);
	ADD("/db/media-files", test_media_files);
	ADD("/db/media-anomaly", test_media_anomaly);
	ADD("/db/media-sampling", test_media_sampling);
	ADD("/db/media-drops", test_media_drops);
	ADD("/db/media-warnings", test_media_warnings);
	ADD("/db/open-waits-for-lock", test_open_waits_for_lock);
	ADD("/db/media-sweep", test_media_sweep);
	ADD("/db/review-labels", test_review_labels);
	ADD("/db/review-at", test_review_at);
	ADD("/db/recent-ring", test_recent_ring);
	ADD("/db/recent-ring-hours", test_recent_ring_hours);
	ADD("/db/recent-ring-gives-way", test_recent_ring_gives_way);
	ADD("/db/retention-age", test_retention_age);
	ADD("/db/retention-clock-step", test_retention_clock_step);
	ADD("/db/retention-budget", test_retention_budget);
	ADD("/db/retention-slices", test_retention_slices);
	ADD("/db/retention-events", test_retention_events);
	ADD("/db/corrupt-recovered", test_corrupt_recovered);
	ADD("/db/file-deleted", test_file_deleted);
	ADD("/db/file-moved", test_file_moved);
	ADD("/db/file-deleted-folder-gone", test_file_deleted_folder_gone);
	ADD("/db/media-folder-gone", test_media_folder_gone);
	ADD("/db/disk-full", test_disk_full);
	ADD("/db/spool-closed", test_spool_closed);
	ADD("/db/tickets", test_tickets);
	ADD("/db/stats", test_stats);
	ADD("/db/writer-memory-bounded", test_writer_memory_bounded);
#undef ADD
	g_test_add_func("/db/database-settings", test_database_settings);
	return g_test_run();
}
