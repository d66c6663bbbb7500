#include <errno.h>
#include <math.h>
#include <stdio.h>

#include "app/line-private.h"

/* ---- the PLC thread: triggers in, results out, deadlines ----
 *
 * The same code drives both roles (plc/plc.h): in the client role the
 * reads and writes go to the PLC, in the server role they go to our own
 * registers, which the PLC polls. The handshake is docs/plc.md's. */

#define STATUS_PERIOD_US 500000
#define COMMIT_POLL_US 200   /* how often a result waiting for its row looks */

struct plc_state {
	GQueue outstanding;      /* struct outstanding *, trigger order */
	GQueue pending;          /* struct vigil_part * whose result awaits the PLC */
	GQueue overflow;         /* parts waiting for room in q_log */
	GQueue stale;            /* struct outstanding * of a PLC session that
				  * ended (new_session): logged, never presented */
	uint16_t last_trigger;
	gboolean have_trigger;
	uint64_t next_seq;

	/* The result presented to the PLC. Once committed its counter and
	 * content never change: after a failed write it is written again
	 * verbatim, so a write that landed before the link dropped is not
	 * taken for a second result. */
	struct plc_result cur;
	struct vigil_part *cur_part;   /* NULL for a fail-safe at the deadline */
	uint64_t cur_fs_ticket;        /* that fail-safe's row, for its latency */
	int64_t cur_t_trigger_us;
	gboolean have_cur, cur_written;
	gboolean clear_valid;          /* acknowledged: take VALID down when idle */
	uint16_t ack;

	uint16_t heartbeat, overruns;
	gboolean overrun_latched;
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
	int job_loading;         /* job requested from the loader, 0 = none */
	uint16_t job_refused;    /* job refused, 0 = none */
	uint16_t job_error;      /* enum plc_error_code of the refusal */
	unsigned last_part_flags;
	uint64_t rows_failed_seen, rows_logged_seen;
	gboolean db_fault;
	gboolean row_lost;         /* a row could not be queued, none logged since */
	gboolean awaiting_commit;  /* the next result waits for its row's commit */
	gboolean queue_full;       /* a part found q_inspect full; latched until one fits */
	gboolean sources_up;       /* every camera and the vibration source delivered once */
};

static struct outstanding *find_outstanding(struct plc_state *s, uint64_t seq)
{
	for (GList *it = s->outstanding.head; it; it = it->next) {
		struct outstanding *o = it->data;

		if (o->seq == seq)
			return o;
	}
	return NULL;
}

static struct vigil_part *find_pending(struct plc_state *s, uint64_t seq)
{
	for (GList *it = s->pending.head; it; it = it->next) {
		struct vigil_part *p = it->data;

		if (p->seq == seq)
			return p;
	}
	return NULL;
}

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

/* ---- jobs (recipes): line-jobs.c loads them ---- */

