/* capture/: real GStreamer pipelines into the appsink, frames per part. */
#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <gio/gio.h>
#include <glib/gstdio.h>
#include <gst/gst.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "capture/capture.h"
#include "core/part.h"
#include "cvwrap/cvwrap.h"

#define W 37   /* odd width: GStreamer pads GRAY8 rows to 4 bytes */
#define H 21

/* Writes n PNG frames whose pixels encode the frame number and position. */
static char *write_frames(int n)
{
	char *dir = g_dir_make_tmp("vigil-capture-XXXXXX", NULL);
	uint8_t img[W * H];

	for (int k = 0; k < n; k++) {
		char name[64], *path;

		for (int y = 0; y < H; y++)
			for (int x = 0; x < W; x++)
				img[y * W + x] = (uint8_t)(k * 10 + (x + y) % 7);
		g_snprintf(name, sizeof name, "frame-%03d.png", k);
		path = g_build_filename(dir, name, NULL);
		g_assert_cmpint(cvw_imwrite_gray(path, img, W, H, W), ==, 0);
		g_free(path);
	}
	return dir;
}

static void remove_dir(char *dir)
{
	GDir *d = g_dir_open(dir, 0, NULL);
	const char *name;

	while ((name = g_dir_read_name(d))) {
		char *p = g_build_filename(dir, name, NULL);

		g_unlink(p);
		g_free(p);
	}
	g_dir_close(d);
	g_rmdir(dir);
	g_free(dir);
}

static capture_camera *camera_on(const char *pipeline, enum capture_mode mode, int queue)
{
	struct capture_config cfg = { .name = "test", .pipeline = pipeline, .mode = mode,
				      .queue_frames = queue, .restart = CAPTURE_RESTART_NEVER };
	char *err = NULL;
	capture_camera *cam = capture_camera_new(&cfg, &err);

	if (!cam)
		g_error("%s", err);
	g_assert_cmpint(capture_camera_start(cam, &err), ==, 0);
	return cam;
}

static void test_sequence_frames_from_files(void)
{
	char *dir = write_frames(12);
	char *pipeline = g_strdup_printf("multifilesrc location=%s/frame-%%03d.png index=0 "
					 "caps=image/png ! pngdec ! videoconvert ! appsink name=sink",
					 dir);
	capture_camera *cam = camera_on(pipeline, CAPTURE_SEQUENCE, 3);
	struct capture_frame *f = NULL;
	struct capture_stats st;

	/* Frames arrive in order, each exactly once, with exact pixels, even
	 * though the camera holds only 3 at a time (it waits, never drops). */
	for (uint64_t seq = 0; seq < 8; seq++) {
		g_assert_cmpint(capture_frame_for(cam, seq, 0, 5000000, &f), ==, 0);
		g_assert_cmpuint(f->seq, ==, seq);
		g_assert_cmpint(f->width, ==, W);
		g_assert_cmpint(f->height, ==, H);
		for (int y = 0; y < H; y++)
			for (int x = 0; x < W; x++)
				g_assert_cmpuint(f->data[y * f->stride + x], ==, seq * 10 + (x + y) % 7);
		capture_frame_free(f);
	}
	/* A frame handed out is never handed out again. */
	g_assert_cmpint(capture_frame_for(cam, 7, 0, 100000, &f), ==, -ENODATA);
	/* A missed trigger skips its frame; the next part still gets its own. */
	g_assert_cmpint(capture_frame_for(cam, 10, 0, 5000000, &f), ==, 0);
	g_assert_cmpuint(f->data[0], ==, 100);
	capture_frame_free(f);
	g_assert_cmpint(capture_frame_for(cam, 11, 0, 5000000, &f), ==, 0);
	capture_frame_free(f);
	/* After the last file the stream ends: no frame is invented. */
	g_assert_cmpint(capture_frame_for(cam, 12, 0, 5000000, &f), ==, -EPIPE);
	g_assert_null(f);
	capture_camera_stats(cam, &st);
	g_assert_cmpuint(st.frames, ==, 12);
	g_assert_cmpuint(st.dropped, ==, 2);
	capture_camera_free(cam);
	g_free(pipeline);
	remove_dir(dir);
}

/* A live 64x48 test pattern at fps frames a second, paired by timestamp. */
static capture_camera *gradient_camera(int fps, int queue)
{
	char *pipeline = g_strdup_printf("videotestsrc is-live=true pattern=gradient ! "
					 "video/x-raw,width=64,height=48,framerate=%d/1 ! "
					 "videoconvert ! appsink name=sink", fps);
	capture_camera *cam = camera_on(pipeline, CAPTURE_TIMESTAMP, queue);

	g_free(pipeline);
	return cam;
}

/* Waits until cam has taken at least n frames since it started; fails the
 * test after 10 s. */
static void wait_frames(capture_camera *cam, uint64_t n)
{
	int64_t end = vigil_now_us() + 10000000;
	struct capture_stats st;

	for (;;) {
		capture_camera_stats(cam, &st);
		if (st.frames >= n)
			return;
		g_assert_cmpint(vigil_now_us(), <, end);
		g_usleep(5000);
	}
}

