/* report/: the shift report and the Pareto it shares with vigilctl, over a
 * real log written by the db module with chosen times, in a fixed zone
 * (Europe/Berlin, UTC+1 in December) so every shift boundary is known.
 *
 * `test-report --make-log PATH` writes that log and exits: the Python
 * tests (test_review_report*.py) read the same one through vigilctl and
 * vigild. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <glib.h>
#include <glib/gstdio.h>
#include <sqlite3.h>

#include "core/part.h"
#include "db/db.h"
#include "report/report.h"

/* Not the default plan: two shifts, late running to 06:00, so a Pareto by
 * the hard-coded 06/14/22 split would put the 23:00 part in "night". */
#define PLAN "early 06:00, late 14:00"
#define SCRIPT_EVENT "<script>alert('event')</script>"
#define SCRIPT_NOTE "<script>alert('note')</script> & not a defect"

/* 2026-12-01 at h:m:s local (Europe/Berlin). */
static int64_t local_us(int h, int m, double s)
{
	GDateTime *t = g_date_time_new_local(2026, 12, 1, h, m, s);
	int64_t us = g_date_time_to_unix(t) * G_USEC_PER_SEC + g_date_time_get_microsecond(t);

	g_date_time_unref(t);
	return us;
}

static struct db_media_set *one_image(int seed)
{
	struct db_media_set *m = g_new0(struct db_media_set, 1);

	m->nimages = 1;
	m->images[0].camera = g_strdup("top");
	m->images[0].width = 32;
	m->images[0].height = 24;
	m->images[0].gray = g_malloc(32 * 24);
	for (int i = 0; i < 32 * 24; i++)
		m->images[0].gray[i] = (uint8_t)(i * 7 + seed * 31);
	return m;
}

static void submit(db_log *db, uint32_t part, int64_t t_us, int verdict, int cls, double score,
		   uint32_t flags, const char *model, gboolean image)
{
	struct db_inspection r = {
		.part_id = part, .trigger_counter = part, .seq = part, .t_wall_us = t_us,
		.verdict = verdict, .defect_class = cls, .flags = flags, .score = score,
		.vision_score = score, .signal_score = NAN, .latency_ms = 3, .infer_ms = 2,
		.model_version = model,
	};

	if (db_submit_media(db, &r, image ? one_image((int)part) : NULL, -1, NULL) != 0) {
		fprintf(stderr, "submit of part %u failed\n", part);
		exit(1);
	}
}

static void event_at(const char *path, int64_t t_us, const char *kind, const char *message)
{
	sqlite3 *c = NULL;
	sqlite3_stmt *st = NULL;

	/* db_event stamps now; a report of a past shift needs events then. */
	if (sqlite3_open(path, &c) != SQLITE_OK ||
	    sqlite3_prepare_v2(c, "INSERT INTO events (t_wall_us, kind, message) VALUES (?, ?, ?)",
			       -1, &st, NULL) != SQLITE_OK) {
		fprintf(stderr, "events of %s: %s\n", path, sqlite3_errmsg(c));
		exit(1);
	}
	sqlite3_bind_int64(st, 1, t_us);
	sqlite3_bind_text(st, 2, kind, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, message, -1, SQLITE_STATIC);
	if (sqlite3_step(st) != SQLITE_DONE) {
		fprintf(stderr, "events of %s: %s\n", path, sqlite3_errmsg(c));
		exit(1);
	}
	sqlite3_finalize(st);
	sqlite3_close(c);
}

/* The log: 2026-12-01 early (06:00-14:00) holds parts 1-21, late
 * (14:00-22:00) parts 101-111. Early: 5 rejects with an image (3 surface,
 * 1 vibration, 1 both), 2 marginal (vibration), 1 fail-safe reject at the
 * deadline (class none, no image), 13 accepted, the last at 13:59:59.5;
 * part 10's reject is overruled to accept with a note holding <script>.
 * Late (14:00-06:00): 11 surface rejects, the first at 14:00:00 exactly,
 * and part 201 accepted at 23:00. The model
 * changes from m-v1 to m-v2 at 07:45; events before, in and after. */
