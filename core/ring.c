#include "core/ring.h"

#include <errno.h>
#include <glib.h>
#include <math.h>
#include <string.h>

struct ring {
	GMutex lock;
	GCond changed;
	float *x;
	guint8 *valid;          /* 1 where the sample was written */
	size_t capacity;
	double rate;
	float clip_level;
	float flat_level;
	int block_when_full;
	int64_t origin_ns;      /* -1 until the first write */
	uint64_t end;           /* next index to be written */
	uint64_t start;         /* oldest index still held */
	uint64_t released;      /* readers no longer need indices below this */
	gboolean closed;
};

ring *ring_new(size_t capacity, double rate_hz, float clip_level, float flat_level,
	       int block_when_full)
{
	ring *r;

	if (capacity == 0 || !(rate_hz > 0))
		return NULL;
	r = g_new0(ring, 1);
	g_mutex_init(&r->lock);
	g_cond_init(&r->changed);
	r->x = g_new0(float, capacity);
	r->valid = g_new0(guint8, capacity);
	r->capacity = capacity;
	r->rate = rate_hz;
	r->clip_level = clip_level;
	r->flat_level = flat_level;
	r->block_when_full = block_when_full;
	r->origin_ns = -1;
	return r;
}

void ring_free(ring *r)
{
	if (!r)
		return;
	g_mutex_clear(&r->lock);
	g_cond_clear(&r->changed);
	g_free(r->x);
	g_free(r->valid);
	g_free(r);
}

static int64_t index_of(const ring *r, int64_t t_ns)
{
	return (int64_t)llround((double)t_ns * r->rate / 1e9);
}

/* Makes room for index idx; caller holds the lock. */
static int make_room(ring *r, uint64_t idx, gint64 deadline)
{
	while (idx >= r->start + r->capacity) {
		if (r->closed)
			return -EPIPE;
		if (r->block_when_full && r->released <= r->start) {
			if (deadline < 0)
				g_cond_wait(&r->changed, &r->lock);
			else if (!g_cond_wait_until(&r->changed, &r->lock, deadline))
				return -ETIMEDOUT;
			continue;
		}
		/* Drop the oldest sample (or everything released). */
		r->valid[r->start % r->capacity] = 0;
		r->start++;
	}
	return 0;
}

int ring_write(ring *r, const float *x, size_t n, int64_t t_first_ns, int64_t timeout_us)
{
	gint64 deadline = timeout_us < 0 ? -1 : g_get_monotonic_time() + timeout_us;
	int64_t first;
	int rc = 0;

	g_mutex_lock(&r->lock);
	if (r->closed) {
		rc = -EPIPE;
		goto out;
	}
	if (r->origin_ns < 0)
		r->origin_ns = t_first_ns;
	first = index_of(r, t_first_ns - r->origin_ns);
	for (size_t i = 0; i < n; i++) {
		int64_t idx = first + (int64_t)i;

		if (idx < (int64_t)r->end)
			continue; /* overlap with what we already have */
		rc = make_room(r, (uint64_t)idx, deadline);
		if (rc < 0)
			goto out;
		/* Indices skipped between end and idx stay invalid: a gap. */
		while (r->end < (uint64_t)idx) {
			r->valid[r->end % r->capacity] = 0;
			r->end++;
		}
		r->x[idx % r->capacity] = x[i];
		r->valid[idx % r->capacity] = 1;
		r->end = (uint64_t)idx + 1;
	}
out:
	g_cond_broadcast(&r->changed);
	g_mutex_unlock(&r->lock);
	return rc;
}

int ring_window(ring *r, int64_t t_start_ns, size_t n, float *out,
		unsigned *flags, int64_t timeout_us)
{
	gint64 deadline = timeout_us < 0 ? -1 : g_get_monotonic_time() + timeout_us;
	int64_t first;
	unsigned f = 0;
	float lo = INFINITY, hi = -INFINITY;
	int rc = 0;

	g_mutex_lock(&r->lock);
	first = index_of(r, t_start_ns);
	for (;;) {
		if (r->origin_ns >= 0 && first < 0) {
			rc = -ENODATA; /* before the first sample: never recorded */
			goto out;
		}
		if (r->origin_ns >= 0 && (uint64_t)first + n <= r->end)
			break;
		if (r->closed) {
			rc = -EPIPE;
			goto out;
		}
		if (deadline < 0)
			g_cond_wait(&r->changed, &r->lock);
		else if (!g_cond_wait_until(&r->changed, &r->lock, deadline)) {
			rc = -ETIMEDOUT;
			goto out;
		}
	}
	if ((uint64_t)first < r->start) {
		rc = -ENODATA;
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		size_t k = ((uint64_t)first + i) % r->capacity;

		if (!r->valid[k]) {
			f |= RING_GAP;
			out[i] = 0.0f;
			continue;
		}
		out[i] = r->x[k];
		if (r->clip_level > 0 && fabsf(out[i]) >= r->clip_level)
			f |= RING_CLIPPED;
		if (out[i] < lo)
			lo = out[i];
		if (out[i] > hi)
			hi = out[i];
	}
	/* A dead sensor (cable pulled, IEPE supply off, a stuck ADC) gives a
	 * constant window, or one that moves by a few ADC steps: judged, it
	 * would pass as a quiet good part. Over the samples written only
	 * (NaN never counts): a gap is refused as a gap already. */
	if (r->flat_level > 0 && hi >= lo && hi - lo < r->flat_level)
		f |= RING_FLAT;
	if (flags)
		*flags = f;
out:
	g_mutex_unlock(&r->lock);
	return rc;
}

void ring_release_before(ring *r, int64_t t_ns)
{
	int64_t idx = index_of(r, t_ns);

	g_mutex_lock(&r->lock);
	if (idx > 0 && (uint64_t)idx > r->released)
		r->released = (uint64_t)idx;
	/* Let the writer advance start only up to what readers gave back. */
	if (r->block_when_full && r->released > r->start) {
		uint64_t upto = MIN(r->released, r->end);

		while (r->start < upto) {
			r->valid[r->start % r->capacity] = 0;
			r->start++;
		}
	}
	g_cond_broadcast(&r->changed);
	g_mutex_unlock(&r->lock);
}

void ring_close(ring *r)
{
	g_mutex_lock(&r->lock);
	r->closed = TRUE;
	g_cond_broadcast(&r->changed);
	g_mutex_unlock(&r->lock);
}

int64_t ring_origin_ns(ring *r)
{
	int64_t o;

	g_mutex_lock(&r->lock);
	o = r->origin_ns;
	g_mutex_unlock(&r->lock);
	return o;
}

uint64_t ring_end_index(ring *r)
{
	uint64_t e;

	g_mutex_lock(&r->lock);
	e = r->end;
	g_mutex_unlock(&r->lock);
	return e;
}
