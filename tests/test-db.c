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

/* The writer commits asynchronously; wait until it has dealt with
 * `expected` rows one way or the other. */
static void wait_settled(db_log *db, uint64_t expected)
{
	gint64 deadline = g_get_monotonic_time() + 30 * G_USEC_PER_SEC;

	while (db_rows_written(db) + db_rows_failed(db) < expected) {
		if (g_get_monotonic_time() > deadline)
			g_error("writer settled only %" PRIu64 " + %" PRIu64 " of %" PRIu64 " rows",
				db_rows_written(db), db_rows_failed(db), expected);
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
	while (db_rows_written(db) < ROWS_TOTAL / 2) {
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
	g_assert_cmpuint(db_rows_written(db), ==, ROWS_TOTAL);
	g_assert_cmpuint(db_rows_failed(db), ==, 0);
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
	g_assert_cmpint(sql_int(fx->path, "PRAGMA user_version"), ==, 4);
	g_assert_cmpint(sql_int(fx->path, "SELECT count(*) FROM sqlite_master"), ==, 9); /* 5 tables, 4 indexes */
	/* The schema cookie moves with every schema change: unchanged means
	 * no migration ran again. */
	schema_cookie = sql_int(fx->path, "PRAGMA schema_version");

	db = open_ok(fx->path, 16);
	submit_range(db, 10, 5);
	db_close(db);
	g_assert_cmpint(sql_int(fx->path, "PRAGMA user_version"), ==, 4);
	g_assert_cmpint(sql_int(fx->path, "PRAGMA schema_version"), ==, schema_cookie);
	g_assert_cmpint(sql_int(fx->path, "SELECT count(*) FROM sqlite_master"), ==, 9);
	g_assert_cmpint(db_count_inspections(fx->path, NULL), ==, 15);
}

/* A database written by schema version 1 (as the first release left it)
 * is migrated in place: its rows stay, the vibration table appears. */
static void test_migrate_from_v1(struct fixture *fx, gconstpointer data)
{
	struct db_inspection row = { .part_id = 77, .trigger_counter = 3, .seq = 2,
				     .t_wall_us = 1000, .verdict = 2, .defect_class = 2,
				     .score = 0.9, .has_vibration = 1,
				     .vibration = { .rms_velocity_mm_s = 2.5, .iso_zone = 'C',
						    .bpfo_env = 31.0 } };
	db_log *db;

	(void)data;
	sql_exec(fx->path,
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
		 " 0.1, 0.1, 0.1, 2.0, 1.0, 'synthetic-1', NULL);"
		 "PRAGMA user_version = 1;");
	db = open_ok(fx->path, 16);
	g_assert_cmpint(db_submit(db, &row), ==, 0);
	db_close(db);
	g_assert_cmpint(sql_int(fx->path, "PRAGMA user_version"), ==, 4);
	g_assert_cmpint(db_count_inspections(fx->path, NULL), ==, 2);
	g_assert_cmpint(sql_int(fx->path, "SELECT part_id FROM inspections WHERE id = 1"), ==, 5);
	g_assert_cmpint(sql_int(fx->path, "SELECT count(*) FROM vibration"), ==, 1);
	g_assert_cmpint(sql_int(fx->path, "SELECT i.part_id FROM vibration v JOIN inspections i"
				" ON i.id = v.inspection_id WHERE v.iso_zone = 'C'"
				" AND v.bpfo_env = 31.0"), ==, 77);
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
	g_assert_cmpuint(db_rows_written(db), ==, 8); /* rows and events together */
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
	g_assert_cmpuint(db_rows_failed(db), ==, 1);
	g_assert_cmpuint(db_rows_written(db), ==, 99);
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

/* An error that rolls the whole transaction back loses the rows already
 * inserted in it: they must be counted as failed, not as written. */
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
	written = db_rows_written(db);
	failed = db_rows_failed(db);
	db_close(db);
	g_test_assert_expected_messages();
	g_test_message("written %" PRIu64 ", failed %" PRIu64, written, failed);
	g_assert_cmpuint(written + failed, ==, 100);
	g_assert_cmpuint(failed, >=, 1);
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
	g_assert_cmpuint(db_rows_written(NULL), ==, 0);
	g_assert_cmpuint(db_rows_failed(NULL), ==, 0);
	g_assert_null(db_last_error(NULL));
	g_assert_cmpint(db_count_inspections(fx->path, NULL), ==, 1);

	g_assert_cmpstr(db_strerror(DB_ECLOSED), ==, "database log is closed");
	g_assert_cmpstr(db_strerror(DB_ESQLITE), ==, "SQLite error");
	g_assert_cmpstr(db_strerror(-EINVAL), ==, g_strerror(EINVAL));
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
	ADD("/db/migrate-from-v1", test_migrate_from_v1);
	ADD("/db/newer-schema-refused", test_newer_schema_refused);
	ADD("/db/open-errors", test_open_errors);
	ADD("/db/wal", test_wal);
	ADD("/db/events", test_events);
	ADD("/db/trend", test_trend);
	ADD("/db/row-failure", test_row_failure);
	ADD("/db/transaction-failure", test_transaction_failure);
	ADD("/db/read-stops", test_read_stops);
	ADD("/db/bad-arguments", test_bad_arguments);
#undef ADD
	return g_test_run();
}
