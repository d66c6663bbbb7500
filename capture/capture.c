#include "capture/capture.h"

#include <errno.h>
#include <gst/app/gstappsink.h>
#include <gst/gst.h>
#include <string.h>

#include "core/part.h"

struct capture_camera {
	char *name;
	enum capture_mode mode;
	guint queue_frames;
	GstElement *pipeline;
	GstElement *sink;
	GThread *bus_thread;

	GMutex lock;
	GCond changed;
	GQueue frames;          /* struct capture_frame *, oldest first */
	uint64_t next_seq;      /* number of the next frame to arrive */
	uint64_t frames_in, dropped;
	gboolean ended, stopping;
	char *error;
};

void capture_frame_free(struct capture_frame *frame)
{
	if (!frame)
		return;
	g_free(frame->data);
	g_free(frame);
}

static struct capture_frame *frame_from_sample(GstSample *sample, uint64_t seq)
{
	GstCaps *caps = gst_sample_get_caps(sample);
	GstBuffer *buf = gst_sample_get_buffer(sample);
	GstStructure *s;
	GstMapInfo map;
	struct capture_frame *f;
	int w = 0, h = 0, stride;

	if (!caps || !buf)
		return NULL;
	s = gst_caps_get_structure(caps, 0);
	if (!gst_structure_get_int(s, "width", &w) || !gst_structure_get_int(s, "height", &h))
		return NULL;
	/* GStreamer rows of GRAY8 are padded to 4 bytes. */
	stride = (w + 3) & ~3;
	if (!gst_buffer_map(buf, &map, GST_MAP_READ))
		return NULL;
	if (map.size < (gsize)stride * (gsize)(h - 1) + (gsize)w) {
		gst_buffer_unmap(buf, &map);
		return NULL;
	}
	f = g_new0(struct capture_frame, 1);
	f->seq = seq;
	f->t_us = vigil_now_us();
	f->width = w;
	f->height = h;
	f->stride = w;
	f->data = g_malloc((gsize)w * (gsize)h);
	for (int y = 0; y < h; y++)
		memcpy(f->data + (gsize)y * (gsize)w, map.data + (gsize)y * (gsize)stride, (gsize)w);
	gst_buffer_unmap(buf, &map);
	return f;
}

static GstFlowReturn on_new_sample(GstAppSink *sink, gpointer data)
{
	capture_camera *cam = data;
	GstSample *sample = gst_app_sink_pull_sample(sink);
	struct capture_frame *f;
	gboolean stopping;

	if (!sample)
		return GST_FLOW_EOS;
	g_mutex_lock(&cam->lock);
	if (cam->mode == CAPTURE_SEQUENCE) {
		/* A triggered camera: wait for the parts to claim their frames. */
		while (g_queue_get_length(&cam->frames) >= cam->queue_frames && !cam->stopping)
			g_cond_wait(&cam->changed, &cam->lock);
	} else {
		while (g_queue_get_length(&cam->frames) >= cam->queue_frames) {
			capture_frame_free(g_queue_pop_head(&cam->frames));
			cam->dropped++;
		}
	}
	/* The frame number is taken only once the frame is queued, so a reader
	 * never sees a number counted that is not yet in the queue. */
	f = frame_from_sample(sample, cam->next_seq);
	gst_sample_unref(sample);
	if (!f) {
		g_free(cam->error);
		cam->error = g_strdup("frame without width/height or too short");
		g_mutex_unlock(&cam->lock);
		return GST_FLOW_ERROR;
	}
	stopping = cam->stopping;
	if (stopping) {
		capture_frame_free(f);
	} else {
		cam->next_seq++;
		cam->frames_in++;
		g_queue_push_tail(&cam->frames, f);
		g_cond_broadcast(&cam->changed);
	}
	g_mutex_unlock(&cam->lock);
	return stopping ? GST_FLOW_FLUSHING : GST_FLOW_OK;
}

