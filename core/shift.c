/* Shift plans (core/shift.h). Occurrences are computed with GDateTime in
 * the plan's zone, so daylight-saving changes and month ends are GLib's
 * business, not ours. */
#include "core/shift.h"

#include <glib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NAME_MAX_LEN 31

struct shift_entry {
	char name[NAME_MAX_LEN + 1];
	int minute;             /* of the local day, 0..1439 */
};

struct shift_plan {
	GTimeZone *tz;
	size_t n;
	struct shift_entry *e;  /* sorted by minute */
};

static int cmp_entry(const void *a, const void *b)
{
	return ((const struct shift_entry *)a)->minute - ((const struct shift_entry *)b)->minute;
}

static gboolean valid_name(const char *s)
{
	if (!*s || strlen(s) > NAME_MAX_LEN)
		return FALSE;
	for (; *s; s++)
		if (!g_ascii_isalnum(*s) && *s != '-' && *s != '_')
			return FALSE;
	return TRUE;
}

static gboolean parse_hhmm(const char *s, int *minute)
{
	char *end;
	long h, m;

	if (!g_ascii_isdigit(s[0]))
		return FALSE;
	h = strtol(s, &end, 10);
	if (*end != ':' || !g_ascii_isdigit(end[1]) || end - s > 2)
		return FALSE;
	s = end + 1;
	m = strtol(s, &end, 10);
	if (*end || end - s != 2 || h > 23 || m > 59)
		return FALSE;
	*minute = (int)(h * 60 + m);
	return TRUE;
}

shift_plan *shift_plan_parse(const char *spec, const char *tz, char **err)
{
	char *ignored = NULL;
	shift_plan *p = g_new0(shift_plan, 1);
	gchar **items = g_strsplit(spec ? spec : "", ",", -1);
	size_t n = g_strv_length(items);

	if (!err)
		err = &ignored;
	p->e = g_new0(struct shift_entry, n ? n : 1);
	for (size_t i = 0; i < n; i++) {
		gchar *item = g_strstrip(items[i]);
		gchar **w = g_strsplit_set(item, " \t", -1);
		const char *name = NULL, *time = NULL;
		gboolean extra = FALSE;

		for (gchar **x = w; *x; x++) {
			if (!**x)
				continue;
			if (!name)
				name = *x;
			else if (!time)
				time = *x;
			else
				extra = TRUE;
		}
		if (!name || !time || extra) {
			*err = g_strdup_printf("shift '%s' is not NAME HH:MM (as in \"%s\")", item,
					       SHIFT_PLAN_DEFAULT);
		} else if (!valid_name(name)) {
			*err = g_strdup_printf("shift name '%s' is not 1 to %d letters, digits, '-' or '_'",
					       name, NAME_MAX_LEN);
		} else if (!parse_hhmm(time, &p->e[p->n].minute)) {
			*err = g_strdup_printf("shift '%s' starts at '%s', not a time HH:MM from 00:00 to 23:59",
					       name, time);
		} else {
			for (size_t j = 0; j < p->n; j++)
				if (strcmp(p->e[j].name, name) == 0)
					*err = g_strdup_printf("shift '%s' is named twice", name);
				else if (p->e[j].minute == p->e[p->n].minute)
					*err = g_strdup_printf("shifts '%s' and '%s' both start at %s",
							       p->e[j].name, name, time);
			if (!*err)
				g_strlcpy(p->e[p->n++].name, name, sizeof p->e[0].name);
		}
		g_strfreev(w);
		if (*err)
			break;
	}
	g_strfreev(items);
	if (!*err && p->n == 0)
		*err = g_strdup_printf("no shifts given (as in \"%s\")", SHIFT_PLAN_DEFAULT);
	if (!*err && tz) {
		p->tz = g_time_zone_new_identifier(tz);
		if (!p->tz)
			*err = g_strdup_printf("unknown time zone '%s'", tz);
	}
	if (*err) {
		g_free(ignored);
		shift_plan_free(p);
		return NULL;
	}
	if (!p->tz)
		p->tz = g_time_zone_new_local();
	qsort(p->e, p->n, sizeof p->e[0], cmp_entry);
	return p;
}

void shift_plan_free(shift_plan *p)
{
	if (!p)
		return;
	if (p->tz)
		g_time_zone_unref(p->tz);
	g_free(p->e);
	g_free(p);
}

char *shift_plan_to_string(const shift_plan *p)
{
	GString *s = g_string_new(NULL);

	for (size_t i = 0; i < p->n; i++)
		g_string_append_printf(s, "%s%s %02d:%02d", i ? ", " : "", p->e[i].name,
				       p->e[i].minute / 60, p->e[i].minute % 60);
	return g_string_free(s, FALSE);
}

