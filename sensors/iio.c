/* IIO buffered capture through libiio (sensors.h). Built only when meson
 * finds libiio; otherwise the functions say so. */
#include "sensors/sensors.h"
#include "sensors/sensors-private.h"

#include <errno.h>
#include <glib.h>
#include <math.h>
#include <string.h>

#ifdef VIGIL_HAVE_IIO
#include <iio.h>

#include "core/part.h"

double sensor_iio_value(const struct sensor_iio_info *info, const void *raw)
{
	const uint8_t *b = raw;
	unsigned n = info->storage_bits / 8;
	uint64_t u = 0;
	int64_t v;

	for (unsigned i = 0; i < n; i++)
		u |= (uint64_t)b[info->big_endian ? n - 1 - i : i] << (8 * i);
	u >>= info->shift;
	if (info->bits < 64)
		u &= (UINT64_C(1) << info->bits) - 1;
	if (info->is_signed && info->bits < 64 && (u >> (info->bits - 1)) & 1)
		v = (int64_t)(u | ~((UINT64_C(1) << info->bits) - 1));
	else
		v = (int64_t)u;
	return (double)v * info->scale;
}

/* Finds device and channel in ctx and fills info. */
static int find_channel(struct iio_context *ctx, const struct sensor_config *cfg,
			struct iio_device **dev_out, struct iio_channel **ch_out,
			struct sensor_iio_info *info, char **err)
{
	struct iio_device *dev = iio_context_find_device(ctx, cfg->iio_device);
	struct iio_channel *ch;
	const struct iio_data_format *fmt;
	double scale = 1;

	if (!dev) {
		*err = g_strdup_printf("no IIO device '%s' at %s", cfg->iio_device, cfg->iio_uri);
		return -ENODEV;
	}
	ch = iio_device_find_channel(dev, cfg->iio_channel, false);
	if (!ch) {
		*err = g_strdup_printf("IIO device '%s' has no input channel '%s'", cfg->iio_device,
				       cfg->iio_channel);
		return -ENODEV;
	}
	if (!iio_channel_is_scan_element(ch)) {
		*err = g_strdup_printf("IIO channel '%s' cannot be captured in a buffer (not a "
				       "scan element)", cfg->iio_channel);
		return -EINVAL;
	}
	fmt = iio_channel_get_data_format(ch);
	if (fmt->length % 8 || fmt->length == 0 || fmt->length > 64 || fmt->bits == 0 ||
	    fmt->bits > fmt->length || (fmt->repeat > 1)) {
		*err = g_strdup_printf("IIO channel '%s' has a sample format this version cannot "
				       "read", cfg->iio_channel);
		return -EINVAL;
	}
	/* The kernel's in_*_scale turns raw counts into the channel's unit
	 * (m/s^2 for an accelerometer); remote and xml contexts carry it in
	 * the data format. */
	if (fmt->with_scale)
		scale = fmt->scale;
	else if (iio_channel_attr_read_double(ch, "scale", &scale) < 0)
		scale = 1;
	*info = (struct sensor_iio_info){
		.bits = fmt->bits, .storage_bits = fmt->length, .shift = fmt->shift,
		.is_signed = fmt->is_signed, .big_endian = fmt->is_be,
		.has_timestamp = iio_device_find_channel(dev, "timestamp", false) != NULL,
		.scale = scale * (cfg->iio_unit_scale != 0 ? cfg->iio_unit_scale : 1),
	};
	*dev_out = dev;
	*ch_out = ch;
	return 0;
}

int sensor_iio_probe(const struct sensor_config *cfg, struct sensor_iio_info *info, char **err)
{
	struct iio_context *ctx = iio_create_context_from_uri(cfg->iio_uri);
	struct iio_device *dev;
	struct iio_channel *ch;
	int rc;

	if (!ctx) {
		*err = g_strdup_printf("cannot open IIO context %s: %s", cfg->iio_uri,
				       g_strerror(errno));
		return -ENODEV;
	}
	rc = find_channel(ctx, cfg, &dev, &ch, info, err);
	iio_context_destroy(ctx);
	return rc;
}

struct iio_capture {
	struct iio_context *ctx;
	struct iio_buffer *buf;
	struct iio_channel *ch, *ts;
	struct sensor_iio_info info;
	size_t samples;
	double rate;
};

