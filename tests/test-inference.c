/* inference/: the shipped model package loads and runs through OpenCV DNN;
 * a damaged package is refused with a reason, whatever the damage. */
#include <errno.h>
#include <glib.h>
#include <glib/gstdio.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fusion/fusion.h"
#include "inference/inference.h"
#include "tests/infertest.h"
#include "tools/manifest.h"
#include "tools/sim-synth.h"

static char *shipped_package(void)
{
	return infertest_package_path("synthetic-v1", NULL);
}

static void test_shipped_package_runs(void)
{
	char *dir = shipped_package(), *err = NULL;
	int code = 1;
	infer_model *m = infer_model_load(dir, "opencv", &err, &code);
	const struct infer_info *info;
	float *img, *sig;
	struct infer_output out;

	if (!m)
		g_error("%s", err);
	g_assert_cmpint(code, ==, 0);
	info = infer_model_info(m);
	g_assert_cmpstr(info->features, ==, "vigil-sigfeat-v1");
	g_assert_cmpint(info->window, >, 0);
	g_assert_cmpfloat(info->marginal, <=, info->reject);

	img = g_new0(float, (gsize)info->input_width * info->input_height);
	sig = g_new0(float, info->signal_dim);
	g_assert_cmpint(infer_model_run(m, img, sig, &out, &err), ==, 0);
	g_assert_true(out.score >= 0 && out.score <= 1);
	g_assert_true(out.vision_score >= 0 && out.vision_score <= 1);
	g_assert_true(out.signal_score >= 0 && out.signal_score <= 1);
	g_assert_cmpint(out.verdict, ==, infer_verdict(info, out.score));
	/* synthetic-v1 predates the defect map: no heatmap, not a stale one. */
	g_assert_cmpint(info->heatmap_width, ==, 0);
	g_assert_null(out.heatmap);
	g_assert_cmpint(out.heatmap_w, ==, 0);
	g_assert_cmpint(out.heatmap_h, ==, 0);
	/* Same input, same answer. */
	{
		struct infer_output again;

		g_assert_cmpint(infer_model_run(m, img, sig, &again, &err), ==, 0);
		g_assert_cmpfloat(again.score, ==, out.score);
	}
	g_free(img);
	g_free(sig);
	infer_model_free(m);
	g_free(dir);
}

/* models/real-v5 (the shipped real package, a seed ensemble) has a defect
 * map: one value in 0..1 per 4x4 input pixels,
 * refreshed on every run (a dark spot changes it), and fixed for an input. */
static void test_package_with_defect_map(void)
{
	char *dir = g_build_filename(g_getenv("VIGIL_SOURCE_ROOT"), "models", "real-v5", NULL);
	char *err = NULL;
	infer_model *m = infer_model_load(dir, "opencv", &err, NULL);
	const struct infer_info *info;
	float *img, *sig, *first;
	struct infer_output out;
	size_t cells, changed = 0;

	if (!m)
		g_error("%s", err);
	info = infer_model_info(m);
	g_assert_cmpint(info->heatmap_width, ==, info->input_width / 4);
	g_assert_cmpint(info->heatmap_height, ==, info->input_height / 4);
	cells = (size_t)info->heatmap_width * info->heatmap_height;
	img = g_new0(float, (gsize)info->input_width * info->input_height);
	sig = g_new0(float, info->signal_dim);
	g_assert_cmpint(infer_model_run(m, img, sig, &out, &err), ==, 0);
	g_assert_nonnull(out.heatmap);
	g_assert_cmpint(out.heatmap_w, ==, info->heatmap_width);
	g_assert_cmpint(out.heatmap_h, ==, info->heatmap_height);
	for (size_t i = 0; i < cells; i++)
		g_assert_true(out.heatmap[i] >= 0 && out.heatmap[i] <= 1);
	first = g_memdup2(out.heatmap, cells * sizeof(float));

	/* A dark 12x12 spot in the middle of the plain surface. */
	for (int y = -6; y < 6; y++)
		for (int x = -6; x < 6; x++)
			img[(info->input_height / 2 + y) * info->input_width +
			    info->input_width / 2 + x] = -2.0f;
	g_assert_cmpint(infer_model_run(m, img, sig, &out, &err), ==, 0);
	for (size_t i = 0; i < cells; i++)
		changed += out.heatmap[i] != first[i];
	g_assert_cmpuint(changed, >, 0);
	g_free(first);
	g_free(img);
	g_free(sig);
	infer_model_free(m);
	g_free(dir);
}

