#include "sensors/sensors.h"

#include <errno.h>
#include <gst/app/gstappsink.h>
#include <gst/gst.h>
#include <math.h>

#include "core/part.h"
#include "core/ring.h"
#include "sensors/sensors-private.h"

struct sensor_source {
	char *name;
	struct sensor_config cfg;
	ring *ring;
	GstElement *pipeline;
	GstElement *sink;
	GThread *bus_thread;
	struct iio_capture *iio;   /* an IIO source instead of a pipeline */
	GThread *iio_thread;
	char *iio_uri, *iio_device, *iio_channel;

	GMutex lock;
	gboolean stopping, failed;
	uint64_t samples;
	int64_t next_pts_ns;        /* for buffers without timestamps */
	int64_t mono_at_origin_ns;  /* monotonic time of the first sample (clock mode) */
	int64_t lag_min_us, lag_max_us;
};

/* Books n samples whose first lies at t_ns on a time line whose zero is
 * base_ns on CLOCK_MONOTONIC (clock mode), then appends them to the ring.
 * t_ns < 0: the source gave no time; the samples follow the last ones. */
static int ingest(sensor_source *s, const float *x, size_t n, int64_t t_ns, int64_t base_ns)
{
	int64_t now_us = vigil_now_us();

	g_mutex_lock(&s->lock);
	if (t_ns < 0)
		t_ns = s->next_pts_ns;
	if (s->samples == 0) {
		/* The pipeline runs on the system clock (CLOCK_MONOTONIC, see
		 * sensor_source_new): clock time = base time + running time, and a
		 * live source stamps a buffer with the time of its first sample. */
		if (s->cfg.mode == SENSOR_CLOCK && base_ns >= 0)
			s->mono_at_origin_ns = base_ns + t_ns;
		else
			s->mono_at_origin_ns = now_us * 1000;
	}
	s->samples += n;
	s->next_pts_ns = t_ns + (int64_t)llround((double)n * 1e9 / s->cfg.rate_hz);
	if (s->cfg.mode == SENSOR_CLOCK && base_ns >= 0) {
		int64_t lag_us = now_us - (base_ns + s->next_pts_ns) / 1000;

		if (s->samples == n || lag_us < s->lag_min_us)
			s->lag_min_us = lag_us;
		if (s->samples == n || lag_us > s->lag_max_us)
			s->lag_max_us = lag_us;
	}
	g_mutex_unlock(&s->lock);

	/* Blocks in sequence mode until the parts have used older samples;
	 * a source that is stopping wakes it through ring_close. */
	return ring_write(s->ring, x, n, t_ns, -1);
}

static GstFlowReturn on_new_sample(GstAppSink *sink, gpointer data)
{
	sensor_source *s = data;
	GstSample *sample = gst_app_sink_pull_sample(sink);
	GstBuffer *buf;
	GstMapInfo map;
	int rc;

	if (!sample)
		return GST_FLOW_EOS;
	buf = gst_sample_get_buffer(sample);
	if (!buf || !gst_buffer_map(buf, &map, GST_MAP_READ)) {
		gst_sample_unref(sample);
		return GST_FLOW_ERROR;
	}
	rc = ingest(s, (const float *)map.data, map.size / sizeof(float),
		    GST_BUFFER_PTS_IS_VALID(buf) ? (int64_t)GST_BUFFER_PTS(buf) : -1,
		    GST_BUFFER_PTS_IS_VALID(buf)
			    ? (int64_t)gst_element_get_base_time(s->pipeline) : -1);
	gst_buffer_unmap(buf, &map);
	gst_sample_unref(sample);
	return rc < 0 ? GST_FLOW_FLUSHING : GST_FLOW_OK;
}

/* An IIO source: buffers stamped on CLOCK_MONOTONIC itself (base 0). */
static gpointer iio_thread(gpointer data)
{
	sensor_source *s = data;
	size_t max = s->cfg.iio_buffer_samples ? s->cfg.iio_buffer_samples
					       : (size_t)MAX(1.0, s->cfg.rate_hz / 100);
	float *x = g_new(float, max);
	int64_t t_ns;
	ssize_t n;

	while ((n = sensor_iio_read(s->iio, x, max, &t_ns)) > 0)
		if (ingest(s, x, (size_t)n, t_ns, 0) < 0)
			break;
	g_mutex_lock(&s->lock);
	if (n < 0 && !s->stopping) {
		g_warning("vibration %s: IIO capture failed: %s", s->name, g_strerror((int)-n));
		s->failed = TRUE;
	}
	g_mutex_unlock(&s->lock);
	ring_close(s->ring);
	g_free(x);
	return NULL;
}

