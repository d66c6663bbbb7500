/* fusion/: spectra, condition figures and signal features against closed-form
 * values; image preprocessing against hand-computed pixels. */
#include <errno.h>
#include <glib.h>
#include <math.h>
#include <string.h>

#include "fusion/fusion.h"
#include "fusion/prep-math.h"
#include "tests/prep-cases.h"

#define RATE 12000.0
#define WIN 2048

static void fill_sine(float *x, size_t n, double amp, double hz, double phase)
{
	for (size_t i = 0; i < n; i++)
		x[i] = (float)(amp * sin(2 * G_PI * hz * (double)i / RATE + phase));
}

/* Deterministic Gaussian noise (Box-Muller over a 64-bit LCG). */
static double noise_state_next(uint64_t *s)
{
	*s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
	return ((double)(*s >> 11) + 0.5) / 9007199254740992.0;
}

static void fill_noise(float *x, size_t n, double sigma, uint64_t seed)
{
	uint64_t s = seed;

	for (size_t i = 0; i < n; i++) {
		double u = noise_state_next(&s), v = noise_state_next(&s);

		x[i] = (float)(sigma * sqrt(-2 * log(u)) * cos(2 * G_PI * v));
	}
}

static void test_power_spectrum_sine(void)
{
	fusion_sigfeat *f = fusion_sigfeat_new(WIN, RATE);
	float x[WIN], p[WIN / 2 + 1], p2[WIN / 2 + 1];
	double amp = 0.7, expect_bin = 1000.0 * WIN / RATE, sum = 0;
	size_t peak = 0;

	g_assert_nonnull(f);
	fill_sine(x, WIN, amp, 1000.0, 0.3);
	g_assert_cmpint(fusion_power_spectrum(f, x, p), ==, 0);
	for (size_t k = 1; k <= WIN / 2; k++)
		if (p[k] > p[peak])
			peak = k;
	g_assert_cmpfloat(fabs((double)peak - expect_bin), <=, 1.0);
	/* The Hann-windowed power around the peak holds the sine's mean square. */
	for (size_t k = peak - 4; k <= peak + 4; k++)
		sum += p[k];
	g_assert_cmpfloat(fabs(sum - amp * amp / 2) / (amp * amp / 2), <, 0.01);
	/* Far from the tone there is only window leakage. */
	g_assert_cmpfloat(p[50], <, 1e-6 * p[peak]);

	/* Twice the amplitude, four times the power. */
	fill_sine(x, WIN, 2 * amp, 1000.0, 0.3);
	g_assert_cmpint(fusion_power_spectrum(f, x, p2), ==, 0);
	g_assert_cmpfloat(fabs(p2[peak] / p[peak] - 4.0), <, 1e-4);

	/* A sine centred on bin 256 (1500 Hz): A^2/3 there, A^2/12 beside it. */
	fill_sine(x, WIN, amp, 256 * RATE / WIN, 1.0);
	g_assert_cmpint(fusion_power_spectrum(f, x, p), ==, 0);
	g_assert_cmpfloat(fabs(p[256] - amp * amp / 3), <, 1e-5);
	g_assert_cmpfloat(fabs(p[255] - amp * amp / 12), <, 1e-5);
	g_assert_cmpfloat(fabs(p[257] - amp * amp / 12), <, 1e-5);
	g_assert_cmpfloat(p[254], <, 1e-9);
	fusion_sigfeat_free(f);
}

static void test_condition_closed_form(void)
{
	static float x[WIN];
	static const float spike[8] = { 0, 0, 0, 0, 0, 0, 0, 8 };
	struct fusion_condition c;

	/* 1500 Hz at 12 kHz: 8 samples a period, 384 whole periods, the
	 * sampled peak is the amplitude. */
	fill_sine(x, WIN, 2.0, 1500.0, 0.0);
	g_assert_cmpint(fusion_condition(x, WIN, &c), ==, 0);
	g_assert_cmpfloat(fabs(c.rms - 2.0 / sqrt(2.0)), <, 1e-5);
	g_assert_cmpfloat(fabs(c.peak - 2.0), <, 1e-5);
	g_assert_cmpfloat(fabs(c.crest_factor - sqrt(2.0)), <, 1e-5);
	g_assert_cmpfloat(fabs(c.kurtosis - 1.5), <, 1e-4);

	/* Seven zeros and an 8: mean 1, central moments m2 = 7, m4 = 301. */
	g_assert_cmpint(fusion_condition(spike, 8, &c), ==, 0);
	g_assert_cmpfloat(fabs(c.rms - sqrt(8.0)), <, 1e-6);
	g_assert_cmpfloat(fabs(c.peak - 8.0), <, 1e-6);
	g_assert_cmpfloat(fabs(c.crest_factor - sqrt(8.0)), <, 1e-6);
	g_assert_cmpfloat(fabs(c.kurtosis - 301.0 / 49.0), <, 1e-5);

	/* Gaussian noise: kurtosis 3. */
	{
		size_t n = 200000;
		float *g = g_new(float, n);

		fill_noise(g, n, 0.5, 42);
		g_assert_cmpint(fusion_condition(g, n, &c), ==, 0);
		g_assert_cmpfloat(fabs(c.kurtosis - 3.0), <, 0.05);
		g_assert_cmpfloat(fabs(c.rms - 0.5), <, 0.005);
		g_free(g);
	}
}

