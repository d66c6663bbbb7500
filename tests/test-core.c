/* core/: configuration errors, bounded queues, the time-keyed ring buffer,
 * WAV files. */
#include <errno.h>
#include <glib.h>
#include <glib/gstdio.h>
#include <math.h>
#include <string.h>

#include "core/bqueue.h"
#include "core/config.h"
#include "core/part.h"
#include "core/ring.h"
#include "core/shift.h"
#include "core/wav.h"

static const char conf_text[] =
	"# a comment\n"
	"[plc]\n"
	"host = 127.0.0.1\n"
	"port = 70000\n"
	"poll_ms = fast\n"
	"mode = server\n"
	"\n"
	"[camera.top]\n"
	"pipeline = videotestsrc ! appsink name=sink\n"
	"bogus = 1\n";

static void test_config_errors_name_file_line_key(void)
{
	char *dir = g_dir_make_tmp("vigil-core-XXXXXX", NULL);
	char *path = g_build_filename(dir, "line.conf", NULL);
	static const char *const modes[] = { "client", NULL };
	static const char *const cam_keys[] = { "pipeline", "trigger", NULL };
	char *err = NULL, *s = NULL, *expect;
	config *c;
	int v = 0;

	g_assert_true(g_file_set_contents(path, conf_text, -1, NULL));
	c = config_load_file(path, &err);
	g_assert_nonnull(c);

	g_assert_cmpint(config_get_int(c, "plc", "port", 502, 1, 65535, &v, &err), ==, -EINVAL);
	expect = g_strdup_printf("%s:4: [plc] port: 70000 is out of range 1..65535", path);
	g_assert_cmpstr(err, ==, expect);
	g_free(expect);
	g_clear_pointer(&err, g_free);

	g_assert_cmpint(config_get_int(c, "plc", "poll_ms", 5, 1, 100, &v, &err), ==, -EINVAL);
	g_assert_true(g_str_has_prefix(err, path));
	g_assert_nonnull(strstr(err, ":5: [plc] poll_ms: 'fast' is not a whole number"));
	g_clear_pointer(&err, g_free);

	g_assert_cmpint(config_get_choice(c, "plc", "mode", "client", modes, &v, &err), ==, -EINVAL);
	g_assert_nonnull(strstr(err, ":6: [plc] mode: 'server' is not one of: client"));
	g_clear_pointer(&err, g_free);

	g_assert_cmpint(config_check_keys(c, "camera.top", cam_keys, &err), ==, -EINVAL);
	g_assert_nonnull(strstr(err, ":10: [camera.top] bogus: unknown key"));
	g_clear_pointer(&err, g_free);

	/* A missing required key names the group's line. */
	g_assert_cmpint(config_get_string(c, "plc", "unit", NULL, &s, &err), ==, -EINVAL);
	g_assert_nonnull(strstr(err, ":2: [plc]: missing required key 'unit'"));
	g_clear_pointer(&err, g_free);

	/* Defaults and good values pass. */
	g_assert_cmpint(config_get_int(c, "plc", "unit_id", 7, 0, 247, &v, &err), ==, 0);
	g_assert_cmpint(v, ==, 7);
	g_assert_cmpint(config_get_string(c, "plc", "host", NULL, &s, &err), ==, 0);
	g_assert_cmpstr(s, ==, "127.0.0.1");
	g_free(s);
	config_free(c);

	/* A syntax error is refused at load, naming the file. */
	g_assert_true(g_file_set_contents(path, "[plc]\nthis is not a key\n", -1, NULL));
	g_assert_null(config_load_file(path, &err));
	g_assert_true(g_str_has_prefix(err, path));
	g_clear_pointer(&err, g_free);

	g_assert_null(config_load_file("/nonexistent/vigil.conf", &err));
	g_assert_nonnull(strstr(err, "/nonexistent/vigil.conf"));
	g_free(err);

	g_unlink(path);
	g_rmdir(dir);
	g_free(path);
	g_free(dir);
}

/* GKeyFile would keep the last of a repeated key; the reader refuses it,
 * also when the section itself is repeated, and names both lines. */
static void test_config_refuses_a_key_given_twice(void)
{
	static const char twice[] = "[plc]\nport = 502\nhost = 127.0.0.1\n  port=1502\n";
	static const char across[] =
		"[plc]\nport = 502\n[camera.top]\nport = 7\n# port = 9\n[plc]\nhost = x\nport = 1\n";
	static const char distinct[] = "[plc]\nport = 502\n[camera.top]\nport = 7\n[plc]\nhost = x\n";
	char *err = NULL, *s = NULL;
	config *c;

	g_assert_null(config_load_data(twice, "line.conf", &err));
	g_assert_cmpstr(err, ==, "line.conf:4: [plc] port: given twice (first at line 2)");
	g_clear_pointer(&err, g_free);

	g_assert_null(config_load_data(across, "line.conf", &err));
	g_assert_cmpstr(err, ==, "line.conf:8: [plc] port: given twice (first at line 2)");
	g_clear_pointer(&err, g_free);

	/* The same key in other sections, and a section given twice with other
	 * keys, are fine; messages then name the first [plc] line. */
	c = config_load_data(distinct, "line.conf", &err);
	g_assert_nonnull(c);
	g_assert_cmpint(config_get_string(c, "plc", "host", NULL, &s, &err), ==, 0);
	g_assert_cmpstr(s, ==, "x");
	g_free(s);
	g_assert_cmpint(config_get_string(c, "plc", "unit", NULL, &s, &err), ==, -EINVAL);
	g_assert_cmpstr(err, ==, "line.conf:1: [plc]: missing required key 'unit'");
	g_free(err);
	config_free(c);
}

