/* The PLC session: docs/plc.md's handshake on plain values (plc.h). */
#include "plc/plc.h"

#include <errno.h>
#include <math.h>

#include <glib.h>

#include "core/part.h"

/* How far the trigger counter may go back across the wrap (65535 -> 1 is
 * one step) and still be a step forwards, missed triggers and all; any
 * other step back is a restarted PLC program (docs/plc.md). A PLC that
 * waits for trigger_seen misses none. */
#define WRAP_STEPS 256

/* A part handed to inspection, until its result is presented. */
struct outstanding {
	uint64_t seq;
	uint32_t part_id;
	uint16_t trigger_counter;
	int64_t t_trigger_us, deadline_us;
	gboolean has_verdict;     /* its verdict waits in pending */
	/* Past the deadline without a verdict: its fail-safe reject is
	 * decided and its row queued by the caller; then sent to the PLC. */
	gboolean failsafe, failsafe_sent;
	/* The caller's part, until its verdict is handed back; NULL once its
	 * late verdict has been. */
	void *part;
	int64_t t_plc_us;         /* when its fail-safe went out */
};

/* A verdict in the result buffer. */
struct pending {
	struct plc_verdict v;
	void *part;
};

struct plc_session {
	enum plc_role role;
	int64_t deadline_us;      /* reject_deadline_ms */
	int result_buffer;
	enum plc_fault_policy fault_policy;
	struct plc_session_ops ops;
	void *data;

	GQueue outstanding;       /* struct outstanding *, trigger order */
	GQueue pending;           /* struct pending *, as the verdicts came */
	GQueue stale;             /* struct outstanding * of a PLC session that
				   * ended: logged, never presented */
	uint16_t last_trigger;
	gboolean have_trigger;
	uint64_t next_seq;
	uint64_t next_unanswered; /* seqs of unanswered triggers, never a frame's */
	/* What the previous run of vigild left (plc_session_resume). */
	struct plc_session_kept kept;

	/* The result presented to the PLC. Once committed its counter and
	 * content never change: after a failed write it is written again
	 * verbatim, so a write that landed before the link dropped is not
	 * taken for a second result. */
	struct plc_result cur;
	void *cur_part;           /* NULL for a fail-safe at the deadline */
	gboolean have_cur, cur_written;
	gboolean clear_valid;     /* acknowledged: take VALID down when idle */
	gboolean presented_any;   /* a result was committed in this run */
	uint16_t ack;

	uint16_t overruns;
	gboolean overrun_latched;
};

plc_session *plc_session_new(const struct plc_settings *set, const struct plc_session_ops *ops,
			     void *data)
{
	plc_session *s;

	if (!set || !ops || !ops->not_sent || !ops->failsafe || !ops->row_committed ||
	    set->reject_deadline_ms < 1 || set->result_buffer < 0 ||
	    set->result_buffer > UINT16_MAX)
		return NULL;
	s = g_new0(plc_session, 1);
	s->role = set->link.role;
	s->deadline_us = (int64_t)set->reject_deadline_ms * 1000;
	s->result_buffer = set->result_buffer;
	s->fault_policy = set->fault_policy;
	s->ops = *ops;
	s->data = data;
	g_queue_init(&s->outstanding);
	g_queue_init(&s->pending);
	g_queue_init(&s->stale);
	return s;
}

void plc_session_resume(plc_session *s, const struct plc_session_kept *k)
{
	s->kept = *k;
	/* Results go on from the last counter the PLC was shown: it detects a
	 * new result by a change, so starting again at 1 would hide one from
	 * a PLC whose last counter was 1 (docs/plc.md, restarts). */
	if (!s->presented_any && !s->have_cur)
		s->cur.counter = k->result_counter;
}

void plc_session_peer_result(plc_session *s, const struct plc_result *r)
{
	if (s->presented_any || s->have_cur)
		return;
	/* The PLC compares the next counter against the one it holds, which
	 * may not be the one kept (a state file lost or older than the
	 * PLC's registers); a result left valid by a run that was killed is
	 * taken down with its content kept, as a clean stop leaves it. */
	if (r->counter) {
		s->cur = *r;
		s->cur.valid = 0;
	}
	if (r->valid)
		s->clear_valid = TRUE;
}

