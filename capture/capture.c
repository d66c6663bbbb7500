#include "capture/capture.h"

#include <errno.h>
#include <math.h>
#include <gst/app/gstappsink.h>
#include <gst/base/gstbasesrc.h>
#include <gst/gst.h>
#include <stdlib.h>
#include <string.h>

#include "core/part.h"

struct capture_camera {
	char *name;
	char *description;      /* the pipeline in gst-launch syntax */
	enum capture_mode mode;
	enum capture_restart restart;
	int restart_min_ms, restart_max_ms, watchdog_ms;
	guint queue_frames;
	GstElement *pipeline;
	GstElement *sink;
	GThread *bus_thread;

	GMutex lock;
	GCond changed;
	GQueue frames;          /* struct capture_frame *, oldest first */
	uint64_t next_seq;      /* number of the next frame to arrive */
	uint64_t frames_in, dropped, restarts;
	gboolean ended, stopping, down;
	gboolean ended_by_error;
	gboolean resync;        /* sequence mode: re-align numbering after a restart */
	gboolean realign;       /* sequence mode, live: re-align by time after a timeout */
	gboolean live;          /* a live source (capture.h) */
	gboolean playing;       /* the current pipeline reached PLAYING */
	int64_t slack_us;
	/* Sequence mode: the latest triggers' times by number (seq % TRIG_RING),
	 * -1 where not seen (capture_camera_trigger). */
#define TRIG_RING 64
	uint64_t trig_seq[TRIG_RING];
	int64_t trig_us[TRIG_RING];
	uint64_t desyncs;
	int64_t latency_us;     /* live sequence: trigger to frame of the last frame
				 * paired, -1 before the first */
	int64_t up_since_us;    /* monotonic time the current pipeline started */
	int64_t playing_us;     /* monotonic time its start (set_state) returned:
				 * the watchdog's origin */
	int64_t last_frame_us;
	int64_t overflow_us;    /* timestamp mode: arrival of the newest frame dropped
				 * unclaimed because the queue was full */
	char *error;
};

void capture_frame_free(struct capture_frame *frame)
{
	if (!frame)
		return;
	g_free(frame->data);
	g_free(frame);
}

double capture_frame_contrast(const struct capture_frame *frame)
{
	/* Sums of a sample of pixels: enough to tell a flat field (a standard
	 * deviation of a grey level or two) from any picture (tens), at a
	 * quarter of a full pass. */
	uint64_t n = 0, sum = 0, sq = 0;
	double mean;

	for (int y = 0; y < frame->height; y += 2) {
		const uint8_t *row = frame->data + (size_t)y * (size_t)frame->stride;

		for (int x = 0; x < frame->width; x += 2) {
			sum += row[x];
			sq += (uint64_t)row[x] * row[x];
			n++;
		}
	}
	if (n == 0)
		return 0;
	mean = (double)sum / (double)n;
	return sqrt(MAX((double)sq / (double)n - mean * mean, 0));
}