static void test_verdict_bands(void)
{
	struct infer_info info = { .reject = 0.6f, .marginal = 0.3f };

	g_assert_cmpint(infer_verdict(&info, 0.1f), ==, VIGIL_VERDICT_ACCEPT);
	g_assert_cmpint(infer_verdict(&info, 0.3f), ==, VIGIL_VERDICT_MARGINAL);
	g_assert_cmpint(infer_verdict(&info, 0.59f), ==, VIGIL_VERDICT_MARGINAL);
	g_assert_cmpint(infer_verdict(&info, 0.6f), ==, VIGIL_VERDICT_REJECT);
	info.marginal = 0.6f; /* no band */
	g_assert_cmpint(infer_verdict(&info, 0.59f), ==, VIGIL_VERDICT_ACCEPT);
}

/* Synthetic parts (tools/sim-synth.c: surfaces with and without
 * scratches, pits, cracks and stains; bearings with and without faults) as
 * vigild prepares them for the package: inputs of count parts, one after
 * another, in img and sig. */
static void synthetic_parts(const struct infer_info *info, int count, float *img, float *sig)
{
	char *dir = g_dir_make_tmp("vigil-batch-XXXXXX", NULL), *csv, *err = NULL;
	struct sim_gen_opts o = { .out_dir = dir, .parts = (unsigned)count, .seed = 11,
				  .split = "test", .p_surface = 0.3, .p_vibration = 0.3 };
	struct manifest_inputs in = { .width = info->input_width, .height = info->input_height,
				  .mean = info->mean, .std = info->std, .resize = info->image->resize,
				  .window = (size_t)info->window };
	GArray *rows;

	g_assert_cmpint(sim_generate(&o, &err), ==, 0);
	csv = g_build_filename(dir, "parts.csv", NULL);
	rows = manifest_load(csv, NULL, &err);
	g_assert_nonnull(rows);
	g_assert_cmpuint(rows->len, ==, (guint)count);
	in.sigfeat = fusion_sigfeat_new(in.window, info->rate_hz);
	in.wavs = manifest_wav_cache_new(info->rate_hz);
	for (int i = 0; i < count; i++)
		if (manifest_row_prepare(dir, &g_array_index(rows, struct manifest_row, i), &in,
				     img + (size_t)i * in.width * in.height,
				     sig + (size_t)i * info->signal_dim, &err) < 0)
			g_error("%s", err);
	manifest_wav_cache_free(in.wavs);
	fusion_sigfeat_free(in.sigfeat);
	manifest_free(rows);
	g_free(csv);
	{
		char *cmd = g_strdup_printf("rm -rf '%s'", dir);

		g_assert_cmpint(system(cmd), ==, 0);
		g_free(cmd);
	}
	g_free(dir);
}

/* A batch of parts through infer_model_run_batch gives each part what
 * infer_model_run gives it alone: scores within 1e-4 (float rounding of
 * another summation order), identical verdicts, flags, classes and defect
 * maps within 1e-4, on synthetic parts in batches of several sizes. */
