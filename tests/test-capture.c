/* capture/: real GStreamer pipelines into the appsink, frames per part. */
#include <errno.h>
#include <glib.h>
#include <glib/gstdio.h>
#include <gst/gst.h>
#include <string.h>

#include "capture/capture.h"
#include "core/part.h"
#include "fusion/cvwrap.h"

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
	struct capture_config cfg = { "test", pipeline, mode, queue };
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

static void test_timestamp_frame_after_trigger(void)
{
	capture_camera *cam = camera_on("videotestsrc is-live=true pattern=gradient ! "
					"video/x-raw,width=64,height=48,framerate=50/1 ! "
					"videoconvert ! appsink name=sink",
					CAPTURE_TIMESTAMP, 4);
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

static void test_bad_pipelines_are_refused(void)
{
	struct capture_config cfg = { "bad", "videotestsrc ! nosuchelement ! appsink name=sink",
				      CAPTURE_SEQUENCE, 4 };
	char *err = NULL;

	g_assert_null(capture_camera_new(&cfg, &err));
	g_assert_nonnull(strstr(err, "camera bad: bad pipeline"));
	g_clear_pointer(&err, g_free);

	cfg.pipeline = "videotestsrc ! fakesink";
	g_assert_null(capture_camera_new(&cfg, &err));
	g_assert_nonnull(strstr(err, "appsink name=sink"));
	g_free(err);
}

static void test_missing_file_fails_cleanly(void)
{
	struct capture_config cfg = { "gone", "filesrc location=/nonexistent/cam.png ! pngdec ! "
				      "videoconvert ! appsink name=sink", CAPTURE_SEQUENCE, 2 };
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

int main(int argc, char **argv)
{
	gst_init(&argc, &argv);
	g_test_init(&argc, &argv, NULL);
	g_test_add_func("/capture/sequence-frames-from-files", test_sequence_frames_from_files);
	g_test_add_func("/capture/timestamp-frame-after-trigger", test_timestamp_frame_after_trigger);
	g_test_add_func("/capture/bad-pipelines-are-refused", test_bad_pipelines_are_refused);
	g_test_add_func("/capture/missing-file-fails-cleanly", test_missing_file_fails_cleanly);
	return g_test_run();
}