static void make_log(const char *path)
{
	struct db_options opt = DB_OPTIONS_DEFAULT;
	char *err = NULL;
	db_log *db;
	static const int reject_cls[5] = { VIGIL_CLASS_SURFACE, VIGIL_CLASS_SURFACE,
					   VIGIL_CLASS_SURFACE, VIGIL_CLASS_VIBRATION,
					   VIGIL_CLASS_BOTH };
	static const double reject_score[5] = { 0.9, 0.8, 0.95, 0.7, 0.85 };

	opt.shifts = PLAN;
	if (!(db = db_open_with(path, &opt, &err))) {
		fprintf(stderr, "%s\n", err);
		exit(1);
	}
	for (uint32_t i = 0; i < 20; i++) {
		int64_t t = local_us(6, 10, 0) + (int64_t)i * 10 * 60 * G_USEC_PER_SEC;
		const char *model = t < local_us(7, 45, 0) ? "m-v1" : "m-v2";

		if (i % 4 == 1)
			submit(db, i + 1, t, VIGIL_VERDICT_REJECT, reject_cls[i / 4],
			       reject_score[i / 4], VIGIL_FLAG_VISION_DEFECT, model, TRUE);
		else if (i == 2 || i == 6)
			submit(db, i + 1, t, VIGIL_VERDICT_MARGINAL, VIGIL_CLASS_VIBRATION, 0.5, 0,
			       model, FALSE);
		else if (i == 18)
			submit(db, i + 1, t, VIGIL_VERDICT_REJECT, VIGIL_CLASS_NONE, NAN,
			       VIGIL_FLAG_FAILSAFE | VIGIL_FLAG_DEADLINE, model, FALSE);
		else
			submit(db, i + 1, t, VIGIL_VERDICT_ACCEPT, VIGIL_CLASS_NONE, 0.1, 0, model,
			       FALSE);
	}
	submit(db, 21, local_us(13, 59, 59.5), VIGIL_VERDICT_ACCEPT, VIGIL_CLASS_NONE, 0.1, 0,
	       "m-v2", FALSE);
	for (uint32_t i = 0; i < 11; i++)
		submit(db, 101 + i, local_us(14, 0, 0) + (int64_t)i * 20 * 60 * G_USEC_PER_SEC,
		       VIGIL_VERDICT_REJECT, VIGIL_CLASS_SURFACE, 0.99, VIGIL_FLAG_VISION_DEFECT,
		       "m-v2", TRUE);
	submit(db, 201, local_us(23, 0, 0), VIGIL_VERDICT_ACCEPT, VIGIL_CLASS_NONE, 0.1, 0, "m-v2",
	       FALSE);
	db_close(db);
	if (db_review(path, 10, "overrule", VIGIL_VERDICT_ACCEPT, SCRIPT_NOTE, "qa", &err) != 0) {
		fprintf(stderr, "%s\n", err);
		exit(1);
	}
	event_at(path, local_us(5, 30, 0), "model-swap", "job 2: model m-v1 (pkg-1) replaces m-v0 (job 1)");
	event_at(path, local_us(7, 0, 0), "plc-fault", SCRIPT_EVENT);
	event_at(path, local_us(7, 45, 0), "model-swap", "job 3: model m-v2 (pkg-2) replaces m-v1 (job 2)");
	event_at(path, local_us(9, 0, 0), "media-dropped", "1 part's files dropped");
	event_at(path, local_us(15, 0, 0), "camera-down", "camera top: no frame for 5 s");
}

struct fixture {
	char *dir, *path;
};

static void fixture_set_up(struct fixture *fx, gconstpointer data)
{
	(void)data;
	fx->dir = g_dir_make_tmp("vigil-report-XXXXXX", NULL);
	fx->path = g_build_filename(fx->dir, "log.db", NULL);
	make_log(fx->path);
}

