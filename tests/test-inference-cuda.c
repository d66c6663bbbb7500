/* inference/: the cuda backend against OpenCV DNN on every shipped model
 * package. Needs an NVIDIA GPU; without one it checks that loading is
 * refused with a clear reason and exits 77 (skipped), saying so. */
#include <glib.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "inference/infer-private.h"
#include "inference/inference.h"
#include "inference/onnx-graph.h"
#include "tests/infertest.h"

/* float32 on cuDNN (no TF32) vs OpenCV DNN, per output: as the reference
 * backend's bound (tests/test-inference-engine.c). */
#define FP32_BOUND 1e-3f

static const char *const packages[] = { "synthetic-v1", "real-v1", "real-v2", "real-v5", NULL };
static const char *const modules[] = { "vision.onnx", "signal.onnx", "decision.onnx", NULL };

static void test_fp32_modules_match_opencv(void)
{
	float worst = 0;

	for (int p = 0; packages[p]; p++) {
		char *err = NULL;

		for (int i = 0; modules[i]; i++) {
			char *path = infertest_package_path(packages[p], modules[i]);
			void *cv = infer_backend_opencv.load(path, &err);
			void *gpu = infer_backend_cuda.load(path, &err);
			onnx_graph *g = onnx_graph_load(path, &err);
			int shape[ONNX_MAX_DIMS], ndim;
			size_t n, cap = 1 << 16;
			float *x, *ycv = g_new(float, cap), *ygpu = g_new(float, cap);

			if (!cv || !gpu || !g)
				g_error("%s", err);
			for (int batch = 1; batch <= 8; batch *= 8) {
				ndim = infertest_module_shape(g, batch, shape);
				n = infertest_shape_count(shape, ndim);
				x = g_new(float, n);
				for (guint32 seed = 1; seed <= 4; seed++)
					/* by name: a module with a defect map has two */
					for (int o = 0; o < g->n_outputs; o++) {
						const char *name = g->tensors[g->outputs[o]].name;
						size_t lcv = 0, lgpu = 0, one = 0, per = n / (size_t)batch;

						infertest_fill_input(x, n, seed, seed == 1 ? 0.0f : (float)seed);
						g_assert_cmpint(infer_backend_run1(&infer_backend_cuda, gpu, x, shape, ndim,
									   name, ygpu, cap, &lgpu, &err), ==, 0);
						/* OpenCV one part at a time: the batch must not mix parts. */
						shape[0] = 1;
						for (int b = 0; b < batch; b++) {
							if (infer_backend_run1(&infer_backend_opencv, cv, x + b * per, shape,
								       ndim, name, ycv + lcv, cap - lcv, &one,
								       &err) < 0)
								g_error("%s", err);
							lcv += one;
						}
						shape[0] = batch;
						g_assert_cmpuint(lcv, ==, lgpu);
						for (size_t k = 0; k < lcv; k++) {
							float d = fabsf(ycv[k] - ygpu[k]);

							if (d > worst || isnan(d))
								worst = d;
							if (!(d <= FP32_BOUND))
								g_error("%s/%s batch %d seed %u output %s[%zu]: cuda "
									"%g, OpenCV %g", packages[p], modules[i],
									batch, seed, name, k, ygpu[k], ycv[k]);
						}
					}
				g_free(x);
			}
			g_free(ycv);
			g_free(ygpu);
			infer_backend_opencv.free(cv);
			infer_backend_cuda.free(gpu);
			onnx_graph_free(g);
			g_free(path);
		}
	}
	g_test_message("cuda fp32: worst |cuda - opencv| %g (bound %g)", worst, FP32_BOUND);
}

/* fp16 or bf16 against OpenCV's float32, within the bounds that the
 * reference executor's rounding of the same parts keeps to on the CPU
 * (tests/test-inference-engine.c); then against that rounding itself,
 * which differs from the GPU's only in the order of the float sums.
 * Verdicts are compared away from the thresholds: the real packages'
 * noise parts sit by theirs, synthetic-v1's spread out. */
static void check_half(enum infer_precision prec, float margin)
{
	int agree = 0;

	for (int p = 0; packages[p]; p++) {
		agree += infertest_check_precision(packages[p], "opencv", INFER_FP32, "cuda", prec,
						   margin, 64).agree;
		agree += infertest_check_precision(packages[p], "reference", prec, "cuda", prec,
						   margin, 16).agree;
	}
	g_assert_cmpint(agree, >, 40);
}

static void test_fp16_verdicts(void)
{
	check_half(INFER_FP16, INFERTEST_FP16_MARGIN);
}

static void test_bf16_verdicts(void)
{
	check_half(INFER_BF16, INFERTEST_BF16_MARGIN);
}

/* int8 on the GPU against int8 on the reference executor, with the
 * packages' shipped calibrations: the integer sums are the same, so only
 * float rounding in the layers between (cuDNN pooling) can move an input
 * across a quantization step. int8 against float32 is checked on the CPU
 * (test-inference-engine.c, and on val parts docs/inference-engine.md). */
static void test_int8_matches_reference(void)
{
	static const char *const calibrated[] = { "synthetic-v1", "real-v3", NULL };
	int agree = 0;

	for (int p = 0; calibrated[p]; p++)
		agree += infertest_check_precision(calibrated[p], "reference", INFER_INT8, "cuda",
						   INFER_INT8, 0.01f, 64).agree;
	/* real-v3's noise parts mostly sit at p = 1, by its 0.99 threshold */
	g_assert_cmpint(agree, >, 32);
}

