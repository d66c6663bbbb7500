#include <errno.h>
#include <stdio.h>

#include "app/line-private.h"

/* ---- the PLC thread: triggers in, results out, deadlines ----
 *
 * The same code drives both roles (plc/plc.h): in the client role the
 * reads and writes go to the PLC, in the server role they go to our own
 * registers, which the PLC polls. The handshake itself is plc/'s session
 * (plc_session); this thread keeps the link, and wires the session to the
 * queues, the database rows, the events, the jobs and the statistics. The
 * session's parts are the line's part records (struct vigil_part *). */

#define STATUS_PERIOD_US 500000
#define COMMIT_POLL_US 200   /* how often a result waiting for its row looks */

struct plc_state {
	line *l;
	plc_session *session;
	GQueue overflow;         /* parts waiting for room in q_log */

	/* The row of the fail-safe reject decided last: the session decides
	 * one at a time and presents it (or drops it, at a PLC restart)
	 * before it decides the next. */
	struct line_row fs_row;
	uint64_t cur_fs_ticket;        /* the presented fail-safe's row, for its latency */
	int64_t cur_t_trigger_us;

	uint16_t heartbeat;
	struct plc_status last_status;
	gboolean status_written;
	int64_t next_status_us, next_connect_us, started_us;
	int backoff_ms;
	int64_t connected_us;    /* when the link last connected */
	gboolean link_open;      /* connected, as far as this thread knows */
	gboolean link_up;        /* a request succeeded on this connection */
	gboolean link_down;      /* its loss was reported (warning, event) */
	int link_error;          /* the failed read that closed it, if one did */
	gboolean plc_silent;

	int job;                 /* job the inspection thread runs, 0 = [model] */
	uint16_t job_select;     /* the PLC's job_select as last seen */
	gboolean job_select_seen; /* job_select was read once: the baseline */
	int job_loading;         /* job requested from the loader, 0 = none */
	uint16_t job_refused;    /* job refused, 0 = none */
	uint16_t job_error;      /* enum plc_error_code of the refusal */
	unsigned last_part_flags;
	uint64_t rows_failed_seen, rows_logged_seen;
	gboolean db_fault;
	gboolean row_lost;         /* a row could not be queued, none logged since */
	gboolean awaiting_commit;  /* the next result waits for its row's commit */
	gboolean queue_full;       /* a part found q_inspect full; latched until one fits */
	gboolean sources_up;       /* every camera up, the vibration source delivered once */
	alarm_monitor *alarms;     /* fed each result as the PLC gets it */
};

/* Queues p (may be NULL: just retry) for the log thread without waiting;
 * what does not fit stays in overflow and is retried every cycle. */
static void hand_to_log(line *l, struct plc_state *s, struct vigil_part *p)
{
	if (p)
		g_queue_push_tail(&s->overflow, p);
	while (!g_queue_is_empty(&s->overflow) &&
	       bqueue_push(l->q_log, g_queue_peek_head(&s->overflow), 0) == 0)
		g_queue_pop_head(&s->overflow);
}

/* ---- the session's callbacks (plc_session_ops) ---- */

/* A verdict of an ended PLC session: its row says it was never sent. */
static void session_not_sent(void *data, void *part)
{
	struct plc_state *s = data;

	line_log_not_sent(s->l, part);
	hand_to_log(s->l, s, part);
}

static void session_failsafe(void *data, void *part, uint32_t part_id)
{
	struct plc_state *s = data;

	g_warning("part %u: no verdict within %d ms, fail-safe reject", part_id,
		  s->l->set.plc.reject_deadline_ms);
	s->fs_row = (struct line_row){ 0 };
	line_log_failsafe(s->l, part, &s->fs_row);
}

static int session_row_committed(void *data, void *part, uint32_t part_id, int64_t now_us)
{
	struct plc_state *s = data;

	return line_row_committed(s->l, part ? &((struct line_part *)part)->row : &s->fs_row,
				  part_id, now_us);
}

static const struct plc_session_ops session_ops = {
	.not_sent = session_not_sent,
	.failsafe = session_failsafe,
	.row_committed = session_row_committed,
};

/* ---- jobs (recipes): line-jobs.c loads them ---- */

