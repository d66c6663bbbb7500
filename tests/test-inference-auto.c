/* inference/: [model] backend = auto (infer_model_open) and [model]
 * threads. Whichever CPU backend auto keeps on this machine, at this
 * moment, the test must pass: it asserts what auto says (the backend it
 * chose, the others' timings when it had a choice), that the parts it
 * judges get the chosen backend's scores and the reference's verdicts,
 * what it does with bf16 on a CPU without AVX512_BF16 (refuses, naming
 * why; the inference-auto-no-bf16 test hides the instructions), and how
 * [model] is read. Never how fast anything is. */
#include <glib.h>
#include <glib/gstdio.h>
#include <math.h>
#include <string.h>
#include <unistd.h>
#ifdef VIGIL_HAVE_ONEDNN
#include <omp.h>
#include <oneapi/dnnl/dnnl.h>
#endif

#include "core/config.h"
#include "inference/inference.h"
#include "tests/infertest.h"

/* Same backend, same threads, same input: the same arithmetic. */
#define SAME_BACKEND_TOL 1e-6f
/* Another engine's float32 against the reference executor's. */
#define FP32_MARGIN 1e-3f

static int has_bf16(void)
{
#ifdef VIGIL_HAVE_ONEDNN
	return (dnnl_get_effective_cpu_isa() & dnnl_cpu_isa_avx512_core_bf16) ==
	       dnnl_cpu_isa_avx512_core_bf16;
#else
	return 0;
#endif
}

static void test_chooses_and_says_why(void)
{
	char *dir = infertest_package_path("synthetic-v2", NULL), *err = NULL;
	char *cands = infer_auto_candidates(INFER_FP32);
	char **names = g_strsplit(cands, ", ", -1);
	infer_model *m = infer_model_open(dir, INFER_BACKEND_AUTO, INFER_FP32, 1, &err, NULL);
	const char *be, *why;

	g_assert_nonnull(m);
	be = infer_model_backend(m);
	why = infer_model_choice(m);
	g_test_message("candidates %s; chose %s (%s)", cands, be, why);
	g_assert_true(g_strv_contains((const char *const *)names, be));
	g_assert_true(g_str_has_prefix(why, "auto: "));
	g_assert_nonnull(strstr(why, " ms a part"));
	g_assert_null(strstr(cands, "cuda"));
	/* Every candidate that was not chosen is named with its time (the
	 * early stop still times it once), but the reference executor, the
	 * slow yardstick, which is not even loaded once another loads. */
	g_assert_cmpstr(be, !=, "reference");
	g_assert_nonnull(strstr(why, "reference not timed"));
	for (int i = 0; names[i]; i++) {
		char *timed = g_strdup_printf(", %s ", names[i]);

		if (strcmp(names[i], be) != 0 && strcmp(names[i], "reference") != 0)
			g_assert_nonnull(strstr(why, timed));
		g_free(timed);
	}
#ifdef VIGIL_HAVE_ONEDNN
	g_assert_nonnull(strstr(cands, "onednn"));
	g_assert_nonnull(strstr(cands, "opencv"));
	g_assert_nonnull(strstr(why, strcmp(be, "onednn") == 0 ? ", opencv " : ", onednn "));
#endif
	infer_model_free(m);
	g_strfreev(names);
	g_free(cands);
	g_free(dir);
}

/* The parts auto judges get the scores of the backend it names, loaded
 * by name; and, whichever that is, the reference executor's verdicts. */
static void test_verdicts_of_chosen_backend(void)
{
	char *dir = infertest_package_path("synthetic-v2", NULL), *err = NULL;
	infer_model *a = infer_model_open(dir, INFER_BACKEND_AUTO, INFER_FP32, 1, &err, NULL);
	infer_model *b;
	const struct infer_info *info;
	size_t npix;
	float *img, *sig;

	g_assert_nonnull(a);
	b = infer_model_open(dir, infer_model_backend(a), INFER_FP32, 1, &err, NULL);
	g_assert_nonnull(b);
	g_assert_cmpstr(infer_model_choice(b), ==, "set in [model] backend");
	info = infer_model_info(a);
	npix = (size_t)info->input_width * info->input_height;
	img = g_new(float, npix);
	sig = g_new(float, info->signal_dim);
	for (guint32 part = 0; part < 16; part++) {
		struct infer_output x, y;

		infertest_fill_input(img, npix, 1000 + part, 0.5f + (float)(part % 8) * 0.4f);
		infertest_fill_input(sig, (size_t)info->signal_dim, 2000 + part,
				     0.5f + (float)(part % 5));
		g_assert_cmpint(infer_model_run(a, img, sig, &x, &err), ==, 0);
		g_assert_cmpint(infer_model_run(b, img, sig, &y, &err), ==, 0);
		g_assert_cmpfloat_with_epsilon(x.score, y.score, SAME_BACKEND_TOL);
		g_assert_cmpfloat_with_epsilon(x.vision_score, y.vision_score, SAME_BACKEND_TOL);
		g_assert_cmpfloat_with_epsilon(x.signal_score, y.signal_score, SAME_BACKEND_TOL);
		g_assert_cmpint(x.verdict, ==, y.verdict);
	}
	g_free(img);
	g_free(sig);
	infer_model_free(a);
	infer_model_free(b);
	g_free(dir);
	/* a fresh auto load, which may choose otherwise on a busy machine */
	g_assert_cmpint(infertest_check_precision("synthetic-v2", "reference", INFER_FP32,
						  INFER_BACKEND_AUTO, INFER_FP32, FP32_MARGIN,
						  16).agree, >=, 8);
}

/* bf16 runs on onednn alone among the CPU backends: on a CPU with
 * AVX512_BF16 auto takes it; without, the package is refused, saying
 * why (never a silent fall back to another precision). */
