/* sensors/: a real GStreamer audio pipeline (filesrc ! wavparse) into the
 * time-keyed ring, windows checked sample by sample. */
#include <errno.h>
#include <glib.h>
#include <glib/gstdio.h>
#include <gst/gst.h>
#include <stdio.h>
#include <math.h>
#include <stdlib.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/part.h"
#include "core/ring.h"
#include "sensors/sensors.h"

#define RATE 12000
#define N_SAMPLES 60000

/* A mono IEEE-float WAV of the n samples x at RATE in a temporary
 * directory (remove_wav removes both). */
static char *write_wav(const float *x, size_t n)
{
	char *dir = g_dir_make_tmp("vigil-sensors-XXXXXX", NULL);
	char *path = g_build_filename(dir, "vib.wav", NULL);
	FILE *f = fopen(path, "wb");
	uint32_t data_bytes = (uint32_t)n * 4, u32;
	uint16_t u16;

	g_assert_nonnull(f);
#define PUT32(v) (u32 = GUINT32_TO_LE(v), fwrite(&u32, 4, 1, f))
#define PUT16(v) (u16 = GUINT16_TO_LE(v), fwrite(&u16, 2, 1, f))
	fwrite("RIFF", 1, 4, f);
	PUT32(36 + data_bytes);
	fwrite("WAVEfmt ", 1, 8, f);
	PUT32(16);
	PUT16(3);           /* IEEE float */
	PUT16(1);
	PUT32(RATE);
	PUT32(RATE * 4);
	PUT16(4);
	PUT16(32);
	fwrite("data", 1, 4, f);
	PUT32(data_bytes);
	fwrite(x, 4, n, f);   /* little-endian hosts, as before */
	fclose(f);
	g_free(dir);
	return path;
}

/* A WAV of N_SAMPLES whose sample i holds i / 1e5 (exact in float32). */
static char *write_ramp_wav(void)
{
	float *x = g_new(float, N_SAMPLES);
	char *path;

	for (int i = 0; i < N_SAMPLES; i++)
		x[i] = (float)i / 1e5f;
	path = write_wav(x, N_SAMPLES);
	g_free(x);
	return path;
}

/* Removes the file of write_wav and its temporary directory. */
static void remove_wav(char *wav)
{
	char *dir = g_path_get_dirname(wav);

	g_unlink(wav);
	g_rmdir(dir);
	g_free(dir);
	g_free(wav);
}

static sensor_source *source_on(const char *pipeline, enum sensor_mode mode, size_t window,
				size_t stride, double offset_ms, double buffer_s)
{
	struct sensor_config cfg = {
		.name = "test", .pipeline = pipeline, .mode = mode, .rate_hz = RATE,
		.window = window, .stride = stride, .offset_ms = offset_ms, .buffer_s = buffer_s,
	};
	char *err = NULL;
	sensor_source *s = sensor_source_new(&cfg, &err);

	if (!s)
		g_error("%s", err);
	g_assert_cmpint(sensor_source_start(s, &err), ==, 0);
	return s;
}

static void test_sequence_windows_are_sample_exact(void)
{
	char *wav = write_ramp_wav();
	char *pipeline = g_strdup_printf("filesrc location=%s ! wavparse ! audioconvert ! "
					 "appsink name=sink", wav);
	/* A ring of ~0.5 s holds far less than the 5 s file: the pipeline must
	 * wait for the parts instead of overwriting their samples. */
	sensor_source *s = source_on(pipeline, SENSOR_SEQUENCE, 2048, 2100, 10.0, 0.5);
	float win[2048];
	unsigned flags;
	uint64_t seq;

	for (seq = 0; seq < 27; seq++) {
		/* Part n's window starts at n * stride + offset (10 ms = 120 samples). */
		uint64_t first = seq * 2100 + 120;

		g_assert_cmpint(sensor_window_for(s, seq, 0, 5000000, win, &flags, NULL), ==, 0);
		g_assert_cmpuint(flags, ==, 0);
		for (int i = 0; i < 2048; i++)
			g_assert_cmpfloat(win[i], ==, (float)(first + (uint64_t)i) / 1e5f);
	}
	/* 27 * 2100 + 120 + 2048 > 60000: the recording ends before the window. */
	g_assert_cmpint(sensor_window_for(s, 28, 0, 5000000, win, &flags, NULL), ==, -EPIPE);
	sensor_source_free(s);
	remove_wav(wav);
	g_free(pipeline);
}

