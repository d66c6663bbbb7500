/* Line manifests, WAV windows and model inputs for the offline tools
 * (manifest.h). */
#include "tools/manifest.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/wav.h"
#include "cvwrap/cvwrap.h"
#include "inference/inference.h"

#define WAV_CACHE_BYTES ((gsize)2 << 30)

void manifest_wav_free(struct manifest_wav *w)
{
	if (w) {
		g_free(w->x);
		g_free(w);
	}
}

/* A recording as a recorder leaves it (core/wav.h, WAV_RECORDING): 16-bit
 * PCM too, and a data chunk cut short is read up to its last sample. */
struct manifest_wav *manifest_wav_load(const char *path, double rate_hz, char **err)
{
	struct wav in;
	struct manifest_wav *w;

	if (wav_read_file(path, WAV_RECORDING, &in, err) < 0)
		return NULL;
	if (fabs((double)in.rate_hz - rate_hz) > 0.5) {
		*err = g_strdup_printf("%s: sampled at %u Hz, expected %.0f Hz", path, in.rate_hz,
				       rate_hz);
		wav_clear(&in);
		return NULL;
	}
	w = g_new0(struct manifest_wav, 1);
	w->x = in.x;
	w->n = in.n;
	return w;
}

struct manifest_wav_cache {
	GHashTable *wavs;
	gsize bytes;
	double rate_hz;
};

manifest_wav_cache *manifest_wav_cache_new(double rate_hz)
{
	manifest_wav_cache *c = g_new0(manifest_wav_cache, 1);

	c->wavs = g_hash_table_new_full(g_str_hash, g_str_equal, g_free,
					(GDestroyNotify)manifest_wav_free);
	c->rate_hz = rate_hz;
	return c;
}

void manifest_wav_cache_free(manifest_wav_cache *c)
{
	if (!c)
		return;
	g_hash_table_destroy(c->wavs);
	g_free(c);
}

const struct manifest_wav *manifest_wav_cache_get(manifest_wav_cache *c, const char *path, char **err)
{
	struct manifest_wav *w = g_hash_table_lookup(c->wavs, path);

	if (w)
		return w;
	w = manifest_wav_load(path, c->rate_hz, err);
	if (!w)
		return NULL;
	if (c->bytes + w->n * sizeof(float) > WAV_CACHE_BYTES) {
		g_hash_table_remove_all(c->wavs);
		c->bytes = 0;
	}
	c->bytes += w->n * sizeof(float);
	g_hash_table_insert(c->wavs, g_strdup(path), w);
	return w;
}

/* Splits one CSV record (RFC 4180 quoting, no embedded newlines). */
static char **csv_split(const char *line)
{
	GPtrArray *cols = g_ptr_array_new();
	GString *cur = g_string_new(NULL);
	gboolean quoted = FALSE;

	for (const char *p = line;; p++) {
		if (quoted) {
			if (*p == '"' && p[1] == '"') {
				g_string_append_c(cur, '"');
				p++;
			} else if (*p == '"') {
				quoted = FALSE;
			} else if (*p) {
				g_string_append_c(cur, *p);
			} else {
				break;
			}
			continue;
		}
		if (*p == '"') {
			quoted = TRUE;
		} else if (*p == ',' || *p == '\0') {
			g_ptr_array_add(cols, g_strdup(g_strstrip(cur->str)));
			g_string_truncate(cur, 0);
			if (!*p)
				break;
		} else {
			g_string_append_c(cur, *p);
		}
	}
	g_string_free(cur, TRUE);
	g_ptr_array_add(cols, NULL);
	return (char **)g_ptr_array_free(cols, FALSE);
}

static int parse_u64(const char *s, guint64 *v)
{
	char *end = NULL;

	if (!s || !*s || *s == '-' || *s == '+')
		return -EINVAL;
	errno = 0;
	*v = g_ascii_strtoull(s, &end, 10);
	return (errno || *end) ? -EINVAL : 0;
}

void manifest_free(GArray *rows)
{
	if (!rows)
		return;
	for (guint i = 0; i < rows->len; i++) {
		struct manifest_row *r = &g_array_index(rows, struct manifest_row, i);

		g_free(r->part_id);
		g_free(r->split);
		g_free(r->image);
		g_free(r->mask);
		g_free(r->image_class);
		g_free(r->vibration);
		g_free(r->vib_class);
	}
	g_array_free(rows, TRUE);
}

enum {
	COL_IMAGE, COL_VIBRATION, COL_VIB_START, COL_VIB_LEN, COL_REQUIRED,
	COL_PART_ID = COL_REQUIRED, COL_SPLIT, COL_MASK, COL_IMAGE_CLASS, COL_VIB_CLASS,
	COL_DEFECT, COL_COUNT
};
static const char *const col_name[COL_COUNT] = {
	"image", "vibration", "vib_start", "vib_len",
	"part_id", "split", "mask", "image_class", "vib_class", "defect",
};

static char *col_dup(char **f, const int col[COL_COUNT], int k)
{
	return col[k] >= 0 ? g_strdup(f[col[k]]) : NULL;
}