static void select_job(line *l, struct plc_state *s, uint16_t job)
{
	int want;

	/* The first value read is the baseline, not a request: it was written
	 * before this run (docs/plc.md: only a change selects a job), and the
	 * job kept in state_file is the one that ran. */
	if (!s->job_select_seen) {
		s->job_select_seen = TRUE;
		s->job_select = job;
		if (job && job != s->job)
			g_message("PLC shows job_select %u at start: not a request (only a change "
				  "selects a job); staying on job %d", job, s->job);
		return;
	}
	/* Only a change of job_select is a request, so a refused package is
	 * not loaded again on every poll: to retry, the PLC writes 0 (or
	 * another job) and then the job again. */
	if (job == s->job_select)
		return;
	s->job_select = job;
	if (job == 0)
		return;
	if (job > LINE_MAX_JOBS || !l->set.jobs[job].number) {
		g_warning("PLC selected job %u, which is not configured; staying on job %d",
			  job, s->job);
		s->job_refused = job;
		s->job_error = PLC_ERR_JOB;
		return;
	}
	s->job_refused = 0;
	want = s->job_loading ? s->job_loading : s->job;
	if (job == want)
		return;
	g_message("PLC selected job %u (model package %s)", job, l->set.jobs[job].package);
	s->job_loading = job;
	line_jobs_request(l->jobs_loader, job);
}

/* What became of the requests: a job that now runs is kept as the
 * selection; a refusal of the latest request is shown to the PLC. */
static void take_job_reports(line *l, struct plc_state *s)
{
	int job, error;

	while (line_jobs_report(l->jobs_loader, &job, &error) == 0) {
		if (!error && job != s->job) {
			s->job = job;
			line_jobs_save(l, job);
		}
		if (job != s->job_loading)
			continue; /* superseded by a later selection */
		s->job_loading = 0;
		if (error) {
			s->job_refused = (uint16_t)job;
			s->job_error = (uint16_t)error;
		}
	}
}

/* ---- faults ---- */

/* The active faults, 1u << enum plc_error_code each; PLC_VERDICT_FAULTS
 * says which of them judge parts. */
static unsigned faults(line *l, struct plc_state *s)
{
	struct capture_stats cs;
	struct sensor_stats ss;
	unsigned w = 0;

	line_camera_stats(l, &cs);
	sensor_source_stats(l->sensor, &ss);
	/* A camera that failed once and was restarted is healthy again. */
	if (!cs.up || (s->last_part_flags & VIGIL_FLAGS_NO_PICTURE))
		w |= 1u << PLC_ERR_CAMERA;
	if (ss.failed || (s->last_part_flags & VIGIL_FLAGS_NO_WINDOW))
		w |= 1u << PLC_ERR_SENSOR;
	if (s->last_part_flags & VIGIL_FLAG_MODEL_ERROR)
		w |= 1u << PLC_ERR_MODEL;
	if (s->db_fault)
		w |= 1u << PLC_ERR_DATABASE;
	return w;
}

/* A database that failed a row since the last good one is a fault; so is
 * one that failed a write or let a result out before its row, until the
 * writer works again and has caught up (line_db_fault). */
static void watch_database(line *l, struct plc_state *s)
{
	struct line_stats st;

	line_get_stats(l, &st);
	if (st.rows_failed > s->rows_failed_seen)
		s->row_lost = TRUE;
	else if (st.rows_logged > s->rows_logged_seen)
		s->row_lost = FALSE;
	s->db_fault = s->row_lost || line_db_fault(l);
	s->rows_failed_seen = st.rows_failed;
	s->rows_logged_seen = st.rows_logged;
	g_atomic_int_set(&l->db_fault_up, s->db_fault);
}

/* ---- triggers ---- */

static void take_verdict(line *l, struct plc_state *s, struct vigil_part *p);

/* A trigger raised while vigild was down: its part cannot be inspected
 * (its images are gone), so it gets a fail-safe reject through the usual
 * path, row first, rather than no result at all. */