static struct capture_frame *frame_from_sample(GstSample *sample, uint64_t seq,
					       int64_t base_time_ns)
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
	/* Clock time = base time + running time; with the default segment a
	 * buffer's running time is its PTS. */
	f->t_pts_us = GST_BUFFER_PTS_IS_VALID(buf) && base_time_ns >= 0
		? (base_time_ns + (int64_t)GST_BUFFER_PTS(buf)) / 1000 : -1;
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
	/* The frame trace (docs/architecture.md, "One clock"): each frame's
	 * number and arrival, and each one dropped unclaimed, so that a part
	 * without a frame can be checked against what reached vigild in its
	 * time. Only when debug messages are shown. */
	gboolean trace = !g_log_writer_default_would_drop(G_LOG_LEVEL_DEBUG, G_LOG_DOMAIN);
	uint64_t seq = 0;
	int64_t t_us = 0;

	if (!sample)
		return GST_FLOW_EOS;
	g_mutex_lock(&cam->lock);
	if (cam->mode == CAPTURE_SEQUENCE) {
		/* A triggered camera: wait for the parts to claim their frames. */
		while (g_queue_get_length(&cam->frames) >= cam->queue_frames &&
		       !cam->stopping && !cam->down)
			g_cond_wait(&cam->changed, &cam->lock);
	} else {
		while (g_queue_get_length(&cam->frames) >= cam->queue_frames) {
			struct capture_frame *old = g_queue_pop_head(&cam->frames);

			if (trace)
				g_debug("camera %s: frame %" G_GUINT64_FORMAT " dropped unclaimed "
					"(queue full)", cam->name, old->seq);
			cam->overflow_us = old->t_us;
			capture_frame_free(old);
			cam->dropped++;
		}
	}
	/* The frame number is taken only once the frame is queued, so a reader
	 * never sees a number counted that is not yet in the queue. */
	f = frame_from_sample(sample, cam->next_seq,
			      (int64_t)gst_element_get_base_time(GST_ELEMENT(sink)));
	gst_sample_unref(sample);
	if (!f) {
		g_free(cam->error);
		cam->error = g_strdup("frame without width/height or too short");
		g_mutex_unlock(&cam->lock);
		return GST_FLOW_ERROR;
	}
	/* A pipeline being torn down for a restart delivers nothing more. */
	stopping = cam->stopping || cam->down;
	if (stopping) {
		capture_frame_free(f);
	} else {
		cam->next_seq++;
		cam->frames_in++;
		cam->last_frame_us = f->t_us;
		seq = f->seq;
		t_us = f->t_us;
		g_queue_push_tail(&cam->frames, f);
		g_cond_broadcast(&cam->changed);
	}
	g_mutex_unlock(&cam->lock);
	if (trace && !stopping)
		g_debug("camera %s: frame %" G_GUINT64_FORMAT " reached vigild at %" G_GINT64_FORMAT,
			cam->name, seq, t_us);
	return stopping ? GST_FLOW_FLUSHING : GST_FLOW_OK;
}

static int build_pipeline(capture_camera *cam, char **err);
static int play_pipeline(capture_camera *cam, char **err);

/* Whether e is a decoder (its class says so: pngdec, jpegdec, avdec_*). */
static gboolean is_decoder(GstObject *o)
{
	const char *klass;

	if (!GST_IS_ELEMENT(o))
		return FALSE;
	klass = gst_element_class_get_metadata(GST_ELEMENT_GET_CLASS(o),
					       GST_ELEMENT_METADATA_KLASS);
	return klass && strstr(klass, "Decoder") != NULL;
}

/* Runs in the thread that posts msg. A decoder that drops a frame it cannot
 * decode says so on the bus: GstVideoDecoder (jpegdec, avdec_*) posts a QoS
 * message for each frame it drops, some decoders a warning. In sequence
 * mode the lost frame's number is skipped before the next frame reaches the
 * appsink, so the count stays the trigger count (capture.h). */
static GstBusSyncReply on_bus_sync(GstBus *bus, GstMessage *msg, gpointer data)
{
	capture_camera *cam = data;
	GError *gerr = NULL;
	uint64_t lost;

	(void)bus;
	if ((GST_MESSAGE_TYPE(msg) != GST_MESSAGE_WARNING &&
	     GST_MESSAGE_TYPE(msg) != GST_MESSAGE_QOS) || cam->mode != CAPTURE_SEQUENCE ||
	    !is_decoder(GST_MESSAGE_SRC(msg)))
		return GST_BUS_PASS;
	if (GST_MESSAGE_TYPE(msg) == GST_MESSAGE_WARNING)
		gst_message_parse_warning(msg, &gerr, NULL);
	g_mutex_lock(&cam->lock);
	lost = cam->next_seq++;
	cam->desyncs++;
	g_mutex_unlock(&cam->lock);
	g_warning("camera %s: %s dropped frame %" G_GUINT64_FORMAT " (%s): its part fails safe, "
		  "the next part gets the next frame", cam->name, GST_MESSAGE_SRC_NAME(msg), lost,
		  gerr ? gerr->message : "a frame it could not decode");
	g_clear_error(&gerr);
	return GST_BUS_PASS;
}