static void test_clock_window_follows_trigger(void)
{
	sensor_source *s = source_on("audiotestsrc is-live=true wave=sine freq=500 "
				     "samplesperbuffer=240 ! audioconvert ! audioresample ! "
				     "appsink name=sink", SENSOR_CLOCK, 1200, 0, 0, 2.0);
	float win[1200];
	unsigned flags = 0;
	struct sensor_stats st;
	int64_t trigger;
	double energy = 0;

	g_usleep(300000);
	trigger = vigil_now_us();
	/* The window of 100 ms after the trigger is complete about 100 ms later. */
	g_assert_cmpint(sensor_window_for(s, 0, trigger, 3000000, win, &flags, NULL), ==, 0);
	g_assert_cmpint(vigil_now_us() - trigger, >=, 90000);
	g_assert_false(flags & RING_GAP);
	for (int i = 0; i < 1200; i++)
		energy += (double)win[i] * win[i];
	g_assert_cmpfloat(energy / 1200, >, 0.1); /* a sine of amplitude ~0.8 */
	sensor_source_stats(s, &st);
	g_assert_cmpuint(st.samples, >, 3000);
	sensor_source_free(s);
}

/* Buffers dropped inside the pipeline leave holes on the time line: the
 * windows over them are flagged RING_GAP with zeros where samples are
 * missing, never neighbouring samples moved into place. */
static void test_dropped_buffers_flag_gaps(void)
{
	char *wav = write_ramp_wav();
	char *pipeline = g_strdup_printf("filesrc location=%s ! wavparse ! audioconvert ! "
					 "audiobuffersplit output-buffer-duration=1/100 ! "
					 "identity drop-probability=0.3 ! appsink name=sink", wav);
	sensor_source *s = source_on(pipeline, SENSOR_SEQUENCE, 1024, 1024, 0, 0.5);
	float win[1024];
	unsigned flags;
	int gaps = 0, whole = 0;

	/* 58 windows of 1024 samples over 484 buffers of 120 samples, each
	 * dropped with p = 0.3: both kinds occur unless 1 - 1e-9 fails. */
	for (uint64_t seq = 0; seq < 58; seq++) {
		uint64_t first = seq * 1024;
		int rc = sensor_window_for(s, seq, 0, 5000000, win, &flags, NULL);

		if (rc == -EPIPE)
			break; /* the last buffers were dropped: the file ended first */
		g_assert_cmpint(rc, ==, 0);
		if (flags & RING_GAP)
			gaps++;
		else
			whole++;
		for (int i = 0; i < 1024; i++) {
			float want = (float)(first + (uint64_t)i) / 1e5f;

			/* Either the true sample or a hole, never another sample. */
			g_assert_true(win[i] == want || ((flags & RING_GAP) && win[i] == 0.0f));
		}
	}
	g_assert_cmpint(gaps, >, 0);
	g_assert_cmpint(whole, >, 0);
	sensor_source_free(s);
	remove_wav(wav);
	g_free(pipeline);
}

/* The ramp reaches 0.3 at sample 30000: windows past it are clipped. */
static void test_windows_over_clip_level_are_flagged(void)
{
	char *wav = write_ramp_wav();
	char *pipeline = g_strdup_printf("filesrc location=%s ! wavparse ! audioconvert ! "
					 "appsink name=sink", wav);
	struct sensor_config cfg = {
		.name = "clip", .pipeline = pipeline, .mode = SENSOR_SEQUENCE, .rate_hz = RATE,
		.window = 2000, .stride = 2000, .buffer_s = 0.5, .clip_level = 0.3f,
	};
	char *err = NULL;
	sensor_source *s = sensor_source_new(&cfg, &err);
	float win[2000];
	unsigned flags;

	g_assert_nonnull(s);
	g_assert_cmpint(sensor_source_start(s, &err), ==, 0);
	for (uint64_t seq = 0; seq < 25; seq++) {
		g_assert_cmpint(sensor_window_for(s, seq, 0, 5000000, win, &flags, NULL), ==, 0);
		/* Window seq covers samples seq*2000 .. seq*2000+1999. */
		g_assert_cmpuint(flags, ==, seq * 2000 + 1999 >= 30000 ? RING_CLIPPED : 0);
		g_assert_cmpfloat(win[0], ==, (float)(seq * 2000) / 1e5f); /* kept, not limited */
	}
	sensor_source_free(s);
	remove_wav(wav);
	g_free(pipeline);
}