static void answer_unanswered(line *l, struct plc_state *s, const struct plc_trigger *t)
{
	const struct plc_session_kept *k = &l->kept_plc;
	struct vigil_part *p = line_part_new();
	char *msg = g_strdup_printf("PLC trigger %u (part %u) was raised while vigild was down "
				    "(last answered: trigger %u, part %u): fail-safe reject, not "
				    "inspected", t->counter, t->part_id, k->trigger_counter,
				    k->part_id);

	g_warning("%s", msg);
	line_post_event(l, "plc-unanswered", "%s", msg);
	g_free(msg);
	p->part_id = t->part_id;
	p->trigger_counter = t->counter;
	p->job = (uint16_t)s->job;
	p->t_trigger_us = vigil_now_us();
	p->t_wall_us = vigil_wall_us();
	p->seq = plc_session_track_unanswered(s->session, p->part_id, p->trigger_counter,
					      p->t_trigger_us, p);
	p->verdict = VIGIL_VERDICT_REJECT;
	p->flags |= VIGIL_FLAG_FAILSAFE | VIGIL_FLAG_NOT_INSPECTED;
	p->score = 1.0f;
	line_count(l, &l->st.triggers, 1);
	take_verdict(l, s, p);
}

static void take_triggers(line *l, struct plc_state *s, const struct plc_trigger *t)
{
	struct plc_trigger_news n;
	struct vigil_part *p;

	select_job(l, s, t->job);
	plc_session_take_trigger(s->session, t, !g_atomic_int_get(&l->stop_triggers), &n);
	if (n.restarted) {
		g_warning("PLC trigger counter went from %u to %u: the PLC program restarted; new "
			  "session, %u result(s) of the previous one taken down or never sent",
			  n.from, t->counter, n.dropped);
		line_post_event(l, "plc-restart", "PLC trigger counter went from %u to %u: new "
				"PLC session; %u result(s) of the previous one taken down or never "
				"sent", n.from, t->counter, n.dropped);
	}
	if (n.adopted)
		g_warning("PLC shows trigger %u (part %u) at start and %s keeps no trigger "
			  "answered: taken as the baseline, not as a part; if it was raised while "
			  "vigild was down, that part got no result", t->counter, t->part_id,
			  l->set.plc_state_path);
	if (n.missed) {
		g_warning("PLC trigger counter jumped from %u to %u: %u trigger(s) missed%s",
			  n.missed_from, t->counter, n.missed,
			  n.unanswered ? " while vigild was down (no result, no row)" : "");
		line_count(l, &l->st.missed_triggers, n.missed);
	}
	if (n.unanswered) {
		answer_unanswered(l, s, t);
		return;
	}
	if (!n.new_part)
		return;

	p = line_part_new();
	p->part_id = t->part_id;
	p->trigger_counter = t->counter;
	p->job = (uint16_t)s->job; /* inspection sets the job that judges it */
	p->t_trigger_us = vigil_now_us();
	p->t_wall_us = vigil_wall_us();
	p->seq = plc_session_track(s->session, p->part_id, p->trigger_counter, p->t_trigger_us, p);
	/* A triggered camera's frames are checked against the triggers. */
	for (int i = 0; i < l->set.ncameras; i++)
		capture_camera_trigger(l->cameras[i], p->seq, p->t_trigger_us);
	line_count(l, &l->st.triggers, 1);
	if (line_inspect_push(l, p, 0) < 0) {
		/* Inspection is saturated: the part cannot be judged in time. */
		g_warning("part %u: inspection queue full, fail-safe reject", p->part_id);
		p->verdict = VIGIL_VERDICT_REJECT;
		p->flags |= VIGIL_FLAG_FAILSAFE | VIGIL_FLAG_QUEUE_FULL;
		p->score = 1.0f;
		s->queue_full = TRUE;
		/* Taken here, not pushed onto q_results: this thread is the
		 * one that empties q_results, so a push that waited for room
		 * there would wait for ever. */
		take_verdict(l, s, p);
	} else {
		s->queue_full = FALSE;
	}
}

/* ---- verdicts ---- */

/* Counts a fail-safe reject under its cause, read from its flags. */
static void count_failsafe(line *l, uint32_t flags)
{
	enum vigil_failsafe_cause c = vigil_failsafe_cause_of(flags);

	g_mutex_lock(&l->stats_lock);
	l->st.failsafe++;
	l->st.failsafe_by[c]++;
	g_mutex_unlock(&l->stats_lock);
}

