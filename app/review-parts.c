/* The inspection log over HTTP (review-private.h): query strings and
 * their filters, rows as JSON, the inspection list, a part's detail and
 * the review a QA engineer posts. Reads open their own read-only SQLite
 * connection (db_query); a review goes through db_review, which takes its
 * own, so the line's writer thread and this server only meet in SQLite's
 * WAL. */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "app/review-private.h"

#define REVIEW_MAX_NOTE 2000
#define REVIEW_DEFAULT_LIMIT 200

/* ---- query strings ---- */

/* Splits an application/x-www-form-urlencoded query into a table (last
 * value wins). Unlike soup_form_decode it refuses, rather than skips, a bad
 * escape, an escaped NUL or text that is not UTF-8. */
GHashTable *review__parse_query(const char *query, char **why)
{
	GHashTable *t = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
	char **pairs;

	if (!query || !*query)
		return t;
	pairs = g_strsplit(query, "&", -1);
	for (int i = 0; pairs[i]; i++) {
		char *eq, *key, *value;

		if (!*pairs[i])
			continue;
		g_strdelimit(pairs[i], "+", ' ');
		eq = strchr(pairs[i], '=');
		if (eq)
			*eq = '\0';
		key = g_uri_unescape_string(pairs[i], NULL);
		value = g_uri_unescape_string(eq ? eq + 1 : "", NULL);
		if (!key || !value || !g_utf8_validate(key, -1, NULL) ||
		    !g_utf8_validate(value, -1, NULL)) {
			*why = g_strdup("the query string is not valid percent-encoded UTF-8");
			g_free(key);
			g_free(value);
			g_strfreev(pairs);
			g_hash_table_unref(t);
			return NULL;
		}
		g_hash_table_replace(t, key, value);
	}
	g_strfreev(pairs);
	return t;
}

int review__parse_uint(const char *text, guint64 max, guint64 *out)
{
	if (!*text || strlen(text) > 20 || !g_ascii_isdigit(text[0]))
		return -EINVAL;
	return g_ascii_string_to_unsigned(text, 10, 0, max, out, NULL) ? 0 : -EINVAL;
}

/* The query's filter parameters, each read by the rule vigilctl's option
 * of the same meaning is read by (db_filter_set), in the order a bad one
 * is reported. The shift is checked against the log's plan by db_query,
 * which names the shift in its message. */
static const struct {
	const char *name;
	enum db_filter_field field;
} filter_params[] = {
	{ "since", DB_FILTER_SINCE }, { "until", DB_FILTER_UNTIL },
	{ "job", DB_FILTER_JOB }, { "model", DB_FILTER_MODEL }, { "station", DB_FILTER_STATION },
	{ "verdict", DB_FILTER_VERDICT }, { "class", DB_FILTER_CLASS },
	{ "min_score", DB_FILTER_MIN_SCORE }, { "max_score", DB_FILTER_MAX_SCORE },
	{ "part", DB_FILTER_PART }, { "reviewed", DB_FILTER_REVIEWED },
	{ "limit", DB_FILTER_LIMIT },
};

/* Fills f from the query; on a bad value returns -EINVAL with *why set to a
 * message naming the parameter (g_free it). An empty value is no filter,
 * as an empty field of the page's form. The values are only ever bound as
 * SQL parameters by db_query. */
