/* vigil-sim run's scoring: the PLC's results against the parts' truth and
 * against vigild's log, the summary and the per-part CSV
 * (sim-run-private.h). */
#include <errno.h>
#include <glib.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "core/part.h"
#include "db/db.h"
#include "tools/sim-run-private.h"

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

/* Counts one received part's verdict; a marginal counts as a reject. */
static void tally_verdict(struct sim_score *sc, const struct sim_received *g, int defect)
{
	if (g->first.flags & VIGIL_FLAG_FAILSAFE)
		sc->failsafe++;
	switch (g->first.verdict) {
	case VIGIL_VERDICT_ACCEPT:
		sc->accepted++;
		sc->escapes += defect;
		break;
	case VIGIL_VERDICT_MARGINAL:
		sc->marginal++;
		sc->false_rejects += !defect;
		break;
	default:
		sc->rejected++;
		sc->false_rejects += !defect;
		break;
	}
}

void sim_score_tally(const struct sim_line *s, struct sim_score *sc)
{
	int64_t t_first = 0, t_last = 0;
	double minutes;

	sc->lat = g_new0(double, s->count);
	for (unsigned i = 0; i < s->count; i++) {
		const struct sim_received *g = &s->got[i];

		sc->defective += s->truth[i].defect;
		if (g->results == 0) {
			sc->lost++;
			continue;
		}
		sc->received++;
		sc->dup += g->results > 1;
		sc->bad_echo += g->bad_echo;
		sc->lat[sc->nlat++] = (double)(g->t_result_us - s->t_trigger_us[i]) / 1000.0;
		if (!t_first || s->t_trigger_us[i] < t_first)
			t_first = s->t_trigger_us[i];
		if (g->t_result_us > t_last)
			t_last = g->t_result_us;
		tally_verdict(sc, g, s->truth[i].defect);
	}
	qsort(sc->lat, sc->nlat, sizeof *sc->lat, cmp_double);
	minutes = t_last > t_first ? (double)(t_last - t_first) / 60e6 : 0;
	sc->parts_per_min = minutes > 0 ? sc->received / minutes : 0;
	sc->p50_ms = percentile(sc->lat, sc->nlat, 0.50);
	sc->p99_ms = percentile(sc->lat, sc->nlat, 0.99);
}

void sim_score_clear(struct sim_score *sc)
{
	g_free(sc->lat);
	sc->lat = NULL;
}

static int check_row(const struct db_inspection *row, void *data)
{
	struct sim_db_check *c = data;

	c->rows++;
	if (row->part_id >= c->line->count) {
		c->unknown++;
		return 0;
	}
	if (c->seen[row->part_id]++)
		c->duplicated++;
	if (c->line->got[row->part_id].results == 0 ||
	    (int)c->line->got[row->part_id].first.verdict != row->verdict)
		c->mismatched++;
	return 0;
}

void sim_db_check_run(const struct sim_line *s, const char *db_path, unsigned received,
		      int drain_timeout_s, struct sim_db_check *c)
{
	int64_t deadline = vigil_now_us() + (int64_t)drain_timeout_s * 1000000;
	struct db_row_cb cb = { check_row, c };
	char *err = NULL;

	while (db_count_inspections(db_path, &err) < (int64_t)received &&
	       vigil_now_us() < deadline) {
		free(err);
		err = NULL;
		g_usleep(100000);
	}
	free(err);
	err = NULL;
	c->line = s;
	c->seen = g_new0(int, s->count);
	if (db_read_inspections(db_path, &cb, &err) < 0) {
		fprintf(stderr, "vigil-sim run: reading %s: %s\n", db_path, err);
		c->ok = FALSE;
	}
	g_free(err);
}

void sim_db_check_clear(struct sim_db_check *c)
{
	g_free(c->seen);
	c->seen = NULL;
}

/* fopen for writing, saying on stderr why not. */
static FILE *create_file(const char *path)
{
	FILE *f = fopen(path, "w");

	if (!f)
		fprintf(stderr, "vigil-sim run: cannot write %s: %s\n", path, g_strerror(errno));
	return f;
}