static gpointer producer(gpointer data)
{
	bqueue *q = data;

	for (uintptr_t i = 1; i <= 1000; i++)
		g_assert_cmpint(bqueue_push(q, (void *)i, -1), ==, 0);
	return NULL;
}

static void test_bqueue_order_and_bound(void)
{
	bqueue *q = bqueue_new(4);
	GThread *t;
	void *item;

	g_assert_cmpint(bqueue_pop(q, &item, 1000), ==, -ETIMEDOUT);
	t = g_thread_new("producer", producer, q);
	for (uintptr_t i = 1; i <= 1000; i++) {
		g_assert_cmpint(bqueue_pop(q, &item, -1), ==, 0);
		g_assert_cmpuint((uintptr_t)item, ==, i);
	}
	g_thread_join(t);
	g_assert_cmpuint(bqueue_high_water(q), <=, 4);
	for (uintptr_t i = 0; i < 4; i++)
		g_assert_cmpint(bqueue_push(q, (void *)(i + 1), 0), ==, 0);
	g_assert_cmpint(bqueue_push(q, (void *)5, 0), ==, -ETIMEDOUT);
	bqueue_close(q);
	g_assert_cmpint(bqueue_push(q, (void *)5, 0), ==, -EPIPE);
	/* Closing still lets the consumer drain what was queued. */
	for (uintptr_t i = 0; i < 4; i++)
		g_assert_cmpint(bqueue_pop(q, &item, 0), ==, 0);
	g_assert_cmpint(bqueue_pop(q, &item, 0), ==, -EPIPE);
	bqueue_free(q);
}

#define RATE 12000.0
#define NS_PER_SAMPLE (1e9 / RATE)

/* Writes samples [first, first+n) whose values are their own index. */
static void write_indexed(ring *r, int64_t first, size_t n)
{
	float *x = g_new(float, n);

	for (size_t i = 0; i < n; i++)
		x[i] = (float)(first + (int64_t)i);
	g_assert_cmpint(ring_write(r, x, n, (int64_t)llround((double)first * NS_PER_SAMPLE), 0), ==, 0);
	g_free(x);
}

static void test_ring_windows_by_time(void)
{
	ring *r = ring_new(4096, RATE, 0, 0, 0);
	float out[256];
	unsigned flags = 99;

	for (int64_t i = 0; i < 3000; i += 100)
		write_indexed(r, i, 100);
	g_assert_cmpint(ring_origin_ns(r), ==, 0);
	g_assert_cmpuint(ring_end_index(r), ==, 3000);

	/* The window starting at sample 1234's time holds exactly 1234..1489. */
	g_assert_cmpint(ring_window(r, (int64_t)llround(1234 * NS_PER_SAMPLE), 256, out, &flags, 0), ==, 0);
	g_assert_cmpuint(flags, ==, 0);
	for (int i = 0; i < 256; i++)
		g_assert_cmpfloat(out[i], ==, (float)(1234 + i));

	/* Not yet complete: times out rather than inventing samples. */
	g_assert_cmpint(ring_window(r, (int64_t)llround(2900 * NS_PER_SAMPLE), 256, out, &flags, 1000),
			==, -ETIMEDOUT);

	/* Overwritten: 8000 samples later the start of the line is gone. */
	for (int64_t i = 3000; i < 8000; i += 100)
		write_indexed(r, i, 100);
	g_assert_cmpint(ring_window(r, 0, 256, out, &flags, 0), ==, -ENODATA);

	/* A jump in time leaves a gap that the window reports. */
	write_indexed(r, 8100, 100);
	g_assert_cmpint(ring_window(r, (int64_t)llround(7950 * NS_PER_SAMPLE), 200, out, &flags, 0), ==, 0);
	g_assert_true(flags & RING_GAP);
	g_assert_cmpfloat(out[0], ==, 7950.0f);
	g_assert_cmpfloat(out[199], ==, 8149.0f);

	ring_close(r);
	g_assert_cmpint(ring_window(r, (int64_t)llround(8150 * NS_PER_SAMPLE), 256, out, &flags, -1),
			==, -EPIPE);
	ring_free(r);
}

