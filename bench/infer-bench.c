/* infer-bench: latency and throughput of one inference backend on a model
 * package (docs/performance.md). Synthetic inputs, or real parts with
 * --parts; the figures are printed, one line per measurement, never
 * asserted.
 *
 *   infer-bench PACKAGE_DIR BACKEND [PARTS] [MAX_BATCH] [--batch B1,B2,...] [--raw]
 *               [--precision fp32|fp16|bf16|int8] [--threads N] [--parts FILE [--scores CSV]]
 *
 * BACKEND may be auto ([model] backend = auto): the choice, why, and the
 * load's time (auto's timing included) are printed first. --threads:
 * [model] threads (default 0: the libraries' own, OMP_NUM_THREADS for
 * onednn).
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
 * calibration-int8.ini (docs/inference-engine.md).
 *
 * --parts: real parts instead, from a parts file (vigil-features
 * --raw-out: decoded gray images of any size and raw vibration windows),
 * taken in turn. Without --raw each part is prepared once, before timing,
 * by fusion/ on the CPU as vigil-eval does, and the model alone is timed;
 * with --raw the backend gets the image and window as they are.
 * --scores: first judges every part of the file once, in batches of the
 * first batch size, and writes "part,score,vision_score,signal_score,
 * verdict" per part in file order (part counts from 0), for
 * bench/compare-scores.py against vigil-eval --scores on the same parts. */
#include <errno.h>
#include <glib.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fusion/fusion.h"
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

/* The parts of a vigil-features --raw-out file. */
struct raw_parts {
	guint n;
	size_t window;
	struct infer_frame *frames;   /* pointing into bytes */
	const float **windows;
	float *samples;               /* n * window */
	gchar *bytes;
};

static void raw_parts_free(struct raw_parts *p)
{
	if (!p)
		return;
	g_free(p->frames);
	g_free(p->windows);
	g_free(p->samples);
	g_free(p->bytes);
	g_free(p);
}

static guint32 le32_at(const gchar *b)
{
	guint32 u;

	memcpy(&u, b, 4);
	return GUINT32_FROM_LE(u);
}

/* NULL with *err (g_free) saying what is wrong with the file. */
static struct raw_parts *raw_parts_load(const char *path, char **err)
{
	struct raw_parts *p = g_new0(struct raw_parts, 1);
	GError *gerr = NULL;
	gsize len, at = 12;

	if (!g_file_get_contents(path, &p->bytes, &len, &gerr)) {
		*err = g_strdup(gerr->message);
		g_error_free(gerr);
		goto fail;
	}
	if (len < 12 || memcmp(p->bytes, "VGR1", 4) != 0) {
		*err = g_strdup_printf("%s: not a parts file (vigil-features --raw-out)", path);
		goto fail;
	}
	p->n = le32_at(p->bytes + 4);
	p->window = le32_at(p->bytes + 8);
	/* Before allocating: each part takes at least 8 + 4 * window bytes. */
	if (p->n == 0 || p->n > 1000000 || p->window == 0 || p->window > (1u << 24) ||
	    (guint64)p->n * (8 + 4 * (guint64)p->window) > len - 12) {
		*err = g_strdup_printf("%s: %u parts of window %zu do not fit its %zu bytes", path,
				       p->n, p->window, (size_t)len);
		goto fail;
	}
	p->frames = g_new(struct infer_frame, p->n);
	p->windows = g_new(const float *, p->n);
	p->samples = g_new(float, (size_t)p->n * p->window);
	for (guint i = 0; i < p->n; i++) {
		guint32 w, h;
		float *x = p->samples + (size_t)i * p->window;

		if (len - at < 8)
			goto short_file;
		w = le32_at(p->bytes + at);
		h = le32_at(p->bytes + at + 4);
		at += 8;
		if (w == 0 || h == 0 || w > 16384 || h > 16384) {
			*err = g_strdup_printf("%s: part %u is %ux%u", path, i, w, h);
			goto fail;
		}
		if (len - at < (gsize)w * h + 4 * p->window)
			goto short_file;
		p->frames[i] = (struct infer_frame){ (const uint8_t *)p->bytes + at, (int)w, (int)h,
						     (int)w };
		at += (gsize)w * h;
		for (size_t k = 0; k < p->window; k++, at += 4) {
			guint32 u = le32_at(p->bytes + at);

			memcpy(&x[k], &u, 4);
		}
		p->windows[i] = x;
	}
	if (at != len) {
		*err = g_strdup_printf("%s: %zu bytes after the last of %u parts", path,
				       (size_t)(len - at), p->n);
		goto fail;
	}
	return p;
short_file:
	*err = g_strdup_printf("%s: ends inside a part (%u parts declared)", path, p->n);
fail:
	raw_parts_free(p);
	return NULL;
}

