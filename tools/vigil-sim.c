/* vigil-sim: the simulated line.
 *
 *   vigil-sim generate --out DIR --parts N [--seed S] [--split NAME]
 *       writes synthetic parts with ground truth (tools/sim-synth.h).
 *   vigil-sim run --parts-dir DIR [--port P] [--rate PER_MIN] [--burst N]
 *                 [--count N] [--results CSV] [--summary JSON] [--db FILE]
 *       is the PLC: a Modbus TCP server on loopback that waits for vigild to
 *       report ready, raises one trigger per part at the set rate (each
 *       once vigild has taken the one before, as docs/plc.md asks of a PLC,
 *       so a busy host delays triggers instead of losing them), collects
 *       the results through the handshake and scores them against the
 *       ground truth: escapes, false rejects, missed deadlines, lost and
 *       duplicated results, latency from trigger to result. With --db it
 *       also checks vigild's SQLite log against what the PLC received.
 *       With --burst N the parts come in bursts of N, each trigger as soon
 *       as vigild has taken the one before (status trigger_seen): the
 *       burst's triggers follow at the pace of vigild's PLC polling, not of
 *       a clock, so how they fall against the model's runs does not hang on
 *       the machine's speed. A burst starts once the previous one has all
 *       its results, and no sooner than --rate allows. */
#include <errno.h>
#include <glib.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/part.h"
#include "db/db.h"
#include "plc/plc.h"
#include "tools/sim-plc.h"
#include "tools/sim-synth.h"

struct truth {
	char *part_name;
	char *image_class;
	char *vib_class;
	int defect;
};

struct received {
	int results;
	struct plc_result first;
	int64_t t_result_us;
	int bad_echo;
};

struct sim_run {
	GMutex lock;
	GCond changed;
	unsigned count;
	struct truth *truth;
	int64_t *t_trigger_us;
	uint16_t *trigger_counter;
	struct received *got;
	unsigned results_total;
	unsigned unknown_ids;
};

static int load_truth(const char *dir, struct truth **out, unsigned *n, char **err)
{
	char *path = g_build_filename(dir, "parts.csv", NULL);
	char *text = NULL;
	char **lines = NULL;
	GArray *rows = g_array_new(FALSE, TRUE, sizeof(struct truth));
	GError *gerr = NULL;
	int rc = -EINVAL;

	if (!g_file_get_contents(path, &text, NULL, &gerr)) {
		*err = g_strdup_printf("%s: %s", path, gerr->message);
		g_error_free(gerr);
		goto out;
	}
	lines = g_strsplit(text, "\n", -1);
	if (!lines[0] || !g_str_has_prefix(lines[0], "part_id,split,image,mask,image_class,"
					   "vibration,vib_start,vib_len,vib_class,defect")) {
		*err = g_strdup_printf("%s:1: not a line manifest header", path);
		goto out;
	}
	for (int i = 1; lines[i]; i++) {
		char **f;
		struct truth t;

		g_strstrip(lines[i]);
		if (!lines[i][0])
			continue;
		f = g_strsplit(lines[i], ",", -1);
		if (g_strv_length(f) != 10) {
			*err = g_strdup_printf("%s:%d: expected 10 columns", path, i + 1);
			g_strfreev(f);
			goto out;
		}
		t.part_name = g_strdup(f[0]);
		t.image_class = g_strdup(f[4]);
		t.vib_class = g_strdup(f[8]);
		t.defect = atoi(f[9]) != 0;
		g_array_append_val(rows, t);
		g_strfreev(f);
	}
	*n = rows->len;
	*out = (struct truth *)g_array_free(rows, FALSE);
	rows = NULL;
	rc = 0;
out:
	if (rows) {
		for (guint i = 0; i < rows->len; i++) {
			struct truth *t = &g_array_index(rows, struct truth, i);

			g_free(t->part_name);
			g_free(t->image_class);
			g_free(t->vib_class);
		}
		g_array_free(rows, TRUE);
	}
	g_strfreev(lines);
	g_free(text);
	g_free(path);
	return rc;
}

