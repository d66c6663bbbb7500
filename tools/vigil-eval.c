/* vigil-eval: judges a model package on a line manifest with the C runtime
 * vigild uses (fusion/ for the inputs, inference/ for the modules).
 *
 *   vigil-eval --manifest CSV [--data-root DIR] [--split NAME] --model DIR
 *              --json OUT [--scores CSV] [--heatmaps FILE] [--anomaly-maps FILE]
 *              [--backend opencv]
 *              [--precision fp32|fp16|bf16|int8]
 *
 * The manifest needs the columns image, vibration, vib_start, vib_len,
 * image_class, vib_class and defect (docs/model.md). The JSON holds, for
 * the fused score and for each modality's own score:
 *
 *   auroc                    ties count one half
 *   escape_rate_at_frr_1pct  defective parts accepted when the threshold is
 *                            the lowest that rejects at most 1 % of the good
 *                            parts
 *   escape_rate              at the package's operating point: defective
 *                            parts accepted (a marginal verdict is not an
 *                            escape: the part leaves the line for review)
 *   false_reject_rate        good parts rejected or marginal (a marginal
 *                            verdict costs a manual check)
 *   false_reject_upper95     the one-sided 95 % Clopper-Pearson upper
 *                            bound on that rate for unseen good parts
 *                            (escape_upper95 likewise for escapes)
 *   flagged_good_at_full_recall
 *                            good parts scoring at or above the lowest
 *                            defective score: the parts a threshold that
 *                            lets no defect through sends off the line
 *   marginal_rate            (fused) share of all parts marginal, sent to
 *                            a manual check
 *
 * escapes_by_class counts, per image_class and per vib_class, the
 * defective parts of that class and those the fused verdict accepted.
 *
 * "Good" is defect == 0 throughout. vision_only judges the vision score on
 * the parts with a surface defect (image_class != free) against the good
 * parts, at the [thresholds] vision threshold; signal_only the signal
 * score on the parts with a bearing fault (vib_class != normal), at the
 * signal threshold; each also gives the fused escape rate on its parts.
 * confusion counts the fused verdicts by image_class and vib_class.
 *
 * --heatmaps writes the defect map of every part (a package with a
 * [vision] heatmap_output), little-endian: "VGH1", uint32 N, uint32 W,
 * uint32 H, then per part W*H float32, row-major; train.py --maps-out
 * writes torch's in the same layout. --anomaly-maps writes a fused
 * package's anomaly maps ([vision] anomaly_map_output) the same way. */
#include <errno.h>
#include <glib.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fusion/fusion.h"
#include "inference/inference.h"
#include "tools/manifest.h"
#include "tools/tool-common.h"

struct judged {
	float score, vision_score, signal_score;
	enum vigil_verdict verdict;
	gboolean defect, surface, bearing;
};

/* Which score and which subset of parts a block of figures is about. */
enum view { VIEW_FUSED, VIEW_VISION, VIEW_SIGNAL };

static float view_score(const struct judged *j, enum view v)
{
	return v == VIEW_VISION ? j->vision_score : v == VIEW_SIGNAL ? j->signal_score : j->score;
}

/* Positive parts of a view; good parts (defect == 0) are the negatives of
 * every view, and a part that is neither is left out. */
static int view_label(const struct judged *j, enum view v)
{
	if (!j->defect)
		return 0;
	if (v == VIEW_FUSED || (v == VIEW_VISION && j->surface) || (v == VIEW_SIGNAL && j->bearing))
		return 1;
	return -1;
}

static int cmp_float(const void *a, const void *b)
{
	float x = *(const float *)a, y = *(const float *)b;

	return (x > y) - (x < y);
}

struct figures {
	guint parts, defective, good;
	double auroc;
	double escape_at_frr_1pct, threshold_at_frr_1pct;
	guint escapes, false_rejects, marginal_good, marginal_defective;
	double escape_rate, false_reject_rate;
	double escape_upper95, false_reject_upper95; /* rate_upper_bound() */
	double fused_escape_rate;   /* views other than fused: the fused verdict's escapes */
	guint flagged_good_full_recall; /* good parts scoring >= the lowest defective score */
	double marginal_rate;       /* fused: marginal parts among all */
};

