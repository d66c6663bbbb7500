/* GET /api/trends: yield and defect rates per hour or per shift over days
 * and weeks, with the p-chart of the reject proportion, from the log alone
 * (so it works in --review-only as well). SQLite counts each bucket
 * (db_count_buckets); nothing here walks rows.
 *
 *   bucket    hour (default) or shift (the log's shift plan, db_shifts)
 *   since     ISO 8601 date or date-time (local time without a zone), or
 *             Unix seconds; default: until minus 7 days (hour) or 28 days
 *             (shift)
 *   until     likewise; default: now
 *   baseline  the p-chart's centre line is the reject proportion of the
 *             first N buckets of the view (the reference period);
 *             default: all of them
 *
 * Each bucket: start, end, label, parts, accepted, rejected, marginal,
 * yield, reject_rate, classes {name: count}, and the p-chart's limits for
 * its own size n: ucl / lcl = p_bar +/- 3 sqrt(p_bar (1 - p_bar) / n),
 * out_of_control when its reject rate lies outside them. Empty buckets
 * have null rates and limits. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "app/review-private.h"
#include "core/part.h"
#include "core/shift.h"

#define HOUR_US (3600LL * 1000000)
#define DAY_US (24 * HOUR_US)
/* A little over a year of hours, or of three shifts a day. */
#define MAX_BUCKETS 9000

/* An ISO 8601 date ("2026-11-01"), date-time ("2026-12-06T05:15", local
 * without a zone) or Unix seconds, as µs since 1970. */
static int parse_time(const char *text, int64_t *out)
{
	GTimeZone *local = g_time_zone_new_local();
	GDateTime *t = NULL;
	char *end = NULL;
	gint64 secs = g_ascii_strtoll(text, &end, 10);

	if (*text && end && !*end) {
		*out = secs * 1000000;
		g_time_zone_unref(local);
		return 0;
	}
	if (strlen(text) == 10) {
		char *full = g_strconcat(text, "T00:00:00", NULL);

		t = g_date_time_new_from_iso8601(full, local);
		g_free(full);
	} else {
		t = g_date_time_new_from_iso8601(text, local);
		if (!t) {
			/* GLib wants seconds; "2026-12-06T05:15" is a time too. */
			char *full = g_strconcat(text, ":00", NULL);

			t = g_date_time_new_from_iso8601(full, local);
			g_free(full);
		}
	}
	g_time_zone_unref(local);
	if (!t)
		return -EINVAL;
	*out = g_date_time_to_unix(t) * 1000000 + g_date_time_get_microsecond(t);
	g_date_time_unref(t);
	return 0;
}

static char *hour_label(int64_t t_us)
{
	GDateTime *t = g_date_time_new_from_unix_local(t_us / 1000000);
	char *s = g_date_time_format(t, "%Y-%m-%d %H:00");

	g_date_time_unref(t);
	return s;
}

/* The start of the local hour t_us falls in. */
static int64_t hour_floor(int64_t t_us)
{
	GDateTime *t = g_date_time_new_from_unix_local(t_us / 1000000);
	int64_t into = ((int64_t)g_date_time_get_minute(t) * 60 + g_date_time_get_second(t)) *
			       1000000 + t_us % 1000000;

	g_date_time_unref(t);
	return t_us - into;
}

struct buckets {
	GArray *edges;    /* int64_t, n + 1: each bucket's start, then the last one's end */
	GPtrArray *labels;
};

static int hour_buckets(int64_t since, int64_t until, struct buckets *b, char **why)
{
	int64_t t;

	for (t = hour_floor(since); t < until; t += HOUR_US) {
		if (b->labels->len == MAX_BUCKETS) {
			*why = g_strdup_printf("more than %d hours from since to until: take "
					       "bucket=shift or a shorter range", MAX_BUCKETS);
			return -EINVAL;
		}
		g_array_append_val(b->edges, t);
		g_ptr_array_add(b->labels, hour_label(t));
	}
	g_array_append_val(b->edges, t);
	return 0;
}