static gpointer bus_thread(gpointer data)
{
	sensor_source *s = data;
	GstBus *bus = gst_element_get_bus(s->pipeline);

	for (;;) {
		GstMessage *msg = gst_bus_timed_pop_filtered(bus, 100 * GST_MSECOND,
			GST_MESSAGE_ERROR | GST_MESSAGE_EOS);
		gboolean stop;

		g_mutex_lock(&s->lock);
		stop = s->stopping;
		g_mutex_unlock(&s->lock);
		if (stop) {
			if (msg)
				gst_message_unref(msg);
			break;
		}
		if (!msg)
			continue;
		if (GST_MESSAGE_TYPE(msg) == GST_MESSAGE_ERROR) {
			GError *gerr = NULL;

			gst_message_parse_error(msg, &gerr, NULL);
			g_warning("vibration %s: pipeline error from %s: %s", s->name,
				  GST_OBJECT_NAME(msg->src), gerr ? gerr->message : "error");
			g_clear_error(&gerr);
			g_mutex_lock(&s->lock);
			s->failed = TRUE;
			g_mutex_unlock(&s->lock);
		} else {
			g_message("vibration %s: end of stream after %" G_GUINT64_FORMAT " samples",
				  s->name, s->samples);
		}
		ring_close(s->ring);
		gst_message_unref(msg);
	}
	gst_object_unref(bus);
	return NULL;
}

sensor_source *sensor_source_new(const struct sensor_config *cfg, char **err)
{
	sensor_source *s = g_new0(sensor_source, 1);
	GError *gerr = NULL;
	GstCaps *caps;
	GstAppSinkCallbacks cb = { 0 };
	size_t capacity;

	g_mutex_init(&s->lock);
	s->name = g_strdup(cfg->name);
	s->cfg = *cfg;
	s->cfg.name = s->name;
	s->cfg.pipeline = NULL;
	if (!(cfg->rate_hz > 0) || cfg->window == 0) {
		*err = g_strdup("rate and window must be positive");
		goto fail;
	}
	if (s->cfg.stride == 0)
		s->cfg.stride = cfg->window;
	capacity = (size_t)(cfg->buffer_s * cfg->rate_hz);
	if (capacity < 4 * (cfg->window + s->cfg.stride))
		capacity = 4 * (cfg->window + s->cfg.stride);
	s->ring = ring_new(capacity, cfg->rate_hz, cfg->clip_level, cfg->flat_level,
			   cfg->mode == SENSOR_SEQUENCE);

	if (cfg->iio_uri) {
		struct sensor_iio_info info;

		s->cfg.iio_uri = s->iio_uri = g_strdup(cfg->iio_uri);
		s->cfg.iio_device = s->iio_device = g_strdup(cfg->iio_device);
		s->cfg.iio_channel = s->iio_channel = g_strdup(cfg->iio_channel);
		if (!cfg->iio_device || !cfg->iio_channel) {
			*err = g_strdup("an IIO source needs a device and a channel");
			goto fail;
		}
		if (sensor_iio_probe(&s->cfg, &info, err) < 0)
			goto fail;
		return s;
	}
	gst_init(NULL, NULL);
	s->pipeline = gst_parse_launch(cfg->pipeline, &gerr);
	if (!s->pipeline || gerr) {
		*err = g_strdup(gerr ? gerr->message : "cannot be parsed");
		g_clear_error(&gerr);
		goto fail;
	}
	if (!GST_IS_BIN(s->pipeline) ||
	    !(s->sink = gst_bin_get_by_name(GST_BIN(s->pipeline), "sink")) ||
	    !GST_IS_APP_SINK(s->sink)) {
		*err = g_strdup("no appsink named sink: the pipeline must end in "
				"'appsink name=sink'");
		goto fail;
	}
	caps = gst_caps_new_simple("audio/x-raw", "format", G_TYPE_STRING, "F32LE",
				   "channels", G_TYPE_INT, 1,
				   "rate", G_TYPE_INT, (int)lround(cfg->rate_hz),
				   "layout", G_TYPE_STRING, "interleaved", NULL);
	gst_app_sink_set_caps(GST_APP_SINK(s->sink), caps);
	gst_caps_unref(caps);
	g_object_set(s->sink, "emit-signals", FALSE, NULL);
	if (cfg->mode == SENSOR_SEQUENCE) {
		g_object_set(s->sink, "sync", FALSE, NULL);
	} else {
		/* One clock for frames, samples and triggers: the monotonic one. */
		GstClock *clock = gst_system_clock_obtain();

		g_object_set(clock, "clock-type", GST_CLOCK_TYPE_MONOTONIC, NULL);
		if (GST_IS_PIPELINE(s->pipeline))
			gst_pipeline_use_clock(GST_PIPELINE(s->pipeline), clock);
		gst_object_unref(clock);
	}
	cb.new_sample = on_new_sample;
	gst_app_sink_set_callbacks(GST_APP_SINK(s->sink), &cb, s, NULL);
	return s;
fail:
	sensor_source_free(s);
	return NULL;
}