static void test_timestamp_frame_after_trigger(void)
{
	capture_camera *cam = gradient_camera(50, 4);
	struct capture_frame *f = NULL;
	int64_t trigger;

	g_usleep(200000);
	trigger = vigil_now_us();
	g_assert_cmpint(capture_frame_for(cam, 0, trigger, 2000000, &f), ==, 0);
	/* Never a frame taken before the part was there. */
	g_assert_cmpint(f->t_us, >=, trigger);
	g_assert_cmpint(f->t_us - trigger, <, 500000);
	g_assert_cmpint(f->width, ==, 64);
	capture_frame_free(f);
	capture_camera_free(cam);
}

/* A part that asks after its frame was pushed out of the full queue gets
 * -ENODATA, not a later frame; the frames carry the source's stamp on the
 * monotonic clock, no later than their arrival. */
static void test_late_part_gets_no_later_frame(void)
{
	capture_camera *cam = gradient_camera(50, 3);
	struct capture_frame *f = NULL;
	struct capture_stats st;
	int64_t trigger;

	g_usleep(200000);
	trigger = vigil_now_us();
	/* Frames counted from here on reached vigild after the trigger; once
	 * 4 did, the part's frame has left the queue of 3. Waited for, not
	 * timed: a busy host's streaming thread may deliver 50 frames a
	 * second late. */
	capture_camera_stats(cam, &st);
	wait_frames(cam, st.frames + 4);
	g_assert_cmpint(capture_frame_for(cam, 0, trigger, 500000, &f), ==, -ENODATA);
	g_assert_null(f);
	/* A part triggered now is served normally. */
	trigger = vigil_now_us();
	g_assert_cmpint(capture_frame_for(cam, 1, trigger, 2000000, &f), ==, 0);
	g_assert_cmpint(f->t_us, >=, trigger);
	g_assert_cmpint(f->t_pts_us, >, 0);
	g_assert_cmpint(f->t_pts_us, <=, f->t_us);
	/* A live source stamps the frame when it is produced, one frame
	 * period (20 ms) plus conversion before vigild has it. */
	g_assert_cmpint(f->t_us - f->t_pts_us, <, 500000);
	capture_frame_free(f);
	capture_camera_free(cam);
}

/* Timestamp mode pairs only a frame that reached vigild within the timeout
 * after the trigger; a later one is refused for that part and kept for the
 * parts after it. One frame a second makes the times deterministic. */
static void test_frame_later_than_tolerance_is_refused(void)
{
	capture_camera *cam = gradient_camera(1, 4);
	struct capture_frame *f = NULL, *next = NULL;
	struct capture_stats st;
	int64_t trigger;

	g_assert_cmpint(capture_frame_for(cam, 0, vigil_now_us(), 3000000, &f), ==, 0);
	capture_camera_stats(cam, &st);
	trigger = f->t_us + 1; /* the next frame is about a second away */
	g_assert_cmpint(capture_frame_for(cam, 1, trigger, 100000, &next), ==, -ETIMEDOUT);
	g_assert_null(next);
	wait_frames(cam, st.frames + 1);
	/* Now queued, but 1 s after the trigger: not this part's frame. */
	g_assert_cmpint(capture_frame_for(cam, 1, trigger, 100000, &next), ==, -ENODATA);
	g_assert_cmpint(capture_frame_for(cam, 2, trigger, 3000000, &next), ==, 0);
	g_assert_cmpint(next->t_us - f->t_us, >, 500000);
	capture_frame_free(next);
	capture_frame_free(f);
	capture_camera_free(cam);
}

static void test_bad_pipelines_are_refused(void)
{
	struct capture_config cfg = { .name = "bad",
				      .pipeline = "videotestsrc ! nosuchelement ! appsink name=sink" };
	char *err = NULL;

	g_assert_null(capture_camera_new(&cfg, &err));
	g_assert_cmpstr(err, ==, "no element \"nosuchelement\"");
	g_clear_pointer(&err, g_free);

	cfg.pipeline = "videotestsrc ! fakesink";
	g_assert_null(capture_camera_new(&cfg, &err));
	g_assert_nonnull(strstr(err, "appsink name=sink"));
	g_free(err);
}

static void test_missing_file_fails_cleanly(void)
{
	struct capture_config cfg = { .name = "gone",
				      .pipeline = "filesrc location=/nonexistent/cam.png ! pngdec ! "
						  "videoconvert ! appsink name=sink" };
	char *err = NULL;
	capture_camera *cam = capture_camera_new(&cfg, &err);

	g_assert_nonnull(cam);
	g_assert_cmpint(capture_camera_start(cam, &err), ==, -EIO);
	g_assert_nonnull(strstr(err, "camera gone: pipeline refused to start"));
	g_test_message("%s", err);
	g_assert_cmpuint(strlen(err), >, strlen("camera gone: pipeline refused to start: "));
	g_free(err);
	capture_camera_free(cam);
}