void plc_session_free(plc_session *s)
{
	if (!s)
		return;
	g_queue_clear_full(&s->outstanding, g_free);
	g_queue_clear_full(&s->pending, g_free);
	g_queue_clear_full(&s->stale, g_free);
	g_free(s);
}

static struct outstanding *find_outstanding(plc_session *s, uint64_t seq)
{
	for (GList *it = s->outstanding.head; it; it = it->next) {
		struct outstanding *o = it->data;

		if (o->seq == seq)
			return o;
	}
	return NULL;
}

static struct pending *find_pending(plc_session *s, uint64_t seq)
{
	for (GList *it = s->pending.head; it; it = it->next) {
		struct pending *p = it->data;

		if (p->v.seq == seq)
			return p;
	}
	return NULL;
}

/* ---- triggers ---- */

/* The PLC program restarted: its counter went to 0, or back. Nothing of
 * its previous session is presented as new: the result up now is taken
 * down (valid 0, counter kept, so the next result is a change whatever
 * the PLC remembers); the results waiting behind it, and the verdicts of
 * parts still in inspection when they come, are never sent. No counter of
 * the previous session counts as missed or skips a frame: the restarted
 * program did not trigger the camera for them. Returns how many results
 * were dropped. */
static unsigned new_session(plc_session *s)
{
	unsigned dropped = 0;
	GList *it, *next;

	while (!g_queue_is_empty(&s->pending)) {
		struct pending *p = g_queue_pop_head(&s->pending);
		struct outstanding *o = find_outstanding(s, p->v.seq);

		if (o) {
			g_queue_remove(&s->outstanding, o);
			g_free(o);
		}
		s->ops.not_sent(s->data, p->part);
		g_free(p);
		dropped++;
	}
	for (it = s->outstanding.head; it; it = next) {
		struct outstanding *o = it->data;

		next = it->next;
		if (o->failsafe_sent)
			continue; /* the PLC had its result: the late verdict is logged */
		g_queue_unlink(&s->outstanding, it);
		dropped++;
		if (o->part)
			g_queue_push_tail_link(&s->stale, it); /* its verdict is to come */
		else
			g_list_free_full(it, g_free);
	}
	/* An acknowledged result is the PLC's (plc_session_advance takes it
	 * down). */
	if (s->have_cur && s->ack != s->cur.counter) {
		if (s->cur_part) {
			/* Committed, never written: the PLC never saw it. */
			s->ops.not_sent(s->data, s->cur_part);
			s->cur_part = NULL;
		}
		s->have_cur = FALSE;
		s->cur.valid = 0;
		s->clear_valid = TRUE;
		dropped++;
	}
	return dropped;
}

/* Steps forward from counter a to counter b, both in 1..65535 (65535 -> 1
 * is one step); 0 when they are equal. */
static uint16_t counter_step(uint16_t a, uint16_t b)
{
	return b >= a ? (uint16_t)(b - a) : (uint16_t)(b + 65535 - a);
}

void plc_session_take_trigger(plc_session *s, const struct plc_trigger *t, int take_new,
			      struct plc_trigger_news *news)
{
	uint16_t delta;