/* On a source's src pad, in its streaming thread: an empty buffer (an empty
 * image file in a replay) is a frame that no decoder will turn into one and
 * none will say so (pngdec waits for more data): its number is skipped
 * before the next frame is counted, as for a decoder's drop. */
static GstPadProbeReturn on_source_buffer(GstPad *pad, GstPadProbeInfo *info, gpointer data)
{
	capture_camera *cam = data;
	GstBuffer *buf = gst_pad_probe_info_get_buffer(info);
	uint64_t lost;

	(void)pad;
	if (!buf || gst_buffer_get_size(buf) > 0)
		return GST_PAD_PROBE_OK;
	g_mutex_lock(&cam->lock);
	lost = cam->next_seq++;
	cam->desyncs++;
	g_mutex_unlock(&cam->lock);
	g_warning("camera %s: the source gave an empty frame %" G_GUINT64_FORMAT ": its part "
		  "fails safe, the next part gets the next frame", cam->name, lost);
	return GST_PAD_PROBE_OK;
}

/* Watches every source element's src pads for empty buffers (sequence). */
static void watch_sources(capture_camera *cam, GstElement *pipeline)
{
	GstIterator *it = gst_bin_iterate_sources(GST_BIN(pipeline));
	GValue v = G_VALUE_INIT;

	while (gst_iterator_next(it, &v) == GST_ITERATOR_OK) {
		GstPad *pad = gst_element_get_static_pad(g_value_get_object(&v), "src");

		if (pad) {
			gst_pad_add_probe(pad, GST_PAD_PROBE_TYPE_BUFFER, on_source_buffer, cam,
					  NULL);
			gst_object_unref(pad);
		}
		g_value_reset(&v);
	}
	g_value_unset(&v);
	gst_iterator_free(it);
}

/* Whether the pipeline has a live source (a camera, not a replay). */
static gboolean pipeline_is_live(GstElement *pipeline)
{
	GstIterator *it = gst_bin_iterate_recurse(GST_BIN(pipeline));
	GValue v = G_VALUE_INIT;
	gboolean live = FALSE;

	while (!live && gst_iterator_next(it, &v) == GST_ITERATOR_OK) {
		GstElement *e = g_value_get_object(&v);

		live = GST_IS_BASE_SRC(e) && gst_base_src_is_live(GST_BASE_SRC(e));
		g_value_reset(&v);
	}
	g_value_unset(&v);
	gst_iterator_free(it);
	return live;
}

static gboolean restart_wanted(const capture_camera *cam, gboolean is_error)
{
	switch (cam->restart) {
	case CAPTURE_RESTART_ALWAYS:
		return TRUE;
	case CAPTURE_RESTART_NEVER:
		return FALSE;
	case CAPTURE_RESTART_AUTO:
		break;
	}
	return is_error || cam->mode == CAPTURE_TIMESTAMP;
}

/* Waits for the next error or end of stream of the current pipeline;
 * FALSE when the camera is stopping. Caller does not hold the lock. */
