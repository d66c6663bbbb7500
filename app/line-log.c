/* Logging: the log thread is the only one that may wait on the database.
 * It writes the parts' rows (queued early by the PLC thread where the
 * result must wait for its row, docs/operations.md), the transmitter's
 * trend and the events. */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <string.h>

#include "app/line-private.h"

struct line_event {
	char *kind, *message;
};

void line_event_free(gpointer data)
{
	struct line_event *e = data;

	g_free(e->kind);
	g_free(e->message);
	g_free(e);
}

static void count_latency(line *l, double ms)
{
	int b = 0;

	while (b < LINE_LATENCY_BUCKETS && ms > line_latency_bounds_ms[b])
		b++;
	g_mutex_lock(&l->stats_lock);
	l->st.latency_parts[b]++;
	l->st.latency_sum_ms += ms;
	g_mutex_unlock(&l->stats_lock);
}

/* ---- logging: the only thread that may wait on the database ---- */

static void make_row(const struct vigil_part *p, struct db_inspection *row)
{
	*row = (struct db_inspection){
		.part_id = p->part_id,
		.trigger_counter = p->trigger_counter,
		.seq = p->seq,
		.t_wall_us = p->t_wall_us,
		.verdict = p->verdict,
		.defect_class = p->defect_class,
		.flags = p->flags,
		.score = p->score,
		.vision_score = p->vision_score,
		.signal_score = p->signal_score,
		.latency_ms = p->t_plc_us ? (double)(p->t_plc_us - p->t_trigger_us) / 1000.0 : NAN,
		.infer_ms = p->infer_ms,
		.model_version = p->model_version,
		.job = p->job,
		.model_verdict = p->model_verdict,
		.model_score = p->model_score,
		.has_vibration = p->has_vibration,
		.vibration = p->vibration,
	};
}

/* Queues row (and media, taken over) for r without waiting. */
static void queue_row(line *l, const struct db_inspection *row, struct db_media_set *media,
		      uint32_t part_id, struct line_row *r)
{
	uint64_t ticket = 0;

	if (db_submit_media(l->db, row, media, 0, &ticket) == 0) {
		r->ticket = ticket;
		r->t_queued_us = vigil_now_us();
		line_count(l, &l->st.rows_logged, 1);
		/* After a row that could not be queued early, the fault lasts
		 * until the writer has caught up with this one. */
		if (l->db_late_ticket == UINT64_MAX)
			l->db_late_ticket = ticket;
	} else {
		/* The queue is full: the log thread queues the row after the
		 * result went out; the database is in fault meanwhile. */
		if (!l->db_late_ticket)
			g_warning("part %u: the database queue is full: its result goes to the "
				  "PLC before its row is written; database fault raised", part_id);
		l->db_late_ticket = UINT64_MAX;
	}
}

/* The row goes to the writer before the result goes to the PLC, so that a
 * result the PLC has seen is in the database (docs/operations.md, crash
 * safety). Its latency is not known yet: the log thread adds it. */
void line_log_early(line *l, struct vigil_part *p)
{
	struct line_part *lp = (struct line_part *)p;
	struct db_inspection row;

	make_row(p, &row);
	queue_row(l, &row, lp->media, p->part_id, &lp->row);
	lp->media = NULL;   /* taken by db_submit_media, even on error */
}

void line_log_failsafe(line *l, struct vigil_part *p, struct line_row *r)
{
	struct db_inspection row = {
		.part_id = p->part_id,
		.trigger_counter = p->trigger_counter,
		.seq = p->seq,
		.t_wall_us = p->t_wall_us,
		.verdict = VIGIL_VERDICT_REJECT,
		.defect_class = VIGIL_CLASS_NONE,
		.flags = VIGIL_FLAG_FAILSAFE | VIGIL_FLAG_DEADLINE,
		.score = 1.0,
		.vision_score = NAN,
		.signal_score = NAN,
		.latency_ms = NAN,
		.infer_ms = NAN,
		.job = -1,   /* the part's job is known once it is judged (db_set_late) */
	};

	queue_row(l, &row, NULL, p->part_id, r);
	/* The part is still being inspected: the log thread stores its
	 * model verdict beside this row when it comes. */
	if (r->ticket)
		atomic_store(&((struct line_part *)p)->failsafe_ticket, r->ticket);
}

void line_log_not_sent(line *l, struct vigil_part *p)
{
	struct line_part *lp = (struct line_part *)p;
	struct db_inspection row;

	p->flags |= VIGIL_FLAG_NOT_SENT | VIGIL_FLAG_FAILSAFE;
	p->verdict = VIGIL_VERDICT_REJECT;
	p->score = 1.0f;
	if (!lp->row.ticket)
		return;  /* its row is written by the log thread, as it is now */
	make_row(p, &row);
	db_set_late(l->db, lp->row.ticket, &row, NULL);
}

