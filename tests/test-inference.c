/* inference/: the shipped model package loads and runs through OpenCV DNN;
 * a damaged package is refused with a reason, whatever the damage. */
#include <errno.h>
#include <glib.h>
#include <glib/gstdio.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "inference/inference.h"

static char *shipped_package(void)
{
	const char *root = g_getenv("VIGIL_SOURCE_ROOT");

	g_assert_nonnull(root);
	return g_build_filename(root, "models", "synthetic-v1", NULL);
}

/* Copies the package into a fresh temporary directory. */
static char *copy_package(const char *src)
{
	char *dir = g_dir_make_tmp("vigil-model-XXXXXX", NULL);
	GDir *d = g_dir_open(src, 0, NULL);
	const char *name;

	g_assert_nonnull(d);
	while ((name = g_dir_read_name(d))) {
		char *from = g_build_filename(src, name, NULL), *to = g_build_filename(dir, name, NULL);
		char *data = NULL;
		gsize len = 0;

		g_assert_true(g_file_get_contents(from, &data, &len, NULL));
		g_assert_true(g_file_set_contents(to, data, (gssize)len, NULL));
		g_free(data);
		g_free(from);
		g_free(to);
	}
	g_dir_close(d);
	return dir;
}

static void remove_package(char *dir)
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

/* Replaces the first occurrence of from with to in dir/file. */
static void edit_file(const char *dir, const char *file, const char *from, const char *to)
{
	char *path = g_build_filename(dir, file, NULL), *text = NULL, *at;
	GString *s;

	g_assert_true(g_file_get_contents(path, &text, NULL, NULL));
	at = strstr(text, from);
	g_assert_nonnull(at);
	s = g_string_new_len(text, at - text);
	g_string_append(s, to);
	g_string_append(s, at + strlen(from));
	g_assert_true(g_file_set_contents(path, s->str, (gssize)s->len, NULL));
	g_string_free(s, TRUE);
	g_free(text);
	g_free(path);
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

/* models/real-v4 has a defect map: one value in 0..1 per 4x4 input pixels,
 * refreshed on every run (a dark spot changes it), and fixed for an input. */
static void test_package_with_defect_map(void)
{
	char *dir = g_build_filename(g_getenv("VIGIL_SOURCE_ROOT"), "models", "real-v4", NULL);
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
	dir = copy_package(src);
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
	remove_package(dir);

	/* A manifest that misstates a module's output, consistently with the
	 * decision input: only the trial run at load time can catch it. */
	dir = copy_package(src);
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
		edit_file(dir, "manifest.ini", from, to);
		g_snprintf(from, sizeof from, "input_dim=%d", din);
		g_snprintf(to, sizeof to, "input_dim=%d", din + 1);
		edit_file(dir, "manifest.ini", strstr(from, "input_dim"), to);
	}
	expect_refused(dir, INFER_ESHAPE, "vision module gives");
	remove_package(dir);

	/* A defect map the vision module does not have: the trial run finds out. */
	dir = copy_package(src);
	edit_file(dir, "manifest.ini", "output_dim=",
		  "heatmap_output=defect_map\nheatmap_width=24\nheatmap_height=24\noutput_dim=");
	expect_refused(dir, INFER_EMODULE, "no output 'defect_map'");
	remove_package(dir);

	/* A defect map without its size. */
	dir = copy_package(src);
	edit_file(dir, "manifest.ini", "output_dim=", "heatmap_output=defect_map\noutput_dim=");
	expect_refused(dir, INFER_EMANIFEST, "heatmap_width");
	remove_package(dir);

	/* A required key missing: the message names the manifest and the key. */
	dir = copy_package(src);
	edit_file(dir, "manifest.ini", "features=", "feature_set=");
	expect_refused(dir, INFER_EMANIFEST, "manifest.ini:");
	remove_package(dir);

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

int main(int argc, char **argv)
{
	g_test_init(&argc, &argv, NULL);
	g_test_add_func("/inference/shipped-package-runs", test_shipped_package_runs);
	g_test_add_func("/inference/package-with-defect-map", test_package_with_defect_map);
	g_test_add_func("/inference/verdict-bands", test_verdict_bands);
	g_test_add_func("/inference/corrupt-packages-are-refused", test_corrupt_packages_are_refused);
	return g_test_run();
}