/* Batches of changing size through infer_model_run_batch and
 * infer_model_run_raw (preprocessing and features on the GPU) give each
 * part what it gets alone: the padded max-batch graph (a batch of 3 runs
 * in the graph of 8, a batch of 1 after it too) never lets parts mix.
 * Scores within 1e-4, identical verdicts. */
static void test_batches_of_changing_size(void)
{
	static const int sizes[] = { 3, 8, 1, 5, 2 };
	char *dir = infertest_package_path("real-v2", NULL), *err = NULL;
	infer_model *m = infer_model_load(dir, "cuda", &err, NULL);
	const struct infer_info *info;
	size_t npix;
	float *img, *sig, *win;
	uint8_t *px;
	struct infer_output batch[8], one;
	struct infer_frame frames[8];
	const float *windows[8];

	if (!m)
		g_error("%s", err);
	g_assert_true(infer_model_prepares_on_device(m));
	info = infer_model_info(m);
	npix = (size_t)info->input_width * info->input_height;
	img = g_new(float, npix * 8);
	sig = g_new(float, (size_t)info->signal_dim * 8);
	win = g_new(float, (size_t)info->window * 8);
	px = g_new(uint8_t, (size_t)320 * 240 * 8);
	for (int i = 0; i < 8; i++) {
		infertest_fill_input(img + npix * i, npix, 40 + i, 1.0f);
		infertest_fill_input(sig + (size_t)info->signal_dim * i, (size_t)info->signal_dim, 60 + i, 2.0f);
		infertest_fill_input(win + (size_t)info->window * i, (size_t)info->window, 80 + i, 0.1f * (i + 1));
		for (int k = 0; k < 320 * 240; k++)
			px[320 * 240 * i + k] = (uint8_t)(100 + 50 * sin(k * 0.01 * (i + 1)));
		frames[i] = (struct infer_frame){ px + 320 * 240 * i, 320, 240, 320 };
		windows[i] = win + (size_t)info->window * i;
	}
	for (size_t k = 0; k < G_N_ELEMENTS(sizes); k++) {
		int n = sizes[k];

		g_assert_cmpint(infer_model_run_batch(m, n, img, sig, batch, &err), ==, 0);
		for (int i = 0; i < n; i++) {
			g_assert_cmpint(infer_model_run(m, img + npix * i,
							sig + (size_t)info->signal_dim * i, &one, &err), ==, 0);
			g_assert_cmpfloat(fabsf(batch[i].score - one.score), <, 1e-4f);
			g_assert_cmpint(batch[i].verdict, ==, one.verdict);
		}
		g_assert_cmpint(infer_model_run_raw(m, n, frames, windows, batch, &err), ==, 0);
		for (int i = 0; i < n; i++) {
			g_assert_cmpint(infer_model_run_raw(m, 1, frames + i, windows + i, &one, &err), ==, 0);
			g_assert_cmpfloat(fabsf(batch[i].score - one.score), <, 1e-4f);
			g_assert_cmpint(batch[i].verdict, ==, one.verdict);
		}
	}
	/* Parts of two cameras: each pair shares its window, whose features
	 * are computed once on the device and copied to the second slot. */
	for (int i = 0; i < 8; i++)
		windows[i] = win + (size_t)info->window * (i / 2);
	g_assert_cmpint(infer_model_run_raw(m, 8, frames, windows, batch, &err), ==, 0);
	for (int i = 0; i < 8; i++) {
		g_assert_cmpint(infer_model_run_raw(m, 1, frames + i, windows + i, &one, &err), ==, 0);
		g_assert_cmpfloat(fabsf(batch[i].score - one.score), <, 1e-4f);
		g_assert_cmpint(batch[i].verdict, ==, one.verdict);
	}
	g_free(img);
	g_free(sig);
	g_free(win);
	g_free(px);
	infer_model_free(m);
	g_free(dir);
}

int main(int argc, char **argv)
{
	char *path = infertest_package_path("synthetic-v1", "decision.onnx"), *err = NULL;
	void *probe;

	g_test_init(&argc, &argv, NULL);
	probe = infer_backend_cuda.load(path, &err);
	g_free(path);
	if (!probe) {
		/* What a user sees without a GPU must say why. */
		g_assert_nonnull(strstr(err, "no CUDA device"));
		printf("1..0 # SKIP %s\n", err);
		fprintf(stderr, "skipped: %s\n", err);
		g_free(err);
		return 77;
	}
	infer_backend_cuda.free(probe);
#ifdef VIGIL_CUDA_EMULATED
	/* Built on tests/cuda-emu (a mock: NVIDIA's libraries need a GPU):
	 * the backend's code and kernels run on the CPU, cuDNN and cuBLAS are
	 * plain loops there, so this checks our use of them, not theirs. */
	g_test_message("CUDA emulated on the CPU (tests/cuda-emu)");
#endif
	g_test_add_func("/inference/cuda/fp32-matches-opencv", test_fp32_modules_match_opencv);
	g_test_add_func("/inference/cuda/fp16-verdicts", test_fp16_verdicts);
	g_test_add_func("/inference/cuda/bf16-verdicts", test_bf16_verdicts);
	g_test_add_func("/inference/cuda/int8-matches-reference", test_int8_matches_reference);
	g_test_add_func("/inference/cuda/batches-of-changing-size", test_batches_of_changing_size);
	return g_test_run();
}
