/* inference/cuda-prep.h on a GPU: the model input and the vibration
 * features computed on the device against the C path (fusion/), which is
 * what every other backend feeds the model.
 *
 * Tolerances:
 * - image: against fusion/prep-math.h's formulas on the CPU (the same
 *   arithmetic, test-fusion checks them against OpenCV) |difference| <=
 *   2e-6 on every pixel (the device may fuse the normalising multiply-add);
 *   against fusion_image_prepare_resize (OpenCV) at most one grey level
 *   (1 / (255 std)), on at most 0.6% of the pixels, test-fusion's bound.
 * - features: against fusion_sigfeat_compute (FFTW) |difference| <= 1e-3
 *   on every feature (cuFFT and FFTW round differently in float), 0.05 on
 *   power bands below 1e-9 g^2 per bin, where that rounding is the power.
 * - batch slots: each slot holds its own part's result.
 * It prints the time per part of both paths. Without a CUDA device it
 * exits 77 (skipped), saying why. */
#include <errno.h>
#include <glib.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "fusion/fusion.h"
#include "fusion/prep-math.h"
#include "inference/cuda-prep.h"
#include "tests/prep-cases.h"

static uint64_t rng = 12345;

static double next_uniform(void)
{
	rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
	return ((double)(rng >> 11) + 0.5) / 9007199254740992.0;
}

static void make_frame(uint8_t *frame, int w, int h, int stride)
{
	for (int y = 0; y < h; y++)
		for (int x = 0; x < stride; x++) {
			double v = 128 + 60 * sin(x * 0.21) * cos(y * 0.13) +
				   40 * (next_uniform() - 0.5) +
				   (x > w / 3 && x < w / 2 && y > h / 4 ? -70 : 0);

			frame[y * stride + x] = (uint8_t)CLAMP(v, 0, 255);
		}
}

static void make_window(float *x, size_t n, double rate, int kind)
{
	for (size_t i = 0; i < n; i++) {
		double u = next_uniform(), v = next_uniform();

		x[i] = (float)(0.05 * sqrt(-2 * log(u)) * cos(2 * G_PI * v));
	}
	prep_add_signal(x, n, rate, kind);
}

static void test_images(void)
{
	const struct prep_case *cases = prep_cases;

	for (size_t c = 0; c < G_N_ELEMENTS(prep_cases); c++) {
		int w = cases[c].w, h = cases[c].h, ow = cases[c].ow, oh = cases[c].oh;
		int stride = w + 5, off = 0;
		size_t npix = (size_t)ow * oh;
		char *err = NULL;
		cuda_prep *p = cuda_prep_new(ow, oh, 0.5f, 0.25f, cases[c].mode, 2048, 12000, 1, &err);
		uint8_t *frame = g_new(uint8_t, (gsize)stride * h), *scratch = g_new(uint8_t, npix);
		float *gpu = g_new(float, npix), *cpu = g_new(float, npix), *formula = g_new(float, npix);
		float level = 1.0f / (255.0f * 0.25f), worst_formula = 0;

		if (!p)
			g_error("%s", err);
		make_frame(frame, w, h, stride);
		g_assert_cmpint(cuda_prep_image(p, 0, frame, w, h, stride, &err), ==, 0);
		g_assert_cmpint(cuda_prep_download(p, 1, gpu, NULL, &err), ==, 0);
		g_assert_cmpint(fusion_image_prepare_resize(frame, w, h, stride, ow, oh, 0.5f, 0.25f,
							    cases[c].mode, cpu), ==, 0);
		fp_prepare_host(frame, w, h, stride, ow, oh, 0.5f, 0.25f,
				cases[c].mode == FUSION_RESIZE_LETTERBOX, scratch, formula);
		for (size_t i = 0; i < npix; i++) {
			float d = fabsf(gpu[i] - cpu[i]);

			worst_formula = MAX(worst_formula, fabsf(gpu[i] - formula[i]));
			g_assert_cmpfloat(d, <=, level * 1.001f);
			off += d > 1e-5f;
		}
		g_test_message("%dx%d -> %dx%d %s: gpu vs formulas %g, gpu vs OpenCV %d of %zu "
			       "pixels one level apart", w, h, ow, oh, fusion_resize_name(cases[c].mode),
			       worst_formula, off, npix);
		g_assert_cmpfloat(worst_formula, <=, 2e-6f);
		g_assert_cmpint(off, <=, 0.006 * npix);
		cuda_prep_free(p);
		g_free(frame);
		g_free(scratch);
		g_free(gpu);
		g_free(cpu);
		g_free(formula);
	}
}