static void check_batch(const char *package, const char *backend, const int *sizes, int nsizes)
{
	char *dir = g_build_filename(g_getenv("VIGIL_SOURCE_ROOT"), "models", package, NULL);
	char *err = NULL;
	infer_model *m = infer_model_load(dir, backend, &err, NULL);
	const struct infer_info *info;
	int most = 0, pool = 0, next = 0;

	if (!m)
		g_error("%s", err);
	info = infer_model_info(m);
	for (int k = 0; k < nsizes; k++) {
		most = MAX(most, sizes[k]);
		pool += sizes[k];
	}
	{
		size_t npix = (size_t)info->input_width * info->input_height;
		size_t cells = (size_t)info->heatmap_width * info->heatmap_height;
		float *pimg = g_new(float, npix * pool), *psig = g_new(float, (size_t)info->signal_dim * pool);
		float lo = 1, hi = 0;
		struct infer_output *batch = g_new0(struct infer_output, most);
		float **maps = g_new0(float *, most);

		synthetic_parts(info, pool, pimg, psig);

		for (int k = 0; k < nsizes; k++) {
			int n = sizes[k];
			float *img = pimg + npix * next, *sig = psig + (size_t)info->signal_dim * next;

			next += n;
			g_assert_cmpint(infer_model_run_batch(m, n, img, sig, batch, &err), ==, 0);
			/* The defect maps live in the model until its next run. */
			for (int i = 0; i < n; i++) {
				g_free(maps[i]);
				maps[i] = batch[i].heatmap ? g_memdup2(batch[i].heatmap,
								       cells * sizeof(float)) : NULL;
				g_assert_true((maps[i] != NULL) == (cells > 0));
			}
			for (int i = 0; i < n; i++) {
				struct infer_output one;

				g_assert_cmpint(infer_model_run(m, img + npix * i,
								sig + (size_t)info->signal_dim * i,
								&one, &err), ==, 0);
				g_assert_cmpfloat_with_epsilon(batch[i].score, one.score, 1e-4);
				g_assert_cmpfloat_with_epsilon(batch[i].vision_score, one.vision_score, 1e-4);
				g_assert_cmpfloat_with_epsilon(batch[i].signal_score, one.signal_score, 1e-4);
				g_assert_cmpint(batch[i].verdict, ==, one.verdict);
				g_assert_cmpint(batch[i].defect_class, ==, one.defect_class);
				g_assert_cmpuint(batch[i].flags, ==, one.flags);
				for (size_t c = 0; c < cells; c++)
					g_assert_cmpfloat_with_epsilon(maps[i][c], one.heatmap[c], 1e-4);
				lo = MIN(lo, one.score);
				hi = MAX(hi, one.score);
			}
		}
		/* Each part got its own answer, not its neighbour's: the parts'
		 * scores spread out (real-v3, trained on real parts, finds every
		 * synthetic one at least marginal). */
		g_test_message("%s %s: %d parts in batches, scores %.4f..%.4f", package, backend,
			       pool, lo, hi);
		g_assert_cmpfloat(hi - lo, >, 0.2);
		for (int i = 0; i < most; i++)
			g_free(maps[i]);
		g_free(maps);
		g_free(batch);
		g_free(pimg);
		g_free(psig);
	}
	infer_model_free(m);
	g_free(dir);
}

static void test_batch_equals_single_opencv(void)
{
	static const int sizes[] = { 1, 2, 5, 16, 3 };

	check_batch("synthetic-v1", "opencv", sizes, G_N_ELEMENTS(sizes));
	check_batch("real-v3", "opencv", sizes, G_N_ELEMENTS(sizes));
}

static void test_batch_equals_single_reference(void)
{
	static const int sizes[] = { 3, 8, 1 };

	check_batch("synthetic-v1", "reference", sizes, G_N_ELEMENTS(sizes));
	check_batch("real-v3", "reference", sizes, G_N_ELEMENTS(sizes));
}

/* infer_model_run_raw from frames and windows gives what fusion/'s
 * preprocessing and features through infer_model_run_batch give (on the
 * CPU backends it is that path), with two cameras sharing a part's window,
 * frames of several sizes and strides; a non-finite window fails. */