static void remove_tree(const char *dir)
{
	GDir *d = g_dir_open(dir, 0, NULL);
	const char *name;

	while (d && (name = g_dir_read_name(d))) {
		char *p = g_build_filename(dir, name, NULL);

		if (g_file_test(p, G_FILE_TEST_IS_DIR))
			remove_tree(p);
		else
			g_unlink(p);
		g_free(p);
	}
	if (d)
		g_dir_close(d);
	g_rmdir(dir);
}

static void fixture_tear_down(struct fixture *fx, gconstpointer data)
{
	(void)data;
	remove_tree(fx->dir);
	g_free(fx->dir);
	g_free(fx->path);
}

static char *report(const char *path, const char *shift, int64_t now_us,
		    enum report_images images)
{
	struct report_request rq = { .db_path = path, .shift = shift, .now_us = now_us,
				     .images = images };
	GString *out = g_string_new(NULL);
	char *err = NULL;
	int rc = report_shift_html(&rq, out, &err);

	if (rc != 0)
		g_error("report of %s: %d %s", shift, rc, err);
	return g_string_free(out, FALSE);
}

static int count_of(const char *hay, const char *needle)
{
	int n = 0;

	for (const char *p = strstr(hay, needle); p; p = strstr(p + 1, needle))
		n++;
	return n;
}

/* The early shift counts its own 21 parts and none of the late one's,
 * the boundary part at 14:00:00 included on the right side. */
static void test_counts(struct fixture *fx, gconstpointer data)
{
	char *html = report(fx->path, "2026-12-01 early", local_us(23, 0, 0), REPORT_IMAGES_EMBED);

	(void)data;
	g_assert_nonnull(strstr(html, "<h1>Shift report: 2026-12-01 early</h1>"));
	g_assert_nonnull(strstr(html, "from 2026-12-01 06:00 +01:00 to 2026-12-01 14:00 +01:00 "));
	g_assert_null(strstr(html, "(in progress)"));
	g_assert_nonnull(strstr(html, "<tr><th>parts</th><td class=\"n\">21</td>"));
	g_assert_nonnull(strstr(html, "<tr><th>accepted (yield at the line)</th><td class=\"n\">13</td>"));
	g_assert_nonnull(strstr(html, "<tr><th>rejected</th><td class=\"n\">6</td>"));
	g_assert_nonnull(strstr(html, "<tr><th>marginal</th><td class=\"n\">2</td>"));
	/* Part 10 overruled to accept. */
	g_assert_nonnull(strstr(html, "<tr><th>good after QA review</th><td class=\"n\">14</td>"));
	g_assert_nonnull(strstr(html, "<tr><th>reviewed</th><td class=\"n\">1</td>"));
	g_assert_nonnull(strstr(html, "<tr><th>overruled</th><td class=\"n\">1</td><td class=\"n\">100.0 %</td>"));
	g_assert_nonnull(strstr(html, "<tr><th>fail-safe: deadline</th><td class=\"n\">1</td>"));
	/* Pareto by the reviewed verdict: surface 2 (one overruled), vibration
	 * 1 + 2 marginal, both 1, none 1 (the fail-safe reject). */
	g_assert_nonnull(strstr(html, "<tr><td>vibration</td><td class=\"n\">3</td>"));
	g_assert_nonnull(strstr(html, "<tr><td>surface</td><td class=\"n\">2</td>"));
	/* Models and jobs: m-v1 in force at the start, the swap at 07:45. */
	g_assert_nonnull(strstr(html, "At the start of the shift (model-swap, 2026-12-01 05:30): "
				      "job 2: model m-v1"));
	g_assert_nonnull(strstr(html, "<li>07:45:00 job 3: model m-v2"));
	g_assert_nonnull(strstr(html, "<tr><td>m-v1</td><td class=\"n\">10</td>"));
	g_assert_nonnull(strstr(html, "<tr><td>m-v2</td><td class=\"n\">11</td>"));
	/* Events of the shift only, the PLC fault marked. */
	g_assert_nonnull(strstr(html, "<tr class=\"alarm\"><td>07:00:00</td><td>plc-fault</td>"));
	g_assert_nonnull(strstr(html, "<tr><td>09:00:00</td><td>media-dropped</td>"));
	g_assert_null(strstr(html, "camera-down"));
	g_free(html);

	html = report(fx->path, "2026-12-01 late", local_us(23, 30, 0), REPORT_IMAGES_EMBED);
	g_assert_nonnull(strstr(html, "to 2026-12-02 06:00 +01:00 (in progress)"));
	g_assert_nonnull(strstr(html, "<tr><th>parts</th><td class=\"n\">12</td>"));
	g_assert_nonnull(strstr(html, "<tr><th>rejected</th><td class=\"n\">11</td>"));
	g_assert_nonnull(strstr(html, "camera-down"));
	g_assert_null(strstr(html, "plc-fault"));
	g_assert_nonnull(strstr(html, "At the start of the shift (model-swap, 2026-12-01 07:45)"));
	g_free(html);
	/* Past midnight the date is given. */
	html = report(fx->path, "2026-11-30 late", local_us(23, 0, 0), REPORT_IMAGES_EMBED);
	g_assert_nonnull(strstr(html, "<tr class=\"alarm\"><td>2026-12-01 05:30:00</td>"
				      "<td>model-swap</td>"));
	g_free(html);
}