static gpointer bus_thread(gpointer data)
{
	capture_camera *cam = data;
	GstBus *bus = gst_element_get_bus(cam->pipeline);

	for (;;) {
		GstMessage *msg = gst_bus_timed_pop_filtered(bus, 100 * GST_MSECOND,
			GST_MESSAGE_ERROR | GST_MESSAGE_EOS);
		gboolean stop;

		g_mutex_lock(&cam->lock);
		stop = cam->stopping;
		g_mutex_unlock(&cam->lock);
		if (stop) {
			if (msg)
				gst_message_unref(msg);
			break;
		}
		if (!msg)
			continue;
		g_mutex_lock(&cam->lock);
		if (GST_MESSAGE_TYPE(msg) == GST_MESSAGE_ERROR) {
			GError *gerr = NULL;
			char *dbg = NULL;

			gst_message_parse_error(msg, &gerr, &dbg);
			g_free(cam->error);
			cam->error = g_strdup_printf("%s: %s", GST_OBJECT_NAME(msg->src),
						     gerr ? gerr->message : "error");
			g_warning("camera %s: pipeline error: %s (%s)", cam->name,
				  cam->error, dbg ? dbg : "");
			g_clear_error(&gerr);
			g_free(dbg);
		} else {
			g_message("camera %s: end of stream after %" G_GUINT64_FORMAT " frames",
				  cam->name, cam->frames_in);
		}
		cam->ended = TRUE;
		g_cond_broadcast(&cam->changed);
		g_mutex_unlock(&cam->lock);
		gst_message_unref(msg);
	}
	gst_object_unref(bus);
	return NULL;
}

capture_camera *capture_camera_new(const struct capture_config *cfg, char **err)
{
	capture_camera *cam = g_new0(capture_camera, 1);
	GError *gerr = NULL;
	GstCaps *caps;
	GstAppSinkCallbacks cb = { 0 };

	g_mutex_init(&cam->lock);
	g_cond_init(&cam->changed);
	g_queue_init(&cam->frames);
	cam->name = g_strdup(cfg->name);
	cam->mode = cfg->mode;
	cam->queue_frames = cfg->queue_frames > 0 ? (guint)cfg->queue_frames : 8;

	gst_init(NULL, NULL);
	cam->pipeline = gst_parse_launch(cfg->pipeline, &gerr);
	if (!cam->pipeline || gerr) {
		*err = g_strdup_printf("camera %s: bad pipeline: %s", cfg->name,
				       gerr ? gerr->message : "cannot parse");
		g_clear_error(&gerr);
		goto fail;
	}
	if (!GST_IS_BIN(cam->pipeline) ||
	    !(cam->sink = gst_bin_get_by_name(GST_BIN(cam->pipeline), "sink")) ||
	    !GST_IS_APP_SINK(cam->sink)) {
		*err = g_strdup_printf("camera %s: the pipeline must end in 'appsink name=sink'",
				       cfg->name);
		goto fail;
	}
	caps = gst_caps_from_string("video/x-raw,format=GRAY8");
	gst_app_sink_set_caps(GST_APP_SINK(cam->sink), caps);
	gst_caps_unref(caps);
	g_object_set(cam->sink, "sync", FALSE, "emit-signals", FALSE, NULL);
	cb.new_sample = on_new_sample;
	gst_app_sink_set_callbacks(GST_APP_SINK(cam->sink), &cb, cam, NULL);
	return cam;
fail:
	capture_camera_free(cam);
	return NULL;
}

int capture_camera_start(capture_camera *cam, char **err)
{
	if (gst_element_set_state(cam->pipeline, GST_STATE_PLAYING) == GST_STATE_CHANGE_FAILURE) {
		GstBus *bus = gst_element_get_bus(cam->pipeline);
		GstMessage *msg = gst_bus_pop_filtered(bus, GST_MESSAGE_ERROR);
		GError *gerr = NULL;

		char *dbg = NULL;

		if (msg)
			gst_message_parse_error(msg, &gerr, &dbg);
		*err = g_strdup_printf("camera %s: pipeline refused to start: %s%s%s%s", cam->name,
				       gerr ? gerr->message : "state change failed",
				       dbg ? " (" : "", dbg ? dbg : "", dbg ? ")" : "");
		g_clear_error(&gerr);
		g_free(dbg);
		if (msg)
			gst_message_unref(msg);
		gst_object_unref(bus);
		gst_element_set_state(cam->pipeline, GST_STATE_NULL);
		return -EIO;
	}
	cam->bus_thread = g_thread_new("capture-bus", bus_thread, cam);
	return 0;
}