static void test_run_raw(void)
{
	char *dir = g_build_filename(g_getenv("VIGIL_SOURCE_ROOT"), "models", "real-v3", NULL);
	char *err = NULL;
	infer_model *m = infer_model_load(dir, "opencv", &err, NULL);
	const struct infer_info *info;
	enum { N = 4 };
	static const int sizes[N][3] = { { 320, 240, 330 }, { 192, 192, 192 }, { 640, 480, 640 },
					 { 100, 80, 101 } };
	struct infer_frame frames[N];
	const float *windows[N];
	float *win[2], *img, *feat;
	struct infer_output raw[N], ref[N];
	fusion_sigfeat *sf;
	size_t npix;

	if (!m)
		g_error("%s", err);
	info = infer_model_info(m);
	npix = (size_t)info->input_width * info->input_height;
	sf = fusion_sigfeat_new((size_t)info->window, info->rate_hz);
	img = g_new(float, npix * N);
	feat = g_new(float, (size_t)info->signal_dim * N);
	for (int k = 0; k < 2; k++) {
		win[k] = g_new(float, info->window);
		for (int i = 0; i < info->window; i++)
			win[k][i] = (float)(0.05 * sin(i * 0.37 * (k + 1)) +
					    (i % (150 + 100 * k) < 3 ? 0.8 : 0));
	}
	for (int i = 0; i < N; i++) {
		uint8_t *px = g_new(uint8_t, (gsize)sizes[i][2] * sizes[i][1]);

		for (int y = 0; y < sizes[i][1]; y++)
			for (int x = 0; x < sizes[i][2]; x++)
				px[y * sizes[i][2] + x] = (uint8_t)(120 + 40 * sin(x * 0.1 + i) *
								    cos(y * 0.07) -
								    ((x - 50) * (x - 50) + (y - 40) * (y - 40) <
								     80 * i ? 60 : 0));
		frames[i] = (struct infer_frame){ px, sizes[i][0], sizes[i][1], sizes[i][2] };
		windows[i] = win[i / 2];  /* parts of two cameras */
		g_assert_cmpint(fusion_image_input(info->image, px, sizes[i][0], sizes[i][1],
						   sizes[i][2], img + npix * i), ==, 0);
		g_assert_cmpint(fusion_sigfeat_compute(sf, windows[i],
						       feat + (size_t)info->signal_dim * i), ==, 0);
	}
	g_assert_cmpint(infer_model_prepares_on_device(m), ==, 0);
	g_assert_cmpint(infer_model_run_raw(m, N, frames, windows, raw, &err), ==, 0);
	g_assert_cmpint(infer_model_run_batch(m, N, img, feat, ref, &err), ==, 0);
	for (int i = 0; i < N; i++) {
		g_assert_cmpfloat(raw[i].score, ==, ref[i].score);
		g_assert_cmpfloat(raw[i].vision_score, ==, ref[i].vision_score);
		g_assert_cmpfloat(raw[i].signal_score, ==, ref[i].signal_score);
		g_assert_cmpint(raw[i].verdict, ==, ref[i].verdict);
	}
	g_assert_cmpfloat(raw[0].signal_score, !=, raw[2].signal_score);
	win[1][7] = NAN;
	g_assert_cmpint(infer_model_run_raw(m, N, frames, windows, raw, &err), ==, -EINVAL);
	g_assert_nonnull(strstr(err, "not finite"));
	g_free(err);
	for (int i = 0; i < N; i++)
		g_free((void *)frames[i].data);
	g_free(win[0]);
	g_free(win[1]);
	g_free(img);
	g_free(feat);
	fusion_sigfeat_free(sf);
	infer_model_free(m);
	g_free(dir);
}

static void expect_refused(const char *dir, int want_code, const char *want_text)
{
	char *err = NULL;
	int code = 0;
	infer_model *m = infer_model_load(dir, "opencv", &err, &code);

	g_assert_null(m);
	g_assert_cmpint(code, ==, want_code);
	g_assert_nonnull(err);
	g_test_message("refused: %s", err);
	if (!strstr(err, want_text))
		g_error("message '%s' lacks '%s'", err, want_text);
	g_free(err);
}