int review__read_filter(GHashTable *q, struct db_filter *f, char **why)
{
	GHashTableIter it;
	gpointer key, value;
	const char *v;

	g_hash_table_iter_init(&it, q);
	while (g_hash_table_iter_next(&it, &key, &value)) {
		gboolean known = strcmp(key, "shift") == 0;

		for (size_t i = 0; i < G_N_ELEMENTS(filter_params) && !known; i++)
			known = strcmp(key, filter_params[i].name) == 0;
		if (!known) {
			*why = g_strdup_printf("unknown parameter '%.40s' (known: verdict, class, "
					       "min_score, max_score, part, reviewed, limit, since, "
					       "until, shift, job, model, station)",
					       (const char *)key);
			return -EINVAL;
		}
	}
	f->limit = REVIEW_DEFAULT_LIMIT;
	for (size_t i = 0; i < G_N_ELEMENTS(filter_params); i++) {
		v = g_hash_table_lookup(q, filter_params[i].name);
		if (v && *v && db_filter_set(f, filter_params[i].field, v) < 0) {
			*why = g_strdup_printf("%s is %s", filter_params[i].name,
					       db_filter_rule(filter_params[i].field));
			return -EINVAL;
		}
	}
	switch (db_filter_empty_range(f)) {
	case DB_FILTER_SINCE:
		*why = g_strdup("since is not before until: no part is in that time range");
		return -EINVAL;
	case DB_FILTER_MIN_SCORE:
		*why = g_strdup("min_score is above max_score: no part is in that score range");
		return -EINVAL;
	default:
		break;
	}
	if ((v = g_hash_table_lookup(q, "shift")) && *v) {
		if (strlen(v) > 60) {
			*why = g_strdup("shift is a label such as '2026-12-06 night', 'current' or "
					"'previous'");
			return -EINVAL;
		}
		f->shift = v;
	}
	return 0;
}

/* ---- JSON ---- */

void review__add_number(JsonBuilder *b, const char *name, double v)
{
	json_builder_set_member_name(b, name);
	if (isfinite(v))
		json_builder_add_double_value(b, v);
	else
		json_builder_add_null_value(b);
}

void review__add_string(JsonBuilder *b, const char *name, const char *v)
{
	json_builder_set_member_name(b, name);
	if (v)
		json_builder_add_string_value(b, v);
	else
		json_builder_add_null_value(b);
}

void review__add_int(JsonBuilder *b, const char *name, int64_t v)
{
	json_builder_set_member_name(b, name);
	json_builder_add_int_value(b, v);
}

char *review__local_time(int64_t t, gboolean fraction)
{
	GDateTime *s = g_date_time_new_from_unix_local(t / G_USEC_PER_SEC);
	GDateTime *u = s ? g_date_time_add(s, t % G_USEC_PER_SEC) : NULL;
	char *text = u ? g_date_time_format(u, fraction ? "%Y-%m-%dT%H:%M:%S.%f%:z"
						  : "%Y-%m-%dT%H:%M:%S%:z") : NULL;

	if (u)
		g_date_time_unref(u);
	if (s)
		g_date_time_unref(s);
	return text;
}

void review__add_row(JsonBuilder *b, const struct db_inspection *r)
{
	char *iso = review__local_time(r->t_wall_us, FALSE);

	json_builder_begin_object(b);
	review__add_int(b, "id", r->id);
	review__add_int(b, "part_id", r->part_id);
	review__add_int(b, "trigger_counter", r->trigger_counter);
	review__add_int(b, "seq", (int64_t)r->seq);
	review__add_int(b, "t_wall_us", r->t_wall_us);
	review__add_string(b, "time", iso);
	review__add_string(b, "verdict", vigil_verdict_name((enum vigil_verdict)r->verdict));
	review__add_string(b, "class", vigil_class_name((enum vigil_defect_class)r->defect_class));
	review__add_int(b, "flags", r->flags);
	json_builder_set_member_name(b, "failsafe");
	json_builder_add_boolean_value(b, (r->flags & VIGIL_FLAG_FAILSAFE) != 0);
	review__add_number(b, "score", r->score);
	review__add_number(b, "vision_score", r->vision_score);
	review__add_number(b, "signal_score", r->signal_score);
	review__add_number(b, "latency_ms", r->latency_ms);
	review__add_number(b, "infer_ms", r->infer_ms);
	review__add_string(b, "model_version", r->model_version);
	json_builder_set_member_name(b, "job");
	if (r->job >= 0)
		json_builder_add_int_value(b, r->job);
	else
		json_builder_add_null_value(b);
	review__add_string(b, "station", r->station);
	review__add_string(b, "review", r->review);
	review__add_string(b, "review_verdict",
			   r->review ? vigil_verdict_name((enum vigil_verdict)r->review_verdict)
				     : NULL);
	review__add_string(b, "review_note", r->review_note);
	review__add_string(b, "review_defect_type", r->review_defect_type);
	json_builder_set_member_name(b, "review_mask");
	json_builder_add_boolean_value(b, r->review_mask != NULL);
	json_builder_end_object(b);
	g_free(iso);
}