static void take_verdict(line *l, struct plc_state *s, struct vigil_part *p)
{
	struct plc_verdict v;
	int64_t t_plc_us;

	s->last_part_flags = p->flags;
	if (!(p->flags & VIGIL_FLAG_FAILSAFE) && (faults(l, s) & PLC_VERDICT_FAULTS)) {
		/* Both policies reject while a fault lasts; stop_line also
		 * asks the PLC to stop the conveyor (status bit). */
		p->verdict = VIGIL_VERDICT_REJECT;
		p->flags |= VIGIL_FLAG_FAILSAFE;
	}
	v = (struct plc_verdict){
		.seq = p->seq,
		.part_id = p->part_id,
		.verdict = (uint16_t)p->verdict,
		.defect_class = (uint16_t)p->defect_class,
		.score = p->score,
		.flags = p->flags,
		.job = p->job,
	};
	switch (plc_session_verdict(s->session, &v, p, &t_plc_us)) {
	case PLC_VERDICT_LATE:
		/* The PLC has (or is about to get) a fail-safe reject for it,
		 * whose row is queued; the log stores the model's verdict
		 * beside it. */
		p->verdict = VIGIL_VERDICT_REJECT;
		p->flags |= VIGIL_FLAG_FAILSAFE | VIGIL_FLAG_DEADLINE;
		p->score = 1.0f;
		p->t_plc_us = t_plc_us;
		hand_to_log(l, s, p);
		break;
	case PLC_VERDICT_OVERRUN:
		g_warning("part %u: result buffer full (%d waiting, PLC has not acknowledged "
			  "result %u): result overrun, logged but not sent",
			  p->part_id, l->set.plc.result_buffer,
			  plc_session_result(s->session)->counter);
		/* Its row says what the PLC is left with: no result, which it
		 * must treat as a reject (docs/plc.md, Overrun). */
		line_log_not_sent(l, p);
		count_failsafe(l, p->flags);
		hand_to_log(l, s, p);
		break;
	case PLC_VERDICT_BUFFERED:
		/* The verdict is final: its row goes to the database now, and
		 * the result to the PLC only once the row is committed. */
		line_log_early(l, p);
		break;
	}
}

/* A verdict from inspection; one for a part of an earlier PLC session is
 * logged and goes no further. */
static void collect_verdict(line *l, struct plc_state *s, struct vigil_part *p)
{
	if (plc_session_stale(s->session, p->seq)) {
		line_log_not_sent(l, p);
		hand_to_log(l, s, p);
		return;
	}
	take_verdict(l, s, p);
}

static void collect_verdicts(line *l, struct plc_state *s)
{
	void *item;

	while (bqueue_pop(l->q_results, &item, 0) == 0)
		collect_verdict(l, s, item);
}

/* ---- results ---- */

static int present(line *l, struct plc_state *s)
{
	int64_t t0 = vigil_now_us();
	const struct plc_result *r = plc_session_result(s->session);
	int rc = plc_write_result(l->plc, r);
	struct vigil_part *p;

	if (rc < 0) {
		g_warning("PLC: writing the result of part %u failed: %s (will retry)",
			  r->part_id, plc_strerror(rc));
		return rc;
	}
	p = plc_session_written(s->session);
	line_count_stage(l, LINE_STAGE_PLC_WRITE, (double)(vigil_now_us() - t0) / 1000.0);
	if (p) {
		p->t_plc_us = vigil_now_us();
		hand_to_log(l, s, p);
	} else if (s->cur_fs_ticket) {
		/* A fail-safe's row is complete but for the latency. */
		db_set_latency(l->db, s->cur_fs_ticket,
			       (double)(vigil_now_us() - s->cur_t_trigger_us) / 1000.0);
		s->cur_fs_ticket = 0;
	}
	return 0;
}

/* ---- quality alarms (app/alarm.h) ---- */

G_STATIC_ASSERT(LINE_ALARM_KINDS == ALARM_KINDS);

/* One result as the PLC got it: the alarms it raised or cleared go to the
 * log (warning, event) and are published for /api/status and /metrics.
 * What judged the part is its model version and job: a job switch that
 * keeps the package but changes its thresholds changes the yield as much
 * as a new package does. */