static int shift_buckets(review_server *s, int64_t since, int64_t until, struct buckets *b,
			 char **plan_text, char **why)
{
	char *err = NULL, *spec = db_shifts(s->db_path, &err);
	shift_plan *plan = NULL;
	shift_span span;

	if (!spec) {
		*why = g_strdup(err);
		free(err);
		return -EIO;
	}
	plan = shift_plan_parse(spec, NULL, why);
	free(spec);
	if (!plan)
		return -EINVAL;
	*plan_text = shift_plan_to_string(plan);
	shift_plan_at(plan, since, &span);
	while (span.start_us < until) {
		if (b->labels->len == MAX_BUCKETS) {
			*why = g_strdup_printf("more than %d shifts from since to until: take a "
					       "shorter range", MAX_BUCKETS);
			shift_plan_free(plan);
			return -EINVAL;
		}
		g_array_append_val(b->edges, span.start_us);
		g_ptr_array_add(b->labels, g_strdup(span.label));
		shift_plan_step(plan, &span, -1, &span);
	}
	/* Shifts follow one another: the last one ends where the next begins. */
	g_array_append_val(b->edges, span.start_us);
	shift_plan_free(plan);
	return 0;
}

static void add_nullable(JsonBuilder *b, const char *name, double v)
{
	json_builder_set_member_name(b, name);
	if (isfinite(v))
		json_builder_add_double_value(b, v);
	else
		json_builder_add_null_value(b);
}

static void add_bucket(JsonBuilder *b, const struct db_bucket_counts *c, const char *label,
		       double p_bar)
{
	double n = (double)c->parts, p = n > 0 ? (double)c->rejected / n : NAN;
	double sigma = n > 0 && isfinite(p_bar) ? sqrt(p_bar * (1.0 - p_bar) / n) : NAN;
	double ucl = isfinite(sigma) ? MIN(p_bar + 3 * sigma, 1.0) : NAN;
	double lcl = isfinite(sigma) ? MAX(p_bar - 3 * sigma, 0.0) : NAN;

	json_builder_begin_object(b);
	review__add_int(b, "start_us", c->start_us);
	review__add_int(b, "end_us", c->end_us);
	review__add_string(b, "label", label);
	review__add_int(b, "parts", c->parts);
	review__add_int(b, "accepted", c->accepted);
	review__add_int(b, "rejected", c->rejected);
	review__add_int(b, "marginal", c->marginal);
	add_nullable(b, "yield", n > 0 ? (double)c->accepted / n : NAN);
	add_nullable(b, "reject_rate", p);
	add_nullable(b, "defect_rate", n > 0 ? (double)(c->rejected + c->marginal) / n : NAN);
	json_builder_set_member_name(b, "classes");
	json_builder_begin_object(b);
	for (int k = VIGIL_CLASS_SURFACE; k <= VIGIL_CLASS_BOTH; k++)
		review__add_int(b, vigil_class_name((enum vigil_defect_class)k), c->by_class[k]);
	json_builder_end_object(b);
	add_nullable(b, "ucl", ucl);
	add_nullable(b, "lcl", lcl);
	json_builder_set_member_name(b, "out_of_control");
	json_builder_add_boolean_value(b, isfinite(ucl) && (p > ucl || p < lcl));
	json_builder_end_object(b);
}

