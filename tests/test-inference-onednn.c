/* inference/: the onednn backend (infer-onednn.c) against the reference
 * executor on the shipped model packages, in each precision it runs:
 * float32 module by module and output by output (the vision module's
 * defect map too) at batch 1 and 8, batches of changing size, bf16 and
 * int8 against the reference's bf16 rounding and int8 arithmetic, and
 * the refusals (an operator it lacks, bf16 on a CPU without
 * AVX512_BF16). */
#include <glib.h>
#include <glib/gstdio.h>
#include <math.h>
#include <oneapi/dnnl/dnnl.h>
#include <stdint.h>
#include <string.h>

#include "inference/infer-engine.h"
#include "inference/infer-private.h"
#include "inference/inference.h"
#include "inference/onnx-graph.h"
#include "inference/onnx.pb-c.h"
#include "tests/infertest.h"

/* float32 in another order of sums (blocked layouts, Winograd-free
 * direct / brgemm kernels): |onednn - reference| <= FP32_REL * max(1,
 * max |reference| over that output). */
#define FP32_REL 1e-4f
/* int8: float rounding before a quantization (the bias added before the
 * output scale, pooling's sums) can put an input on the other side of a
 * step, and that moves the layers after it; measured 0.016 of an output's
 * range at worst on the shipped calibrations. */
#define INT8_REL 0.05f

static const char *const packages[] = { "synthetic-v1", "synthetic-v2", "real-v2", "real-v5", NULL };
static const char *const modules[] = { "vision.onnx", "signal.onnx", "decision.onnx", NULL };

/* Worst |a - b| relative to max(1, max |b|). */
static float rel_diff(const float *a, const float *b, size_t n)
{
	float d = 0, range = 1;

	for (size_t k = 0; k < n; k++)
		range = fmaxf(range, fabsf(b[k]));
	for (size_t k = 0; k < n; k++) {
		float e = fabsf(a[k] - b[k]);

		if (!(e <= d))
			d = isnan(e) ? INFINITY : e;
	}
	return d / range;
}

/* Every output of every module of pkg, onednn at prec vs reference at
 * ref_prec (quant: int8 calibration), batches 1 and 8; worst rel_diff. */
static float compare_modules(const char *pkg, enum infer_precision prec, float bound)
{
	static const char *const groups[] = { "vision", "signal", "decision" };
	struct infer_quant *quant[3] = { NULL };
	char *calib = infertest_package_path(pkg, "calibration-int8.ini"), *err = NULL;
	float worst = 0;

	if (prec == INFER_INT8 && infer_quant_load(calib, groups, 3, quant, &err) < 0)
		g_error("%s", err);
	for (int i = 0; modules[i]; i++) {
		char *path = infertest_package_path(pkg, modules[i]);
		void *dn = infer_backend_onednn.load_at(path, prec, quant[i], &err);
		void *ref = infer_backend_reference.load_at(path, prec, quant[i], &err);
		onnx_graph *g = onnx_graph_load(path, &err);
		size_t cap = 1 << 18;
		float *yd = g_new(float, cap), *yr = g_new(float, cap);

		if (!dn || !ref || !g)
			g_error("%s", err);
		for (int batch = 1; batch <= 8; batch *= 8) {
			int shape[ONNX_MAX_DIMS], ndim = infertest_module_shape(g, batch, shape);
			size_t n = infertest_shape_count(shape, ndim);
			float *x = g_new(float, n);

			/* zeros and two scales alone, one scale in the batch of 8 */
			for (guint32 seed = batch == 1 ? 1 : 3; seed <= 3; seed++) {
				infertest_fill_input(x, n, seed, seed == 1 ? 0.0f : (float)seed);
				for (int o = 0; o < g->n_outputs; o++) {
					const char *name = g->tensors[g->outputs[o]].name;
					size_t ld = 0, lr = 0;
					float d;

					if (infer_backend_run1(&infer_backend_onednn, dn, x, shape, ndim,
							       name, yd, cap, &ld, &err) < 0 ||
					    infer_backend_run1(&infer_backend_reference, ref, x, shape, ndim,
							       name, yr, cap, &lr, &err) < 0)
						g_error("%s/%s: %s", pkg, modules[i], err);
					g_assert_cmpuint(ld, ==, lr);
					d = rel_diff(yd, yr, ld);
					worst = fmaxf(worst, d);
					if (!(d <= bound))
						g_error("%s/%s %s batch %d seed %u output %s: |onednn - "
							"reference| %g of its range (bound %g)", pkg,
							modules[i], infer_precision_names[prec], batch, seed,
							name, d, bound);
				}
			}
			g_free(x);
		}
		g_free(yd);
		g_free(yr);
		infer_backend_onednn.free(dn);
		infer_backend_reference.free(ref);
		onnx_graph_free(g);
		g_free(path);
	}
	for (int i = 0; i < 3; i++)
		infer_quant_free(quant[i]);
	g_free(calib);
	return worst;
}