static void test_sequence_restart_realigns(void)
{
	/* Three files played, then the stream ends and the camera is restarted:
	 * it plays the files again from the first. */
	char *dir = write_frames(3);
	char *pipeline = g_strdup_printf("multifilesrc location=%s/frame-%%03d.png index=0 "
					 "caps=image/png ! pngdec ! videoconvert ! appsink name=sink",
					 dir);
	struct capture_config cfg = { .name = "rs", .pipeline = pipeline, .mode = CAPTURE_SEQUENCE,
				      .queue_frames = 8, .restart = CAPTURE_RESTART_ALWAYS,
				      .restart_min_ms = 200, .restart_max_ms = 400 };
	char *err = NULL;
	capture_camera *cam = capture_camera_new(&cfg, &err);
	struct capture_frame *f = NULL;
	struct capture_stats st;
	int64_t before, after;
	int rc;

	g_assert_nonnull(cam);
	before = vigil_now_us();
	g_assert_cmpint(capture_camera_start(cam, &err), ==, 0);
	for (uint64_t seq = 0; seq < 3; seq++) {
		g_assert_cmpint(capture_frame_for(cam, seq, before, 5000000, &f), ==, 0);
		g_assert_cmpuint(f->data[0], ==, seq * 10);
		capture_frame_free(f);
	}
	/* Part 3 was triggered before the restart: it must not get a frame
	 * from after it (that frame belongs to a later part). */
	do {
		rc = capture_frame_for(cam, 3, before, 100000, &f);
	} while (rc == -ETIMEDOUT);
	g_assert_true(rc == -ENOTCONN || rc == -ENODATA);
	g_assert_null(f);
	/* Wait for the restart, then trigger part 4: it gets the first new frame. */
	do {
		capture_camera_stats(cam, &st);
		g_usleep(20000);
	} while (st.restarts == 0);
	after = vigil_now_us();
	g_assert_cmpint(capture_frame_for(cam, 4, after, 5000000, &f), ==, 0);
	g_assert_cmpuint(f->data[0], ==, 0);
	capture_frame_free(f);
	g_assert_cmpint(capture_frame_for(cam, 5, after, 5000000, &f), ==, 0);
	g_assert_cmpuint(f->data[0], ==, 10);
	capture_frame_free(f);
	capture_camera_free(cam);
	g_free(pipeline);
	remove_dir(dir);
}

/* Parts 0 .. n-1 of a replay whose frame `lost` never became a frame:
 * that part gets -ENODATA, every other its own frame (gray level 10 x its
 * number, within tolerance, first and last pixel: write_frames' pattern
 * (x + y) % 7 is 0 at both, W + H - 2 being 56), and the camera counts
 * one desync. */
static void expect_own_frames_but(capture_camera *cam, uint64_t n, uint64_t lost, int tolerance)
{
	struct capture_frame *f = NULL;
	struct capture_stats st;

	for (uint64_t seq = 0; seq < n; seq++) {
		int rc = capture_frame_for(cam, seq, 0, 5000000, &f);

		if (seq == lost) {
			g_assert_cmpint(rc, ==, -ENODATA);
			g_assert_null(f);
			continue;
		}
		g_assert_cmpint(rc, ==, 0);
		g_assert_cmpint(abs((int)f->data[0] - (int)seq * 10), <=, tolerance);
		g_assert_cmpint(abs((int)f->data[W * H - 1] - (int)seq * 10), <=, tolerance);
		capture_frame_free(f);
	}
	capture_camera_stats(cam, &st);
	g_assert_cmpuint(st.desyncs, ==, 1);
}

/* A replay with an empty image file: pngdec makes no frame of it and says
 * nothing; that part fails safe and every later part gets its own frame. */
static void test_sequence_empty_file(void)
{
	char *dir = write_frames(8);
	char *bad = g_build_filename(dir, "frame-003.png", NULL);
	char *pipeline = g_strdup_printf("multifilesrc location=%s/frame-%%03d.png index=0 "
					 "caps=image/png ! pngdec ! videoconvert ! appsink name=sink",
					 dir);
	capture_camera *cam;

	g_assert_true(g_file_set_contents(bad, "", 0, NULL));
	cam = camera_on(pipeline, CAPTURE_SEQUENCE, 8);
	expect_own_frames_but(cam, 8, 3, 0);
	capture_camera_free(cam);
	g_free(pipeline);
	g_free(bad);
	remove_dir(dir);
}

/* A camera's frame that its decoder cannot decode (a JPEG without an image) is
 * dropped by the decoder: that part fails safe and every later part still
 * gets its own frame (each frame's gray level encodes its part). */
static void test_sequence_decoder_drop(void)
{
	char *dir = g_dir_make_tmp("vigil-capture-XXXXXX", NULL);
	char *bad = g_build_filename(dir, "frame-003.jpg", NULL);
	char *pipeline = g_strdup_printf("multifilesrc location=%s/frame-%%03d.jpg index=0 "
					 "caps=image/jpeg ! jpegdec ! videoconvert ! "
					 "appsink name=sink", dir);
	capture_camera *cam;
	struct capture_stats st;
	uint8_t img[W * H];

	for (int k = 0; k < 8; k++) {
		char *path = g_strdup_printf("%s/frame-%03d.jpg", dir, k);

		memset(img, k * 10, sizeof img);
		g_assert_cmpint(cvw_imwrite_gray(path, img, W, H, W), ==, 0);
		g_free(path);
	}
	/* Start and end of image, nothing between. */
	g_assert_true(g_file_set_contents(bad, "\xff\xd8\xff\xd9", 4, NULL));
	cam = camera_on(pipeline, CAPTURE_SEQUENCE, 8);
	/* JPEG keeps a flat gray level within a step. */
	expect_own_frames_but(cam, 8, 3, 1);
	capture_camera_stats(cam, &st);
	g_assert_false(st.live);
	capture_camera_free(cam);
	g_free(pipeline);
	g_free(bad);
	remove_dir(dir);
}