/* A sensor that dies mid-recording, through the real pipeline at
 * [vibration] flat_level's default (0.01 g): a quiet running machine's
 * windows pass, then all zero (cable pulled), a constant (a stuck ADC) and
 * that constant with +-1 step of a 16-bit ADC over +-50 g (1.5 mg) are
 * flagged flat, the samples handed on unchanged; then it runs again. */
static void test_flat_windows_are_flagged(void)
{
	enum { W = 2048, QUIET = 3, DEAD = 3, WINDOWS = QUIET + DEAD * 3 + 2 };
	static const double lsb_g = 100.0 / 65536.0;
	float *x = g_new(float, (size_t)W * WINDOWS), win[W];
	GRand *rnd = g_rand_new_with_seed(11);
	char *wav, *pipeline, *err = NULL;
	struct sensor_config cfg = {
		.name = "flat", .mode = SENSOR_SEQUENCE, .rate_hz = RATE, .window = W,
		.stride = W, .buffer_s = 0.5, .flat_level = 0.01f,
	};
	sensor_source *s;
	unsigned flags;

	for (int i = 0; i < W * WINDOWS; i++) {
		int k = i / W;

		if (k >= QUIET && k < QUIET + DEAD)
			x[i] = 0;
		else if (k >= QUIET + DEAD && k < QUIET + 2 * DEAD)
			x[i] = -0.21f;
		else if (k >= QUIET + 2 * DEAD && k < QUIET + 3 * DEAD)
			x[i] = (float)(-0.21 + lsb_g * g_rand_int_range(rnd, -1, 2));
		else    /* 0.03 g at running speed, 0.058 g RMS of broadband noise */
			x[i] = (float)(0.03 * sin(2 * G_PI * 29.95 * i / RATE) +
				       0.1 * g_rand_double_range(rnd, -1, 1));
	}
	wav = write_wav(x, (size_t)W * WINDOWS);
	pipeline = g_strdup_printf("filesrc location=%s ! wavparse ! audioconvert ! "
				   "appsink name=sink", wav);
	cfg.pipeline = pipeline;
	s = sensor_source_new(&cfg, &err);
	g_assert_nonnull(s);
	g_assert_cmpint(sensor_source_start(s, &err), ==, 0);
	for (uint64_t seq = 0; seq < WINDOWS; seq++) {
		gboolean dead = seq >= QUIET && seq < QUIET + 3 * DEAD;

		g_assert_cmpint(sensor_window_for(s, seq, 0, 5000000, win, &flags, NULL), ==, 0);
		g_assert_cmpuint(flags, ==, dead ? RING_FLAT : 0);
		g_assert_cmpmem(win, sizeof win, x + seq * W, sizeof win);
	}
	sensor_source_free(s);
	remove_wav(wav);
	g_free(pipeline);
	g_rand_free(rnd);
	g_free(x);
}

/* A live source: a window that is not complete in time is refused
 * (-ETIMEDOUT), one already overwritten is refused (-ENODATA), and a
 * complete window's first sample lies at trigger + offset to within half a
 * sample on the monotonic clock. */