/* Each part's model inputs by fusion/ on the CPU, as vigil-eval computes
 * them: n images of the package's size and n feature vectors. */
static int raw_parts_prepare(const struct raw_parts *p, const struct infer_info *in,
			     float *img, float *sig, char **err)
{
	size_t npix = (size_t)in->input_width * in->input_height;
	fusion_sigfeat *sf = fusion_sigfeat_new(p->window, in->rate_hz);
	int rc = 0;

	if (!sf || fusion_sigfeat_dim(sf) != (size_t)in->signal_dim) {
		*err = g_strdup_printf("the package wants %d signal features; this build computes "
				       "%zu", in->signal_dim, sf ? fusion_sigfeat_dim(sf) : 0);
		rc = -EINVAL;
	}
	for (guint i = 0; i < p->n && rc == 0; i++) {
		const struct infer_frame *f = &p->frames[i];

		rc = fusion_image_input(in->image, f->data, f->width, f->height, f->stride,
					img + i * npix);
		if (rc == 0)
			rc = fusion_sigfeat_compute(sf, p->windows[i], sig + (size_t)i * in->signal_dim);
		if (rc < 0)
			*err = g_strdup_printf("part %u: %s", i, g_strerror(-rc));
	}
	fusion_sigfeat_free(sf);
	return rc;
}

/* Parts [first, first + n) of the file into the batch arrays: copies of
 * the prepared inputs, or the raw frames and windows. */
static void take_parts(const struct raw_parts *p, guint first, int n, int raw, size_t npix,
		       int dim, const float *pimg, const float *psig, float *img, float *sig,
		       struct infer_frame *frames, const float **windows)
{
	for (int b = 0; b < n; b++) {
		guint i = (first + (guint)b) % p->n;

		if (raw) {
			frames[b] = p->frames[i];
			windows[b] = p->windows[i];
		} else {
			memcpy(img + b * npix, pimg + i * npix, npix * sizeof *img);
			memcpy(sig + (size_t)b * dim, psig + (size_t)i * dim, (size_t)dim * sizeof *sig);
		}
	}
}

/* A package with [dark]: what its dark-residual score costs a frame on
 * the CPU, beside the modules (the raw path's figures include it, the
 * prepared path's do not; vigild computes it in the acquire thread).
 * real's frames, or a noise frame of w x h. 0 or -1 with *err. */
