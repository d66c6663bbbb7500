/* inference/: the ONNX import (onnx-graph.c) and the reference backend
 * (infer-reference.c), checked against OpenCV DNN on every shipped model
 * package; files outside the supported set, and damaged files, are refused
 * with the node or file named. */
#include <errno.h>
#include <glib.h>
#include <glib/gstdio.h>
#include <math.h>
#include <string.h>

#include "inference/infer-engine.h"
#include "inference/infer-private.h"
#include "inference/inference.h"
#include "inference/onnx-graph.h"
#include "onnx.pb-c.h"
#include "tests/infertest.h"

/* Largest |reference - OpenCV DNN| accepted on a module output (logits and
 * embeddings of magnitude up to ~50). Both sum float32 products in
 * different orders; the measured worst case is ~5e-5 (docs/inference-engine.md). */
#define PARITY_BOUND 1e-3f

static const char *const packages[] = { "synthetic-v1", "real-v1", "real-v2", NULL };
static const char *const modules[] = { "vision.onnx", "signal.onnx", "decision.onnx", NULL };
static const int module_out[] = { 17, 9, 1 };  /* as the manifests say */

static void test_shipped_modules_import(void)
{
	for (int p = 0; packages[p]; p++)
		for (int i = 0; modules[i]; i++) {
			char *path = infertest_package_path(packages[p], modules[i]), *err = NULL;
			onnx_graph *g = onnx_graph_load(path, &err);
			int shape[ONNX_MAX_DIMS], ndim;
			const struct onnx_tensor *out;

			if (!g)
				g_error("%s", err);
			g_assert_cmpint(g->n_outputs, >=, 1);
			ndim = infertest_module_shape(g, 1, shape);
			g_assert_cmpint(onnx_graph_infer_shapes(g, shape, ndim, &err), ==, 0);
			/* Every module gives [1, k]: a logit then an embedding, or the fused logit. */
			out = &g->tensors[g->outputs[0]];
			g_assert_cmpint(out->ndim, ==, 2);
			g_assert_cmpint(out->dims[0], ==, 1);
			g_assert_cmpint(out->dims[1], ==, module_out[i]);
			g_assert_cmpint(onnx_graph_output_index(g, out->name), ==, 0);
			g_assert_cmpint(onnx_graph_output_index(g, g->tensors[g->input].name), ==, -1);
			/* A batch of 5 flows through every node. */
			shape[0] = 5;
			g_assert_cmpint(onnx_graph_infer_shapes(g, shape, ndim, &err), ==, 0);
			g_assert_cmpint(g->tensors[g->outputs[0]].dims[0], ==, 5);
			/* A wrong image size is refused, naming the input. */
			if (ndim == 4) {
				shape[3] += 1;
				g_assert_cmpint(onnx_graph_infer_shapes(g, shape, ndim, &err), ==, -EINVAL);
				g_assert_nonnull(strstr(err, g->tensors[g->input].name));
				g_clear_pointer(&err, g_free);
			}
			onnx_graph_free(g);
			g_free(path);
		}
}

static void test_reference_matches_opencv_per_module(void)
{
	float worst = 0;

	for (int p = 0; packages[p]; p++)
		for (int i = 0; modules[i]; i++) {
			char *path = infertest_package_path(packages[p], modules[i]), *err = NULL;
			void *cv = infer_backend_opencv.load(path, &err);
			void *ref = infer_backend_reference.load(path, &err);
			int shape[ONNX_MAX_DIMS], ndim;
			size_t n, cap = 4096;
			float *x, *ycv = g_new(float, cap), *yref = g_new(float, cap);

			g_assert_nonnull(cv);
			if (!ref)
				g_error("%s", err);
			ndim = infertest_module_shape(ref_module_graph(ref), 1, shape);
			n = infertest_shape_count(shape, ndim);
			x = g_new(float, n);
			for (guint32 seed = 1; seed <= 4; seed++) {
				size_t lcv = 0, lref = 0;
				float scale = seed == 1 ? 0.0f : (float)seed;

				infertest_fill_input(x, n, seed, scale);
				g_assert_cmpint(infer_backend_run1(&infer_backend_opencv, cv, x, shape, ndim, NULL, ycv, cap,
									 &lcv, &err), ==, 0);
				g_assert_cmpint(infer_backend_run1(&infer_backend_reference, ref, x, shape, ndim, NULL, yref,
									    cap, &lref, &err), ==, 0);
				g_assert_cmpuint(lcv, ==, lref);
				for (size_t k = 0; k < lcv; k++) {
					float d = fabsf(ycv[k] - yref[k]);

					g_assert_true(isfinite(yref[k]));
					if (d > worst)
						worst = d;
					if (d > PARITY_BOUND)
						g_error("%s/%s seed %u output %zu: reference %g, OpenCV %g",
							packages[p], modules[i], seed, k, yref[k], ycv[k]);
				}
			}
			g_free(x);
			g_free(ycv);
			g_free(yref);
			infer_backend_opencv.free(cv);
			infer_backend_reference.free(ref);
			g_free(path);
		}
	g_test_message("worst |reference - opencv| over all modules: %g", worst);
}

/* The whole package through infer_model_run: same scores within the
 * bound, same verdicts, on synthetic parts. */
