/* Quality alarms on a rolling window of parts (alarm.h states the rules). */
#include "app/alarm.h"

#include <errno.h>
#include <math.h>
#include <string.h>

#include <glib.h>

#include "core/part.h"

#define NCLASSES (VIGIL_CLASS_BOTH + 1)
/* Hysteresis: an alarm raised above 3 sigma clears at 2 sigma, a surge
 * raised below surge_p clears once its tail is this probable. */
#define CLEAR_SIGMAS 2.0
#define RAISE_SIGMAS 3.0
#define SURGE_CLEAR_P 0.05

static const char *const kind_names[ALARM_KINDS] = { "yield", "class_surge", "model_change" };
static const char *const event_kinds[ALARM_KINDS] = { "alarm-yield", "alarm-class-surge",
						      "alarm-model-change" };

const char *alarm_kind_name(enum alarm_kind k)
{
	return k < ALARM_KINDS ? kind_names[k] : "unknown";
}

const char *alarm_event_kind(enum alarm_kind k)
{
	return k < ALARM_KINDS ? event_kinds[k] : "alarm";
}

static const char *const alarm_keys[] = { "enabled", "window_parts", "baseline_parts",
					  "expected_reject_rate", "surge_p",
					  "model_change_factor", NULL };

int alarm_settings_read(const config *cfg, struct alarm_settings *s, char **err)
{
	static const char *const on_off[] = { "false", "true", NULL };
	struct alarm_settings d = ALARM_SETTINGS_DEFAULT;

	*s = d;
	if (!config_has_group(cfg, "alarm"))
		return 0;
	if (config_check_keys(cfg, "alarm", alarm_keys, err) < 0 ||
	    config_get_choice(cfg, "alarm", "enabled", "true", on_off, &s->enabled, err) < 0 ||
	    config_get_int(cfg, "alarm", "window_parts", d.window_parts, 10, 1000000,
			   &s->window_parts, err) < 0 ||
	    config_get_int(cfg, "alarm", "baseline_parts", d.baseline_parts, 10, 10000000,
			   &s->baseline_parts, err) < 0 ||
	    config_get_double(cfg, "alarm", "expected_reject_rate", 0.0, 0.0, 0.99,
			      &s->expected_reject_rate, err) < 0 ||
	    config_get_double(cfg, "alarm", "surge_p", d.surge_p, 1e-12, 0.05, &s->surge_p,
			      err) < 0 ||
	    config_get_double(cfg, "alarm", "model_change_factor", d.model_change_factor, 1.0,
			      1000.0, &s->model_change_factor, err) < 0)
		return -EINVAL;
	if (s->baseline_parts < s->window_parts) {
		*err = config_error(cfg, "alarm", "baseline_parts",
				    "%d is less than window_parts (%d): the baseline must hold "
				    "at least one window", s->baseline_parts, s->window_parts);
		return -EINVAL;
	}
	return 0;
}

struct counts {
	int64_t n, rejected, marginal, cls[NCLASSES];
};

struct alarm_monitor {
	struct alarm_settings set;
	/* The last window_parts + baseline_parts parts, newest at pos - 1,
	 * each verdict << 2 | class. */
	uint8_t *ring;
	int cap, pos, n;
	struct counts window, baseline;
	/* The baseline yield and class_surge judge against: frozen while one
	 * of them is raised. */
	struct counts frozen;
	gboolean is_frozen;
	unsigned active;
	int64_t since_us[ALARM_KINDS];
	int surge_class;               /* the class that surged */
	/* The model change being watched: the parts before it, and how many
	 * came after. */
	char *version;
	struct counts before;
	int64_t after;
	gboolean watching;
};

alarm_monitor *alarm_monitor_new(const struct alarm_settings *s)
{
	alarm_monitor *m = g_new0(alarm_monitor, 1);

	m->set = *s;
	if (m->set.baseline_parts < m->set.window_parts)
		m->set.baseline_parts = m->set.window_parts;
	m->cap = m->set.window_parts + m->set.baseline_parts;
	m->ring = g_new0(uint8_t, m->cap);
	return m;
}

void alarm_monitor_free(alarm_monitor *m)
{
	if (!m)
		return;
	g_free(m->ring);
	g_free(m->version);
	g_free(m);
}

static void count(struct counts *c, uint8_t part, int sign)
{
	int v = part >> 2, cls = part & 3;

	c->n += sign;
	if (v == VIGIL_VERDICT_REJECT)
		c->rejected += sign;
	else if (v == VIGIL_VERDICT_MARGINAL)
		c->marginal += sign;
	if (cls != VIGIL_CLASS_NONE)
		c->cls[cls] += sign;
}