/* Noise plus decaying 3 kHz rings repeating at rep_hz (an outer race
 * defect's signature when rep_hz is BPFO). */
static void fill_impacts(float *x, double rep_hz, double amp, uint64_t seed)
{
	fill_noise(x, WIN, 0.05, seed);
	for (double t0 = 0.002; t0 < WIN / RATE; t0 += 1.0 / rep_hz)
		for (size_t i = (size_t)ceil(t0 * RATE); i < WIN; i++) {
			double t = (double)i / RATE - t0;

			if (t > 0.01)
				break;
			x[i] += (float)(amp * exp(-t / 0.0008) * sin(2 * G_PI * 3000 * t));
		}
}

static void test_features(void)
{
	fusion_sigfeat *f = fusion_sigfeat_new(WIN, RATE), *f2 = fusion_sigfeat_new(WIN, RATE);
	static float x[WIN], y[WIN], a[128], b[128], c[128];
	size_t dim;
	int env_band = (int)(107.4 / 18.75);   /* BPFO at 1797 rpm */

	g_assert_nonnull(f);
	g_assert_nonnull(f2);
	dim = fusion_sigfeat_dim(f);
	g_assert_cmpuint(dim, ==, 100);
	g_assert_cmpstr(FUSION_SIGFEAT_VERSION, ==, "vigil-sigfeat-v1");

	fill_impacts(x, 107.4, 0.4, 7);
	g_assert_cmpint(fusion_sigfeat_compute(f, x, a), ==, 0);
	g_assert_cmpint(fusion_sigfeat_compute(f, x, b), ==, 0);
	g_assert_cmpint(fusion_sigfeat_compute(f2, x, c), ==, 0);
	for (size_t i = 0; i < dim; i++)
		g_assert_true(isfinite(a[i]));
	g_assert_cmpmem(a, dim * sizeof(float), b, dim * sizeof(float));
	g_assert_cmpmem(a, dim * sizeof(float), c, dim * sizeof(float));

	/* The envelope spectrum finds the repetition rate; plain noise has no
	 * line there and a lower high-band kurtosis. */
	fill_noise(y, WIN, 0.05, 7);
	g_assert_cmpint(fusion_sigfeat_compute(f, y, b), ==, 0);
	g_assert_cmpfloat(a[64 + env_band], >, b[64 + env_band] + 1.0);
	g_assert_cmpfloat(a[64 + env_band], >, a[64 + env_band + 3] + 0.5);
	g_assert_cmpfloat(a[99], >, b[99] + 0.3);
	g_assert_cmpfloat(fabs(b[98] - log(3.0)), <, 0.2);

	/* A gain of 10 shifts log powers by 2 and leaves the shape alone. */
	for (size_t i = 0; i < WIN; i++)
		y[i] = 10.0f * x[i];
	g_assert_cmpint(fusion_sigfeat_compute(f, y, c), ==, 0);
	for (size_t i = 0; i < 64; i++)
		g_assert_cmpfloat(fabs(c[i] - a[i] - 2.0), <, 1e-3);
	for (size_t i = 64; i < dim; i++)
		if (i != 96)
			g_assert_cmpfloat(fabs(c[i] - a[i]), <, 1e-3);
	g_assert_cmpfloat(fabs(c[96] - a[96] - 1.0), <, 1e-4);

	/* A DC offset changes nothing: features see the mean-removed window. */
	for (size_t i = 0; i < WIN; i++)
		y[i] = x[i] + 1.5f;
	g_assert_cmpint(fusion_sigfeat_compute(f, y, c), ==, 0);
	for (size_t i = 0; i < dim; i++)
		g_assert_cmpfloat(fabs(c[i] - a[i]), <, 2e-3);

	/* A silent window still gives finite features. */
	memset(y, 0, sizeof y);
	g_assert_cmpint(fusion_sigfeat_compute(f, y, c), ==, 0);
	for (size_t i = 0; i < dim; i++)
		g_assert_true(isfinite(c[i]));

	fusion_sigfeat_free(f);
	fusion_sigfeat_free(f2);
}

static void test_invalid_input(void)
{
	fusion_sigfeat *f = fusion_sigfeat_new(WIN, RATE);
	static float x[WIN], out[128], p[WIN / 2 + 1];
	struct fusion_condition c;

	g_assert_null(fusion_sigfeat_new(0, RATE));
	g_assert_null(fusion_sigfeat_new(WIN, 0));
	g_assert_null(fusion_sigfeat_new(WIN, NAN));
	g_assert_cmpuint(fusion_sigfeat_dim(NULL), ==, 0);
	fusion_sigfeat_free(NULL);

	fill_sine(x, WIN, 1.0, 100.0, 0.0);
	x[1000] = NAN;
	g_assert_cmpint(fusion_sigfeat_compute(f, x, out), ==, -EINVAL);
	g_assert_cmpint(fusion_power_spectrum(f, x, p), ==, -EINVAL);
	g_assert_cmpint(fusion_condition(x, WIN, &c), ==, -EINVAL);
	x[1000] = INFINITY;
	g_assert_cmpint(fusion_sigfeat_compute(f, x, out), ==, -EINVAL);
	g_assert_cmpint(fusion_condition(x, 0, &c), ==, -EINVAL);
	fusion_sigfeat_free(f);
}