static void test_reference_package_verdicts_match_opencv(void)
{
	for (int p = 0; packages[p]; p++) {
		char *dir = infertest_package_path(packages[p], NULL), *err = NULL;
		infer_model *cv = infer_model_load(dir, "opencv", &err, NULL);
		infer_model *ref = infer_model_load(dir, "reference", &err, NULL);
		const struct infer_info *info;
		float *img, *sig;
		size_t npix;

		if (!cv || !ref)
			g_error("%s", err);
		info = infer_model_info(ref);
		npix = (size_t)info->input_width * info->input_height;
		img = g_new(float, npix);
		sig = g_new(float, info->signal_dim);
		for (guint32 part = 0; part < 6; part++) {
			struct infer_output a, b;

			infertest_fill_input(img, npix, 100 + part, 1.0f + (float)part * 0.5f);
			infertest_fill_input(sig, (size_t)info->signal_dim, 200 + part, 2.0f);
			g_assert_cmpint(infer_model_run(cv, img, sig, &a, &err), ==, 0);
			g_assert_cmpint(infer_model_run(ref, img, sig, &b, &err), ==, 0);
			g_assert_cmpfloat(fabsf(a.score - b.score), <, PARITY_BOUND);
			g_assert_cmpfloat(fabsf(a.vision_score - b.vision_score), <, PARITY_BOUND);
			g_assert_cmpfloat(fabsf(a.signal_score - b.signal_score), <, PARITY_BOUND);
			g_assert_cmpint(a.verdict, ==, b.verdict);
			g_assert_cmpint(a.defect_class, ==, b.defect_class);
		}
		g_free(img);
		g_free(sig);
		infer_model_free(cv);
		infer_model_free(ref);
		g_free(dir);
	}
}

/* A batch of parts gives each part's own answer. */
static void test_reference_batch_equals_single(void)
{
	char *path = infertest_package_path("real-v2", "vision.onnx"), *err = NULL;
	ref_module *m = ref_module_load(path, &err);
	int shape[ONNX_MAX_DIMS], ndim;
	size_t n, len = 0, len1 = 0;
	float *x, *batched;

	g_assert_nonnull(m);
	ndim = infertest_module_shape(ref_module_graph(m), 3, shape);
	n = infertest_shape_count(shape, ndim);
	x = g_new(float, n);
	infertest_fill_input(x, n, 9, 1.5f);
	g_assert_cmpint(ref_module_forward(m, x, shape, ndim, &err), ==, 0);
	{
		const float *y = ref_module_output(m, 0, &len);

		batched = g_memdup2(y, len * sizeof(float));
	}
	g_assert_cmpuint(len, ==, 3 * 17);
	shape[0] = 1;
	for (int b = 0; b < 3; b++) {
		const float *y;

		g_assert_cmpint(ref_module_forward(m, x + (size_t)b * n / 3, shape, ndim, &err), ==, 0);
		y = ref_module_output(m, 0, &len1);
		g_assert_cmpuint(len1, ==, 17);
		for (int k = 0; k < 17; k++)
			g_assert_cmpfloat(y[k], ==, batched[b * 17 + k]);
	}
	g_free(batched);
	g_free(x);
	ref_module_free(m);
	g_free(path);
}

static void expect_parse_refused(const void *data, size_t len, const char *want1,
				 const char *want2)
{
	char *err = NULL;
	onnx_graph *g = onnx_graph_parse(data, len, "edited.onnx", &err);

	g_assert_null(g);
	g_assert_nonnull(err);
	g_test_message("refused: %s", err);
	if ((want1 && !strstr(err, want1)) || (want2 && !strstr(err, want2)))
		g_error("message '%s' lacks '%s' or '%s'", err, want1, want2 ? want2 : "");
	g_free(err);
}

/* Edits one node of the shipped vision module with protobuf-c and checks
 * the import names the node in its refusal. */
static void test_unsupported_graphs_are_refused(void)
{
	char *path = infertest_package_path("real-v2", "vision.onnx"), *data = NULL;
	gsize len = 0;
	Onnx__ModelProto *mp;
	Onnx__NodeProto *node;
	char *saved;
	guint8 *buf;

	g_assert_true(g_file_get_contents(path, &data, &len, NULL));
	mp = onnx__model_proto__unpack(NULL, len, (const uint8_t *)data);
	g_assert_nonnull(mp);
	buf = g_malloc(len + 4096);

	/* An operator outside the set. */
	node = mp->graph->node[2];
	saved = node->op_type;
	node->op_type = (char *)"Softmax";
	len = onnx__model_proto__pack(mp, buf);
	expect_parse_refused(buf, len, node->name, "'Softmax'");
	node->op_type = saved;

	/* An operator of another domain. */
	saved = node->domain;
	node->domain = (char *)"com.microsoft";
	len = onnx__model_proto__pack(mp, buf);
	expect_parse_refused(buf, len, node->name, "com.microsoft");
	node->domain = saved;

	/* A supported operator with a setting the engine does not implement. */
	node = mp->graph->node[0];
	g_assert_cmpstr(node->op_type, ==, "Conv");
	{
		Onnx__AttributeProto pad = ONNX__ATTRIBUTE_PROTO__INIT, **saved_attrs = node->attribute;
		Onnx__AttributeProto *attrs[16];
		size_t n = node->n_attribute;

		g_assert_cmpuint(n, <, 15);
		memcpy(attrs, node->attribute, n * sizeof *attrs);
		pad.name = (char *)"auto_pad";
		pad.has_s = 1;
		pad.s.data = (uint8_t *)"SAME_UPPER";
		pad.s.len = strlen("SAME_UPPER");
		pad.has_type = 1;
		pad.type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRING;
		attrs[n] = &pad;
		node->attribute = attrs;
		node->n_attribute = n + 1;
		len = onnx__model_proto__pack(mp, buf);
		expect_parse_refused(buf, len, node->name, "SAME_UPPER");
		node->attribute = saved_attrs;
		node->n_attribute = n;
	}

	/* Unchanged, it still loads: the edits above were the cause. */
	len = onnx__model_proto__pack(mp, buf);
	{
		char *err = NULL;
		onnx_graph *g = onnx_graph_parse(buf, len, "unchanged.onnx", &err);

		g_assert_nonnull(g);
		onnx_graph_free(g);
	}
	onnx__model_proto__free_unpacked(mp, NULL);
	g_free(buf);
	g_free(data);
	g_free(path);
}