static void test_corrupt_packages_are_refused(void)
{
	char *src = shipped_package();
	char *dir, *path, *data = NULL, *sha;
	gsize len = 0;

	/* One flipped byte in a module: the checksum catches it. */
	dir = infertest_copy_package(src);
	path = g_build_filename(dir, "vision.onnx", NULL);
	g_assert_true(g_file_get_contents(path, &data, &len, NULL));
	data[len / 2] ^= 0x5a;
	g_assert_true(g_file_set_contents(path, data, (gssize)len, NULL));
	expect_refused(dir, INFER_ECHECKSUM, "SHA-256");

	/* Truncated, with a manifest that was updated to match: OpenCV refuses. */
	g_assert_true(g_file_set_contents(path, data, (gssize)(len / 3), NULL));
	sha = g_compute_checksum_for_data(G_CHECKSUM_SHA256, (const guchar *)data, len / 3);
	{
		char *man = g_build_filename(dir, "manifest.ini", NULL), *text = NULL;
		char **lines;
		GString *out = g_string_new(NULL);
		gboolean in_vision = FALSE;

		g_assert_true(g_file_get_contents(man, &text, NULL, NULL));
		lines = g_strsplit(text, "\n", -1);
		for (int i = 0; lines[i]; i++) {
			if (lines[i][0] == '[')
				in_vision = strcmp(lines[i], "[vision]") == 0;
			if (in_vision && g_str_has_prefix(lines[i], "sha256"))
				g_string_append_printf(out, "sha256=%s", sha);
			else
				g_string_append(out, lines[i]);
			if (lines[i + 1])
				g_string_append_c(out, '\n');
		}
		g_assert_true(g_file_set_contents(man, out->str, -1, NULL));
		g_string_free(out, TRUE);
		g_strfreev(lines);
		g_free(text);
		g_free(man);
	}
	expect_refused(dir, INFER_EMODULE, "vision.onnx");
	g_free(sha);
	g_free(data);
	g_free(path);
	infertest_remove_package(dir);

	/* A manifest that misstates a module's output, consistently with the
	 * decision input: only the trial run at load time can catch it. */
	dir = infertest_copy_package(src);
	{
		char *man = g_build_filename(dir, "manifest.ini", NULL), *text = NULL;
		char from[64], to[64];
		int vout, din;

		g_assert_true(g_file_get_contents(man, &text, NULL, NULL));
		vout = atoi(strstr(strstr(text, "[vision]"), "output_dim=") + strlen("output_dim="));
		din = atoi(strstr(strstr(text, "[decision]"), "input_dim=") + strlen("input_dim="));
		g_free(text);
		g_free(man);
		g_snprintf(from, sizeof from, "output_dim=%d", vout);
		g_snprintf(to, sizeof to, "output_dim=%d", vout + 1);
		infertest_edit_file(dir, "manifest.ini", from, to);
		g_snprintf(from, sizeof from, "input_dim=%d", din);
		g_snprintf(to, sizeof to, "input_dim=%d", din + 1);
		infertest_edit_file(dir, "manifest.ini", strstr(from, "input_dim"), to);
	}
	expect_refused(dir, INFER_ESHAPE, "vision module gives");
	infertest_remove_package(dir);

	/* A defect map the vision module does not have: the trial run finds out. */
	dir = infertest_copy_package(src);
	infertest_edit_file(dir, "manifest.ini", "output_dim=",
		  "heatmap_output=defect_map\nheatmap_width=24\nheatmap_height=24\noutput_dim=");
	expect_refused(dir, INFER_EMODULE, "no output 'defect_map'");
	infertest_remove_package(dir);

	/* A defect map without its size. */
	dir = infertest_copy_package(src);
	infertest_edit_file(dir, "manifest.ini", "output_dim=", "heatmap_output=defect_map\noutput_dim=");
	expect_refused(dir, INFER_EMANIFEST, "heatmap_width");
	infertest_remove_package(dir);

	/* A required key missing: the message names the manifest and the key. */
	dir = infertest_copy_package(src);
	infertest_edit_file(dir, "manifest.ini", "features=", "feature_set=");
	expect_refused(dir, INFER_EMANIFEST, "manifest.ini:");
	infertest_remove_package(dir);

	/* No package there at all. */
	expect_refused("/nonexistent/package", INFER_EMANIFEST, "/nonexistent/package");

	/* A backend this build does not have. */
	{
		char *err = NULL;
		int code = 0;

		g_assert_null(infer_model_load(src, "tensorrt", &err, &code));
		g_assert_cmpint(code, ==, INFER_EBACKEND);
		g_assert_nonnull(strstr(err, "tensorrt"));
		g_free(err);
	}
	g_free(src);
}