static void test_image_constant(void)
{
	static uint8_t img[80 * 100];
	float out[32 * 32];
	float expect = (128.0f / 255.0f - 0.5f) / 0.25f;

	memset(img, 128, sizeof img);
	g_assert_cmpint(fusion_image_prepare(img, 100, 80, 100, 32, 32, 0.5f, 0.25f, out), ==, 0);
	for (int i = 0; i < 32 * 32; i++)
		g_assert_cmpfloat(fabs(out[i] - expect), <, 1e-5);
	/* Same size: no resize, just normalisation. */
	g_assert_cmpint(fusion_image_prepare(img, 32, 32, 100, 32, 32, 0.0f, 1.0f, out), ==, 0);
	g_assert_cmpfloat(fabs(out[100] - 128.0f / 255.0f), <, 1e-6);
}

static void test_image_block_mean(void)
{
	/* An 8x6 image (stride 11) of 2x2 blocks; halving it gives each
	 * block's mean. Values chosen so the means are whole numbers. */
	enum { W = 8, H = 6, STRIDE = 11 };
	uint8_t img[H * STRIDE];
	float out[(W / 2) * (H / 2)];

	memset(img, 0xEE, sizeof img);   /* padding the resize must not read */
	for (int by = 0; by < H / 2; by++)
		for (int bx = 0; bx < W / 2; bx++) {
			int base = 20 * by + 40 * bx;
			uint8_t *p = img + 2 * by * STRIDE + 2 * bx;

			p[0] = (uint8_t)(base);
			p[1] = (uint8_t)(base + 10);
			p[STRIDE] = (uint8_t)(base + 2);
			p[STRIDE + 1] = (uint8_t)(base + 12 + 4 * bx);
		}
	g_assert_cmpint(fusion_image_prepare(img, W, H, STRIDE, W / 2, H / 2, 0.0f, 1.0f / 255.0f,
					     out), ==, 0);
	for (int by = 0; by < H / 2; by++)
		for (int bx = 0; bx < W / 2; bx++) {
			int base = 20 * by + 40 * bx;
			double mean = (4.0 * base + 24 + 4 * bx) / 4.0;

			g_assert_cmpfloat(fabs(out[by * (W / 2) + bx] - mean), <, 1e-3);
		}
	/* A dark 2x2 pit in a bright field survives as a quarter-depth pixel. */
	memset(img, 200, sizeof img);
	img[2 * STRIDE + 4] = img[2 * STRIDE + 5] = 40;
	img[3 * STRIDE + 4] = img[3 * STRIDE + 5] = 40;
	g_assert_cmpint(fusion_image_prepare(img, W, H, STRIDE, W / 2, H / 2, 0.0f, 1.0f / 255.0f,
					     out), ==, 0);
	g_assert_cmpfloat(fabs(out[1 * (W / 2) + 2] - 40.0), <, 1e-3);
	g_assert_cmpfloat(fabs(out[0] - 200.0), <, 1e-3);
}

static void test_image_invalid(void)
{
	uint8_t img[16] = { 0 };
	float out[16];

	g_assert_cmpint(fusion_image_prepare(NULL, 4, 4, 4, 2, 2, 0, 1, out), ==, -EINVAL);
	g_assert_cmpint(fusion_image_prepare(img, 4, 4, 3, 2, 2, 0, 1, out), ==, -EINVAL);
	g_assert_cmpint(fusion_image_prepare(img, 4, 4, 4, 0, 2, 0, 1, out), ==, -EINVAL);
	g_assert_cmpint(fusion_image_prepare(img, 4, 4, 4, 2, 2, 0, 0, out), ==, -EINVAL);
	g_assert_cmpint(fusion_image_prepare(img, 4, 4, 4, 2, 2, NAN, 1, out), ==, -EINVAL);
}

static void test_image_resize_modes(void)
{
	enum fusion_resize r = FUSION_RESIZE_LETTERBOX;

	g_assert_cmpint(fusion_resize_parse("stretch", &r), ==, 0);
	g_assert_cmpint(r, ==, FUSION_RESIZE_STRETCH);
	g_assert_cmpint(fusion_resize_parse("letterbox", &r), ==, 0);
	g_assert_cmpint(r, ==, FUSION_RESIZE_LETTERBOX);
	g_assert_cmpint(fusion_resize_parse("Letterbox", &r), ==, -EINVAL);
	g_assert_cmpint(fusion_resize_parse("", &r), ==, -EINVAL);
	g_assert_cmpint(fusion_resize_parse(NULL, &r), ==, -EINVAL);
	g_assert_cmpstr(fusion_resize_name(FUSION_RESIZE_STRETCH), ==, "stretch");
	g_assert_cmpstr(fusion_resize_name(FUSION_RESIZE_LETTERBOX), ==, "letterbox");
	g_assert_null(fusion_resize_name((enum fusion_resize)7));
}

/* Stretch through the new entry point is the old fusion_image_prepare, bit
 * for bit (the synthetic package's input must not change). */