static gboolean wait_for_failure(capture_camera *cam, gboolean *is_error)
{
	GstBus *bus = gst_element_get_bus(cam->pipeline);
	gboolean stop = FALSE;

	for (;;) {
		GstMessage *msg = gst_bus_timed_pop_filtered(bus, 100 * GST_MSECOND,
			GST_MESSAGE_ERROR | GST_MESSAGE_EOS | GST_MESSAGE_STATE_CHANGED);

		gboolean silent = FALSE;

		if (msg && GST_MESSAGE_TYPE(msg) == GST_MESSAGE_STATE_CHANGED) {
			GstState state;

			/* A live pipeline reaches PLAYING only with its first
			 * frame; its source plays before that, waiting for one. */
			gst_message_parse_state_changed(msg, NULL, &state, NULL);
			if (state == GST_STATE_PLAYING &&
			    (GST_MESSAGE_SRC(msg) == GST_OBJECT(cam->pipeline) ||
			     GST_OBJECT_FLAG_IS_SET(GST_MESSAGE_SRC(msg), GST_ELEMENT_FLAG_SOURCE))) {
				g_mutex_lock(&cam->lock);
				cam->playing = TRUE;
				g_mutex_unlock(&cam->lock);
			}
			gst_message_unref(msg);
			msg = NULL;
		}

		g_mutex_lock(&cam->lock);
		stop = cam->stopping;
		if (cam->watchdog_ms > 0 && !msg) {
			/* A camera that vanished often posts nothing: notice the
			 * silence. Counted from when the start returned, not from
			 * up_since_us: starting aravissrc talks to the camera and
			 * can take longer than the watchdog on a busy host, and a
			 * camera declared silent before it could send a frame
			 * would be restarted again and again. */
			int64_t last = MAX(cam->last_frame_us, cam->playing_us);

			silent = vigil_now_us() - last > (int64_t)cam->watchdog_ms * 1000;
			if (silent) {
				g_free(cam->error);
				cam->error = g_strdup_printf("no frame for %d ms", cam->watchdog_ms);
			}
		}
		g_mutex_unlock(&cam->lock);
		if (silent && !stop) {
			g_warning("camera %s: no frame for %d ms", cam->name, cam->watchdog_ms);
			*is_error = TRUE;
			break;
		}
		if (stop || msg) {
			if (msg) {
				*is_error = GST_MESSAGE_TYPE(msg) == GST_MESSAGE_ERROR;
				if (*is_error) {
					GError *gerr = NULL;
					char *dbg = NULL;

					gst_message_parse_error(msg, &gerr, &dbg);
					g_mutex_lock(&cam->lock);
					g_free(cam->error);
					cam->error = g_strdup_printf("%s: %s", GST_OBJECT_NAME(msg->src),
								     gerr ? gerr->message : "error");
					g_mutex_unlock(&cam->lock);
					g_warning("camera %s: pipeline error: %s (%s)", cam->name,
						  gerr ? gerr->message : "error", dbg ? dbg : "");
					g_clear_error(&gerr);
					g_free(dbg);
				} else {
					g_message("camera %s: end of stream after %" G_GUINT64_FORMAT
						  " frames", cam->name, cam->frames_in);
				}
				gst_message_unref(msg);
			}
			break;
		}
	}
	gst_object_unref(bus);
	return !stop;
}

/* Sleeps up to ms unless the camera is stopping; FALSE when stopping. */
static gboolean backoff_sleep(capture_camera *cam, int ms)
{
	gint64 end = g_get_monotonic_time() + (gint64)ms * 1000;
	gboolean stop;

	g_mutex_lock(&cam->lock);
	while (!cam->stopping && g_cond_wait_until(&cam->changed, &cam->lock, end))
		;
	stop = cam->stopping;
	g_mutex_unlock(&cam->lock);
	return !stop;
}