static void test_ring_clipping_and_origin(void)
{
	ring *r = ring_new(1024, RATE, 1.0f, 0, 0);
	float x[64], out[64];
	unsigned flags = 0;

	for (int i = 0; i < 64; i++)
		x[i] = i == 10 ? 1.5f : 0.1f;
	/* The time line starts at the first sample, wherever the source's clock is. */
	g_assert_cmpint(ring_write(r, x, 64, 5000000000LL, 0), ==, 0);
	g_assert_cmpint(ring_origin_ns(r), ==, 5000000000LL);
	g_assert_cmpint(ring_window(r, 0, 32, out, &flags, 0), ==, 0);
	g_assert_true(flags & RING_CLIPPED);
	g_assert_cmpint(ring_window(r, (int64_t)llround(20 * NS_PER_SAMPLE), 32, out, &flags, 0), ==, 0);
	g_assert_false(flags & RING_CLIPPED);
	ring_free(r);
}

/* A dead accelerometer's windows - all zero (cable pulled on an AC-coupled
 * input), a constant (a stuck ADC, or the bias of an IEPE input with its
 * supply off) and that constant moving by an ADC step or three - are
 * flat; a quiet running machine's window is not. The flat level is
 * vigild's default, 0.01 g (sensors/sensor-config.c); the step is a
 * 16-bit ADC's over +-50 g (100 mV/g into +-5 V), 1.5 mg. */
#define FLAT_LEVEL 0.01f
#define LSB_G (100.0 / 65536.0)
#define FLAT_WINDOW 2048

/* The flags of one window of x (FLAT_WINDOW samples) written alone into a
 * ring with the given levels. */
static unsigned window_flags(const float *x, float clip_level, float flat_level)
{
	ring *r = ring_new(4 * FLAT_WINDOW, RATE, clip_level, flat_level, 0);
	float out[FLAT_WINDOW];
	unsigned flags = 99;

	g_assert_cmpint(ring_write(r, x, FLAT_WINDOW, 0, 0), ==, 0);
	g_assert_cmpint(ring_window(r, 0, FLAT_WINDOW, out, &flags, 0), ==, 0);
	g_assert_cmpmem(out, sizeof out, x, sizeof out); /* flagged, never changed */
	ring_free(r);
	return flags;
}

static void test_ring_flat_windows(void)
{
	float x[FLAT_WINDOW];
	GRand *rnd = g_rand_new_with_seed(7);
	double lo = INFINITY, hi = -INFINITY;

	memset(x, 0, sizeof x);
	g_assert_cmpuint(window_flags(x, 0, FLAT_LEVEL), ==, RING_FLAT);
	/* Off: the same window passes. */
	g_assert_cmpuint(window_flags(x, 0, 0), ==, 0);
	for (int i = 0; i < FLAT_WINDOW; i++)
		x[i] = 0.37f;
	g_assert_cmpuint(window_flags(x, 0, FLAT_LEVEL), ==, RING_FLAT);
	/* Stuck at the rail: clipped and flat, both said. */
	g_assert_cmpuint(window_flags(x, 0.37f, FLAT_LEVEL), ==, RING_CLIPPED | RING_FLAT);
	/* DC plus +-1 step of noise, then +-3 steps (a range of 9.2 mg). */
	for (int i = 0; i < FLAT_WINDOW; i++)
		x[i] = (float)(0.37 + LSB_G * g_rand_int_range(rnd, -1, 2));
	g_assert_cmpuint(window_flags(x, 0, FLAT_LEVEL), ==, RING_FLAT);
	for (int i = 0; i < FLAT_WINDOW; i++)
		x[i] = (float)(-0.02 + LSB_G * g_rand_int_range(rnd, -3, 4));
	g_assert_cmpuint(window_flags(x, 0, FLAT_LEVEL), ==, RING_FLAT);

	/* A quiet good part, quieter than the CWRU rig's healthy motor (its
	 * quietest 2048-sample window: 0.067 g RMS, a range of 0.40 g): a
	 * running-speed line of 0.03 g and broadband noise of 0.058 g RMS. */
	for (int i = 0; i < FLAT_WINDOW; i++) {
		double t = (double)i / RATE;

		x[i] = (float)(0.012 + 0.03 * sin(2 * G_PI * 29.95 * t) +
			       0.1 * g_rand_double_range(rnd, -1, 1));
		lo = MIN(lo, x[i]);
		hi = MAX(hi, x[i]);
	}
	g_assert_cmpfloat(hi - lo, >, 0.2);
	g_assert_cmpfloat(hi - lo, <, 0.5);
	g_assert_cmpuint(window_flags(x, 0, FLAT_LEVEL), ==, 0);
	/* Quieter than any part should be: a pure running-speed sine at the top
	 * of ISO 10816 zone A for small machines, 0.71 mm/s RMS at 29.95 Hz,
	 * 13.7 mg RMS, a range of 39 mg; still not flat. */
	for (int i = 0; i < FLAT_WINDOW; i++)
		x[i] = (float)(0.71e-3 * 2 * G_PI * 29.95 / 9.80665 * G_SQRT2 *
			       sin(2 * G_PI * 29.95 * i / RATE));
	g_assert_cmpuint(window_flags(x, 0, FLAT_LEVEL), ==, 0);
	g_rand_free(rnd);
}

struct blocking_writer {
	ring *r;
	int written;
};