/* A hardware-triggered camera: a live udpsrc fed one GRAY8 frame (40x21, no
 * row padding) per trigger by the test, every pixel k * 10 for part k. */
#define UW 40
#define UH 21
struct udp_camera {
	capture_camera *cam;
	GSocket *sock;
	GSocketAddress *to;
	uint64_t sent;
};

static void udp_camera_start(struct udp_camera *u)
{
	GInetAddress *lo = g_inet_address_new_loopback(G_SOCKET_FAMILY_IPV4);
	GSocketAddress *any = g_inet_socket_address_new(lo, 0);
	GSocket *probe = g_socket_new(G_SOCKET_FAMILY_IPV4, G_SOCKET_TYPE_DATAGRAM,
				      G_SOCKET_PROTOCOL_UDP, NULL);
	GInetSocketAddress *bound;
	char *pipeline;
	int port;
	int64_t end = vigil_now_us() + 10000000;
	struct capture_stats st;

	/* A free port: bound by the kernel, released for udpsrc. */
	g_assert_true(g_socket_bind(probe, any, FALSE, NULL));
	bound = G_INET_SOCKET_ADDRESS(g_socket_get_local_address(probe, NULL));
	port = g_inet_socket_address_get_port(bound);
	g_object_unref(bound);
	g_object_unref(probe);
	pipeline = g_strdup_printf("udpsrc address=127.0.0.1 port=%d caps=video/x-raw,"
				   "format=GRAY8,width=%d,height=%d,framerate=0/1 ! videoconvert ! "
				   "appsink name=sink", port, UW, UH);
	*u = (struct udp_camera){ 0 };
	u->cam = camera_on(pipeline, CAPTURE_SEQUENCE, 8);
	u->sock = g_socket_new(G_SOCKET_FAMILY_IPV4, G_SOCKET_TYPE_DATAGRAM,
			       G_SOCKET_PROTOCOL_UDP, NULL);
	u->to = g_inet_socket_address_new(lo, (guint16)port);
	g_object_unref(any);
	g_object_unref(lo);
	g_free(pipeline);
	/* Up with no frame: a triggered camera sends none before a trigger. */
	for (;;) {
		capture_camera_stats(u->cam, &st);
		if (st.playing)
			break;
		g_assert_cmpint(vigil_now_us(), <, end);
		g_usleep(5000);
	}
	g_assert_cmpuint(st.frames, ==, 0);
	g_assert_true(st.live && st.up);
}

static void udp_camera_stop(struct udp_camera *u)
{
	capture_camera_free(u->cam);
	g_object_unref(u->sock);
	g_object_unref(u->to);
}

/* The camera takes part k's picture; returns once vigild has it. */
static void shoot(struct udp_camera *u, int k)
{
	uint8_t img[UW * UH];

	memset(img, k * 10, sizeof img);
	g_assert_cmpint(g_socket_send_to(u->sock, u->to, (const char *)img, sizeof img, NULL, NULL),
			==, (gssize)sizeof img);
	wait_frames(u->cam, ++u->sent);
}

static int64_t trigger(struct udp_camera *u, uint64_t seq)
{
	int64_t t = vigil_now_us();

	capture_camera_trigger(u->cam, seq, t);
	return t;
}

/* Part seq (triggered at t) gets the frame of part k, or -ENODATA (k < 0). */
static void expect_frame(struct udp_camera *u, uint64_t seq, int64_t t, int k)
{
	struct capture_frame *f = NULL;
	int rc = capture_frame_for(u->cam, seq, t, 2000000, &f);

	if (k < 0) {
		g_assert_cmpint(rc, ==, -ENODATA);
		g_assert_null(f);
		return;
	}
	g_assert_cmpint(rc, ==, 0);
	g_assert_cmpuint(f->data[0], ==, (unsigned)k * 10);
	g_assert_cmpuint(f->data[UW * UH - 1], ==, (unsigned)k * 10);
	capture_frame_free(f);
}

/* The spacing of two parts where it matters: well past the default slack
 * (20 ms), so a frame is surely early or late for a trigger. */
#define PAST_SLACK_US 60000

static void expect_desyncs(struct udp_camera *u, uint64_t n)
{
	struct capture_stats st;

	capture_camera_stats(u->cam, &st);
	g_assert_cmpuint(st.desyncs, ==, n);
}

/* The PLC waits for each result: the camera misses part 3's trigger, part
 * 3 times out, and part 4 on gets their own frames again. */
static void test_live_missed_trigger_times_out(void)
{
	struct udp_camera u;

	udp_camera_start(&u);
	for (uint64_t k = 0; k < 8; k++) {
		int64_t t = trigger(&u, k);
		struct capture_frame *f = NULL;

		if (k != 3) {
			shoot(&u, (int)k);
			expect_frame(&u, k, t, (int)k);
			continue;
		}
		g_assert_cmpint(capture_frame_for(u.cam, k, t, 200000, &f), ==, -ETIMEDOUT);
		capture_frame_missed(u.cam, k);
	}
	expect_desyncs(&u, 1);
	udp_camera_stop(&u);
}

/* Parts overlap: part 2 is triggered before part 1 asks for its frame,
 * which the camera missed. The frame that comes right after part 2's
 * trigger (as quickly as part 0's came after its own) is part 2's: part 1
 * fails safe and does not take it. */