/* [model] as vigild reads it: the documented defaults, and errors named
 * by file, line and key. */
static void test_model_settings(void)
{
	static const char text[] = "[model]\npackage = models/demo\n";
	static const char bad[] = "[model]\npackage = models/demo\nmax_batch = 65\n";
	struct infer_settings s;
	char *err = NULL;
	config *c = config_load_data(text, "line.conf", &err);

	g_assert_nonnull(c);
	g_assert_cmpint(infer_options_read(c, &s, &err), ==, 0);
	g_assert_cmpstr(s.package, ==, "models/demo");
	g_assert_cmpstr(s.backend, ==, INFER_BACKEND_AUTO);
	g_assert_cmpint(s.threads, ==, infer_default_threads());
	g_assert_cmpint(s.precision, ==, INFER_FP32);
	g_assert_cmpint(s.max_batch, ==, INFER_DEFAULT_MAX_BATCH);
	g_assert_cmpint(s.max_batch, ==, 1);
	infer_settings_clear(&s);
	config_free(c);

	c = config_load_data(bad, "line.conf", &err);
	g_assert_nonnull(c);
	g_assert_cmpint(infer_options_read(c, &s, &err), ==, -EINVAL);
	g_assert_cmpstr(err, ==, "line.conf:3: [model] max_batch: 65 is out of range 1..64");
	g_free(err);
	infer_settings_clear(&s);
	infer_settings_clear(NULL);
	config_free(c);
}

/* The gate of [model] on the packages' own held-out figures: every package
 * in models/ passes the defaults; a broken one, one whose figure misses a
 * limit the configuration sets, and one without figures where a limit is
 * set are refused, naming the figure, its value and the limit's place. */
static infer_model *load_gated(const char *dir, const char *conf, int want, const char *want_text,
			       char **warning)
{
	struct infer_settings s;
	char *err = NULL;
	config *c = config_load_data(conf, "line.conf", &err);
	infer_model *m = infer_model_load(dir, "opencv", &err, NULL);
	int rc;

	g_assert_nonnull(c);
	if (!m)
		g_error("%s", err);
	g_assert_cmpint(infer_options_read(c, &s, &err), ==, 0);
	rc = infer_gate_check(&s.gate, infer_model_info(m), &err, warning);
	g_test_message("%s: %s", dir, rc ? err : *warning ? *warning : "passes");
	g_assert_cmpint(rc, ==, want);
	if (want_text && (!err || !strstr(err, want_text)))
		g_error("message '%s' lacks '%s'", err ? err : "(none)", want_text);
	g_free(err);
	infer_settings_clear(&s);
	config_free(c);
	return m;
}