/* Sigmoid (the defect map's last op, not in the shipped modules yet): the
 * decision module with a Sigmoid appended, run by both backends. */
static void test_sigmoid_matches_opencv(void)
{
	char *path = infertest_package_path("real-v2", "decision.onnx"), *data = NULL, *err = NULL;
	char *dir = g_dir_make_tmp("vigil-onnx-XXXXXX", NULL);
	char *edited = g_build_filename(dir, "decision-sigmoid.onnx", NULL);
	gsize len = 0;
	Onnx__ModelProto *mp;
	Onnx__GraphProto *gp;
	Onnx__NodeProto sig = ONNX__NODE_PROTO__INIT, **nodes;
	char *sig_in[1] = { (char *)"logit_before_sigmoid" }, *sig_out[1], *last_out;
	guint8 *buf;
	void *cv, *ref;
	int shape[2] = { 1, 26 };
	float x[26], ycv[4], yref[4];
	size_t lcv = 0, lref = 0;

	g_assert_true(g_file_get_contents(path, &data, &len, NULL));
	mp = onnx__model_proto__unpack(NULL, len, (const uint8_t *)data);
	g_assert_nonnull(mp);
	gp = mp->graph;
	/* last node -> "logit_before_sigmoid" -> Sigmoid -> the graph output */
	last_out = gp->node[gp->n_node - 1]->output[0];
	sig_out[0] = last_out;
	gp->node[gp->n_node - 1]->output[0] = sig_in[0];
	sig.name = (char *)"appended_sigmoid";
	sig.op_type = (char *)"Sigmoid";
	sig.n_input = 1;
	sig.input = sig_in;
	sig.n_output = 1;
	sig.output = sig_out;
	nodes = g_new(Onnx__NodeProto *, gp->n_node + 1);
	memcpy(nodes, gp->node, gp->n_node * sizeof *nodes);
	nodes[gp->n_node] = &sig;
	{
		Onnx__NodeProto **saved = gp->node;

		gp->node = nodes;
		gp->n_node++;
		buf = g_malloc(len + 1024);
		len = onnx__model_proto__pack(mp, buf);
		gp->n_node--;
		gp->node = saved;
	}
	gp->node[gp->n_node - 1]->output[0] = last_out;
	onnx__model_proto__free_unpacked(mp, NULL);
	g_assert_true(g_file_set_contents(edited, (const char *)buf, (gssize)len, NULL));

	cv = infer_backend_opencv.load(edited, &err);
	ref = infer_backend_reference.load(edited, &err);
	g_assert_nonnull(cv);
	if (!ref)
		g_error("%s", err);
	for (guint32 seed = 1; seed <= 6; seed++) {
		infertest_fill_input(x, 26, seed, 3.0f * (float)seed);
		g_assert_cmpint(infer_backend_run1(&infer_backend_opencv, cv, x, shape, 2, NULL, ycv, 4, &lcv, &err), ==, 0);
		g_assert_cmpint(infer_backend_run1(&infer_backend_reference, ref, x, shape, 2, NULL, yref, 4, &lref, &err), ==, 0);
		g_assert_cmpuint(lcv, ==, 1);
		g_assert_cmpuint(lref, ==, 1);
		g_assert_true(yref[0] >= 0 && yref[0] <= 1);
		g_assert_cmpfloat(fabsf(ycv[0] - yref[0]), <, 1e-5);
	}
	infer_backend_opencv.free(cv);
	infer_backend_reference.free(ref);
	g_unlink(edited);
	g_rmdir(dir);
	g_free(edited);
	g_free(dir);
	g_free(nodes);
	g_free(buf);
	g_free(data);
	g_free(path);
}

/* Random damage: each copy is refused, or loads and runs to the end with
 * finite memory; never a crash (a fuzzer in miniature, 200 seeds). */
