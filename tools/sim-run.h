/* vigil-sim run: the PLC of a simulated line (vigil-sim.c says what it does
 * for the user, docs/plc.md the handshake it plays). */
#ifndef VIGIL_TOOLS_SIM_RUN_H
#define VIGIL_TOOLS_SIM_RUN_H

/* The strings are borrowed for the call. */
struct sim_run_opts {
	const char *parts_dir;     /* holds parts.csv (vigil-sim generate) */
	const char *host;          /* listen address */
	int port;
	double rate;               /* parts per minute, > 0 */
	int burst;                 /* parts per burst, 0: one at a time */
	int count;                 /* parts to run; <= 0 or more than there are: all */
	int ready_timeout_s;
	int drain_timeout_s;
	const char *results_path;  /* NULL: not written */
	const char *summary_path;  /* NULL: not written */
	const char *db_path;       /* vigild's log to check, NULL: not checked */
};

/* Runs the line on the calling thread: serves the PLC registers, triggers
 * every part, scores the results, prints the summary on stdout and writes
 * the files asked for; messages on stderr start with "vigil-sim". Returns
 * the process's exit code: 0, 2 when a result was lost, duplicated or
 * mislogged, 1 when the run could not start or a file not be written. */
int sim_run(const struct sim_run_opts *o);

#endif
