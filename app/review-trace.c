/* Tracing escapes (review-private.h): the list's view as CSV, the shift
 * occurrences and the filter values the page offers, and the escape report
 * (a part later found defective downstream or by the customer, marked with
 * a note and listed with its neighbours on the line). */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "app/review-private.h"
#include "core/shift.h"

/* The CSV of a view holds at most this many rows, the newest (docs/
 * operations.md): enough for weeks of a line's rejects, small enough to
 * build in memory (about 200 bytes a row). */
#define TRACE_CSV_MAX_ROWS 100000
#define TRACE_MAX_NOTE 2000
#define TRACE_MAX_ESCAPES 200
#define TRACE_DEFAULT_NEIGHBOURS 3
#define TRACE_MAX_NEIGHBOURS 20
#define TRACE_DEFAULT_SHIFTS 21   /* a week of three shifts */
#define TRACE_MAX_SHIFTS 500

/* ---- CSV ---- */

/* One field, quoted as RFC 4180 says when it holds a comma, a quote or a
 * line break (a QA note may hold all three); NULL is an empty field. */
static void csv_field(GString *out, const char *s)
{
	if (!s)
		return;
	if (!strpbrk(s, ",\"\r\n")) {
		g_string_append(out, s);
		return;
	}
	g_string_append_c(out, '"');
	for (const char *c = s; *c; c++) {
		if (*c == '"')
			g_string_append_c(out, '"');
		g_string_append_c(out, *c);
	}
	g_string_append_c(out, '"');
}

static void csv_number(GString *out, double v)
{
	char buf[G_ASCII_DTOSTR_BUF_SIZE];

	if (isfinite(v))
		g_string_append(out, g_ascii_formatd(buf, sizeof buf, "%.6g", v));
}

static const char csv_header[] =
	"id,part_id,time,shift,station,job,model_version,verdict,class,score,vision_score,"
	"signal_score,failsafe,latency_ms,review,review_verdict,review_note\r\n";

struct csv_ctx {
	GString *out;
	shift_plan *plan;   /* NULL: the shift column stays empty */
};

static int csv_row(const struct db_inspection *r, void *data)
{
	struct csv_ctx *c = data;
	GString *o = c->out;
	char *t = review__local_time(r->t_wall_us, TRUE);

	g_string_append_printf(o, "%" PRId64 ",%" PRIu32 ",", r->id, r->part_id);
	csv_field(o, t);
	g_string_append_c(o, ',');
	if (c->plan) {
		shift_span span;

		shift_plan_at(c->plan, r->t_wall_us, &span);
		csv_field(o, span.label);
	}
	g_string_append_c(o, ',');
	csv_field(o, r->station);
	g_string_append_c(o, ',');
	if (r->job >= 0)
		g_string_append_printf(o, "%d", r->job);
	g_string_append_c(o, ',');
	csv_field(o, r->model_version);
	g_string_append_c(o, ',');
	csv_field(o, vigil_verdict_name((enum vigil_verdict)r->verdict));
	g_string_append_c(o, ',');
	csv_field(o, vigil_class_name((enum vigil_defect_class)r->defect_class));
	g_string_append_c(o, ',');
	csv_number(o, r->score);
	g_string_append_c(o, ',');
	csv_number(o, r->vision_score);
	g_string_append_c(o, ',');
	csv_number(o, r->signal_score);
	g_string_append(o, r->flags & VIGIL_FLAG_FAILSAFE ? ",1," : ",0,");
	csv_number(o, r->latency_ms);
	g_string_append_c(o, ',');
	csv_field(o, r->review);
	g_string_append_c(o, ',');
	if (r->review)
		csv_field(o, vigil_verdict_name((enum vigil_verdict)r->review_verdict));
	g_string_append_c(o, ',');
	csv_field(o, r->review_note);
	g_string_append(o, "\r\n");
	g_free(t);
	return 0;
}

/* The log's shift plan, or NULL (logged) when it cannot be read. */
static shift_plan *log_plan(review_server *s)
{
	char *err = NULL, *spec = db_shifts(s->db_path, &err);
	shift_plan *plan;

	if (!spec) {
		g_warning("review: %s", err);
		free(err);
		return NULL;
	}
	plan = shift_plan_parse(spec, NULL, &err);
	if (!plan) {
		g_warning("review: %s: shift plan '%s': %s", s->db_path, spec, err);
		g_free(err);
	}
	free(spec);
	return plan;
}

