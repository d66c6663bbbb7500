/* vigil-features: model inputs for every part of a line manifest, computed
 * by the same fusion/ code vigild runs, for tools/train.py.
 *
 *   vigil-features --manifest CSV [--data-root DIR] [--split NAME]
 *                  --width W --height H [--mean M] [--std S]
 *                  [--window N] [--rate HZ] [--resize stretch|letterbox]
 *                  --out FILE [--masks-out FILE] [--raw-out FILE]
 *
 * The manifest is a parts.csv (docs/model.md): columns found by name in
 * the header, of which image, vibration, vib_start and vib_len are used
 * (split with --split, mask with --masks-out); paths are relative to
 * --data-root (default: the manifest's folder). Images may be any size and
 * format OpenCV reads; vibration files are mono WAV, IEEE float32 (taken as
 * g) or 16-bit PCM (full scale taken as 1 g), at --rate, with any extra
 * chunks skipped.
 *
 * Output, little-endian: "VGF1", uint32 N, uint32 img_floats (W*H),
 * uint32 sig_dim, then per part in manifest order img_floats float32
 * (fusion_image_prepare_resize with --resize, default stretch, as a model
 * manifest's [vision] resize) and sig_dim float32 (fusion_sigfeat_compute).
 *
 * --masks-out: "VGM1", uint32 N, uint32 W*H, then per part W*H float32, the
 * share of each model pixel that the defect mask covers (the mask resized
 * by area averaging and fitted like the image, fusion_image_fit with the
 * uncovered border 0, so 0..1); a row with an empty mask column
 * gives zeros.
 *
 * --raw-out: the parts as a camera and a sensor give them, before any of
 * fusion/'s arithmetic, for infer-bench --parts (a GPU backend prepares
 * them itself): "VGR1", uint32 N, uint32 window, then per part uint32 W,
 * uint32 H, W*H uint8 (the image decoded to gray, row-major) and window
 * float32 (the vibration window, in g). */
#include <errno.h>
#include <glib.h>
#include <glib/gstdio.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cvwrap/cvwrap.h"
#include "fusion/fusion.h"
#include "tools/manifest.h"
#include "tools/tool-common.h"

static int write_floats(FILE *f, const float *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		uint32_t u;

		memcpy(&u, &v[i], 4);
		u = GUINT32_TO_LE(u);
		if (fwrite(&u, 4, 1, f) != 1)
			return -EIO;
	}
	return 0;
}

/* Mask coverage of each model pixel; zeros when the row has no mask. */
static int mask_prepare(const char *root, const struct manifest_row *r, int width, int height,
			enum fusion_resize resize, float *out, char **err)
{
	uint8_t *img = NULL, *small = NULL;
	char *path;
	int w = 0, h = 0, rc;
	size_t n = (size_t)width * (size_t)height;

	if (!r->mask || !r->mask[0]) {
		memset(out, 0, n * sizeof(float));
		return 0;
	}
	path = g_build_filename(root, r->mask, NULL);
	rc = g_file_test(path, G_FILE_TEST_IS_REGULAR) ? cvw_imread_gray(path, &img, &w, &h)
						       : -ENOENT;
	if (rc == 0) {
		small = g_malloc(n);
		rc = fusion_image_fit(img, w, h, w, width, height, resize, 0, small);
	}
	if (rc == 0)
		for (size_t i = 0; i < n; i++)
			out[i] = (float)small[i] / 255.0f;
	else
		*err = g_strdup_printf("%s: %s", path, rc == -ENOENT ? "missing or unreadable mask"
								     : g_strerror(-rc));
	free(img);
	g_free(small);
	g_free(path);
	return rc;
}

static int write_raw(FILE *f, const struct manifest_raw *raw, size_t window)
{
	uint32_t h[2] = { GUINT32_TO_LE((uint32_t)raw->width), GUINT32_TO_LE((uint32_t)raw->height) };
	size_t n = (size_t)raw->width * (size_t)raw->height;

	if (fwrite(h, 4, 2, f) != 2 || fwrite(raw->image, 1, n, f) != n)
		return -EIO;
	return write_floats(f, raw->window, window);
}

/* path's temporary file (*tmp_path, renamed by finish_out), begun with
 * magic and n header words, little-endian; NULL, having said why. */