int sensor_source_start(sensor_source *s, char **err)
{
	if (s->cfg.iio_uri) {
		if (!(s->iio = sensor_iio_open(&s->cfg, err)))
			return -EIO;
		s->iio_thread = g_thread_new("sensor-iio", iio_thread, s);
		return 0;
	}
	if (gst_element_set_state(s->pipeline, GST_STATE_PLAYING) == GST_STATE_CHANGE_FAILURE) {
		*err = g_strdup_printf("vibration %s: pipeline refused to start", s->name);
		return -EIO;
	}
	s->bus_thread = g_thread_new("sensor-bus", bus_thread, s);
	return 0;
}

void sensor_source_free(sensor_source *s)
{
	if (!s)
		return;
	g_mutex_lock(&s->lock);
	s->stopping = TRUE;
	g_mutex_unlock(&s->lock);
	if (s->ring)
		ring_close(s->ring); /* wakes a streaming thread blocked on a full ring */
	if (s->pipeline)
		gst_element_set_state(s->pipeline, GST_STATE_NULL);
	if (s->iio_thread) {
		sensor_iio_cancel(s->iio);
		g_thread_join(s->iio_thread);
	}
	sensor_iio_close(s->iio);
	g_free(s->iio_uri);
	g_free(s->iio_device);
	g_free(s->iio_channel);
	if (s->bus_thread)
		g_thread_join(s->bus_thread);
	if (s->sink)
		gst_object_unref(s->sink);
	if (s->pipeline)
		gst_object_unref(s->pipeline);
	ring_free(s->ring);
	g_mutex_clear(&s->lock);
	g_free(s->name);
	g_free(s);
}

int sensor_window_for(sensor_source *s, uint64_t seq, int64_t t_trigger_us,
		      int64_t timeout_us, float *out, unsigned *flags, int64_t *t_first_ns)
{
	int64_t t_start_ns, origin_ns = -1, offset_ns = (int64_t)llround(s->cfg.offset_ms * 1e6);
	int rc;

	if (t_first_ns)
		*t_first_ns = -1;

	if (s->cfg.mode == SENSOR_SEQUENCE) {
		t_start_ns = (int64_t)llround((double)(seq * s->cfg.stride) * 1e9 / s->cfg.rate_hz);
	} else {
		g_mutex_lock(&s->lock);
		origin_ns = s->samples ? s->mono_at_origin_ns : -1;
		g_mutex_unlock(&s->lock);
		if (origin_ns < 0)
			return -ETIMEDOUT;
		t_start_ns = t_trigger_us * 1000 - origin_ns;
	}
	t_start_ns += offset_ns;
	/* Parts ask in order: nothing before this window is wanted again,
	 * whether or not it comes in time. Released before the wait, so that
	 * windows that timed out in a stall do not pin the ring and hold the
	 * source back for good once it resumes. */
	if (s->cfg.mode == SENSOR_SEQUENCE)
		ring_release_before(s->ring, t_start_ns);
	rc = ring_window(s->ring, t_start_ns, s->cfg.window, out, flags, timeout_us);
	if (rc == 0 && t_first_ns && origin_ns >= 0) {
		/* The ring rounds the start to a whole sample (core/ring.h). */
		double index = (double)llround((double)t_start_ns * s->cfg.rate_hz / 1e9);

		*t_first_ns = origin_ns + (int64_t)llround(index * 1e9 / s->cfg.rate_hz);
	}
	return rc;
}

void sensor_source_stats(sensor_source *s, struct sensor_stats *st)
{
	g_mutex_lock(&s->lock);
	st->samples = s->samples;
	st->failed = s->failed;
	st->lag_min_us = s->lag_min_us;
	st->lag_max_us = s->lag_max_us;
	g_mutex_unlock(&s->lock);
}

const char *sensor_source_name(const sensor_source *s)
{
	return s->name;
}