static gpointer blocking_writer(gpointer data)
{
	struct blocking_writer *w = data;
	float x[100];

	for (int b = 0; b < 50; b++) {
		for (int i = 0; i < 100; i++)
			x[i] = (float)(b * 100 + i);
		if (ring_write(w->r, x, 100, (int64_t)llround(b * 100 * NS_PER_SAMPLE), -1) < 0)
			break;
		g_atomic_int_add(&w->written, 100);
	}
	return NULL;
}

static void test_ring_blocks_instead_of_dropping(void)
{
	ring *r = ring_new(1000, RATE, 0, 0, 1);
	struct blocking_writer w = { r, 0 };
	GThread *t = g_thread_new("writer", blocking_writer, &w);
	float out[200];
	unsigned flags;

	g_usleep(50000);
	/* The writer waits at capacity rather than overwriting unread samples. */
	g_assert_cmpint(g_atomic_int_get(&w.written), <=, 1000);
	for (int k = 0; k < 25; k++) {
		int64_t t0 = (int64_t)llround(k * 200 * NS_PER_SAMPLE);

		g_assert_cmpint(ring_window(r, t0, 200, out, &flags, 2000000), ==, 0);
		g_assert_cmpfloat(out[0], ==, (float)(k * 200));
		g_assert_cmpfloat(out[199], ==, (float)(k * 200 + 199));
		g_assert_cmpuint(flags, ==, 0);
		ring_release_before(r, t0 + (int64_t)llround(200 * NS_PER_SAMPLE));
	}
	g_thread_join(t);
	g_assert_cmpint(w.written, ==, 5000);
	ring_free(r);
}

/* ---- WAV ---- */

static void put16(GByteArray *a, unsigned v)
{
	guint8 b[2] = { (guint8)v, (guint8)(v >> 8) };

	g_byte_array_append(a, b, 2);
}

static void put32(GByteArray *a, uint32_t v)
{
	put16(a, v & 0xFFFF);
	put16(a, v >> 16);
}

/* A WAV by hand, as another program might write it: fmt (tag, channels,
 * rate, bits) and a data chunk of data_len bytes, in the order asked. */
static GByteArray *wav_by_hand(unsigned tag, unsigned channels, uint32_t rate, unsigned bits,
			       const void *samples, uint32_t data_len, gboolean data_first)
{
	GByteArray *a = g_byte_array_new();
	GByteArray *fmt = g_byte_array_new(), *data = g_byte_array_new();

	g_byte_array_append(fmt, (const guint8 *)"fmt ", 4);
	put32(fmt, 16);
	put16(fmt, tag);
	put16(fmt, channels);
	put32(fmt, rate);
	put32(fmt, rate * channels * bits / 8);
	put16(fmt, channels * bits / 8);
	put16(fmt, bits);
	g_byte_array_append(data, (const guint8 *)"data", 4);
	put32(data, data_len);
	g_byte_array_append(data, samples, data_len);
	g_byte_array_append(a, (const guint8 *)"RIFF", 4);
	put32(a, 4 + fmt->len + data->len);
	g_byte_array_append(a, (const guint8 *)"WAVE", 4);
	g_byte_array_append(a, data_first ? data->data : fmt->data,
			    data_first ? data->len : fmt->len);
	g_byte_array_append(a, data_first ? fmt->data : data->data,
			    data_first ? fmt->len : data->len);
	g_byte_array_unref(fmt);
	g_byte_array_unref(data);
	return a;
}