static void test_damaged_files_never_crash(void)
{
	char *path = infertest_package_path("real-v1", "vision.onnx"), *data = NULL;
	gsize len = 0;
	int refused = 0, ran = 0;
	GRand *r = g_rand_new_with_seed(7);

	g_assert_true(g_file_get_contents(path, &data, &len, NULL));
	for (int k = 0; k < 200; k++) {
		char *copy = g_memdup2(data, len), *err = NULL;
		onnx_graph *g;
		/* damage the structure (the first bytes and the tail hold the
		 * nodes, shapes and attributes), not only the weights */
		gsize at = g_rand_boolean(r) ? (gsize)g_rand_int_range(r, 0, 2048)
					     : len - 1 - (gsize)g_rand_int_range(r, 0, 4096);

		for (int b = 0; b < 1 + k % 3; b++)
			copy[(at + (gsize)b * 13) % len] ^= (char)(1u << g_rand_int_range(r, 0, 8));
		g = onnx_graph_parse(copy, len, "damaged.onnx", &err);
		if (!g) {
			g_assert_nonnull(err);
			refused++;
		} else {
			int shape[ONNX_MAX_DIMS];
			int ndim = g->input_ndim;
			int ok = ndim >= 1;

			for (int d = 0; ok && d < ndim; d++) {
				shape[d] = d == 0 ? 1 : g->input_dims[d];
				ok = shape[d] > 0 && shape[d] < 4096;
			}
			if (ok && onnx_graph_infer_shapes(g, shape, ndim, &err) == 0) {
				size_t n = 1, len_out = 0;
				float *x;

				/* run it: the executor must stay inside its buffers */
				onnx_graph_free(g);
				g_clear_pointer(&err, g_free);
				for (int d = 0; d < ndim; d++)
					n *= (size_t)shape[d];
				{
					char *tmp_err = NULL;
					char *dir = g_dir_make_tmp("vigil-onnx-XXXXXX", NULL);
					char *file = g_build_filename(dir, "damaged.onnx", NULL);
					ref_module *rm;

					g_assert_true(g_file_set_contents(file, copy, (gssize)len, NULL));
					rm = ref_module_load(file, &tmp_err);
					g_assert_nonnull(rm);
					x = g_new0(float, n);
					if (ref_module_forward(rm, x, shape, ndim, &tmp_err) == 0) {
						g_assert_nonnull(ref_module_output(rm, 0, &len_out));
						ran++;
					}
					g_free(x);
					g_free(tmp_err);
					ref_module_free(rm);
					g_unlink(file);
					g_rmdir(dir);
					g_free(file);
					g_free(dir);
				}
				g = NULL;
			} else {
				refused++;
			}
			onnx_graph_free(g);
		}
		g_free(err);
		g_free(copy);
	}
	g_test_message("damaged copies: %d refused, %d ran", refused, ran);
	g_rand_free(r);
	g_free(data);
	g_free(path);
}

/* Every prefix of a module is refused, whatever the cut. */
static void test_truncated_files_are_refused(void)
{
	char *path = infertest_package_path("real-v1", "vision.onnx"), *data = NULL, *err = NULL;
	gsize len = 0;
	int refused = 0;

	g_assert_true(g_file_get_contents(path, &data, &len, NULL));
	for (gsize cut = 0; cut < len; cut += cut < 512 || cut > len - 512 ? 1 : 61) {
		onnx_graph *g = onnx_graph_parse(data, cut, "cut.onnx", &err);

		if (g)
			g_error("a copy cut to %zu of %zu bytes was accepted", cut, len);
		g_assert_nonnull(err);
		g_clear_pointer(&err, g_free);
		refused++;
	}
	g_test_message("%d truncations refused", refused);

	/* Through the backend: the file is named. */
	{
		char *dir = g_dir_make_tmp("vigil-onnx-XXXXXX", NULL);
		char *cut = g_build_filename(dir, "vision.onnx", NULL);
		void *m;

		g_assert_true(g_file_set_contents(cut, data, (gssize)(len / 2), NULL));
		m = infer_backend_reference.load(cut, &err);
		g_assert_null(m);
		g_assert_nonnull(strstr(err, cut));
		g_test_message("refused: %s", err);
		g_free(err);
		g_unlink(cut);
		g_rmdir(dir);
		g_free(cut);
		g_free(dir);
	}
	g_free(data);
	g_free(path);
}

/* ---- int8 (infer-calib.c, the reference executor's int8 path) ---- */

/* Calibrates a copy of pkg on `parts` synthetic parts (seeds from seed0). */
static char *calibrated_copy(const char *pkg, int parts, guint32 seed0)
{
	char *src = infertest_package_path(pkg, NULL), *dir = infertest_copy_package(src);
	char *calib = g_build_filename(dir, INFER_CALIB_FILE, NULL), *err = NULL;
	infer_calibrator *c;
	const struct infer_info *info;
	infer_model *m;
	float *img, *sig;
	size_t npix;

	g_unlink(calib);  /* whatever was shipped: this test makes its own */
	m = infer_model_load(dir, "reference", &err, NULL);
	c = infer_calibrator_new(dir, INFER_RANGE_MAX, 0, &err);
	if (!m || !c)
		g_error("%s", err);
	info = infer_model_info(m);
	npix = (size_t)info->input_width * info->input_height;
	img = g_new(float, npix);
	sig = g_new(float, info->signal_dim);
	for (int p = 0; p < parts; p++) {
		infertest_fill_input(img, npix, seed0 + (guint32)p, 0.5f + (float)(p % 4) * 0.5f);
		infertest_fill_input(sig, (size_t)info->signal_dim, seed0 + 500 + (guint32)p, 2.0f);
		g_assert_cmpint(infer_calibrator_add(c, img, sig, &err), ==, 0);
	}
	if (infer_calibrator_write(c, "tests/test-inference-engine.c", &err) < 0)
		g_error("%s", err);
	g_assert_true(g_file_test(calib, G_FILE_TEST_IS_REGULAR));
	g_free(img);
	g_free(sig);
	infer_calibrator_free(c);
	infer_model_free(m);
	g_free(calib);
	g_free(src);
	return dir;
}