static void test_image_stretch_unchanged(void)
{
	enum { W = 37, H = 23, STRIDE = 41, OW = 16, OH = 12 };
	uint8_t img[H * STRIDE];
	float a[OW * OH], b[OW * OH];
	uint64_t st = 7;

	for (size_t i = 0; i < sizeof img; i++)
		img[i] = (uint8_t)(noise_state_next(&st) * 256);
	g_assert_cmpint(fusion_image_prepare(img, W, H, STRIDE, OW, OH, 0.5f, 0.25f, a), ==, 0);
	g_assert_cmpint(fusion_image_prepare_resize(img, W, H, STRIDE, OW, OH, 0.5f, 0.25f,
						    FUSION_RESIZE_STRETCH, b), ==, 0);
	g_assert_cmpmem(a, sizeof a, b, sizeof b);
	/* Upscaling too. */
	g_assert_cmpint(fusion_image_prepare(img, 5, 4, STRIDE, OW, OH, 0.5f, 0.25f, a), ==, 0);
	g_assert_cmpint(fusion_image_prepare_resize(img, 5, 4, STRIDE, OW, OH, 0.5f, 0.25f,
						    FUSION_RESIZE_STRETCH, b), ==, 0);
	g_assert_cmpmem(a, sizeof a, b, sizeof b);
}

/* Letterbox keeps the aspect ratio: an 8x4 frame (stride 10) of 2x2 blocks
 * into a 4x4 input becomes its 4x2 block means in rows 1-2; rows 0 and 3
 * are filled. */
static void test_image_letterbox(void)
{
	enum { W = 8, H = 4, STRIDE = 10, O = 4 };
	uint8_t img[H * STRIDE], fit[O * O];
	float out[O * O];
	int means[2][4], sum = 0;

	memset(img, 0xEE, sizeof img);   /* padding the resize must not read */
	for (int by = 0; by < 2; by++)
		for (int bx = 0; bx < 4; bx++) {
			uint8_t *p = img + 2 * by * STRIDE + 2 * bx;
			int base = 30 + 40 * bx + 60 * by;

			p[0] = (uint8_t)base;
			p[1] = (uint8_t)(base + 4);
			p[STRIDE] = (uint8_t)(base + 8);
			p[STRIDE + 1] = (uint8_t)(base + 12);
			means[by][bx] = base + 6;
			sum += base + 6;
		}
	g_assert_cmpint(fusion_image_fit(img, W, H, STRIDE, O, O, FUSION_RESIZE_LETTERBOX, 0,
					 fit), ==, 0);
	for (int x = 0; x < O; x++) {
		g_assert_cmpint(fit[x], ==, 0);
		g_assert_cmpint(fit[3 * O + x], ==, 0);
		g_assert_cmpint(fit[1 * O + x], ==, means[0][x]);
		g_assert_cmpint(fit[2 * O + x], ==, means[1][x]);
	}
	/* Normalised, with the border at the frame's mean brightness. */
	g_assert_cmpint(fusion_image_prepare_resize(img, W, H, STRIDE, O, O, 0.0f, 1.0f / 255.0f,
						    FUSION_RESIZE_LETTERBOX, out), ==, 0);
	for (int x = 0; x < O; x++) {
		g_assert_cmpfloat(fabs(out[x] - (sum + 4) / 8), <, 1e-3);
		g_assert_cmpfloat(fabs(out[3 * O + x] - (sum + 4) / 8), <, 1e-3);
		g_assert_cmpfloat(fabs(out[1 * O + x] - means[0][x]), <, 1e-3);
		g_assert_cmpfloat(fabs(out[2 * O + x] - means[1][x]), <, 1e-3);
	}
	/* A frame of the input's shape is only normalised, as with stretch. */
	g_assert_cmpint(fusion_image_prepare_resize(img, O, O, STRIDE, O, O, 0.0f, 1.0f / 255.0f,
						    FUSION_RESIZE_LETTERBOX, out), ==, 0);
	g_assert_cmpfloat(fabs(out[1 * O + 2] - img[STRIDE + 2]), <, 1e-3);
	/* A narrow frame into a wide input: columns centred (odd remainder
	 * to the right), the rest filled. */
	g_assert_cmpint(fusion_image_fit(img, 2, 2, STRIDE, 5, 2, FUSION_RESIZE_LETTERBOX, 9,
					 fit), ==, 0);
	g_assert_cmpint(fit[0], ==, 9);
	g_assert_cmpint(fit[1], ==, img[0]);
	g_assert_cmpint(fit[2], ==, img[1]);
	g_assert_cmpint(fit[3], ==, 9);
	g_assert_cmpint(fit[4], ==, 9);
	g_assert_cmpint(fit[5 + 1], ==, img[STRIDE]);
}

/* A portrait frame into a landscape input (and the reverse) is turned a
 * quarter clockwise first: turned[y][x] = frame[h - 1 - x][y]. */