static void watch_quality(line *l, struct plc_state *s, int verdict, int defect_class,
			  const char *model_version, int job, int64_t t_wall_us)
{
	struct alarm_change ch[ALARM_KINDS];
	char judge[160];
	int n;

	if (model_version)
		g_snprintf(judge, sizeof judge, "%s (job %d)", model_version, job);
	n = alarm_monitor_add(s->alarms, verdict, defect_class, model_version ? judge : NULL,
			      t_wall_us ? t_wall_us : vigil_wall_us(), ch);

	for (int i = 0; i < n; i++) {
		if (ch[i].raised) {
			g_warning("quality alarm %s: %s", alarm_kind_name(ch[i].kind),
				  ch[i].message);
			line_post_event(l, alarm_event_kind(ch[i].kind), "%s", ch[i].message);
		} else {
			g_message("quality alarm %s cleared: %s", alarm_kind_name(ch[i].kind),
				  ch[i].message);
			line_post_event(l, "alarm-clear", "%s: %s", alarm_kind_name(ch[i].kind),
					ch[i].message);
		}
	}
	if (!n)
		return;
	g_mutex_lock(&l->stats_lock);
	l->alarms.active = alarm_monitor_active(s->alarms);
	for (int i = 0; i < n; i++) {
		enum alarm_kind k = ch[i].kind;

		l->alarms.since_us[k] = alarm_monitor_since(s->alarms, k);
		if (ch[i].raised)
			g_strlcpy(l->alarms.message[k], ch[i].message, sizeof l->alarms.message[k]);
		else
			l->alarms.message[k][0] = '\0';
	}
	g_mutex_unlock(&l->stats_lock);
}

void line_get_alarms(line *l, struct line_alarms *out)
{
	g_mutex_lock(&l->stats_lock);
	*out = l->alarms;
	g_mutex_unlock(&l->stats_lock);
}

/* Counts the result just committed. */
static void count_result(line *l, struct plc_state *s, const struct plc_session_step *st)
{
	struct vigil_part *p = st->part;

	s->cur_fs_ticket = 0;
	line_count(l, &l->st.results_written, 1);
	if (p) {
		line_count(l, p->verdict == VIGIL_VERDICT_ACCEPT ? &l->st.accepted
			 : p->verdict == VIGIL_VERDICT_MARGINAL ? &l->st.marginal
								 : &l->st.rejected, 1);
		if (p->flags & VIGIL_FLAG_FAILSAFE)
			count_failsafe(l, p->flags);
		/* A flat window is a dead sensor, a flat frame a capped lens or
		 * a dark light, not the product: its reject
		 * would raise a yield alarm that blames the parts and, once the
		 * sensor is mended, leave a run of rejects in the baseline that
		 * blunts the alarm for baseline_parts parts. The sensor's bit,
		 * error, flag and event say what happened. */
		if (!(p->flags & (VIGIL_FLAG_VIB_FLAT | VIGIL_FLAG_IMAGE_FLAT)))
			watch_quality(l, s, p->verdict, p->defect_class, p->model_version,
				      p->job, p->t_wall_us);
	} else {
		s->cur_fs_ticket = s->fs_row.ticket;
		s->cur_t_trigger_us = st->t_trigger_us;
		count_failsafe(l, VIGIL_FLAG_FAILSAFE | VIGIL_FLAG_DEADLINE);
		line_count(l, &l->st.rejected, 1);
		watch_quality(l, s, VIGIL_VERDICT_REJECT, VIGIL_CLASS_NONE, NULL, 0, 0);
	}
}

static void advance_results(line *l, struct plc_state *s, int64_t now)
{
	struct plc_session_step st;

	s->awaiting_commit = FALSE;
	if (!plc_link_connected(l->plc))
		return;
	plc_session_advance(s->session, now, (uint16_t)s->job, &st);
	if (st.acked) {
		struct vigil_part *p = st.acked;

		p->t_plc_us = vigil_now_us();
		hand_to_log(l, s, p);
	}
	if (st.committed) {
		const struct plc_result *r = plc_session_result(s->session);

		/* Kept before the PLC can see it: a restart goes on from this
		 * counter and knows this trigger was answered. */
		line_state_save_result(l, r->counter, r->trigger_counter, r->part_id);
		count_result(l, s, &st);
	}
	s->awaiting_commit = st.awaiting_row;
	if (st.write == PLC_SESSION_WRITE_RESULT)
		present(l, s);
	else if (st.write == PLC_SESSION_WRITE_CLEAR &&
		 plc_write_result(l->plc, plc_session_result(s->session)) == 0)
		plc_session_cleared(s->session);
}