void sim_report_print(const struct sim_run_opts *o, const struct sim_line *s,
		      const struct sim_score *sc, const struct sim_db_check *c)
{
	printf("\nVigil simulated line: %u parts (%u defective)\n", s->count, sc->defective);
	printf("  rate           %.1f parts/min\n", sc->parts_per_min);
	printf("  PLC results    %u (lost %u, duplicated %u, unknown ids %u, bad echo %u)\n",
	       sc->received, sc->lost, sc->dup, s->unknown_ids, sc->bad_echo);
	printf("  verdicts       %u accepted, %u rejected, %u marginal\n", sc->accepted,
	       sc->rejected, sc->marginal);
	printf("  escapes        %u (defective parts accepted)\n", sc->escapes);
	printf("  false rejects  %u (good parts rejected or marginal)\n", sc->false_rejects);
	printf("  fail-safe      %u (missed deadlines or faults)\n", sc->failsafe);
	printf("  latency        p50 %.2f ms, p99 %.2f ms (trigger to PLC result)\n", sc->p50_ms,
	       sc->p99_ms);
	if (o->db_path)
		printf("  database       %" G_GINT64_FORMAT " rows in %s (%" G_GINT64_FORMAT
		       " disagree with the PLC, %" G_GINT64_FORMAT " duplicated)\n",
		       c->rows, o->db_path, c->mismatched, c->duplicated);
}

int sim_report_write_summary(const struct sim_run_opts *o, const struct sim_line *s,
			     const struct sim_score *sc, const struct sim_db_check *c)
{
	FILE *f = create_file(o->summary_path);

	if (!f)
		return -EIO;
	fprintf(f, "{\n  \"parts\": %u,\n  \"defective\": %u,\n"
		"  \"accepted\": %u,\n  \"rejected\": %u,\n  \"marginal\": %u,\n"
		"  \"escapes\": %u,\n  \"false_rejects\": %u,\n"
		"  \"missed_deadlines\": %u,\n  \"lost\": %u,\n  \"duplicated\": %u,\n"
		"  \"unknown_ids\": %u,\n  \"bad_trigger_echo\": %u,\n"
		"  \"parts_per_min\": %.2f,\n"
		"  \"latency_ms\": { \"p50\": %.3f, \"p99\": %.3f, \"max\": %.3f },\n"
		"  \"plc_results\": %u,\n",
		s->count, sc->defective, sc->accepted, sc->rejected, sc->marginal, sc->escapes,
		sc->false_rejects, sc->failsafe, sc->lost, sc->dup, s->unknown_ids, sc->bad_echo,
		sc->parts_per_min, sc->p50_ms, sc->p99_ms, sc->nlat ? sc->lat[sc->nlat - 1] : 0.0,
		sc->received);
	if (o->db_path) {
		char *esc = g_strescape(o->db_path, NULL);

		fprintf(f, "  \"db_rows\": %" G_GINT64_FORMAT ",\n"
			"  \"db_mismatched\": %" G_GINT64_FORMAT ",\n"
			"  \"db_duplicated\": %" G_GINT64_FORMAT ",\n"
			"  \"db_path\": \"%s\"\n}\n",
			c->rows, c->mismatched, c->duplicated, esc);
		g_free(esc);
	} else {
		fprintf(f, "  \"db_rows\": null\n}\n");
	}
	fclose(f);
	return 0;
}

int sim_report_write_results(const struct sim_run_opts *o, const struct sim_line *s)
{
	FILE *f = create_file(o->results_path);

	if (!f)
		return -EIO;
	fprintf(f, "part_id,part,trigger_counter,results,verdict,defect_class,score,flags,"
		"latency_ms,defect,image_class,vib_class\n");
	for (unsigned i = 0; i < s->count; i++) {
		const struct sim_received *g = &s->got[i];
		const struct sim_truth *t = &s->truth[i];

		fprintf(f, "%u,%s,%u,%d,%s,%u,%.3f,%u,%.3f,%d,%s,%s\n", i, t->part_name,
			s->trigger_counter[i], g->results,
			g->results ? vigil_verdict_name(g->first.verdict) : "",
			g->first.defect_class, g->first.score_milli / 1000.0, g->first.flags,
			g->results ? (double)(g->t_result_us - s->t_trigger_us[i]) / 1000.0 : -1.0,
			t->defect, t->image_class, t->vib_class);
	}
	fclose(f);
	return 0;
}

gboolean sim_report_clean(const struct sim_run_opts *o, const struct sim_line *s,
			  const struct sim_score *sc, const struct sim_db_check *c)
{
	return sc->lost == 0 && sc->dup == 0 && s->unknown_ids == 0 && sc->bad_echo == 0 &&
	       c->ok && (!o->db_path || (c->rows == sc->received && c->mismatched == 0 &&
					 c->duplicated == 0));
}