/* The one-sided Clopper-Pearson upper bound on a rate seen k times in n:
 * the p at which k or fewer would be seen with probability 1 - confidence,
 * found by bisection on the binomial CDF (summed in logs, so n may be
 * large). It is what a calibration set of n good parts with k false
 * rejects promises about unseen ones (tools/train_package.py
 * rate_upper_bound computes the same). */
static double rate_upper_bound(guint k, guint n, double confidence)
{
	double lo, hi = 1;

	if (n == 0 || k >= n)
		return 1;
	lo = (double)k / n;
	for (int it = 0; it < 60; it++) {
		double mid = (lo + hi) / 2, cdf = 0;

		for (guint i = 0; i <= k; i++)
			cdf += exp(lgamma(n + 1.0) - lgamma(i + 1.0) - lgamma(n - i + 1.0) +
				   i * log(mid) + (n - i) * log1p(-mid));
		if (cdf > 1 - confidence)
			lo = mid;
		else
			hi = mid;
	}
	return hi;
}

static void compute(const struct judged *parts, guint n, enum view v, float threshold,
		    struct figures *f)
{
	float *pos = g_new(float, n), *neg = g_new(float, n);
	guint np = 0, nn = 0, fused_escapes = 0, k;
	double wins = 0;

	memset(f, 0, sizeof *f);
	for (guint i = 0; i < n; i++) {
		const struct judged *j = &parts[i];
		int label = view_label(j, v);
		float s = view_score(j, v);
		gboolean flagged;

		if (label < 0)
			continue;
		if (label)
			pos[np++] = s;
		else
			neg[nn++] = s;
		/* The fused view uses the verdict; a modality its own threshold. */
		if (v == VIEW_FUSED) {
			if (label && j->verdict == VIGIL_VERDICT_ACCEPT)
				f->escapes++;
			if (!label && j->verdict != VIGIL_VERDICT_ACCEPT)
				f->false_rejects++;
			if (j->verdict == VIGIL_VERDICT_MARGINAL)
				(label ? f->marginal_defective++ : f->marginal_good++);
		} else {
			flagged = s >= threshold;
			if (label && !flagged)
				f->escapes++;
			if (!label && flagged)
				f->false_rejects++;
			if (label && j->verdict == VIGIL_VERDICT_ACCEPT)
				fused_escapes++;
		}
	}
	f->parts = np + nn;
	f->defective = np;
	f->good = nn;

	/* AUROC as the Mann-Whitney statistic over both sides sorted. */
	qsort(pos, np, sizeof *pos, cmp_float);
	qsort(neg, nn, sizeof *neg, cmp_float);
	for (guint pi = 0, lo = 0; pi < np; pi++) {
		guint hi;

		while (lo < nn && neg[lo] < pos[pi])
			lo++;
		for (hi = lo; hi < nn && neg[hi] == pos[pi]; hi++)
			;
		wins += lo + 0.5 * (hi - lo);
	}
	f->auroc = (np && nn) ? wins / ((double)np * nn) : NAN;

	/* The lowest threshold that rejects at most 1 % of the good parts:
	 * reject s > neg[nn - 1 - k], k the number of false rejects allowed. */
	k = (guint)floor(0.01 * nn);
	f->threshold_at_frr_1pct = k < nn ? neg[nn - 1 - k] : -INFINITY;
	if (np) {
		guint esc = 0;

		for (guint i = 0; i < np; i++)
			esc += !(pos[i] > f->threshold_at_frr_1pct);
		f->escape_at_frr_1pct = (double)esc / np;
	}
	/* pos[0] is the lowest defective score: a threshold at it or below
	 * catches every defect and flags the good parts from there up. */
	for (guint i = 0; np && i < nn; i++)
		f->flagged_good_full_recall += neg[i] >= pos[0];
	f->escape_rate = np ? (double)f->escapes / np : 0;
	f->false_reject_rate = nn ? (double)f->false_rejects / nn : 0;
	f->escape_upper95 = rate_upper_bound(f->escapes, np, 0.95);
	f->false_reject_upper95 = rate_upper_bound(f->false_rejects, nn, 0.95);
	f->marginal_rate = f->parts ? (double)(f->marginal_good + f->marginal_defective) / f->parts
				    : 0;
	f->fused_escape_rate = np ? (double)fused_escapes / np : 0;
	g_free(pos);
	g_free(neg);
}