/* ---- status ---- */

/* Ready means the line can inspect: every camera has delivered a frame and
 * the vibration source a sample since start. Before that a part would only
 * be a fail-safe reject of a source still starting (a live camera takes
 * seconds), so a PLC that waits for ready loses none. Once up, it stays: a
 * later fault shows in its own bits. */
static gboolean sources_up(line *l, struct plc_state *s)
{
	struct sensor_stats ss;

	if (s->sources_up)
		return TRUE;
	for (int i = 0; i < l->set.ncameras; i++) {
		struct capture_stats cs;

		capture_camera_stats(l->cameras[i], &cs);
		/* A triggered camera sends nothing before the first trigger,
		 * and the PLC triggers only once vigild is ready: a sequence
		 * camera whose pipeline plays is up. */
		if (!cs.frames && !(l->set.cameras[i].cfg.mode == CAPTURE_SEQUENCE && cs.playing))
			return FALSE;
	}
	sensor_source_stats(l->sensor, &ss);
	if (!ss.samples)
		return FALSE;
	g_message("line ready: every camera and the vibration source deliver");
	s->sources_up = TRUE;
	g_atomic_int_set(&l->sources_up, 1);
	return TRUE;
}

/* Server role: whether the PLC stopped polling; each change is reported. */
static gboolean plc_silent(line *l, struct plc_state *s, int64_t now)
{
	int64_t last = plc_link_last_request_us(l->plc);
	gboolean silent = now - (last ? last : s->started_us) >
			  (int64_t)l->set.plc.peer_timeout_ms * 1000;

	if (silent != s->plc_silent) {
		if (silent) {
			g_warning("PLC stopped polling: no request for %d ms (inspection and "
				  "logging go on)", l->set.plc.peer_timeout_ms);
			line_post_event(l, "plc-silent", "PLC stopped polling: no request "
					"for %d ms", l->set.plc.peer_timeout_ms);
		} else {
			g_message("PLC polling again");
			line_post_event(l, "plc-polling", "PLC polling again");
		}
		s->plc_silent = silent;
	}
	return silent;
}

static void make_status(line *l, struct plc_state *s, int64_t now, struct plc_status *st)
{
	struct plc_session_line in;

	watch_database(l, s);
	in = (struct plc_session_line){
		.faults = faults(l, s),
		.queue_full = s->queue_full,
		.job = (uint16_t)s->job,
		.job_refused = s->job_refused,
		.job_error = s->job_error,
		.job_loading = s->job_loading != 0,
		.heartbeat = s->heartbeat,
	};
	if (plc_link_role(l->plc) == PLC_ROLE_SERVER)
		in.silent = plc_silent(l, s, now);
	in.ready = sources_up(l, s);
	in.quality_alarm = alarm_monitor_active(s->alarms) != 0;
	in.stopping = g_atomic_int_get(&l->stop_triggers);
	plc_session_status(s->session, &in, st);
}

static void update_status(line *l, struct plc_state *s, int64_t now)
{
	struct plc_status st;
	gboolean due = now >= s->next_status_us;

	if (due) {
		s->heartbeat++;
		s->next_status_us = now + STATUS_PERIOD_US;
	}
	make_status(l, s, now, &st);
	/* A client writes on change (the PLC waits on trigger_seen and the
	 * valid bit) and for the heartbeat; a server's writes cost nothing. */
	if (!plc_link_connected(l->plc))
		return;
	if (!due && s->status_written && plc_link_role(l->plc) == PLC_ROLE_CLIENT &&
	    memcmp(&st, &s->last_status, sizeof st) == 0)
		return;
	if (plc_write_status(l->plc, &st) == 0) {
		s->last_status = st;
		s->status_written = TRUE;
	}
}

/* "host:port" or "device@baud", for messages. */
static char *link_name(line *l)
{
	if (l->set.plc.link.transport == PLC_TRANSPORT_RTU)
		return g_strdup_printf("%s@%d", l->set.plc.link.device, l->set.plc.link.baud);
	return g_strdup_printf("%s:%d", l->set.plc.link.host, l->set.plc.link.port);
}

