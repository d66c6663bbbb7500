/* vigild under systemd: READY, STATUS, the watchdog and STOPPING
 * (app/notify.h), through libsystemd's sd_notify. */
#include "app/notify.h"

#include <stdint.h>
#include <stdio.h>

#include <glib.h>
#if VIGIL_HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#endif

#include "app/alarm.h"
#include "core/part.h"

/* How often the main loop looks whether the line became ready: READY=1
 * is what `systemctl start` waits for. */
#define READY_POLL_MS 100
/* The rate in STATUS= is over the last minute of samples, one per
 * STATUS period (fewer just after the start). */
#define RATE_SAMPLES (60000 / NOTIFY_STATUS_PERIOD_MS + 1)

struct notify {
	line *l;                  /* NULL: the review page alone */
	guint ready_id, status_id, watchdog_id;
	int64_t watchdog_us;      /* WATCHDOG_USEC; 0: no watchdog */
	gboolean stalled;         /* pings held back for a stalled thread */
	gboolean send_failed;     /* said once */
	struct {
		int64_t t_us;
		uint64_t inspected;
	} rate[RATE_SAMPLES];     /* a ring, oldest at rate_first */
	int rate_first, rate_count;
};

#if VIGIL_HAVE_SYSTEMD

static void send_state(notify *n, const char *state)
{
	/* sd_notify: negative errno on failure, 0 when nobody listens. */
	int rc = sd_notify(0, state);

	if (rc < 0 && !n->send_failed) {
		g_warning("systemd: cannot notify %s: %s (vigild goes on; a Type=notify "
			  "service will not see it ready)", g_getenv("NOTIFY_SOCKET"),
			  g_strerror(-rc));
		n->send_failed = TRUE;
	}
}

notify *notify_new(void)
{
	notify *n;
	uint64_t usec = 0;
	int rc;

	if (!g_getenv("NOTIFY_SOCKET"))
		return NULL;
	n = g_new0(notify, 1);
	/* > 0 only when WATCHDOG_USEC is set and WATCHDOG_PID, if set, is us. */
	rc = sd_watchdog_enabled(0, &usec);
	if (rc < 0)
		g_warning("systemd: WATCHDOG_USEC=%s: %s; running without the watchdog",
			  g_getenv("WATCHDOG_USEC"), g_strerror(-rc));
	else if (rc > 0)
		n->watchdog_us = (int64_t)MIN(usec, (uint64_t)INT64_MAX);
	return n;
}

#else

static void send_state(notify *n, const char *state)
{
	(void)n;
	(void)state;
}

/* Built without libsystemd: vigild never talks to a service manager. */
notify *notify_new(void)
{
	return NULL;
}

#endif

static void remove_timers(notify *n)
{
	if (n->ready_id)
		g_source_remove(n->ready_id);
	if (n->status_id)
		g_source_remove(n->status_id);
	if (n->watchdog_id)
		g_source_remove(n->watchdog_id);
	n->ready_id = n->status_id = n->watchdog_id = 0;
}

void notify_free(notify *n)
{
	if (!n)
		return;
	remove_timers(n);
	g_free(n);
}

/* Parts per minute over the samples kept, this one added. */
static double rate_per_min(notify *n, int64_t now, uint64_t inspected)
{
	int last;
	double dt_min;

	if (n->rate_count == RATE_SAMPLES) {
		n->rate_first = (n->rate_first + 1) % RATE_SAMPLES;
		n->rate_count--;
	}
	last = (n->rate_first + n->rate_count) % RATE_SAMPLES;
	n->rate[last].t_us = now;
	n->rate[last].inspected = inspected;
	n->rate_count++;
	dt_min = (double)(now - n->rate[n->rate_first].t_us) / 60e6;
	return dt_min > 0 ? (double)(inspected - n->rate[n->rate_first].inspected) / dt_min : 0.0;
}

static void add_fault(GString *s, gboolean *first, const char *fmt, const char *arg)
{
	g_string_append(s, *first ? "; faults: " : ", ");
	g_string_append_printf(s, fmt, arg);
	*first = FALSE;
}

/* "inspecting: 42.1 parts/min, 1234 inspected, 3 fail-safe; faults:
 * plc-link down" and the like: what `systemctl status` shows. */