static int add_row_cb(const struct db_inspection *row, void *data)
{
	review__add_row(data, row);
	return 0;
}

/* ---- GET /api/inspections ---- */

void review__api_inspections(review_server *s, SoupServerMessage *msg, const char *query)
{
	struct db_filter f = DB_FILTER_ALL;
	JsonBuilder *b;
	struct db_row_cb cb;
	GHashTable *q;
	char *why = NULL, *err = NULL;
	int64_t total;
	int rc;

	if (!(q = review__parse_query(query, &why)) || review__read_filter(q, &f, &why) < 0) {
		review__reply_error(msg, SOUP_STATUS_BAD_REQUEST, "%s", why);
		goto out;
	}
	b = json_builder_new();
	cb = (struct db_row_cb){ add_row_cb, b };
	json_builder_begin_object(b);
	json_builder_set_member_name(b, "inspections");
	json_builder_begin_array(b);
	if ((rc = db_query(s->db_path, &f, &cb, &err)) < 0) {
		/* -EINVAL: a shift label the log's plan has no occurrence for. */
		review__reply_db_error(msg, rc, err);
		free(err);
		g_object_unref(b);
		goto out;
	}
	json_builder_end_array(b);
	review__add_int(b, "limit", f.limit);
	/* The rows that match beyond the limit too, so the page can say
	 * "200 of 260" instead of passing the newest 200 off as all. */
	if ((total = db_query_count(s->db_path, &f, &err)) < 0) {
		review__reply_db_error(msg, DB_ESQLITE, err);
		free(err);
		g_object_unref(b);
		goto out;
	}
	review__add_int(b, "total", total);
	json_builder_set_member_name(b, "has_more");
	json_builder_add_boolean_value(b, total > f.limit);
	json_builder_end_object(b);
	review__reply_json(msg, SOUP_STATUS_OK, json_builder_get_root(b));
	g_object_unref(b);
out:
	g_free(why);
	if (q)
		g_hash_table_unref(q);
}

/* ---- GET /api/parts/ID ---- */

static int history_row(const struct db_review_row *r, void *data)
{
	JsonBuilder *b = data;
	char *iso = review__local_time(r->t_wall_us, FALSE);

	json_builder_begin_object(b);
	review__add_int(b, "id", r->id);
	review__add_int(b, "inspection_id", r->inspection_id);
	review__add_int(b, "t_wall_us", r->t_wall_us);
	review__add_string(b, "time", iso);
	review__add_string(b, "decision", r->decision);
	review__add_string(b, "verdict", r->verdict ? vigil_verdict_name((enum vigil_verdict)
									  r->verdict) : NULL);
	review__add_string(b, "note", r->note);
	review__add_string(b, "reviewer", r->reviewer);
	json_builder_end_object(b);
	g_free(iso);
	return 0;
}

struct history {
	JsonBuilder *b;
	int64_t inspection;  /* only this inspection's reviews; -1: the part's */
};

static int history_of(const struct db_review_row *r, void *data)
{
	struct history *h = data;

	return h->inspection < 0 || r->inspection_id == h->inspection ? history_row(r, h->b) : 0;
}

/* Member "reviews": every review of the part (or of the inspection the
 * request named), newest first. 0, or -EIO with the error replied. */
