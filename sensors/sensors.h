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

#include "core/config.h"

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
	/* A window whose range (max - min) is below this is flat: a dead
	 * sensor, not a quiet part (RING_FLAT); 0 = off. */
	float flat_level;
	/* IIO buffered capture through libiio instead of a pipeline (pipeline
	 * NULL): one channel of one device, stamped by the device's timestamp
	 * channel on CLOCK_MONOTONIC when it has one. */
	const char *iio_uri;        /* "local:", "ip:HOST", "usb:...", "xml:FILE" */
	const char *iio_device;     /* device name or id, e.g. "adxl355" */
	const char *iio_channel;    /* input channel id, e.g. "accel_z" */
	double iio_unit_scale;      /* times the channel's scaled value; 0 = 1
				     * (1/9.80665 turns m/s^2 into g) */
	size_t iio_buffer_samples;  /* samples per refill; 0 = rate / 100 */
};

/* One [vibration.NAME] section as sensor_config_read reads it: the settings
 * own their strings, which cfg points to. */
struct sensor_settings {
	struct sensor_config cfg;
	char *name;                 /* NAME of [vibration.NAME] */
	char *pipeline;             /* NULL for an IIO source */
	char *iio_uri;              /* "" without IIO (cfg.iio_uri is then NULL) */
	char *iio_device, *iio_channel;
	int timeout_ms;             /* a part waits this long for its window (2000) */
};

/* Reads section group ("vibration.NAME") of cfg into *s, which it
 * overwrites: every key but the condition figures' (iso_class, hf_hz and
 * the bearing: fusion/condition.h's condition_config_read), which the
 * key check accepts. 0, or -EINVAL with *err (g_free it) naming the file,
 * line and key. *s owns what it holds even on failure: free it with
 * sensor_settings_clear. */
int sensor_config_read(const config *cfg, const char *group, struct sensor_settings *s,
		       char **err);
/* Frees what s owns and zeroes it; NULL or a zeroed *s ok. */
void sensor_settings_clear(struct sensor_settings *s);

typedef struct sensor_source sensor_source;

/* NULL with *err (g_free) on a bad pipeline, a missing appsink or an IIO
 * channel that cannot be read; *err says what is wrong with cfg without
 * naming the source, so the caller can say where the setting came from
 * (vigild: the configuration's file, line and key). */
sensor_source *sensor_source_new(const struct sensor_config *cfg, char **err);
int sensor_source_start(sensor_source *s, char **err);
void sensor_source_free(sensor_source *s);

/* Copies part seq's window (cfg->window samples) into out, waiting up to
 * timeout_us. *flags gets RING_GAP / RING_CLIPPED / RING_FLAT. *t_first_ns
 * (may be NULL) gets the monotonic time of the window's first sample in
 * clock mode, -1 in sequence mode. Returns 0, -ETIMEDOUT (not complete in time, or no sample
 * yet in clock mode), -ENODATA (overwritten, or before the source's first
 * sample), -EPIPE (the source ended first). */
int sensor_window_for(sensor_source *s, uint64_t seq, int64_t t_trigger_us,
		      int64_t timeout_us, float *out, unsigned *flags, int64_t *t_first_ns);

/* An IIO channel as an IIO source reads it, from the libiio context alone
 * (no streaming): for checking a configuration and for tests. */
struct sensor_iio_info {
	unsigned bits, storage_bits, shift;
	int is_signed, big_endian;
	int has_timestamp;          /* the device has a timestamp scan element */
	double scale;               /* raw -> configured unit */
};

/* 0, or -ENOTSUP (no libiio in this build), -ENODEV (context, device or
 * channel not found), -EINVAL (not a buffered input channel), with *err
 * (not naming the source, as sensor_source_new). */
int sensor_iio_probe(const struct sensor_config *cfg, struct sensor_iio_info *info, char **err);

/* One raw scan element (storage_bits / 8 bytes, as in the buffer) in the
 * configured unit. */
double sensor_iio_value(const struct sensor_iio_info *info, const void *raw);

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