static void test_clock_windows_late_gone_and_placed(void)
{
	sensor_source *s = source_on("audiotestsrc is-live=true wave=white-noise "
				     "samplesperbuffer=120 ! audioconvert ! "
				     "appsink name=sink", SENSOR_CLOCK, 600, 0, 25.0, 1.0);
	float win[600];
	unsigned flags = 0;
	struct sensor_stats st;
	int64_t now, t_first_ns;
	int64_t t0 = vigil_now_us();

	g_usleep(200000);
	now = vigil_now_us();
	/* 2 s ahead, given 100 ms: not complete in time. */
	g_assert_cmpint(sensor_window_for(s, 0, now + 2000000, 100000, win, &flags, &t_first_ns),
			==, -ETIMEDOUT);
	g_assert_cmpint(vigil_now_us() - now, >=, 100000);
	/* Started before the ring's first sample: those were never recorded. */
	now = vigil_now_us();
	g_assert_cmpint(sensor_window_for(s, 0, t0 - 3000000, 2000000, win, &flags, &t_first_ns),
			==, -ENODATA);
	g_assert_cmpint(vigil_now_us() - now, <, 1000000); /* at once, not after the timeout */
	for (int k = 0; k < 20; k++) {
		int64_t trigger = vigil_now_us() + k * 7; /* not on a sample boundary */
		int64_t err_ns;

		g_assert_cmpint(sensor_window_for(s, 0, trigger, 3000000, win, &flags, &t_first_ns),
				==, 0);
		g_assert_false(flags & RING_GAP);
		err_ns = t_first_ns - (trigger * 1000 + 25000000);
		g_assert_cmpint(llabs(err_ns), <=, 1000000000 / RATE / 2 + 1);
	}
	g_usleep(1500000); /* past the 1 s ring (4 windows of margin at most) */
	sensor_source_stats(s, &st);
	/* Samples reached the ring after the time stamped on them, not before:
	 * the pipeline's time line is the monotonic clock. */
	g_assert_cmpint(st.lag_min_us, >=, -1);
	g_assert_cmpint(st.lag_max_us, <, 1000000);
	sensor_source_free(s);
}

/* ---- Modbus vibration transmitter against pymodbus on loopback ---- */

static GPid start_transmitter_peer(int port, int *port_out)
{
	char *script = g_build_filename(g_getenv("VIGIL_SOURCE_ROOT"), "tests",
					"transmitter_peer.py", NULL);
	char *port_s = g_strdup_printf("%d", port);
	char *argv[] = { "/usr/bin/python3", script, port_s, NULL };
	GError *gerr = NULL;
	GPid pid;
	int out_fd;
	char line[64] = { 0 };
	size_t n = 0;

	if (!g_spawn_async_with_pipes(NULL, argv, NULL, G_SPAWN_DEFAULT, NULL, NULL, &pid,
				      NULL, &out_fd, NULL, &gerr))
		g_error("cannot start the transmitter peer: %s", gerr->message);
	while (n < sizeof line - 1 && read(out_fd, line + n, 1) == 1 && line[n] != '\n')
		n++;
	close(out_fd);
	if (sscanf(line, "PORT %d", port_out) != 1)
		g_error("the transmitter peer did not start: '%s'", line);
	g_free(script);
	g_free(port_s);
	return pid;
}

static void stop_peer(GPid pid)
{
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	g_spawn_close_pid(pid);
}

static int wait_latest(sensor_transmitter *t, int want, struct transmitter_reading *r,
		       int64_t timeout_us)
{
	int64_t end = vigil_now_us() + timeout_us;
	int rc;

	while ((rc = sensor_transmitter_latest(t, r)) != want && vigil_now_us() < end)
		g_usleep(10000);
	return rc;
}