/* Once per loss, not per attempt: a warning and a plc-link-down event. */
static void report_down(line *l, struct plc_state *s, int rc, const char *what)
{
	char *name;

	if (s->link_down)
		return;
	s->link_down = TRUE;
	name = link_name(l);
	g_warning("PLC %s: %s: %s (retrying, backoff up to %d ms)", name, what, plc_strerror(rc),
		  l->set.plc.reconnect_max_ms);
	line_post_event(l, "plc-link-down", "PLC %s: %s: %s", name, what, plc_strerror(rc));
	g_free(name);
}

/* A request succeeded: the link is up (vigil_plc_link_up), and if its loss
 * was reported, its return is. */
static void link_works(line *l, struct plc_state *s)
{
	gboolean server = plc_link_role(l->plc) == PLC_ROLE_SERVER;
	char *name;

	if (s->link_up)
		return;
	s->link_up = TRUE;
	name = link_name(l);
	if (s->link_down) {
		g_message("PLC %s: link up again", name);
		line_post_event(l, "plc-link-up", "PLC %s: link up again", name);
		s->link_down = FALSE;
	} else {
		g_message("PLC %s: %s (%s)", name, server ? "serving" : "connected",
			  l->set.plc.link.transport == PLC_TRANSPORT_RTU ? "rtu" : "tcp");
	}
	g_free(name);
}

/* Exponential backoff, capped: a PLC that is down is not hammered, one
 * that comes back is found within the cap. */
static void back_off(line *l, struct plc_state *s, int64_t now)
{
	s->backoff_ms = s->backoff_ms ? MIN(s->backoff_ms * 2, l->set.plc.reconnect_max_ms)
				      : l->set.plc.reconnect_min_ms;
	s->next_connect_us = now + (int64_t)s->backoff_ms * 1000;
}

static void keep_connected(line *l, struct plc_state *s, int64_t now)
{
	int rc;

	if (plc_link_connected(l->plc))
		return;
	if (s->link_open) {
		/* A failed request closed it. Every failure backs off, a
		 * connection that did not work for reconnect_max_ms included:
		 * a peer that accepts and drops at once is otherwise connected
		 * to again on every poll. Only a link that held that long is
		 * tried again at once. */
		s->link_open = FALSE;
		if (s->link_up && now - s->connected_us >= (int64_t)l->set.plc.reconnect_max_ms * 1000) {
			s->backoff_ms = 0;
			s->next_connect_us = now;
		} else {
			back_off(l, s, now);
		}
		report_down(l, s, s->link_error ? s->link_error : -ECONNRESET,
			    s->link_up ? "link lost" : "connection closed before any exchange");
		s->link_up = FALSE;
	}
	if (now < s->next_connect_us)
		return;
	rc = plc_link_connect(l->plc);
	if (rc < 0) {
		back_off(l, s, now);
		report_down(l, s, rc, plc_link_role(l->plc) == PLC_ROLE_SERVER ? "cannot listen"
									       : "cannot connect");
		g_atomic_int_set(&l->plc_tried, 1);
		return;
	}
	g_atomic_int_set(&l->plc_tried, 1);
	s->link_open = TRUE;
	s->connected_us = now;
	s->link_error = 0;
	s->next_status_us = 0;
	s->status_written = FALSE;
	/* A PLC (client role) holds the result block of vigild's last run:
	 * results go on from its counter, and a result a killed run left
	 * valid is taken down (plc_session_peer_result). A failed read closed
	 * the link: the next connect tries again. */
	if (plc_link_role(l->plc) == PLC_ROLE_CLIENT) {
		struct plc_result r;

		if (plc_read_result(l->plc, &r) == 0)
			plc_session_peer_result(s->session, &r);
	}
	/* The PLC may have lost our last writes (or restarted): present the
	 * result again, or its taken-down valid flag. */
	plc_session_relink(s->session);
}

/* Stopping, line_log_not_sent for plc_session_untaken: the rows of the
 * results never presented are marked so (VIGIL_FLAG_NOT_SENT). */
static void mark_not_sent(void *data, void *part)
{
	line_log_not_sent(data, part);
}

/* Stopping: says which results the PLC never took - presented and not
 * acknowledged, or never presented - as a warning and an event. Parts
 * still being inspected are marked by line_stop as they come. */