/* Text from the log (an event, a review note) never becomes markup. */
static void test_escaped(struct fixture *fx, gconstpointer data)
{
	char *html = report(fx->path, "2026-12-01 early", local_us(23, 0, 0), REPORT_IMAGES_EMBED);

	(void)data;
	g_assert_null(strstr(html, "<script"));
	g_assert_nonnull(strstr(html, "&lt;script&gt;alert(&apos;event&apos;)&lt;/script&gt;"));
	g_assert_nonnull(strstr(html, "&lt;script&gt;alert(&apos;note&apos;)&lt;/script&gt; "
				      "&amp; not a defect"));
	g_free(html);
}

/* Top defects: the highest-scoring rejects, each image embedded as a
 * data: URI (vigilctl) or linked to the served media (vigild); the two
 * documents differ in nothing else but the time they were made. */
static void test_images(struct fixture *fx, gconstpointer data)
{
	char *embed = report(fx->path, "2026-12-01 early", local_us(23, 0, 0), REPORT_IMAGES_EMBED);
	char *link = report(fx->path, "2026-12-01 early", local_us(23, 0, 0), REPORT_IMAGES_LINK);
	GRegex *src = g_regex_new("src=\"[^\"]*\"", 0, 0, NULL);
	char *a, *b;
	const char *p10 = strstr(embed, "<figure id=\"part-10\">");
	const char *p14 = strstr(embed, "<figure id=\"part-14\">");

	(void)data;
	/* 5 rejects with an image, the fail-safe one without. */
	g_assert_cmpint(count_of(embed, "<figure "), ==, 6);
	g_assert_cmpint(count_of(embed, "<img src=\"data:image/png;base64,iVBORw0KGgo"), ==, 5);
	g_assert_cmpint(count_of(link, "<img src=\"/api/parts/"), ==, 5);
	g_assert_null(strstr(link, "data:"));
	g_assert_nonnull(strstr(embed, "(no image kept)"));
	/* Highest score first: part 10 (0.95) before part 14 (0.7). */
	g_assert_nonnull(p10);
	g_assert_nonnull(p14);
	g_assert_true(p10 < p14);
	a = g_regex_replace_literal(src, embed, -1, 0, "src=\"\"", 0, NULL);
	b = g_regex_replace_literal(src, link, -1, 0, "src=\"\"", 0, NULL);
	g_assert_cmpstr(a, ==, b);
	g_free(a);
	g_free(b);
	g_regex_unref(src);
	g_free(embed);
	g_free(link);
}

