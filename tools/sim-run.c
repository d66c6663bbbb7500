/* vigil-sim run's PLC side: the parts' truth, the Modbus server, the
 * trigger pacing and the wait for the last results (sim-run.h). */
#include <errno.h>
#include <glib.h>
#include <stdio.h>
#include <stdlib.h>

#include "core/part.h"
#include "tools/sim-plc.h"
#include "tools/sim-run-private.h"

static void free_truth(struct sim_truth *t)
{
	g_free(t->part_name);
	g_free(t->image_class);
	g_free(t->vib_class);
}

/* Reads dir/parts.csv. Returns 0, or -EINVAL with *err (g_free) naming
 * file and line. */
static int load_truth(const char *dir, struct sim_truth **out, unsigned *n, char **err)
{
	char *path = g_build_filename(dir, "parts.csv", NULL);
	char *text = NULL;
	char **lines = NULL;
	GArray *rows = g_array_new(FALSE, TRUE, sizeof(struct sim_truth));
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
		struct sim_truth t;

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
	*out = (struct sim_truth *)g_array_free(rows, FALSE);
	rows = NULL;
	rc = 0;
out:
	if (rows) {
		for (guint i = 0; i < rows->len; i++)
			free_truth(&g_array_index(rows, struct sim_truth, i));
		g_array_free(rows, TRUE);
	}
	g_strfreev(lines);
	g_free(text);
	g_free(path);
	return rc;
}

/* Loads the truth and sizes the run: o->count parts, all when it is not
 * in 1..the parts there are. Returns 0, or -EINVAL after saying why;
 * sim_line_clear either way. */
static int sim_line_init(struct sim_line *s, const struct sim_run_opts *o)
{
	char *err = NULL;

	*s = (struct sim_line){ 0 };
	g_mutex_init(&s->lock);
	g_cond_init(&s->changed);
	if (load_truth(o->parts_dir, &s->truth, &s->ntruth, &err) < 0) {
		fprintf(stderr, "vigil-sim run: %s\n", err);
		g_free(err);
		return -EINVAL;
	}
	s->count = o->count <= 0 || (unsigned)o->count > s->ntruth ? s->ntruth
								    : (unsigned)o->count;
	s->t_trigger_us = g_new0(int64_t, s->count);
	s->trigger_counter = g_new0(uint16_t, s->count);
	s->got = g_new0(struct sim_received, s->count);
	return 0;
}

static void sim_line_clear(struct sim_line *s)
{
	for (unsigned i = 0; s->truth && i < s->ntruth; i++)
		free_truth(&s->truth[i]);
	g_free(s->truth);
	g_free(s->t_trigger_us);
	g_free(s->trigger_counter);
	g_free(s->got);
	g_mutex_clear(&s->lock);
	g_cond_clear(&s->changed);
}