static void json_number(GString *s, double v)
{
	if (isfinite(v))
		g_string_append_printf(s, "%.6g", v);
	else
		g_string_append(s, "null");
}

static void json_string(GString *s, const char *v)
{
	g_string_append_c(s, '"');
	for (const char *p = v; *p; p++) {
		if (*p == '"' || *p == '\\')
			g_string_append_printf(s, "\\%c", *p);
		else if ((unsigned char)*p < 0x20)
			g_string_append_printf(s, "\\u%04x", *p);
		else
			g_string_append_c(s, *p);
	}
	g_string_append_c(s, '"');
}

static void json_figures(GString *s, const char *indent, const struct figures *f,
			 enum view v, float threshold)
{
	g_string_append_printf(s, "{\n%s  \"score\": \"%s\",\n", indent,
			       v == VIEW_FUSED ? "fused" : v == VIEW_VISION ? "vision" : "signal");
	g_string_append_printf(s, "%s  \"parts\": %u,\n%s  \"defective\": %u,\n%s  \"good\": %u,\n",
			       indent, f->parts, indent, f->defective, indent, f->good);
	g_string_append_printf(s, "%s  \"auroc\": ", indent);
	json_number(s, f->auroc);
	g_string_append_printf(s, ",\n%s  \"escape_rate_at_frr_1pct\": ", indent);
	json_number(s, f->escape_at_frr_1pct);
	g_string_append_printf(s, ",\n%s  \"threshold_at_frr_1pct\": ", indent);
	json_number(s, f->threshold_at_frr_1pct);
	g_string_append_printf(s, ",\n%s  \"escape_rate\": ", indent);
	json_number(s, f->escape_rate);
	g_string_append_printf(s, ",\n%s  \"false_reject_rate\": ", indent);
	json_number(s, f->false_reject_rate);
	g_string_append_printf(s, ",\n%s  \"escape_upper95\": ", indent);
	json_number(s, f->escape_upper95);
	g_string_append_printf(s, ",\n%s  \"false_reject_upper95\": ", indent);
	json_number(s, f->false_reject_upper95);
	g_string_append_printf(s, ",\n%s  \"escapes\": %u,\n%s  \"false_rejects\": %u", indent,
			       f->escapes, indent, f->false_rejects);
	g_string_append_printf(s, ",\n%s  \"flagged_good_at_full_recall\": %u", indent,
			       f->flagged_good_full_recall);
	if (v == VIEW_FUSED) {
		g_string_append_printf(s, ",\n%s  \"marginal_good\": %u,\n%s  "
				       "\"marginal_defective\": %u", indent, f->marginal_good,
				       indent, f->marginal_defective);
		g_string_append_printf(s, ",\n%s  \"marginal_rate\": ", indent);
		json_number(s, f->marginal_rate);
	} else {
		g_string_append_printf(s, ",\n%s  \"threshold\": ", indent);
		json_number(s, threshold);
		g_string_append_printf(s, ",\n%s  \"fused_escape_rate\": ", indent);
		json_number(s, f->fused_escape_rate);
	}
	g_string_append_printf(s, "\n%s}", indent);
}

/* Counts per string key, keys in order of first sight: the confusion
 * table and escapes_by_class both tally parts by class. */
struct tally {
	GPtrArray *keys;     /* owned copies, in order of first sight */
	GHashTable *counts;  /* key (one of keys) -> guint[width], owned */
	guint width;
};

static void tally_init(struct tally *t, guint width)
{
	t->keys = g_ptr_array_new_with_free_func(g_free);
	t->counts = g_hash_table_new_full(g_str_hash, g_str_equal, NULL, g_free);
	t->width = width;
}

/* key's counts, zeroed the first time key is seen (key is copied). */
static guint *tally_counts(struct tally *t, const char *key)
{
	guint *c = g_hash_table_lookup(t->counts, key);

	if (!c) {
		char *own = g_strdup(key);

		c = g_new0(guint, t->width);
		g_ptr_array_add(t->keys, own);
		g_hash_table_insert(t->counts, own, c);
	}
	return c;
}