/* current and previous follow now; a shift the plan lacks is refused by
 * name. */
static void test_find(struct fixture *fx, gconstpointer data)
{
	struct report_request rq = { .db_path = fx->path, .shift = "2026-12-01 lunch",
				     .now_us = local_us(15, 0, 0) };
	GString *out = g_string_new(NULL);
	char *err = NULL;
	char *html;

	(void)data;
	g_assert_cmpint(report_shift_html(&rq, out, &err), ==, -EINVAL);
	g_assert_nonnull(strstr(err, "lunch"));
	g_assert_cmpuint(out->len, ==, 0);
	g_free(err);
	err = NULL;
	rq.db_path = "/nonexistent/log.db";
	rq.shift = "current";
	g_assert_cmpint(report_shift_html(&rq, out, &err), <, 0);
	g_assert_nonnull(strstr(err, "/nonexistent/log.db"));
	g_free(err);
	g_string_free(out, TRUE);

	html = report(fx->path, "current", local_us(15, 0, 0), REPORT_IMAGES_LINK);
	g_assert_nonnull(strstr(html, "<h1>Shift report: 2026-12-01 late</h1>"));
	g_assert_nonnull(strstr(html, "(in progress)"));
	g_free(html);
	html = report(fx->path, "previous", local_us(15, 0, 0), REPORT_IMAGES_LINK);
	g_assert_nonnull(strstr(html, "<h1>Shift report: 2026-12-01 early</h1>"));
	g_free(html);
}

/* The Pareto by shift follows the log's plan: the boundary part at
 * 13:59:59.5 is early, the one at 14:00:00 late. */
static void test_pareto(struct fixture *fx, gconstpointer data)
{
	char *err = NULL;
	shift_plan *plan = shift_plan_parse(PLAN, NULL, &err);
	report_pareto *p = report_pareto_new(plan);
	struct db_filter f = DB_FILTER_ALL;
	const struct report_bucket *b;
	int order[4];
	uint64_t counts[4];

	(void)data;
	g_assert_null(err);
	g_assert_cmpint(db_query(fx->path, &f, &(struct db_row_cb){ report_pareto_add, p }, NULL),
			==, 0);
	g_assert_cmpuint(report_pareto_nbuckets(p), ==, 2);
	b = report_pareto_bucket(p, 0);
	g_assert_cmpstr(b->key, ==, "2026-12-01 early");
	g_assert_cmpuint(b->parts, ==, 21);
	g_assert_cmpuint(b->rejected, ==, 5);
	g_assert_cmpuint(b->marginal, ==, 2);
	b = report_pareto_bucket(p, 1);
	g_assert_cmpstr(b->key, ==, "2026-12-01 late");
	g_assert_cmpuint(b->parts, ==, 12);
	g_assert_cmpuint(b->rejected, ==, 11);
	g_assert_cmpuint(report_pareto_causes(p, order, counts), ==, 18);
	g_assert_cmpint(order[0], ==, VIGIL_CLASS_SURFACE);
	g_assert_cmpuint(counts[0], ==, 13);
	report_pareto_free(p);
	report_pareto_free(NULL);
	shift_plan_free(plan);
}

/* A vibration sensor that died mid-shift: its fail-safe rejects are
 * counted and named as such, in the counts and in the top defects, apart
 * from the other faults. A log of its own, so that the shared one (and the
 * Python tests that read it) stays as it is. */