static void test_transmitter_polls_and_goes_stale(void)
{
	struct transmitter_config cfg = {
		.name = "tx", .host = "127.0.0.1", .unit_id = 1, .input_registers = 1,
		.low_word_first = 1, .poll_ms = 20, .timeout_ms = 200, .stale_ms = 300,
		.reg = {
			[TRANSMITTER_VELOCITY] = { 100, TRANSMITTER_U16, 0.01 },
			[TRANSMITTER_ACCELERATION] = { 102, TRANSMITTER_F32, 1.0 },
			[TRANSMITTER_TEMPERATURE] = { 110, TRANSMITTER_S16, 0.1 },
		},
	};
	struct transmitter_reading r, trend[256];
	struct transmitter_stats st;
	char *err = NULL;
	sensor_transmitter *t;
	int64_t t_kill;
	size_t n;
	GPid peer = start_transmitter_peer(0, &cfg.port);

	t = sensor_transmitter_new(&cfg, &err);
	g_assert_nonnull(t);
	g_assert_cmpint(sensor_transmitter_start(t, &err), ==, 0);
	g_assert_cmpint(wait_latest(t, 0, &r, 5000000), ==, 0);
	g_assert_cmpfloat_with_epsilon(r.value[TRANSMITTER_VELOCITY], 4.53, 1e-9);
	g_assert_cmpfloat(r.value[TRANSMITTER_ACCELERATION], ==, 1.25); /* CDAB float32 */
	g_assert_cmpfloat_with_epsilon(r.value[TRANSMITTER_TEMPERATURE], -12.5, 1e-9);
	/* At least 3 polls kept as trend points, waited for rather than
	 * assumed of 200 ms: a busy host's pymodbus answers late. */
	n = 0;
	for (int64_t end = vigil_now_us() + 10000000; n < 3; g_usleep(20000)) {
		n += sensor_transmitter_take_trend(t, trend + n, G_N_ELEMENTS(trend) - n);
		g_assert_cmpint(vigil_now_us(), <, end);
	}
	for (size_t i = 1; i < n; i++) {
		g_assert_cmpint(trend[i].t_us, >, trend[i - 1].t_us);
		g_assert_cmpfloat(trend[i].value[TRANSMITTER_ACCELERATION], ==, 1.25);
	}

	/* The transmitter goes away: the last reading turns stale, nothing new
	 * is made up while it is gone. */
	stop_peer(peer);
	t_kill = vigil_now_us();
	g_assert_cmpint(wait_latest(t, -ESTALE, &r, 5000000), ==, -ESTALE);
	g_assert_cmpint(r.t_us, <=, t_kill);
	sensor_transmitter_stats(t, &st);
	g_assert_false(st.connected);
	g_assert_cmpuint(st.failures, >, 0);
	n = sensor_transmitter_take_trend(t, trend, G_N_ELEMENTS(trend));
	for (size_t i = 0; i < n; i++)
		g_assert_cmpint(trend[i].t_us, <=, t_kill);

	/* Back on the same port: readings resume by themselves. */
	peer = start_transmitter_peer(cfg.port, &cfg.port);
	g_assert_cmpint(wait_latest(t, 0, &r, 8000000), ==, 0);
	g_assert_cmpint(r.t_us, >, t_kill);
	sensor_transmitter_free(t);
	stop_peer(peer);
}

static void test_transmitter_config_errors(void)
{
	struct transmitter_config cfg = {
		.name = "bad", .poll_ms = 100, .timeout_ms = 100,
		.reg = { { -1, 0, 1 }, { -1, 0, 1 }, { -1, 0, 1 } },
	};
	char *err = NULL;

	g_assert_null(sensor_transmitter_new(&cfg, &err));
	g_assert_nonnull(strstr(err, "either a host (TCP) or a device (RTU)"));
	g_clear_pointer(&err, g_free);
	cfg.host = "127.0.0.1";
	g_assert_null(sensor_transmitter_new(&cfg, &err));
	g_assert_nonnull(strstr(err, "no register to read"));
	g_clear_pointer(&err, g_free);
	cfg.reg[TRANSMITTER_VELOCITY] = (struct transmitter_register){ 65535, TRANSMITTER_F32, 1 };
	g_assert_null(sensor_transmitter_new(&cfg, &err));
	g_assert_nonnull(strstr(err, "register 65535 does not fit"));
	g_free(err);
}

/* ---- IIO buffered capture (libiio) ----
 * There is no IIO device on the machines that run these tests, and iiod
 * serves only real kernel devices. What is real here: libiio itself,
 * reading a context from an XML description (libiio's xml backend) of an
 * ADXL355 accelerometer - device and channel lookup, scan-element format,
 * scale, the timestamp channel - and our conversion of raw scan elements.
 * NOT exercised: streaming (iio_buffer_refill) and the timestamps of real
 * buffers; the xml backend cannot create a buffer, which the test checks
 * is refused with a clear message. */
static const char adxl355_xml[] =
	"<?xml version=\"1.0\" encoding=\"utf-8\"?>\n"
	"<!DOCTYPE context [<!ELEMENT context (device)*><!ELEMENT device (channel|attribute)*>"
	"<!ELEMENT channel (scan-element?,attribute*)><!ELEMENT attribute EMPTY>"
	"<!ELEMENT scan-element EMPTY>"
	"<!ATTLIST context name CDATA #REQUIRED description CDATA #IMPLIED>"
	"<!ATTLIST device id CDATA #REQUIRED name CDATA #IMPLIED>"
	"<!ATTLIST channel id CDATA #REQUIRED type (input|output) #REQUIRED name CDATA #IMPLIED>"
	"<!ATTLIST scan-element index CDATA #REQUIRED format CDATA #REQUIRED scale CDATA #IMPLIED>"
	"<!ATTLIST attribute name CDATA #REQUIRED filename CDATA #IMPLIED>]>\n"
	"<context name=\"xml\" description=\"ADXL355 test fixture\">"
	"<device id=\"iio:device0\" name=\"adxl355\">"
	"<channel id=\"accel_z\" type=\"input\">"
	"<scan-element index=\"2\" format=\"be:s20/32&gt;&gt;12\" scale=\"0.000038245\"/>"
	"<attribute name=\"raw\" filename=\"in_accel_z_raw\"/></channel>"
	"<channel id=\"temp\" type=\"input\">"
	"<attribute name=\"raw\" filename=\"in_temp_raw\"/></channel>"
	"<channel id=\"timestamp\" type=\"input\">"
	"<scan-element index=\"3\" format=\"le:s64/64&gt;&gt;0\"/></channel>"
	"<attribute name=\"sampling_frequency\"/></device></context>\n";