/* Largest |p_int8 - p_fp32| accepted on a probability (fused, vision,
 * signal) of a synthetic part, calibrated on parts of the same kind; and
 * the verdicts must agree wherever fp32's own score is further than that
 * from a threshold. These noise parts drive the models far outside what
 * they were trained on (logits of +-40); the measured worst is 0.11
 * (synthetic-v1, a fused logit near 0 made of large terms). On real val
 * parts see docs/inference-engine.md (all verdicts agree). */
#define INT8_BOUND 0.15f

static void test_int8_agrees_with_fp32(void)
{
	static const char *const int8_packages[] = { "synthetic-v1", "real-v2", "real-v3", NULL };

	int agree = 0;

	for (int p = 0; int8_packages[p]; p++) {
		char *dir = calibrated_copy(int8_packages[p], 32, 3000), *err = NULL;
		infer_model *f32 = infer_model_load(dir, "reference", &err, NULL);
		infer_model *i8 = f32 ? infer_model_load_at(dir, "reference", INFER_INT8, &err, NULL)
			: NULL;
		const struct infer_info *info;
		float *img, *sig, worst = 0, worst_map = 0;
		size_t npix;
		int borderline = 0, moved = 0, agreed = agree;

		if (!i8)
			g_error("%s", err);
		info = infer_model_info(f32);
		npix = (size_t)info->input_width * info->input_height;
		img = g_new(float, npix);
		sig = g_new(float, info->signal_dim);
		for (guint32 part = 0; part < 48; part++) {
			struct infer_output a, b;
			float d;

			infertest_fill_input(img, npix, 4000 + part, 0.5f + (float)(part % 4) * 0.5f);
			infertest_fill_input(sig, (size_t)info->signal_dim, 4500 + part, 2.0f);
			g_assert_cmpint(infer_model_run(f32, img, sig, &a, &err), ==, 0);
			g_assert_cmpint(infer_model_run(i8, img, sig, &b, &err), ==, 0);
			d = fmaxf(fabsf(a.score - b.score), fmaxf(fabsf(a.vision_score - b.vision_score),
								  fabsf(a.signal_score - b.signal_score)));
			worst = fmaxf(worst, d);
			if (!(d <= INT8_BOUND))
				g_error("%s part %u: int8 probabilities move by %g (fused %g -> %g)",
					int8_packages[p], part, d, a.score, b.score);
			if (a.heatmap) {
				/* the defect map comes from the same int8 forward */
				g_assert_nonnull(b.heatmap);
				for (int k = 0; k < a.heatmap_w * a.heatmap_h; k++)
					worst_map = fmaxf(worst_map, fabsf(a.heatmap[k] - b.heatmap[k]));
			}
			/* int8 really ran: some probability is not fp32's */
			moved += a.score != b.score || a.vision_score != b.vision_score ||
				 a.signal_score != b.signal_score;
			if (fabsf(a.score - info->reject) < INT8_BOUND ||
			    fabsf(a.score - info->marginal) < INT8_BOUND) {
				borderline++;
				continue;
			}
			g_assert_cmpint(a.verdict, ==, b.verdict);
			agree++;
		}
		g_test_message("int8 %s: %d verdicts agree, %d borderline, worst |dp| %g, worst "
			       "defect map |d| %g", int8_packages[p], agree - agreed, borderline,
			       worst, worst_map);
		g_assert_cmpint(moved, >, 24);
		g_free(img);
		g_free(sig);
		infer_model_free(f32);
		infer_model_free(i8);
		infertest_remove_package(dir);
	}
	/* the real packages' noise parts mostly sit at p = 1, near their
	 * thresholds of ~0.99; synthetic-v1's spread out */
	g_assert_cmpint(agree, >, 30);
}

/* The file records what it says: every Conv's and Gemm's per-channel
 * weight scales as recomputed from the weights, and an input range. */
static void test_int8_calibration_file(void)
{
	static const char *const groups[] = { "vision", "signal", "decision" };
	char *dir = calibrated_copy("real-v3", 8, 100);
	char *calib = g_build_filename(dir, INFER_CALIB_FILE, NULL), *err = NULL;
	struct infer_quant *q[3];
	int nodes = 0;

	g_assert_cmpint(infer_quant_load(calib, groups, 3, q, &err), ==, 0);
	for (int k = 0; k < 3; k++) {
		char *path = g_build_filename(dir, q[k]->file, NULL);
		onnx_graph *g = onnx_graph_load(path, &err);

		g_assert_nonnull(g);
		g_assert_cmpint(strlen(q[k]->sha256), ==, 64);
		for (int i = 0; i < g->n_nodes; i++) {
			const struct onnx_node *n = &g->nodes[i];
			const struct infer_quant_node *qn;
			float *scale;

			if (n->op != ONNX_OP_CONV && n->op != ONNX_OP_GEMM)
				continue;
			qn = infer_quant_node_for(q[k], g, n, &err);
			if (!qn)
				g_error("%s", err);
			g_assert_cmpfloat(qn->input_range, >, 0);
			scale = g_new(float, qn->channels);
			infer_quant_weight_scales(g, n, scale);
			for (int c = 0; c < qn->channels; c++)
				g_assert_cmpfloat(qn->weight_scale[c], ==, scale[c]);
			g_free(scale);
			nodes++;
		}
		onnx_graph_free(g);
		g_free(path);
		infer_quant_free(q[k]);
	}
	g_test_message("%d quantized nodes in real-v3", nodes);
	g_assert_cmpint(nodes, >=, 8);
	g_free(calib);
	infertest_remove_package(dir);
}

