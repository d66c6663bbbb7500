/* infer-bench: latency and throughput of one inference backend on a model
 * package (docs/performance.md). Synthetic inputs; the figures are
 * printed, one line per measurement, never asserted.
 *
 *   infer-bench PACKAGE_DIR BACKEND [PARTS] [MAX_BATCH] [--batch B1,B2,...] [--raw]
 *               [--precision fp32|fp16|bf16|int8]
 *
 * Every batch size B runs through infer_model_run_batch, the path vigild
 * takes (B = 1: a part alone; B > 1: B parts waiting behind the model in
 * one run of each module). A part's latency is its batch's: it gets its
 * result when the whole batch has run. Per B: latency per part p50/p99
 * and parts/s over PARTS parts (at least 10 batches), after 5 warm-up
 * batches that plan buffers and capture graphs. Batch sizes: --batch's
 * list, else 1, 2, 4, ... up to MAX_BATCH (default 64). The best batch,
 * the one with most parts/s, is named last.
 *
 * --raw: each part from a raw 640 x 480 uint8 frame and a raw vibration
 * window through infer_model_run_raw, so the figures include the image
 * preprocessing and the vibration features (on the GPU for the cuda
 * backends, with fusion/ on the CPU for the others).
 *
 * --precision: [model] precision (default fp32); int8 needs the package's
 * calibration-int8.ini (docs/inference-engine.md). */
#include <glib.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "inference/inference.h"

#define MAX_SIZES 32

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

/* "1,2,8" into sizes; their count, or -1. */
static int parse_sizes(const char *list, int *sizes)
{
	char **parts = g_strsplit(list, ",", -1);
	int n = 0;

	for (int i = 0; parts[i]; i++) {
		char *end = NULL;
		long v = strtol(parts[i], &end, 10);

		if (!*parts[i] || *end || v < 1 || v > 4096 || n == MAX_SIZES) {
			n = -1;
			break;
		}
		sizes[n++] = (int)v;
	}
	g_strfreev(parts);
	return n;
}

int main(int argc, char **argv)
{
	const char *pos[4] = { NULL, NULL, NULL, NULL };
	int sizes[MAX_SIZES], nsizes = 0, npos = 0, parts, max_batch, most = 1, raw = 0;
	enum { RAW_W = 640, RAW_H = 480 };
	uint8_t *frame = NULL;
	float *window = NULL;
	struct infer_frame *frames = NULL;
	const float **windows = NULL;
	double best_rate = 0;
	const char *prec_name = "fp32";
	enum infer_precision prec = INFER_FP32;
	int best_batch = 1;
	char *err = NULL;
	const struct infer_info *in;
	struct infer_output *out;
	infer_model *m;
	float *img, *sig;
	size_t npix;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--batch") == 0 && i + 1 < argc) {
			if ((nsizes = parse_sizes(argv[++i], sizes)) < 0) {
				fprintf(stderr, "infer-bench: --batch wants sizes 1..4096, e.g. 1,2,4,8\n");
				return 2;
			}
		} else if (strcmp(argv[i], "--precision") == 0 && i + 1 < argc) {
			prec_name = argv[++i];
			if (infer_precision_parse(prec_name, &prec) < 0) {
				fprintf(stderr, "infer-bench: --precision wants fp32, fp16, bf16 or int8\n");
				return 2;
			}
		} else if (strcmp(argv[i], "--raw") == 0) {
			raw = 1;
		} else if (npos < 4) {
			pos[npos++] = argv[i];
		} else {
			npos = 5;
		}
	}
	parts = pos[2] ? atoi(pos[2]) : 500;
	max_batch = pos[3] ? atoi(pos[3]) : 64;
	if (npos < 2 || npos > 4 || parts < 10 || max_batch < 1) {
		fprintf(stderr, "usage: infer-bench PACKAGE_DIR BACKEND [PARTS>=10] [MAX_BATCH] "
			"[--batch B1,B2,...] [--raw] [--precision P]\n");
		return 2;
	}
	if (nsizes == 0)
		for (int b = 1; b <= max_batch && nsizes < MAX_SIZES; b *= 2)
			sizes[nsizes++] = b;
	for (int k = 0; k < nsizes; k++)
		most = MAX(most, sizes[k]);

	m = infer_model_load_at(pos[0], pos[1], prec, &err, NULL);
	if (!m) {
		fprintf(stderr, "infer-bench: %s\n", err);
		return 1;
	}
	in = infer_model_info(m);
	npix = (size_t)in->input_width * in->input_height;
	img = g_new(float, npix * (size_t)most);
	sig = g_new(float, (size_t)in->signal_dim * most);
	out = g_new(struct infer_output, most);
	fill(img, npix * (size_t)most, 1);
	fill(sig, (size_t)in->signal_dim * most, 2);
	if (raw) {
		GRand *r = g_rand_new_with_seed(3);

		frame = g_new(uint8_t, RAW_W * RAW_H);
		for (int i = 0; i < RAW_W * RAW_H; i++)
			frame[i] = (uint8_t)g_rand_int_range(r, 60, 200);
		g_rand_free(r);
		window = g_new(float, (size_t)in->window * most);
		fill(window, (size_t)in->window * most, 4);
		frames = g_new(struct infer_frame, most);
		windows = g_new(const float *, most);
		for (int i = 0; i < most; i++) {
			frames[i] = (struct infer_frame){ frame, RAW_W, RAW_H, RAW_W };
			windows[i] = window + (size_t)i * in->window;  /* a part's own */
		}
	}

	for (int k = 0; k < nsizes; k++) {
		int batch = sizes[k], reps = parts / batch < 10 ? 10 : parts / batch;
		double *lat = g_new(double, reps), total = 0, rate;

		for (int i = 0; i < reps + 5; i++) {
			gint64 t0 = g_get_monotonic_time();

			if ((raw ? infer_model_run_raw(m, batch, frames, windows, out, &err)
				 : infer_model_run_batch(m, batch, img, sig, out, &err)) < 0) {
				fprintf(stderr, "infer-bench: batch %d: %s\n", batch, err);
				return 1;
			}
			if (i >= 5) {
				lat[i - 5] = (double)(g_get_monotonic_time() - t0) / 1000.0;
				total += lat[i - 5];
			}
		}
		rate = reps * batch / (total / 1000.0);
		printf("backend=%s precision=%s package=%s%s batch=%d p50_ms=%.3f p99_ms=%.3f "
		       "parts_per_s=%.1f\n", pos[1], prec_name, in->name, raw ? " raw=1" : "", batch, percentile(lat, reps, 0.5),
		       percentile(lat, reps, 0.99), rate);
		fflush(stdout);
		if (rate > best_rate) {
			best_rate = rate;
			best_batch = batch;
		}
		g_free(lat);
	}
	printf("backend=%s precision=%s best_batch=%d parts_per_s=%.1f\n", pos[1], prec_name,
	       best_batch, best_rate);
	infer_model_free(m);
	g_free(out);
	g_free(frame);
	g_free(window);
	g_free(frames);
	g_free(windows);
	g_free(img);
	g_free(sig);
	g_free(err);
	return 0;
}