static char *status_text(notify *n)
{
	GString *s = g_string_new("STATUS=");
	struct line_stats st;
	struct line_health h;
	struct line_alarms a;
	struct line_progress p;
	gboolean first = TRUE;

	if (!n->l) {
		g_string_append(s, "serving the review page (--review-only)");
		return g_string_free(s, FALSE);
	}
	line_get_stats(n->l, &st);
	line_get_health(n->l, &h);
	line_get_alarms(n->l, &a);
	line_get_progress(n->l, &p);
	if (!p.ready)
		g_string_append(s, !p.sources_up ? "starting: waiting for the cameras and the "
						   "vibration source"
						 : "starting: connecting to the PLC");
	else
		g_string_append(s, "inspecting");
	g_string_append_printf(s, ": %.1f parts/min, %" G_GUINT64_FORMAT " inspected, %"
			       G_GUINT64_FORMAT " fail-safe",
			       rate_per_min(n, vigil_now_us(), st.inspected), st.inspected,
			       st.failsafe);
	if (!h.plc_connected)
		add_fault(s, &first, "%s", "plc-link down");
	for (int i = 0; i < h.cameras && i < LINE_HEALTH_CAMERAS; i++)
		if (!h.camera[i].up)
			add_fault(s, &first, "camera %s down", h.camera[i].name);
	if (!h.db_ok)
		add_fault(s, &first, "%s", "database");
	for (int k = 0; k < ALARM_KINDS; k++)
		if (a.active & (1u << k))
			add_fault(s, &first, "alarm %s", alarm_kind_name((enum alarm_kind)k));
	if (first)
		g_string_append(s, "; no faults");
	if (h.learning)
		g_string_append(s, "; learning mode: every part it judges is accepted");
	if (n->watchdog_us && p.oldest_ms * 1000.0 > (double)n->watchdog_us)
		g_string_append_printf(s, "; stalled: %s thread, %.1f s", p.oldest,
				       p.oldest_ms / 1000.0);
	return g_string_free(s, FALSE);
}

static gboolean on_status(gpointer data)
{
	notify *n = data;
	char *text = status_text(n);

	send_state(n, text);
	g_free(text);
	return G_SOURCE_CONTINUE;
}

static gboolean on_ready_poll(gpointer data)
{
	notify *n = data;
	struct line_progress p;
	char *text, *msg;

	if (n->l) {
		line_get_progress(n->l, &p);
		if (!p.ready)
			return G_SOURCE_CONTINUE;
	}
	text = status_text(n);
	msg = g_strconcat("READY=1\n", text, NULL);
	send_state(n, msg);
	g_free(msg);
	g_free(text);
	n->ready_id = 0;
	return G_SOURCE_REMOVE;
}

/* A thread stalled past the interval (line_get_progress) holds the pings
 * back rather than sending WATCHDOG=trigger: systemd then acts on its own
 * WatchdogSec, the one setting that decides, exactly as it does when the
 * main loop itself hangs and sends nothing; and a thread that was only
 * slow, and turns again within the interval, costs no restart. */
static gboolean on_watchdog(gpointer data)
{
	notify *n = data;
	struct line_progress p;

	if (n->l) {
		line_get_progress(n->l, &p);
		if (p.oldest_ms * 1000.0 > (double)n->watchdog_us) {
			if (!n->stalled)
				g_warning("watchdog: the %s thread has made no progress for %.1f s "
					  "(limit %.1f s, the watchdog interval): no more watchdog "
					  "pings, systemd restarts vigild", p.oldest,
					  p.oldest_ms / 1000.0, (double)n->watchdog_us / 1e6);
			n->stalled = TRUE;
			return G_SOURCE_CONTINUE;
		}
		if (n->stalled)
			g_message("watchdog: every thread makes progress again; pinging again");
		n->stalled = FALSE;
	}
	send_state(n, "WATCHDOG=1");
	return G_SOURCE_CONTINUE;
}

void notify_start(notify *n, line *l)
{
	if (!n)
		return;
	n->l = l;
	on_status(n);
	if (on_ready_poll(n) == G_SOURCE_CONTINUE)
		n->ready_id = g_timeout_add(READY_POLL_MS, on_ready_poll, n);
	n->status_id = g_timeout_add(NOTIFY_STATUS_PERIOD_MS, on_status, n);
	if (n->watchdog_us) {
		/* Half the interval, as sd_watchdog_enabled(3) advises: one
		 * late ping is not yet a missed one. */
		guint ms = (guint)MAX(n->watchdog_us / 2000, 1);

		n->watchdog_id = g_timeout_add(ms, on_watchdog, n);
		on_watchdog(n);
	}
}

void notify_stopping(notify *n)
{
	if (!n)
		return;
	remove_timers(n);
	send_state(n, "STOPPING=1\nSTATUS=stopping: finishing the parts in flight");
}