static void test_live_missed_trigger_overlapping(void)
{
	struct udp_camera u;
	int64_t t[6];

	udp_camera_start(&u);
	t[0] = trigger(&u, 0);
	shoot(&u, 0);
	expect_frame(&u, 0, t[0], 0);
	t[1] = trigger(&u, 1);
	g_usleep(PAST_SLACK_US);
	t[2] = trigger(&u, 2);
	shoot(&u, 2);
	expect_frame(&u, 1, t[1], -1);
	expect_frame(&u, 2, t[2], 2);
	for (uint64_t k = 3; k < 6; k++) {
		t[k] = trigger(&u, k);
		shoot(&u, (int)k);
		expect_frame(&u, k, t[k], (int)k);
	}
	expect_desyncs(&u, 1);
	udp_camera_stop(&u);
}

/* The camera fires twice on part 1: the second frame, taken before part
 * 2's trigger, is dropped, and part 2 on get their own frames. */
static void test_live_extra_frame(void)
{
	struct udp_camera u;

	udp_camera_start(&u);
	for (uint64_t k = 0; k < 6; k++) {
		int64_t t = trigger(&u, k);

		shoot(&u, (int)k);
		if (k == 1) {
			shoot(&u, (int)k);
			expect_frame(&u, k, t, (int)k);
			g_usleep(PAST_SLACK_US);
			continue;
		}
		expect_frame(&u, k, t, (int)k);
	}
	expect_desyncs(&u, 1);
	udp_camera_stop(&u);
}

static void test_live_camera_recovers(void)
{
	/* A live camera whose stream ends every 10 frames is restarted each time;
	 * parts keep getting fresh frames, and while it is down they are told so. */
	struct capture_config cfg = {
		.name = "live", .mode = CAPTURE_TIMESTAMP, .queue_frames = 4,
		.pipeline = "videotestsrc is-live=true num-buffers=10 ! "
			    "video/x-raw,width=32,height=24,framerate=50/1 ! videoconvert ! "
			    "appsink name=sink",
		.restart_min_ms = 100, .restart_max_ms = 100,
	};
	char *err = NULL;
	capture_camera *cam = capture_camera_new(&cfg, &err);
	struct capture_stats st = { 0 };
	int64_t end = vigil_now_us() + 30000000;
	int got = 0, down = 0;

	g_assert_nonnull(cam);
	g_assert_cmpint(capture_camera_start(cam, &err), ==, 0);
	/* Until two restarts and 20 frames, not a fixed number of tries: on a
	 * busy host a restart takes longer than on an idle one. */
	while ((st.restarts < 2 || got < 20) && vigil_now_us() < end) {
		struct capture_frame *f = NULL;
		int64_t trigger = vigil_now_us();
		int rc = capture_frame_for(cam, 0, trigger, 1000000, &f);

		if (rc == 0) {
			g_assert_cmpint(f->t_us, >=, trigger);
			got++;
			capture_frame_free(f);
		} else {
			g_assert_cmpint(rc, ==, -ENOTCONN);
			down++;
			g_usleep(20000);
		}
		capture_camera_stats(cam, &st);
	}
	g_test_message("%d frames, %d down, %" G_GUINT64_FORMAT " restarts", got, down, st.restarts);
	g_assert_cmpuint(st.restarts, >=, 2);
	g_assert_cmpint(got, >=, 20);
	capture_camera_free(cam);
}

static gpointer start_camera_thread(gpointer cam)
{
	char *err = NULL;
	int rc = capture_camera_start(cam, &err);

	g_free(err);
	return GINT_TO_POINTER(rc);
}

/* A camera whose start takes longer than its watchdog time (aravissrc
 * talking to a camera on a busy host): the watchdog counts from the end of
 * the start, so the camera is not declared silent before it could send a
 * frame. The source is a FIFO: filesrc's start blocks until the test opens
 * it for writing, well past the watchdog time. */
static void test_slow_start_is_not_silence(void)
{
	char *dir = g_dir_make_tmp("vigil-capture-XXXXXX", NULL);
	char *fifo = g_build_filename(dir, "camera", NULL);
	char *pipeline = g_strdup_printf("filesrc location=%s blocksize=64 ! rawvideoparse format=gray8 "
					 "width=8 height=8 framerate=25/1 ! appsink name=sink",
					 fifo);
	struct capture_config cfg = {
		.name = "slow", .pipeline = pipeline, .mode = CAPTURE_TIMESTAMP,
		.queue_frames = 4, .restart = CAPTURE_RESTART_NEVER, .watchdog_ms = 1500,
	};
	uint8_t img[64];
	struct capture_frame *f = NULL;
	struct capture_stats st;
	capture_camera *cam;
	char *err = NULL;
	GThread *starter;
	int64_t trigger;
	int fd;

	g_assert_cmpint(mkfifo(fifo, 0600), ==, 0);
	cam = capture_camera_new(&cfg, &err);
	g_assert_nonnull(cam);
	starter = g_thread_new("start", start_camera_thread, cam);
	/* Twice the watchdog time: the start is still blocked in open(). */
	g_usleep(3000000);
	fd = open(fifo, O_WRONLY);
	g_assert_cmpint(fd, >=, 0);
	g_assert_cmpint(GPOINTER_TO_INT(g_thread_join(starter)), ==, 0);
	/* A frame well within the watchdog time of the start's end; before it,
	 * the bus thread has looked at the silence at least once. */
	g_usleep(300000);
	memset(img, 42, sizeof img);
	trigger = vigil_now_us();
	g_assert_cmpint(write(fd, img, sizeof img), ==, (ssize_t)sizeof img);
	g_assert_cmpint(capture_frame_for(cam, 0, trigger, 5000000, &f), ==, 0);
	g_assert_cmpuint(f->data[0], ==, 42);
	capture_frame_free(f);
	capture_camera_stats(cam, &st);
	g_assert_true(st.up);
	g_assert_false(st.failed);
	/* End of stream (restart = never) ends it without a blocked open. */
	close(fd);
	capture_camera_free(cam);
	g_unlink(fifo);
	g_rmdir(dir);
	g_free(fifo);
	g_free(dir);
	g_free(pipeline);
}