	*news = (struct plc_trigger_news){ .from = s->last_trigger };
	s->ack = t->ack;
	if (!s->have_trigger) {
		/* Whatever the PLC shows when we connect was raised before us:
		 * it is the baseline. If it is not the trigger the previous run
		 * answered last, it was raised while vigild was down; its images
		 * are gone, so it gets a fail-safe reject rather than nothing. */
		s->have_trigger = TRUE;
		s->last_trigger = t->counter;
		if (t->counter == 0)
			return;
		if (!s->kept.have_trigger)
			news->adopted = 1;
		else if ((t->counter != s->kept.trigger_counter ||
			  t->part_id != s->kept.part_id) && take_new) {
			news->new_part = news->unanswered = 1;
			/* Counters raised before it while vigild was down got
			 * nothing: they are missed, counted as a jump is. A
			 * step back beyond the wrap is a PLC program that
			 * restarted too: counted from 0, as after a restart. */
			delta = counter_step(s->kept.trigger_counter, t->counter);
			news->missed_from = s->kept.trigger_counter;
			if (t->counter < s->kept.trigger_counter && delta > WRAP_STEPS) {
				delta = t->counter;
				news->missed_from = 0;
			}
			if (delta > 1)
				news->missed = delta - 1;
		}
		return;
	}
	if (t->counter == s->last_trigger || !take_new)
		return;
	/* Counters run 1..65535, then 1 again; 0 only before the first
	 * trigger of a session. */
	if (t->counter == 0 ||
	    (t->counter < s->last_trigger && t->counter + 65535 - s->last_trigger > WRAP_STEPS)) {
		/* The new session starts as the first one did. */
		news->restarted = 1;
		news->dropped = new_session(s);
		s->last_trigger = 0;
		if (t->counter == 0)
			return;
	}
	if (s->last_trigger == 0) {
		/* As a server we start with zeroed registers: the first counter
		 * the PLC writes is its first part for us, whatever its value. */
		delta = s->role == PLC_ROLE_SERVER ? 1 : t->counter;
	} else {
		delta = counter_step(s->last_trigger, t->counter);
	}
	if (delta > 1) {
		news->missed = delta - 1;
		news->missed_from = s->last_trigger;
		s->next_seq += delta - 1; /* a triggered camera took those frames anyway */
	}
	s->last_trigger = t->counter;
	news->new_part = 1;
}

static uint64_t track(plc_session *s, uint64_t seq, uint32_t part_id,
		      uint16_t trigger_counter, int64_t t_trigger_us, void *part)
{
	struct outstanding *o = g_new0(struct outstanding, 1);

	o->seq = seq;
	o->part_id = part_id;
	o->trigger_counter = trigger_counter;
	o->t_trigger_us = t_trigger_us;
	o->deadline_us = t_trigger_us + s->deadline_us;
	o->part = part;
	g_queue_push_tail(&s->outstanding, o);
	return o->seq;
}

uint64_t plc_session_track(plc_session *s, uint32_t part_id, uint16_t trigger_counter,
			   int64_t t_trigger_us, void *part)
{
	return track(s, s->next_seq++, part_id, trigger_counter, t_trigger_us, part);
}

uint64_t plc_session_track_unanswered(plc_session *s, uint32_t part_id,
				      uint16_t trigger_counter, int64_t t_trigger_us, void *part)
{
	/* Its frame, if a camera took one, was taken while vigild was down:
	 * the next part keeps the first frame of this run. */
	return track(s, PLC_SEQ_UNANSWERED + s->next_unanswered++, part_id, trigger_counter,
		     t_trigger_us, part);
}

/* ---- verdicts ---- */

int plc_session_stale(plc_session *s, uint64_t seq)
{
	for (GList *it = s->stale.head; it; it = it->next) {
		struct outstanding *o = it->data;

		if (o->seq == seq) {
			g_queue_delete_link(&s->stale, it);
			g_free(o);
			return 1;
		}
	}
	return 0;
}

enum plc_verdict_fate plc_session_verdict(plc_session *s, const struct plc_verdict *v,
					  void *part, int64_t *t_plc_us)
{
	struct outstanding *o = find_outstanding(s, v->seq);
	struct pending *p;

	*t_plc_us = 0;
	if (o && o->failsafe) {
		/* Too late: the PLC has (or is about to get) a fail-safe reject
		 * for it, whose row is queued. */
		*t_plc_us = o->t_plc_us;
		o->part = NULL;
		if (o->failsafe_sent) {
			g_queue_remove(&s->outstanding, o);
			g_free(o);
		}
		return PLC_VERDICT_LATE;
	}
	/* The buffer holds result_buffer results behind the presented one;
	 * while none is presented, the oldest pending part is about to be. */
	if (g_queue_get_length(&s->pending) + (s->have_cur ? 1u : 0u) >=
	    (guint)s->result_buffer + 1) {
		/* The PLC is not taking results: the part's result never
		 * reaches it, and the PLC sees the overrun count and bit. */
		if (s->overruns < UINT16_MAX)
			s->overruns++;
		s->overrun_latched = TRUE;
		if (o) {
			g_queue_remove(&s->outstanding, o);
			g_free(o);
		}
		return PLC_VERDICT_OVERRUN;
	}
	if (o)
		o->has_verdict = TRUE;
	p = g_new(struct pending, 1);
	p->v = *v;
	p->part = part;
	g_queue_push_tail(&s->pending, p);
	return PLC_VERDICT_BUFFERED;
}

