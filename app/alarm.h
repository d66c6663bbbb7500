/* Quality alarms of the running line: the part stream, judged on a rolling
 * window of parts against a baseline, raises
 *   yield         the window's reject proportion above the p-chart's upper
 *                 control limit: p > p0 + 3 sqrt(p0 (1 - p0) / window),
 *                 p0 the baseline's reject proportion (the window_parts
 *                 ... baseline_parts parts before the window) or
 *                 [alarm] expected_reject_rate; cleared at or below
 *                 p0 + 2 sigma;
 *   class_surge   one defect class's count k in the window improbable under
 *                 its baseline rate: Poisson P(X >= k; lambda) < surge_p,
 *                 lambda = window * max(baseline count, 1) / baseline
 *                 parts; cleared once that tail is 0.05 or more;
 *   model_change  the first full window after the model version changed
 *                 has a reject + marginal proportion more than
 *                 model_change_factor times that of the parts before the
 *                 change and above their p0 + 3 sigma; cleared at or below
 *                 p0 + 2 sigma, or by the next change.
 * Proportions of the baseline are floored at one part in its size, so a
 * line that made no reject for a while does not alarm on the next one.
 * While yield or class_surge is raised the baseline is frozen as it was,
 * so that the bad parts do not become the reference. Alarms never change a
 * verdict.
 *
 * A monitor belongs to one thread (vigild: the PLC thread, which sees each
 * result as the PLC gets it); nothing in it is locked. */
#ifndef VIGIL_APP_ALARM_H
#define VIGIL_APP_ALARM_H

#include <stdint.h>

#include "core/config.h"

enum alarm_kind { ALARM_YIELD, ALARM_CLASS_SURGE, ALARM_MODEL_CHANGE, ALARM_KINDS };

/* Static names: "yield", "class_surge", "model_change" (/metrics labels,
 * /api/status), and the events that raise them: "alarm-yield",
 * "alarm-class-surge", "alarm-model-change". The clearing event is
 * "alarm-clear" for all. */
const char *alarm_kind_name(enum alarm_kind k);
const char *alarm_event_kind(enum alarm_kind k);

/* [alarm]. */
struct alarm_settings {
	int enabled;                  /* enabled (true) */
	int window_parts;             /* window_parts (200) */
	int baseline_parts;           /* baseline_parts (2000, at least window_parts) */
	double expected_reject_rate;  /* expected_reject_rate (0: the baseline's) */
	double surge_p;               /* surge_p (0.001) */
	double model_change_factor;   /* model_change_factor (2) */
};
#define ALARM_SETTINGS_DEFAULT { 1, 200, 2000, 0.0, 0.001, 2.0 }

/* Reads [alarm] of cfg (absent: the defaults): 0, or -EINVAL with *err
 * (g_free) naming the file, line and key. */
int alarm_settings_read(const config *cfg, struct alarm_settings *s, char **err);

/* An alarm raised or cleared by a part. */
struct alarm_change {
	enum alarm_kind kind;
	int raised;                   /* 1 raised, 0 cleared */
	char message[256];            /* the figures, for the event and the log */
};

typedef struct alarm_monitor alarm_monitor;

/* A monitor with copies of the settings; a disabled one raises nothing. */
alarm_monitor *alarm_monitor_new(const struct alarm_settings *s);
void alarm_monitor_free(alarm_monitor *m);   /* NULL ok */

/* One part as the PLC got it: verdict (enum vigil_verdict), defect class
 * (enum vigil_defect_class) and what judged it, compared as a string
 * (vigild: the model version and job; NULL: no model ran, no change;
 * copied when it changes). Writes what it raised or cleared to
 * changes and returns how many (0 .. ALARM_KINDS). */
int alarm_monitor_add(alarm_monitor *m, int verdict, int defect_class,
		      const char *model_version, int64_t t_wall_us,
		      struct alarm_change changes[ALARM_KINDS]);

/* The raised alarms, 1u << enum alarm_kind each. */
unsigned alarm_monitor_active(const alarm_monitor *m);
/* When alarm k was raised (the wall clock of the part that raised it), 0
 * when it is not. */
int64_t alarm_monitor_since(const alarm_monitor *m, enum alarm_kind k);

#endif