static void test_fp32_matches_reference(void)
{
	float worst = 0;

	for (int p = 0; packages[p]; p++) {
		worst = fmaxf(worst, compare_modules(packages[p], INFER_FP32, FP32_REL));
		/* whole packages: the reference's scores and verdicts */
		infertest_check_precision(packages[p], "reference", INFER_FP32, "onednn", INFER_FP32,
					  1e-4f, 8);
	}
	g_test_message("onednn fp32: worst |onednn - reference| %g of the output's range (bound %g)",
		       worst, FP32_REL);
}

/* Batches of changing size (primitives kept per shape, PLAN_CACHE of
 * them, so sizes beyond it are made again) give each part what it gets
 * alone, and whole packages the reference's verdicts. */
static void test_batches_of_changing_size(void)
{
	static const int sizes[] = { 3, 8, 1, 5, 2, 7, 3 };
	char *dir = infertest_package_path("real-v5", NULL), *err = NULL;
	infer_model *m = infer_model_load(dir, "onednn", &err, NULL);
	const struct infer_info *info;
	size_t npix;
	float *img, *sig;
	struct infer_output batch[8], one;

	if (!m)
		g_error("%s", err);
	info = infer_model_info(m);
	npix = (size_t)info->input_width * info->input_height;
	img = g_new(float, npix * 8);
	sig = g_new(float, (size_t)info->signal_dim * 8);
	for (int i = 0; i < 8; i++) {
		infertest_fill_input(img + npix * i, npix, 40 + i, 1.0f);
		infertest_fill_input(sig + (size_t)info->signal_dim * i, (size_t)info->signal_dim, 60 + i,
				     2.0f);
	}
	for (size_t k = 0; k < G_N_ELEMENTS(sizes); k++) {
		int n = sizes[k];

		g_assert_cmpint(infer_model_run_batch(m, n, img, sig, batch, &err), ==, 0);
		for (int i = 0; i < n; i++) {
			g_assert_cmpint(infer_model_run(m, img + npix * i,
							sig + (size_t)info->signal_dim * i, &one, &err), ==, 0);
			g_assert_cmpfloat(fabsf(batch[i].score - one.score), <, 1e-5f);
			g_assert_cmpint(batch[i].verdict, ==, one.verdict);
		}
	}
	g_free(img);
	g_free(sig);
	infer_model_free(m);
	g_free(dir);
}

/* bf16: oneDNN rounds each stored activation once (after the float32
 * sums, bias and Relu), the reference rounds what the cuda backend stores
 * (also before the bias): the same type, a different rounding count.
 * Against the reference's bf16 and against float32, within the bound the
 * reference's bf16 keeps to (INFERTEST_BF16_MARGIN). */
static void test_bf16_verdicts(void)
{
	int agree = 0;

	if (!infer_backend_has_precision(&infer_backend_onednn, INFER_BF16) ||
	    (dnnl_get_effective_cpu_isa() & dnnl_cpu_isa_avx512_core_bf16) !=
	    dnnl_cpu_isa_avx512_core_bf16) {
		g_test_skip("no AVX512_BF16 on this CPU (bf16-refused checks the refusal)");
		return;
	}
	for (int p = 0; packages[p]; p++) {
		agree += infertest_check_precision(packages[p], "reference", INFER_BF16, "onednn",
						   INFER_BF16, INFERTEST_BF16_MARGIN, 16).agree;
		agree += infertest_check_precision(packages[p], "reference", INFER_FP32, "onednn",
						   INFER_BF16, INFERTEST_BF16_MARGIN, 16).agree;
	}
	/* the real packages' noise parts sit by their thresholds */
	g_assert_cmpint(agree, >=, 48);
}

/* A CPU without AVX512_BF16 (ONEDNN_MAX_CPU_ISA=AVX512_CORE in the
 * onednn-no-bf16 test): bf16 refused, saying why; fp32 still loads. */
static void test_bf16_refused(void)
{
	char *path = infertest_package_path("real-v5", "vision.onnx"), *err = NULL;
	void *m;

	if ((dnnl_get_effective_cpu_isa() & dnnl_cpu_isa_avx512_core_bf16) ==
	    dnnl_cpu_isa_avx512_core_bf16) {
		g_test_skip("this CPU has AVX512_BF16 (the onednn-no-bf16 test hides it)");
		g_free(path);
		return;
	}
	g_assert_null(infer_backend_onednn.load_at(path, INFER_BF16, NULL, &err));
	g_test_message("refused: %s", err);
	g_assert_nonnull(strstr(err, "AVX512_BF16"));
	g_free(err);
	m = infer_backend_onednn.load(path, &err);
	g_assert_nonnull(m);
	infer_backend_onednn.free(m);
	g_free(path);
}