gboolean line_row_committed(line *l, struct line_row *r, uint32_t part_id, int64_t now_us)
{
	if (!r->ticket)
		return TRUE;
	if (db_settled(l->db) >= r->ticket) {
		if (!r->commit_seen)
			line_count_stage(l, LINE_STAGE_DB_WRITE,
					 (double)(now_us - r->t_queued_us) / 1000.0);
		r->commit_seen = TRUE;
		return TRUE;
	}
	if (!db_ok(l->db) || line_db_fault(l) ||
	    now_us - r->t_queued_us > (int64_t)l->set.database.commit_timeout_ms * 1000) {
		if (!line_db_fault(l))
			g_warning("part %u: its row is not committed after %d ms: result sent to the "
				  "PLC anyway, database fault raised", part_id,
				  l->set.database.commit_timeout_ms);
		l->db_late_ticket = MAX(l->db_late_ticket, r->ticket);
		return TRUE;
	}
	return FALSE;
}

/* db_late_ticket is the PLC thread's alone. */
gboolean line_db_fault(line *l)
{
	if (l->db_late_ticket && l->db_late_ticket != UINT64_MAX &&
	    db_settled(l->db) >= l->db_late_ticket)
		l->db_late_ticket = 0;
	return !db_ok(l->db) || l->db_late_ticket != 0;
}

/* What the log thread last wrote to the events table about the devices. */
struct device_watch {
	gboolean cam_down[LINE_MAX_CAMERAS];
	uint64_t cam_restarts[LINE_MAX_CAMERAS];
	uint64_t cam_desyncs[LINE_MAX_CAMERAS];
	gboolean sensor_failed;
	uint32_t window_fault;      /* the window flags of the fault in force, 0: none */
	unsigned cam_flat;          /* cameras whose last frame was flat, 1u << i */
	gboolean tx_away;
	gboolean db_fault, db_slow; /* db_slow: a fault this thread logged */
	uint64_t failsafe_seen[VIGIL_FAILSAFE_CAUSES]; /* as of the last failsafe event */
	int64_t next_failsafe_event_us;
};

/* Transmitter readings as trend rows, stamped on the wall clock. */
static void log_trend(line *l, const struct transmitter_reading *r, int64_t part_id, int stale)
{
	struct db_trend row = {
		.source = l->set.transmitter.name,
		.t_wall_us = vigil_wall_us() - (vigil_now_us() - r->t_us),
		.part_id = part_id,
		.velocity_mm_s = r->value[TRANSMITTER_VELOCITY],
		.accel_g = r->value[TRANSMITTER_ACCELERATION],
		.temperature_c = r->value[TRANSMITTER_TEMPERATURE],
		.stale = stale,
	};

	db_trend(l->db, &row);
}

static void event(line *l, const char *kind, const char *fmt, ...) G_GNUC_PRINTF(3, 4);
static void event(line *l, const char *kind, const char *fmt, ...)
{
	va_list ap;
	char *msg;

	va_start(ap, fmt);
	msg = g_strdup_vprintf(fmt, ap);
	va_end(ap);
	db_event(l->db, kind, msg);
	g_free(msg);
}

void line_post_event(line *l, const char *kind, const char *fmt, ...)
{
	struct line_event *e = g_new(struct line_event, 1);
	va_list ap;

	va_start(ap, fmt);
	e->kind = g_strdup(kind);
	e->message = g_strdup_vprintf(fmt, ap);
	va_end(ap);
	g_async_queue_push(l->events, e);
}

void line_event(line *l, const char *kind, const char *message)
{
	line_post_event(l, kind, "%s", message);
}

/* Camera down/up and pipeline faults as rows in the events table. Polled,
 * so a restart quicker than one poll still shows as down then up (the
 * restart counter moved). */