/* ---- Modbus vibration transmitters ----
 *
 * A transmitter reports scalar condition figures (RMS velocity, RMS
 * acceleration, temperature) in registers. A thread polls them every
 * poll_ms over Modbus TCP or RTU (libmodbus); each poll that reads every
 * configured register is one reading, stamped on the monotonic clock. A
 * transmitter that stops answering is reconnected with back-off; its last
 * reading is then reported as stale, never carried forward as current. */
enum transmitter_quantity {
	TRANSMITTER_VELOCITY = 0,     /* RMS velocity, mm/s */
	TRANSMITTER_ACCELERATION = 1, /* RMS acceleration, g */
	TRANSMITTER_TEMPERATURE = 2,  /* degrees C */
	TRANSMITTER_QUANTITIES = 3,
};

enum transmitter_type {
	TRANSMITTER_U16 = 0, TRANSMITTER_S16, TRANSMITTER_U32, TRANSMITTER_S32,
	TRANSMITTER_F32,
};

struct transmitter_register {
	int address;                  /* protocol address; -1: not read */
	enum transmitter_type type;   /* 32-bit types span address and address + 1 */
	double scale;                 /* value = raw * scale */
};

struct transmitter_config {
	const char *name;
	const char *host;             /* Modbus TCP when set */
	int port;
	const char *device;           /* else Modbus RTU on this serial device */
	int baud, stop_bits;
	char parity;                  /* 'N', 'E', 'O' */
	int unit_id;
	int input_registers;          /* 1: function 04 (input), 0: 03 (holding) */
	int low_word_first;           /* 32-bit values: 0 = ABCD, 1 = CDAB */
	struct transmitter_register reg[TRANSMITTER_QUANTITIES];
	int poll_ms, timeout_ms;
	int stale_ms;                 /* older readings are stale; 0: 3 polls */
	size_t trend_len;             /* readings kept until taken; 0: 1024 */
};

/* One [transmitter.NAME] section as transmitter_config_read reads it: the
 * settings own their strings, which cfg points to. */
struct transmitter_settings {
	struct transmitter_config cfg;
	char *name;                   /* NAME of [transmitter.NAME] */
	char *host, *device;          /* "" when not given (cfg's are then NULL) */
};

/* Reads section group ("transmitter.NAME") of cfg into *s, which it
 * overwrites; host or device, not both, and at least one register. 0, or
 * -EINVAL with *err (g_free it) naming the file, line and key. *s owns
 * what it holds even on failure: free it with transmitter_settings_clear. */
int transmitter_config_read(const config *cfg, const char *group,
			    struct transmitter_settings *s, char **err);
/* Frees what s owns and zeroes it; NULL or a zeroed *s ok. */
void transmitter_settings_clear(struct transmitter_settings *s);

struct transmitter_reading {
	int64_t t_us;                 /* monotonic time of the poll */
	double value[TRANSMITTER_QUANTITIES]; /* NAN where not configured */
};

typedef struct sensor_transmitter sensor_transmitter;

/* NULL with *err (g_free) on a bad configuration. */
sensor_transmitter *sensor_transmitter_new(const struct transmitter_config *cfg, char **err);
int sensor_transmitter_start(sensor_transmitter *t, char **err);
void sensor_transmitter_free(sensor_transmitter *t);

/* The newest reading: 0, -ENODATA (none yet) or -ESTALE (older than
 * stale_ms: the transmitter is away; *r still gets it, for the log). */
int sensor_transmitter_latest(sensor_transmitter *t, struct transmitter_reading *r);

/* Moves up to max readings not taken before into out, oldest first, and
 * returns how many (the trend; what overflowed trend_len is counted). */
size_t sensor_transmitter_take_trend(sensor_transmitter *t, struct transmitter_reading *out,
				     size_t max);

struct transmitter_stats {
	uint64_t polls, failures, trend_dropped;
	int connected;
};
void sensor_transmitter_stats(sensor_transmitter *t, struct transmitter_stats *st);

#endif
