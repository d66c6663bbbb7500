/* The log writer at a given part rate: rows/s sustained, the deepest the
 * row queue got, and the write lag (queued to committed), with each part's
 * files kept as vigild keeps them (defects always, accepted parts one in
 * keep_accepted_every). bench/db-writer.sh runs it; docs/operations.md
 * quotes its figures.
 *
 * usage: vigil-db-bench [--rate PARTS_PER_MIN] [--seconds S] [--image PX]
 *                       [--reject-share F] [--keep-accepted N] [--dir DIR]
 *   --rate 0 submits as fast as the queue takes rows (the writer's limit). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <glib.h>
#include <glib/gstdio.h>

#include "core/part.h"
#include "db/db.h"

static struct db_media_set *make_media(uint32_t i, int px, size_t window)
{
	struct db_media_set *m = g_new0(struct db_media_set, 1);

	m->nimages = 1;
	m->images[0].camera = g_strdup("top");
	m->images[0].width = m->images[0].height = px;
	m->images[0].gray = g_malloc((gsize)px * (gsize)px);
	for (int k = 0; k < px * px; k++)
		m->images[0].gray[k] = (uint8_t)(((uint32_t)k * 2654435761u + i) >> 24);
	m->vibration_len = window;
	m->vibration = g_new(float, window);
	for (size_t k = 0; k < window; k++)
		m->vibration[k] = sinf((float)k * 0.05f) + 0.01f * (float)(k % 7);
	m->rate_hz = 12000;
	return m;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
	double rate = 12000, seconds = 20, reject_share = 0.45;
	int image = 192, keep = 100;
	char *dir = NULL;
	GOptionEntry entries[] = {
		{ "rate", 0, 0, G_OPTION_ARG_DOUBLE, &rate, "Parts per minute (0: flat out)", "N" },
		{ "seconds", 0, 0, G_OPTION_ARG_DOUBLE, &seconds, "Run time", "S" },
		{ "image", 0, 0, G_OPTION_ARG_INT, &image, "Image side in pixels", "PX" },
		{ "reject-share", 0, 0, G_OPTION_ARG_DOUBLE, &reject_share, "Share of defects", "F" },
		{ "keep-accepted", 0, 0, G_OPTION_ARG_INT, &keep, "Keep one accepted part in N", "N" },
		{ "dir", 0, 0, G_OPTION_ARG_FILENAME, &dir, "Directory (default: a temporary one)", "DIR" },
		{ NULL, 0, 0, 0, NULL, NULL, NULL },
	};
	GOptionContext *ctx = g_option_context_new("- the log writer's sustained rate");
	GError *gerr = NULL;
	struct db_options opt = DB_OPTIONS_DEFAULT;
	char *path, *err = NULL;
	db_log *db;
	int64_t t0, t_end, t_settled;
	uint64_t n = 0, last = 0, blocked = 0;
	GArray *lags = g_array_new(FALSE, FALSE, sizeof(double));
	size_t window = 2048;

	g_option_context_add_main_entries(ctx, entries, NULL);
	if (!g_option_context_parse(ctx, &argc, &argv, &gerr)) {
		fprintf(stderr, "vigil-db-bench: %s\n", gerr->message);
		return 2;
	}
	g_option_context_free(ctx);
	if (!dir)
		dir = g_dir_make_tmp("vigil-db-bench-XXXXXX", NULL);
	path = g_build_filename(dir, "bench.db", NULL);
	opt.keep_accepted_every = keep;
	db = db_open_with(path, &opt, &err);
	if (!db) {
		fprintf(stderr, "vigil-db-bench: %s\n", err);
		return 1;
	}

	t0 = vigil_now_us();
	t_end = t0 + (int64_t)(seconds * 1e6);
	for (;;) {
		int64_t now = vigil_now_us();
		struct db_inspection r;
		uint64_t ticket;
		int verdict;

		if (now >= t_end)
			break;
		if (rate > 0) {
			int64_t due = t0 + (int64_t)((double)n * 60e6 / rate);

			if (due > now)
				g_usleep((gulong)(due - now));
		}
		verdict = (double)(n % 1000) < reject_share * 1000 ? VIGIL_VERDICT_REJECT
								    : VIGIL_VERDICT_ACCEPT;
		r = (struct db_inspection){
			.part_id = (uint32_t)n, .trigger_counter = (uint32_t)(n % 65535 + 1),
			.seq = n, .t_wall_us = vigil_wall_us(), .verdict = verdict,
			.defect_class = verdict == VIGIL_VERDICT_REJECT ? VIGIL_CLASS_SURFACE
									: VIGIL_CLASS_NONE,
			.score = 0.5, .vision_score = 0.4, .signal_score = 0.3, .latency_ms = NAN,
			.infer_ms = 4.2, .model_version = "synthetic-v1", .has_vibration = 1,
			.vibration = { .rms_velocity_mm_s = 2.1, .iso_zone = 'B', .kurtosis = 3.1 },
		};
		/* As vigild does: never wait; a full queue would be a fault. */
		if (db_submit_media(db, &r, make_media((uint32_t)n, image, window), 0,
				    &ticket) < 0) {
			blocked++;
			continue;
		}
		db_set_latency(db, ticket, 5.0);
		n++;
		if (n % 200 == 0) {
			struct db_stats st;

			db_get_stats(db, &st);
			g_array_append_val(lags, st.write_lag_ms);
			last = n;
		}
	}
	/* Everything submitted is committed before the clock stops. */
	for (;;) {
		struct db_stats st;

		db_get_stats(db, &st);
		if (st.settled >= n)
			break;
		g_usleep(200);
	}
	t_settled = vigil_now_us();
	(void)last;

	{
		double secs = (double)(t_settled - t0) / 1e6;
		double p50 = 0, p99 = 0;
		struct db_stats st;

		db_get_stats(db, &st);
		if (lags->len) {
			qsort(lags->data, lags->len, sizeof(double), cmp_double);
			p50 = g_array_index(lags, double, lags->len / 2);
			p99 = g_array_index(lags, double, (size_t)(lags->len * 0.99));
		}
		printf("BENCH db-writer rate=%.0f/min image=%dpx keep_accepted=1/%d: "
		       "%" G_GUINT64_FORMAT " rows in %.2f s = %.0f rows/s (%.0f parts/min); "
		       "queue max %zu of %zu; write lag p50 %.2f ms, p99 %.2f ms, max %.2f ms; "
		       "refused (queue full) %" G_GUINT64_FORMAT "; files written %" G_GUINT64_FORMAT
		       ", parts' files dropped %" G_GUINT64_FORMAT "\n",
		       rate, image, keep, n, secs, (double)n / secs, (double)n / secs * 60.0,
		       st.queue_high_water, opt.queue_depth, p50, p99, st.write_lag_max_ms,
		       blocked, st.media_written, st.media_dropped);
	}
	db_close(db);
	g_array_free(lags, TRUE);
	{
		/* Remove what a temporary run left. */
		char *cmd = g_strdup_printf("rm -rf '%s'", dir);

		if (g_str_has_prefix(dir, g_get_tmp_dir()) && system(cmd) != 0)
			fprintf(stderr, "vigil-db-bench: could not remove %s\n", dir);
		g_free(cmd);
	}
	g_free(path);
	g_free(dir);
	return 0;
}