/* ---- results ---- */

/* Commits the next result in trigger order, if there is one: the verdict
 * of the oldest part, or its fail-safe reject once its deadline passed. */
static gboolean commit_next(plc_session *s, int64_t now, uint16_t job,
			    struct plc_session_step *step)
{
	struct outstanding *o = NULL;
	struct pending *p;
	uint16_t counter;

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
		o->failsafe = TRUE;
		s->ops.failsafe(s->data, o->part, o->part_id);
	}
	if (!s->ops.row_committed(s->data, p ? p->part : NULL, o->part_id, now)) {
		step->awaiting_row = 1;
		return FALSE;
	}

	counter = plc_counter_next(s->cur.counter);
	/* An ack the PLC shows before the result is presented cannot be
	 * for it: a stale one (the PLC's from before vigild restarted, or
	 * from a state file lost) would take it as taken at once, and the
	 * PLC would never act on it. Skip that value. */
	if (counter == s->ack)
		counter = plc_counter_next(counter);
	s->cur = (struct plc_result){
		.counter = counter,
		.part_id = o->part_id,
		.trigger_counter = o->trigger_counter,
		.verdict = p ? p->v.verdict : VIGIL_VERDICT_REJECT,
		.defect_class = p ? p->v.defect_class : VIGIL_CLASS_NONE,
		.score_milli = p ? (uint16_t)lrintf(CLAMP(p->v.score, 0.0f, 1.0f) * 1000.0f) : 1000,
		.flags = p ? (uint16_t)(p->v.flags & 0xffff)
			   : VIGIL_FLAG_FAILSAFE | VIGIL_FLAG_DEADLINE, /* docs/plc.md */
		.valid = 1,
		.job = p ? p->v.job : job,
	};
	s->have_cur = TRUE;
	s->presented_any = TRUE;
	s->cur_written = FALSE;
	s->clear_valid = FALSE;
	step->committed = 1;
	if (p) {
		step->part = p->part;
		step->verdict = p->v.verdict;
		step->flags = p->v.flags;
		g_queue_remove(&s->pending, p);
		g_queue_remove(&s->outstanding, o);
		s->cur_part = p->part;
		g_free(p);
		g_free(o);
	} else {
		/* Its verdict, when it comes, is logged beside this reject. */
		step->verdict = VIGIL_VERDICT_REJECT;
		step->flags = VIGIL_FLAG_FAILSAFE | VIGIL_FLAG_DEADLINE;
		step->t_trigger_us = o->t_trigger_us;
		o->failsafe_sent = TRUE;
		o->t_plc_us = now;
		s->cur_part = NULL;
		if (!o->part) {
			/* The late verdict already went back. */
			g_queue_remove(&s->outstanding, o);
			g_free(o);
		}
	}
	return TRUE;
}

void plc_session_advance(plc_session *s, int64_t now_us, uint16_t job,
			 struct plc_session_step *step)
{
	*step = (struct plc_session_step){ 0 };
	if (s->have_cur && s->ack == s->cur.counter) {
		/* Acknowledged (a second ack of the same counter changes
		 * nothing). If the write was in doubt, it landed. */
		step->acked = s->cur_part;
		s->cur_part = NULL;
		s->have_cur = FALSE;
		s->cur.valid = 0;
		s->clear_valid = TRUE;
	}
	if (s->have_cur) {
		if (!s->cur_written)
			step->write = PLC_SESSION_WRITE_RESULT;
		return;
	}
	if (commit_next(s, now_us, job, step))
		step->write = PLC_SESSION_WRITE_RESULT;
	else if (s->clear_valid)
		/* Nothing more: take the valid flag down on the last result. */
		step->write = PLC_SESSION_WRITE_CLEAR;
}

const struct plc_result *plc_session_result(const plc_session *s)
{
	return &s->cur;
}

void *plc_session_written(plc_session *s)
{
	void *part = s->cur_part;

	s->cur_written = TRUE;
	s->cur_part = NULL;
	return part;
}