static void test_image_letterbox_turn(void)
{
	enum { W = 3, H = 5, STRIDE = 4 };
	uint8_t img[H * STRIDE], fit[H * W], back[W * H];

	for (int i = 0; i < H * STRIDE; i++)
		img[i] = (uint8_t)(10 + i);
	g_assert_cmpint(fusion_image_fit(img, W, H, STRIDE, H, W, FUSION_RESIZE_LETTERBOX, 0,
					 fit), ==, 0);
	for (int y = 0; y < W; y++)
		for (int x = 0; x < H; x++)
			g_assert_cmpint(fit[y * H + x], ==, img[(H - 1 - x) * STRIDE + y]);
	/* The landscape result into a portrait input turns once more. */
	g_assert_cmpint(fusion_image_fit(fit, H, W, H, W, H, FUSION_RESIZE_LETTERBOX, 0,
					 back), ==, 0);
	for (int y = 0; y < H; y++)
		for (int x = 0; x < W; x++)
			g_assert_cmpint(back[y * W + x], ==, img[(H - 1 - y) * STRIDE + (W - 1 - x)]);
	/* Square inputs never turn; stretch never turns. */
	g_assert_cmpint(fusion_image_fit(img, W, H, STRIDE, W, H, FUSION_RESIZE_STRETCH, 0,
					 back), ==, 0);
	g_assert_cmpint(back[W + 1], ==, img[STRIDE + 1]);
}

/* A defect map over the letterboxed input, carried back onto the frame,
 * is hot where the frame's defect is: a bright blob in portrait,
 * landscape and square frames, fitted to a 160x112 input (portrait
 * turned), a "map" of 4x4 cell means of that input, then
 * fusion_map_to_frame. The hottest cell's centre, stretched over the
 * frame as the review page draws it, must lie on the blob; the map
 * taken as it is would put a portrait frame's blob elsewhere. */
static void test_map_to_frame(void)
{
	const struct fusion_image_spec spec = { 160, 112, 0.5f, 0.25f, FUSION_RESIZE_LETTERBOX };
	const int frames[][4] = {   /* w, h, blob centre x, y */
		{ 218, 269, 50, 230 }, { 300, 200, 250, 40 }, { 250, 250, 120, 200 },
		{ 218, 269, 180, 30 },
	};
	enum { MW = 40, MH = 28 };

	for (size_t f = 0; f < G_N_ELEMENTS(frames); f++) {
		int w = frames[f][0], h = frames[f][1], bx = frames[f][2], by = frames[f][3];
		uint8_t *img = g_malloc0((gsize)w * (gsize)h), fit[160 * 112];
		float map[MW * MH] = { 0 }, *back;
		int ow = 0, oh = 0, best = 0;

		for (int y = by - 6; y < by + 6; y++)
			for (int x = bx - 6; x < bx + 6; x++)
				img[y * w + x] = 255;
		g_assert_cmpint(fusion_image_fit(img, w, h, w, 160, 112, FUSION_RESIZE_LETTERBOX,
						 0, fit), ==, 0);
		for (int y = 0; y < 112; y++)
			for (int x = 0; x < 160; x++)
				map[(y / 4) * MW + x / 4] += (float)fit[y * 160 + x] / (16 * 255.0f);
		back = fusion_map_to_frame(&spec, w, h, map, MW, MH, &ow, &oh);
		g_assert_nonnull(back);
		/* The frame's aspect, and no more cells than the map had. */
		g_assert_cmpfloat(fabs((double)ow / oh - (double)w / h), <, 0.1);
		g_assert_cmpint(ow * oh, <=, MW * MH);
		for (int i = 1; i < ow * oh; i++)
			if (back[i] > back[best])
				best = i;
		{
			double cx = (best % ow + 0.5) * w / ow, cy = (best / ow + 0.5) * h / oh;

			g_assert_cmpfloat(fabs(cx - bx), <, 1.5 * w / ow);
			g_assert_cmpfloat(fabs(cy - by), <, 1.5 * h / oh);
		}
		g_assert_cmpfloat(back[best], >, 0.5);
		free(back);
		g_free(img);
	}
	/* A stretch map already lies over the frame: a copy. */
	{
		const struct fusion_image_spec st = { 160, 112, 0.5f, 0.25f, FUSION_RESIZE_STRETCH };
		float map[6] = { 0.1f, 0.2f, 0.3f, 0.4f, 0.5f, 0.6f }, *back;
		int ow = 0, oh = 0;

		back = fusion_map_to_frame(&st, 218, 269, map, 3, 2, &ow, &oh);
		g_assert_nonnull(back);
		g_assert_cmpint(ow, ==, 3);
		g_assert_cmpint(oh, ==, 2);
		g_assert_cmpmem(back, sizeof map, map, sizeof map);
		free(back);
		g_assert_null(fusion_map_to_frame(NULL, 218, 269, map, 3, 2, &ow, &oh));
		g_assert_null(fusion_map_to_frame(&st, 0, 269, map, 3, 2, &ow, &oh));
		g_assert_null(fusion_map_to_frame(&st, 218, 269, map, 0, 2, &ow, &oh));
	}
}