/* The PLC server thread's result callback. */
static void on_result(const struct plc_result *r, int64_t t_us, void *data)
{
	struct sim_line *s = data;

	g_mutex_lock(&s->lock);
	s->results_total++;
	if (r->part_id >= s->count) {
		s->unknown_ids++;
	} else {
		struct sim_received *g = &s->got[r->part_id];

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
static int wait_results(struct sim_line *s, unsigned from, unsigned to, int timeout_s)
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

/* Starts the PLC server and waits for vigild to report ready. Returns the
 * server (sim_plc_free), or NULL after saying why. */
static sim_plc *start_plc(const struct sim_run_opts *o, struct sim_line *s)
{
	struct plc_regmap map = PLC_REGMAP_DEFAULT;
	char *err = NULL;
	sim_plc *plc = sim_plc_new(o->host, o->port, 1, &map, &err);
	int64_t t_end;

	if (!plc) {
		fprintf(stderr, "vigil-sim run: %s\n", err ? err : "cannot start the PLC server");
		g_free(err);
		return NULL;
	}
	sim_plc_on_result(plc, on_result, s);
	fprintf(stderr, "vigil-sim: PLC listening on %s:%d, waiting for vigild to report ready\n",
		o->host, sim_plc_port(plc));
	t_end = vigil_now_us() + (int64_t)o->ready_timeout_s * 1000000;
	while (!(sim_plc_status_word(plc, NULL) & PLC_STATUS_READY)) {
		if (vigil_now_us() > t_end) {
			fprintf(stderr, "vigil-sim run: vigild did not report ready within %d s\n",
				o->ready_timeout_s);
			sim_plc_free(plc);
			return NULL;
		}
		g_usleep(20000);
	}
	if (o->burst)
		fprintf(stderr, "vigil-sim: vigild ready; running %u parts in bursts of %d, "
			"at most %.0f parts/min\n", s->count, o->burst, o->rate);
	else
		fprintf(stderr, "vigil-sim: vigild ready; running %u parts at %.0f parts/min\n",
			s->count, o->rate);
	return plc;
}

/* When part i's trigger is due (vigil_now_us; 0: at once), the run having
 * started at t0. Returns -ETIMEDOUT after saying why when the burst before
 * it did not get its results: no more triggers then. */
static int trigger_due(const struct sim_run_opts *o, struct sim_line *s, unsigned i,
		       int64_t t0, int64_t *due)
{
	unsigned burst = (unsigned)o->burst;
	int64_t gap_us = (int64_t)(30e6 / o->rate);

	*due = t0 + (int64_t)((double)i * 60e6 / o->rate);
	if (burst && i % burst != 0) {
		*due = 0;  /* within a burst: at the handshake's pace */
	} else if (burst && i > 0 && wait_results(s, i - burst, i, o->drain_timeout_s) < 0) {
		fprintf(stderr, "vigil-sim run: the burst before part %u did not get all "
			"its results within %d s; no more triggers\n", i, o->drain_timeout_s);
		return -ETIMEDOUT;
	} else if (!burst && i > 0 && *due < s->t_trigger_us[i - 1] + gap_us) {
		/* A conveyor brings parts one at a time: after the
		 * simulator or vigild was descheduled the line catches
		 * up at no more than twice the rate, not in a burst. */
		*due = s->t_trigger_us[i - 1] + gap_us;
	}
	return 0;
}

/* Raises one trigger per part at its due time, each once vigild has taken
 * the one before; stops early, having said why, when vigild falls behind
 * by more than the drain timeout. */
static void trigger_parts(const struct sim_run_opts *o, struct sim_line *s, sim_plc *plc)
{
	int64_t t0 = vigil_now_us();

	for (unsigned i = 0; i < s->count; i++) {
		int64_t due, now;

		if (trigger_due(o, s, i, t0, &due) < 0)
			break;
		now = vigil_now_us();
		if (due > now)
			g_usleep((gulong)(due - now));
		g_mutex_lock(&s->lock);
		s->t_trigger_us[i] = vigil_now_us();
		s->trigger_counter[i] = sim_plc_trigger(plc, i);
		g_mutex_unlock(&s->lock);
		/* The next trigger only once vigild has taken this one: a
		 * counter that jumps is a missed trigger (docs/plc.md), and the
		 * part skipped a lost result. A vigild descheduled for longer
		 * than the trigger period delays the line instead. */
		if (sim_plc_wait_trigger_seen(plc, s->trigger_counter[i],
					      (int64_t)o->drain_timeout_s * 1000000) < 0) {
			fprintf(stderr, "vigil-sim run: vigild did not take trigger %u (part %u) "
				"within %d s; no more triggers\n", s->trigger_counter[i], i,
				o->drain_timeout_s);
			break;
		}
		if ((i + 1) % 100 == 0)
			fprintf(stderr, "vigil-sim: %u parts triggered, %u results\n", i + 1,
				s->results_total);
	}
}

/* Waits up to timeout_s for every part to have a result. */
static void drain_results(struct sim_line *s, int timeout_s)
{
	int64_t t_end = vigil_now_us() + (int64_t)timeout_s * 1000000;

	g_mutex_lock(&s->lock);
	for (;;) {
		unsigned have = 0;

		for (unsigned i = 0; i < s->count; i++)
			have += s->got[i].results > 0;
		if (have == s->count || !g_cond_wait_until(&s->changed, &s->lock, t_end))
			break;
	}
	g_mutex_unlock(&s->lock);
}

int sim_run(const struct sim_run_opts *o)
{
	struct sim_line s;
	struct sim_score sc = { 0 };
	struct sim_db_check dbc = { .ok = TRUE };
	sim_plc *plc = NULL;
	int rc = 1;

	if (sim_line_init(&s, o) < 0 || !(plc = start_plc(o, &s)))
		goto out;
	trigger_parts(o, &s, plc);
	drain_results(&s, o->drain_timeout_s);
	/* A PLC stays on the line: leaving as soon as the last result came
	 * would leave vigild no poll in which to read its acknowledge, and it
	 * would stop saying that result was never taken (plc-stop). */
	if (sim_plc_wait_ack_seen(plc, (int64_t)o->drain_timeout_s * 1000000) < 0)
		fprintf(stderr, "vigil-sim: vigild did not take the last result down within %d s "
			"of its acknowledge\n", o->drain_timeout_s);
	sim_plc_free(plc);
	plc = NULL;

	sim_score_tally(&s, &sc);
	if (o->db_path)
		sim_db_check_run(&s, o->db_path, sc.received, o->drain_timeout_s, &dbc);
	sim_report_print(o, &s, &sc, &dbc);
	if ((o->summary_path && sim_report_write_summary(o, &s, &sc, &dbc) < 0) ||
	    (o->results_path && sim_report_write_results(o, &s) < 0))
		goto out;
	rc = sim_report_clean(o, &s, &sc, &dbc) ? 0 : 2;
	if (rc)
		fprintf(stderr, "vigil-sim: the line lost, duplicated or mislogged results\n");
out:
	sim_plc_free(plc);
	sim_db_check_clear(&dbc);
	sim_score_clear(&sc);
	sim_line_clear(&s);
	return rc;
}