static FILE *open_out(const char *path, char **tmp_path, const char *magic,
		      const uint32_t *words, size_t n)
{
	FILE *f;

	*tmp_path = g_strconcat(path, ".part", NULL);
	f = fopen(*tmp_path, "wb");
	if (!f) {
		fprintf(stderr, "vigil-features: cannot write %s: %s\n", *tmp_path,
			g_strerror(errno));
		return NULL;
	}
	if (fwrite(magic, 1, 4, f) != 4)
		goto bad;
	for (size_t i = 0; i < n; i++) {
		uint32_t u = GUINT32_TO_LE(words[i]);

		if (fwrite(&u, 4, 1, f) != 1)
			goto bad;
	}
	return f;
bad:
	fprintf(stderr, "vigil-features: writing %s failed\n", *tmp_path);
	fclose(f);
	g_unlink(*tmp_path);
	return NULL;
}

static int finish_out(FILE **f, const char *tmp_path, const char *path)
{
	int bad = fclose(*f) != 0;

	*f = NULL;
	if (bad) {
		fprintf(stderr, "vigil-features: writing %s failed\n", tmp_path);
		return -EIO;
	}
	if (g_rename(tmp_path, path) < 0) {
		fprintf(stderr, "vigil-features: cannot rename %s to %s: %s\n", tmp_path, path,
			g_strerror(errno));
		return -EIO;
	}
	return 0;
}