static void test_iio_channel_from_context(void)
{
	char *dir = g_dir_make_tmp("vigil-iio-XXXXXX", NULL);
	char *xml = g_build_filename(dir, "adxl355.xml", NULL);
	char *uri = g_strconcat("xml:", xml, NULL);
	struct sensor_config cfg = {
		.name = "daq", .iio_uri = uri, .iio_device = "adxl355", .iio_channel = "accel_z",
		.iio_unit_scale = 1 / 9.80665, .mode = SENSOR_CLOCK, .rate_hz = 4000,
		.window = 1024, .buffer_s = 2,
	};
	struct sensor_iio_info info;
	char *err = NULL;
	sensor_source *s;
	uint8_t raw[4];
	uint32_t word;
	int32_t counts;
	int rc;

	g_assert_true(g_file_set_contents(xml, adxl355_xml, -1, NULL));
	rc = sensor_iio_probe(&cfg, &info, &err);
	if (rc == -ENOTSUP) {
		g_test_skip(err);
		g_free(err);
		goto out;
	}
	g_assert_cmpint(rc, ==, 0);
	g_assert_cmpuint(info.bits, ==, 20);
	g_assert_cmpuint(info.storage_bits, ==, 32);
	g_assert_cmpuint(info.shift, ==, 12);
	g_assert_true(info.is_signed && info.big_endian && info.has_timestamp);
	/* libiio keeps a scan element's scale as a float: 7 digits. */
	g_assert_cmpfloat_with_epsilon(info.scale, 0.000038245 / 9.80665, 1e-12);

	/* -1 g is 256,416 counts of 38.245 um/s^2; a 20-bit two's complement
	 * value in the top bits of a big-endian 32-bit word, low 12 bits junk. */
	counts = -(int32_t)lround(9.80665 / 0.000038245);
	word = ((uint32_t)counts & 0xFFFFF) << 12 | 0xABC;
	raw[0] = word >> 24;
	raw[1] = word >> 16;
	raw[2] = word >> 8;
	raw[3] = word;
	g_assert_cmpfloat_with_epsilon(sensor_iio_value(&info, raw), -1.0, 1e-5);
	word = (0x7FFFFu << 12); /* full scale positive */
	raw[0] = word >> 24;
	raw[1] = word >> 16;
	raw[2] = word >> 8;
	raw[3] = word;
	g_assert_cmpfloat_with_epsilon(sensor_iio_value(&info, raw),
				       524287 * 0.000038245 / 9.80665, 1e-6);

	/* Configuration errors name what is wrong. */
	cfg.iio_channel = "temp";
	g_assert_cmpint(sensor_iio_probe(&cfg, &info, &err), ==, -EINVAL);
	g_assert_nonnull(strstr(err, "'temp' cannot be captured in a buffer"));
	g_clear_pointer(&err, g_free);
	cfg.iio_channel = "accel_q";
	g_assert_cmpint(sensor_iio_probe(&cfg, &info, &err), ==, -ENODEV);
	g_assert_nonnull(strstr(err, "has no input channel 'accel_q'"));
	g_clear_pointer(&err, g_free);
	cfg.iio_channel = "accel_z";
	cfg.iio_device = "adxl999";
	g_assert_null(sensor_source_new(&cfg, &err));
	g_assert_nonnull(strstr(err, "no IIO device 'adxl999'"));
	g_clear_pointer(&err, g_free);

	/* The source builds; streaming needs a real device (see above). */
	cfg.iio_device = "adxl355";
	s = sensor_source_new(&cfg, &err);
	g_assert_nonnull(s);
	g_assert_cmpint(sensor_source_start(s, &err), <, 0);
	g_assert_nonnull(strstr(err, "cannot create an IIO buffer on adxl355"));
	g_free(err);
	sensor_source_free(s);
out:
	g_unlink(xml);
	g_rmdir(dir);
	g_free(uri);
	g_free(xml);
	g_free(dir);
}

