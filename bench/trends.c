/* What /api/trends costs on a big log: generates a log of N rows spread
 * evenly over DAYS days (through db_submit, as vigild writes it; or reuses
 * --db), then times db_count_buckets over the whole span by hour, by day
 * and over the last week by hour, and prints the figures and the
 * process's peak memory. bench/trends.sh runs it; docs/operations.md
 * quotes its output. Figures, never a pass or fail.
 *
 * usage: vigil-trends-bench [--rows N] [--days D] [--db FILE] [--keep] */
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>

#include <glib.h>
#include <glib/gstdio.h>

#include "core/part.h"
#include "db/db.h"

static double time_buckets(const char *path, int64_t from_us, int64_t width_us, size_t n,
			   int64_t *parts)
{
	int64_t *edges = g_new(int64_t, n + 1);
	struct db_bucket_counts *out = g_new(struct db_bucket_counts, n);
	char *err = NULL;
	int64_t t0;
	double ms;

	for (size_t i = 0; i <= n; i++)
		edges[i] = from_us + (int64_t)i * width_us;
	t0 = g_get_monotonic_time();
	if (db_count_buckets(path, edges, n, out, &err) < 0) {
		fprintf(stderr, "%s\n", err);
		exit(1);
	}
	ms = (double)(g_get_monotonic_time() - t0) / 1000.0;
	*parts = 0;
	for (size_t i = 0; i < n; i++)
		*parts += out[i].parts;
	g_free(edges);
	g_free(out);
	return ms;
}

int main(int argc, char **argv)
{
	int rows = 1000000, days = 365;
	gboolean keep = FALSE;
	char *path = NULL, *dir = NULL;
	GOptionEntry entries[] = {
		{ "rows", 0, 0, G_OPTION_ARG_INT, &rows, "Rows to generate", "N" },
		{ "days", 0, 0, G_OPTION_ARG_INT, &days, "Days they span", "D" },
		{ "db", 0, 0, G_OPTION_ARG_FILENAME, &path, "Use this log (generated if missing)", "FILE" },
		{ "keep", 0, 0, G_OPTION_ARG_NONE, &keep, "Keep the generated log", NULL },
		{ NULL, 0, 0, 0, NULL, NULL, NULL },
	};
	GOptionContext *ctx = g_option_context_new("- the cost of trend buckets");
	const int64_t hour = 3600LL * 1000000, day = 24 * hour;
	int64_t end_us = (vigil_wall_us() / hour) * hour, start_us = end_us - days * day;
	int64_t parts;
	struct rusage ru;
	double ms;

	g_option_context_add_main_entries(ctx, entries, NULL);
	if (!g_option_context_parse(ctx, &argc, &argv, NULL) || rows <= 0 || days <= 0)
		return 2;
	g_option_context_free(ctx);
	if (!path) {
		dir = g_dir_make_tmp("vigil-trends-XXXXXX", NULL);
		path = g_build_filename(dir, "log.db", NULL);
	}
	if (!g_file_test(path, G_FILE_TEST_EXISTS)) {
		char *err = NULL;
		db_log *db = db_open(path, 4096, &err);
		int64_t t0 = g_get_monotonic_time();

		if (!db) {
			fprintf(stderr, "%s\n", err);
			return 1;
		}
		for (int i = 0; i < rows; i++) {
			uint32_t h = (uint32_t)i * 2654435761u;
			struct db_inspection r = {
				.part_id = (uint32_t)i + 1,
				.seq = (uint64_t)i + 1,
				.t_wall_us = start_us + (int64_t)((double)i / rows * (double)(days * day)),
				/* 4 % rejects, 2 % marginal, classes spread */
				.verdict = h % 100 < 4 ? VIGIL_VERDICT_REJECT
					 : h % 100 < 6 ? VIGIL_VERDICT_MARGINAL : VIGIL_VERDICT_ACCEPT,
				.score = 0.1, .vision_score = 0.1, .signal_score = 0.1,
				.latency_ms = 5, .infer_ms = 3, .model_version = "bench-1",
			};

			r.defect_class = r.verdict == VIGIL_VERDICT_ACCEPT ? 0 : 1 + (int)(h >> 8) % 3;
			db_submit(db, &r);
		}
		db_close(db);
		printf("generated %d rows over %d days in %.1f s\n", rows, days,
		       (double)(g_get_monotonic_time() - t0) / 1e6);
	}
	ms = time_buckets(path, start_us, hour, (size_t)days * 24, &parts);
	printf("%d days by hour (%d buckets, %" G_GINT64_FORMAT " parts): %.0f ms\n", days,
	       days * 24, parts, ms);
	ms = time_buckets(path, start_us, day, (size_t)days, &parts);
	printf("%d days by day (%d buckets, %" G_GINT64_FORMAT " parts): %.0f ms\n", days, days,
	       parts, ms);
	ms = time_buckets(path, end_us - 7 * day, hour, 7 * 24, &parts);
	printf("last 7 days by hour (168 buckets, %" G_GINT64_FORMAT " parts): %.0f ms\n", parts,
	       ms);
	getrusage(RUSAGE_SELF, &ru);
	printf("peak memory (whole process): %ld MiB\n", ru.ru_maxrss / 1024);
	if (dir && !keep) {
		char *wal = g_strconcat(path, "-wal", NULL), *shm = g_strconcat(path, "-shm", NULL);
		char *media = g_strconcat(path, ".media", NULL);

		g_remove(path);
		g_remove(wal);
		g_remove(shm);
		g_rmdir(media);
		g_rmdir(dir);
		g_free(wal);
		g_free(shm);
		g_free(media);
	} else {
		printf("log kept: %s\n", path);
	}
	return 0;
}