/* A GigE Vision camera: Aravis's fake camera on loopback, through aravissrc
 * (Bayer, debayered by bayer2rgb). It is killed mid-run and started again. */
#define GVCP_PORT 3956
#define GVCP_SERIAL_OFFSET 0xd8  /* in a discovery ack's payload (bootstrap registers) */

/* The fake camera dies with the test: an assertion that fails aborts it, and
 * a camera left behind would hold 127.0.0.1 for every later run. */
static void die_with_parent(gpointer data)
{
	(void)data;
	prctl(PR_SET_PDEATHSIG, SIGKILL);
}

/* The serial number of the camera on 127.0.0.1, as its answer to a GVCP
 * discovery names it (g_free), or NULL if none answers within 100 ms. */
static char *gvcp_discover(GSocket *sock, GSocketAddress *to)
{
	static const uint8_t discovery[8] = { 0x42, 0x11, 0x00, 0x02, 0x00, 0x00, 0x00, 0x01 };
	char ack[512];
	gssize n;

	g_assert_cmpint(g_socket_send_to(sock, to, (const char *)discovery, sizeof discovery,
					 NULL, NULL), ==, sizeof discovery);
	if (!g_socket_condition_timed_wait(sock, G_IO_IN, 100000, NULL, NULL))
		return NULL;
	n = g_socket_receive(sock, ack, sizeof ack, NULL, NULL);
	if (n < 8 + GVCP_SERIAL_OFFSET + 16 || ack[2] != 0x00 || ack[3] != 0x03)
		return NULL;
	return g_strndup(ack + 8 + GVCP_SERIAL_OFFSET, 16);
}

/* Starts the fake camera with serial number serial and returns once it
 * answers on 127.0.0.1 as that camera, rather than after a fixed time (a
 * busy host starts it late). Another camera answering there (another test's)
 * would be the one aravissrc opens: that fails the test, saying so. */
static GPid start_fake_camera(const char *serial)
{
	char *argv[] = { "arv-fake-gv-camera-0.8", "-i", "127.0.0.1", "-s", (char *)serial, NULL };
	GInetAddress *lo = g_inet_address_new_loopback(G_SOCKET_FAMILY_IPV4);
	GSocketAddress *to = g_inet_socket_address_new(lo, GVCP_PORT);
	GSocket *sock = g_socket_new(G_SOCKET_FAMILY_IPV4, G_SOCKET_TYPE_DATAGRAM,
				     G_SOCKET_PROTOCOL_UDP, NULL);
	int64_t end = vigil_now_us() + 20000000;  /* a bound for a busy host */
	GPid pid = 0;
	GError *gerr = NULL;
	char *got;

	if (!g_spawn_async(NULL, argv, NULL, G_SPAWN_SEARCH_PATH | G_SPAWN_DO_NOT_REAP_CHILD |
			   G_SPAWN_STDOUT_TO_DEV_NULL | G_SPAWN_STDERR_TO_DEV_NULL,
			   die_with_parent, NULL, &pid, &gerr))
		g_error("cannot start arv-fake-gv-camera-0.8: %s", gerr->message);
	while (!(got = gvcp_discover(sock, to))) {
		if (waitpid(pid, NULL, WNOHANG) == pid)
			g_error("arv-fake-gv-camera-0.8 exited before it answered");
		g_assert_cmpint(vigil_now_us(), <, end);
	}
	if (strcmp(got, serial) != 0)
		g_error("another GigE Vision camera (serial %s) answers on 127.0.0.1: another "
			"run's arv-fake-gv-camera-0.8? This test needs 127.0.0.1 to itself", got);
	g_free(got);
	g_object_unref(sock);
	g_object_unref(to);
	g_object_unref(lo);
	return pid;
}

static void stop_fake_camera(GPid pid)
{
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	g_spawn_close_pid(pid);
}

/* The next frame of cam for a trigger now, once there is one: while the
 * camera is down or its frame is late, asks again; fails the test after
 * 60 s (a bound for a busy host: tearing down a pipeline whose camera
 * vanished can take Aravis seconds, and the back-off doubles). */
static struct capture_frame *next_frame(capture_camera *cam, int64_t *trigger)
{
	int64_t end = vigil_now_us() + 60000000;
	struct capture_frame *f = NULL;
	int rc;

	for (;;) {
		*trigger = vigil_now_us();
		rc = capture_frame_for(cam, 0, *trigger, 200000, &f);
		if (rc == 0)
			return f;
		/* -ENODATA: the first frame after the trigger came after the
		 * timeout (a busy host); it is never given to this trigger. */
		g_assert_true(rc == -ENOTCONN || rc == -ETIMEDOUT || rc == -ENODATA);
		g_assert_cmpint(vigil_now_us(), <, end);
		if (rc == -ENOTCONN)
			g_usleep(100000);
	}
}

