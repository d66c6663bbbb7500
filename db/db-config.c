/* [database]: where the log and its files go, and how long they stay. The
 * keys, their defaults and their ranges live here, beside the log that
 * uses them; vigild only hands the section to db_options_read. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <glib.h>

#include "core/shift.h"
#include "db/db.h"

#define DB_RING_DEFAULT_MB 1024

static const char *const database_keys[] = {
	"path", "queue_depth", "media_dir", "media_queue", "keep_accepted_every", "max_age_days",
	"protect_days", "disk_budget_mb", "retention_period_s", "commit_timeout_ms",
	"spool_rows", "shifts", "recent_images_mb", "recent_images_hours", "station", NULL };

int db_options_read(const config *cfg, struct db_settings *s, char **err)
{
	struct db_options *o = &s->opt;
	int queue, media_queue, keep, age, protect, budget, period, spool, ring_mb, ring_h;
	const char *max_pages;
	char *def;
	int rc;

	*s = (struct db_settings){ .opt = DB_OPTIONS_DEFAULT };
	if (config_check_keys(cfg, "database", database_keys, err) < 0 ||
	    config_get_string(cfg, "database", "path", NULL, &s->path, err) < 0 ||
	    config_get_int(cfg, "database", "queue_depth", 4096, 16, 1 << 20, &queue, err) < 0)
		return -EINVAL;
	def = g_strconcat(s->path, ".media", NULL);
	rc = config_get_string(cfg, "database", "media_dir", def, &s->media_dir, err);
	g_free(def);
	if (rc < 0 ||
	    config_get_int(cfg, "database", "media_queue", 64, 1, 1 << 16, &media_queue, err) < 0 ||
	    config_get_int(cfg, "database", "keep_accepted_every", 100, 0, 1 << 30, &keep, err) < 0 ||
	    config_get_int(cfg, "database", "max_age_days", 0, 0, 36500, &age, err) < 0 ||
	    config_get_int(cfg, "database", "protect_days", 7, 0, 36500, &protect, err) < 0 ||
	    config_get_int(cfg, "database", "disk_budget_mb", 0, 0, 1 << 30, &budget, err) < 0 ||
	    config_get_int(cfg, "database", "retention_period_s", 600, 1, 86400, &period, err) < 0 ||
	    config_get_int(cfg, "database", "spool_rows", 4096, 1, 1 << 20, &spool, err) < 0 ||
	    /* -1: not given (the default below). */
	    config_get_int(cfg, "database", "recent_images_mb", -1, 0, 1 << 30, &ring_mb,
			   err) < 0 ||
	    config_get_int(cfg, "database", "recent_images_hours", 0, 0, 24 * 366, &ring_h,
			   err) < 0 ||
	    config_get_int(cfg, "database", "commit_timeout_ms", 100, 1, 10000,
			   &s->commit_timeout_ms, err) < 0 ||
	    config_get_string(cfg, "database", "shifts", SHIFT_PLAN_DEFAULT, &s->shifts, err) < 0 ||
	    config_get_string(cfg, "database", "station", g_get_host_name(), &s->station,
			      err) < 0)
		return -EINVAL;
	if (!*s->station || strlen(s->station) > 64 ||
	    !g_utf8_validate(s->station, -1, NULL)) {
		*err = config_error(cfg, "database", "station",
				    "a station is a name of 1 to 64 bytes of UTF-8");
		return -EINVAL;
	}
	{
		char *why = NULL;
		shift_plan *plan = shift_plan_parse(s->shifts, NULL, &why);

		if (!plan) {
			*err = config_error(cfg, "database", "shifts", "%s", why);
			g_free(why);
			return -EINVAL;
		}
		/* Canonical form, so readers see one spelling. */
		g_free(s->shifts);
		s->shifts = shift_plan_to_string(plan);
		shift_plan_free(plan);
	}
	/* 1 GB by default: a shift or more of every part's files (some 30 KB
	 * a part in the demo, 300 KB with a VGA camera: 35,000 or 3,500
	 * parts), since an escape is found downstream, hours later; small on
	 * any disk a line's log needs, and the first to give way on it. Under
	 * a disk budget, a quarter of it unless set. */
	if (ring_mb < 0) {
		ring_mb = budget ? MIN(DB_RING_DEFAULT_MB, budget / 4) : DB_RING_DEFAULT_MB;
	} else if (budget && ring_mb && ring_mb >= budget) {
		*err = config_error(cfg, "database", "recent_images_mb",
				    "%d is not less than disk_budget_mb (%d): the ring would take "
				    "the whole budget", ring_mb, budget);
		return -EINVAL;
	}
	if (age && age < protect) {
		*err = config_error(cfg, "database", "max_age_days",
				    "%d is less than protect_days (%d): rows of the protected "
				    "last days are never removed", age, protect);
		return -EINVAL;
	}
	o->queue_depth = (size_t)queue;
	o->media_dir = s->media_dir;
	o->media_queue = (size_t)media_queue;
	o->keep_accepted_every = keep;
	o->max_age_days = age;
	o->protect_days = protect;
	o->disk_budget_mb = budget;
	o->retention_period_s = period;
	o->spool_rows = (size_t)spool;
	o->recent_images_mb = ring_mb;
	o->recent_images_hours = ring_h;
	o->shifts = s->shifts;
	o->station = s->station;
	/* Test only (docs/operations.md): a database that is "full" after
	 * this many pages, to exercise the full-disk path. */
	max_pages = g_getenv("VIGIL_TEST_DB_MAX_PAGES");
	if (max_pages)
		o->max_pages = g_ascii_strtoll(max_pages, NULL, 10);
	/* Test only: a slow disk, each commit this much later. */
	if (g_getenv("VIGIL_TEST_DB_COMMIT_DELAY_MS"))
		o->commit_delay_ms = atoi(g_getenv("VIGIL_TEST_DB_COMMIT_DELAY_MS"));
	return 0;
}

void db_settings_clear(struct db_settings *s)
{
	if (!s)
		return;
	g_free(s->path);
	g_free(s->media_dir);
	g_free(s->shifts);
	g_free(s->station);
	*s = (struct db_settings){ 0 };
}