static void test_image_letterbox_invalid(void)
{
	uint8_t img[16] = { 0 }, fit[16];
	float out[16];

	g_assert_cmpint(fusion_image_fit(NULL, 4, 4, 4, 2, 2, FUSION_RESIZE_LETTERBOX, 0, fit),
			==, -EINVAL);
	g_assert_cmpint(fusion_image_fit(img, 4, 4, 3, 2, 2, FUSION_RESIZE_LETTERBOX, 0, fit),
			==, -EINVAL);
	g_assert_cmpint(fusion_image_fit(img, 4, 4, 4, 2, 0, FUSION_RESIZE_LETTERBOX, 0, fit),
			==, -EINVAL);
	g_assert_cmpint(fusion_image_fit(img, 4, 4, 4, 2, 2, FUSION_RESIZE_LETTERBOX, 256, fit),
			==, -EINVAL);
	g_assert_cmpint(fusion_image_fit(img, 4, 4, 4, 2, 2, FUSION_RESIZE_LETTERBOX, -2, fit),
			==, -EINVAL);
	g_assert_cmpint(fusion_image_fit(img, 4, 4, 4, 2, 2, (enum fusion_resize)7, 0, fit),
			==, -EINVAL);
	g_assert_cmpint(fusion_image_prepare_resize(img, 4, 4, 4, 2, 2, 0, 0,
						    FUSION_RESIZE_LETTERBOX, out), ==, -EINVAL);
	g_assert_cmpint(fusion_image_prepare_resize(img, 4, 4, 4, 2, 2, NAN, 1,
						    FUSION_RESIZE_LETTERBOX, out), ==, -EINVAL);
	g_assert_cmpint(fusion_image_prepare_resize(img, 4, 4, 4, 2, 2, 0, 1,
						    (enum fusion_resize)7, out), ==, -EINVAL);
}

/* ---- fusion/prep-math.h: the formulas the GPU kernels compute ---- */

/* The model input by prep-math.h's per-pixel formulas, computed here
 * without OpenCV: what inference/cuda-prep-kernels.cu computes. */
static void prep_by_formula(const uint8_t *frame, int w, int h, int stride, int out_w, int out_h,
			    float mean, float std, enum fusion_resize mode, float *out)
{
	uint8_t *fitted = g_new(uint8_t, (gsize)out_w * out_h);

	fp_prepare_host(frame, w, h, stride, out_w, out_h, mean, std,
			mode == FUSION_RESIZE_LETTERBOX, fitted, out);
	g_free(fitted);
}

/* The formulas agree with fusion_image_prepare_resize (OpenCV's resize)
 * on frames of texture and sharp edges, for every kind of resize: a copy,
 * shrinking by whole and fractional factors (INTER_AREA), enlarging
 * (INTER_LINEAR), shrinking one side while enlarging the other, and the
 * letterbox turn. Bound: no pixel more than one grey level apart, and at
 * most 0.6% of them one level apart (measured: 0.46% at worst, 640x480 to
 * 160x112, where OpenCV sums the area in float and lands on the other side
 * of a half; 0.3% in the linear cases). The GPU test then holds the
 * kernels to these formulas. */
static void test_prep_math_image(void)
{
	const struct prep_case *cases = prep_cases;
	uint64_t seed = 99;

	for (size_t c = 0; c < G_N_ELEMENTS(prep_cases); c++) {
		int w = cases[c].w, h = cases[c].h, ow = cases[c].ow, oh = cases[c].oh;
		int stride = w + 13, off = 0;
		uint8_t *frame = g_new(uint8_t, (gsize)stride * h);
		float *a = g_new(float, (gsize)ow * oh), *b = g_new(float, (gsize)ow * oh);
		float level = 1.0f / (255.0f * 0.25f), worst = 0;

		for (int y = 0; y < h; y++)
			for (int x = 0; x < stride; x++) {
				double v = 128 + 60 * sin(x * 0.21) * cos(y * 0.13) +
					   40 * (noise_state_next(&seed) - 0.5) +
					   (x > w / 3 && x < w / 2 && y > h / 4 ? -70 : 0);

				frame[y * stride + x] = (uint8_t)CLAMP(v, 0, 255);
			}
		g_assert_cmpint(fusion_image_prepare_resize(frame, w, h, stride, ow, oh, 0.5f, 0.25f,
							    cases[c].mode, a), ==, 0);
		prep_by_formula(frame, w, h, stride, ow, oh, 0.5f, 0.25f, cases[c].mode, b);
		for (int i = 0; i < ow * oh; i++) {
			float d = fabsf(a[i] - b[i]);

			worst = MAX(worst, d);
			off += d > 1e-5f;
		}
		g_test_message("%dx%d -> %dx%d %s: %d of %d pixels one level apart, worst %.2f levels",
			       w, h, ow, oh, fusion_resize_name(cases[c].mode), off, ow * oh,
			       worst / level);
		g_assert_cmpfloat(worst, <=, level * 1.001f);
		g_assert_cmpint(off, <=, 0.006 * ow * oh);
		g_free(frame);
		g_free(a);
		g_free(b);
	}
}

/* A direct DFT in double: X[k] = sum x[i] e^(sign 2 pi i i k / n). */
static void dft(const double *re, const double *im, size_t n, int sign, double *out_re,
		double *out_im, const double *cos_t, const double *sin_t)
{
	for (size_t k = 0; k < n; k++) {
		double sr = 0, si = 0;

		for (size_t i = 0; i < n; i++) {
			size_t m = (i * k) % n;
			double c = cos_t[m], s = sign * sin_t[m];
			double xr = re[i], xi = im ? im[i] : 0;

			sr += xr * c - xi * s;
			si += xr * s + xi * c;
		}
		out_re[k] = sr;
		out_im[k] = si;
	}
}