static void push(alarm_monitor *m, uint8_t part)
{
	int w = m->set.window_parts;

	if (m->n == m->cap) {
		count(&m->baseline, m->ring[m->pos], -1);  /* the oldest leaves */
		m->n--;
	}
	if (m->n >= w) {
		/* The window's oldest part moves into the baseline. */
		uint8_t old = m->ring[(m->pos - w + m->cap) % m->cap];

		count(&m->window, old, -1);
		count(&m->baseline, old, 1);
	}
	m->ring[m->pos] = part;
	m->pos = (m->pos + 1) % m->cap;
	m->n++;
	count(&m->window, part, 1);
}

/* A proportion of c floored at one part in its size. */
static double floored(int64_t k, int64_t n)
{
	return n > 0 ? MAX((double)k, 1.0) / (double)n : 1.0;
}

static double sigma(double p0, int64_t n)
{
	return sqrt(p0 * (1.0 - p0) / (double)n);
}

/* Poisson P(X >= k; lambda), summed from k upwards in log space. */
static double poisson_tail(int64_t k, double lambda)
{
	double sum = 0.0;

	if (k <= 0)
		return 1.0;
	for (int64_t i = k; i < k + 1000; i++) {
		double t = exp((double)i * log(lambda) - lambda - lgamma((double)i + 1.0));

		sum += t;
		if (t < sum * 1e-12)
			break;
	}
	return MIN(sum, 1.0);
}

static void change(struct alarm_change *out, int *nout, alarm_monitor *m, enum alarm_kind k,
		   int raised, int64_t t_wall_us, const char *fmt, ...) G_GNUC_PRINTF(7, 8);

static void change(struct alarm_change *out, int *nout, alarm_monitor *m, enum alarm_kind k,
		   int raised, int64_t t_wall_us, const char *fmt, ...)
{
	struct alarm_change *c = &out[(*nout)++];
	va_list ap;

	c->kind = k;
	c->raised = raised;
	va_start(ap, fmt);
	g_vsnprintf(c->message, sizeof c->message, fmt, ap);
	va_end(ap);
	if (raised) {
		m->active |= 1u << k;
		m->since_us[k] = t_wall_us ? t_wall_us : 1;
	} else {
		m->active &= ~(1u << k);
		m->since_us[k] = 0;
	}
}

static void judge_yield(alarm_monitor *m, const struct counts *ref, int64_t t,
			struct alarm_change *out, int *nout)
{
	const struct counts *win = &m->window;
	double p0, p, s;
	const char *from;

	if (m->set.expected_reject_rate > 0) {
		p0 = m->set.expected_reject_rate;
		from = "expected_reject_rate";
	} else if (ref->n >= m->set.baseline_parts) {
		p0 = floored(ref->rejected, ref->n);
		from = "the baseline";
	} else {
		return;  /* no reference yet */
	}
	p = (double)win->rejected / (double)win->n;
	s = sigma(p0, win->n);
	if (!(m->active & (1u << ALARM_YIELD)) && p > p0 + RAISE_SIGMAS * s)
		change(out, nout, m, ALARM_YIELD, 1, t,
		       "yield out of control: %" G_GINT64_FORMAT " of the last %" G_GINT64_FORMAT
		       " parts rejected (%.1f %%), above the upper control limit %.1f %% "
		       "(centre %.1f %% from %s)", win->rejected, win->n, 100 * p,
		       100 * (p0 + RAISE_SIGMAS * s), 100 * p0, from);
	else if ((m->active & (1u << ALARM_YIELD)) && p <= p0 + CLEAR_SIGMAS * s)
		change(out, nout, m, ALARM_YIELD, 0, t,
		       "yield back in control: %" G_GINT64_FORMAT " of the last %" G_GINT64_FORMAT
		       " parts rejected (%.1f %%), at or below %.1f %% (centre + 2 sigma)",
		       win->rejected, win->n, 100 * p, 100 * (p0 + CLEAR_SIGMAS * s));
}

static void judge_surge(alarm_monitor *m, const struct counts *ref, int64_t t,
			struct alarm_change *out, int *nout)
{
	const struct counts *win = &m->window;

	if (ref->n < m->set.baseline_parts)
		return;
	if (m->active & (1u << ALARM_CLASS_SURGE)) {
		int c = m->surge_class;
		double lambda = (double)win->n * floored(ref->cls[c], ref->n);
		double tail = poisson_tail(win->cls[c], lambda);

		if (tail >= SURGE_CLEAR_P)
			change(out, nout, m, ALARM_CLASS_SURGE, 0, t,
			       "defect class %s back to its rate: %" G_GINT64_FORMAT " in the last %"
			       G_GINT64_FORMAT " parts (%.1f expected)",
			       vigil_class_name((enum vigil_defect_class)c), win->cls[c], win->n,
			       lambda);
		return;
	}
	for (int c = VIGIL_CLASS_SURFACE; c < NCLASSES; c++) {
		double lambda = (double)win->n * floored(ref->cls[c], ref->n);
		double tail = poisson_tail(win->cls[c], lambda);

		if (tail < m->set.surge_p) {
			m->surge_class = c;
			change(out, nout, m, ALARM_CLASS_SURGE, 1, t,
			       "defect class %s surging: %" G_GINT64_FORMAT " in the last %"
			       G_GINT64_FORMAT " parts where %.1f are expected (%" G_GINT64_FORMAT
			       " in the %" G_GINT64_FORMAT " before); Poisson tail %.2g < %.2g",
			       vigil_class_name((enum vigil_defect_class)c), win->cls[c], win->n,
			       lambda, ref->cls[c], ref->n, tail, m->set.surge_p);
			return;
		}
	}
}

