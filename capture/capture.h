/* Cameras: a GStreamer pipeline whose last element is an appsink named
 * "sink", delivering 8-bit grayscale frames (the pipeline converts; vigild
 * fixes the appsink caps to video/x-raw,format=GRAY8).
 *
 * Two ways to pick the frame for a part:
 * - sequence: a triggered camera gives exactly one frame per trigger, so
 *   frame n belongs to trigger n (n counts from 0). The camera waits
 *   (back-pressure) rather than dropping frames that are not yet claimed.
 * - timestamp: a free-running camera; the part gets the first frame taken
 *   at or after its trigger time, on the monotonic clock.
 * A frame is handed out once; it is never reused for another part.
 *
 * Every pipeline runs on GStreamer's system clock in monotonic mode, the
 * clock of vigil_now_us(), so a frame's PTS maps to the trigger's time line
 * (t_pts_us); t_us - t_pts_us is the camera's transport latency. Pairing
 * uses t_us, the time vigild has the frame: a frame that reached vigild
 * before the trigger is never given to that part, and when the part's frame
 * was pushed out of a full queue (queue_frames) before the part asked for
 * it, the part gets -ENODATA rather than a later frame.
 *
 * A pipeline that fails (or ends, for a live camera) is torn down and built
 * again with exponential back-off. While it is down, parts get -ENOTCONN at
 * once (the caller fails them safe). In sequence mode the frame count after
 * a restart is re-aligned: the first frame after it belongs to the first
 * part triggered after it; earlier parts never get a later frame.
 *
 * Sequence mode counts frames, and a camera that misses a trigger or fires
 * twice would shift the count for the rest of the run, so the count is
 * checked (docs/architecture.md, "Pairing a part with its data"):
 * - a decoder that drops a frame it cannot decode says so on the bus (QoS
 *   or a warning), and a source may give an empty buffer (an empty image
 *   file, which pngdec swallows silently); the number of the lost frame is
 *   skipped, so its part gets -ENODATA and the next part its own frame (the
 *   decoder must run in the appsink's streaming thread: no queue between);
 * - a live source (a triggered camera) is checked against the trigger times
 *   (capture_camera_trigger) and its latency (trigger to frame) of the last
 *   frame paired: a frame that reached vigild more than slack before its
 *   part's trigger, or whose latency fits the previous trigger better by
 *   more than slack, belongs to an earlier trigger (an extra frame) and is
 *   dropped; one whose latency fits the next trigger better by more than
 *   slack (before a latency is known: more than slack after it) belongs to
 *   it, so this part's frame is missing: the part gets -ENODATA and the
 *   frame goes to the next part; after a timeout (capture_frame_missed) the count is re-aligned by
 *   time as after a restart. A replay (a source that is not live) waits for
 *   its parts, so its frames come before their triggers and only the count
 *   pairs them.
 * Each such correction is a desync: counted, warned about. */
#ifndef VIGIL_CAPTURE_CAPTURE_H
#define VIGIL_CAPTURE_CAPTURE_H

#include <stdint.h>

#include "core/config.h"

enum capture_mode {
	CAPTURE_SEQUENCE = 0,
	CAPTURE_TIMESTAMP = 1,
};

enum capture_restart {
	CAPTURE_RESTART_AUTO = 0,  /* on error; on end of stream too in timestamp mode */
	CAPTURE_RESTART_ALWAYS = 1,/* on error and on end of stream */
	CAPTURE_RESTART_NEVER = 2, /* an error or end of stream is final */
};

struct capture_config {
	const char *name;          /* for messages, e.g. "top" */
	const char *pipeline;      /* gst-launch syntax ending in appsink name=sink */
	enum capture_mode mode;
	int queue_frames;          /* frames held waiting for their part */
	enum capture_restart restart;
	int restart_min_ms;        /* first retry delay, doubled per failure (0: 500) */
	int restart_max_ms;        /* cap on the delay (0: 10000) */
	int watchdog_ms;           /* no frame for this long while up = failure, counted
				    * from the end of the pipeline's start; 0 = off */
	int slack_ms;              /* sequence mode, live source: how far a frame may
				    * reach vigild before its trigger is seen or after
				    * the next one (0: 20) */
};