static void test_sensor_flat(struct fixture *fx, gconstpointer data)
{
	struct db_options opt = DB_OPTIONS_DEFAULT;
	char *path = g_build_filename(fx->dir, "flat.db", NULL), *err = NULL, *html;
	db_log *db;

	(void)data;
	opt.shifts = PLAN;
	db = db_open_with(path, &opt, &err);
	g_assert_nonnull(db);
	submit(db, 1, local_us(8, 0, 0), VIGIL_VERDICT_ACCEPT, VIGIL_CLASS_NONE, 0.1, 0, "m-v2",
	       FALSE);
	for (uint32_t i = 0; i < 3; i++)
		submit(db, 2 + i, local_us(9, 0, 0) + (int64_t)i * G_USEC_PER_SEC,
		       VIGIL_VERDICT_REJECT, VIGIL_CLASS_NONE, 1.0,
		       VIGIL_FLAG_FAILSAFE | VIGIL_FLAG_VIB_FLAT, NULL, FALSE);
	/* No frame either: counted under no frame, as the line counts it. */
	submit(db, 5, local_us(9, 1, 0), VIGIL_VERDICT_REJECT, VIGIL_CLASS_NONE, 1.0,
	       VIGIL_FLAG_FAILSAFE | VIGIL_FLAG_VIB_FLAT | VIGIL_FLAG_NO_FRAME, NULL, FALSE);
	/* A window late or clipped: no vibration window, not "other fault". */
	submit(db, 7, local_us(9, 3, 0), VIGIL_VERDICT_REJECT, VIGIL_CLASS_NONE, 1.0,
	       VIGIL_FLAG_FAILSAFE | VIGIL_FLAG_VIB_CLIPPED, NULL, FALSE);
	/* A capped lens as well: the flat frame first, as the line counts it. */
	submit(db, 6, local_us(9, 2, 0), VIGIL_VERDICT_REJECT, VIGIL_CLASS_NONE, 1.0,
	       VIGIL_FLAG_FAILSAFE | VIGIL_FLAG_VIB_FLAT | VIGIL_FLAG_IMAGE_FLAT, NULL, FALSE);
	db_close(db);
	html = report(path, "2026-12-01 early", local_us(23, 0, 0), REPORT_IMAGES_EMBED);
	g_assert_nonnull(strstr(html, "<tr><th>fail-safe: vibration sensor flat (dead: cable, "
				      "supply, ADC)</th><td class=\"n\">3</td>"));
	g_assert_nonnull(strstr(html, "<tr><th>fail-safe: no frame</th><td class=\"n\">1</td>"));
	g_assert_nonnull(strstr(html, "<tr><th>fail-safe: image flat (lens cap, light off, blank "
				      "sensor)</th><td class=\"n\">1</td>"));
	g_assert_nonnull(strstr(html, "<tr><th>fail-safe: no vibration window (late, with a gap, "
				      "or clipped)</th><td class=\"n\">1</td>"));
	g_assert_cmpint(count_of(html, " · fail-safe: vibration sensor flat (dead: cable, supply, "
				       "ADC)"), ==, 3);
	g_assert_null(strstr(html, "other fault"));
	g_free(html);
	g_free(path);
}

int main(int argc, char **argv)
{
	/* Before GLib reads the local zone. */
	g_setenv("TZ", "Europe/Berlin", TRUE);
	if (argc == 3 && strcmp(argv[1], "--make-log") == 0) {
		make_log(argv[2]);
		return 0;
	}
	g_test_init(&argc, &argv, NULL);
	g_test_add("/report/counts", struct fixture, NULL, fixture_set_up, test_counts,
		   fixture_tear_down);
	g_test_add("/report/escaped", struct fixture, NULL, fixture_set_up, test_escaped,
		   fixture_tear_down);
	g_test_add("/report/images", struct fixture, NULL, fixture_set_up, test_images,
		   fixture_tear_down);
	g_test_add("/report/find", struct fixture, NULL, fixture_set_up, test_find,
		   fixture_tear_down);
	g_test_add("/report/pareto", struct fixture, NULL, fixture_set_up, test_pareto,
		   fixture_tear_down);
	g_test_add("/report/sensor-flat", struct fixture, NULL, fixture_set_up, test_sensor_flat,
		   fixture_tear_down);
	return g_test_run();
}