/* Every package under models/ that ships a calibration loads in int8: the
 * files match their modules (a retrained module without a new calibration
 * fails here). real-v5, real-v4, real-v3 and synthetic-v1 ship one. */
static void test_int8_shipped_calibrations(void)
{
	char *models = g_build_filename(g_getenv("VIGIL_SOURCE_ROOT"), "models", NULL);
	GDir *d = g_dir_open(models, 0, NULL);
	const char *name;
	int loaded = 0;

	g_assert_nonnull(d);
	while ((name = g_dir_read_name(d))) {
		char *dir = g_build_filename(models, name, NULL), *err = NULL;
		char *calib = g_build_filename(dir, INFER_CALIB_FILE, NULL);

		if (g_file_test(calib, G_FILE_TEST_EXISTS)) {
			infer_model *m = infer_model_load_at(dir, "reference", INFER_INT8, &err, NULL);

			if (!m)
				g_error("%s", err);
			infer_model_free(m);
			loaded++;
		}
		g_free(calib);
		g_free(dir);
	}
	g_dir_close(d);
	g_free(models);
	g_assert_cmpint(loaded, >=, 3);
}

static void expect_int8_refused(const char *dir, const char *backend, int code, const char *want)
{
	char *err = NULL;
	int got = 0;

	g_assert_null(infer_model_load_at(dir, backend, INFER_INT8, &err, &got));
	g_test_message("refused: %s", err);
	g_assert_cmpint(got, ==, code);
	if (!strstr(err, want))
		g_error("message '%s' lacks '%s'", err, want);
	g_free(err);
}

/* int8 is refused, saying why, when the calibration is missing, edited or
 * made for other module files, or the backend cannot run it; the float32
 * model of the same package keeps running throughout. */
static void test_int8_refusals(void)
{
	char *dir = calibrated_copy("real-v3", 4, 200), *err = NULL;
	char *calib = g_build_filename(dir, INFER_CALIB_FILE, NULL), *text = NULL;
	infer_model *running = infer_model_load(dir, "reference", &err, NULL);
	const struct infer_info *info = infer_model_info(running);
	float *img = g_new0(float, (size_t)info->input_width * info->input_height);
	float *sig = g_new0(float, info->signal_dim);
	struct infer_output o;

	g_assert_true(g_file_get_contents(calib, &text, NULL, NULL));

	expect_int8_refused(dir, "opencv", INFER_EPRECISION, "(it runs: fp32)");

	/* one digit of one range changed */
	{
		char *at = strstr(text, "input_range="), *edited = g_strdup(text);

		g_assert_nonnull(at);
		edited[at - text + 12] = edited[at - text + 12] == '9' ? '8' : '9';
		g_assert_true(g_file_set_contents(calib, edited, -1, NULL));
		expect_int8_refused(dir, "reference", INFER_ECALIB, "checksum does not match");
		g_free(edited);
	}
	/* the checksum line gone */
	infertest_edit_file(dir, INFER_CALIB_FILE, "checksum=", "#hecksum=");
	expect_int8_refused(dir, "reference", INFER_ECALIB, "no checksum line");

	/* no file at all */
	g_unlink(calib);
	expect_int8_refused(dir, "reference", INFER_ECALIB, "vigil-calibrate");

	/* the file back, but decision.onnx replaced by another package's (the
	 * manifest updated, so only the calibration can tell) */
	g_assert_true(g_file_set_contents(calib, text, -1, NULL));
	{
		char *other = infertest_package_path("real-v2", "decision.onnx"), *data = NULL;
		char *mine = g_build_filename(dir, "decision.onnx", NULL), *old_sha, *new_sha;
		gsize len = 0;

		g_assert_true(g_file_get_contents(mine, &data, &len, NULL));
		old_sha = g_compute_checksum_for_data(G_CHECKSUM_SHA256, (guchar *)data, len);
		g_free(data);
		g_assert_true(g_file_get_contents(other, &data, &len, NULL));
		new_sha = g_compute_checksum_for_data(G_CHECKSUM_SHA256, (guchar *)data, len);
		g_assert_cmpstr(old_sha, !=, new_sha);
		g_assert_true(g_file_set_contents(mine, data, (gssize)len, NULL));
		infertest_edit_file(dir, "manifest.ini", old_sha, new_sha);
		expect_int8_refused(dir, "reference", INFER_ECALIB, "run vigil-calibrate again");
		/* float32 takes the new module: only int8 needed the calibration */
		{
			infer_model *f32 = infer_model_load(dir, "reference", &err, NULL);

			g_assert_nonnull(f32);
			infer_model_free(f32);
		}
		g_free(old_sha);
		g_free(new_sha);
		g_free(data);
		g_free(mine);
		g_free(other);
	}
	/* and the model loaded first still judges parts */
	g_assert_cmpint(infer_model_run(running, img, sig, &o, &err), ==, 0);
	g_assert_true(isfinite(o.score));
	infer_model_free(running);
	g_free(img);
	g_free(sig);
	g_free(text);
	g_free(calib);
	infertest_remove_package(dir);
}

