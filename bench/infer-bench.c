/* infer-bench: latency and throughput of one inference backend on a model
 * package (docs/performance.md). Synthetic inputs; the figures are
 * printed, one line per measurement, never asserted.
 *
 *   infer-bench PACKAGE_DIR BACKEND [PARTS] [MAX_BATCH] [PRECISION]
 *
 * PRECISION: fp32 (default), fp16, bf16 or int8 ([model] precision).
 * batch 1: PARTS parts through infer_model_run (the path vigild takes),
 * latency per part p50/p99 and parts/s. batch B (2, 4, ... MAX_BATCH):
 * the three modules run on B parts at once through the backend table,
 * latency per batch p50/p99 and parts/s; the best batch is named. */
#include <glib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "inference/inference.h"

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static double percentile(double *v, int n, double p)
{
	qsort(v, (size_t)n, sizeof *v, cmp_double);
	return v[(int)(p * (n - 1) + 0.5)];
}

static void fill(float *x, size_t n, guint32 seed)
{
	GRand *r = g_rand_new_with_seed(seed);

	for (size_t i = 0; i < n; i++)
		x[i] = (float)g_rand_double_range(r, -2, 2);
	g_rand_free(r);
}

/* One batch through the three modules; 0 or -1 with the message printed. */
static int run_batch(const struct infer_backend *be, void **mod, const struct infer_info *in,
		     int batch, const float *img, const float *sig, float *vs, float *tmp,
		     float *fused)
{
	int vshape[4] = { batch, 1, in->input_height, in->input_width };
	int sshape[2] = { batch, in->signal_dim };
	int dshape[2] = { batch, in->vision_out + in->signal_out };
	size_t nv = 0, ns = 0, nd = 0;
	char *err = NULL;
	float *sv = tmp + (size_t)batch * in->vision_out;

	if (infer_backend_run1(be, mod[0], img, vshape, 4, tmp, (size_t)batch * in->vision_out, &nv, &err) < 0 ||
	    infer_backend_run1(be, mod[1], sig, sshape, 2, sv, (size_t)batch * in->signal_out, &ns, &err) < 0)
		goto fail;
	/* The decision input is each part's vision output then its signal output. */
	for (int b = 0; b < batch; b++) {
		memcpy(vs + (size_t)b * dshape[1], tmp + (size_t)b * in->vision_out,
		       sizeof(float) * (size_t)in->vision_out);
		memcpy(vs + (size_t)b * dshape[1] + in->vision_out, sv + (size_t)b * in->signal_out,
		       sizeof(float) * (size_t)in->signal_out);
	}
	if (infer_backend_run1(be, mod[2], vs, dshape, 2, fused, (size_t)batch, &nd, &err) < 0)
		goto fail;
	return 0;
fail:
	fprintf(stderr, "infer-bench: batch %d: %s\n", batch, err ? err : "failed");
	g_free(err);
	return -1;
}

int main(int argc, char **argv)
{
	const struct infer_backend *be = NULL;
	struct infer_info info;
	const struct infer_info *in = &info;
	const char *prec_name = argc > 5 ? argv[5] : "fp32";
	enum infer_precision prec = INFER_FP32;
	int parts = argc > 3 ? atoi(argv[3]) : 500;
	int max_batch = argc > 4 ? atoi(argv[4]) : 64;
	double best_rate = 0, *lat;
	int best_batch = 1;
	char *err = NULL;
	infer_model *m;
	float *img, *sig;
	size_t npix;

	if (argc < 3 || parts < 10 || max_batch < 1 || infer_precision_parse(prec_name, &prec) < 0) {
		fprintf(stderr, "usage: infer-bench PACKAGE_DIR BACKEND [PARTS>=10] [MAX_BATCH] "
				"[fp32|fp16|bf16|int8]\n");
		return 2;
	}
	be = infer_backend_find(argv[2]);
	m = infer_model_load_at(argv[1], argv[2], prec, &err, NULL);
	if (!m || !be) {
		fprintf(stderr, "infer-bench: %s\n", err ? err : "unknown backend");
		return 1;
	}
	info = *infer_model_info(m);  /* the numbers; the strings die with m */
	info.name = g_strdup(info.name);
	npix = (size_t)in->input_width * in->input_height;
	img = g_new(float, npix * (size_t)max_batch);
	sig = g_new(float, (size_t)in->signal_dim * max_batch);
	fill(img, npix * (size_t)max_batch, 1);
	fill(sig, (size_t)in->signal_dim * max_batch, 2);
	lat = g_new(double, parts);

	/* batch 1, as vigild runs a part */
	for (int i = 0; i < parts + 20; i++) {
		struct infer_output out;
		gint64 t0 = g_get_monotonic_time();

		if (infer_model_run(m, img + (size_t)(i % max_batch) * npix,
				    sig + (size_t)(i % max_batch) * in->signal_dim, &out, &err) < 0) {
			fprintf(stderr, "infer-bench: %s\n", err);
			return 1;
		}
		if (i >= 20)  /* the first runs plan buffers and capture graphs */
			lat[i - 20] = (double)(g_get_monotonic_time() - t0) / 1000.0;
	}
	{
		double total = 0;

		for (int i = 0; i < parts; i++)
			total += lat[i];
		best_rate = parts / (total / 1000.0);
		printf("backend=%s precision=%s package=%s batch=1 p50_ms=%.3f p99_ms=%.3f "
		       "parts_per_s=%.1f\n", argv[2], prec_name, in->name, percentile(lat, parts, 0.5),
		       percentile(lat, parts, 0.99), best_rate);
	}

	/* batches through the backend table, on the model's own modules */
	{
		void *mod[3] = { infer_model_module(m, 0), infer_model_module(m, 1),
				 infer_model_module(m, 2) };
		size_t dim = (size_t)(in->vision_out + in->signal_out);
		float *vs = g_new(float, dim * max_batch), *tmp = g_new(float, dim * max_batch);
		float *fused = g_new(float, max_batch);

		for (int batch = 2; batch <= max_batch; batch *= 2) {
			int reps = parts / batch < 10 ? 10 : parts / batch, failed = 0;
			double total = 0, rate;

			for (int i = 0; i < reps + 5 && !failed; i++) {
				gint64 t0 = g_get_monotonic_time();

				failed = run_batch(be, mod, in, batch, img, sig, vs, tmp, fused) < 0;
				if (i >= 5) {
					lat[i - 5] = (double)(g_get_monotonic_time() - t0) / 1000.0;
					total += lat[i - 5];
				}
			}
			if (failed)
				break;
			rate = reps * batch / (total / 1000.0);
			printf("backend=%s precision=%s package=%s batch=%d p50_ms=%.3f p99_ms=%.3f "
			       "parts_per_s=%.1f\n", argv[2], prec_name, in->name, batch,
			       percentile(lat, reps, 0.5), percentile(lat, reps, 0.99), rate);
			if (rate > best_rate) {
				best_rate = rate;
				best_batch = batch;
			}
		}
		g_free(vs);
		g_free(tmp);
		g_free(fused);
	}
	printf("backend=%s precision=%s best_batch=%d parts_per_s=%.1f\n", argv[2], prec_name,
	       best_batch, best_rate);
	infer_model_free(m);
	g_free(lat);
	g_free(img);
	g_free(sig);
	g_free(err);
	g_free(info.name);
	return 0;
}