static void test_bad_pipeline_is_refused(void)
{
	struct sensor_config cfg = { .name = "bad", .pipeline = "audiotestsrc ! fakesink",
				     .rate_hz = RATE, .window = 2048, .buffer_s = 1 };
	char *err = NULL;

	g_assert_null(sensor_source_new(&cfg, &err));
	g_assert_nonnull(strstr(err, "the pipeline must end in 'appsink name=sink'"));
	g_free(err);
}

/* [vibration.NAME] and [transmitter.NAME] as vigild reads them: the
 * documented defaults, and a bad value named by file, line and key. */
static void test_vibration_settings(void)
{
	static const char text[] =
		"[vibration.main]\n"
		"pipeline = audiotestsrc ! appsink name=sink\n"
		"window = 1024\n"
		"hf_hz = 3000\n"
		"\n"
		"[vibration.bad]\n"
		"pipeline = audiotestsrc ! appsink name=sink\n"
		"rate_hz = 50\n"
		"\n"
		"[vibration.flat]\n"
		"pipeline = audiotestsrc ! appsink name=sink\n"
		"clip_level = 0.2\n"
		"flat_level = 0.4\n"
		"\n"
		"[vibration.low_clip]\n"
		"pipeline = audiotestsrc ! appsink name=sink\n"
		"clip_level = 0.004\n"
		"\n"
		"[vibration.no_flat]\n"
		"pipeline = audiotestsrc ! appsink name=sink\n"
		"clip_level = 0.004\n"
		"flat_level = 0\n"
		"\n"
		"[vibration.negative]\n"
		"pipeline = audiotestsrc ! appsink name=sink\n"
		"flat_level = -0.01\n"
		"\n"
		"[transmitter.pump]\n"
		"host = 127.0.0.1\n"
		"velocity_register = 4\n"
		"\n"
		"[transmitter.both]\n"
		"host = 127.0.0.1\n"
		"device = /dev/ttyS0\n"
		"velocity_register = 4\n";
	struct sensor_settings s;
	struct transmitter_settings t;
	char *err = NULL;
	config *c = config_load_data(text, "line.conf", &err);

	g_assert_nonnull(c);
	/* The condition figures' keys (hf_hz) belong to the section too. */
	g_assert_cmpint(sensor_config_read(c, "vibration.main", &s, &err), ==, 0);
	g_assert_cmpstr(s.name, ==, "main");
	g_assert_true(s.cfg.name == s.name && s.cfg.pipeline == s.pipeline);
	g_assert_null(s.cfg.iio_uri);
	g_assert_cmpint(s.cfg.mode, ==, SENSOR_SEQUENCE);
	g_assert_cmpfloat(s.cfg.rate_hz, ==, 12000);
	g_assert_cmpuint(s.cfg.window, ==, 1024);
	g_assert_cmpuint(s.cfg.stride, ==, 1024);  /* the window's */
	g_assert_cmpfloat(s.cfg.offset_ms, ==, 0);
	g_assert_cmpfloat(s.cfg.buffer_s, ==, 10);
	g_assert_cmpfloat(s.cfg.clip_level, ==, 0);
	g_assert_cmpfloat(s.cfg.flat_level, ==, 0.01f);
	g_assert_cmpint(s.timeout_ms, ==, 2000);
	sensor_settings_clear(&s);
	g_assert_null(s.name);

	g_assert_cmpint(sensor_config_read(c, "vibration.bad", &s, &err), ==, -EINVAL);
	g_assert_cmpstr(err, ==, "line.conf:8: [vibration.bad] rate_hz: 50 is out of range 100..1e+06");
	g_clear_pointer(&err, g_free);
	sensor_settings_clear(&s);

	/* A flat level that leaves no window standing is refused, naming the
	 * key the file sets; 0 turns the check off. */
	g_assert_cmpint(sensor_config_read(c, "vibration.flat", &s, &err), ==, -EINVAL);
	g_assert_cmpstr(err, ==, "line.conf:13: [vibration.flat] flat_level: 0.4 is not below "
			"twice clip_level (0.2): every window would be flat or clipped");
	g_clear_pointer(&err, g_free);
	sensor_settings_clear(&s);
	g_assert_cmpint(sensor_config_read(c, "vibration.low_clip", &s, &err), ==, -EINVAL);
	g_assert_cmpstr(err, ==, "line.conf:17: [vibration.low_clip] clip_level: 0.004 is not "
			"above half of flat_level (0.01, the default): every window would be flat "
			"or clipped; set flat_level lower (0: off)");
	g_clear_pointer(&err, g_free);
	sensor_settings_clear(&s);
	g_assert_cmpint(sensor_config_read(c, "vibration.no_flat", &s, &err), ==, 0);
	g_assert_cmpfloat(s.cfg.flat_level, ==, 0);
	g_assert_cmpfloat(s.cfg.clip_level, ==, 0.004f);
	sensor_settings_clear(&s);
	g_assert_cmpint(sensor_config_read(c, "vibration.negative", &s, &err), ==, -EINVAL);
	g_assert_cmpstr(err, ==, "line.conf:26: [vibration.negative] flat_level: -0.01 is out of "
			"range 0..1e+09");
	g_clear_pointer(&err, g_free);
	sensor_settings_clear(&s);

	g_assert_cmpint(transmitter_config_read(c, "transmitter.pump", &t, &err), ==, 0);
	g_assert_cmpstr(t.name, ==, "pump");
	g_assert_cmpstr(t.cfg.host, ==, "127.0.0.1");
	g_assert_null(t.cfg.device);
	g_assert_cmpint(t.cfg.port, ==, 502);
	g_assert_cmpint(t.cfg.unit_id, ==, 1);
	g_assert_cmpint(t.cfg.input_registers, ==, 1);
	g_assert_cmpint(t.cfg.low_word_first, ==, 0);
	g_assert_cmpint(t.cfg.poll_ms, ==, 1000);
	g_assert_cmpint(t.cfg.timeout_ms, ==, 500);
	g_assert_cmpint(t.cfg.stale_ms, ==, 0);
	g_assert_cmpint(t.cfg.reg[TRANSMITTER_VELOCITY].address, ==, 4);
	g_assert_cmpint(t.cfg.reg[TRANSMITTER_ACCELERATION].address, ==, -1);
	transmitter_settings_clear(&t);

	g_assert_cmpint(transmitter_config_read(c, "transmitter.both", &t, &err), ==, -EINVAL);
	g_assert_cmpstr(err, ==, "line.conf:33: [transmitter.both] host: give either host "
			"(Modbus TCP) or device (Modbus RTU)");
	g_free(err);
	transmitter_settings_clear(&t);
	sensor_settings_clear(NULL);
	transmitter_settings_clear(NULL);
	config_free(c);
}

