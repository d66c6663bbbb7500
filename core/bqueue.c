#include "core/bqueue.h"

#include <errno.h>
#include <glib.h>

struct bqueue {
	GMutex lock;
	GCond not_empty;
	GCond not_full;
	void **items;
	size_t capacity, head, count, high_water;
	gboolean closed;
};

bqueue *bqueue_new(size_t capacity)
{
	bqueue *q;

	if (capacity == 0)
		return NULL;
	q = g_new0(bqueue, 1);
	g_mutex_init(&q->lock);
	g_cond_init(&q->not_empty);
	g_cond_init(&q->not_full);
	q->items = g_new0(void *, capacity);
	q->capacity = capacity;
	return q;
}

void bqueue_free(bqueue *q)
{
	if (!q)
		return;
	g_mutex_clear(&q->lock);
	g_cond_clear(&q->not_empty);
	g_cond_clear(&q->not_full);
	g_free(q->items);
	g_free(q);
}

/* Waits on cond until pred holds; false on timeout. Caller holds the lock. */
static gboolean wait_until(bqueue *q, GCond *cond, gboolean (*pred)(bqueue *),
			   int64_t timeout_us)
{
	gint64 end = timeout_us > 0 ? g_get_monotonic_time() + timeout_us : 0;

	while (!pred(q)) {
		if (timeout_us == 0)
			return FALSE;
		if (timeout_us < 0)
			g_cond_wait(cond, &q->lock);
		else if (!g_cond_wait_until(cond, &q->lock, end))
			return pred(q);
	}
	return TRUE;
}

static gboolean can_push(bqueue *q) { return q->closed || q->count < q->capacity; }
static gboolean can_pop(bqueue *q) { return q->closed || q->count > 0; }

int bqueue_push(bqueue *q, void *item, int64_t timeout_us)
{
	int rc = 0;

	g_mutex_lock(&q->lock);
	if (!wait_until(q, &q->not_full, can_push, timeout_us)) {
		rc = -ETIMEDOUT;
	} else if (q->closed) {
		rc = -EPIPE;
	} else {
		q->items[(q->head + q->count) % q->capacity] = item;
		q->count++;
		if (q->count > q->high_water)
			q->high_water = q->count;
		g_cond_signal(&q->not_empty);
	}
	g_mutex_unlock(&q->lock);
	return rc;
}

int bqueue_pop(bqueue *q, void **item, int64_t timeout_us)
{
	int rc = 0;

	g_mutex_lock(&q->lock);
	if (!wait_until(q, &q->not_empty, can_pop, timeout_us)) {
		rc = -ETIMEDOUT;
	} else if (q->count == 0) {
		rc = -EPIPE; /* closed and drained */
	} else {
		*item = q->items[q->head];
		q->head = (q->head + 1) % q->capacity;
		q->count--;
		g_cond_signal(&q->not_full);
	}
	g_mutex_unlock(&q->lock);
	return rc;
}

void bqueue_close(bqueue *q)
{
	g_mutex_lock(&q->lock);
	q->closed = TRUE;
	g_cond_broadcast(&q->not_empty);
	g_cond_broadcast(&q->not_full);
	g_mutex_unlock(&q->lock);
}

size_t bqueue_depth(bqueue *q)
{
	size_t n;

	g_mutex_lock(&q->lock);
	n = q->count;
	g_mutex_unlock(&q->lock);
	return n;
}

size_t bqueue_high_water(bqueue *q)
{
	size_t n;

	g_mutex_lock(&q->lock);
	n = q->high_water;
	g_mutex_unlock(&q->lock);
	return n;
}