GArray *manifest_load(const char *path, const char *split, char **err)
{
	char *text = NULL, **lines = NULL, **head = NULL;
	GArray *rows = g_array_new(FALSE, TRUE, sizeof(struct manifest_row));
	GError *gerr = NULL;
	int col[COL_COUNT], ncols;

	if (!g_file_get_contents(path, &text, NULL, &gerr)) {
		*err = g_strdup(gerr->message);
		g_error_free(gerr);
		goto fail;
	}
	lines = g_strsplit(text, "\n", -1);
	if (!lines[0]) {
		*err = g_strdup_printf("%s: empty manifest", path);
		goto fail;
	}
	g_strchomp(lines[0]);
	head = csv_split(lines[0]);
	ncols = (int)g_strv_length(head);
	for (int k = 0; k < COL_COUNT; k++) {
		col[k] = -1;
		for (int c = 0; c < ncols; c++)
			if (strcmp(head[c], col_name[k]) == 0)
				col[k] = c;
		if (col[k] < 0 && (k < COL_REQUIRED || (k == COL_SPLIT && split))) {
			*err = g_strdup_printf("%s:1: the header has no '%s' column", path,
					       col_name[k]);
			goto fail;
		}
	}
	for (int i = 1; lines[i]; i++) {
		char **f;
		struct manifest_row r = { .line = i + 1, .defect = -1 };
		int bad = -1;

		g_strchomp(lines[i]);
		if (!lines[i][0])
			continue;
		f = csv_split(lines[i]);
		if ((int)g_strv_length(f) != ncols) {
			*err = g_strdup_printf("%s:%d: %u columns, the header has %d", path, i + 1,
					       g_strv_length(f), ncols);
			g_strfreev(f);
			goto fail;
		}
		if (split && strcmp(f[col[COL_SPLIT]], split) != 0) {
			g_strfreev(f);
			continue;
		}
		for (int k = 0; k < COL_REQUIRED; k++)
			if (!f[col[k]][0]) {
				*err = g_strdup_printf("%s:%d: column %d '%s' is empty", path, i + 1,
						       col[k] + 1, col_name[k]);
				g_strfreev(f);
				goto fail;
			}
		if (parse_u64(f[col[COL_VIB_START]], &r.vib_start) < 0)
			bad = COL_VIB_START;
		else if (parse_u64(f[col[COL_VIB_LEN]], &r.vib_len) < 0)
			bad = COL_VIB_LEN;
		if (bad >= 0) {
			*err = g_strdup_printf("%s:%d: column %d '%s': '%s' is not a sample count",
					       path, i + 1, col[bad] + 1, col_name[bad], f[col[bad]]);
			g_strfreev(f);
			goto fail;
		}
		if (col[COL_DEFECT] >= 0) {
			const char *d = f[col[COL_DEFECT]];

			if (strcmp(d, "0") != 0 && strcmp(d, "1") != 0) {
				*err = g_strdup_printf("%s:%d: column %d 'defect': '%s' is not 0 or 1",
						       path, i + 1, col[COL_DEFECT] + 1, d);
				g_strfreev(f);
				goto fail;
			}
			r.defect = d[0] == '1';
		}
		r.image = col_dup(f, col, COL_IMAGE);
		r.vibration = col_dup(f, col, COL_VIBRATION);
		r.part_id = col_dup(f, col, COL_PART_ID);
		r.split = col_dup(f, col, COL_SPLIT);
		r.mask = col_dup(f, col, COL_MASK);
		r.image_class = col_dup(f, col, COL_IMAGE_CLASS);
		r.vib_class = col_dup(f, col, COL_VIB_CLASS);
		g_array_append_val(rows, r);
		g_strfreev(f);
	}
	if (rows->len == 0) {
		if (split)
			*err = g_strdup_printf("%s: no parts of split '%s'", path, split);
		else
			*err = g_strdup_printf("%s: no parts", path);
		goto fail;
	}
	g_strfreev(head);
	g_strfreev(lines);
	g_free(text);
	return rows;
fail:
	g_strfreev(head);
	g_strfreev(lines);
	g_free(text);
	manifest_free(rows);
	return NULL;
}