static gpointer bus_thread(gpointer data)
{
	capture_camera *cam = data;
	int delay = cam->restart_min_ms;

	for (;;) {
		gboolean is_error = FALSE;
		char *err = NULL;

		if (!wait_for_failure(cam, &is_error))
			break;
		/* A pipeline that ran a good while before failing starts the
		 * back-off afresh; one that keeps failing at once waits longer. */
		if (vigil_now_us() - cam->up_since_us > (int64_t)cam->restart_max_ms * 1000)
			delay = cam->restart_min_ms;
		if (!restart_wanted(cam, is_error)) {
			g_mutex_lock(&cam->lock);
			cam->ended = TRUE;
			cam->ended_by_error = is_error;
			g_cond_broadcast(&cam->changed);
			g_mutex_unlock(&cam->lock);
			break;
		}
		g_mutex_lock(&cam->lock);
		cam->down = TRUE;
		cam->playing = FALSE;
		g_cond_broadcast(&cam->changed);
		g_mutex_unlock(&cam->lock);
		/* Tear down and build again until it plays, backing off. */
		for (;;) {
			gst_element_set_state(cam->pipeline, GST_STATE_NULL);
			g_warning("camera %s: down, restarting in %d ms", cam->name, delay);
			if (!backoff_sleep(cam, delay))
				goto out;
			delay = MIN(delay * 2, cam->restart_max_ms);
			if (build_pipeline(cam, &err) < 0)
				g_warning("camera %s: cannot rebuild the pipeline: %s", cam->name, err);
			else if (play_pipeline(cam, &err) == 0)
				break;
			else
				g_warning("%s", err);
			g_clear_pointer(&err, g_free);
		}
		g_message("camera %s: restarted", cam->name);
	}
out:
	return NULL;
}

/* Plays the current pipeline; on failure *err names the camera and reason. */
static int play_pipeline(capture_camera *cam, char **err)
{
	gboolean restarting;

	/* Up before it plays: a frame that came before down was cleared would
	 * be refused (GST_FLOW_FLUSHING), which pauses a replay's source for
	 * good, without an error or end of stream. */
	g_mutex_lock(&cam->lock);
	cam->up_since_us = vigil_now_us();
	restarting = cam->down;
	cam->down = FALSE;
	if (restarting && cam->mode == CAPTURE_SEQUENCE)
		cam->resync = TRUE;
	g_mutex_unlock(&cam->lock);
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
		g_mutex_lock(&cam->lock);
		cam->down = restarting;
		g_mutex_unlock(&cam->lock);
		gst_element_set_state(cam->pipeline, GST_STATE_NULL);
		return -EIO;
	}
	g_mutex_lock(&cam->lock);
	cam->playing_us = vigil_now_us();
	if (restarting)
		cam->restarts++;
	g_cond_broadcast(&cam->changed);
	g_mutex_unlock(&cam->lock);
	return 0;
}

/* (Re)builds the pipeline from its description, replacing any old one. On
 * failure *err says what is wrong with the description, not naming the
 * camera (capture_camera_new). */
static int build_pipeline(capture_camera *cam, char **err)
{
	GError *gerr = NULL;
	GstElement *pipeline, *sink = NULL;
	GstCaps *caps;
	GstAppSinkCallbacks cb = { 0 };

	pipeline = gst_parse_launch(cam->description, &gerr);
	if (!pipeline || gerr) {
		*err = g_strdup(gerr ? gerr->message : "cannot be parsed");
		g_clear_error(&gerr);
		if (pipeline)
			gst_object_unref(pipeline);
		return -EINVAL;
	}
	if (!GST_IS_BIN(pipeline) ||
	    !(sink = gst_bin_get_by_name(GST_BIN(pipeline), "sink")) ||
	    !GST_IS_APP_SINK(sink)) {
		*err = g_strdup("no appsink named sink: the pipeline must end in "
				"'appsink name=sink'");
		if (sink)
			gst_object_unref(sink);
		gst_object_unref(pipeline);
		return -EINVAL;
	}
	caps = gst_caps_from_string("video/x-raw,format=GRAY8");
	gst_app_sink_set_caps(GST_APP_SINK(sink), caps);
	gst_caps_unref(caps);
	g_object_set(sink, "sync", FALSE, "emit-signals", FALSE, NULL);
	{
		/* One clock for frames, samples and triggers (capture.h). */
		GstClock *clock = gst_system_clock_obtain();

		g_object_set(clock, "clock-type", GST_CLOCK_TYPE_MONOTONIC, NULL);
		if (GST_IS_PIPELINE(pipeline))
			gst_pipeline_use_clock(GST_PIPELINE(pipeline), clock);
		gst_object_unref(clock);
	}
	cb.new_sample = on_new_sample;
	gst_app_sink_set_callbacks(GST_APP_SINK(sink), &cb, cam, NULL);
	{
		GstBus *bus = gst_element_get_bus(pipeline);

		gst_bus_set_sync_handler(bus, on_bus_sync, cam, NULL);
		gst_object_unref(bus);
	}
	if (cam->mode == CAPTURE_SEQUENCE)
		watch_sources(cam, pipeline);
	{
		gboolean live = pipeline_is_live(pipeline);

		g_mutex_lock(&cam->lock);
		cam->live = live;
		g_mutex_unlock(&cam->lock);
	}
	if (cam->pipeline) {
		gst_element_set_state(cam->pipeline, GST_STATE_NULL);
		gst_object_unref(cam->sink);
		gst_object_unref(cam->pipeline);
	}
	cam->pipeline = pipeline;
	cam->sink = sink;
	return 0;
}