static void watch_devices(line *l, struct device_watch *w)
{
	struct sensor_stats ss;
	struct line_event *e;

	while ((e = g_async_queue_try_pop(l->events))) {
		db_event(l->db, e->kind, e->message);
		line_event_free(e);
	}
	for (int i = 0; i < l->set.ncameras; i++) {
		struct capture_stats cs;
		const char *name = l->set.cameras[i].name;

		capture_camera_stats(l->cameras[i], &cs);
		if ((!cs.up || cs.restarts > w->cam_restarts[i]) && !w->cam_down[i]) {
			event(l, "camera-down", "camera %s down; restarting with back-off", name);
			w->cam_down[i] = TRUE;
		}
		if (cs.up && w->cam_down[i]) {
			event(l, "camera-up", "camera %s up again (%" G_GUINT64_FORMAT
			      " restarts so far)", name, cs.restarts);
			w->cam_down[i] = FALSE;
		}
		w->cam_restarts[i] = cs.restarts;
		if (cs.desyncs > w->cam_desyncs[i])
			event(l, "camera-desync", "camera %s: %" G_GUINT64_FORMAT " frame(s) lost, "
			      "extra or late against the triggers (%" G_GUINT64_FORMAT " so far); the "
			      "doubtful parts failed safe and the pairing was re-aligned (log has "
			      "which)", name, cs.desyncs - w->cam_desyncs[i], cs.desyncs);
		w->cam_desyncs[i] = cs.desyncs;
	}
	/* A database that fails writes logs its own db-fault and db-ok once
	 * it writes again (db/db.h); a slow one (rows not committed within
	 * commit_timeout_ms, or the row queue full) is logged here. */
	if (g_atomic_int_get(&l->db_fault_up) != w->db_fault) {
		w->db_fault = !w->db_fault;
		if (w->db_fault && db_ok(l->db)) {
			event(l, "db-fault", "rows not committed within %d ms: results go to the "
			      "PLC without waiting for their rows (verdicts unaffected)",
			      l->set.database.commit_timeout_ms);
			w->db_slow = TRUE;
		} else if (!w->db_fault && w->db_slow) {
			event(l, "db-ok", "the database caught up: results wait for their rows "
			      "again");
			w->db_slow = FALSE;
		}
	}
	sensor_source_stats(l->sensor, &ss);
	if (ss.failed && !w->sensor_failed) {
		event(l, "sensor-fault", "vibration %s: pipeline failed", l->set.vibration.name);
		w->sensor_failed = TRUE;
	}
	if (l->transmitter) {
		struct transmitter_reading r[64];
		struct transmitter_stats ts;
		size_t n;

		while ((n = sensor_transmitter_take_trend(l->transmitter, r, G_N_ELEMENTS(r))))
			for (size_t i = 0; i < n; i++)
				log_trend(l, &r[i], -1, 0);
		sensor_transmitter_stats(l->transmitter, &ts);
		if (!ts.connected && ts.failures && !w->tx_away) {
			event(l, "sensor-fault", "transmitter %s: not answering",
			      l->set.transmitter.name);
			w->tx_away = TRUE;
		} else if (ts.connected && w->tx_away) {
			event(l, "sensor-ok", "transmitter %s: answering again",
			      l->set.transmitter.name);
			w->tx_away = FALSE;
		}
	}
}

/* Fail-safe rejects as events: the first at once, then what came since at
 * most every 10 s (a stalled source makes one every part), and the rest
 * when the line stops (final). */
static void watch_failsafe(line *l, struct device_watch *w, gboolean final)
{
	struct line_stats st;
	int64_t now = vigil_now_us();
	uint64_t n = 0;
	GString *msg;

	line_get_stats(l, &st);
	for (int c = 0; c < VIGIL_FAILSAFE_CAUSES; c++)
		n += st.failsafe_by[c] - w->failsafe_seen[c];
	if (!n || (!final && now < w->next_failsafe_event_us))
		return;
	msg = g_string_new(NULL);
	g_string_printf(msg, "%" G_GUINT64_FORMAT " fail-safe reject(s), by cause:", n);
	for (int c = 0; c < VIGIL_FAILSAFE_CAUSES; c++)
		if (st.failsafe_by[c] > w->failsafe_seen[c])
			g_string_append_printf(msg, " %s %" G_GUINT64_FORMAT,
					       line_failsafe_cause_names[c],
					       st.failsafe_by[c] - w->failsafe_seen[c]);
	event(l, "failsafe", "%s", msg->str);
	g_string_free(msg, TRUE);
	memcpy(w->failsafe_seen, st.failsafe_by, sizeof w->failsafe_seen);
	w->next_failsafe_event_us = now + 10 * G_USEC_PER_SEC;
}

/* A part's window fault opens a sensor-fault event, or sensor-flat for a
 * flat window (a dead sensor, named apart: it needs a hand at the sensor,
 * not at the settings); the next good window closes either with
 * sensor-ok. A sensor that dies while another fault is open still gets
 * its sensor-flat, and one that comes back to life into another fault
 * its sensor-fault. */