static void tally_clear(struct tally *t)
{
	g_hash_table_destroy(t->counts);
	g_ptr_array_free(t->keys, TRUE);
}

/* Fused verdicts by image_class and vib_class, in order of first sight. */
static void json_confusion(GString *s, const GArray *rows, const struct judged *parts)
{
	struct tally t;

	tally_init(&t, 5);
	for (guint i = 0; i < rows->len; i++) {
		const struct manifest_row *r = &g_array_index(rows, struct manifest_row, i);
		char *key = g_strdup_printf("%s\t%s", r->image_class, r->vib_class);
		guint *c = tally_counts(&t, key);

		g_free(key);
		c[0]++;
		c[parts[i].verdict == VIGIL_VERDICT_ACCEPT ? 1
		  : parts[i].verdict == VIGIL_VERDICT_MARGINAL ? 2 : 3]++;
		c[4] = parts[i].defect;
	}
	g_string_append(s, "[");
	for (guint i = 0; i < t.keys->len; i++) {
		const char *key = g_ptr_array_index(t.keys, i);
		const guint *c = g_hash_table_lookup(t.counts, key);
		char **pair = g_strsplit(key, "\t", 2);

		g_string_append(s, i ? ",\n    {" : "\n    {");
		g_string_append(s, "\"image_class\": ");
		json_string(s, pair[0]);
		g_string_append(s, ", \"vib_class\": ");
		json_string(s, pair[1]);
		g_string_append_printf(s, ", \"defect\": %u, \"parts\": %u, \"accept\": %u, "
				       "\"marginal\": %u, \"reject\": %u}", c[4], c[0], c[1], c[2],
				       c[3]);
		g_strfreev(pair);
	}
	g_string_append(s, "\n  ]");
	tally_clear(&t);
}

/* One list of escapes_by_class: per class of the column (image_class
 * when image, else vib_class) among the defective parts that have one,
 * in order of first sight, the parts and the fused verdict's escapes and
 * marginal parts. */
static void json_class_escapes(GString *s, const GArray *rows, const struct judged *parts,
			       gboolean image)
{
	struct tally t;

	tally_init(&t, 3);
	for (guint i = 0; i < rows->len; i++) {
		const struct manifest_row *r = &g_array_index(rows, struct manifest_row, i);
		guint *c;

		if (!parts[i].defect || !(image ? parts[i].surface : parts[i].bearing))
			continue;
		c = tally_counts(&t, image ? r->image_class : r->vib_class);
		c[0]++;
		c[1] += parts[i].verdict == VIGIL_VERDICT_ACCEPT;
		c[2] += parts[i].verdict == VIGIL_VERDICT_MARGINAL;
	}
	g_string_append(s, "[");
	for (guint i = 0; i < t.keys->len; i++) {
		const char *name = g_ptr_array_index(t.keys, i);
		const guint *c = g_hash_table_lookup(t.counts, name);

		g_string_append(s, i ? ",\n      {\"class\": " : "\n      {\"class\": ");
		json_string(s, name);
		g_string_append_printf(s, ", \"defective\": %u, \"escapes\": %u, \"marginal\": %u, "
				       "\"escape_rate\": ", c[0], c[1], c[2]);
		json_number(s, (double)c[1] / c[0]);
		g_string_append(s, "}");
	}
	g_string_append(s, t.keys->len ? "\n    ]" : "]");
	tally_clear(&t);
}

/* A maps file's header, for n parts of w x h (the --heatmaps layout). */
static GByteArray *maps_new(guint n, int w, int h)
{
	guint32 head[3] = { GUINT32_TO_LE(n), GUINT32_TO_LE((guint32)w),
			    GUINT32_TO_LE((guint32)h) };
	GByteArray *a = g_byte_array_new();

	g_byte_array_append(a, (const guint8 *)"VGH1", 4);
	g_byte_array_append(a, (const guint8 *)head, sizeof head);
	return a;
}

static void maps_append(GByteArray *a, const float *map, int cells)
{
	for (int k = 0; k < cells; k++) {
		guint32 u;

		memcpy(&u, &map[k], 4);
		u = GUINT32_TO_LE(u);
		g_byte_array_append(a, (const guint8 *)&u, 4);
	}
}