size_t shift_plan_count(const shift_plan *p)
{
	return p->n;
}

const char *shift_plan_name(const shift_plan *p, size_t i)
{
	return i < p->n ? p->e[i].name : NULL;
}

/* The start of shift i on the local calendar day (y, m, d); a start inside
 * a daylight-saving gap moves forward as GLib does. */
static int64_t start_on(const shift_plan *p, GDate *day, size_t i)
{
	GDateTime *dt = g_date_time_new(p->tz, g_date_get_year(day), g_date_get_month(day),
					g_date_get_day(day), p->e[i].minute / 60,
					p->e[i].minute % 60, 0);
	int64_t us = g_date_time_to_unix(dt) * G_USEC_PER_SEC;

	g_date_time_unref(dt);
	return us;
}

static void fill(const shift_plan *p, GDate *day, size_t i, shift_span *out)
{
	GDate next = *day;
	char date[16];

	out->index = (int)i;
	out->name = p->e[i].name;
	out->start_us = start_on(p, day, i);
	if (i + 1 < p->n) {
		out->end_us = start_on(p, day, i + 1);
	} else {
		g_date_add_days(&next, 1);
		out->end_us = start_on(p, &next, 0);
	}
	g_date_strftime(date, sizeof date, "%Y-%m-%d", day);
	g_snprintf(out->label, sizeof out->label, "%s %s", date, p->e[i].name);
}

void shift_plan_at(const shift_plan *p, int64_t t_us, shift_span *out)
{
	int64_t s = t_us >= 0 ? t_us / G_USEC_PER_SEC : -((-t_us + G_USEC_PER_SEC - 1) / G_USEC_PER_SEC);
	GDateTime *utc = g_date_time_new_from_unix_utc(s);
	GDateTime *local = g_date_time_to_timezone(utc, p->tz);
	GDate day;

	g_date_clear(&day, 1);
	g_date_set_dmy(&day, (GDateDay)g_date_time_get_day_of_month(local),
		       (GDateMonth)g_date_time_get_month(local), (GDateYear)g_date_time_get_year(local));
	g_date_time_unref(local);
	g_date_time_unref(utc);
	for (size_t i = p->n; i-- > 0;) {
		if (start_on(p, &day, i) <= t_us) {
			fill(p, &day, i, out);
			return;
		}
	}
	g_date_subtract_days(&day, 1);
	fill(p, &day, p->n - 1, out);
}

void shift_plan_step(const shift_plan *p, const shift_span *span, int n, shift_span *out)
{
	shift_span s = *span;

	for (; n > 0; n--)
		shift_plan_at(p, s.start_us - 1, &s);
	for (; n < 0; n++)
		shift_plan_at(p, s.end_us, &s);
	*out = s;
}

int shift_plan_find(const shift_plan *p, const char *label, int64_t now_us,
		    shift_span *out, char **err)
{
	unsigned y, m, d;
	char name[NAME_MAX_LEN + 2], tail;
	GDate day;

	if (strcmp(label, "current") == 0) {
		shift_plan_at(p, now_us, out);
		return 0;
	}
	if (strcmp(label, "previous") == 0) {
		shift_span cur;

		shift_plan_at(p, now_us, &cur);
		shift_plan_step(p, &cur, 1, out);
		return 0;
	}
	if (sscanf(label, "%4u-%2u-%2u %32s%c", &y, &m, &d, name, &tail) != 4 ||
	    !g_date_valid_dmy((GDateDay)d, (GDateMonth)m, (GDateYear)y)) {
		/* The plan's shifts too: "lunch" may be a name the person
		 * thought the plan had. */
		char *names = shift_plan_to_string(p);

		*err = g_strdup_printf("'%s' is not a shift: give \"YYYY-MM-DD NAME\", current or "
				       "previous (the shifts: %s)", label, names);
		g_free(names);
		return -1;
	}
	for (size_t i = 0; i < p->n; i++) {
		if (strcmp(p->e[i].name, name) == 0) {
			g_date_clear(&day, 1);
			g_date_set_dmy(&day, (GDateDay)d, (GDateMonth)m, (GDateYear)y);
			fill(p, &day, i, out);
			return 0;
		}
	}
	{
		char *names = shift_plan_to_string(p);

		*err = g_strdup_printf("no shift named '%s' (the shifts: %s)", name, names);
		g_free(names);
	}
	return -1;
}