int main(int argc, char **argv)
{
	gst_init(&argc, &argv);
	g_test_init(&argc, &argv, NULL);
	/* A transmitter going away is logged as a warning: expected here. */
	g_log_set_always_fatal(G_LOG_LEVEL_CRITICAL | G_LOG_FATAL_MASK);
	g_test_add_func("/sensors/sequence-windows-are-sample-exact",
			test_sequence_windows_are_sample_exact);
	g_test_add_func("/sensors/clock-window-follows-trigger", test_clock_window_follows_trigger);
	g_test_add_func("/sensors/dropped-buffers-flag-gaps", test_dropped_buffers_flag_gaps);
	g_test_add_func("/sensors/windows-over-clip-level-are-flagged",
			test_windows_over_clip_level_are_flagged);
	g_test_add_func("/sensors/flat-windows-are-flagged", test_flat_windows_are_flagged);
	g_test_add_func("/sensors/clock-windows-late-gone-and-placed",
			test_clock_windows_late_gone_and_placed);
	g_test_add_func("/sensors/bad-pipeline-is-refused", test_bad_pipeline_is_refused);
	g_test_add_func("/sensors/transmitter-polls-and-goes-stale",
			test_transmitter_polls_and_goes_stale);
	g_test_add_func("/sensors/transmitter-config-errors", test_transmitter_config_errors);
	g_test_add_func("/sensors/iio-channel-from-context", test_iio_channel_from_context);
	g_test_add_func("/sensors/vibration-settings", test_vibration_settings);
	return g_test_run();
}