void review__api_trends(review_server *s, SoupServerMessage *msg, const char *query)
{
	GHashTable *q = NULL;
	GError *gerr = NULL;
	const char *bucket, *v;
	gboolean by_shift;
	int64_t now = g_get_real_time(), since, until, baseline = 0, base_parts = 0,
		base_rejected = 0;
	struct buckets b = { g_array_new(FALSE, FALSE, sizeof(int64_t)),
			     g_ptr_array_new_with_free_func(g_free) };
	struct db_bucket_counts *counts = NULL;
	char *why = NULL, *err = NULL, *plan_text = NULL;
	size_t n;
	double p_bar;
	JsonBuilder *jb;

	q = query ? g_uri_parse_params(query, -1, "&", G_URI_PARAMS_NONE, &gerr)
		  : g_hash_table_new(g_str_hash, g_str_equal);
	if (!q) {
		review__reply_error(msg, SOUP_STATUS_BAD_REQUEST, "bad query: %s", gerr->message);
		g_error_free(gerr);
		goto out;
	}
	bucket = g_hash_table_lookup(q, "bucket");
	if (bucket && strcmp(bucket, "hour") != 0 && strcmp(bucket, "shift") != 0) {
		review__reply_error(msg, SOUP_STATUS_BAD_REQUEST,
				    "bucket: \"%s\" is not hour or shift", bucket);
		goto out;
	}
	by_shift = bucket && strcmp(bucket, "shift") == 0;
	until = now;
	if ((v = g_hash_table_lookup(q, "until")) && parse_time(v, &until) < 0) {
		review__reply_error(msg, SOUP_STATUS_BAD_REQUEST,
				    "until: \"%s\" is not a date (2026-11-01), a local time "
				    "(2026-12-06T05:15) or Unix seconds", v);
		goto out;
	}
	since = until - (by_shift ? 28 : 7) * DAY_US;
	if ((v = g_hash_table_lookup(q, "since")) && parse_time(v, &since) < 0) {
		review__reply_error(msg, SOUP_STATUS_BAD_REQUEST,
				    "since: \"%s\" is not a date (2026-11-01), a local time "
				    "(2026-12-06T05:15) or Unix seconds", v);
		goto out;
	}
	if (since >= until) {
		review__reply_error(msg, SOUP_STATUS_BAD_REQUEST, "since is not before until");
		goto out;
	}
	if ((v = g_hash_table_lookup(q, "baseline"))) {
		guint64 nb;

		if (review__parse_uint(v, MAX_BUCKETS, &nb) < 0 || nb == 0) {
			review__reply_error(msg, SOUP_STATUS_BAD_REQUEST,
					    "baseline: \"%s\" is not a number of buckets (1..%d)",
					    v, MAX_BUCKETS);
			goto out;
		}
		baseline = (int64_t)nb;
	}
	if ((by_shift ? shift_buckets(s, since, until, &b, &plan_text, &why)
		      : hour_buckets(since, until, &b, &why)) < 0) {
		review__reply_error(msg, SOUP_STATUS_BAD_REQUEST, "%s", why);
		goto out;
	}
	n = b.labels->len;
	counts = g_new0(struct db_bucket_counts, MAX(n, 1));
	if (db_count_buckets(s->db_path, (const int64_t *)(void *)b.edges->data, n, counts,
			     &err) < 0) {
		review__reply_db_error(msg, DB_ESQLITE, err);
		goto out;
	}
	if (!baseline || (size_t)baseline > n)
		baseline = (int64_t)n;
	for (int64_t i = 0; i < baseline; i++) {
		base_parts += counts[i].parts;
		base_rejected += counts[i].rejected;
	}
	p_bar = base_parts ? (double)base_rejected / (double)base_parts : NAN;

	jb = json_builder_new();
	json_builder_begin_object(jb);
	review__add_string(jb, "bucket", by_shift ? "shift" : "hour");
	review__add_int(jb, "since_us", since);
	review__add_int(jb, "until_us", until);
	if (plan_text)
		review__add_string(jb, "shifts", plan_text);
	review__add_int(jb, "baseline_buckets", baseline);
	review__add_int(jb, "baseline_parts", base_parts);
	add_nullable(jb, "p_bar", p_bar);
	json_builder_set_member_name(jb, "classes");
	json_builder_begin_array(jb);
	for (int k = VIGIL_CLASS_SURFACE; k <= VIGIL_CLASS_BOTH; k++)
		json_builder_add_string_value(jb, vigil_class_name((enum vigil_defect_class)k));
	json_builder_end_array(jb);
	json_builder_set_member_name(jb, "buckets");
	json_builder_begin_array(jb);
	for (size_t i = 0; i < n; i++)
		add_bucket(jb, &counts[i], g_ptr_array_index(b.labels, i), p_bar);
	json_builder_end_array(jb);
	json_builder_end_object(jb);
	review__reply_json(msg, SOUP_STATUS_OK, json_builder_get_root(jb));
	g_object_unref(jb);
out:
	if (q)
		g_hash_table_unref(q);
	g_array_free(b.edges, TRUE);
	g_ptr_array_free(b.labels, TRUE);
	g_free(counts);
	g_free(why);
	g_free(plan_text);
	free(err);
}