/* vigil-sigfeat-v1 by prep-math.h's formulas over direct DFTs in double:
 * the computation inference/cuda-prep.c and cuda-prep-kernels.cu do with
 * cuFFT. */
static void features_by_formula(const float *x, size_t n, double rate, float *out)
{
	double *cos_t = g_new(double, n), *sin_t = g_new(double, n);
	double *re = g_new(double, n), *im = g_new(double, n), *fr = g_new(double, n),
	       *fi = g_new(double, n), *env = g_new(double, n), *ar = g_new(double, n);
	double mean = 0, ms = 0, peak = 0, cm = 0, m2 = 0, m4 = 0, env_mean = 0;
	double hm = 0, hm2 = 0, hm4 = 0;
	size_t hp = fp_highpass_bin(n, rate), edge = n / 32, cnt = n - 2 * edge;
	float *centred = g_new(float, n);

	for (size_t m = 0; m < n; m++) {
		cos_t[m] = cos(2 * G_PI * (double)m / (double)n);
		sin_t[m] = sin(2 * G_PI * (double)m / (double)n);
	}
	for (size_t i = 0; i < n; i++)
		mean += x[i];
	mean /= (double)n;
	for (size_t i = 0; i < n; i++) {
		centred[i] = (float)(x[i] - mean);
		cm += centred[i];
		ms += (double)centred[i] * centred[i];
		peak = MAX(peak, fabs(centred[i]));
	}
	cm /= (double)n;
	ms /= (double)n;
	for (size_t i = 0; i < n; i++) {
		double d = centred[i] - cm;

		m2 += d * d;
		m4 += d * d * d * d;
	}
	m2 /= (double)n;
	m4 /= (double)n;

	/* Band powers of the Hann-windowed window. */
	for (size_t i = 0; i < n; i++)
		re[i] = centred[i] * fp_hann(i, n);
	dft(re, NULL, n, -1, fr, fi, cos_t, sin_t);
	for (int b = 0; b < FP_POWER_BANDS; b++) {
		int lo, hi;
		double s = 0;

		fp_feature_band(b, n, rate, &lo, &hi);
		for (int k = lo; k < hi; k++)
			s += fp_power(fr[k], fi[k], (size_t)k, n);
		out[b] = fp_power_feature(s / (hi - lo));
	}
	/* Analytic signal of the high band of the tapered window. */
	for (size_t i = 0; i < n; i++)
		re[i] = centred[i] * fp_tukey(i, n);
	dft(re, NULL, n, -1, fr, fi, cos_t, sin_t);
	for (size_t k = 0; k < n; k++) {
		double gk = fp_analytic_gain(k, n, hp);

		re[k] = gk * fr[k];
		im[k] = gk * fi[k];
	}
	dft(re, im, n, +1, ar, fi, cos_t, sin_t);
	for (size_t i = 0; i < n; i++) {
		ar[i] /= (double)n;
		fi[i] /= (double)n;
		env[i] = ar[i] * ar[i] + fi[i] * fi[i];
		env_mean += env[i];
	}
	env_mean /= (double)n;
	for (size_t i = edge; i < n - edge; i++)
		hm += ar[i];
	hm /= (double)cnt;
	for (size_t i = edge; i < n - edge; i++) {
		double d = ar[i] - hm;

		hm2 += d * d;
		hm4 += d * d * d * d;
	}
	hm2 /= (double)cnt;
	hm4 /= (double)cnt;
	/* Envelope spectrum. */
	for (size_t i = 0; i < n; i++)
		re[i] = (env[i] - env_mean) * fp_hann(i, n);
	dft(re, NULL, n, -1, fr, fi, cos_t, sin_t);
	for (int b = 0; b < FP_ENV_BANDS; b++) {
		int lo, hi;
		double s = 0;

		fp_feature_band(FP_POWER_BANDS + b, n, rate, &lo, &hi);
		for (int k = lo; k < hi; k++)
			s += fp_power(fr[k], fi[k], (size_t)k, n);
		out[FP_POWER_BANDS + b] = fp_envelope_feature(s / (hi - lo), env_mean);
	}
	fp_time_features(ms, peak, m2, m4, hm2, hm4, out + FP_POWER_BANDS + FP_ENV_BANDS);
	g_free(cos_t);
	g_free(sin_t);
	g_free(re);
	g_free(im);
	g_free(fr);
	g_free(fi);
	g_free(env);
	g_free(ar);
	g_free(centred);
}

/* The formulas agree with fusion_sigfeat_compute (FFTW in float) on
 * bearing-like windows: impacts, sines, noise and a DC offset, at two
 * rates. Bound: 1e-4 on every feature (logs of powers; FFTW's float
 * rounding against a double DFT; measured worst 8e-6), except power bands
 * under 1e-9 g^2 per bin, where float rounding noise is the power: 0.05. */
