/* Filter values from text (db.h, db_filter_set): the one reading of what a
 * QA engineer types, shared by vigilctl's options and the review API's
 * query parameters so that both take the same values and refuse the same
 * ones, each naming the field its own way ("--limit", "limit"). */
#include <errno.h>
#include <math.h>
#include <string.h>

#include <glib.h>

#include "db/db.h"

/* The rules, said so that "NAME is " before them makes a sentence. */
static const char *const rules[DB_FILTER_FIELDS] = {
	[DB_FILTER_SINCE] = "an ISO 8601 time: 2026-12-06, 2026-12-06T05:15 (local), "
			    "2026-12-06T05:15:30.5 or 2026-12-06T05:15:00Z (or +01:00)",
	[DB_FILTER_UNTIL] = "an ISO 8601 time: 2026-12-06, 2026-12-06T05:15 (local), "
			    "2026-12-06T05:15:30.5 or 2026-12-06T05:15:00Z (or +01:00)",
	[DB_FILTER_VERDICT] = "accept, reject or marginal",
	[DB_FILTER_CLASS] = "none, surface, vibration or surface+vibration",
	[DB_FILTER_MIN_SCORE] = "a number from 0 to 1",
	[DB_FILTER_MAX_SCORE] = "a number from 0 to 1",
	[DB_FILTER_PART] = "a part id, a whole number from 0 to 4294967295",
	[DB_FILTER_REVIEWED] = "yes or no",
	[DB_FILTER_LIMIT] = "a whole number from 1 to " G_STRINGIFY(DB_FILTER_MAX_LIMIT),
	[DB_FILTER_JOB] = "a job number, a whole number from 0 to 65535",
	[DB_FILTER_MODEL] = "a model version of 1 to 100 printable bytes",
	[DB_FILTER_STATION] = "a station name of 1 to 100 printable bytes",
};

const char *db_filter_rule(enum db_filter_field field)
{
	return field < DB_FILTER_FIELDS ? rules[field] : "not a filter";
}

/* A decimal of up to 20 digits, no sign, no space, from min to max. */
static int parse_uint(const char *text, guint64 min, guint64 max, guint64 *out)
{
	if (!g_ascii_isdigit(text[0]) || strlen(text) > 20)
		return -EINVAL;
	return g_ascii_string_to_unsigned(text, 10, min, max, out, NULL) ? 0 : -EINVAL;
}

/* A score: finite, from 0 to 1 ("nan" is not a score, and would filter
 * nothing). */
static int parse_score(const char *text, double *out)
{
	char *end = NULL;
	double v;

	if (!*text || strlen(text) > 32)
		return -EINVAL;
	v = g_ascii_strtod(text, &end);
	if (*end || !isfinite(v) || v < 0.0 || v > 1.0)
		return -EINVAL;
	*out = v;
	return 0;
}

/* GLib's ISO 8601 reader wants a time with seconds; the forms people type
 * (a date alone, the page's datetime-local "2026-12-06T05:15") are
 * completed to that, and without a zone the time is local (TZ), the
 * plant's clock on the wall. */
static int parse_time(const char *text, int64_t *us)
{
	const char *t = strchr(text, 'T');
	GTimeZone *local;
	GDateTime *dt;
	char *full;

	if (!*text || strlen(text) > 40)
		return -EINVAL;
	if (!t)
		full = g_strconcat(text, "T00:00:00", NULL);
	else if (g_ascii_isdigit(t[1]) && g_ascii_isdigit(t[2]) && t[3] == ':' &&
		 g_ascii_isdigit(t[4]) && g_ascii_isdigit(t[5]) && t[6] != ':')
		full = g_strdup_printf("%.*s:00%s", (int)(t + 6 - text), text, t + 6);
	else
		full = g_strdup(text);
	local = g_time_zone_new_local();
	dt = g_date_time_new_from_iso8601(full, local);
	g_time_zone_unref(local);
	g_free(full);
	if (!dt)
		return -EINVAL;
	*us = g_date_time_to_unix(dt) * G_USEC_PER_SEC + g_date_time_get_microsecond(dt);
	g_date_time_unref(dt);
	return 0;
}

/* A short printable name: a model version or a station. */
static gboolean name_ok(const char *v)
{
	size_t n = strlen(v);

	if (n == 0 || n > 100)
		return FALSE;
	for (const char *c = v; *c; c++)
		if ((unsigned char)*c < 0x20 || *c == 0x7f)
			return FALSE;
	return TRUE;
}

static gboolean one_of(const char *text, const char *const *names)
{
	for (; *names; names++)
		if (strcmp(text, *names) == 0)
			return TRUE;
	return FALSE;
}

int db_filter_set(struct db_filter *f, enum db_filter_field field, const char *text)
{
	static const char *const verdicts[] = { "accept", "reject", "marginal", NULL };
	static const char *const classes[] = { "none", "surface", "vibration", "surface+vibration",
					       NULL };
	guint64 n;
	int rc = 0;

	if (!text)
		return -EINVAL;
	switch (field) {
	case DB_FILTER_SINCE:
		return parse_time(text, &f->since_us);
	case DB_FILTER_UNTIL:
		return parse_time(text, &f->until_us);
	case DB_FILTER_VERDICT:
		if (!one_of(text, verdicts))
			return -EINVAL;
		f->verdict = text;
		return 0;
	case DB_FILTER_CLASS:
		if (!one_of(text, classes))
			return -EINVAL;
		f->defect_class = text;
		return 0;
	case DB_FILTER_MIN_SCORE:
		return parse_score(text, &f->min_score);
	case DB_FILTER_MAX_SCORE:
		return parse_score(text, &f->max_score);
	case DB_FILTER_PART:
		if ((rc = parse_uint(text, 0, G_MAXUINT32, &n)) == 0)
			f->part_id = (int64_t)n;
		return rc;
	case DB_FILTER_REVIEWED:
		if (strcmp(text, "yes") != 0 && strcmp(text, "no") != 0)
			return -EINVAL;
		f->reviewed = strcmp(text, "yes") == 0;
		return 0;
	case DB_FILTER_LIMIT:
		/* 0 is not "no limit" here: a person who asks for the newest
		 * none, or -5, gets told, not every row. */
		if ((rc = parse_uint(text, 1, DB_FILTER_MAX_LIMIT, &n)) == 0)
			f->limit = (int64_t)n;
		return rc;
	case DB_FILTER_JOB:
		if ((rc = parse_uint(text, 0, 65535, &n)) == 0)
			f->job = (int64_t)n;
		return rc;
	case DB_FILTER_MODEL:
		if (!name_ok(text))
			return -EINVAL;
		f->model_version = text;
		return 0;
	case DB_FILTER_STATION:
		if (!name_ok(text))
			return -EINVAL;
		f->station = text;
		return 0;
	case DB_FILTER_FIELDS:
		break;
	}
	return -EINVAL;
}

enum db_filter_field db_filter_empty_range(const struct db_filter *f)
{
	/* A time of 0 is no bound (DB_FILTER_ALL). */
	if (f->since_us && f->until_us && f->since_us >= f->until_us)
		return DB_FILTER_SINCE;
	if (!isnan(f->min_score) && !isnan(f->max_score) && f->min_score > f->max_score)
		return DB_FILTER_MIN_SCORE;
	return DB_FILTER_FIELDS;
}