/* GET /api/inspections.csv: the list's filters; no limit given means the
 * newest TRACE_CSV_MAX_ROWS. */
static void api_csv(review_server *s, SoupServerMessage *msg, const char *query)
{
	struct db_filter f = DB_FILTER_ALL;
	struct csv_ctx c = { NULL, NULL };
	struct db_row_cb cb = { csv_row, &c };
	GHashTable *q;
	char *why = NULL, *err = NULL;
	int rc;

	if (!(q = review__parse_query(query, &why)) || review__read_filter(q, &f, &why) < 0) {
		review__reply_error(msg, SOUP_STATUS_BAD_REQUEST, "%s", why);
		goto out;
	}
	if (!g_hash_table_contains(q, "limit") || !*(char *)g_hash_table_lookup(q, "limit"))
		f.limit = TRACE_CSV_MAX_ROWS;
	c.out = g_string_new(csv_header);
	c.plan = log_plan(s);
	if ((rc = db_query(s->db_path, &f, &cb, &err)) < 0) {
		review__reply_db_error(msg, rc, err);
		free(err);
		goto out;
	}
	review__reply_text(msg, SOUP_STATUS_OK, "text/csv; charset=utf-8", c.out);
	soup_message_headers_replace(soup_server_message_get_response_headers(msg),
				     "Content-Disposition",
				     "attachment; filename=\"vigil-inspections.csv\"");
out:
	if (c.out)
		g_string_free(c.out, TRUE);
	shift_plan_free(c.plan);
	g_free(why);
	if (q)
		g_hash_table_unref(q);
}

/* ---- GET /api/shifts ---- */

static void add_span(JsonBuilder *b, const shift_span *sp)
{
	char *start = review__local_time(sp->start_us, TRUE);
	char *end = review__local_time(sp->end_us, TRUE);

	json_builder_begin_object(b);
	review__add_string(b, "label", sp->label);
	review__add_string(b, "name", sp->name);
	review__add_string(b, "start", start);
	review__add_string(b, "end", end);
	review__add_int(b, "start_us", sp->start_us);
	review__add_int(b, "end_us", sp->end_us);
	json_builder_end_object(b);
	g_free(start);
	g_free(end);
}

/* The plan the log records, its shifts' names (in start order) and its last
 * n occurrences, the current first. */
static void api_shifts(review_server *s, SoupServerMessage *msg, const char *query)
{
	GHashTable *q;
	shift_plan *plan = NULL;
	shift_span span;
	JsonBuilder *b;
	const char *v;
	char *why = NULL, *text;
	guint64 n = TRACE_DEFAULT_SHIFTS;

	if (!(q = review__parse_query(query, &why))) {
		review__reply_error(msg, SOUP_STATUS_BAD_REQUEST, "%s", why);
		g_free(why);
		return;
	}
	if ((v = g_hash_table_lookup(q, "n")) && *v &&
	    (review__parse_uint(v, TRACE_MAX_SHIFTS, &n) < 0 || n == 0)) {
		review__reply_error(msg, SOUP_STATUS_BAD_REQUEST,
				    "n is a whole number from 1 to %d", TRACE_MAX_SHIFTS);
		goto out;
	}
	if (!(plan = log_plan(s))) {
		review__reply_error(msg, SOUP_STATUS_INTERNAL_SERVER_ERROR,
				    "cannot read the log's shift plan");
		goto out;
	}
	b = json_builder_new();
	json_builder_begin_object(b);
	text = shift_plan_to_string(plan);
	review__add_string(b, "plan", text);
	g_free(text);
	json_builder_set_member_name(b, "names");
	json_builder_begin_array(b);
	for (size_t i = 0; i < shift_plan_count(plan); i++)
		json_builder_add_string_value(b, shift_plan_name(plan, i));
	json_builder_end_array(b);
	json_builder_set_member_name(b, "occurrences");
	json_builder_begin_array(b);
	shift_plan_at(plan, g_get_real_time(), &span);
	for (guint64 i = 0; i < n; i++) {
		shift_span prev;

		add_span(b, &span);
		shift_plan_step(plan, &span, 1, &prev);
		span = prev;
	}
	json_builder_end_array(b);
	json_builder_end_object(b);
	review__reply_json(msg, SOUP_STATUS_OK, json_builder_get_root(b));
	g_object_unref(b);
out:
	shift_plan_free(plan);
	g_hash_table_unref(q);
}

/* ---- GET /api/facets ---- */