int manifest_row_load(const char *root, const struct manifest_row *r, manifest_wav_cache *wavs,
		  size_t window, struct manifest_raw *raw, char **err)
{
	char *ipath = g_build_filename(root, r->image, NULL);
	char *vpath = g_build_filename(root, r->vibration, NULL);
	const struct manifest_wav *w;
	char *why = NULL;
	int rc;

	*raw = (struct manifest_raw){ 0 };
	/* OpenCV only warns about a missing file; say it plainly. */
	rc = g_file_test(ipath, G_FILE_TEST_IS_REGULAR)
		     ? cvw_imread_gray(ipath, &raw->image, &raw->width, &raw->height)
		     : -ENOENT;
	if (rc < 0) {
		*err = g_strdup_printf("column 'image': %s: %s", ipath,
				       rc == -ENOENT ? "missing or unreadable image" : g_strerror(-rc));
		goto out;
	}
	w = manifest_wav_cache_get(wavs, vpath, &why);
	if (!w) {
		*err = g_strdup_printf("column 'vibration': %s", why);
		rc = -EIO;
		goto out;
	}
	if (r->vib_len != (guint64)window) {
		*err = g_strdup_printf("column 'vib_len': %" G_GUINT64_FORMAT " samples, the model "
				       "takes windows of %zu", r->vib_len, window);
		rc = -EINVAL;
		goto out;
	}
	if (r->vib_start > w->n || w->n - r->vib_start < r->vib_len) {
		*err = g_strdup_printf("column 'vib_start': window [%" G_GUINT64_FORMAT ", +%"
				       G_GUINT64_FORMAT ") runs past the %zu samples of %s",
				       r->vib_start, r->vib_len, (size_t)w->n, vpath);
		rc = -EINVAL;
		goto out;
	}
	raw->window = w->x + r->vib_start;
	raw->vibration_path = vpath;
	vpath = NULL;
out:
	if (rc < 0)
		manifest_raw_clear(raw);
	g_free(why);
	g_free(ipath);
	g_free(vpath);
	return rc;
}

void manifest_raw_clear(struct manifest_raw *raw)
{
	free(raw->image);
	g_free(raw->vibration_path);
	*raw = (struct manifest_raw){ 0 };
}

int manifest_row_prepare(const char *root, const struct manifest_row *r, const struct manifest_inputs *in,
		     float *img_in, float *sig, char **err)
{
	float dark;

	return manifest_row_prepare_dark(root, r, in, img_in, sig, &dark, err);
}

int manifest_row_prepare_dark(const char *root, const struct manifest_row *r,
			      const struct manifest_inputs *in, float *img_in, float *sig,
			      float *dark, char **err)
{
	struct manifest_raw raw;
	int rc = manifest_row_load(root, r, in->wavs, in->window, &raw, err);

	if (rc < 0)
		return rc;
	*dark = NAN;
	rc = fusion_image_prepare_resize(raw.image, raw.width, raw.height, raw.width, in->width,
					 in->height, in->mean, in->std, in->resize, img_in);
	if (rc == 0 && in->dark)
		rc = fusion_dark_score(in->dark, raw.image, raw.width, raw.height, raw.width, dark);
	if (rc < 0) {
		char *ipath = g_build_filename(root, r->image, NULL);

		*err = g_strdup_printf("column 'image': %s: %s", ipath, g_strerror(-rc));
		g_free(ipath);
	} else {
		rc = fusion_sigfeat_compute(in->sigfeat, raw.window, sig);
		if (rc < 0)
			*err = g_strdup_printf("column 'vibration': window of %s: %s",
					       raw.vibration_path,
					       rc == -EINVAL ? "non-finite samples" : g_strerror(-rc));
	}
	manifest_raw_clear(&raw);
	return rc;
}

int manifest_inputs_for_package(const struct infer_info *info, struct manifest_inputs *in, char **err)
{
	fusion_sigfeat *sf = fusion_sigfeat_new((size_t)info->window, info->rate_hz);

	if (!sf || fusion_sigfeat_dim(sf) != (size_t)info->signal_dim) {
		*err = g_strdup_printf("the package wants %d signal features of %d samples; "
				       "this build computes %zu", info->signal_dim, info->window,
				       sf ? fusion_sigfeat_dim(sf) : 0);
		fusion_sigfeat_free(sf);
		return -EINVAL;
	}
	*in = (struct manifest_inputs){ .width = info->input_width, .height = info->input_height,
				    .mean = info->mean, .std = info->std, .resize = info->image->resize,
				    .sigfeat = sf, .window = (size_t)info->window,
				    .wavs = manifest_wav_cache_new(info->rate_hz),
				    .dark = info->dark ? info->dark_spec : NULL };
	return 0;
}

void manifest_inputs_clear(struct manifest_inputs *in)
{
	manifest_wav_cache_free(in->wavs);
	fusion_sigfeat_free(in->sigfeat);
	*in = (struct manifest_inputs){ 0 };
}

void manifest_add_options(GOptionContext *ctx, char **manifest, char **root, char **split)
{
	/* g_option_context_add_main_entries keeps the array: one call a program */
	static GOptionEntry entries[] = {
		{ "manifest", 0, 0, G_OPTION_ARG_FILENAME, NULL, "Line manifest (parts.csv)", "CSV" },
		{ "data-root", 0, 0, G_OPTION_ARG_FILENAME, NULL,
		  "Folder the manifest's paths are relative to (the manifest's)", "DIR" },
		{ "split", 0, 0, G_OPTION_ARG_STRING, NULL, "Only the rows of this split (all)", "NAME" },
		{ NULL, 0, 0, 0, NULL, NULL, NULL },
	};

	entries[0].arg_data = manifest;
	entries[1].arg_data = root;
	entries[2].arg_data = split;
	g_option_context_add_main_entries(ctx, entries, NULL);
}