static int add_history(review_server *s, SoupServerMessage *msg, int64_t part_id,
		       int64_t inspection, JsonBuilder *b)
{
	struct history h = { b, inspection };
	char *err = NULL;

	json_builder_set_member_name(b, "reviews");
	json_builder_begin_array(b);
	if (db_read_reviews(s->db_path, part_id, history_of, &h, &err) < 0) {
		review__reply_db_error(msg, DB_ESQLITE, err);
		free(err);
		return -EIO;
	}
	json_builder_end_array(b);
	return 0;
}

static int latest_cb(const struct db_inspection *row, void *data)
{
	struct review_latest *l = data;

	if (row->part_id != l->part_id)
		return 0;  /* ?inspection= named another part's */
	l->id = row->id;
	l->verdict = row->verdict;
	if (l->b) {
		json_builder_set_member_name(l->b, "inspection");
		review__add_row(l->b, row);
	}
	return 0;
}

/* ?inspection=ID in the request: *id, or -1 without it. 0, or -EINVAL
 * with a 400 replied. */
static int chosen_inspection(SoupServerMessage *msg, int64_t *id)
{
	char *why = NULL;
	GHashTable *q = review__parse_query(g_uri_get_query(soup_server_message_get_uri(msg)),
					    &why);
	const char *v;
	guint64 n;
	int rc = 0;

	*id = -1;
	if (!q) {
		review__reply_error(msg, SOUP_STATUS_BAD_REQUEST, "%s", why);
		g_free(why);
		return -EINVAL;
	}
	if ((v = g_hash_table_lookup(q, "inspection"))) {
		if (review__parse_uint(v, G_MAXINT64, &n) < 0) {
			review__reply_error(msg, SOUP_STATUS_BAD_REQUEST,
					    "inspection is an inspection's id (\"id\" of a row of "
					    "/api/inspections), a whole number");
			rc = -EINVAL;
		} else {
			*id = (int64_t)n;
		}
	}
	g_hash_table_unref(q);
	return rc;
}

int review__find_latest(review_server *s, SoupServerMessage *msg, int64_t part_id,
			struct review_latest *l)
{
	struct db_filter f = DB_FILTER_ALL;
	struct db_row_cb cb = { latest_cb, l };
	char *err = NULL;
	int rc;

	l->id = -1;
	l->part_id = part_id;
	if (chosen_inspection(msg, &l->chosen) < 0)
		return -EINVAL;
	f.part_id = part_id;
	f.limit = 1;
	/* The row itself, without its neighbours; latest_cb checks its part. */
	rc = l->chosen >= 0 ? db_neighbours(s->db_path, l->chosen, 0, &cb, &err)
			    : db_query(s->db_path, &f, &cb, &err);
	if (rc < 0) {
		review__reply_db_error(msg, DB_ESQLITE, err);
		free(err);
		return -EIO;
	}
	if (l->id < 0 && l->chosen >= 0) {
		review__reply_error(msg, SOUP_STATUS_NOT_FOUND,
				    "no inspection %" PRId64 " of part %" PRId64, l->chosen,
				    part_id);
		return -EINVAL;
	}
	return l->id < 0 ? -ENOENT : 0;
}

