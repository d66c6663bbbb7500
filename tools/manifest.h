/* Line manifests (parts.csv, docs/model.md), the WAV recordings their
 * rows point into, and one row's model inputs, shared by vigil-features,
 * vigil-eval, vigil-calibrate and vigil-sim stage. */
#ifndef VIGIL_TOOLS_MANIFEST_H
#define VIGIL_TOOLS_MANIFEST_H

#include <glib.h>
#include <stdint.h>

#include "fusion/fusion.h"

struct manifest_row {
	int line;                  /* 1-based line in the CSV, for messages */
	char *part_id;             /* optional columns are NULL when absent */
	char *split;
	char *image;
	char *mask;
	char *image_class;
	char *vibration;
	guint64 vib_start;
	guint64 vib_len;
	char *vib_class;
	int defect;                /* -1 when the column is absent */
};

/* Reads the rows of a manifest; image, vibration, vib_start and vib_len
 * are required, the rest optional. split: keep only rows of that split
 * (NULL keeps all; a split asked for needs the column). Returns an array
 * of struct manifest_row owned by the caller (manifest_free), or NULL
 * with *err (g_free) naming file:line and column. */
GArray *manifest_load(const char *path, const char *split, char **err);
void manifest_free(GArray *rows);

struct manifest_wav {
	float *x;                  /* samples in g */
	gsize n;
};

/* Reads a mono WAV at rate_hz: IEEE float32 (taken as g) or 16-bit PCM
 * (full scale taken as 1 g). NULL with *err (g_free) on failure. */
struct manifest_wav *manifest_wav_load(const char *path, double rate_hz, char **err);
void manifest_wav_free(struct manifest_wav *w);

/* Keeps loaded recordings by path, within a byte bound, since manifests take
 * many windows from one recording. The returned wav stays owned by the
 * cache and valid until the next lookup. */
typedef struct manifest_wav_cache manifest_wav_cache;
manifest_wav_cache *manifest_wav_cache_new(double rate_hz);
void manifest_wav_cache_free(manifest_wav_cache *c);
const struct manifest_wav *manifest_wav_cache_get(manifest_wav_cache *c, const char *path, char **err);

/* How rows become model inputs: the image geometry and normalisation of
 * a model package, its feature extractor and the recordings (borrowed). */
struct manifest_inputs {
	int width, height;
	float mean, std;
	enum fusion_resize resize;
	fusion_sigfeat *sigfeat;   /* takes window samples */
	size_t window;
	manifest_wav_cache *wavs;
	/* The package's [dark] (manifest_inputs_for_package), NULL without. */
	const struct fusion_dark_spec *dark;
};

/* Adds the options every manifest tool takes to ctx's main group:
 * --manifest CSV, --data-root DIR (default: the manifest's folder, for the
 * caller to apply) and --split NAME; the strings are the caller's (g_free). */
void manifest_add_options(GOptionContext *ctx, char **manifest, char **root, char **split);

struct infer_info;

/* The inputs a model package wants (its infer_info): *in gets the
 * package's geometry, a feature extractor for its window and rate, and a
 * recording cache, owned by *in until manifest_inputs_clear. Fails (-EINVAL,
 * *err naming the package's and this build's sizes) when this build's
 * features are not the package's signal_dim. */
int manifest_inputs_for_package(const struct infer_info *info, struct manifest_inputs *in, char **err);
void manifest_inputs_clear(struct manifest_inputs *in);

/* One row's raw data, as a camera and a sensor give it to vigild: the
 * image decoded to 8-bit gray (width x height, stride width, malloc'ed) and
 * the row's window of window samples, pointing into the recording that
 * wavs holds (valid until the next lookup in wavs). */
struct manifest_raw {
	uint8_t *image;
	int width, height;
	const float *window;
	char *vibration_path;      /* for messages */
};

/* Reads one row's image and finds its vibration window; a negative errno
 * code with *err (g_free) naming the column and file on failure, *raw
 * then empty. manifest_raw_clear frees what it holds. */
int manifest_row_load(const char *root, const struct manifest_row *r, manifest_wav_cache *wavs,
		  size_t window, struct manifest_raw *raw, char **err);
void manifest_raw_clear(struct manifest_raw *raw);

/* One row's model inputs as vigild computes them: img_in width*height
 * floats (fusion_image_prepare_resize), sig the extractor's features of
 * the row's vibration window (fusion_sigfeat_compute). root: the folder
 * the row's paths are relative to. A negative errno code with *err (g_free)
 * naming the column and file on failure. */
int manifest_row_prepare(const char *root, const struct manifest_row *r, const struct manifest_inputs *in,
		     float *img_in, float *sig, char **err);
/* The same, and *dark the image's [dark] score (fusion_dark_score; NAN
 * when in->dark is NULL), which infer_model_join_dark joins into the
 * model's result as vigild does. */
int manifest_row_prepare_dark(const char *root, const struct manifest_row *r,
			      const struct manifest_inputs *in, float *img_in, float *sig,
			      float *dark, char **err);

#endif