static void test_wav_round_trip(void)
{
	char *dir = g_dir_make_tmp("vigil-wav-XXXXXX", NULL);
	char *path = g_build_filename(dir, "w.wav", NULL);
	char *text = NULL, *err = NULL;
	float x[3000];
	gsize len = 0;
	struct wav w;
	wav_writer *wr = NULL;

	for (size_t i = 0; i < G_N_ELEMENTS(x); i++)
		x[i] = (float)sin((double)i * 0.01) * 3.5f;
	x[1] = -0.0f;
	x[2] = 1e-30f;
	x[3] = -1e30f;

	/* In pieces, as vigil-sim writes a recording window by window. */
	g_assert_cmpint(wav_writer_new(path, 25600, &wr), ==, 0);
	g_assert_cmpint(wav_writer_append(wr, x, 1000), ==, 0);
	g_assert_cmpint(wav_writer_append(wr, x + 1000, 2000), ==, 0);
	g_assert_cmpint(wav_writer_finish(wr), ==, 0);
	wav_writer_free(wr);

	/* The log's 44-byte header, byte for byte. */
	g_assert_true(g_file_get_contents(path, &text, &len, NULL));
	g_assert_cmpuint(len, ==, 44 + 4 * 3000);
	g_assert_cmpint(memcmp(text, "RIFF", 4), ==, 0);
	g_assert_cmpuint(GUINT32_FROM_LE(*(uint32_t *)(text + 4)), ==, 36 + 4 * 3000);
	g_assert_cmpint(memcmp(text + 8, "WAVEfmt ", 8), ==, 0);
	g_assert_cmpuint(GUINT32_FROM_LE(*(uint32_t *)(text + 16)), ==, 16);
	g_assert_cmpuint(GUINT16_FROM_LE(*(uint16_t *)(text + 20)), ==, 3);
	g_assert_cmpuint(GUINT16_FROM_LE(*(uint16_t *)(text + 22)), ==, 1);
	g_assert_cmpuint(GUINT32_FROM_LE(*(uint32_t *)(text + 24)), ==, 25600);
	g_assert_cmpuint(GUINT32_FROM_LE(*(uint32_t *)(text + 28)), ==, 25600 * 4);
	g_assert_cmpuint(GUINT16_FROM_LE(*(uint16_t *)(text + 32)), ==, 4);
	g_assert_cmpuint(GUINT16_FROM_LE(*(uint16_t *)(text + 34)), ==, 32);
	g_assert_cmpint(memcmp(text + 36, "data", 4), ==, 0);
	g_assert_cmpuint(GUINT32_FROM_LE(*(uint32_t *)(text + 40)), ==, 4 * 3000);
	g_free(text);

	g_assert_cmpint(wav_read_file(path, WAV_FLOAT32, &w, &err), ==, 0);
	g_assert_null(err);
	g_assert_cmpuint(w.rate_hz, ==, 25600);
	g_assert_cmpuint(w.n, ==, 3000);
	g_assert_cmpmem(w.x, sizeof x, x, sizeof x);
	wav_clear(&w);

	/* All at once gives the same file. */
	g_assert_cmpint(wav_write_file(path, x, 3000, 25600.2), ==, 0);
	g_assert_cmpint(wav_read_file(path, WAV_RECORDING, &w, &err), ==, 0);
	g_assert_cmpuint(w.rate_hz, ==, 25600);
	g_assert_cmpmem(w.x, w.n * 4, x, sizeof x);
	wav_clear(&w);

	/* An empty window is a file of no samples, not an error. */
	g_assert_cmpint(wav_write_file(path, x, 0, 8000), ==, 0);
	g_assert_cmpint(wav_read_file(path, WAV_FLOAT32, &w, &err), ==, 0);
	g_assert_cmpuint(w.n, ==, 0);
	g_assert_nonnull(w.x);
	wav_clear(&w);

	g_assert_cmpint(wav_write_file(path, x, 10, 0.2), ==, -EINVAL);
	g_remove(path);
	g_free(path);
	path = g_build_filename(dir, "no-such-folder", "w.wav", NULL);
	g_assert_cmpint(wav_write_file(path, x, 10, 8000), ==, -ENOENT);
	g_assert_cmpint(wav_read_file(path, WAV_FLOAT32, &w, &err), ==, -ENOENT);
	g_assert_nonnull(strstr(err, "w.wav"));
	g_clear_pointer(&err, g_free);
	g_rmdir(dir);
	g_free(path);
	g_free(dir);
}

static void test_wav_refuses_a_truncated_file(void)
{
	char *dir = g_dir_make_tmp("vigil-wav-XXXXXX", NULL);
	char *path = g_build_filename(dir, "cut.wav", NULL);
	char *text = NULL, *err = NULL, *expect;
	float x[100];
	gsize len = 0;
	struct wav w;

	for (int i = 0; i < 100; i++)
		x[i] = (float)i;
	g_assert_cmpint(wav_write_file(path, x, 100, 8000), ==, 0);
	g_assert_true(g_file_get_contents(path, &text, &len, NULL));

	/* Cut inside the last sample: the data chunk claims more than is there. */
	g_assert_true(g_file_set_contents(path, text, (gssize)len - 6, NULL));
	g_assert_cmpint(wav_read_file(path, WAV_FLOAT32, &w, &err), ==, -EINVAL);
	expect = g_strdup_printf("%s: the 'data' chunk claims 400 bytes; the file holds 394", path);
	g_assert_cmpstr(err, ==, expect);
	g_free(expect);
	g_clear_pointer(&err, g_free);
	g_assert_null(w.x);
	/* A recording whose recorder never finalised the header is read up to
	 * its last whole sample. */
	g_assert_cmpint(wav_read_file(path, WAV_RECORDING, &w, &err), ==, 0);
	g_assert_cmpuint(w.n, ==, 98);
	g_assert_cmpfloat(w.x[97], ==, 97.0f);
	wav_clear(&w);

	/* Cut inside the header. */
	g_assert_cmpint(wav_parse(text, 30, WAV_RECORDING, &w, &err), ==, -EINVAL);
	g_assert_cmpstr(err, ==, "no fmt chunk");
	g_clear_pointer(&err, g_free);
	g_assert_cmpint(wav_parse(text, 40, WAV_FLOAT32, &w, &err), ==, -EINVAL);
	g_assert_cmpstr(err, ==, "no data chunk");
	g_clear_pointer(&err, g_free);
	g_assert_cmpint(wav_parse(text, 10, WAV_FLOAT32, &w, &err), ==, -EINVAL);
	g_assert_cmpstr(err, ==, "not a RIFF/WAVE file");
	g_clear_pointer(&err, g_free);

	g_free(text);
	g_remove(path);
	g_rmdir(dir);
	g_free(path);
	g_free(dir);
}

