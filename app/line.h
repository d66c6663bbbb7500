/* The inspection line inside vigild: reads the configuration, builds the
 * stages and moves part records between them through bounded queues.
 *
 *   plc thread --q_inspect--> inspect thread --q_results--> plc thread
 *   plc thread --q_log--> log thread --> db writer
 *
 * The PLC thread owns the Modbus link and every decision sent to the PLC,
 * including the fail-safe reject at the deadline; the log thread is the
 * only one that may wait on the database, so a slow disk never delays a
 * PLC write. */
#ifndef VIGIL_APP_LINE_H
#define VIGIL_APP_LINE_H

#include <stdint.h>

#include "core/config.h"

typedef struct line line;

/* Reads every setting and builds every stage; NULL with *err (g_free) on
 * any configuration or start-up error. */
line *line_new(const config *cfg, char **err);
int line_start(line *l, char **err);
/* Stops taking triggers, finishes the parts in flight (up to grace_ms),
 * writes their results and log rows, and stops every stage. */
void line_stop(line *l, int grace_ms);
void line_free(line *l);

struct line_stats {
	uint64_t triggers, missed_triggers, inspected, results_written;
	uint64_t failsafe, rows_logged, rows_failed;
	uint64_t accepted, rejected, marginal;
};
void line_get_stats(line *l, struct line_stats *st);

#endif
