/* vigild's word to systemd (sd_notify(3), a Type=notify service): the one
 * place vigild talks to its service manager.
 *
 *   READY=1     once the line is ready (line_get_progress: every source
 *               delivers and the PLC link was tried), or at once for the
 *               review page alone;
 *   STATUS=     a one-line summary (rate, parts, faults) every
 *               NOTIFY_STATUS_PERIOD_MS;
 *   WATCHDOG=1  at half the watchdog interval, but only while every thread
 *               of the line makes progress: a heartbeat older than the
 *               interval stops the pings, and systemd restarts vigild;
 *   STOPPING=1  when a stop begins.
 *
 * Without NOTIFY_SOCKET in the environment, or built without libsystemd,
 * notify_new returns NULL and every call below does nothing: vigild runs
 * as it does from a shell. Main thread only: the timers run in the default
 * GLib main context. */
#ifndef VIGIL_APP_NOTIFY_H
#define VIGIL_APP_NOTIFY_H

#include "app/line.h"

#define NOTIFY_STATUS_PERIOD_MS 2000

typedef struct notify notify;

/* NULL when nobody listens (see above); a bad WATCHDOG_USEC is logged and
 * the watchdog left off. */
notify *notify_new(void);
void notify_free(notify *n);  /* NULL ok; removes its timers */

/* Starts the timers once the line has started (line_start succeeded); l
 * must outlive them (notify_stopping or notify_free first). l NULL: the
 * review page alone (--review-only), ready now, the watchdog pinged while
 * the main loop runs. */
void notify_start(notify *n, line *l);

/* The stop begins (before line_stop): STOPPING=1 and the timers end. */
void notify_stopping(notify *n);

#endif