void review__api_part(review_server *s, SoupServerMessage *msg, int64_t part_id)
{
	JsonBuilder *b = json_builder_new();
	struct review_latest l = { .b = b };
	struct vigil_vibration v;
	char *err = NULL;
	int rc;

	json_builder_begin_object(b);
	if ((rc = review__find_latest(s, msg, part_id, &l)) < 0) {
		if (rc == -ENOENT)
			review__reply_error(msg, SOUP_STATUS_NOT_FOUND,
					    "no inspection of part %" PRId64, part_id);
		goto out;
	}
	json_builder_set_member_name(b, "vibration");
	rc = db_read_vibration(s->db_path, l.id, &v, &err);
	if (rc == 0) {
		char zone[2] = { v.iso_zone, '\0' };

		json_builder_begin_object(b);
		review__add_number(b, "rms_velocity_mm_s", v.rms_velocity_mm_s);
		review__add_string(b, "iso_zone", v.iso_zone ? zone : NULL);
		review__add_number(b, "rms_accel_g", v.rms_accel_g);
		review__add_number(b, "hf_accel_g", v.hf_accel_g);
		review__add_number(b, "peak_g", v.peak_g);
		review__add_number(b, "crest_factor", v.crest_factor);
		review__add_number(b, "kurtosis", v.kurtosis);
		review__add_number(b, "ftf_env", v.ftf_env);
		review__add_number(b, "bpfo_env", v.bpfo_env);
		review__add_number(b, "bpfi_env", v.bpfi_env);
		review__add_number(b, "bsf_env", v.bsf_env);
		json_builder_end_object(b);
	} else if (rc == -ENOENT) {
		json_builder_add_null_value(b);
	} else {
		review__reply_db_error(msg, DB_ESQLITE, err);
		free(err);
		goto out;
	}
	review__add_bearing(s, b);
	json_builder_set_member_name(b, "media");
	json_builder_begin_array(b);
	if (review__media_list(s, part_id, l.id, l.chosen, b, &err) < 0) {
		review__reply_db_error(msg, DB_ESQLITE, err);
		free(err);
		goto out;
	}
	json_builder_end_array(b);
	if (add_history(s, msg, part_id, l.chosen, b) < 0)
		goto out;
	json_builder_end_object(b);
	review__reply_json(msg, SOUP_STATUS_OK, json_builder_get_root(b));
out:
	g_object_unref(b);
}

const char *review__member_string(JsonObject *o, const char *name, gboolean *bad)
{
	JsonNode *n = json_object_get_member(o, name);

	if (!n || JSON_NODE_HOLDS_NULL(n))
		return NULL;
	if (!JSON_NODE_HOLDS_VALUE(n) || json_node_get_value_type(n) != G_TYPE_STRING) {
		*bad = TRUE;
		return NULL;
	}
	return json_node_get_string(n);
}

JsonObject *review__body_object(SoupServerMessage *msg, gsize max, const char *usage,
				JsonParser **parser)
{
	GBytes *bytes = soup_message_body_flatten(soup_server_message_get_request_body(msg));
	JsonNode *root;
	JsonObject *o = NULL;

	*parser = json_parser_new();
	if (g_bytes_get_size(bytes) > max)
		review__reply_error(msg, SOUP_STATUS_REQUEST_ENTITY_TOO_LARGE,
				    "the body is too large");
	else if (!json_parser_load_from_data(*parser, g_bytes_get_data(bytes, NULL),
					     (gssize)g_bytes_get_size(bytes), NULL) ||
		 !(root = json_parser_get_root(*parser)) || !JSON_NODE_HOLDS_OBJECT(root))
		review__reply_error(msg, SOUP_STATUS_BAD_REQUEST, "%s", usage);
	else
		o = json_node_get_object(root);
	g_bytes_unref(bytes);
	return o;
}