static void test_gate(void)
{
	static const char defaults[] = "[model]\npackage = x\n";
	char *models = g_build_filename(g_getenv("VIGIL_SOURCE_ROOT"), "models", NULL);
	GDir *d = g_dir_open(models, 0, NULL);
	const char *name;
	char *src = g_build_filename(models, "synthetic-v2", NULL);
	char *dir, *warning = NULL, *err = NULL;
	int n = 0;
	struct infer_settings s;
	config *c;

	g_assert_nonnull(d);
	while ((name = g_dir_read_name(d))) {
		dir = g_build_filename(models, name, NULL);
		infer_model_free(load_gated(dir, defaults, 0, NULL, &warning));
		g_assert_null(warning);
		g_free(dir);
		n++;
	}
	g_dir_close(d);
	g_assert_cmpint(n, >=, 7);

	/* real-v1 misses 37.86 % of defects: refused by a stricter line. */
	dir = g_build_filename(models, "real-v1", NULL);
	infer_model_free(load_gated(dir, "[model]\npackage = x\n\nmax_heldout_escape_rate = 0.2\n",
				    INFER_EGATE, "its held-out escape rate is 0.3786 ([metrics] "
				    "heldout_escape_rate), above 0.2, the maximum set at "
				    "line.conf:4: [model] max_heldout_escape_rate", &warning));
	infer_model_free(load_gated(dir, "[model]\nmin_heldout_parts = 500\npackage = x\n",
				    INFER_EGATE, "its held-out parts are 241 ([metrics] "
				    "heldout_parts), fewer than 500, the minimum set at line.conf:2",
				    &warning));
	infer_model_free(load_gated(dir, "[model]\nmin_heldout_accuracy = 0.9\npackage = x\n",
				    INFER_EGATE, "accuracy is 0.8174", &warning));
	g_free(dir);

	/* The two-epoch package of issue 23: every good part rejected. */
	dir = infertest_copy_package(src);
	infertest_edit_file(dir, "manifest.ini", "heldout_false_reject_rate=0.0036",
			    "heldout_false_reject_rate=1.0000");
	infer_model_free(load_gated(dir, defaults, INFER_EGATE,
				    "its held-out false reject rate is 1.0000 ([metrics] "
				    "heldout_false_reject_rate), above 0.2, the default maximum of "
				    "[model] max_heldout_false_reject_rate (not set)", &warning));
	/* A figure out of 0..1 is a broken manifest. */
	infertest_edit_file(dir, "manifest.ini", "heldout_false_reject_rate=1.0000",
			    "heldout_false_reject_rate=1.5");
	expect_refused(dir, INFER_EMANIFEST, "heldout_false_reject_rate");
	infertest_remove_package(dir);

	/* No figures (trained without a held-out set): passes the defaults
	 * with a warning, refused where a limit is set. */
	dir = infertest_copy_package(src);
	infertest_edit_file(dir, "manifest.ini", "heldout_parts=1000", "heldout_parts=0");
	infer_model_free(load_gated(dir, defaults, 0, NULL, &warning));
	g_assert_nonnull(warning);
	g_assert_nonnull(strstr(warning, "no held-out figures"));
	g_free(warning);
	infer_model_free(load_gated(dir, "[model]\npackage = x\nmax_heldout_false_reject_rate = 1\n",
				    INFER_EGATE, "it has no held-out false reject rate ([metrics] "
				    "heldout_false_reject_rate in its manifest), which line.conf:3: "
				    "[model] max_heldout_false_reject_rate demands", &warning));
	infertest_remove_package(dir);
	g_free(src);
	g_free(models);

	/* Limits out of range are configuration errors naming the key. */
	c = config_load_data("[model]\npackage = x\nmax_heldout_escape_rate = 2\n", "line.conf",
			     &err);
	g_assert_cmpint(infer_options_read(c, &s, &err), ==, -EINVAL);
	g_assert_cmpstr(err, ==, "line.conf:3: [model] max_heldout_escape_rate: 2 is out of "
			"range 0..1");
	g_free(err);
	infer_settings_clear(&s);
	config_free(c);
	c = config_load_data("[model]\npackage = x\nmin_heldout_parts = 1.5\n", "line.conf", &err);
	g_assert_cmpint(infer_options_read(c, &s, &err), ==, -EINVAL);
	g_assert_cmpstr(err, ==, "line.conf:3: [model] min_heldout_parts: '1.5' is not a whole "
			"number");
	g_free(err);
	infer_settings_clear(&s);
	config_free(c);
}

int main(int argc, char **argv)
{
	g_test_init(&argc, &argv, NULL);
	g_test_add_func("/inference/shipped-package-runs", test_shipped_package_runs);
	g_test_add_func("/inference/package-with-defect-map", test_package_with_defect_map);
	g_test_add_func("/inference/verdict-bands", test_verdict_bands);
	g_test_add_func("/inference/batch-equals-single-opencv", test_batch_equals_single_opencv);
	g_test_add_func("/inference/batch-equals-single-reference",
			test_batch_equals_single_reference);
	g_test_add_func("/inference/run-raw", test_run_raw);
	g_test_add_func("/inference/corrupt-packages-are-refused", test_corrupt_packages_are_refused);
	g_test_add_func("/inference/model-settings", test_model_settings);
	g_test_add_func("/inference/gate", test_gate);
	return g_test_run();
}