static void test_wav_refuses_a_wrong_format(void)
{
	gint16 pcm[4] = { 0, 16384, -32768, 32767 };
	float f[4] = { 0.5f, -0.25f, 1.0f, 2.0f };
	guint8 pcm24[12] = { 0 };
	char *err = NULL;
	struct wav w;
	GByteArray *a;

	/* 16-bit PCM: not what the log stores; a recording may be. */
	a = wav_by_hand(1, 1, 8000, 16, pcm, sizeof pcm, FALSE);
	g_assert_cmpint(wav_parse(a->data, a->len, WAV_FLOAT32, &w, &err), ==, -EINVAL);
	g_assert_cmpstr(err, ==, "format tag 1 with 16 bits per sample; expected IEEE float32 (3)");
	g_clear_pointer(&err, g_free);
	g_assert_cmpint(wav_parse(a->data, a->len, WAV_RECORDING, &w, &err), ==, 0);
	g_assert_cmpuint(w.n, ==, 4);
	g_assert_cmpfloat(w.x[1], ==, 0.5f);
	g_assert_cmpfloat(w.x[2], ==, -1.0f);
	wav_clear(&w);
	g_byte_array_unref(a);

	/* 24-bit PCM is taken by neither. */
	a = wav_by_hand(1, 1, 8000, 24, pcm24, sizeof pcm24, FALSE);
	g_assert_cmpint(wav_parse(a->data, a->len, WAV_RECORDING, &w, &err), ==, -EINVAL);
	g_assert_cmpstr(err, ==, "format tag 1 with 24 bits per sample; expected IEEE float32 "
				 "(3) or 16-bit PCM (1)");
	g_clear_pointer(&err, g_free);
	g_byte_array_unref(a);

	/* The samples before the format: the log never writes that. */
	a = wav_by_hand(3, 1, 8000, 32, f, sizeof f, TRUE);
	g_assert_cmpint(wav_parse(a->data, a->len, WAV_FLOAT32, &w, &err), ==, -EINVAL);
	g_assert_cmpstr(err, ==, "the data chunk comes before the fmt chunk");
	g_clear_pointer(&err, g_free);
	g_assert_cmpint(wav_parse(a->data, a->len, WAV_RECORDING, &w, &err), ==, 0);
	g_assert_cmpfloat(w.x[3], ==, 2.0f);
	wav_clear(&w);
	g_byte_array_unref(a);

	/* Part of a sample. */
	a = wav_by_hand(3, 1, 8000, 32, f, 10, FALSE);
	g_assert_cmpint(wav_parse(a->data, a->len, WAV_FLOAT32, &w, &err), ==, -EINVAL);
	g_assert_cmpstr(err, ==, "the data chunk holds 10 bytes, not whole 4-byte samples");
	g_clear_pointer(&err, g_free);
	g_byte_array_unref(a);

	a = wav_by_hand(3, 1, 0, 32, f, sizeof f, FALSE);
	g_assert_cmpint(wav_parse(a->data, a->len, WAV_FLOAT32, &w, &err), ==, -EINVAL);
	g_assert_cmpstr(err, ==, "the sample rate is 0");
	g_clear_pointer(&err, g_free);
	g_byte_array_unref(a);
}

static void test_wav_refuses_stereo(void)
{
	float f[4] = { 0.5f, -0.5f, 0.25f, -0.25f };
	char *err = NULL;
	struct wav w;
	GByteArray *a = wav_by_hand(3, 2, 8000, 32, f, sizeof f, FALSE);

	g_assert_cmpint(wav_parse(a->data, a->len, WAV_FLOAT32, &w, &err), ==, -EINVAL);
	g_assert_cmpstr(err, ==, "2 channels, expected mono");
	g_clear_pointer(&err, g_free);
	g_assert_cmpint(wav_parse(a->data, a->len, WAV_RECORDING, &w, &err), ==, -EINVAL);
	g_assert_cmpstr(err, ==, "2 channels, expected mono");
	g_clear_pointer(&err, g_free);
	g_assert_null(w.x);
	g_byte_array_unref(a);
}

/* Unix µs of a Europe/Berlin wall-clock time, computed with GLib. */
static int64_t berlin_us(int y, int mo, int d, int h, int mi)
{
	GTimeZone *tz = g_time_zone_new_identifier("Europe/Berlin");
	GDateTime *dt = g_date_time_new(tz, y, mo, d, h, mi, 0);
	int64_t us = g_date_time_to_unix(dt) * G_USEC_PER_SEC;

	g_date_time_unref(dt);
	g_time_zone_unref(tz);
	return us;
}