/* One [camera.NAME] section as capture_config_read reads it: the settings
 * own their strings, which cfg points to. */
struct capture_settings {
	struct capture_config cfg;
	char *name;                /* NAME of [camera.NAME] */
	char *pipeline;
	int frame_timeout_ms;      /* a part waits this long for its frame (2000) */
	/* A frame whose grey levels' standard deviation is below this is flat
	 * (capture_frame_contrast): a lens cap, the light off, a saturated or
	 * blank sensor; 0 = no check (2, in grey levels of 0 - 255). */
	double flat_level;
};

/* Reads section group ("camera.NAME") of cfg into *s, which it overwrites:
 * 0, or -EINVAL with *err (g_free it) naming the file, line and key. *s owns
 * what it holds even on failure: free it with capture_settings_clear. */
int capture_config_read(const config *cfg, const char *group, struct capture_settings *s,
			char **err);
/* Frees what s owns and zeroes it; NULL or a zeroed *s ok. */
void capture_settings_clear(struct capture_settings *s);

struct capture_frame {
	uint64_t seq;              /* frame number since start, from 0 */
	int64_t t_us;              /* monotonic time the frame reached vigild */
	int64_t t_pts_us;          /* monotonic time the source stamped on it
				    * (base time + buffer PTS on the pipeline's
				    * monotonic clock), -1 without a timestamp */
	int width, height, stride;
	uint8_t *data;             /* owned by the frame */
};

typedef struct capture_camera capture_camera;

/* Builds the pipeline (not yet playing). NULL with *err (g_free) on a bad
 * pipeline string or a missing appsink; *err says what is wrong with
 * cfg->pipeline without naming the camera, so the caller can say where the
 * pipeline came from (vigild: the configuration's file, line and key). */
capture_camera *capture_camera_new(const struct capture_config *cfg, char **err);
int capture_camera_start(capture_camera *cam, char **err);
void capture_camera_free(capture_camera *cam);

/* Takes the frame for trigger number seq (sequence mode), waiting up to
 * timeout_us, or for a trigger at t_trigger_us (timestamp mode): the first
 * frame that reached vigild within timeout_us after the trigger, waiting
 * until then at most; that bound is the pairing tolerance. Returns 0 with
 * *frame (caller owns it: capture_frame_free), -ETIMEDOUT, -ENODATA (the
 * frame is gone: already dropped or skipped), -ENOTCONN (the camera is down
 * and restarting) or -EPIPE (the pipeline has ended for good). */
int capture_frame_for(capture_camera *cam, uint64_t seq, int64_t t_trigger_us,
		      int64_t timeout_us, struct capture_frame **frame);
void capture_frame_free(struct capture_frame *frame);
/* The standard deviation of frame's grey levels (0 - 255), over every
 * other pixel of every other row: what tells a picture from a flat field
 * (capture_settings.flat_level). Any thread. */
double capture_frame_contrast(const struct capture_frame *frame);

/* Sequence mode: trigger number seq was seen at t_trigger_us (monotonic),
 * for the check of a live camera's frames against the next trigger; call
 * it for every trigger, in order, as soon as it is seen. Other modes: no-op. */
void capture_camera_trigger(capture_camera *cam, uint64_t seq, int64_t t_trigger_us);
/* Sequence mode: the part of trigger seq gave up waiting (its own timeout,
 * beyond capture_frame_for's -ETIMEDOUT slices). A live camera's count is
 * re-aligned by time at the next part, as after a restart; a desync. */
void capture_frame_missed(capture_camera *cam, uint64_t seq);

/* Counters and the last pipeline error (NULL if none; owned by cam). */
struct capture_stats {
	uint64_t frames;
	uint64_t dropped;          /* frames no part claimed */
	uint64_t restarts;         /* pipeline rebuilds after a failure */
	int failed;                /* an error was seen (ever) */
	int up;                    /* not down and not ended by an error */
	int playing;               /* the pipeline has reached PLAYING and is up */
	int live;                  /* a live source: sequence frames checked by time */
	uint64_t desyncs;          /* sequence mode: lost, extra or late frames found
				    * and the pairing corrected (capture.h, above) */
};
void capture_camera_stats(capture_camera *cam, struct capture_stats *st);
const char *capture_camera_name(const capture_camera *cam);

#endif
