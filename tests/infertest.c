#include "tests/infertest.h"

#include <glib/gstdio.h>
#include <math.h>
#include <string.h>

char *infertest_package_path(const char *pkg, const char *file)
{
	const char *root = g_getenv("VIGIL_SOURCE_ROOT");

	g_assert_nonnull(root);
	return g_build_filename(root, "models", pkg, file, NULL);
}

void infertest_fill_input(float *x, size_t n, guint32 seed, float scale)
{
	GRand *r = g_rand_new_with_seed(seed);

	for (size_t i = 0; i < n; i++)
		x[i] = scale * (float)(sin((double)i * 0.013 * (seed % 7 + 1)) +
				       g_rand_double_range(r, -1, 1));
	g_rand_free(r);
}

int infertest_module_shape(const onnx_graph *g, int batch, int *shape)
{
	g_assert_cmpint(g->input_ndim, >=, 2);
	for (int d = 0; d < g->input_ndim; d++) {
		shape[d] = d == 0 ? batch : g->input_dims[d];
		g_assert_cmpint(shape[d], >, 0);
	}
	return g->input_ndim;
}

size_t infertest_shape_count(const int *shape, int ndim)
{
	size_t n = 1;

	for (int d = 0; d < ndim; d++)
		n *= (size_t)shape[d];
	return n;
}

char *infertest_copy_package(const char *src)
{
	char *dir = g_dir_make_tmp("vigil-pkg-XXXXXX", NULL);
	GDir *d = g_dir_open(src, 0, NULL);
	const char *name;

	g_assert_nonnull(dir);
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

void infertest_remove_package(char *dir)
{
	GDir *d = g_dir_open(dir, 0, NULL);
	const char *name;

	while (d && (name = g_dir_read_name(d))) {
		char *path = g_build_filename(dir, name, NULL);

		g_unlink(path);
		g_free(path);
	}
	if (d)
		g_dir_close(d);
	g_rmdir(dir);
	g_free(dir);
}

void infertest_edit_file(const char *dir, const char *file, const char *from, const char *to)
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

struct infertest_precision infertest_check_precision(const char *pkg, const char *ref_backend,
						     enum infer_precision ref_prec,
						     const char *backend, enum infer_precision prec,
						     float margin, int parts)
{
	struct infertest_precision r = { 0 };
	char *dir = infertest_package_path(pkg, NULL), *err = NULL;
	infer_model *ref = infer_model_load_at(dir, ref_backend, ref_prec, &err, NULL);
	infer_model *cand = ref ? infer_model_load_at(dir, backend, prec, &err, NULL) : NULL;
	const struct infer_info *info;
	float *img, *sig;
	size_t npix;

	if (!ref || !cand)
		g_error("%s: %s", pkg, err);
	info = infer_model_info(ref);
	npix = (size_t)info->input_width * info->input_height;
	img = g_new(float, npix);
	sig = g_new(float, info->signal_dim);
	for (guint32 part = 0; part < (guint32)parts; part++) {
		struct infer_output a, b;
		float d;

		infertest_fill_input(img, npix, 1000 + part, 0.5f + (float)(part % 8) * 0.4f);
		infertest_fill_input(sig, (size_t)info->signal_dim, 2000 + part, 0.5f + (float)(part % 5));
		g_assert_cmpint(infer_model_run(ref, img, sig, &a, &err), ==, 0);
		g_assert_cmpint(infer_model_run(cand, img, sig, &b, &err), ==, 0);
		d = fmaxf(fabsf(a.score - b.score), fmaxf(fabsf(a.vision_score - b.vision_score),
							  fabsf(a.signal_score - b.signal_score)));
		r.worst = fmaxf(r.worst, d);
		r.moved += d > 0;
		if (!(d <= margin))
			g_error("%s part %u: %s %s vs %s %s: a probability moves by %g (bound %g; "
				"fused %g -> %g)", pkg, part, backend, infer_precision_names[prec],
				ref_backend, infer_precision_names[ref_prec], d, margin, a.score,
				b.score);
		if (fabsf(a.score - info->reject) < margin ||
		    fabsf(a.score - info->marginal) < margin) {
			r.borderline++;
			continue;
		}
		g_assert_cmpint(a.verdict, ==, b.verdict);
		r.agree++;
	}
	g_test_message("%s %s vs %s %s, %s: %d verdicts agree, %d borderline, %d of %d parts "
		       "moved, worst |dp| %g", backend, infer_precision_names[prec], ref_backend,
		       infer_precision_names[ref_prec], pkg, r.agree, r.borderline, r.moved, parts,
		       r.worst);
	g_free(img);
	g_free(sig);
	infer_model_free(ref);
	infer_model_free(cand);
	g_free(dir);
	return r;
}