static void test_shift_plan_occurrences(void)
{
	char *err = NULL, *s;
	shift_plan *p = shift_plan_parse(" night 22:00,early 6:00 , late 14:00", "Europe/Berlin", &err);
	shift_span sp, prev;

	g_assert_null(err);
	g_assert_nonnull(p);
	s = shift_plan_to_string(p);
	g_assert_cmpstr(s, ==, "early 06:00, late 14:00, night 22:00");
	g_free(s);
	g_assert_cmpuint(shift_plan_count(p), ==, 3);
	g_assert_cmpstr(shift_plan_name(p, 2), ==, "night");

	/* 03:10 on the 7th belongs to the night shift that began on the 6th. */
	shift_plan_at(p, berlin_us(2026, 12, 7, 3, 10), &sp);
	g_assert_cmpstr(sp.label, ==, "2026-12-06 night");
	g_assert_cmpint(sp.index, ==, 2);
	g_assert_cmpint(sp.start_us, ==, berlin_us(2026, 12, 6, 22, 0));
	g_assert_cmpint(sp.end_us, ==, berlin_us(2026, 12, 7, 6, 0));
	/* A start belongs to its own shift; the moment before, to the last. */
	shift_plan_at(p, berlin_us(2026, 12, 7, 6, 0), &sp);
	g_assert_cmpstr(sp.label, ==, "2026-12-07 early");
	shift_plan_at(p, berlin_us(2026, 12, 7, 6, 0) - 1, &sp);
	g_assert_cmpstr(sp.label, ==, "2026-12-06 night");
	/* Over a month end and back. */
	shift_plan_at(p, berlin_us(2026, 12, 31, 23, 0), &sp);
	shift_plan_step(p, &sp, -1, &sp);
	g_assert_cmpstr(sp.label, ==, "2027-01-01 early");
	shift_plan_step(p, &sp, 2, &prev);
	g_assert_cmpstr(prev.label, ==, "2026-12-31 late");

	/* The night the clocks go forward (29 March 2026, 02:00 -> 03:00)
	 * lasts seven hours, the one they go back (25 October) nine. */
	g_assert_cmpint(shift_plan_find(p, "2026-03-28 night", 0, &sp, &err), ==, 0);
	g_assert_cmpint(sp.end_us - sp.start_us, ==, 7LL * 3600 * G_USEC_PER_SEC);
	g_assert_cmpint(shift_plan_find(p, "2026-10-24 night", 0, &sp, &err), ==, 0);
	g_assert_cmpint(sp.end_us - sp.start_us, ==, 9LL * 3600 * G_USEC_PER_SEC);

	g_assert_cmpint(shift_plan_find(p, "previous", berlin_us(2026, 12, 7, 7, 0), &sp, &err), ==, 0);
	g_assert_cmpstr(sp.label, ==, "2026-12-06 night");
	g_assert_cmpint(shift_plan_find(p, "current", berlin_us(2026, 12, 7, 7, 0), &sp, &err), ==, 0);
	g_assert_cmpstr(sp.label, ==, "2026-12-07 early");
	g_assert_cmpint(shift_plan_find(p, "2026-12-07 lunch", 0, &sp, &err), ==, -1);
	g_assert_nonnull(strstr(err, "no shift named 'lunch'"));
	g_clear_pointer(&err, g_free);
	g_assert_cmpint(shift_plan_find(p, "2026-02-30 early", 0, &sp, &err), ==, -1);
	g_assert_nonnull(strstr(err, "is not a shift"));
	g_clear_pointer(&err, g_free);
	/* A bare word is told the plan's shifts too, as a name the plan lacks. */
	g_assert_cmpint(shift_plan_find(p, "lunch", 0, &sp, &err), ==, -1);
	g_assert_nonnull(strstr(err, "'lunch' is not a shift"));
	g_assert_nonnull(strstr(err, "(the shifts: early 06:00"));
	g_clear_pointer(&err, g_free);
	shift_plan_free(p);
	shift_plan_free(NULL);

	/* One shift a day runs from its start to the next day's. */
	p = shift_plan_parse("day 00:00", "UTC", &err);
	g_assert_nonnull(p);
	shift_plan_at(p, 86400LL * G_USEC_PER_SEC + 5, &sp);
	g_assert_cmpstr(sp.label, ==, "1970-01-02 day");
	g_assert_cmpint(sp.end_us - sp.start_us, ==, 86400LL * G_USEC_PER_SEC);
	shift_plan_free(p);
}

static void test_shift_plan_refuses(void)
{
	static const struct {
		const char *spec, *tz, *msg;
	} bad[] = {
		{ "", NULL, "no shifts given" },
		{ "early", NULL, "is not NAME HH:MM" },
		{ "early 06:00 extra", NULL, "is not NAME HH:MM" },
		{ "early 6.00", NULL, "not a time HH:MM" },
		{ "early 24:00", NULL, "not a time HH:MM" },
		{ "early 06:7", NULL, "not a time HH:MM" },
		{ "a 06:00, a 07:00", NULL, "named twice" },
		{ "a 06:00, b 06:00", NULL, "both start at 06:00" },
		{ "sp@t 06:00", NULL, "is not 1 to 31 letters" },
		{ "early 06:00", "Mars/Olympus", "unknown time zone 'Mars/Olympus'" },
	};

	for (size_t i = 0; i < G_N_ELEMENTS(bad); i++) {
		char *err = NULL;
		shift_plan *p = shift_plan_parse(bad[i].spec, bad[i].tz, &err);

		g_assert_null(p);
		g_assert_nonnull(err);
		if (!strstr(err, bad[i].msg))
			g_error("'%s': got \"%s\", want \"%s\"", bad[i].spec, err, bad[i].msg);
		g_free(err);
	}
}