struct iio_capture *sensor_iio_open(const struct sensor_config *cfg, char **err)
{
	struct iio_capture *c = g_new0(struct iio_capture, 1);
	struct iio_device *dev;
	char *why = NULL;

	c->rate = cfg->rate_hz;
	c->samples = cfg->iio_buffer_samples ? cfg->iio_buffer_samples
					     : (size_t)MAX(1.0, cfg->rate_hz / 100);
	if (!(c->ctx = iio_create_context_from_uri(cfg->iio_uri))) {
		*err = g_strdup_printf("vibration %s: cannot open IIO context %s: %s", cfg->name,
				       cfg->iio_uri, g_strerror(errno));
		goto fail;
	}
	if (find_channel(c->ctx, cfg, &dev, &c->ch, &c->info, &why) < 0) {
		/* Here, at start, nobody else names the source. */
		*err = g_strdup_printf("vibration %s: %s", cfg->name, why);
		g_free(why);
		goto fail;
	}
	/* Best effort: a device without these attributes runs as it is set. */
	(void)iio_device_attr_write_longlong(dev, "sampling_frequency", llround(cfg->rate_hz));
	(void)iio_device_attr_write(dev, "current_timestamp_clock", "monotonic");
	iio_channel_enable(c->ch);
	if ((c->ts = iio_device_find_channel(dev, "timestamp", false)))
		iio_channel_enable(c->ts);
	if (!(c->buf = iio_device_create_buffer(dev, c->samples, false))) {
		*err = g_strdup_printf("vibration %s: cannot create an IIO buffer on %s at %s: %s",
				       cfg->name, cfg->iio_device, cfg->iio_uri, g_strerror(errno));
		goto fail;
	}
	return c;
fail:
	sensor_iio_close(c);
	return NULL;
}

/* Blocks for the next buffer: n samples into x, the first at *t_ns on
 * CLOCK_MONOTONIC. Returns n, or a negative errno. */
ssize_t sensor_iio_read(struct iio_capture *c, float *x, size_t max, int64_t *t_ns)
{
	ssize_t rc = iio_buffer_refill(c->buf);
	ptrdiff_t step = iio_buffer_step(c->buf);
	char *p, *end = iio_buffer_end(c->buf);
	size_t n = 0;

	if (rc < 0)
		return rc;
	for (p = iio_buffer_first(c->buf, c->ch); p < end && n < max; p += step)
		x[n++] = (float)sensor_iio_value(&c->info, p);
	if (c->ts && n) {
		int64_t ts = 0;

		/* The kernel stamps each scan on the clock chosen above. */
		iio_channel_convert(c->ts, &ts, iio_buffer_first(c->buf, c->ts));
		*t_ns = ts;
	} else {
		/* No timestamp channel: the buffer's last sample is now. */
		*t_ns = vigil_now_us() * 1000 - (int64_t)llround((double)n * 1e9 / c->rate);
	}
	return (ssize_t)n;
}

void sensor_iio_cancel(struct iio_capture *c)
{
	if (c && c->buf)
		iio_buffer_cancel(c->buf);
}

void sensor_iio_close(struct iio_capture *c)
{
	if (!c)
		return;
	if (c->buf)
		iio_buffer_destroy(c->buf);
	if (c->ctx)
		iio_context_destroy(c->ctx);
	g_free(c);
}

#else /* no libiio */

#define NO_IIO "this build has no IIO support (libiio-dev was missing when it was configured)"

int sensor_iio_probe(const struct sensor_config *cfg, struct sensor_iio_info *info, char **err)
{
	(void)cfg;
	(void)info;
	*err = g_strdup(NO_IIO);
	return -ENOTSUP;
}

double sensor_iio_value(const struct sensor_iio_info *info, const void *raw)
{
	(void)info;
	(void)raw;
	return NAN;
}

struct iio_capture *sensor_iio_open(const struct sensor_config *cfg, char **err)
{
	*err = g_strdup_printf("vibration %s: " NO_IIO, cfg->name);
	return NULL;
}

ssize_t sensor_iio_read(struct iio_capture *c, float *x, size_t max, int64_t *t_ns)
{
	(void)c;
	(void)x;
	(void)max;
	(void)t_ns;
	return -ENOTSUP;
}

void sensor_iio_cancel(struct iio_capture *c)
{
	(void)c;
}

void sensor_iio_close(struct iio_capture *c)
{
	(void)c;
}
#endif