static int time_dark(infer_model *m, const struct raw_parts *real, int w, int h, int reps,
		     char **err)
{
	double *lat = g_new(double, reps);
	uint8_t *noise = NULL;
	struct infer_frame f;
	float dark;

	if (!real) {
		GRand *r = g_rand_new_with_seed(5);

		noise = g_new(uint8_t, (gsize)w * (gsize)h);
		for (int i = 0; i < w * h; i++)
			noise[i] = (uint8_t)g_rand_int_range(r, 60, 200);
		g_rand_free(r);
		f = (struct infer_frame){ noise, w, h, w };
	}
	for (int i = 0; i < reps + 3; i++) {
		gint64 t0;

		if (real)
			f = real->frames[(guint)i % real->n];
		t0 = g_get_monotonic_time();
		if (infer_model_dark(m, &f, &dark) < 0) {
			*err = g_strdup_printf("a %dx%d frame cannot be scored for [dark]", f.width,
					       f.height);
			g_free(lat);
			g_free(noise);
			return -1;
		}
		if (i >= 3)
			lat[i - 3] = (double)(g_get_monotonic_time() - t0) / 1000.0;
	}
	printf("# dark: the [dark] score p50_ms=%.3f p99_ms=%.3f a frame (%s)\n",
	       percentile(lat, reps, 0.5), percentile(lat, reps, 0.99),
	       real ? "the parts' frames" : "a noise frame");
	g_free(lat);
	g_free(noise);
	return 0;
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

static int run_parts(infer_model *m, int raw, int n, float *img, float *sig,
		     const struct infer_frame *frames, const float *const *windows,
		     struct infer_output *out, char **err)
{
	return raw ? infer_model_run_raw(m, n, frames, windows, out, err)
		   : infer_model_run_batch(m, n, img, sig, out, err);
}

/* --scores: every part once, in file order. */
static int write_scores(infer_model *m, const struct raw_parts *p, int batch, int raw,
			const float *pimg, const float *psig, float *img, float *sig,
			struct infer_frame *frames, const float **windows,
			struct infer_output *out, const char *path, char **err)
{
	const struct infer_info *in = infer_model_info(m);
	size_t npix = (size_t)in->input_width * in->input_height;
	GString *csv = g_string_new("part,score,vision_score,signal_score,verdict\n");
	GError *gerr = NULL;
	int rc = 0;

	for (guint i = 0; i < p->n && rc == 0; i += (guint)batch) {
		int b = (int)MIN((guint)batch, p->n - i);

		take_parts(p, i, b, raw, npix, in->signal_dim, pimg, psig, img, sig, frames, windows);
		rc = run_parts(m, raw, b, img, sig, frames, windows, out, err);
		/* Prepared inputs: the [dark] score from the part's frame, as
		 * vigild joins it (infer_model_run_raw does it itself). */
		for (int k = 0; k < b && rc == 0 && !raw; k++) {
			float dark;

			if ((rc = infer_model_dark(m, &p->frames[i + (guint)k], &dark)) < 0)
				*err = g_strdup_printf("part %u: its frame cannot be scored for [dark]",
						       i + (guint)k);
			else
				infer_model_join_dark(m, dark, &out[k]);
		}
		for (int k = 0; k < b && rc == 0; k++)
			g_string_append_printf(csv, "%u,%.7g,%.7g,%.7g,%s\n", i + k, out[k].score,
					       out[k].vision_score, out[k].signal_score,
					       vigil_verdict_name(out[k].verdict));
	}
	if (rc == 0 && !g_file_set_contents(path, csv->str, (gssize)csv->len, &gerr)) {
		*err = g_strdup(gerr->message);
		g_error_free(gerr);
		rc = -EIO;
	}
	g_string_free(csv, TRUE);
	return rc;
}

int main(int argc, char **argv)
{
	const char *pos[4] = { NULL, NULL, NULL, NULL };
	int sizes[MAX_SIZES], nsizes = 0, npos = 0, parts, max_batch, most = 1, raw = 0;
	enum { RAW_W = 640, RAW_H = 480 };
	uint8_t *frame = NULL;
	float *window = NULL, *pimg = NULL, *psig = NULL;
	struct infer_frame *frames = NULL;
	const float **windows = NULL;
	double best_rate = 0;
	const char *prec_name = "fp32", *parts_path = NULL, *scores_path = NULL;
	enum infer_precision prec = INFER_FP32;
	struct raw_parts *real = NULL;
	int best_batch = 1, rc = 1, threads = 0;
	char *err = NULL;
	const struct infer_info *in;
	struct infer_output *out = NULL;
	infer_model *m;
	float *img = NULL, *sig = NULL;
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
		} else if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc) {
			threads = atoi(argv[++i]);
			if (threads < 0) {
				fprintf(stderr, "infer-bench: --threads wants a count, 0 for the "
					"libraries' own\n");
				return 2;
			}
		} else if (strcmp(argv[i], "--parts") == 0 && i + 1 < argc) {
			parts_path = argv[++i];
		} else if (strcmp(argv[i], "--scores") == 0 && i + 1 < argc) {
			scores_path = argv[++i];
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
	if (npos < 2 || npos > 4 || parts < 10 || max_batch < 1 || (scores_path && !parts_path)) {
		fprintf(stderr, "usage: infer-bench PACKAGE_DIR BACKEND [PARTS>=10] [MAX_BATCH] "
			"[--batch B1,B2,...] [--raw] [--precision P] [--threads N] "
			"[--parts FILE [--scores CSV]]\n");
		return 2;
	}
	if (nsizes == 0)
		for (int b = 1; b <= max_batch && nsizes < MAX_SIZES; b *= 2)
			sizes[nsizes++] = b;
	for (int k = 0; k < nsizes; k++)
		most = MAX(most, sizes[k]);

	{
		gint64 t0 = g_get_monotonic_time();

		m = infer_model_open(pos[0], pos[1], prec, threads, &err, NULL);
		if (!m) {
			fprintf(stderr, "infer-bench: %s\n", err);
			g_free(err);
			return 1;
		}
		/* auto's choice and what it cost (the load included) */
		if (strcmp(pos[1], INFER_BACKEND_AUTO) == 0)
			printf("# auto: backend %s (%s); load %.0f ms\n", infer_model_backend(m),
			       infer_model_choice(m), (double)(g_get_monotonic_time() - t0) / 1000.0);
	}
	in = infer_model_info(m);
	npix = (size_t)in->input_width * in->input_height;
	img = g_new(float, npix * (size_t)most);
	sig = g_new(float, (size_t)in->signal_dim * most);
	out = g_new(struct infer_output, most);
	frames = g_new(struct infer_frame, most);
	windows = g_new(const float *, most);
	fill(img, npix * (size_t)most, 1);
	fill(sig, (size_t)in->signal_dim * most, 2);
	if (parts_path) {
		real = raw_parts_load(parts_path, &err);
		if (!real) {
			fprintf(stderr, "infer-bench: --parts: %s\n", err);
			goto done;
		}
		if (real->window != (size_t)in->window) {
			fprintf(stderr, "infer-bench: --parts: %s has windows of %zu samples, package "
				"%s takes %d\n", parts_path, real->window, in->name, in->window);
			goto done;
		}
		if (!raw) {
			pimg = g_new(float, npix * real->n);
			psig = g_new(float, (size_t)in->signal_dim * real->n);
			if (raw_parts_prepare(real, in, pimg, psig, &err) < 0) {
				fprintf(stderr, "infer-bench: --parts: %s: %s\n", parts_path, err);
				goto done;
			}
		}
		if (scores_path && write_scores(m, real, sizes[0], raw, pimg, psig, img, sig, frames,
						windows, out, scores_path, &err) < 0) {
			fprintf(stderr, "infer-bench: --scores: %s\n", err);
			goto done;
		}
	} else if (raw) {
		GRand *r = g_rand_new_with_seed(3);

		frame = g_new(uint8_t, RAW_W * RAW_H);
		for (int i = 0; i < RAW_W * RAW_H; i++)
			frame[i] = (uint8_t)g_rand_int_range(r, 60, 200);
		g_rand_free(r);
		window = g_new(float, (size_t)in->window * most);
		fill(window, (size_t)in->window * most, 4);
		for (int i = 0; i < most; i++) {
			frames[i] = (struct infer_frame){ frame, RAW_W, RAW_H, RAW_W };
			windows[i] = window + (size_t)i * in->window;  /* a part's own */
		}
	}

	for (int k = 0; k < nsizes; k++) {
		int batch = sizes[k], reps = parts / batch < 10 ? 10 : parts / batch;
		double *lat = g_new(double, reps), total = 0, rate;

		for (int i = 0; i < reps + 5; i++) {
			gint64 t0;

			if (real)
				take_parts(real, (guint)i * (guint)batch, batch, raw, npix,
					   in->signal_dim, pimg, psig, img, sig, frames, windows);
			t0 = g_get_monotonic_time();
			if (run_parts(m, raw, batch, img, sig, frames, windows, out, &err) < 0) {
				fprintf(stderr, "infer-bench: batch %d: %s\n", batch, err);
				g_free(lat);
				goto done;
			}
			if (i >= 5) {
				lat[i - 5] = (double)(g_get_monotonic_time() - t0) / 1000.0;
				total += lat[i - 5];
			}
		}
		rate = reps * batch / (total / 1000.0);
		printf("backend=%s precision=%s package=%s%s%s batch=%d p50_ms=%.3f p99_ms=%.3f "
		       "parts_per_s=%.1f\n", pos[1], prec_name, in->name, raw ? " raw=1" : "",
		       real ? " parts=real" : "", batch, percentile(lat, reps, 0.5),
		       percentile(lat, reps, 0.99), rate);
		fflush(stdout);
		if (rate > best_rate) {
			best_rate = rate;
			best_batch = batch;
		}
		g_free(lat);
	}
	if (infer_model_info(m)->dark && time_dark(m, real, RAW_W, RAW_H, parts, &err) < 0) {
		fprintf(stderr, "infer-bench: %s\n", err);
		goto done;
	}
	printf("backend=%s precision=%s package=%s%s%s best_batch=%d parts_per_s=%.1f\n", pos[1],
	       prec_name, in->name, raw ? " raw=1" : "", real ? " parts=real" : "", best_batch,
	       best_rate);
	rc = 0;
done:
	infer_model_free(m);
	raw_parts_free(real);
	g_free(out);
	g_free(frame);
	g_free(window);
	g_free(frames);
	g_free(windows);
	g_free(img);
	g_free(sig);
	g_free(pimg);
	g_free(psig);
	g_free(err);
	return rc;
}
