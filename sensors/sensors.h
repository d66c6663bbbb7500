/* Vibration sources: a GStreamer audio pipeline ending in an appsink named
 * "sink" (vigild fixes its caps to mono F32LE at the configured rate) feeding
 * a time-stamped ring buffer (core/ring.h). Sample times come from buffer
 * timestamps on the pipeline's time line; a discontinuity leaves a gap that
 * windows over it report.
 *
 * The window for a part is taken by time on that line:
 * - sequence: a recording replayed part by part (the simulated line, a
 *   test rig): part n's window starts at n * stride + offset. The pipeline
 *   is held back until windows are consumed, so nothing is dropped.
 * - clock: a live source; the window starts at the trigger time plus the
 *   offset, mapped from the monotonic clock to the pipeline's time line. */
#ifndef VIGIL_SENSORS_SENSORS_H
#define VIGIL_SENSORS_SENSORS_H

#include <stddef.h>
#include <stdint.h>

enum sensor_mode {
	SENSOR_SEQUENCE = 0,
	SENSOR_CLOCK = 1,
};

struct sensor_config {
	const char *name;
	const char *pipeline;       /* ... ! appsink name=sink */
	enum sensor_mode mode;
	double rate_hz;
	size_t window;              /* samples per part */
	size_t stride;              /* sequence mode: samples between parts */
	double offset_ms;           /* window start after the trigger */
	double buffer_s;            /* ring capacity */
	float clip_level;           /* |x| at or above this flags clipping; 0 = off */
};

typedef struct sensor_source sensor_source;

sensor_source *sensor_source_new(const struct sensor_config *cfg, char **err);
int sensor_source_start(sensor_source *s, char **err);
void sensor_source_free(sensor_source *s);

/* Copies part seq's window (cfg->window samples) into out, waiting up to
 * timeout_us. *flags gets RING_GAP / RING_CLIPPED. *t_first_ns (may be NULL)
 * gets the monotonic time of the window's first sample in clock mode, -1 in
 * sequence mode. Returns 0, -ETIMEDOUT (not complete in time, or no sample
 * yet in clock mode), -ENODATA (overwritten, or before the source's first
 * sample), -EPIPE (the source ended first). */
int sensor_window_for(sensor_source *s, uint64_t seq, int64_t t_trigger_us,
		      int64_t timeout_us, float *out, unsigned *flags, int64_t *t_first_ns);

struct sensor_stats {
	uint64_t samples;
	int failed;
	/* Clock mode: how late buffers reached the ring after their last
	 * sample's time (monotonic now - stamped end), smallest and largest in
	 * microseconds. Negative would mean the clock mapping is wrong. */
	int64_t lag_min_us, lag_max_us;
};
void sensor_source_stats(sensor_source *s, struct sensor_stats *st);
const char *sensor_source_name(const sensor_source *s);

#endif