/* The one defect-type rule of the tree (core/part.h): the station's page,
 * the Plant view and vigilctl --central all refuse what it refuses. */
static void test_defect_type_is_one_plain_word(void)
{
	char longest[VIGIL_DEFECT_TYPE_MAX + 2];

	g_assert_true(vigil_defect_type_ok("scratch"));
	g_assert_true(vigil_defect_type_ok("dent_2.b-x"));
	g_assert_false(vigil_defect_type_ok(""));
	g_assert_false(vigil_defect_type_ok("two words"));
	g_assert_false(vigil_defect_type_ok("a,b"));
	g_assert_false(vigil_defect_type_ok("kratzer\xc3\xa4"));
	memset(longest, 'x', VIGIL_DEFECT_TYPE_MAX);
	longest[VIGIL_DEFECT_TYPE_MAX] = '\0';
	g_assert_true(vigil_defect_type_ok(longest));
	longest[VIGIL_DEFECT_TYPE_MAX] = 'x';
	longest[VIGIL_DEFECT_TYPE_MAX + 1] = '\0';
	g_assert_false(vigil_defect_type_ok(longest));
}

/* The one fail-safe classification: where a part carries several
 * causes, /metrics and the shift report name the same one. */
static void test_failsafe_cause(void)
{
	static const struct {
		uint32_t flags;
		enum vigil_failsafe_cause want;
	} cases[] = {
		{ 0, VIGIL_FAILSAFE_FAULT },
		{ VIGIL_FLAG_FAILSAFE, VIGIL_FAILSAFE_FAULT },
		{ VIGIL_FLAG_NO_FRAME | VIGIL_FLAG_NOT_SENT, VIGIL_FAILSAFE_OVERRUN },
		{ VIGIL_FLAG_NO_FRAME | VIGIL_FLAG_VIB_FLAT, VIGIL_FAILSAFE_NO_FRAME },
		{ VIGIL_FLAG_IMAGE_FLAT | VIGIL_FLAG_MODEL_ERROR, VIGIL_FAILSAFE_IMAGE_FLAT },
		{ VIGIL_FLAG_VIB_CLIPPED, VIGIL_FAILSAFE_NO_VIBRATION },
		{ VIGIL_FLAG_VIB_FLAT | VIGIL_FLAG_NO_VIBRATION, VIGIL_FAILSAFE_SENSOR_FLAT },
		{ VIGIL_FLAG_MODEL_ERROR, VIGIL_FAILSAFE_MODEL_ERROR },
		{ VIGIL_FLAG_QUEUE_FULL | VIGIL_FLAG_NOT_SENT, VIGIL_FAILSAFE_QUEUE_FULL },
		{ VIGIL_FLAG_DEADLINE | VIGIL_FLAG_QUEUE_FULL, VIGIL_FAILSAFE_DEADLINE },
		{ VIGIL_FLAG_NOT_INSPECTED | VIGIL_FLAG_DEADLINE, VIGIL_FAILSAFE_NOT_INSPECTED },
	};

	for (size_t i = 0; i < G_N_ELEMENTS(cases); i++)
		g_assert_cmpint(vigil_failsafe_cause_of(cases[i].flags), ==, cases[i].want);
}

int main(int argc, char **argv)
{
	g_test_init(&argc, &argv, NULL);
	g_test_add_func("/core/config/errors-name-file-line-key", test_config_errors_name_file_line_key);
	g_test_add_func("/core/config/refuses-a-key-given-twice",
			test_config_refuses_a_key_given_twice);
	g_test_add_func("/core/part/failsafe-cause", test_failsafe_cause);
	g_test_add_func("/core/bqueue/order-and-bound", test_bqueue_order_and_bound);
	g_test_add_func("/core/ring/windows-by-time", test_ring_windows_by_time);
	g_test_add_func("/core/ring/clipping-and-origin", test_ring_clipping_and_origin);
	g_test_add_func("/core/ring/flat-windows", test_ring_flat_windows);
	g_test_add_func("/core/ring/blocks-instead-of-dropping", test_ring_blocks_instead_of_dropping);
	g_test_add_func("/core/shift/occurrences", test_shift_plan_occurrences);
	g_test_add_func("/core/shift/refuses", test_shift_plan_refuses);
	g_test_add_func("/core/part/defect-type-is-one-plain-word",
			test_defect_type_is_one_plain_word);
	g_test_add_func("/core/wav/round-trip", test_wav_round_trip);
	g_test_add_func("/core/wav/refuses-a-truncated-file", test_wav_refuses_a_truncated_file);
	g_test_add_func("/core/wav/refuses-a-wrong-format", test_wav_refuses_a_wrong_format);
	g_test_add_func("/core/wav/refuses-stereo", test_wav_refuses_stereo);
	return g_test_run();
}