static void watch_window(line *l, struct device_watch *w, const struct vigil_part *p)
{
	const struct line_part *lp = (const struct line_part *)p;
	const struct sensor_settings *v = &l->set.vibration;
	uint32_t bad = p->flags & VIGIL_FLAGS_NO_WINDOW;

	/* A part never inspected (queue full, triggered while vigild was
	 * down) had no window: it says nothing of the sensor. */
	if (p->flags & (VIGIL_FLAG_QUEUE_FULL | VIGIL_FLAG_NOT_INSPECTED))
		return;
	if ((bad & VIGIL_FLAG_VIB_FLAT) && !(w->window_fault & VIGIL_FLAG_VIB_FLAT)) {
		event(l, "sensor-flat", "vibration %s: part %u: window flat, its range %.3g below "
		      "flat_level %g: the sensor looks dead (cable, supply, ADC); parts are "
		      "fail-safe rejects until it delivers again", v->name, p->part_id,
		      lp->flat_range, v->cfg.flat_level);
	} else if (bad && !(bad & VIGIL_FLAG_VIB_FLAT) &&
		   (!w->window_fault || (w->window_fault & VIGIL_FLAG_VIB_FLAT))) {
		event(l, "sensor-fault", "vibration %s: part %u: %s", v->name, p->part_id,
		      bad & VIGIL_FLAG_NO_VIBRATION ? "no complete window (late or with a gap)"
						    : "window reached the clip level");
	} else if (!bad && w->window_fault) {
		event(l, "sensor-ok", "vibration %s: part %u: complete window again", v->name,
		      p->part_id);
	}
	w->window_fault = bad;
}

/* A camera's frame gone flat opens a camera-flat event; its next frame
 * that is not flat closes it with camera-ok. A part without a frame from
 * it (or never inspected) says nothing of its picture. */
static void watch_frames(line *l, struct device_watch *w, const struct vigil_part *p)
{
	const struct line_part *lp = (const struct line_part *)p;

	if (p->flags & (VIGIL_FLAG_QUEUE_FULL | VIGIL_FLAG_NOT_INSPECTED | VIGIL_FLAG_NO_FRAME))
		return;
	for (int i = 0; i < l->set.ncameras; i++) {
		const struct capture_settings *c = &l->set.cameras[i];
		unsigned bit = 1u << i;

		if ((lp->flat_cameras & bit) && !(w->cam_flat & bit))
			event(l, "camera-flat", "camera %s: part %u: frame flat, its grey levels' "
			      "standard deviation %.2f below flat_level %g: a lens cap, the light "
			      "off or a blank sensor; parts are fail-safe rejects until it shows a "
			      "picture again", c->name, p->part_id, lp->flat_contrast[i],
			      c->flat_level);
		else if (!(lp->flat_cameras & bit) && (w->cam_flat & bit))
			event(l, "camera-ok", "camera %s: part %u: a picture again", c->name,
			      p->part_id);
	}
	w->cam_flat = lp->flat_cameras;
}

gpointer line_log_thread(gpointer data)
{
	line *l = data;
	struct device_watch watch = { 0 };
	void *item;
	int rc;

	while ((rc = bqueue_pop(l->q_log, &item, 200000)) != -EPIPE) {
		struct vigil_part *p = item;
		struct line_part *lp = item;
		struct db_inspection row;
		uint64_t fs_ticket;

		line_beat(l, LINE_THREAD_LOG);
		watch_devices(l, &watch);
		watch_failsafe(l, &watch, FALSE);
		if (rc < 0)
			continue;
		watch_window(l, &watch, p);
		watch_frames(l, &watch, p);
		if (p->tx_state != VIGIL_TX_NONE) {
			struct transmitter_reading r = {
				.t_us = p->t_tx_us,
				.value = { p->tx_velocity_mm_s, p->tx_accel_g, p->tx_temperature_c },
			};

			log_trend(l, &r, p->part_id, p->tx_state == VIGIL_TX_STALE);
		}

		if ((fs_ticket = atomic_load(&lp->failsafe_ticket))) {
			/* The PLC got a fail-safe reject at the deadline, and
			 * its row is written: the model's verdict goes beside. */
			p->verdict = VIGIL_VERDICT_REJECT;
			p->flags |= VIGIL_FLAG_FAILSAFE | VIGIL_FLAG_DEADLINE;
			p->score = 1.0f;
		}
		make_row(p, &row);
		if (!isnan(row.latency_ms))
			count_latency(l, row.latency_ms);
		if (lp->row.ticket) {
			/* Queued before the PLC got the result; now the latency. */
			if (p->t_plc_us)
				db_set_latency(l->db, lp->row.ticket, row.latency_ms);
		} else if (fs_ticket) {
			db_set_late(l->db, fs_ticket, &row, lp->media);
		} else if (db_submit_media(l->db, &row, lp->media, -1, NULL) == 0) {
			line_count(l, &l->st.rows_logged, 1);
		} else {
			line_count(l, &l->st.rows_failed, 1);
		}
		lp->media = NULL;
		/* Its verdict is final and its row on its way: the live view
		 * gets it now, never waiting on the broker. */
		mqtt_client_publish_result(l->mqtt, p);
		line_part_free(p);
	}
	/* What changed since the last look (a fault that cleared as the line
	 * stopped) is logged before the database closes. */
	watch_devices(l, &watch);
	watch_failsafe(l, &watch, TRUE);
	return NULL;
}