capture_camera *capture_camera_new(const struct capture_config *cfg, char **err)
{
	capture_camera *cam = g_new0(capture_camera, 1);

	g_mutex_init(&cam->lock);
	g_cond_init(&cam->changed);
	g_queue_init(&cam->frames);
	cam->name = g_strdup(cfg->name);
	cam->description = g_strdup(cfg->pipeline);
	cam->mode = cfg->mode;
	cam->restart = cfg->restart;
	cam->restart_min_ms = cfg->restart_min_ms > 0 ? cfg->restart_min_ms : 500;
	cam->restart_max_ms = MAX(cfg->restart_max_ms > 0 ? cfg->restart_max_ms : 10000,
				  cam->restart_min_ms);
	cam->queue_frames = cfg->queue_frames > 0 ? (guint)cfg->queue_frames : 8;
	cam->watchdog_ms = MAX(cfg->watchdog_ms, 0);
	cam->slack_us = (int64_t)(cfg->slack_ms > 0 ? cfg->slack_ms : 20) * 1000;
	cam->latency_us = -1;
	for (int i = 0; i < TRIG_RING; i++)
		cam->trig_us[i] = -1;

	gst_init(NULL, NULL);
	if (build_pipeline(cam, err) < 0) {
		capture_camera_free(cam);
		return NULL;
	}
	return cam;
}

int capture_camera_start(capture_camera *cam, char **err)
{
	int rc = play_pipeline(cam, err);

	if (rc < 0)
		return rc;
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
	g_free(cam->description);
	g_free(cam);
}

/* Renumbers the queued frames from seq on and the next one to arrive after
 * them; caller holds the lock. */
static void renumber(capture_camera *cam, uint64_t seq)
{
	uint64_t k = 0;

	for (GList *it = cam->frames.head; it; it = it->next, k++)
		((struct capture_frame *)it->data)->seq = seq + k;
	cam->next_seq = seq + k;
}

/* The time trigger seq was seen, or -1; caller holds the lock. */
static int64_t trigger_us(const capture_camera *cam, uint64_t seq)
{
	unsigned i = (unsigned)(seq % TRIG_RING);

	return cam->trig_seq[i] == seq ? cam->trig_us[i] : -1;
}

/* Live sequence camera, frame f counted for trigger seq (at t_us): whether
 * it belongs to an earlier trigger. It does when it reached vigild more
 * than slack before the trigger was seen, or, once the camera's latency
 * (trigger to frame, of the last frame paired) is known, when its latency
 * fits the previous trigger better by more than slack (jitter in latency
 * decides nothing). Caller holds the lock. */
static gboolean belongs_before(const capture_camera *cam, const struct capture_frame *f,
			       uint64_t seq, int64_t t_us)
{
	int64_t t_prev = seq > 0 ? trigger_us(cam, seq - 1) : -1, lat = cam->latency_us;

	if (f->t_us < t_us - cam->slack_us)
		return TRUE;
	return lat >= 0 && t_prev >= 0 &&
	       llabs(f->t_us - t_prev - lat) + cam->slack_us < llabs(f->t_us - t_us - lat);
}

