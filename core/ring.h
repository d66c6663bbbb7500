/* A time-stamped ring buffer of one channel of float samples at a fixed
 * rate. Every sample has an index on the source's time line:
 * index = round((t - t_origin) * rate), where t_origin is the time of the
 * first sample ever written. Readers take windows by time.
 *
 * One writer thread, any number of reader threads. */
#ifndef VIGIL_CORE_RING_H
#define VIGIL_CORE_RING_H

#include <stddef.h>
#include <stdint.h>

typedef struct ring ring;

enum ring_window_flags {
	RING_GAP = 1 << 0,      /* some samples in the window were never written */
	RING_CLIPPED = 1 << 1,  /* some samples reached the clip level */
	RING_FLAT = 1 << 2,     /* the samples' range (max - min) is below the flat level */
};

/* capacity in samples. clip_level <= 0 disables the clipping check,
 * flat_level <= 0 the flatness check. block_when_full: a writer waits for
 * readers to release samples instead of overwriting the oldest (for file
 * sources that run faster than real time). */
ring *ring_new(size_t capacity, double rate_hz, float clip_level, float flat_level,
	       int block_when_full);
void ring_free(ring *r);

/* Appends n samples, the first at t_first_ns. A jump forward in time leaves
 * a gap (flagged in windows over it); samples at times already written are
 * dropped. Returns 0, -ETIMEDOUT when blocked too long, -EPIPE after close. */
int ring_write(ring *r, const float *x, size_t n, int64_t t_first_ns, int64_t timeout_us);

/* Copies the n samples starting at t_start_ns (relative to the time line's
 * origin, see ring_origin_ns) into out. Waits up to timeout_us for the window
 * to be complete. Returns 0 (with *flags set), -ETIMEDOUT (incomplete in
 * time), -ENODATA (already overwritten, or before the first sample ever
 * written), -EPIPE (the source ended first). */
int ring_window(ring *r, int64_t t_start_ns, size_t n, float *out,
		unsigned *flags, int64_t timeout_us);

/* Lets a blocking writer reuse samples before t_ns (relative time). */
void ring_release_before(ring *r, int64_t t_ns);

/* The source has ended: wake waiters; later windows past the end fail. */
void ring_close(ring *r);

/* Origin of the time line (the first written sample's t), or -1 if none yet. */
int64_t ring_origin_ns(ring *r);
/* Total samples the time line covers so far (index of the next sample). */
uint64_t ring_end_index(ring *r);

#endif