static void report_untaken(line *l, struct plc_state *s)
{
	char *msg = plc_session_untaken(s->session, mark_not_sent, l);

	if (msg) {
		g_warning("%s", msg);
		line_post_event(l, "plc-stop", "%s", msg);
	}
	g_free(msg);
}

gpointer line_plc_thread(gpointer data)
{
	line *l = data;
	struct plc_state s = { .l = l };
	gboolean server = plc_link_role(l->plc) == PLC_ROLE_SERVER;
	struct plc_trigger t;
	void *item;

	/* [plc] was checked: a session cannot be refused here. */
	s.session = plc_session_new(&l->set.plc, &session_ops, &s);
	if (!s.session) {
		g_critical("PLC: the session refused the [plc] settings");
		return NULL;
	}
	/* Results go on from the last run's counter, and a trigger it left
	 * unanswered is answered (docs/plc.md, restarts). */
	plc_session_resume(s.session, &l->kept_plc);
	g_queue_init(&s.overflow);
	s.alarms = alarm_monitor_new(&l->set.alarm);
	s.started_us = vigil_now_us();
	/* No job changes before this thread asks for one. */
	s.job = l->run_job;
	s.job_refused = (uint16_t)l->start_refused;
	s.job_error = (uint16_t)l->start_error;
	if (s.job)
		g_message("job %d selected (from %s or [plc] job)", s.job, l->set.plc_state_path);
	for (;;) {
		int64_t now;
		gboolean idle;

		line_beat(l, LINE_THREAD_PLC);
		now = vigil_now_us();
		keep_connected(l, &s, now);
		if (plc_link_connected(l->plc)) {
			int rc = plc_read_trigger(l->plc, &t);

			if (rc == 0) {
				link_works(l, &s);
				take_triggers(l, &s, &t);
			} else {
				s.link_error = rc;
			}
		}
		/* Up once a request has worked on this connection, not merely
		 * connected (docs/operations.md, vigil_plc_link_up). */
		g_atomic_int_set(&l->plc_up, plc_link_connected(l->plc) && s.link_up);
		take_job_reports(l, &s);
		collect_verdicts(l, &s);
		advance_results(l, &s, vigil_now_us());
		update_status(l, &s, vigil_now_us());
		hand_to_log(l, &s, NULL);

		/* Stopping waits for the presented result to be taken too: a
		 * result the PLC never read is no result (docs/plc.md). */
		idle = !plc_session_busy(s.session, plc_link_connected(l->plc)) &&
		       g_queue_is_empty(&s.overflow);
		if (g_atomic_int_get(&l->stop_all) &&
		    (idle || vigil_now_us() > l->grace_end_us))
			break;
		/* Sleep until the next poll: a server wakes early for a request
		 * from the PLC, a client for a finished part. */
		if (server && plc_link_connected(l->plc)) {
			/* A commit is a fraction of a millisecond away: look
			 * again soon rather than after a whole poll. */
			plc_serve(l->plc, s.awaiting_commit ? 0 : l->set.plc.poll_ms);
			if (s.awaiting_commit)
				g_usleep(COMMIT_POLL_US);
		} else if (bqueue_pop(l->q_results, &item, s.awaiting_commit ? COMMIT_POLL_US
					: (int64_t)l->set.plc.poll_ms * 1000) == 0) {
			collect_verdict(l, &s, item);
		}
	}
	report_untaken(l, &s);
	if ((item = plc_session_take_current(s.session)))
		g_queue_push_tail(&s.overflow, item);
	while (!g_queue_is_empty(&s.overflow))
		bqueue_push(l->q_log, g_queue_pop_head(&s.overflow), -1);
	while ((item = plc_session_pop_buffered(s.session)))
		bqueue_push(l->q_log, item, -1);
	if (plc_link_connected(l->plc)) {
		/* The last word: ready and running clear (stop_triggers), the
		 * rest as it is, the presented result still valid if the PLC
		 * has not taken it. */
		struct plc_status st;

		s.heartbeat++;
		make_status(l, &s, vigil_now_us(), &st);
		plc_write_status(l->plc, &st);
		if (server)
			plc_serve(l->plc, 0);
	}
	plc_session_free(s.session);
	alarm_monitor_free(s.alarms);
	return NULL;
}