static void test_bf16(void)
{
	char *dir = infertest_package_path("synthetic-v2", NULL), *err = NULL, *cands;
	infer_model *m;
	int code = 0;

	cands = infer_auto_candidates(INFER_BF16);
#ifdef VIGIL_HAVE_ONEDNN
	g_assert_cmpstr(cands, ==, "onednn");
#else
	g_assert_cmpstr(cands, ==, "");
#endif
	g_free(cands);
	m = infer_model_open(dir, INFER_BACKEND_AUTO, INFER_BF16, 1, &err, &code);
	if (has_bf16()) {
		g_assert_nonnull(m);
		g_assert_cmpstr(infer_model_backend(m), ==, "onednn");
		g_test_message("bf16: %s", infer_model_choice(m));
		g_assert_true(g_str_has_prefix(infer_model_choice(m), "auto: the only CPU backend"));
		infer_model_free(m);
	} else {
		g_assert_null(m);
		g_test_message("refused: %s", err);
		g_assert_cmpint(code, ==, INFER_EMODULE);
		g_assert_nonnull(strstr(err, "backend auto: no CPU backend runs bf16 here"));
#ifdef VIGIL_HAVE_ONEDNN
		g_assert_nonnull(strstr(err, "onednn refused it"));
		g_assert_nonnull(strstr(err, "AVX512_BF16"));
#endif
		g_free(err);
	}
	g_free(dir);
}

/* threads reaches the library on the thread that runs the model. */
static void test_threads_applied(void)
{
#ifdef VIGIL_HAVE_ONEDNN
	char *dir = infertest_package_path("synthetic-v2", NULL), *err = NULL;
	int before = omp_get_max_threads();
	infer_model *m = infer_model_open(dir, "onednn", INFER_FP32, 1, &err, NULL);
	struct infer_output out;
	float *img, *sig;
	const struct infer_info *info;

	g_assert_nonnull(m);
	info = infer_model_info(m);
	img = g_new0(float, (gsize)info->input_width * info->input_height);
	sig = g_new0(float, info->signal_dim);
	omp_set_num_threads(before + 1); /* a value the run must change */
	g_assert_cmpint(infer_model_run(m, img, sig, &out, &err), ==, 0);
	g_assert_cmpint(omp_get_max_threads(), ==, 1);
	infer_model_free(m);
	g_free(img);
	g_free(sig);
	g_free(dir);
#else
	g_test_skip("built without onednn");
#endif
}

/* [model] as written in a file: 0 and the error (NULL when it reads). */
static char *read_model(const char *body, struct infer_settings *s, char **path)
{
	GError *gerr = NULL;
	char *err = NULL;
	int fd = g_file_open_tmp("vigil-auto-XXXXXX.conf", path, &gerr);
	config *cfg;

	g_assert_no_error(gerr);
	close(fd);
	g_assert_true(g_file_set_contents(*path, body, -1, NULL));
	cfg = config_load_file(*path, &err);
	g_assert_nonnull(cfg);
	if (infer_options_read(cfg, s, &err) == 0)
		g_assert_null(err);
	config_free(cfg);
	return err;
}

static void test_config(void)
{
	struct infer_settings s;
	char *path = NULL, *err, *want;

	err = read_model("[model]\npackage = /x\n", &s, &path);
	g_assert_null(err);
	g_assert_cmpstr(s.backend, ==, INFER_BACKEND_AUTO);
	g_assert_cmpint(s.threads, ==, infer_default_threads());
	g_assert_cmpint(s.threads, >=, 1);
	g_assert_cmpint(s.threads, ==, MAX(1, (int)g_get_num_processors() - 1));
	infer_settings_clear(&s);
	g_unlink(path);
	g_free(path);

	err = read_model("[model]\npackage = /x\nthreads = 0\nbackend = opencv\n", &s, &path);
	g_assert_null(err);
	g_assert_cmpint(s.threads, ==, 0);
	g_assert_cmpstr(s.backend, ==, "opencv");
	infer_settings_clear(&s);
	g_unlink(path);
	g_free(path);

	for (int i = 0; i < 2; i++) {
		err = read_model(i ? "[model]\npackage = /x\n\nthreads = two\n"
				   : "[model]\npackage = /x\n\nthreads = -1\n", &s, &path);
		want = g_strdup_printf("%s:4: [model] threads", path);
		g_test_message("%s", err);
		g_assert_nonnull(err);
		g_assert_true(g_str_has_prefix(err, want));
		g_free(want);
		g_free(err);
		infer_settings_clear(&s);
		g_unlink(path);
		g_free(path);
	}

	/* no CPU backend runs fp16: auto cannot, and says so at the key */
	err = read_model("[model]\npackage = /x\nprecision = fp16\n", &s, &path);
	g_test_message("%s", err);
	want = g_strdup_printf("%s:3: [model] precision", path);
	g_assert_nonnull(err);
	g_assert_true(g_str_has_prefix(err, want));
	g_assert_nonnull(strstr(err, "backend auto has no CPU backend that runs fp16"));
	g_free(want);
	g_free(err);
	infer_settings_clear(&s);
	g_unlink(path);
	g_free(path);
}

int main(int argc, char **argv)
{
	g_test_init(&argc, &argv, NULL);
	g_test_add_func("/inference/auto/chooses-and-says-why", test_chooses_and_says_why);
	g_test_add_func("/inference/auto/verdicts-of-chosen-backend",
			test_verdicts_of_chosen_backend);
	g_test_add_func("/inference/auto/bf16", test_bf16);
	g_test_add_func("/inference/auto/threads-applied", test_threads_applied);
	g_test_add_func("/inference/auto/config", test_config);
	return g_test_run();
}