void capture_camera_free(capture_camera *cam)
{
	if (!cam)
		return;
	g_mutex_lock(&cam->lock);
	cam->stopping = TRUE;
	g_cond_broadcast(&cam->changed);
	g_mutex_unlock(&cam->lock);
	if (cam->pipeline)
		gst_element_set_state(cam->pipeline, GST_STATE_NULL);
	if (cam->bus_thread)
		g_thread_join(cam->bus_thread);
	if (cam->sink)
		gst_object_unref(cam->sink);
	if (cam->pipeline)
		gst_object_unref(cam->pipeline);
	g_queue_clear_full(&cam->frames, (GDestroyNotify)capture_frame_free);
	g_mutex_clear(&cam->lock);
	g_cond_clear(&cam->changed);
	g_free(cam->error);
	g_free(cam->name);
	g_free(cam);
}

/* Removes and returns the frame for the part, or NULL; caller holds the lock.
 * *gone is set when the wanted frame can no longer arrive. */
static struct capture_frame *take_frame(capture_camera *cam, uint64_t seq,
					int64_t t_trigger_us, gboolean *gone)
{
	struct capture_frame *f;

	*gone = FALSE;
	while ((f = g_queue_peek_head(&cam->frames))) {
		gboolean older = cam->mode == CAPTURE_SEQUENCE ? f->seq < seq
							       : f->t_us < t_trigger_us;
		if (!older)
			break;
		/* Never claimed: its trigger was missed or it predates the part. */
		capture_frame_free(g_queue_pop_head(&cam->frames));
		cam->dropped++;
		g_cond_broadcast(&cam->changed);
	}
	if (!f) {
		if (cam->mode == CAPTURE_SEQUENCE && cam->next_seq > seq)
			*gone = TRUE;
		return NULL;
	}
	if (cam->mode == CAPTURE_SEQUENCE && f->seq != seq) {
		*gone = TRUE;
		return NULL;
	}
	g_queue_pop_head(&cam->frames);
	g_cond_broadcast(&cam->changed);
	return f;
}

int capture_frame_for(capture_camera *cam, uint64_t seq, int64_t t_trigger_us,
		      int64_t timeout_us, struct capture_frame **frame)
{
	gint64 deadline = g_get_monotonic_time() + timeout_us;
	gboolean gone = FALSE;
	int rc = 0;

	*frame = NULL;
	g_mutex_lock(&cam->lock);
	for (;;) {
		*frame = take_frame(cam, seq, t_trigger_us, &gone);
		if (*frame)
			break;
		if (gone) {
			rc = -ENODATA;
			break;
		}
		if (cam->ended || cam->stopping) {
			rc = -EPIPE;
			break;
		}
		if (!g_cond_wait_until(&cam->changed, &cam->lock, deadline)) {
			*frame = take_frame(cam, seq, t_trigger_us, &gone);
			rc = *frame ? 0 : (gone ? -ENODATA : -ETIMEDOUT);
			break;
		}
	}
	g_mutex_unlock(&cam->lock);
	return rc;
}

void capture_camera_stats(capture_camera *cam, struct capture_stats *st)
{
	g_mutex_lock(&cam->lock);
	st->frames = cam->frames_in;
	st->dropped = cam->dropped;
	st->failed = cam->error != NULL;
	g_mutex_unlock(&cam->lock);
}

const char *capture_camera_name(const capture_camera *cam)
{
	return cam->name;
}