static int facet_cb(const char *value, int64_t rows, void *data)
{
	JsonBuilder *b = data;

	json_builder_begin_object(b);
	review__add_string(b, "value", value);
	review__add_int(b, "rows", rows);
	json_builder_end_object(b);
	return 0;
}

/* The values the job, model and station selects offer: those in the log. */
static void api_facets(review_server *s, SoupServerMessage *msg)
{
	static const char *const columns[] = { "job", "model_version", "station" };
	JsonBuilder *b = json_builder_new();
	char *err = NULL;

	json_builder_begin_object(b);
	for (size_t i = 0; i < G_N_ELEMENTS(columns); i++) {
		json_builder_set_member_name(b, columns[i]);
		json_builder_begin_array(b);
		if (db_facets(s->db_path, columns[i], facet_cb, b, &err) < 0) {
			review__reply_db_error(msg, DB_ESQLITE, err);
			free(err);
			g_object_unref(b);
			return;
		}
		json_builder_end_array(b);
	}
	json_builder_end_object(b);
	review__reply_json(msg, SOUP_STATUS_OK, json_builder_get_root(b));
	g_object_unref(b);
}

/* ---- escapes ---- */

/* POST /api/parts/ID/escape[?inspection=ID] {"note": ..., "reporter": ...}:
 * a reviewer's token (or the shared one), as a review; the escape goes to
 * the inspection named (the one QA has open), else the part's latest. */
static void api_mark_escape(review_server *s, SoupServerMessage *msg, int64_t part_id)
{
	JsonParser *parser = NULL;
	JsonObject *o;
	const char *note, *reporter;
	gboolean bad = FALSE;
	int64_t id = 0;
	char *err = NULL;
	struct review_caller who;
	struct review_latest l = { 0 };
	int rc;

	if (review__require_role(s, msg, USERS_ROLE_REVIEWER, &who) < 0)
		return;
	if (!(o = review__body_object(msg, REVIEW_MAX_BODY,
				      "the body is a JSON object: {\"note\": ..., \"reporter\": ...}",
				      &parser)))
		goto out;
	note = review__member_string(o, "note", &bad);
	reporter = review__member_string(o, "reporter", &bad);
	if (bad || !note || !*note) {
		review__reply_error(msg, SOUP_STATUS_BAD_REQUEST,
				    "an escape needs a note (a string: where and how the part was "
				    "found defective); reporter is a string");
		goto out;
	}
	if (strlen(note) > TRACE_MAX_NOTE || (reporter && strlen(reporter) > 100)) {
		review__reply_error(msg, SOUP_STATUS_BAD_REQUEST,
				    "the note is at most %d bytes, the reporter 100", TRACE_MAX_NOTE);
		goto out;
	}
	if (who.name)
		reporter = who.name;  /* a user's report is theirs, whatever the body says */
	reporter = reporter && *reporter ? reporter : "web";
	if ((rc = review__find_latest(s, msg, part_id, &l)) < 0) {
		if (rc == -ENOENT)
			review__reply_error(msg, SOUP_STATUS_NOT_FOUND,
					    "no inspection of part %" PRId64, part_id);
		goto out;
	}
	/* The inspection looked up above: one of the same part id logged
	 * since is not the one QA marked. */
	rc = db_mark_escape_at(s->db_path, part_id, l.id, note, reporter, &id, &err);
	if (rc < 0) {
		review__reply_db_error(msg, rc, err);
		free(err);
		goto out;
	}
	g_message("review: part %" PRId64 " marked as an escape by %s", part_id, reporter);
	{
		JsonBuilder *b = json_builder_new();

		json_builder_begin_object(b);
		review__add_int(b, "id", id);
		review__add_int(b, "part_id", part_id);
		review__add_int(b, "inspection_id", l.id);
		json_builder_end_object(b);
		review__reply_json(msg, SOUP_STATUS_OK, json_builder_get_root(b));
		g_object_unref(b);
	}
out:
	if (parser)
		g_object_unref(parser);
}

struct escapes_ctx {
	review_server *s;
	JsonBuilder *b;
	int neighbours;
	int count;
	char *err;
};

static int neighbour_cb(const struct db_inspection *row, void *data)
{
	review__add_row(data, row);
	return 0;
}