/* The value of half-precision bits h (IEEE binary16), decoded here
 * independently of inference/'s rounding. */
static float half_value(unsigned h)
{
	int e = (int)(h >> 10 & 0x1f), f = (int)(h & 0x3ff);
	float v = e == 0 ? ldexpf((float)f, -24) : ldexpf((float)(f | 0x400), e - 25);

	return h & 0x8000 ? -v : v;
}

/* Round to nearest, ties to even, over every finite half and bfloat16:
 * each value rounds to itself, a midpoint to its even neighbour, and
 * anything off the midpoint to the nearer one. */
static void test_half_rounding(void)
{
	for (unsigned h = 0; h < 0x7bff; h++) {
		float a = half_value(h), b = half_value(h + 1), mid = (a + b) / 2;

		g_assert_cmpfloat(infer_round_half(a), ==, a);
		g_assert_cmpfloat(infer_round_half(-a), ==, -a);
		g_assert_cmpfloat(infer_round_half(mid), ==, h & 1 ? b : a);
		g_assert_cmpfloat(infer_round_half(nextafterf(mid, 0)), ==, a);
		g_assert_cmpfloat(infer_round_half(nextafterf(mid, INFINITY)), ==, b);
	}
	g_assert_cmpfloat(infer_round_half(65504.0f), ==, 65504.0f);
	g_assert_cmpfloat(infer_round_half(65519.0f), ==, 65504.0f);
	g_assert_cmpfloat(infer_round_half(65520.0f), ==, INFINITY);
	g_assert_cmpfloat(infer_round_half(-1e9f), ==, -INFINITY);
	g_assert_cmpfloat(infer_round_half(0x1p-26f), ==, 0.0f);
	g_assert_true(isnan(infer_round_half(NAN)));
	for (uint32_t u = 0; u < 0x7f7f0000u; u += 0x10000u) {
		union { float f; uint32_t u; } a = { .u = u }, b = { .u = u + 0x10000u };
		float mid = a.f + (b.f - a.f) / 2; /* exact: 9 bits of significand */

		g_assert_cmpfloat(infer_round_bf16(a.f), ==, a.f);
		g_assert_cmpfloat(infer_round_bf16(mid), ==, u >> 16 & 1 ? b.f : a.f);
		g_assert_cmpfloat(infer_round_bf16(nextafterf(mid, 0)), ==, a.f);
		g_assert_cmpfloat(infer_round_bf16(nextafterf(mid, INFINITY)), ==, b.f);
	}
	g_assert_cmpfloat(infer_round_bf16(3.4e38f), ==, INFINITY);
	g_assert_true(isnan(infer_round_bf16(NAN)));
}

/* The reference executor in fp16 and bf16 (the cuda backend's storage
 * rounding) against OpenCV in float32, on the packages and synthetic
 * parts that test-inference-cuda.c uses, within the same bounds: a CPU
 * prediction of that GPU test. The rounding must show on every package,
 * and synthetic-v1's parts, which spread over the score range, must
 * mostly be away from a threshold and keep their verdicts. */
static void test_half_precision_on_cpu(void)
{
	static const struct { const char *pkg; int parts; } runs[] = {
		{ "synthetic-v1", 64 }, { "real-v1", 64 }, { "real-v2", 64 }, { "real-v5", 12 },
	};

	for (size_t i = 0; i < G_N_ELEMENTS(runs); i++) {
		struct infertest_precision h, b;

		h = infertest_check_precision(runs[i].pkg, "opencv", INFER_FP32, "reference",
					      INFER_FP16, INFERTEST_FP16_MARGIN, runs[i].parts);
		b = infertest_check_precision(runs[i].pkg, "opencv", INFER_FP32, "reference",
					      INFER_BF16, INFERTEST_BF16_MARGIN, runs[i].parts);
		g_assert_cmpint(h.moved, >, 0);
		g_assert_cmpint(b.moved, >, 0);
		if (i == 0) {
			g_assert_cmpint(h.agree, >, runs[i].parts / 2);
			g_assert_cmpint(b.agree, >, runs[i].parts / 2);
		}
	}
}

/* The rounding is what changes the numbers: fp16 differs from fp32 on
 * every part, bf16 further than fp16, and a module's fp16 output is made
 * of halves. */