/* int8 with the packages' shipped calibrations against the reference
 * executor's int8: the same quantization (clip, round to nearest even),
 * the same int32 sums; only float rounding around them (the bias added
 * before the output scale, pooling in another order) can move an input
 * across a quantization step. */
static void test_int8_matches_reference(void)
{
	static const char *const calibrated[] = { "synthetic-v1", "real-v3", "real-v5", NULL };
	float worst = 0;
	int agree = 0;

	for (int p = 0; calibrated[p]; p++) {
		worst = fmaxf(worst, compare_modules(calibrated[p], INFER_INT8, INT8_REL));
		agree += infertest_check_precision(calibrated[p], "reference", INFER_INT8, "onednn",
						   INFER_INT8, 0.01f, 16).agree;
	}
	g_test_message("onednn int8: worst |onednn - reference| %g of the output's range", worst);
	/* synthetic-v1's; the real packages' noise parts sit by their thresholds */
	g_assert_cmpint(agree, >=, 16);
}

/* A package with an operator the engine lacks is refused at load naming
 * the node and the operator. */
static void test_unsupported_refused(void)
{
	char *path = infertest_package_path("real-v5", "vision.onnx"), *data = NULL, *err = NULL;
	char *dir = g_dir_make_tmp("vigil-onednn-XXXXXX", NULL);
	char *edited = g_build_filename(dir, "vision.onnx", NULL);
	gsize len = 0;
	Onnx__ModelProto *mp;
	Onnx__NodeProto *node;
	char *saved;
	guint8 *buf;

	g_assert_true(g_file_get_contents(path, &data, &len, NULL));
	mp = onnx__model_proto__unpack(NULL, len, (const uint8_t *)data);
	g_assert_nonnull(mp);
	node = mp->graph->node[2];
	saved = node->op_type;
	node->op_type = (char *)"Softmax";
	buf = g_malloc(len + 4096);
	len = onnx__model_proto__pack(mp, buf);
	g_assert_true(g_file_set_contents(edited, (const char *)buf, (gssize)len, NULL));
	g_assert_null(infer_backend_onednn.load(edited, &err));
	g_test_message("refused: %s", err);
	g_assert_nonnull(strstr(err, node->name));
	g_assert_nonnull(strstr(err, "'Softmax'"));
	g_free(err);
	node->op_type = saved; /* protobuf-c frees what it unpacked */
	onnx__model_proto__free_unpacked(mp, NULL);
	g_unlink(edited);
	g_rmdir(dir);
	g_free(edited);
	g_free(dir);
	g_free(buf);
	g_free(data);
	g_free(path);
}

/* VIGIL_ONEDNN_PROFILE=N: every N runs, each step's primitive and mean
 * time, with the node it runs, to stderr (in a subprocess, which reads
 * the variable at load). */
static void test_profile(void)
{
	if (g_test_subprocess()) {
		char *path = infertest_package_path("real-v5", "vision.onnx"), *err = NULL;
		int shape[4] = { 1, 1, 112, 160 };
		float *in = g_new0(float, 112 * 160);
		float *out = g_new(float, 112 * 160);  /* enough for any output */
		size_t len = 0;
		void *m;

		g_setenv("VIGIL_ONEDNN_PROFILE", "2", TRUE);
		m = infer_backend_onednn.load(path, &err);
		g_assert_nonnull(m);
		for (int i = 0; i < 2; i++)
			g_assert_cmpint(infer_backend_run1(&infer_backend_onednn, m, in, shape, 4, NULL,
							   out, 112 * 160, &len, &err), ==, 0);
		infer_backend_onednn.free(m);
		g_free(out);
		g_free(in);
		g_free(path);
		return;
	}
	g_test_trap_subprocess(NULL, 0, G_TEST_SUBPROCESS_DEFAULT);
	g_test_trap_assert_passed();
	g_test_trap_assert_stderr("*onednn profile: *vision.onnx, input 1x1x112x160, 2 runs, * us a "
				  "run\n*convolution * us  m1/body/body.0/Conv\n*");
}

int main(int argc, char **argv)
{
	g_test_init(&argc, &argv, NULL);
	g_test_add_func("/inference/onednn/fp32-matches-reference", test_fp32_matches_reference);
	g_test_add_func("/inference/onednn/batches-of-changing-size", test_batches_of_changing_size);
	g_test_add_func("/inference/onednn/unsupported-refused", test_unsupported_refused);
	g_test_add_func("/inference/onednn/bf16-verdicts", test_bf16_verdicts);
	g_test_add_func("/inference/onednn/bf16-refused", test_bf16_refused);
	g_test_add_func("/inference/onednn/int8-matches-reference", test_int8_matches_reference);
	g_test_add_func("/inference/onednn/profile", test_profile);
	return g_test_run();
}