void review__api_review(review_server *s, SoupServerMessage *msg, int64_t part_id)
{
	JsonParser *parser = NULL;
	JsonObject *o;
	struct review_latest l = { 0 };
	struct review_label_in label = { 0 };
	char *mask_rel = NULL;
	const char *decision, *verdict_name, *note, *reviewer;
	gboolean bad = FALSE;
	char *err = NULL;
	int verdict = 0, rc;
	struct review_caller who;

	if (review__require_role(s, msg, USERS_ROLE_REVIEWER, &who) < 0)
		return;
	if (!(o = review__body_object(msg, REVIEW_MAX_REVIEW_BODY,
				      "the body is a JSON object: {\"decision\": "
				      "\"confirm\"|\"overrule\", \"verdict\": ..., \"note\": ..., "
				      "\"reviewer\": ...}", &parser)))
		goto out;
	decision = review__member_string(o, "decision", &bad);
	verdict_name = review__member_string(o, "verdict", &bad);
	note = review__member_string(o, "note", &bad);
	reviewer = review__member_string(o, "reviewer", &bad);
	if (bad || !decision ||
	    (strcmp(decision, "confirm") != 0 && strcmp(decision, "overrule") != 0)) {
		review__reply_error(msg, SOUP_STATUS_BAD_REQUEST,
				    "decision is \"confirm\" or \"overrule\"; verdict, note and reviewer "
				    "are strings");
		goto out;
	}
	if ((note && strlen(note) > REVIEW_MAX_NOTE) || (reviewer && strlen(reviewer) > 100)) {
		review__reply_error(msg, SOUP_STATUS_BAD_REQUEST,
				    "the note is at most %d bytes, the reviewer 100", REVIEW_MAX_NOTE);
		goto out;
	}
	if (strcmp(decision, "overrule") == 0) {
		for (int v = VIGIL_VERDICT_ACCEPT; v <= VIGIL_VERDICT_MARGINAL; v++)
			if (verdict_name &&
			    strcmp(verdict_name, vigil_verdict_name((enum vigil_verdict)v)) == 0)
				verdict = v;
		if (!verdict) {
			review__reply_error(msg, SOUP_STATUS_BAD_REQUEST,
					    "an overrule names the right verdict: accept, reject or "
					    "marginal");
			goto out;
		}
	}
	if ((rc = review__find_latest(s, msg, part_id, &l)) < 0) {
		if (rc == -ENOENT)
			review__reply_error(msg, SOUP_STATUS_NOT_FOUND,
					    "no inspection of part %" PRId64, part_id);
		goto out;
	}
	/* labels (review-labels.c): optional defect_type and mask, checked
	 * before anything is kept. */
	if (review__label_parse(s, msg, o, part_id, &label) < 0 ||
	    review__label_save_mask(s, msg, part_id, &label, &mask_rel) < 0)
		goto out;
	if (!verdict)
		verdict = l.verdict;  /* confirming keeps the line's verdict */
	if (who.name)
		reviewer = who.name;  /* a user's review is theirs, whatever the body says */
	/* The inspection looked up above: a newer one of the same part id
	 * logged meanwhile is not the one reviewed. */
	rc = db_review_at(s->db_path, part_id, l.id, decision, verdict,
			  note && *note ? note : NULL, reviewer && *reviewer ? reviewer : "web",
			  &(struct db_review_label){ label.defect_type, mask_rel }, &err);
	if (rc < 0) {
		/* -EINVAL: an overrule to the line's own verdict. */
		review__label_drop_mask(s, mask_rel);
		review__reply_db_error(msg, rc, err);
		free(err);
		goto out;
	}
	g_message("review: part %" PRId64 " %s (%s) by %s", part_id,
		  strcmp(decision, "confirm") == 0 ? "confirmed" : "overruled",
		  vigil_verdict_name((enum vigil_verdict)verdict),
		  reviewer && *reviewer ? reviewer : "web");
	{
		JsonBuilder *b = json_builder_new();

		json_builder_begin_object(b);
		review__add_int(b, "part_id", part_id);
		review__add_int(b, "inspection_id", l.id);
		review__add_string(b, "decision", decision);
		review__add_string(b, "verdict", vigil_verdict_name((enum vigil_verdict)verdict));
		review__add_string(b, "reviewer", reviewer && *reviewer ? reviewer : "web");
		review__add_string(b, "defect_type", label.defect_type);
		review__add_string(b, "mask", mask_rel);
		json_builder_end_object(b);
		review__reply_json(msg, SOUP_STATUS_OK, json_builder_get_root(b));
		g_object_unref(b);
	}
out:
	review__label_clear(&label);
	g_free(mask_rel);
	if (parser)
		g_object_unref(parser);
}