static void on_result(const struct plc_result *r, int64_t t_us, void *data)
{
	struct sim_run *s = data;

	g_mutex_lock(&s->lock);
	s->results_total++;
	if (r->part_id >= s->count) {
		s->unknown_ids++;
	} else {
		struct received *g = &s->got[r->part_id];

		if (g->results++ == 0) {
			g->first = *r;
			g->t_result_us = t_us;
		}
		if (r->trigger_counter != s->trigger_counter[r->part_id])
			g->bad_echo = 1;
	}
	g_cond_broadcast(&s->changed);
	g_mutex_unlock(&s->lock);
}

/* Waits until parts [from, to) have their first result, up to timeout_s.
 * Returns 0, or -ETIMEDOUT. */
static int wait_results(struct sim_run *s, unsigned from, unsigned to, int timeout_s)
{
	int64_t end = g_get_monotonic_time() + (int64_t)timeout_s * G_USEC_PER_SEC;
	unsigned i = from;
	int rc = 0;

	g_mutex_lock(&s->lock);
	while (i < to) {
		if (s->got[i].results > 0)
			i++;
		else if (!g_cond_wait_until(&s->changed, &s->lock, end) && s->got[i].results == 0) {
			rc = -ETIMEDOUT;
			break;
		}
	}
	g_mutex_unlock(&s->lock);
	return rc;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static double percentile(const double *sorted, size_t n, double q)
{
	size_t k;

	if (n == 0)
		return 0;
	k = (size_t)ceil(q * (double)n) - 1;
	return sorted[MIN(k, n - 1)];
}

struct db_check {
	struct sim_run *run;
	int64_t rows;
	int64_t mismatched;
	int64_t duplicated;
	int64_t unknown;
	int *seen;
};

static int check_row(const struct db_inspection *row, void *data)
{
	struct db_check *c = data;

	c->rows++;
	if (row->part_id >= c->run->count) {
		c->unknown++;
		return 0;
	}
	if (c->seen[row->part_id]++)
		c->duplicated++;
	if (c->run->got[row->part_id].results == 0 ||
	    (int)c->run->got[row->part_id].first.verdict != row->verdict)
		c->mismatched++;
	return 0;
}

static int cmd_run(int argc, char **argv)
{
	char *dir = NULL, *results_path = NULL, *summary_path = NULL, *db_path = NULL;
	char *host = g_strdup("127.0.0.1");
	int port = 1502, count = 0, burst = 0, ready_timeout_s = 120, drain_timeout_s = 20;
	double rate = 600;
	GOptionEntry entries[] = {
		{ "parts-dir", 0, 0, G_OPTION_ARG_FILENAME, &dir, "Generated parts (parts.csv)", "DIR" },
		{ "host", 0, 0, G_OPTION_ARG_STRING, &host, "Listen address (127.0.0.1)", "ADDR" },
		{ "port", 0, 0, G_OPTION_ARG_INT, &port, "Modbus TCP port (1502)", "PORT" },
		{ "rate", 0, 0, G_OPTION_ARG_DOUBLE, &rate, "Parts per minute (600)", "N" },
		{ "burst", 0, 0, G_OPTION_ARG_INT, &burst,
		  "Trigger in bursts of N parts, each as soon as vigild took the one before; "
		  "a burst waits for the previous one's results (0: one part at a time)", "N" },
		{ "count", 0, 0, G_OPTION_ARG_INT, &count, "Parts to run (all)", "N" },
		{ "ready-timeout-s", 0, 0, G_OPTION_ARG_INT, &ready_timeout_s,
		  "Wait this long for vigild to report ready (120)", "S" },
		{ "drain-timeout-s", 0, 0, G_OPTION_ARG_INT, &drain_timeout_s,
		  "Wait this long for the last results, for vigild to take each trigger, and "
		  "with --burst for each burst's results (20)", "S" },
		{ "results", 0, 0, G_OPTION_ARG_FILENAME, &results_path, "Per-part results CSV", "FILE" },
		{ "summary", 0, 0, G_OPTION_ARG_FILENAME, &summary_path, "Summary JSON", "FILE" },
		{ "db", 0, 0, G_OPTION_ARG_FILENAME, &db_path, "vigild's SQLite log to check", "FILE" },
		{ NULL, 0, 0, 0, NULL, NULL, NULL },
	};
	GOptionContext *ctx = g_option_context_new("run - be the PLC of a simulated line");
	struct plc_regmap map = PLC_REGMAP_DEFAULT;
	struct sim_run s = { 0 };
	struct truth *truth = NULL;
	unsigned ntruth = 0;
	sim_plc *plc = NULL;
	GError *gerr = NULL;
	char *err = NULL;
	double *lat = NULL;
	size_t nlat = 0;
	int64_t t0, t_end, t_first = 0, t_last = 0;
	unsigned lost = 0, dup = 0, accepted = 0, rejected = 0, marginal = 0, escapes = 0;
	unsigned false_rejects = 0, failsafe = 0, bad_echo = 0, defective = 0, received = 0;
	struct db_check dbc = { 0 };
	gboolean db_ok = TRUE;
	int rc = 1;

	g_mutex_init(&s.lock);
	g_cond_init(&s.changed);
	g_option_context_add_main_entries(ctx, entries, NULL);
	if (!g_option_context_parse(ctx, &argc, &argv, &gerr)) {
		fprintf(stderr, "vigil-sim run: %s\n", gerr->message);
		g_error_free(gerr);
		goto out;
	}
	if (!dir) {
		fprintf(stderr, "vigil-sim run: --parts-dir is required\n");
		goto out;
	}
	if (!(rate > 0)) {
		fprintf(stderr, "vigil-sim run: --rate must be positive\n");
		goto out;
	}
	if (burst < 0) {
		fprintf(stderr, "vigil-sim run: --burst must be 0 or more\n");
		goto out;
	}
	if (load_truth(dir, &truth, &ntruth, &err) < 0) {
		fprintf(stderr, "vigil-sim run: %s\n", err);
		goto out;
	}
	if (count <= 0 || (unsigned)count > ntruth)
		count = (int)ntruth;
	s.count = (unsigned)count;
	s.truth = truth;
	s.t_trigger_us = g_new0(int64_t, s.count);
	s.trigger_counter = g_new0(uint16_t, s.count);
	s.got = g_new0(struct received, s.count);

	plc = sim_plc_new(host, port, 1, &map, &err);
	if (!plc) {
		fprintf(stderr, "vigil-sim run: %s\n", err ? err : "cannot start the PLC server");
		goto out;
	}
	sim_plc_on_result(plc, on_result, &s);
	fprintf(stderr, "vigil-sim: PLC listening on %s:%d, waiting for vigild to report ready\n",
		host, sim_plc_port(plc));
	t_end = vigil_now_us() + (int64_t)ready_timeout_s * 1000000;
	while (!(sim_plc_status_word(plc, NULL) & PLC_STATUS_READY)) {
		if (vigil_now_us() > t_end) {
			fprintf(stderr, "vigil-sim run: vigild did not report ready within %d s\n",
				ready_timeout_s);
			goto out;
		}
		g_usleep(20000);
	}
	if (burst)
		fprintf(stderr, "vigil-sim: vigild ready; running %u parts in bursts of %d, "
			"at most %.0f parts/min\n", s.count, burst, rate);
	else
		fprintf(stderr, "vigil-sim: vigild ready; running %u parts at %.0f parts/min\n",
			s.count, rate);

	t0 = vigil_now_us();
	for (unsigned i = 0; i < s.count; i++) {
		int64_t due = t0 + (int64_t)((double)i * 60e6 / rate);
		int64_t now;

		if (burst && i % (unsigned)burst != 0) {
			due = 0;  /* within a burst: at the handshake's pace */
		} else if (burst && i > 0 &&
			   wait_results(&s, i - (unsigned)burst, i, drain_timeout_s) < 0) {
			fprintf(stderr, "vigil-sim run: the burst before part %u did not get all "
				"its results within %d s; no more triggers\n", i, drain_timeout_s);
			break;
		} else if (!burst && i > 0 && due < s.t_trigger_us[i - 1] + (int64_t)(30e6 / rate)) {
			/* A conveyor brings parts one at a time: after the
			 * simulator or vigild was descheduled the line catches
			 * up at no more than twice the rate, not in a burst. */
			due = s.t_trigger_us[i - 1] + (int64_t)(30e6 / rate);
		}
		now = vigil_now_us();
		if (due > now)
			g_usleep((gulong)(due - now));
		g_mutex_lock(&s.lock);
		s.t_trigger_us[i] = vigil_now_us();
		s.trigger_counter[i] = sim_plc_trigger(plc, i);
		g_mutex_unlock(&s.lock);
		/* The next trigger only once vigild has taken this one: a
		 * counter that jumps is a missed trigger (docs/plc.md), and the
		 * part skipped a lost result. A vigild descheduled for longer
		 * than the trigger period delays the line instead. */
		if (sim_plc_wait_trigger_seen(plc, s.trigger_counter[i],
					      (int64_t)drain_timeout_s * 1000000) < 0) {
			fprintf(stderr, "vigil-sim run: vigild did not take trigger %u (part %u) "
				"within %d s; no more triggers\n", s.trigger_counter[i], i,
				drain_timeout_s);
			break;
		}
		if ((i + 1) % 100 == 0)
			fprintf(stderr, "vigil-sim: %u parts triggered, %u results\n", i + 1,
				s.results_total);
	}
	t_end = vigil_now_us() + (int64_t)drain_timeout_s * 1000000;
	g_mutex_lock(&s.lock);
	for (;;) {
		unsigned have = 0;

		for (unsigned i = 0; i < s.count; i++)
			have += s.got[i].results > 0;
		if (have == s.count || !g_cond_wait_until(&s.changed, &s.lock, t_end))
			break;
	}
	g_mutex_unlock(&s.lock);
	sim_plc_free(plc);
	plc = NULL;

	lat = g_new0(double, s.count);
	for (unsigned i = 0; i < s.count; i++) {
		struct received *g = &s.got[i];

		defective += truth[i].defect;
		if (g->results == 0) {
			lost++;
			continue;
		}
		received++;
		dup += g->results > 1;
		bad_echo += g->bad_echo;
		lat[nlat++] = (double)(g->t_result_us - s.t_trigger_us[i]) / 1000.0;
		if (!t_first || s.t_trigger_us[i] < t_first)
			t_first = s.t_trigger_us[i];
		if (g->t_result_us > t_last)
			t_last = g->t_result_us;
		if (g->first.flags & VIGIL_FLAG_FAILSAFE)
			failsafe++;
		switch (g->first.verdict) {
		case VIGIL_VERDICT_ACCEPT:
			accepted++;
			escapes += truth[i].defect;
			break;
		case VIGIL_VERDICT_MARGINAL:
			marginal++;
			false_rejects += !truth[i].defect;
			break;
		default:
			rejected++;
			false_rejects += !truth[i].defect;
			break;
		}
	}
	qsort(lat, nlat, sizeof *lat, cmp_double);

	if (db_path) {
		/* vigild commits in batches behind the PLC write: give it time. */
		int64_t deadline = vigil_now_us() + (int64_t)drain_timeout_s * 1000000;
		int64_t n;

		while ((n = db_count_inspections(db_path, &err)) < (int64_t)received &&
		       vigil_now_us() < deadline) {
			free(err);
			err = NULL;
			g_usleep(100000);
		}
		free(err);
		err = NULL;
		dbc.run = &s;
		dbc.seen = g_new0(int, s.count);
		{
			struct db_row_cb cb = { check_row, &dbc };

			if (db_read_inspections(db_path, &cb, &err) < 0) {
				fprintf(stderr, "vigil-sim run: reading %s: %s\n", db_path, err);
				db_ok = FALSE;
			}
		}
	}

	{
		double minutes = t_last > t_first ? (double)(t_last - t_first) / 60e6 : 0;
		double ppm = minutes > 0 ? received / minutes : 0;
		double p50 = percentile(lat, nlat, 0.50), p99 = percentile(lat, nlat, 0.99);

		printf("\nVigil simulated line: %u parts (%u defective)\n", s.count, defective);
		printf("  rate           %.1f parts/min\n", ppm);
		printf("  PLC results    %u (lost %u, duplicated %u, unknown ids %u, bad echo %u)\n",
		       received, lost, dup, s.unknown_ids, bad_echo);
		printf("  verdicts       %u accepted, %u rejected, %u marginal\n", accepted,
		       rejected, marginal);
		printf("  escapes        %u (defective parts accepted)\n", escapes);
		printf("  false rejects  %u (good parts rejected or marginal)\n", false_rejects);
		printf("  fail-safe      %u (missed deadlines or faults)\n", failsafe);
		printf("  latency        p50 %.2f ms, p99 %.2f ms (trigger to PLC result)\n", p50, p99);
		if (db_path)
			printf("  database       %" G_GINT64_FORMAT " rows in %s (%" G_GINT64_FORMAT
			       " disagree with the PLC, %" G_GINT64_FORMAT " duplicated)\n",
			       dbc.rows, db_path, dbc.mismatched, dbc.duplicated);

		if (summary_path) {
			FILE *f = fopen(summary_path, "w");

			if (!f) {
				fprintf(stderr, "vigil-sim run: cannot write %s: %s\n", summary_path,
					g_strerror(errno));
				goto out;
			}
			fprintf(f, "{\n  \"parts\": %u,\n  \"defective\": %u,\n"
				"  \"accepted\": %u,\n  \"rejected\": %u,\n  \"marginal\": %u,\n"
				"  \"escapes\": %u,\n  \"false_rejects\": %u,\n"
				"  \"missed_deadlines\": %u,\n  \"lost\": %u,\n  \"duplicated\": %u,\n"
				"  \"unknown_ids\": %u,\n  \"bad_trigger_echo\": %u,\n"
				"  \"parts_per_min\": %.2f,\n"
				"  \"latency_ms\": { \"p50\": %.3f, \"p99\": %.3f, \"max\": %.3f },\n"
				"  \"plc_results\": %u,\n",
				s.count, defective, accepted, rejected, marginal, escapes,
				false_rejects, failsafe, lost, dup, s.unknown_ids, bad_echo, ppm,
				p50, p99, nlat ? lat[nlat - 1] : 0.0, received);
			if (db_path) {
				char *esc = g_strescape(db_path, NULL);

				fprintf(f, "  \"db_rows\": %" G_GINT64_FORMAT ",\n"
					"  \"db_mismatched\": %" G_GINT64_FORMAT ",\n"
					"  \"db_duplicated\": %" G_GINT64_FORMAT ",\n"
					"  \"db_path\": \"%s\"\n}\n",
					dbc.rows, dbc.mismatched, dbc.duplicated, esc);
				g_free(esc);
			} else {
				fprintf(f, "  \"db_rows\": null\n}\n");
			}
			fclose(f);
		}
	}

	if (results_path) {
		FILE *f = fopen(results_path, "w");

		if (!f) {
			fprintf(stderr, "vigil-sim run: cannot write %s: %s\n", results_path,
				g_strerror(errno));
			goto out;
		}
		fprintf(f, "part_id,part,trigger_counter,results,verdict,defect_class,score,flags,"
			"latency_ms,defect,image_class,vib_class\n");
		for (unsigned i = 0; i < s.count; i++) {
			struct received *g = &s.got[i];

			fprintf(f, "%u,%s,%u,%d,%s,%u,%.3f,%u,%.3f,%d,%s,%s\n", i, truth[i].part_name,
				s.trigger_counter[i], g->results,
				g->results ? vigil_verdict_name(g->first.verdict) : "",
				g->first.defect_class, g->first.score_milli / 1000.0, g->first.flags,
				g->results ? (double)(g->t_result_us - s.t_trigger_us[i]) / 1000.0 : -1.0,
				truth[i].defect, truth[i].image_class, truth[i].vib_class);
		}
		fclose(f);
	}
	rc = (lost == 0 && dup == 0 && s.unknown_ids == 0 && bad_echo == 0 && db_ok &&
	      (!db_path || (dbc.rows == received && dbc.mismatched == 0 && dbc.duplicated == 0)))
		? 0 : 2;
	if (rc)
		fprintf(stderr, "vigil-sim: the line lost, duplicated or mislogged results\n");
out:
	sim_plc_free(plc);
	for (unsigned i = 0; truth && i < ntruth; i++) {
		g_free(truth[i].part_name);
		g_free(truth[i].image_class);
		g_free(truth[i].vib_class);
	}
	g_free(truth);
	g_free(s.t_trigger_us);
	g_free(s.trigger_counter);
	g_free(s.got);
	g_free(dbc.seen);
	g_free(lat);
	g_free(err);
	g_free(dir);
	g_free(host);
	g_free(results_path);
	g_free(summary_path);
	g_free(db_path);
	g_mutex_clear(&s.lock);
	g_cond_clear(&s.changed);
	g_option_context_free(ctx);
	return rc;
}

static int cmd_generate(int argc, char **argv)
{
	char *out = NULL, *split = g_strdup("train"), *err = NULL;
	int parts = 0;
	gint64 seed = 1;
	double p_surface = 0.25, p_vibration = 0.25;
	GOptionEntry entries[] = {
		{ "out", 0, 0, G_OPTION_ARG_FILENAME, &out, "Output directory", "DIR" },
		{ "parts", 0, 0, G_OPTION_ARG_INT, &parts, "Number of parts", "N" },
		{ "seed", 0, 0, G_OPTION_ARG_INT64, &seed, "Random seed (1)", "S" },
		{ "split", 0, 0, G_OPTION_ARG_STRING, &split, "Split column value (train)", "NAME" },
		{ "p-surface", 0, 0, G_OPTION_ARG_DOUBLE, &p_surface, "Surface defect rate (0.25)", "P" },
		{ "p-vibration", 0, 0, G_OPTION_ARG_DOUBLE, &p_vibration,
		  "Bearing fault rate (0.25)", "P" },
		{ NULL, 0, 0, 0, NULL, NULL, NULL },
	};
	GOptionContext *ctx = g_option_context_new("generate - write synthetic parts");
	GError *gerr = NULL;
	int rc = 1;

	g_option_context_add_main_entries(ctx, entries, NULL);
	if (!g_option_context_parse(ctx, &argc, &argv, &gerr)) {
		fprintf(stderr, "vigil-sim generate: %s\n", gerr->message);
		g_error_free(gerr);
		goto out;
	}
	if (!out || parts <= 0) {
		fprintf(stderr, "vigil-sim generate: --out and a positive --parts are required\n");
		goto out;
	}
	{
		struct sim_gen_opts o = { .out_dir = out, .parts = (unsigned)parts,
					  .seed = (uint64_t)seed, .split = split,
					  .p_surface = p_surface, .p_vibration = p_vibration };

		if (sim_generate(&o, &err) < 0) {
			fprintf(stderr, "vigil-sim generate: %s\n", err ? err : "failed");
			goto out;
		}
	}
	fprintf(stderr, "vigil-sim: %d parts written to %s\n", parts, out);
	rc = 0;
out:
	g_free(err);
	g_free(out);
	g_free(split);
	g_option_context_free(ctx);
	return rc;
}

int main(int argc, char **argv)
{
	if (argc >= 2 && strcmp(argv[1], "generate") == 0)
		return cmd_generate(argc - 1, argv + 1);
	if (argc >= 2 && strcmp(argv[1], "run") == 0)
		return cmd_run(argc - 1, argv + 1);
	fprintf(stderr, "usage: vigil-sim generate --out DIR --parts N [--seed S]\n"
			"       vigil-sim run --parts-dir DIR [--port P] [--rate N] [--burst N] [--db FILE]\n"
			"see --help of each command\n");
	return argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) ? 0 : 1;
}