static void test_gige_camera_killed_and_back(void)
{
	struct capture_config cfg = {
		.name = "gige", .mode = CAPTURE_TIMESTAMP, .queue_frames = 4,
		.pipeline = "aravissrc camera-name=127.0.0.1 ! bayer2rgb ! videoconvert ! "
			    "appsink name=sink",
		.restart_min_ms = 200, .restart_max_ms = 1000, .watchdog_ms = 1500,
	};
	char *path = g_find_program_in_path("arv-fake-gv-camera-0.8");
	GstElementFactory *arv = gst_element_factory_find("aravissrc");
	GstElementFactory *bayer = gst_element_factory_find("bayer2rgb");
	struct capture_frame *f = NULL;
	struct capture_stats st;
	capture_camera *cam;
	char *err = NULL, serial[16];
	GPid pid;
	int64_t trigger;
	uint64_t last_seq, restarts;
	int rc;

	if (!path || !arv || !bayer) {
		g_test_skip("needs arv-fake-gv-camera-0.8 (aravis-tools), aravissrc "
			    "(libaravis-0.8-0) and bayer2rgb (gstreamer1.0-plugins-bad)");
		goto out;
	}
	g_snprintf(serial, sizeof serial, "vigil-%d", (int)getpid());
	pid = start_fake_camera(serial);
	cam = capture_camera_new(&cfg, &err);
	g_assert_nonnull(cam);
	g_assert_cmpint(capture_camera_start(cam, &err), ==, 0);
	/* On a busy host the first frame may come after the watchdog time, and
	 * the camera is restarted once before it: no matter here. */
	f = next_frame(cam, &trigger);
	g_assert_cmpint(f->width, ==, 512);
	g_assert_cmpint(f->t_us, >=, trigger);
	last_seq = f->seq;
	capture_frame_free(f);

	capture_camera_stats(cam, &st);
	restarts = st.restarts;
	stop_fake_camera(pid);
	/* While the camera is gone a part gets at most a frame that was on its
	 * way at the kill, never one that reached vigild before the part's
	 * trigger, and each once, in order; after the watchdog time the camera
	 * is reported down (20 s is a bound for a busy host, not the watchdog's
	 * time). How late a frame on its way arrives is up to the host's
	 * scheduler, not to vigild: no bound on it here, but none comes once
	 * the camera is down (below). */
	for (int64_t end = vigil_now_us() + 20000000; vigil_now_us() < end;) {
		trigger = vigil_now_us();
		rc = capture_frame_for(cam, 0, trigger, 100000, &f);
		if (rc == 0) {
			g_assert_cmpint(f->t_us, >=, trigger);
			g_assert_cmpuint(f->seq, >, last_seq);
			last_seq = f->seq;
			capture_frame_free(f);
		} else {
			g_assert_true(rc == -ETIMEDOUT || rc == -ENOTCONN || rc == -ENODATA);
		}
		capture_camera_stats(cam, &st);
		if (!st.up)
			break;
	}
	g_assert_false(st.up);
	/* Down, with the camera still gone: what was on its way went with the
	 * pipeline, so no frame for a trigger now, restarted or not. */
	trigger = vigil_now_us();
	rc = capture_frame_for(cam, 0, trigger, 100000, &f);
	g_assert_true(rc == -ENOTCONN || rc == -ETIMEDOUT);
	g_assert_null(f);

	pid = start_fake_camera(serial);
	f = next_frame(cam, &trigger);
	g_assert_cmpint(f->width, ==, 512);
	g_assert_cmpint(f->t_us, >=, trigger);
	g_assert_cmpuint(f->seq, >, last_seq);
	capture_frame_free(f);
	capture_camera_stats(cam, &st);
	g_test_message("GigE camera back after %" G_GUINT64_FORMAT " restart(s)",
		       st.restarts - restarts);
	g_assert_cmpuint(st.restarts, >, restarts);
	capture_camera_free(cam);
	stop_fake_camera(pid);
out:
	g_free(path);
	if (arv)
		gst_object_unref(arv);
	if (bayer)
		gst_object_unref(bayer);
}

/* [camera.NAME] as vigild reads it: the documented defaults, and a bad
 * value named by file, line and key. */