static void judge_model_change(alarm_monitor *m, const char *version, int64_t t,
			       struct alarm_change *out, int *nout)
{
	const struct counts *win = &m->window;
	double p0, p, s;

	if (version && (!m->version || strcmp(version, m->version) != 0)) {
		char *was = m->version;

		m->version = g_strdup(version);
		if (m->active & (1u << ALARM_MODEL_CHANGE))
			change(out, nout, m, ALARM_MODEL_CHANGE, 0, t,
			       "model %s replaced by %s: its alarm ends", was, version);
		/* A first version (vigild starting) is no change. The parts
		 * before are the whole ring but the new one. */
		m->watching = was && m->n - 1 >= m->set.window_parts;
		m->before = m->window;
		m->before.n += m->baseline.n;
		m->before.rejected += m->baseline.rejected;
		m->before.marginal += m->baseline.marginal;
		/* the part just added is the new model's */
		m->after = 0;
		if (m->watching) {
			uint8_t part = m->ring[(m->pos - 1 + m->cap) % m->cap];
			int v = part >> 2;

			m->before.n--;
			m->before.rejected -= v == VIGIL_VERDICT_REJECT;
			m->before.marginal -= v == VIGIL_VERDICT_MARGINAL;
		}
		g_free(was);
	}
	m->after++;
	if (!m->watching && !(m->active & (1u << ALARM_MODEL_CHANGE)))
		return;
	if (m->after < m->set.window_parts)
		return;
	p0 = floored(m->before.rejected + m->before.marginal, m->before.n);
	p = (double)(win->rejected + win->marginal) / (double)win->n;
	s = sigma(p0, win->n);
	if (m->watching) {
		/* Judged once, on the first window of the new model alone. */
		m->watching = FALSE;
		if (p > m->set.model_change_factor * p0 && p > p0 + RAISE_SIGMAS * s)
			change(out, nout, m, ALARM_MODEL_CHANGE, 1, t,
			       "yield collapsed after the change to model %s: %.1f %% of its first %"
			       G_GINT64_FORMAT " parts rejected or marginal, %.1f %% before the "
			       "change (%" G_GINT64_FORMAT " parts)", m->version, 100 * p, win->n,
			       100 * p0, m->before.n);
	} else if (p <= p0 + CLEAR_SIGMAS * s) {
		change(out, nout, m, ALARM_MODEL_CHANGE, 0, t,
		       "model %s back in control: %.1f %% of the last %" G_GINT64_FORMAT
		       " parts rejected or marginal (%.1f %% before the change)", m->version,
		       100 * p, win->n, 100 * p0);
	}
}

int alarm_monitor_add(alarm_monitor *m, int verdict, int defect_class,
		      const char *model_version, int64_t t_wall_us,
		      struct alarm_change changes[ALARM_KINDS])
{
	int nout = 0;
	const struct counts *ref;

	if (!m->set.enabled)
		return 0;
	if (verdict < VIGIL_VERDICT_ACCEPT || verdict > VIGIL_VERDICT_MARGINAL)
		return 0;
	push(m, (uint8_t)(verdict << 2 | (defect_class & 3)));
	if (m->n >= m->set.window_parts) {
		ref = m->is_frozen ? &m->frozen : &m->baseline;
		judge_yield(m, ref, t_wall_us, changes, &nout);
		judge_surge(m, ref, t_wall_us, changes, &nout);
		if (m->active & (1u << ALARM_YIELD | 1u << ALARM_CLASS_SURGE)) {
			if (!m->is_frozen)
				m->frozen = m->baseline;
			m->is_frozen = TRUE;
		} else {
			m->is_frozen = FALSE;
		}
	}
	judge_model_change(m, model_version, t_wall_us, changes, &nout);
	return nout;
}

unsigned alarm_monitor_active(const alarm_monitor *m)
{
	return m ? m->active : 0;
}

int64_t alarm_monitor_since(const alarm_monitor *m, enum alarm_kind k)
{
	return m && k < ALARM_KINDS ? m->since_us[k] : 0;
}