/* The same, whether f belongs to the next trigger: it reached vigild after
 * that trigger was seen and its latency fits it better by more than slack,
 * or, the latency not yet known, it came more than slack after it. */
static gboolean belongs_after(const capture_camera *cam, const struct capture_frame *f,
			      uint64_t seq, int64_t t_us)
{
	int64_t t_next = trigger_us(cam, seq + 1), lat = cam->latency_us;

	if (t_next < 0)
		return FALSE;
	if (lat < 0)
		return f->t_us > t_next + cam->slack_us;
	return f->t_us > t_next - cam->slack_us &&
	       llabs(f->t_us - t_next - lat) + cam->slack_us < llabs(f->t_us - t_us - lat);
}

/* Drops the head frame as one no part claims; caller holds the lock. */
static void drop_head(capture_camera *cam)
{
	capture_frame_free(g_queue_pop_head(&cam->frames));
	cam->dropped++;
	g_cond_broadcast(&cam->changed);
}

/* Removes and returns the frame for the part, or NULL; caller holds the lock.
 * *gone is set when the wanted frame can no longer arrive; *recheck_us, when
 * not -1, is when to look again though nothing changes (a live sequence
 * frame waits until the next trigger would have been seen). */
static struct capture_frame *take_frame(capture_camera *cam, uint64_t seq,
					int64_t t_trigger_us, int64_t max_delay_us,
					gboolean *gone, int64_t *recheck_us)
{
	gboolean timed = cam->mode == CAPTURE_SEQUENCE && cam->live;
	struct capture_frame *f;

	*gone = FALSE;
	*recheck_us = -1;
	if ((cam->resync || cam->realign) && cam->mode == CAPTURE_SEQUENCE) {
		/* After a restart the first new frame belongs to the first part
		 * triggered after the camera came back; renumber what is queued.
		 * A live camera's frames that reached vigild before this part's
		 * trigger belong to earlier parts, after a restart or a timeout. */
		if (cam->resync && t_trigger_us < cam->up_since_us) {
			*gone = TRUE;
			return NULL;
		}
		while (timed && (f = g_queue_peek_head(&cam->frames)) &&
		       f->t_us < t_trigger_us - cam->slack_us)
			drop_head(cam);
		renumber(cam, seq);
		cam->resync = cam->realign = FALSE;
	}
	while ((f = g_queue_peek_head(&cam->frames))) {
		gboolean older = cam->mode == CAPTURE_SEQUENCE ? f->seq < seq
							       : f->t_us < t_trigger_us;
		if (older) {
			/* Never claimed: its trigger was missed or it predates the part. */
			drop_head(cam);
			continue;
		}
		if (!timed || f->seq != seq)
			break;
		if (belongs_before(cam, f, seq, t_trigger_us)) {
			/* Taken for an earlier trigger: the camera fired twice.
			 * Later frames move up by one. */
			cam->desyncs++;
			g_warning("camera %s: frame %" G_GUINT64_FORMAT " came %.1f ms after its "
				  "trigger (%.1f ms usual): it belongs to an earlier trigger, an extra "
				  "frame, dropped; the pairing is re-aligned", cam->name, f->seq,
				  (double)(f->t_us - t_trigger_us) / 1000.0,
				  (double)cam->latency_us / 1000.0);
			drop_head(cam);
			renumber(cam, seq);
			continue;
		}
		if (belongs_after(cam, f, seq, t_trigger_us)) {
			/* Taken for the next trigger: this part's frame never
			 * came (a missed trigger); the frame is the next part's. */
			cam->desyncs++;
			g_warning("camera %s: frame %" G_GUINT64_FORMAT " came %.1f ms after the "
				  "next trigger (%.1f ms usual): the frame of trigger %" G_GUINT64_FORMAT
				  " is missing; the pairing is re-aligned", cam->name, f->seq,
				  (double)(f->t_us - trigger_us(cam, seq + 1)) / 1000.0,
				  (double)cam->latency_us / 1000.0, seq);
			renumber(cam, seq + 1);
			*gone = TRUE;
			return NULL;
		}
		/* The next trigger may not be seen yet (a PLC polled every few
		 * ms): a frame later than usual waits for it. */
		if (trigger_us(cam, seq + 1) < 0 && vigil_now_us() < f->t_us + cam->slack_us &&
		    f->t_us > t_trigger_us + MAX(cam->latency_us, 0) + cam->slack_us) {
			*recheck_us = f->t_us + cam->slack_us;
			return NULL;
		}
		cam->latency_us = f->t_us - t_trigger_us;
		break;
	}
	/* The part's frame (the first at or after its trigger) was pushed out
	 * of a full queue before the part asked: a later frame would be paired
	 * with a part it does not show. */
	if (cam->mode == CAPTURE_TIMESTAMP && cam->overflow_us >= t_trigger_us) {
		*gone = TRUE;
		return NULL;
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
	/* Too late to show this part; it stays queued for later parts. */
	if (cam->mode == CAPTURE_TIMESTAMP && f->t_us > t_trigger_us + max_delay_us) {
		*gone = TRUE;
		return NULL;
	}
	g_queue_pop_head(&cam->frames);
	g_cond_broadcast(&cam->changed);
	return f;
}

void capture_camera_trigger(capture_camera *cam, uint64_t seq, int64_t t_trigger_us)
{
	unsigned i = (unsigned)(seq % TRIG_RING);

	if (cam->mode != CAPTURE_SEQUENCE)
		return;
	g_mutex_lock(&cam->lock);
	cam->trig_seq[i] = seq;
	cam->trig_us[i] = t_trigger_us;
	g_cond_broadcast(&cam->changed);
	g_mutex_unlock(&cam->lock);
}

void capture_frame_missed(capture_camera *cam, uint64_t seq)
{
	if (cam->mode != CAPTURE_SEQUENCE)
		return;
	g_mutex_lock(&cam->lock);
	if (cam->live && !cam->down && !cam->ended) {
		cam->realign = TRUE;
		cam->desyncs++;
		g_warning("camera %s: no frame for trigger %" G_GUINT64_FORMAT ": the pairing is "
			  "re-aligned by time at the next part", cam->name, seq);
	}
	g_mutex_unlock(&cam->lock);
}

int capture_frame_for(capture_camera *cam, uint64_t seq, int64_t t_trigger_us,
		      int64_t timeout_us, struct capture_frame **frame)
{
	/* g_get_monotonic_time() and vigil_now_us() read CLOCK_MONOTONIC. */
	gint64 deadline = cam->mode == CAPTURE_TIMESTAMP ? t_trigger_us + timeout_us
						       : g_get_monotonic_time() + timeout_us;
	gboolean gone = FALSE;
	int64_t recheck = -1;
	int rc = 0;

	*frame = NULL;
	g_mutex_lock(&cam->lock);
	for (;;) {
		*frame = take_frame(cam, seq, t_trigger_us, timeout_us, &gone, &recheck);
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
		if (cam->down) {
			rc = -ENOTCONN;
			break;
		}
		if (!g_cond_wait_until(&cam->changed, &cam->lock,
				       recheck >= 0 ? MIN(recheck, deadline) : deadline) &&
		    g_get_monotonic_time() >= deadline) {
			*frame = take_frame(cam, seq, t_trigger_us, timeout_us, &gone, &recheck);
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
	st->restarts = cam->restarts;
	st->failed = cam->error != NULL;
	/* A replay that reached its end is finished, not faulty; a part asking
	 * past the end learns it from capture_frame_for. */
	st->up = !cam->down && !cam->ended_by_error;
	st->playing = st->up && cam->playing;
	st->live = cam->live;
	st->desyncs = cam->desyncs;
	g_mutex_unlock(&cam->lock);
}

const char *capture_camera_name(const capture_camera *cam)
{
	return cam->name;
}