static void test_camera_settings(void)
{
	static const char text[] =
		"[camera.top]\n"
		"pipeline = videotestsrc ! appsink name=sink\n"
		"\n"
		"[camera.side]\n"
		"pipeline = videotestsrc ! appsink name=sink\n"
		"trigger = timestamp\n"
		"queue_frames = 0\n"
		"\n"
		"[camera.odd]\n"
		"pipeline = videotestsrc ! appsink name=sink\n"
		"exposure = 10\n";
	struct capture_settings s;
	char *err = NULL;
	config *c = config_load_data(text, "line.conf", &err);

	g_assert_nonnull(c);
	g_assert_cmpint(capture_config_read(c, "camera.top", &s, &err), ==, 0);
	g_assert_cmpstr(s.name, ==, "top");
	g_assert_true(s.cfg.name == s.name && s.cfg.pipeline == s.pipeline);
	g_assert_cmpstr(s.cfg.pipeline, ==, "videotestsrc ! appsink name=sink");
	g_assert_cmpint(s.cfg.mode, ==, CAPTURE_SEQUENCE);
	g_assert_cmpint(s.frame_timeout_ms, ==, 2000);
	g_assert_cmpint(s.cfg.queue_frames, ==, 8);
	g_assert_cmpint(s.cfg.restart, ==, CAPTURE_RESTART_AUTO);
	g_assert_cmpint(s.cfg.restart_min_ms, ==, 500);
	g_assert_cmpint(s.cfg.restart_max_ms, ==, 10000);
	g_assert_cmpint(s.cfg.watchdog_ms, ==, 0);
	g_assert_cmpint(s.cfg.slack_ms, ==, 20);
	g_assert_cmpfloat(s.flat_level, ==, 2);
	capture_settings_clear(&s);
	g_assert_null(s.name);

	g_assert_cmpint(capture_config_read(c, "camera.side", &s, &err), ==, -EINVAL);
	g_assert_cmpstr(err, ==, "line.conf:7: [camera.side] queue_frames: 0 is out of range 1..1024");
	g_clear_pointer(&err, g_free);
	capture_settings_clear(&s);

	g_assert_cmpint(capture_config_read(c, "camera.odd", &s, &err), ==, -EINVAL);
	g_assert_true(g_str_has_prefix(err, "line.conf:11: [camera.odd] exposure: unknown key"));
	g_free(err);
	capture_settings_clear(&s);
	capture_settings_clear(NULL);
	config_free(c);
}

/* A frame's contrast: flat fields (black, white, grey with a sensor's
 * +-1 level of noise) fall below the default flat_level of 2, and so does
 * a 1-level step; a faint picture (a gradient over 8 levels, far fainter
 * than any tile of the data set, whose grey levels' standard deviations
 * are 9.6 and up) does not. The padding at the end of each row is not
 * read. */
static void test_frame_contrast(void)
{
	enum { FW = 97, FH = 64, FSTRIDE = 100 };
	uint8_t px[FSTRIDE * FH];
	struct capture_frame f = { .width = FW, .height = FH, .stride = FSTRIDE, .data = px };
	GRand *r = g_rand_new_with_seed(7);

	memset(px, 0, sizeof px);
	g_assert_cmpfloat(capture_frame_contrast(&f), ==, 0);
	memset(px, 255, sizeof px);
	g_assert_cmpfloat(capture_frame_contrast(&f), ==, 0);
	for (int i = 0; i < FSTRIDE * FH; i++)
		px[i] = (uint8_t)(128 + g_rand_int_range(r, -1, 2));
	g_assert_cmpfloat(capture_frame_contrast(&f), <, 1);
	for (int y = 0; y < FH; y++)
		for (int x = 0; x < FSTRIDE; x++)
			px[y * FSTRIDE + x] = x >= FW ? 0 : (uint8_t)(100 + (x < FW / 2));
	g_assert_cmpfloat(capture_frame_contrast(&f), <, 2);
	for (int y = 0; y < FH; y++)
		for (int x = 0; x < FW; x++)
			px[y * FSTRIDE + x] = (uint8_t)(100 + x * 8 / FW);
	g_assert_cmpfloat(capture_frame_contrast(&f), >, 2);
	f.width = f.height = 0;
	g_assert_cmpfloat(capture_frame_contrast(&f), ==, 0);
	g_rand_free(r);
}

int main(int argc, char **argv)
{
	gst_init(&argc, &argv);
	g_test_init(&argc, &argv, NULL);
	/* A camera going down is logged as a warning: expected here, not fatal. */
	g_log_set_always_fatal(G_LOG_LEVEL_CRITICAL | G_LOG_FATAL_MASK);
	g_test_add_func("/capture/sequence-frames-from-files", test_sequence_frames_from_files);
	g_test_add_func("/capture/timestamp-frame-after-trigger", test_timestamp_frame_after_trigger);
	g_test_add_func("/capture/late-part-gets-no-later-frame",
			test_late_part_gets_no_later_frame);
	g_test_add_func("/capture/frame-later-than-tolerance-is-refused",
			test_frame_later_than_tolerance_is_refused);
	g_test_add_func("/capture/bad-pipelines-are-refused", test_bad_pipelines_are_refused);
	g_test_add_func("/capture/missing-file-fails-cleanly", test_missing_file_fails_cleanly);
	g_test_add_func("/capture/sequence-restart-realigns", test_sequence_restart_realigns);
	g_test_add_func("/capture/sequence-empty-file", test_sequence_empty_file);
	g_test_add_func("/capture/sequence-decoder-drop", test_sequence_decoder_drop);
	g_test_add_func("/capture/live-missed-trigger-times-out",
			test_live_missed_trigger_times_out);
	g_test_add_func("/capture/live-missed-trigger-overlapping",
			test_live_missed_trigger_overlapping);
	g_test_add_func("/capture/live-extra-frame", test_live_extra_frame);
	g_test_add_func("/capture/live-camera-recovers", test_live_camera_recovers);
	g_test_add_func("/capture/slow-start-is-not-silence", test_slow_start_is_not_silence);
	g_test_add_func("/capture/gige-camera-killed-and-back", test_gige_camera_killed_and_back);
	g_test_add_func("/capture/camera-settings", test_camera_settings);
	g_test_add_func("/capture/frame-contrast", test_frame_contrast);
	return g_test_run();
}
