/* A bounded FIFO of pointers between threads. Push blocks while the queue
 * is full (back-pressure), pop blocks while it is empty; both take a timeout.
 * After bqueue_close() pushes fail with -EPIPE and pops drain what is left,
 * then fail with -EPIPE. The queue never owns or frees its items. */
#ifndef VIGIL_CORE_BQUEUE_H
#define VIGIL_CORE_BQUEUE_H

#include <stddef.h>
#include <stdint.h>

typedef struct bqueue bqueue;

bqueue *bqueue_new(size_t capacity);
void bqueue_free(bqueue *q);

/* timeout_us < 0 waits forever, 0 does not wait.
 * Returns 0, -ETIMEDOUT, or -EPIPE when closed. */
int bqueue_push(bqueue *q, void *item, int64_t timeout_us);
int bqueue_pop(bqueue *q, void **item, int64_t timeout_us);

void bqueue_close(bqueue *q);
size_t bqueue_depth(bqueue *q);
size_t bqueue_high_water(bqueue *q);

#endif