void plc_session_cleared(plc_session *s)
{
	s->clear_valid = FALSE;
}

void plc_session_relink(plc_session *s)
{
	if (s->have_cur)
		s->cur_written = FALSE;
	else if (s->cur.counter)
		s->clear_valid = TRUE;
}

/* ---- status ---- */

void plc_session_status(plc_session *s, const struct plc_session_line *in,
			struct plc_status *st)
{
	uint16_t error = PLC_ERR_NONE;
	unsigned f = in->faults;
	uint16_t w = PLC_STATUS_READY | PLC_STATUS_RUNNING | PLC_STATUS_MODEL_LOADED;

	for (uint16_t e = PLC_ERR_CAMERA; e <= PLC_ERR_DATABASE; e++)
		if (f & (1u << e)) {
			error = e;
			break;
		}
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
	if ((f & PLC_VERDICT_FAULTS) && s->fault_policy == PLC_FAULT_STOP_LINE)
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
	if (in->queue_full) {
		w |= PLC_STATUS_QUEUE_FULL | PLC_STATUS_FAULT;
		if (!error)
			error = PLC_ERR_QUEUE_FULL;
	}
	if (in->job_refused) {
		w |= PLC_STATUS_JOB_INVALID;
		if (!error)
			error = in->job_error;
	}
	if (in->job_loading)
		w |= PLC_STATUS_JOB_LOADING;
	if (in->silent) {
		w |= PLC_STATUS_PLC_SILENT;
		if (!error)
			error = PLC_ERR_PLC_SILENT;
	}
	/* The lowest priority: the line runs and judges parts as before;
	 * only the trend of its verdicts is wrong. */
	if (in->quality_alarm) {
		w |= PLC_STATUS_QUALITY_ALARM;
		if (!error)
			error = PLC_ERR_QUALITY_ALARM;
	}
	if (!in->ready)
		w &= (uint16_t)~PLC_STATUS_READY;
	if (in->stopping)
		w &= (uint16_t)~(PLC_STATUS_READY | PLC_STATUS_RUNNING);
	*st = (struct plc_status){
		.heartbeat = in->heartbeat,
		.word = w,
		.error = error,
		.job = in->job,
		.trigger_seen = s->last_trigger,
		.buffered = (uint16_t)MIN(g_queue_get_length(&s->pending) + (s->have_cur ? 1 : 0),
					  UINT16_MAX),
		.capacity = (uint16_t)s->result_buffer,
		.overruns = s->overruns,
	};
}

/* ---- stopping ---- */

int plc_session_busy(const plc_session *s, int can_present)
{
	return s->outstanding.length || s->pending.length || s->cur_part || (s->have_cur && can_present);
}

char *plc_session_untaken(plc_session *s, void (*mark)(void *data, void *part), void *data)
{
	GString *msg = g_string_new("stopped with results the PLC never took:");
	unsigned n = 0;

	if (s->have_cur)
		g_string_append_printf(msg, " result %u (part %u) presented, not acknowledged;",
				       s->cur.counter, s->cur.part_id);
	g_string_append(msg, " never presented:");
	for (GList *it = s->pending.head; it; it = it->next) {
		struct pending *p = it->data;

		mark(data, p->part);
		if (n++ < 20)
			g_string_append_printf(msg, " part %u", p->v.part_id);
	}
	for (GList *it = s->outstanding.head; it; it = it->next) {
		struct outstanding *o = it->data;

		if (!o->failsafe_sent && !o->has_verdict && n++ < 20)
			g_string_append_printf(msg, " part %u", o->part_id);
	}
	g_string_append(msg, n == 0 ? " none" : n > 20 ? " ..." : "");
	if (n || s->have_cur)
		return g_string_free(msg, FALSE);
	g_string_free(msg, TRUE);
	return NULL;
}

void *plc_session_take_current(plc_session *s)
{
	void *part = s->cur_part;

	s->cur_part = NULL;
	return part;
}

void *plc_session_pop_buffered(plc_session *s)
{
	struct pending *p = g_queue_pop_head(&s->pending);
	void *part = p ? p->part : NULL;

	g_free(p);
	return part;
}
