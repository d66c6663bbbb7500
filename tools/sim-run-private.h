/* Between the two halves of vigil-sim run: sim-run.c plays the PLC and
 * paces the parts, sim-report.c scores what came back and writes it. */
#ifndef VIGIL_TOOLS_SIM_RUN_PRIVATE_H
#define VIGIL_TOOLS_SIM_RUN_PRIVATE_H

#include <glib.h>
#include <stdint.h>

#include "plc/plc.h"
#include "tools/sim-run.h"

/* One row of parts.csv: what the part really is. */
struct sim_truth {
	char *part_name;
	char *image_class;
	char *vib_class;
	int defect;
};

/* What the PLC received for one part. */
struct sim_received {
	int results;
	struct plc_result first;
	int64_t t_result_us;       /* vigil_now_us of the first result */
	int bad_echo;              /* a result echoed another trigger counter */
};

/* The run's state. lock guards got, results_total and unknown_ids, written
 * by the PLC server thread's result callback, and the trigger loop's
 * t_trigger_us and trigger_counter, which the callback reads; changed is
 * signalled on every result. Once the PLC is freed one thread owns it all. */
struct sim_line {
	GMutex lock;
	GCond changed;
	unsigned count;            /* parts run, entries in the arrays below */
	struct sim_truth *truth;   /* ntruth rows, owned */
	unsigned ntruth;
	int64_t *t_trigger_us;
	uint16_t *trigger_counter;
	struct sim_received *got;
	unsigned results_total;
	unsigned unknown_ids;      /* results for part ids never triggered */
};

/* The results scored against the truth, with sim_score_tally. */
struct sim_score {
	unsigned defective, received, lost, dup, bad_echo;
	unsigned accepted, rejected, marginal;
	unsigned escapes, false_rejects, failsafe;
	double *lat;               /* trigger to result in ms, sorted, nlat of them; owned */
	size_t nlat;
	double parts_per_min;      /* over the first trigger to the last result */
	double p50_ms, p99_ms;
};

/* vigild's SQLite log against what the PLC received. */
struct sim_db_check {
	const struct sim_line *line;
	int64_t rows;
	int64_t mismatched;        /* verdict differs from the PLC's, or no PLC result */
	int64_t duplicated;
	int64_t unknown;
	int *seen;                 /* rows per part id, count entries; owned */
	gboolean ok;               /* the log could be read */
};

/* Fills *sc from s (quiet, the PLC stopped). sim_score_clear frees it. */
void sim_score_tally(const struct sim_line *s, struct sim_score *sc);
void sim_score_clear(struct sim_score *sc);

/* Waits up to drain_timeout_s for the log to hold received rows (vigild
 * commits in batches behind the PLC write), then reads every row into *c.
 * A log that cannot be read is said on stderr and leaves c->ok FALSE.
 * sim_db_check_clear frees it. */
void sim_db_check_run(const struct sim_line *s, const char *db_path, unsigned received,
		      int drain_timeout_s, struct sim_db_check *c);
void sim_db_check_clear(struct sim_db_check *c);

/* The summary on stdout; c is read only when o->db_path is set. */
void sim_report_print(const struct sim_run_opts *o, const struct sim_line *s,
		      const struct sim_score *sc, const struct sim_db_check *c);

/* The summary JSON at o->summary_path and the per-part CSV at
 * o->results_path. Return 0, or -EIO after saying why on stderr. */
int sim_report_write_summary(const struct sim_run_opts *o, const struct sim_line *s,
			     const struct sim_score *sc, const struct sim_db_check *c);
int sim_report_write_results(const struct sim_run_opts *o, const struct sim_line *s);

/* Whether the line kept every result: none lost, duplicated or mislogged. */
gboolean sim_report_clean(const struct sim_run_opts *o, const struct sim_line *s,
			  const struct sim_score *sc, const struct sim_db_check *c);

#endif
