/* vigil-calibrate: the int8 calibration of a model package
 * (docs/inference-engine.md), measured on parts of a line manifest with
 * the C runtime vigild uses (fusion/ for the inputs, the reference
 * executor in float32 for the modules), written beside the manifest as
 * calibration-int8.ini.
 *
 *   vigil-calibrate --manifest CSV [--data-root DIR] [--split NAME] --model DIR
 *                   [--parts N] [--range max|percentile] [--percentile P]
 *
 * --parts takes N rows spread evenly over the manifest (after --split),
 * all when N is 0 or larger than the manifest. A folder of synthetic parts
 * from `vigil-sim generate` is such a manifest (its parts.csv). */
#include <glib.h>
#include <stdio.h>
#include <string.h>

#include "fusion/fusion.h"
#include "inference/inference.h"
#include "tools/manifest.h"
#include "tools/tool-common.h"

int main(int argc, char **argv)
{
	char *manifest = NULL, *root = NULL, *split = NULL, *model_dir = NULL, *range = NULL;
	char *err = NULL, *note = NULL;
	int parts = 200;
	double percentile = 99.99;
	GOptionEntry entries[] = {
		{ "model", 0, 0, G_OPTION_ARG_FILENAME, &model_dir, "Model package folder", "DIR" },
		{ "parts", 0, 0, G_OPTION_ARG_INT, &parts, "Calibration parts, spread evenly (200; 0: all)", "N" },
		{ "range", 0, 0, G_OPTION_ARG_STRING, &range,
		  "Activation range: max or percentile (max)", "HOW" },
		{ "percentile", 0, 0, G_OPTION_ARG_DOUBLE, &percentile,
		  "Percentile of |x| for --range percentile (99.99)", "P" },
		{ NULL, 0, 0, 0, NULL, NULL, NULL },
	};
	GOptionContext *ctx = g_option_context_new("- int8 calibration of a model package");
	GArray *rows = NULL;
	infer_calibrator *cal = NULL;
	infer_model *model = NULL;
	const struct infer_info *in;
	struct manifest_inputs inputs = { 0 };
	float *img_in = NULL, *sig = NULL;
	enum infer_range how = INFER_RANGE_MAX;
	guint n;
	int rc = 1;

	manifest_add_options(ctx, &manifest, &root, &split);
	if (tool_options_parse(ctx, entries, "vigil-calibrate", &argc, &argv) < 0)
		goto done;
	if (!manifest || !model_dir || parts < 0) {
		fprintf(stderr, "vigil-calibrate: --manifest and --model are required\n");
		goto done;
	}
	if (range && strcmp(range, "percentile") == 0) {
		how = INFER_RANGE_PERCENTILE;
	} else if (range && strcmp(range, "max") != 0) {
		fprintf(stderr, "vigil-calibrate: --range: '%s' is not max or percentile\n", range);
		goto done;
	}
	if (!root)
		root = g_path_get_dirname(manifest);
	rows = manifest_load(manifest, split, &err);
	if (!rows) {
		fprintf(stderr, "vigil-calibrate: %s\n", err);
		goto done;
	}
	cal = infer_calibrator_new(model_dir, how, percentile, &err);
	/* a second load for the package's input geometry, as vigil-eval's */
	model = cal ? infer_model_load(model_dir, "opencv", &err, NULL) : NULL;
	if (!model) {
		fprintf(stderr, "vigil-calibrate: %s\n", err);
		goto done;
	}
	in = infer_model_info(model);
	if (manifest_inputs_for_package(in, &inputs, &err) < 0) {
		fprintf(stderr, "vigil-calibrate: %s\n", err);
		goto done;
	}
	img_in = g_new(float, (gsize)in->input_width * in->input_height);
	sig = g_new(float, in->signal_dim);
	n = parts == 0 || (guint)parts > rows->len ? rows->len : (guint)parts;
	fprintf(stderr, "vigil-calibrate: %u of %u parts of %s%s%s, model %s (%s)\n", n,
		rows->len, manifest, split ? ", split " : "", split ? split : "", in->name,
		in->version);
	for (guint i = 0; i < n; i++) {
		const struct manifest_row *r =
			&g_array_index(rows, struct manifest_row, (guint64)i * rows->len / n);

		if (manifest_row_prepare(root, r, &inputs, img_in, sig, &err) < 0 ||
		    infer_calibrator_add(cal, img_in, sig, &err) < 0) {
			fprintf(stderr, "vigil-calibrate: %s:%d: %s\n", manifest, r->line, err);
			goto done;
		}
	}
	{
		char p[G_ASCII_DTOSTR_BUF_SIZE];

		note = g_strdup_printf("vigil-calibrate --manifest %s --split %s --parts %u "
				       "--range %s%s%s", manifest, split ? split : "(all)", n,
				       how == INFER_RANGE_MAX ? "max" : "percentile",
				       how == INFER_RANGE_MAX ? "" : " --percentile ",
				       how == INFER_RANGE_MAX ? ""
				       : g_ascii_dtostr(p, sizeof p, percentile));
	}
	if (infer_calibrator_write(cal, note, &err) < 0) {
		fprintf(stderr, "vigil-calibrate: %s\n", err);
		goto done;
	}
	fprintf(stderr, "vigil-calibrate: wrote %s/%s\n", model_dir, INFER_CALIB_FILE);
	rc = 0;
done:
	g_free(img_in);
	g_free(sig);
	manifest_inputs_clear(&inputs);
	infer_model_free(model);
	infer_calibrator_free(cal);
	manifest_free(rows);
	g_free(err);
	g_free(note);
	g_free(manifest);
	g_free(root);
	g_free(split);
	g_free(model_dir);
	g_free(range);
	g_option_context_free(ctx);
	return rc;
}