static int escape_cb(const struct db_escape *e, void *data)
{
	struct escapes_ctx *c = data;
	JsonBuilder *b = c->b;
	struct db_row_cb cb = { neighbour_cb, b };
	char *t;

	if (c->count++ == TRACE_MAX_ESCAPES)
		return 1;
	t = review__local_time(e->t_wall_us, TRUE);
	json_builder_begin_object(b);
	review__add_int(b, "id", e->id);
	review__add_int(b, "inspection_id", e->inspection_id);
	review__add_int(b, "part_id", e->part_id);
	review__add_int(b, "t_wall_us", e->t_wall_us);
	review__add_string(b, "reported", t);
	review__add_string(b, "note", e->note);
	review__add_string(b, "reporter", e->reporter);
	/* The part itself is among its neighbours, where inspection_id
	 * finds it. */
	json_builder_set_member_name(b, "neighbours");
	json_builder_begin_array(b);
	if (db_neighbours(c->s->db_path, e->inspection_id, c->neighbours, &cb, &c->err) < 0) {
		g_free(t);
		return 1;
	}
	json_builder_end_array(b);
	json_builder_end_object(b);
	g_free(t);
	return 0;
}

/* GET /api/escapes?neighbours=N: the newest TRACE_MAX_ESCAPES escapes,
 * newest report first, each with the N parts before and after it. */
static void api_escapes(review_server *s, SoupServerMessage *msg, const char *query)
{
	struct escapes_ctx c = { s, NULL, TRACE_DEFAULT_NEIGHBOURS, 0, NULL };
	GHashTable *q;
	const char *v;
	char *why = NULL;
	guint64 n;

	if (!(q = review__parse_query(query, &why))) {
		review__reply_error(msg, SOUP_STATUS_BAD_REQUEST, "%s", why);
		g_free(why);
		return;
	}
	if ((v = g_hash_table_lookup(q, "neighbours")) && *v) {
		if (review__parse_uint(v, TRACE_MAX_NEIGHBOURS, &n) < 0) {
			review__reply_error(msg, SOUP_STATUS_BAD_REQUEST,
					    "neighbours is a whole number from 0 to %d",
					    TRACE_MAX_NEIGHBOURS);
			goto out;
		}
		c.neighbours = (int)n;
	}
	c.b = json_builder_new();
	json_builder_begin_object(c.b);
	json_builder_set_member_name(c.b, "escapes");
	json_builder_begin_array(c.b);
	if (db_read_escapes(s->db_path, escape_cb, &c, &c.err) < 0 || c.err) {
		review__reply_db_error(msg, DB_ESQLITE, c.err);
		free(c.err);
		g_object_unref(c.b);
		goto out;
	}
	json_builder_end_array(c.b);
	json_builder_end_object(c.b);
	review__reply_json(msg, SOUP_STATUS_OK, json_builder_get_root(c.b));
	g_object_unref(c.b);
out:
	g_hash_table_unref(q);
}

/* ---- routing ---- */

/* "/api/parts/ID/escape": the part id, else -1. */
static int64_t escape_part(const char *path)
{
	const char *p = path + strlen("/api/parts/");
	const char *end = strchr(p, '/');
	char digits[21];
	guint64 id;

	if (!end || strcmp(end, "/escape") != 0 || end == p || end - p > 20)
		return -1;
	memcpy(digits, p, (size_t)(end - p));
	digits[end - p] = '\0';
	if (review__parse_uint(digits, G_MAXUINT32, &id) < 0)
		return -1;
	return (int64_t)id;
}

gboolean review__trace_route(review_server *s, SoupServerMessage *msg, const char *path,
			     const char *method, const char *query)
{
	gboolean get = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;
	int64_t part;

	if (g_str_has_prefix(path, "/api/parts/") && (part = escape_part(path)) >= 0) {
		if (strcmp(method, "POST") == 0)
			api_mark_escape(s, msg, part);
		else
			review__reply_error(msg, SOUP_STATUS_METHOD_NOT_ALLOWED,
					    "method not allowed");
		return TRUE;
	}
	if (strcmp(path, "/api/inspections.csv") != 0 && strcmp(path, "/api/shifts") != 0 &&
	    strcmp(path, "/api/facets") != 0 && strcmp(path, "/api/escapes") != 0)
		return FALSE;
	if (!get)
		review__reply_error(msg, SOUP_STATUS_METHOD_NOT_ALLOWED, "method not allowed");
	else if (strcmp(path, "/api/inspections.csv") == 0)
		api_csv(s, msg, query);
	else if (strcmp(path, "/api/shifts") == 0)
		api_shifts(s, msg, query);
	else if (strcmp(path, "/api/facets") == 0)
		api_facets(s, msg);
	else
		api_escapes(s, msg, query);
	return TRUE;
}