static void test_half_precision_rounds(void)
{
	char *path = infertest_package_path("real-v2", "vision.onnx"), *err = NULL;
	ref_module *f32 = ref_module_load(path, &err);
	ref_module *f16 = f32 ? ref_module_load_half(path, INFER_FP16, &err) : NULL;
	ref_module *b16 = f16 ? ref_module_load_half(path, INFER_BF16, &err) : NULL;
	int shape[ONNX_MAX_DIMS], ndim;
	size_t n, len;
	float *x, d16 = 0, db16 = 0;

	if (!b16)
		g_error("%s", err);
	g_assert_null(ref_module_load_half(path, INFER_INT8, &err));
	g_assert_nonnull(strstr(err, "not a half precision"));
	g_clear_pointer(&err, g_free);
	ndim = infertest_module_shape(ref_module_graph(f32), 2, shape);
	n = infertest_shape_count(shape, ndim);
	x = g_new(float, n);
	infertest_fill_input(x, n, 7, 1.0f);
	g_assert_cmpint(ref_module_forward(f32, x, shape, ndim, &err), ==, 0);
	g_assert_cmpint(ref_module_forward(f16, x, shape, ndim, &err), ==, 0);
	g_assert_cmpint(ref_module_forward(b16, x, shape, ndim, &err), ==, 0);
	for (int o = 0; o < ref_module_graph(f32)->n_outputs; o++) {
		const float *a = ref_module_output(f32, o, &len);
		const float *h = ref_module_output(f16, o, &len);
		const float *b = ref_module_output(b16, o, &len);

		for (size_t k = 0; k < len; k++) {
			g_assert_cmpfloat(infer_round_half(h[k]), ==, h[k]);
			g_assert_cmpfloat(infer_round_bf16(b[k]), ==, b[k]);
			d16 = fmaxf(d16, fabsf(h[k] - a[k]));
			db16 = fmaxf(db16, fabsf(b[k] - a[k]));
		}
	}
	/* the caller's input is left as it was */
	{
		float *y = g_new(float, n);

		infertest_fill_input(y, n, 7, 1.0f);
		g_assert_cmpmem(x, n * sizeof(float), y, n * sizeof(float));
		g_free(y);
	}
	g_test_message("real-v2 vision outputs: max |fp16 - fp32| %g, |bf16 - fp32| %g", d16, db16);
	g_assert_cmpfloat(d16, >, 0.0f);
	g_assert_cmpfloat(db16, >, d16);
	g_free(x);
	ref_module_free(f32);
	ref_module_free(f16);
	ref_module_free(b16);
	g_free(path);
}

/* backend = cuda in a build without CUDA: refused, saying how to get it. */
static void test_cuda_absent_is_explained(void)
{
#ifdef VIGIL_HAVE_CUDA
	g_test_skip("this build has the cuda backend (tests/test-inference-cuda.c)");
#else
	char *dir = infertest_package_path("synthetic-v1", NULL), *err = NULL;
	int code = 0;

	g_assert_null(infer_model_load(dir, "cuda", &err, &code));
	g_assert_cmpint(code, ==, INFER_EBACKEND);
	g_test_message("refused: %s", err);
	g_assert_nonnull(strstr(err, "reference"));
	g_assert_nonnull(strstr(err, "-Dcuda=enabled"));
	g_free(err);
	g_free(dir);
#endif
}

/* backend = onednn in a build without oneDNN: refused, saying how to get it. */
static void test_onednn_absent_is_explained(void)
{
#ifdef VIGIL_HAVE_ONEDNN
	g_test_skip("this build has the onednn backend (tests/test-inference-onednn.c)");
#else
	char *dir = infertest_package_path("synthetic-v1", NULL), *err = NULL;
	int code = 0;

	g_assert_null(infer_model_load(dir, "onednn", &err, &code));
	g_assert_cmpint(code, ==, INFER_EBACKEND);
	g_test_message("refused: %s", err);
	g_assert_nonnull(strstr(err, "libdnnl-dev"));
	g_assert_nonnull(strstr(err, "-Donednn=enabled"));
	g_free(err);
	g_free(dir);
#endif
}

int main(int argc, char **argv)
{
	g_test_init(&argc, &argv, NULL);
	g_test_add_func("/inference/engine/shipped-modules-import", test_shipped_modules_import);
	g_test_add_func("/inference/engine/reference-matches-opencv",
			test_reference_matches_opencv_per_module);
	g_test_add_func("/inference/engine/reference-package-verdicts",
			test_reference_package_verdicts_match_opencv);
	g_test_add_func("/inference/engine/reference-batch", test_reference_batch_equals_single);
	g_test_add_func("/inference/engine/unsupported-refused", test_unsupported_graphs_are_refused);
	g_test_add_func("/inference/engine/truncated-refused", test_truncated_files_are_refused);
	g_test_add_func("/inference/engine/sigmoid-matches-opencv", test_sigmoid_matches_opencv);
	g_test_add_func("/inference/engine/damaged-never-crash", test_damaged_files_never_crash);
	g_test_add_func("/inference/engine/int8-agrees-with-fp32", test_int8_agrees_with_fp32);
	g_test_add_func("/inference/engine/int8-calibration-file", test_int8_calibration_file);
	g_test_add_func("/inference/engine/int8-refusals", test_int8_refusals);
	g_test_add_func("/inference/engine/int8-shipped-calibrations", test_int8_shipped_calibrations);
	g_test_add_func("/inference/engine/half-rounding", test_half_rounding);
	g_test_add_func("/inference/engine/half-precision-rounds", test_half_precision_rounds);
	g_test_add_func("/inference/engine/half-precision-on-cpu", test_half_precision_on_cpu);
	g_test_add_func("/inference/engine/cuda-absent", test_cuda_absent_is_explained);
	g_test_add_func("/inference/engine/onednn-absent", test_onednn_absent_is_explained);
	return g_test_run();
}