static void select_job(line *l, struct plc_state *s, uint16_t job)
{
	int want;

	/* Only a change of job_select is a request, so a refused package is
	 * not loaded again on every poll: to retry, the PLC writes 0 (or
	 * another job) and then the job again. */
	if (job == s->job_select)
		return;
	s->job_select = job;
	if (job == 0)
		return;
	if (job > LINE_MAX_JOBS || !l->jobs[job].number) {
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
	g_message("PLC selected job %u (model package %s)", job, l->jobs[job].package);
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

/* The faults that make every verdict a fail-safe reject and, under
 * stop_line, ask the PLC to stop the conveyor: those of the inspection
 * itself. A database fault is shown (status bits 2 and 6, error 4, event,
 * /metrics) but judges no part and stops nothing: a full or slow log must
 * not stop production or scrap good parts (docs/plc.md, Faults). */
#define VERDICT_FAULTS (~(1u << PLC_ERR_DATABASE))

static unsigned faults(line *l, struct plc_state *s, uint16_t *error)
{
	struct capture_stats cs;
	struct sensor_stats ss;
	unsigned w = 0;

	line_camera_stats(l, &cs);
	sensor_source_stats(l->sensor, &ss);
	*error = PLC_ERR_NONE;
	/* A camera that failed once and was restarted is healthy again. */
	if (!cs.up || (s->last_part_flags & VIGIL_FLAG_NO_FRAME))
		w |= 1u << PLC_ERR_CAMERA;
	if (ss.failed ||
	    (s->last_part_flags & (VIGIL_FLAG_NO_VIBRATION | VIGIL_FLAG_VIB_CLIPPED)))
		w |= 1u << PLC_ERR_SENSOR;
	if (s->last_part_flags & VIGIL_FLAG_MODEL_ERROR)
		w |= 1u << PLC_ERR_MODEL;
	if (s->db_fault)
		w |= 1u << PLC_ERR_DATABASE;
	for (uint16_t e = PLC_ERR_CAMERA; e <= PLC_ERR_DATABASE; e++)
		if (w & (1u << e)) {
			*error = e;
			break;
		}
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

/* How far the trigger counter may go back across the wrap (65535 -> 1 is
 * one step) and still be a step forwards, missed triggers and all; any
 * other step back is a restarted PLC program (docs/plc.md). A PLC that
 * waits for trigger_seen misses none. */
#define WRAP_STEPS 256

/* The PLC program restarted: its counter went to 0, or back. Nothing of
 * its previous session is presented as new: the result up now is taken
 * down (valid 0, counter kept, so the next result is a change whatever
 * the PLC remembers); the results waiting behind it, and the verdicts of
 * parts still in inspection when they come, are logged as never sent
 * (line_log_not_sent). No counter of the previous session counts as
 * missed or skips a frame: the restarted program did not trigger the
 * camera for them. */
static void new_session(line *l, struct plc_state *s, uint16_t counter)
{
	unsigned dropped = 0;
	GList *it, *next;

	while (!g_queue_is_empty(&s->pending)) {
		struct vigil_part *p = g_queue_pop_head(&s->pending);
		struct outstanding *o = find_outstanding(s, p->seq);

		if (o) {
			g_queue_remove(&s->outstanding, o);
			g_free(o);
		}
		line_log_not_sent(l, p);
		hand_to_log(l, s, p);
		dropped++;
	}
	for (it = s->outstanding.head; it; it = next) {
		struct outstanding *o = it->data;

		next = it->next;
		if (o->failsafe_sent)
			continue; /* the PLC had its result: take_verdict logs the late verdict */
		g_queue_unlink(&s->outstanding, it);
		dropped++;
		if (o->part)
			g_queue_push_tail_link(&s->stale, it); /* its verdict is to come */
		else
			g_list_free_full(it, g_free);
	}
	/* An acknowledged result is the PLC's (advance_results takes it down). */
	if (s->have_cur && s->ack != s->cur.counter) {
		if (s->cur_part) {
			/* Committed, never written: the PLC never saw it. */
			line_log_not_sent(l, s->cur_part);
			hand_to_log(l, s, s->cur_part);
			s->cur_part = NULL;
		}
		s->cur_fs_ticket = 0;
		s->have_cur = FALSE;
		s->cur.valid = 0;
		s->clear_valid = TRUE;
		dropped++;
	}
	g_warning("PLC trigger counter went from %u to %u: the PLC program restarted; new "
		  "session, %u result(s) of the previous one taken down or never sent",
		  s->last_trigger, counter, dropped);
	line_post_event(l, "plc-restart", "PLC trigger counter went from %u to %u: new PLC "
			"session; %u result(s) of the previous one taken down or never sent",
			s->last_trigger, counter, dropped);
}

static void take_triggers(line *l, struct plc_state *s, const struct plc_trigger *t)
{
	uint16_t delta;

	s->ack = t->ack;
	select_job(l, s, t->job);
	if (!s->have_trigger) {
		/* Whatever the PLC shows when we connect was raised before us. */
		s->have_trigger = TRUE;
		s->last_trigger = t->counter;
		return;
	}
	if (t->counter == s->last_trigger || g_atomic_int_get(&l->stop_triggers))
		return;
	/* Counters run 1..65535, then 1 again; 0 only before the first
	 * trigger of a session. */
	if (t->counter == 0 ||
	    (t->counter < s->last_trigger && t->counter + 65535 - s->last_trigger > WRAP_STEPS)) {
		/* The new session starts as vigild's own start does. */
		new_session(l, s, t->counter);
		s->last_trigger = 0;
		if (t->counter == 0)
			return;
	}
	if (s->last_trigger == 0) {
		/* As a server we start with zeroed registers: the first counter
		 * the PLC writes is its first part for us, whatever its value. */
		delta = plc_link_role(l->plc) == PLC_ROLE_SERVER ? 1 : t->counter;
	} else {
		delta = t->counter > s->last_trigger ? t->counter - s->last_trigger
						     : (uint16_t)(t->counter + 65535 - s->last_trigger);
	}
	if (delta > 1) {
		g_warning("PLC trigger counter jumped from %u to %u: %u trigger(s) missed",
			  s->last_trigger, t->counter, delta - 1);
		line_count(l, &l->st.missed_triggers, delta - 1);
		s->next_seq += delta - 1; /* a triggered camera took those frames anyway */
	}
	s->last_trigger = t->counter;

	{
		struct vigil_part *p = line_part_new();
		struct outstanding *o = g_new0(struct outstanding, 1);

		p->part_id = t->part_id;
		p->trigger_counter = t->counter;
		p->job = (uint16_t)s->job; /* inspection sets the job that judges it */
		p->seq = s->next_seq++;
		p->t_trigger_us = vigil_now_us();
		p->t_wall_us = vigil_wall_us();
		o->seq = p->seq;
		o->part_id = p->part_id;
		o->trigger_counter = p->trigger_counter;
		o->deadline_us = p->t_trigger_us + (int64_t)l->plc_set.reject_deadline_ms * 1000;
		o->part = p;
		g_queue_push_tail(&s->outstanding, o);
		line_count(l, &l->st.triggers, 1);
		if (bqueue_push(l->q_inspect, p, 0) < 0) {
			/* Inspection is saturated: the part cannot be judged in time. */
			g_warning("part %u: inspection queue full, fail-safe reject", p->part_id);
			p->verdict = VIGIL_VERDICT_REJECT;
			p->flags |= VIGIL_FLAG_FAILSAFE | VIGIL_FLAG_QUEUE_FULL;
			p->score = 1.0f;
			s->queue_full = TRUE;
			bqueue_push(l->q_results, p, -1);
		} else {
			s->queue_full = FALSE;
		}
	}
}

/* ---- verdicts ---- */

/* Counts a fail-safe reject under its cause, read from its flags. */
static void count_failsafe(line *l, uint32_t flags)
{
	enum line_failsafe_cause c = flags & VIGIL_FLAG_DEADLINE     ? LINE_FAILSAFE_DEADLINE
				   : flags & VIGIL_FLAG_QUEUE_FULL   ? LINE_FAILSAFE_QUEUE_FULL
				   : flags & VIGIL_FLAG_NOT_SENT     ? LINE_FAILSAFE_OVERRUN
				   : flags & VIGIL_FLAG_NO_FRAME     ? LINE_FAILSAFE_NO_FRAME
				   : flags & (VIGIL_FLAG_NO_VIBRATION | VIGIL_FLAG_VIB_CLIPPED)
					   ? LINE_FAILSAFE_NO_VIBRATION
				   : flags & VIGIL_FLAG_MODEL_ERROR  ? LINE_FAILSAFE_MODEL_ERROR
								     : LINE_FAILSAFE_FAULT;

	g_mutex_lock(&l->stats_lock);
	l->st.failsafe++;
	l->st.failsafe_by[c]++;
	g_mutex_unlock(&l->stats_lock);
}

static void take_verdict(line *l, struct plc_state *s, struct vigil_part *p)
{
	struct outstanding *o = find_outstanding(s, p->seq);
	uint16_t err;

	s->last_part_flags = p->flags;
	if (!(p->flags & VIGIL_FLAG_FAILSAFE) && (faults(l, s, &err) & VERDICT_FAULTS)) {
		/* Both policies reject while a fault lasts; stop_line also
		 * asks the PLC to stop the conveyor (status bit). */
		p->verdict = VIGIL_VERDICT_REJECT;
		p->flags |= VIGIL_FLAG_FAILSAFE;
	}
	if (o && o->failsafe) {
		/* Too late: the PLC has (or is about to get) a fail-safe reject
		 * for it, whose row is queued; the log stores the model's
		 * verdict beside it. */
		p->verdict = VIGIL_VERDICT_REJECT;
		p->flags |= VIGIL_FLAG_FAILSAFE | VIGIL_FLAG_DEADLINE;
		p->score = 1.0f;
		p->t_plc_us = o->t_plc_us;
		o->part = NULL;
		if (o->failsafe_sent) {
			g_queue_remove(&s->outstanding, o);
			g_free(o);
		}
		hand_to_log(l, s, p);
		return;
	}
	/* The buffer holds result_buffer results behind the presented one;
	 * while none is presented, the oldest pending part is about to be. */
	if (l->plc_set.result_buffer >= 0 &&
	    g_queue_get_length(&s->pending) + (s->have_cur ? 1u : 0u) >=
		    (guint)l->plc_set.result_buffer + 1) {
		/* The PLC is not taking results: the buffer is full. The part is
		 * logged, its result never reaches the PLC, and the PLC sees the
		 * overrun count and bit. */
		if (s->overruns < UINT16_MAX)
			s->overruns++;
		s->overrun_latched = TRUE;
		g_warning("part %u: result buffer full (%d waiting, PLC has not acknowledged "
			  "result %u): result overrun, logged but not sent",
			  p->part_id, l->plc_set.result_buffer, s->cur.counter);
		/* Its row says what the PLC is left with: no result, which it
		 * must treat as a reject (docs/plc.md, Overrun). */
		line_log_not_sent(l, p);
		count_failsafe(l, p->flags);
		if (o) {
			g_queue_remove(&s->outstanding, o);
			g_free(o);
		}
		hand_to_log(l, s, p);
		return;
	}
	if (o)
		o->has_verdict = TRUE;
	/* The verdict is final: its row goes to the database now, and the
	 * result to the PLC only once the row is committed (commit_next). */
	line_log_early(l, p);
	g_queue_push_tail(&s->pending, p);
}

/* A verdict from inspection; one for a part of an earlier PLC session
 * (new_session) is logged and goes no further. */
static void collect_verdict(line *l, struct plc_state *s, struct vigil_part *p)
{
	for (GList *it = s->stale.head; it; it = it->next) {
		struct outstanding *o = it->data;

		if (o->seq == p->seq) {
			g_queue_delete_link(&s->stale, it);
			g_free(o);
			line_log_not_sent(l, p);
			hand_to_log(l, s, p);
			return;
		}
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
	int rc = plc_write_result(l->plc, &s->cur);

	if (rc < 0) {
		g_warning("PLC: writing the result of part %u failed: %s (will retry)",
			  s->cur.part_id, plc_strerror(rc));
		return rc;
	}
	s->cur_written = TRUE;
	line_count_stage(l, LINE_STAGE_PLC_WRITE, (double)(vigil_now_us() - t0) / 1000.0);
	if (s->cur_part) {
		s->cur_part->t_plc_us = vigil_now_us();
		hand_to_log(l, s, s->cur_part);
		s->cur_part = NULL;
	} else if (s->cur_fs_ticket) {
		/* A fail-safe's row is complete but for the latency. */
		db_set_latency(l->db, s->cur_fs_ticket,
			       (double)(vigil_now_us() - s->cur_t_trigger_us) / 1000.0);
		s->cur_fs_ticket = 0;
	}
	return 0;
}

/* Commits the next result in trigger order, if there is one: the verdict
 * of the oldest part, or its fail-safe reject once its deadline passed. */
static gboolean commit_next(line *l, struct plc_state *s, int64_t now)
{
	struct outstanding *o = NULL;
	struct vigil_part *p;

	for (GList *it = s->outstanding.head; it; it = it->next) {
		o = it->data;
		if (!o->failsafe_sent)
			break;
		o = NULL;
	}
	if (!o)
		return FALSE;
	p = o->has_verdict ? find_pending(s, o->seq) : NULL;
	if (!p && now < o->deadline_us)
		return FALSE;
	if (!p && !o->failsafe) {
		/* The deadline decides: a fail-safe reject, whatever the model
		 * says later. Its row goes first, as a verdict's would. */
		g_warning("part %u: no verdict within %d ms, fail-safe reject", o->part_id,
			  l->plc_set.reject_deadline_ms);
		line_log_failsafe(l, o);
	}
	if (!line_row_committed(l, p ? &((struct line_part *)p)->row : &o->fs_row, o->part_id,
				now)) {
		s->awaiting_commit = TRUE;
		return FALSE;
	}

	s->cur = (struct plc_result){
		.counter = plc_counter_next(s->cur.counter),
		.part_id = o->part_id,
		.trigger_counter = o->trigger_counter,
		.verdict = p ? (uint16_t)p->verdict : VIGIL_VERDICT_REJECT,
		.defect_class = p ? (uint16_t)p->defect_class : VIGIL_CLASS_NONE,
		.score_milli = p ? (uint16_t)lrintf(CLAMP(p->score, 0.0f, 1.0f) * 1000.0f) : 1000,
		.flags = p ? (uint16_t)(p->flags & 0xffff) : VIGIL_FLAG_FAILSAFE,
		.valid = 1,
		.job = p ? p->job : (uint16_t)s->job,
	};
	s->have_cur = TRUE;
	s->cur_written = FALSE;
	s->clear_valid = FALSE;
	s->cur_fs_ticket = 0;
	line_count(l, &l->st.results_written, 1);
	if (p) {
		g_queue_remove(&s->pending, p);
		g_queue_remove(&s->outstanding, o);
		g_free(o);
		s->cur_part = p;
		line_count(l, p->verdict == VIGIL_VERDICT_ACCEPT ? &l->st.accepted
			 : p->verdict == VIGIL_VERDICT_MARGINAL ? &l->st.marginal
								 : &l->st.rejected, 1);
		if (p->flags & VIGIL_FLAG_FAILSAFE)
			count_failsafe(l, p->flags);
	} else {
		/* Its verdict, when it comes, is logged beside this reject. */
		o->failsafe_sent = TRUE;
		o->t_plc_us = now;
		s->cur_part = NULL;
		s->cur_fs_ticket = o->fs_row.ticket;
		s->cur_t_trigger_us = o->deadline_us - (int64_t)l->plc_set.reject_deadline_ms * 1000;
		if (!o->part) {
			/* The late verdict already went to the log. */
			g_queue_remove(&s->outstanding, o);
			g_free(o);
		}
		count_failsafe(l, VIGIL_FLAG_FAILSAFE | VIGIL_FLAG_DEADLINE);
		line_count(l, &l->st.rejected, 1);
	}
	return TRUE;
}

static void advance_results(line *l, struct plc_state *s, int64_t now)
{
	s->awaiting_commit = FALSE;
	if (!plc_link_connected(l->plc))
		return;
	if (s->have_cur && s->ack == s->cur.counter) {
		/* Acknowledged (a second ack of the same counter changes
		 * nothing). If the write was in doubt, it landed. */
		if (s->cur_part) {
			s->cur_part->t_plc_us = vigil_now_us();
			hand_to_log(l, s, s->cur_part);
			s->cur_part = NULL;
		}
		s->have_cur = FALSE;
		s->cur.valid = 0;
		s->clear_valid = TRUE;
	}
	if (s->have_cur) {
		if (!s->cur_written)
			present(l, s);
		return;
	}
	if (commit_next(l, s, now)) {
		present(l, s);
	} else if (s->clear_valid) {
		/* Nothing more: take the valid flag down on the last result. */
		if (plc_write_result(l->plc, &s->cur) == 0)
			s->clear_valid = FALSE;
	}
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
	for (int i = 0; i < l->ncameras; i++) {
		struct capture_stats cs;

		capture_camera_stats(l->cameras[i].cam, &cs);
		if (!cs.frames)
			return FALSE;
	}
	sensor_source_stats(l->sensor, &ss);
	if (!ss.samples)
		return FALSE;
	g_message("line ready: every camera and the vibration source deliver");
	s->sources_up = TRUE;
	return TRUE;
}

static void make_status(line *l, struct plc_state *s, int64_t now, struct plc_status *st)
{
	uint16_t error;
	unsigned f;
	uint16_t w = PLC_STATUS_READY | PLC_STATUS_RUNNING | PLC_STATUS_MODEL_LOADED;

	watch_database(l, s);
	f = faults(l, s, &error);
	if (!(f & (1u << PLC_ERR_CAMERA)))
		w |= PLC_STATUS_CAMERA_OK;
	if (!(f & (1u << PLC_ERR_SENSOR)))
		w |= PLC_STATUS_SENSOR_OK;
	if (!(f & (1u << PLC_ERR_DATABASE)))
		w |= PLC_STATUS_DB_OK;
	if (f & (1u << PLC_ERR_MODEL))
		w &= (uint16_t)~PLC_STATUS_MODEL_LOADED;
	if (f)
		w |= PLC_STATUS_FAULT;
	if ((f & VERDICT_FAULTS) && l->plc_set.fault_policy == PLC_FAULT_STOP_LINE)
		w |= PLC_STATUS_STOP_LINE;
	if (s->have_cur)
		w |= PLC_STATUS_RESULTS_VALID;
	if (s->overrun_latched && !s->have_cur && g_queue_is_empty(&s->pending))
		s->overrun_latched = FALSE; /* the PLC caught up */
	if (s->overrun_latched) {
		w |= PLC_STATUS_OVERRUN;
		if (!error)
			error = PLC_ERR_OVERRUN;
	}
	if (s->queue_full) {
		w |= PLC_STATUS_QUEUE_FULL | PLC_STATUS_FAULT;
		if (!error)
			error = PLC_ERR_QUEUE_FULL;
	}
	if (s->job_refused) {
		w |= PLC_STATUS_JOB_INVALID;
		if (!error)
			error = s->job_error;
	}
	if (s->job_loading)
		w |= PLC_STATUS_JOB_LOADING;
	if (plc_link_role(l->plc) == PLC_ROLE_SERVER) {
		int64_t last = plc_link_last_request_us(l->plc);
		gboolean silent = now - (last ? last : s->started_us) >
				  (int64_t)l->plc_set.peer_timeout_ms * 1000;

		if (silent != s->plc_silent) {
			if (silent) {
				g_warning("PLC stopped polling: no request for %d ms (inspection and "
					  "logging go on)", l->plc_set.peer_timeout_ms);
				line_post_event(l, "plc-silent", "PLC stopped polling: no request "
						"for %d ms", l->plc_set.peer_timeout_ms);
			} else {
				g_message("PLC polling again");
				line_post_event(l, "plc-polling", "PLC polling again");
			}
			s->plc_silent = silent;
		}
		if (silent) {
			w |= PLC_STATUS_PLC_SILENT;
			if (!error)
				error = PLC_ERR_PLC_SILENT;
		}
	}
	if (!sources_up(l, s))
		w &= (uint16_t)~PLC_STATUS_READY;
	if (g_atomic_int_get(&l->stop_triggers))
		w &= (uint16_t)~(PLC_STATUS_READY | PLC_STATUS_RUNNING);
	*st = (struct plc_status){
		.heartbeat = s->heartbeat,
		.word = w,
		.error = error,
		.job = (uint16_t)s->job,
		.trigger_seen = s->last_trigger,
		.buffered = (uint16_t)MIN(g_queue_get_length(&s->pending) + (s->have_cur ? 1 : 0),
					  UINT16_MAX),
		.capacity = (uint16_t)l->plc_set.result_buffer,
		.overruns = s->overruns,
	};
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
	if (l->plc_set.link.transport == PLC_TRANSPORT_RTU)
		return g_strdup_printf("%s@%d", l->plc_set.link.device, l->plc_set.link.baud);
	return g_strdup_printf("%s:%d", l->plc_set.link.host, l->plc_set.link.port);
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
		  l->plc_set.reconnect_max_ms);
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
			  l->plc_set.link.transport == PLC_TRANSPORT_RTU ? "rtu" : "tcp");
	}
	g_free(name);
}

/* Exponential backoff, capped: a PLC that is down is not hammered, one
 * that comes back is found within the cap. */
static void back_off(line *l, struct plc_state *s, int64_t now)
{
	s->backoff_ms = s->backoff_ms ? MIN(s->backoff_ms * 2, l->plc_set.reconnect_max_ms)
				      : l->plc_set.reconnect_min_ms;
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
		if (s->link_up && now - s->connected_us >= (int64_t)l->plc_set.reconnect_max_ms * 1000) {
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
		return;
	}
	s->link_open = TRUE;
	s->connected_us = now;
	s->link_error = 0;
	s->next_status_us = 0;
	s->status_written = FALSE;
	/* The PLC may have lost our last writes (or restarted): present the
	 * result again, or its taken-down valid flag. */
	if (s->have_cur)
		s->cur_written = FALSE;
	else if (s->cur.counter)
		s->clear_valid = TRUE;
}

/* Stopping: says which results the PLC never took - presented and not
 * acknowledged, or never presented - as a warning and an event; the rows
 * of those never presented are marked so (VIGIL_FLAG_NOT_SENT). Parts
 * still being inspected are marked by line_stop as they come. */
static void report_untaken(line *l, struct plc_state *s)
{
	GString *msg = g_string_new("stopped with results the PLC never took:");
	unsigned n = 0;

	if (s->have_cur)
		g_string_append_printf(msg, " result %u (part %u) presented, not acknowledged;",
				       s->cur.counter, s->cur.part_id);
	g_string_append(msg, " never presented:");
	for (GList *it = s->pending.head; it; it = it->next) {
		struct vigil_part *p = it->data;

		line_log_not_sent(l, p);
		if (n++ < 20)
			g_string_append_printf(msg, " part %u", p->part_id);
	}
	for (GList *it = s->outstanding.head; it; it = it->next) {
		struct outstanding *o = it->data;

		if (!o->failsafe_sent && !o->has_verdict && n++ < 20)
			g_string_append_printf(msg, " part %u", o->part_id);
	}
	g_string_append(msg, n == 0 ? " none" : n > 20 ? " ..." : "");
	if (n || s->have_cur) {
		g_warning("%s", msg->str);
		line_post_event(l, "plc-stop", "%s", msg->str);
	}
	g_string_free(msg, TRUE);
}

gpointer line_plc_thread(gpointer data)
{
	line *l = data;
	struct plc_state s = { 0 };
	gboolean server = plc_link_role(l->plc) == PLC_ROLE_SERVER;
	struct plc_trigger t;
	void *item;

	g_queue_init(&s.outstanding);
	g_queue_init(&s.pending);
	g_queue_init(&s.overflow);
	g_queue_init(&s.stale);
	s.started_us = vigil_now_us();
	/* No job changes before this thread asks for one. */
	s.job = l->run_job;
	s.job_refused = (uint16_t)l->start_refused;
	s.job_error = (uint16_t)l->start_error;
	if (s.job)
		g_message("job %d selected (from %s or [plc] job)", s.job, l->plc_state_path);
	for (;;) {
		int64_t now = vigil_now_us();
		gboolean idle;

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
		idle = g_queue_is_empty(&s.outstanding) && g_queue_is_empty(&s.pending) &&
		       g_queue_is_empty(&s.overflow) && !s.cur_part &&
		       (!s.have_cur || !plc_link_connected(l->plc));
		if (g_atomic_int_get(&l->stop_all) &&
		    (idle || vigil_now_us() > l->grace_end_us))
			break;
		/* Sleep until the next poll: a server wakes early for a request
		 * from the PLC, a client for a finished part. */
		if (server && plc_link_connected(l->plc)) {
			/* A commit is a fraction of a millisecond away: look
			 * again soon rather than after a whole poll. */
			plc_serve(l->plc, s.awaiting_commit ? 0 : l->plc_set.poll_ms);
			if (s.awaiting_commit)
				g_usleep(COMMIT_POLL_US);
		} else if (bqueue_pop(l->q_results, &item, s.awaiting_commit ? COMMIT_POLL_US
					: (int64_t)l->plc_set.poll_ms * 1000) == 0) {
			collect_verdict(l, &s, item);
		}
	}
	report_untaken(l, &s);
	if (s.cur_part)
		g_queue_push_tail(&s.overflow, s.cur_part);
	while (!g_queue_is_empty(&s.overflow))
		bqueue_push(l->q_log, g_queue_pop_head(&s.overflow), -1);
	g_queue_clear_full(&s.outstanding, g_free);
	g_queue_clear_full(&s.stale, g_free);
	while (!g_queue_is_empty(&s.pending))
		bqueue_push(l->q_log, g_queue_pop_head(&s.pending), -1);
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
	return NULL;
}