int main(int argc, char **argv)
{
	char *manifest = NULL, *root = NULL, *split = NULL, *out_path = NULL, *masks_path = NULL;
	char *raw_path = NULL, *raw_tmp = NULL;
	char *tmp_path = NULL, *masks_tmp = NULL, *err = NULL, *resize_name = NULL;
	enum fusion_resize resize = FUSION_RESIZE_STRETCH;
	int width = 0, height = 0, window = 2048;
	double mean = 0.5, std = 0.25, rate = 12000;
	GOptionEntry entries[] = {
		{ "width", 0, 0, G_OPTION_ARG_INT, &width, "Model image width", "W" },
		{ "height", 0, 0, G_OPTION_ARG_INT, &height, "Model image height", "H" },
		{ "mean", 0, 0, G_OPTION_ARG_DOUBLE, &mean, "Image normalisation mean (0.5)", "M" },
		{ "std", 0, 0, G_OPTION_ARG_DOUBLE, &std, "Image normalisation std (0.25)", "S" },
		{ "window", 0, 0, G_OPTION_ARG_INT, &window, "Vibration window, samples (2048)", "N" },
		{ "rate", 0, 0, G_OPTION_ARG_DOUBLE, &rate, "Vibration sample rate (12000)", "HZ" },
		{ "resize", 0, 0, G_OPTION_ARG_STRING, &resize_name,
		  "Fitting the image to W x H: stretch (default) or letterbox", "MODE" },
		{ "out", 0, 0, G_OPTION_ARG_FILENAME, &out_path, "Output file", "FILE" },
		{ "masks-out", 0, 0, G_OPTION_ARG_FILENAME, &masks_path,
		  "Also write the defect masks at model size", "FILE" },
		{ "raw-out", 0, 0, G_OPTION_ARG_FILENAME, &raw_path,
		  "Also write the decoded images and raw windows (infer-bench --parts)", "FILE" },
		{ NULL, 0, 0, 0, NULL, NULL, NULL },
	};
	GOptionContext *ctx = g_option_context_new("- model inputs for a line manifest");
	manifest_wav_cache *wavs = NULL;
	struct manifest_inputs inputs;
	GArray *rows = NULL;
	fusion_sigfeat *sf = NULL;
	float *img_in = NULL, *sig = NULL, *mask = NULL;
	FILE *out = NULL, *mout = NULL, *rout = NULL;
	size_t sig_dim = 0, img_floats;
	int rc = 1;

	manifest_add_options(ctx, &manifest, &root, &split);
	if (tool_options_parse(ctx, entries, "vigil-features", &argc, &argv) < 0)
		goto done;
	if (!manifest || !out_path || width <= 0 || height <= 0 || width > 8192 || height > 8192) {
		fprintf(stderr, "vigil-features: --manifest, --out and --width/--height in "
				"1..8192 are required\n");
		goto done;
	}
	if (!(std > 0) || !isfinite(mean) || window < 64 || !(rate > 0)) {
		fprintf(stderr, "vigil-features: --std and --rate must be positive, --window "
				"at least 64\n");
		goto done;
	}
	if (resize_name && fusion_resize_parse(resize_name, &resize) < 0) {
		fprintf(stderr, "vigil-features: --resize must be stretch or letterbox\n");
		goto done;
	}
	if (!root)
		root = g_path_get_dirname(manifest);
	rows = manifest_load(manifest, split, &err);
	if (!rows) {
		fprintf(stderr, "vigil-features: %s\n", err);
		goto done;
	}
	sf = fusion_sigfeat_new((size_t)window, rate);
	if (!sf) {
		fprintf(stderr, "vigil-features: cannot make the feature plans\n");
		goto done;
	}
	wavs = manifest_wav_cache_new(rate);
	inputs = (struct manifest_inputs){ .width = width, .height = height, .mean = (float)mean,
				       .std = (float)std, .resize = resize, .sigfeat = sf,
				       .window = (size_t)window, .wavs = wavs };
	sig_dim = fusion_sigfeat_dim(sf);
	img_floats = (size_t)width * (size_t)height;
	img_in = g_new(float, img_floats);
	mask = g_new(float, img_floats);
	sig = g_new(float, sig_dim);

	{
		uint32_t fh[3] = { rows->len, (uint32_t)img_floats, (uint32_t)sig_dim };
		uint32_t mh[2] = { rows->len, (uint32_t)img_floats };
		uint32_t rh[2] = { rows->len, (uint32_t)window };

		out = open_out(out_path, &tmp_path, "VGF1", fh, 3);
		if (!out || (masks_path && !(mout = open_out(masks_path, &masks_tmp, "VGM1", mh, 2))) ||
		    (raw_path && !(rout = open_out(raw_path, &raw_tmp, "VGR1", rh, 2))))
			goto done;
	}

	fprintf(stderr, "vigil-features: %u parts from %s%s%s, image %dx%d (%s), %zu signal "
		"features (%s)\n", rows->len, manifest, split ? ", split " : "", split ? split : "",
		width, height, fusion_resize_name(resize), sig_dim, FUSION_SIGFEAT_VERSION);
	for (guint i = 0; i < rows->len; i++) {
		const struct manifest_row *r = &g_array_index(rows, struct manifest_row, i);

		if (manifest_row_prepare(root, r, &inputs, img_in, sig, &err) < 0) {
			fprintf(stderr, "vigil-features: %s:%d: %s\n", manifest, r->line, err);
			goto done;
		}
		if (mout && mask_prepare(root, r, width, height, resize, mask, &err) < 0) {
			fprintf(stderr, "vigil-features: %s:%d: column 'mask': %s\n", manifest,
				r->line, err);
			goto done;
		}
		if (rout) {
			struct manifest_raw raw;
			int bad;

			if (manifest_row_load(root, r, wavs, (size_t)window, &raw, &err) < 0) {
				fprintf(stderr, "vigil-features: %s:%d: %s\n", manifest, r->line, err);
				goto done;
			}
			bad = write_raw(rout, &raw, (size_t)window) < 0;
			manifest_raw_clear(&raw);
			if (bad) {
				fprintf(stderr, "vigil-features: writing %s failed\n", raw_path);
				goto done;
			}
		}
		if (write_floats(out, img_in, img_floats) < 0 || write_floats(out, sig, sig_dim) < 0 ||
		    (mout && write_floats(mout, mask, img_floats) < 0)) {
			fprintf(stderr, "vigil-features: writing %s failed\n", out_path);
			goto done;
		}
		if ((i + 1) % 500 == 0 || i + 1 == rows->len)
			fprintf(stderr, "vigil-features: %u/%u parts\n", i + 1, rows->len);
	}
	if (finish_out(&out, tmp_path, out_path) < 0 ||
	    (mout && finish_out(&mout, masks_tmp, masks_path) < 0) ||
	    (rout && finish_out(&rout, raw_tmp, raw_path) < 0))
		goto done;
	rc = 0;
done:
	if (out) {
		fclose(out);
		g_unlink(tmp_path);
	}
	if (mout) {
		fclose(mout);
		g_unlink(masks_tmp);
	}
	if (rout) {
		fclose(rout);
		g_unlink(raw_tmp);
	}
	fusion_sigfeat_free(sf);
	manifest_free(rows);
	manifest_wav_cache_free(wavs);
	g_free(img_in);
	g_free(mask);
	g_free(sig);
	g_free(err);
	g_free(manifest);
	g_free(root);
	g_free(split);
	g_free(resize_name);
	g_free(out_path);
	g_free(masks_path);
	g_free(raw_path);
	g_free(raw_tmp);
	g_free(tmp_path);
	g_free(masks_tmp);
	g_option_context_free(ctx);
	return rc;
}