int main(int argc, char **argv)
{
	char *manifest = NULL, *root = NULL, *split = NULL, *model_dir = NULL, *json_path = NULL;
	char *scores_path = NULL, *heatmaps_path = NULL, *backend = NULL, *err = NULL;
	char *anomaly_path = NULL;
	char *precision = NULL;
	enum infer_precision prec = INFER_FP32;
	GOptionEntry entries[] = {
		{ "model", 0, 0, G_OPTION_ARG_FILENAME, &model_dir, "Model package folder", "DIR" },
		{ "json", 0, 0, G_OPTION_ARG_FILENAME, &json_path, "Write the figures here", "OUT" },
		{ "scores", 0, 0, G_OPTION_ARG_FILENAME, &scores_path,
		  "Also write every part's scores and verdict as CSV", "CSV" },
		{ "heatmaps", 0, 0, G_OPTION_ARG_FILENAME, &heatmaps_path,
		  "Also write every part's defect map (VGH1, float32)", "FILE" },
		{ "anomaly-maps", 0, 0, G_OPTION_ARG_FILENAME, &anomaly_path,
		  "Also write a fused package's anomaly maps (VGH1, float32)", "FILE" },
		{ "backend", 0, 0, G_OPTION_ARG_STRING, &backend, "Inference backend (opencv)", "NAME" },
		{ "precision", 0, 0, G_OPTION_ARG_STRING, &precision,
		  "fp32, fp16, bf16 or int8 (fp32; int8 needs the package's calibration)", "NAME" },
		{ NULL, 0, 0, 0, NULL, NULL, NULL },
	};
	GOptionContext *ctx = g_option_context_new("- judge a model package on a line manifest");
	GArray *rows = NULL;
	infer_model *model = NULL;
	const struct infer_info *in;
	struct manifest_inputs inputs = { 0 };
	struct judged *parts = NULL;
	float *img_in = NULL, *sig = NULL;
	GString *js = NULL, *csv = NULL;
	GByteArray *maps = NULL, *amaps = NULL;
	GError *gerr = NULL;
	struct figures f;
	gint64 t0 = g_get_monotonic_time();
	int rc = 1;

	manifest_add_options(ctx, &manifest, &root, &split);
	if (tool_options_parse(ctx, entries, "vigil-eval", &argc, &argv) < 0)
		goto done;
	if (!manifest || !model_dir || !json_path) {
		fprintf(stderr, "vigil-eval: --manifest, --model and --json are required\n");
		goto done;
	}
	if (!root)
		root = g_path_get_dirname(manifest);
	rows = manifest_load(manifest, split, &err);
	if (!rows) {
		fprintf(stderr, "vigil-eval: %s\n", err);
		goto done;
	}
	{
		const struct manifest_row *r0 = &g_array_index(rows, struct manifest_row, 0);

		if (!r0->image_class || !r0->vib_class || r0->defect < 0) {
			fprintf(stderr, "vigil-eval: %s:1: the header needs image_class, vib_class "
					"and defect columns\n", manifest);
			goto done;
		}
	}
	if (precision && infer_precision_parse(precision, &prec) < 0) {
		fprintf(stderr, "vigil-eval: --precision: '%s' is not fp32, fp16, bf16 or int8\n",
			precision);
		goto done;
	}
	model = infer_model_load_at(model_dir, backend ? backend : "opencv", prec, &err, NULL);
	if (!model) {
		fprintf(stderr, "vigil-eval: %s\n", err);
		goto done;
	}
	in = infer_model_info(model);
	if (manifest_inputs_for_package(in, &inputs, &err) < 0) {
		fprintf(stderr, "vigil-eval: %s\n", err);
		goto done;
	}
	img_in = g_new(float, (gsize)in->input_width * in->input_height);
	sig = g_new(float, in->signal_dim);
	parts = g_new0(struct judged, rows->len);
	if (heatmaps_path) {
		if (!in->heatmap_width) {
			fprintf(stderr, "vigil-eval: --heatmaps: package %s has no defect map "
					"([vision] heatmap_output)\n", model_dir);
			goto done;
		}
		maps = maps_new(rows->len, in->heatmap_width, in->heatmap_height);
	}
	if (anomaly_path) {
		if (!in->anomaly_map) {
			fprintf(stderr, "vigil-eval: --anomaly-maps: package %s has no anomaly map "
					"([vision] anomaly_map_output, a fused package)\n",
				model_dir);
			goto done;
		}
		amaps = maps_new(rows->len, in->heatmap_width, in->heatmap_height);
	}
	if (scores_path)
		csv = g_string_new("part_id,image_class,vib_class,defect,score,vision_score,"
				   "signal_score,verdict,dark\n");

	fprintf(stderr, "vigil-eval: %u parts of %s%s%s, model %s (%s)\n", rows->len, manifest,
		split ? ", split " : "", split ? split : "", in->name, in->version);
	for (guint i = 0; i < rows->len; i++) {
		const struct manifest_row *r = &g_array_index(rows, struct manifest_row, i);
		struct judged *j = &parts[i];
		struct infer_output o;
		float dark;

		if (manifest_row_prepare_dark(root, r, &inputs, img_in, sig, &dark, &err) < 0 ||
		    infer_model_run(model, img_in, sig, &o, &err) < 0) {
			fprintf(stderr, "vigil-eval: %s:%d: %s\n", manifest, r->line, err);
			goto done;
		}
		infer_model_join_dark(model, dark, &o);
		if (maps || amaps) {
			if (!o.heatmap || o.heatmap_w != in->heatmap_width ||
			    o.heatmap_h != in->heatmap_height || (amaps && !o.anomaly_map)) {
				fprintf(stderr, "vigil-eval: %s:%d: the model gave no %dx%d %s "
						"map\n", manifest, r->line, in->heatmap_width,
					in->heatmap_height, o.heatmap ? "anomaly" : "defect");
				goto done;
			}
			if (maps)
				maps_append(maps, o.heatmap, o.heatmap_w * o.heatmap_h);
			if (amaps)
				maps_append(amaps, o.anomaly_map, o.heatmap_w * o.heatmap_h);
		}
		j->score = o.score;
		j->vision_score = o.vision_score;
		j->signal_score = o.signal_score;
		j->verdict = o.verdict;
		j->defect = r->defect == 1;
		j->surface = strcmp(r->image_class, "free") != 0;
		j->bearing = strcmp(r->vib_class, "normal") != 0;
		if (csv) {
			g_string_append_printf(csv, "%s,%s,%s,%d,%.7g,%.7g,%.7g,%s,",
					       r->part_id ? r->part_id : "", r->image_class,
					       r->vib_class, r->defect, o.score, o.vision_score,
					       o.signal_score, vigil_verdict_name(o.verdict));
			if (isfinite(o.dark))  /* empty for a package without [dark] */
				g_string_append_printf(csv, "%.7g", o.dark);
			g_string_append_c(csv, '\n');
		}
		if ((i + 1) % 200 == 0 || i + 1 == rows->len)
			fprintf(stderr, "vigil-eval: %u/%u parts\n", i + 1, rows->len);
	}

	js = g_string_new("{\n  \"manifest\": ");
	json_string(js, manifest);
	g_string_append(js, ",\n  \"split\": ");
	if (split)
		json_string(js, split);
	else
		g_string_append(js, "null");
	g_string_append(js, ",\n  \"model\": ");
	json_string(js, in->version);
	g_string_append(js, ",\n  \"vision_score\": ");
	json_string(js, infer_vision_score_names[in->vision_score]);
	g_string_append(js, ",\n  \"backend\": ");
	json_string(js, backend ? backend : "opencv");
	g_string_append(js, ",\n  \"precision\": ");
	json_string(js, infer_precision_names[prec]);
	g_string_append(js, ",\n  \"reject\": ");
	json_number(js, in->reject);
	g_string_append(js, ",\n  \"marginal\": ");
	json_number(js, in->marginal);
	g_string_append(js, ",\n  \"counting\": \"a marginal verdict counts as a reject for false "
			"rejects and as not an escape\",\n");
	compute(parts, rows->len, VIEW_FUSED, 0, &f);
	g_string_append_printf(js, "  \"parts\": %u,\n  \"defective\": %u,\n  \"good\": %u,\n",
			       f.parts, f.defective, f.good);
	g_string_append(js, "  \"auroc\": ");
	json_number(js, f.auroc);
	g_string_append(js, ",\n  \"escape_rate_at_frr_1pct\": ");
	json_number(js, f.escape_at_frr_1pct);
	g_string_append(js, ",\n  \"escape_rate\": ");
	json_number(js, f.escape_rate);
	g_string_append(js, ",\n  \"false_reject_rate\": ");
	json_number(js, f.false_reject_rate);
	g_string_append(js, ",\n  \"false_reject_upper95\": ");
	json_number(js, f.false_reject_upper95);
	g_string_append(js, ",\n  \"marginal_rate\": ");
	json_number(js, f.marginal_rate);
	g_string_append_printf(js, ",\n  \"flagged_good_at_full_recall\": %u",
			       f.flagged_good_full_recall);
	g_string_append(js, ",\n  \"fused\": ");
	json_figures(js, "  ", &f, VIEW_FUSED, 0);
	fprintf(stderr, "vigil-eval: fused: AUROC %.4f, escapes at <= 1 %% FRR %.2f %%, at the "
		"operating point escapes %.2f %% false rejects %.2f %% (unseen good parts: at "
		"most %.2f %%, 95 %% confidence) marginal %.2f %% of all parts; %u of %u good "
		"parts flagged to catch every defect\n", f.auroc,
		100 * f.escape_at_frr_1pct, 100 * f.escape_rate, 100 * f.false_reject_rate,
		100 * f.false_reject_upper95,
		100 * f.marginal_rate, f.flagged_good_full_recall, f.good);
	compute(parts, rows->len, VIEW_VISION, in->vision_threshold, &f);
	g_string_append(js, ",\n  \"vision_only\": ");
	json_figures(js, "  ", &f, VIEW_VISION, in->vision_threshold);
	fprintf(stderr, "vigil-eval: vision_only: AUROC %.4f, escapes at <= 1 %% FRR %.2f %%\n",
		f.auroc, 100 * f.escape_at_frr_1pct);
	compute(parts, rows->len, VIEW_SIGNAL, in->signal_threshold, &f);
	g_string_append(js, ",\n  \"signal_only\": ");
	json_figures(js, "  ", &f, VIEW_SIGNAL, in->signal_threshold);
	fprintf(stderr, "vigil-eval: signal_only: AUROC %.4f, escapes at <= 1 %% FRR %.2f %%\n",
		f.auroc, 100 * f.escape_at_frr_1pct);
	g_string_append(js, ",\n  \"escapes_by_class\": {\n    \"image_class\": ");
	json_class_escapes(js, rows, parts, TRUE);
	g_string_append(js, ",\n    \"vib_class\": ");
	json_class_escapes(js, rows, parts, FALSE);
	g_string_append(js, "\n  }");
	g_string_append(js, ",\n  \"confusion\": ");
	json_confusion(js, rows, parts);
	g_string_append_printf(js, ",\n  \"seconds\": %.1f\n}\n",
			       (g_get_monotonic_time() - t0) / 1e6);

	if (!g_file_set_contents(json_path, js->str, (gssize)js->len, &gerr) ||
	    (csv && !g_file_set_contents(scores_path, csv->str, (gssize)csv->len, &gerr)) ||
	    (maps && !g_file_set_contents(heatmaps_path, (const char *)maps->data,
					  (gssize)maps->len, &gerr)) ||
	    (amaps && !g_file_set_contents(anomaly_path, (const char *)amaps->data,
					   (gssize)amaps->len, &gerr))) {
		fprintf(stderr, "vigil-eval: %s\n", gerr->message);
		g_error_free(gerr);
		goto done;
	}
	rc = 0;
done:
	if (js)
		g_string_free(js, TRUE);
	if (csv)
		g_string_free(csv, TRUE);
	if (maps)
		g_byte_array_free(maps, TRUE);
	if (amaps)
		g_byte_array_free(amaps, TRUE);
	g_free(parts);
	g_free(img_in);
	g_free(sig);
	manifest_inputs_clear(&inputs);
	infer_model_free(model);
	manifest_free(rows);
	g_free(err);
	g_free(manifest);
	g_free(root);
	g_free(split);
	g_free(model_dir);
	g_free(json_path);
	g_free(scores_path);
	g_free(heatmaps_path);
	g_free(anomaly_path);
	g_free(backend);
	g_free(precision);
	g_option_context_free(ctx);
	return rc;
}