static void test_features(void)
{
	static const struct { size_t n; double rate; } cases[] = {
		{ 2048, 12000 }, { 1024, 25600 }, { 16384, 51200 },
	};

	for (size_t c = 0; c < G_N_ELEMENTS(cases); c++) {
		size_t n = cases[c].n;
		char *err = NULL;
		cuda_prep *p = cuda_prep_new(96, 96, 0.5f, 0.25f, FUSION_RESIZE_STRETCH, n,
					     cases[c].rate, 3, &err);
		fusion_sigfeat *f = fusion_sigfeat_new(n, cases[c].rate);
		float *x = g_new(float, n * 3), cpu[3][FP_SIGFEAT_DIM], gpu[3][FP_SIGFEAT_DIM];
		float worst = 0;

		if (!p)
			g_error("%s", err);
		/* Three windows in three slots: each slot its own window's. */
		for (int kind = 0; kind < 3; kind++) {
			make_window(x + n * kind, n, cases[c].rate, kind);
			g_assert_cmpint(fusion_sigfeat_compute(f, x + n * kind, cpu[kind]), ==, 0);
			g_assert_cmpint(cuda_prep_features(p, kind, x + n * kind, &err), ==, 0);
		}
		g_assert_cmpint(cuda_prep_download(p, 3, NULL, &gpu[0][0], &err), ==, 0);
		for (int kind = 0; kind < 3; kind++)
			for (int i = 0; i < FP_SIGFEAT_DIM; i++) {
				float d = fabsf(gpu[kind][i] - cpu[kind][i]);
				float bound = i < FP_POWER_BANDS && cpu[kind][i] < -9 ? 0.05f : 1e-3f;

				if (!(d <= bound))
					g_error("n %zu window %d feature %d: gpu %g, C %g", n, kind, i,
						gpu[kind][i], cpu[kind][i]);
				if (bound < 0.01f)
					worst = MAX(worst, d);
			}
		g_test_message("n %zu at %g Hz: worst |gpu - C| %g", n, cases[c].rate, worst);
		/* A non-finite sample is refused, as the C path refuses it. */
		x[5] = NAN;
		g_assert_cmpint(cuda_prep_features(p, 0, x, &err), ==, -EINVAL);
		g_clear_pointer(&err, g_free);
		cuda_prep_free(p);
		fusion_sigfeat_free(f);
		g_free(x);
	}
}

#ifndef VIGIL_CUDA_EMULATED
/* Time per part of both paths for a 640 x 480 frame to 160 x 112 and a
 * 2048-sample window at 12 kHz, batch slots 0..15: printed, not asserted. */
static void test_timing(void)
{
	enum { W = 640, H = 480, OW = 160, OH = 112, N = 2048, PARTS = 400, SLOTS = 16 };
	char *err = NULL;
	cuda_prep *p = cuda_prep_new(OW, OH, 0.5f, 0.25f, FUSION_RESIZE_STRETCH, N, 12000, SLOTS,
				     &err);
	fusion_sigfeat *f = fusion_sigfeat_new(N, 12000);
	uint8_t *frame = g_new(uint8_t, W * H);
	float *x = g_new(float, N), *img = g_new(float, OW * OH), feat[FP_SIGFEAT_DIM];
	gint64 t0;
	double gpu_ms, cpu_ms;

	if (!p)
		g_error("%s", err);
	make_frame(frame, W, H, W);
	make_window(x, N, 12000, 0);
	for (int i = 0; i < 20; i++) {  /* warm-up: plans, first launches */
		g_assert_cmpint(cuda_prep_image(p, i % SLOTS, frame, W, H, W, &err), ==, 0);
		g_assert_cmpint(cuda_prep_features(p, i % SLOTS, x, &err), ==, 0);
	}
	t0 = g_get_monotonic_time();
	for (int i = 0; i < PARTS; i++) {
		g_assert_cmpint(cuda_prep_image(p, i % SLOTS, frame, W, H, W, &err), ==, 0);
		g_assert_cmpint(cuda_prep_features(p, i % SLOTS, x, &err), ==, 0);
	}
	g_assert_cmpint(cuda_prep_sync(p, &err), ==, 0);
	gpu_ms = (double)(g_get_monotonic_time() - t0) / 1000.0 / PARTS;
	t0 = g_get_monotonic_time();
	for (int i = 0; i < PARTS; i++) {
		g_assert_cmpint(fusion_image_prepare(frame, W, H, W, OW, OH, 0.5f, 0.25f, img), ==, 0);
		g_assert_cmpint(fusion_sigfeat_compute(f, x, feat), ==, 0);
	}
	cpu_ms = (double)(g_get_monotonic_time() - t0) / 1000.0 / PARTS;
	printf("preprocess per part (640x480 frame to 160x112, 2048-sample window): "
	       "gpu %.3f ms, cpu %.3f ms\n", gpu_ms, cpu_ms);
	g_test_message("preprocess per part: gpu %.3f ms, cpu %.3f ms", gpu_ms, cpu_ms);
	cuda_prep_free(p);
	fusion_sigfeat_free(f);
	g_free(frame);
	g_free(x);
	g_free(img);
}
#endif

int main(int argc, char **argv)
{
	char *err = NULL;
	cuda_prep *probe;

	g_test_init(&argc, &argv, NULL);
	probe = cuda_prep_new(96, 96, 0.5f, 0.25f, FUSION_RESIZE_STRETCH, 2048, 12000, 1, &err);
	if (!probe) {
		g_assert_nonnull(strstr(err, "no CUDA device"));
		printf("1..0 # SKIP %s\n", err);
		fprintf(stderr, "skipped: %s\n", err);
		g_free(err);
		return 77;
	}
	cuda_prep_free(probe);
	g_test_add_func("/inference/cuda-preprocess/images", test_images);
	g_test_add_func("/inference/cuda-preprocess/features", test_features);
#ifdef VIGIL_CUDA_EMULATED
	/* Built on tests/cuda-emu (a mock: NVIDIA's libraries need a GPU):
	 * our code and kernels run on the CPU, cuFFT is FFTW, and a time
	 * would mean nothing. */
	g_test_message("CUDA emulated on the CPU (tests/cuda-emu); no timing");
#else
	g_test_add_func("/inference/cuda-preprocess/timing", test_timing);
#endif
	return g_test_run();
}