static void test_prep_math_features(void)
{
	static const struct { size_t n; double rate; } cases[] = { { 2048, 12000 }, { 1024, 25600 } };

	for (size_t c = 0; c < G_N_ELEMENTS(cases); c++) {
		size_t n = cases[c].n;
		fusion_sigfeat *f = fusion_sigfeat_new(n, cases[c].rate);
		float *x = g_new(float, n), a[FP_SIGFEAT_DIM], b[FP_SIGFEAT_DIM];
		float worst = 0;

		g_assert_cmpuint(fusion_sigfeat_dim(f), ==, FP_SIGFEAT_DIM);
		for (int kind = 0; kind < 3; kind++) {
			fill_noise(x, n, 0.05, 31 + kind);
			prep_add_signal(x, n, cases[c].rate, kind);
			g_assert_cmpint(fusion_sigfeat_compute(f, x, a), ==, 0);
			features_by_formula(x, n, cases[c].rate, b);
			for (int i = 0; i < FP_SIGFEAT_DIM; i++) {
				float d = fabsf(a[i] - b[i]);
				float bound = i < FP_POWER_BANDS && a[i] < -9 ? 0.05f : 1e-4f;

				if (d > bound)
					g_error("n %zu kind %d feature %d: C %g, formulas %g", n, kind, i,
						a[i], b[i]);
				if (bound < 0.01f)
					worst = MAX(worst, d);
			}
		}
		g_test_message("n %zu at %g Hz: worst |C - formulas| %g", n, cases[c].rate, worst);
		g_free(x);
		fusion_sigfeat_free(f);
	}
}

/* A tile of grain (seeded noise on a shading) of w x h pixels. */
static uint8_t *grain_tile(int w, int h)
{
	uint8_t *g = g_malloc((gsize)w * (gsize)h);
	GRand *r = g_rand_new_with_seed(21);

	for (int y = 0; y < h; y++)
		for (int x = 0; x < w; x++)
			g[(size_t)y * (size_t)w + (size_t)x] =
				(uint8_t)(110 + 30 * x / w + g_rand_int_range(r, -12, 13));
	g_rand_free(r);
	return g;
}

/* The dark-residual score: a crack a pixel wide, which the model's
 * 160 x 112 input averages away, raises it well above the same tile's
 * without; the tile's shading does not (the median follows it); a frame
 * too small for the settings is refused. */
static void test_dark_score(void)
{
	const struct fusion_dark_spec spec = { 320, 21, 3, 4 };
	int w = 640, h = 448;
	uint8_t *g = grain_tile(w, h);
	float plain, cracked, shaded;

	g_assert_cmpint(fusion_dark_score(&spec, g, w, h, w, &plain), ==, 0);
	for (int x = 200; x < 320; x++)
		for (int t = 0; t < 2; t++)
			g[(size_t)(200 + x / 6 + t) * (size_t)w + (size_t)x] = 40;
	g_assert_cmpint(fusion_dark_score(&spec, g, w, h, w, &cracked), ==, 0);
	g_assert_cmpfloat(cracked, >, plain + 0.5f);
	g_free(g);

	g = grain_tile(w, h);
	for (int y = 0; y < h; y++)  /* a second, vertical shading */
		for (int x = 0; x < w; x++)
			g[(size_t)y * (size_t)w + (size_t)x] =
				(uint8_t)(g[(size_t)y * (size_t)w + (size_t)x] - 40 * y / h);
	g_assert_cmpint(fusion_dark_score(&spec, g, w, h, w, &shaded), ==, 0);
	g_assert_cmpfloat(fabsf(shaded - plain), <, 0.3f);

	g_assert_cmpint(fusion_dark_score(&(struct fusion_dark_spec){ 8, 21, 3, 4 }, g, w, h, w,
					  &plain), ==, -EINVAL);
	g_assert_cmpint(fusion_dark_score(&(struct fusion_dark_spec){ 320, 20, 3, 4 }, g, w, h, w,
					  &plain), ==, -EINVAL);
	g_assert_cmpint(fusion_dark_score(&spec, g, w, h, w - 1, &plain), ==, -EINVAL);
	g_free(g);
}

int main(int argc, char **argv)
{
	g_test_init(&argc, &argv, NULL);
	g_test_add_func("/fusion/power-spectrum/sine", test_power_spectrum_sine);
	g_test_add_func("/fusion/condition/closed-form", test_condition_closed_form);
	g_test_add_func("/fusion/features/finite-deterministic", test_features);
	g_test_add_func("/fusion/features/invalid", test_invalid_input);
	g_test_add_func("/fusion/image/constant", test_image_constant);
	g_test_add_func("/fusion/image/block-mean", test_image_block_mean);
	g_test_add_func("/fusion/image/invalid", test_image_invalid);
	g_test_add_func("/fusion/image/resize-modes", test_image_resize_modes);
	g_test_add_func("/fusion/image/stretch-unchanged", test_image_stretch_unchanged);
	g_test_add_func("/fusion/image/letterbox", test_image_letterbox);
	g_test_add_func("/fusion/image/letterbox-turn", test_image_letterbox_turn);
	g_test_add_func("/fusion/image/letterbox-invalid", test_image_letterbox_invalid);
	g_test_add_func("/fusion/image/map-to-frame", test_map_to_frame);
	g_test_add_func("/fusion/prep-math/image", test_prep_math_image);
	g_test_add_func("/fusion/image/dark-score", test_dark_score);
	g_test_add_func("/fusion/prep-math/features", test_prep_math_features);
	return g_test_run();
}
