/* The wall clock against a clock that never steps. Every row is stamped
 * with the wall clock, and retention and the recent ring go by those
 * stamps; but an industrial PC's wall clock steps: a flat RTC battery
 * starts it at the firmware's date, NTP or PTP then moves it a year
 * forward, or someone sets it by hand. After a step forward the rows
 * written before it look that much older, and retention (max_age_days,
 * even protect_days) would delete parts inspected minutes ago. So the
 * writer keeps marks of the boot-time clock (CLOCK_BOOTTIME: it neither
 * steps nor stops while suspended) against the next row id of each aged
 * table, and retention and the ring never take a row this run wrote less
 * than their age ago by that clock, whatever its stamp says. A step is
 * told once, as an event and a warning. Writer thread only. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <glib.h>
#include <sqlite3.h>

#include "core/part.h"
#include "db/db-private.h"

/* One mark an hour: a row is kept up to an hour longer than its age. */
#define CLOCK_MARK_PERIOD_US HOUR_US
/* NTP slews at most 0.5 ms a second; a change of the wall clock against
 * the boot clock above this between two turns of the writer is a step. */
#define CLOCK_STEP_US (2 * G_USEC_PER_SEC)

static int64_t boot_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_BOOTTIME, &ts);
	return (int64_t)ts.tv_sec * G_USEC_PER_SEC + ts.tv_nsec / 1000;
}

/* The longest age anything is kept by: marks older than it are not
 * needed, but for the one just before it. */
static int64_t longest_age_us(const db_log *db)
{
	int64_t days = MAX(db->opt.max_age_days, db->opt.protect_days);

	return MAX(days * DAY_US, (int64_t)db->opt.recent_images_hours * HOUR_US);
}

static void take_mark(db_log *db, int64_t now)
{
	struct db_clock_mark m = { .boot_us = now };
	int64_t keep_after = now - longest_age_us(db);
	guint drop = 0;

	for (int t = 0; t < DB_NTABLES; t++) {
		char *sql = g_strdup_printf("SELECT coalesce(max(id), 0) + 1 FROM %s",
					    db_table_name((enum db_table)t));
		int64_t next;

		/* Unknown: the mark before it (those rows are older than now
		 * for sure), or, for the first, every row kept by this rule. */
		if (db__query_int(db->conn, sql, &next) != SQLITE_OK)
			next = db->clock_marks->len
			       ? g_array_index(db->clock_marks, struct db_clock_mark,
					       db->clock_marks->len - 1).next_id[t]
			       : 1;
		m.next_id[t] = next;
		g_free(sql);
	}
	g_array_append_val(db->clock_marks, m);
	while (drop + 1 < db->clock_marks->len &&
	       g_array_index(db->clock_marks, struct db_clock_mark, drop + 1).boot_us <= keep_after)
		drop++;
	if (drop)
		g_array_remove_range(db->clock_marks, 0, drop);
}

void db__clock_restart(db_log *db)
{
	g_array_set_size(db->clock_marks, 0);
	take_mark(db, boot_us());
}

static char *local_time(int64_t wall_us)
{
	GDateTime *t = g_date_time_new_from_unix_local(wall_us / G_USEC_PER_SEC);
	char *s = t ? g_date_time_format(t, "%Y-%m-%d %H:%M:%S %Z") : g_strdup("?");

	if (t)
		g_date_time_unref(t);
	return s;
}

/* "3 d 4 h 5 min 6 s", leaving out the leading zero units; to the nearest
 * second (the two clocks are read microseconds apart). */
static char *span_text(int64_t us)
{
	int64_t s = (us + G_USEC_PER_SEC / 2) / G_USEC_PER_SEC;
	int64_t d = s / 86400, h = s / 3600 % 24, m = s / 60 % 60;

	s %= 60;
	if (d)
		return g_strdup_printf("%" PRId64 " d %" PRId64 " h %" PRId64 " min", d, h, m);
	if (h)
		return g_strdup_printf("%" PRId64 " h %" PRId64 " min %" PRId64 " s", h, m, s);
	if (m)
		return g_strdup_printf("%" PRId64 " min %" PRId64 " s", m, s);
	return g_strdup_printf("%" PRId64 " s", s);
}

void db__clock_check(db_log *db)
{
	int64_t now = boot_us(), wall = vigil_wall_us();
	int64_t skew = wall - now, step = skew - db->clock_skew_us;

	if (db->clock_skew_known && (step > CLOCK_STEP_US || step < -CLOCK_STEP_US)) {
		char *span = span_text(step > 0 ? step : -step);
		char *from = local_time(wall - step), *to = local_time(wall);
		char *msg = g_strdup_printf(
			"the wall clock stepped %s by %s (from about %s to %s); rows keep the "
			"time they were stamped with, and retention and the recent ring age "
			"this run's rows by the time since they were written", step > 0
			? "forward" : "back", span, from, to);

		g_warning("database %s: %s", db->path, msg);
		db__write_event(db, "clock-stepped", msg);
		atomic_fetch_add(&db->clock_steps, 1);
		g_free(msg);
		g_free(span);
		g_free(from);
		g_free(to);
	}
	db->clock_skew_us = skew;
	db->clock_skew_known = true;
	if (db->clock_marks->len == 0 ||
	    now - g_array_index(db->clock_marks, struct db_clock_mark,
				db->clock_marks->len - 1).boot_us >= CLOCK_MARK_PERIOD_US)
		take_mark(db, now);
}

int64_t db__clock_keep_from(const db_log *db, enum db_table t, int64_t age_us)
{
	int64_t edge = boot_us() - age_us;
	const struct db_clock_mark *m = NULL;

	if (db->clock_marks->len == 0)
		return INT64_MAX;
	/* The latest mark at or before the edge: every row after it was
	 * written less than age_us ago, or at most a mark period more. With
	 * none that old, the run is younger than age_us: all it wrote. */
	for (guint i = 0; i < db->clock_marks->len; i++) {
		const struct db_clock_mark *k =
			&g_array_index(db->clock_marks, struct db_clock_mark, i);

		if (k->boot_us > edge)
			break;
		m = k;
	}
	if (!m)
		m = &g_array_index(db->clock_marks, struct db_clock_mark, 0);
	return m->next_id[t];
}
