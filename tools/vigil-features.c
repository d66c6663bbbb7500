/* vigil-features: model inputs for every part of a line manifest, computed
 * by the same fusion/ code vigild runs, for tools/train.py.
 *
 *   vigil-features --manifest CSV [--data-root DIR] --width W --height H
 *                  [--mean M] [--std S] [--window N] [--rate HZ] --out FILE
 *
 * The manifest is a parts.csv (tools/sim-synth.h): columns found by name in
 * the header, of which image, vibration, vib_start and vib_len are used;
 * paths are relative to --data-root (default: the manifest's folder).
 * Images may be any size and format OpenCV reads; vibration files are mono
 * WAV, IEEE float32 (taken as g) or 16-bit PCM (full scale taken as 1 g),
 * at --rate, with any extra chunks skipped.
 *
 * Output, little-endian: "VGF1", uint32 N, uint32 img_floats (W*H),
 * uint32 sig_dim, then per part in manifest order img_floats float32
 * (fusion_image_prepare) and sig_dim float32 (fusion_sigfeat_compute). */
#include <errno.h>
#include <glib.h>
#include <glib/gstdio.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fusion/cvwrap.h"
#include "fusion/fusion.h"

#define WAV_CACHE_BYTES ((gsize)2 << 30)

struct row {
	int line;
	char *image;
	char *vibration;
	guint64 vib_start;
	guint64 vib_len;
};

struct wav {
	float *x;
	gsize n;
};

static void wav_free(gpointer p)
{
	struct wav *w = p;

	if (w) {
		g_free(w->x);
		g_free(w);
	}
}

static uint32_t le16(const guint8 *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8;
}

static uint32_t le32(const guint8 *p)
{
	return le16(p) | le16(p + 2) << 16;
}

/* Reads a mono WAV at rate_hz into floats. Chunks other than fmt and data
 * (fact, LIST, cue, ...) are skipped; a data chunk that claims more than
 * the file holds (a recorder that never finalised the header) is cut to
 * what is there. */
static struct wav *wav_load(const char *path, double rate_hz, char **err)
{
	char *raw = NULL;
	gsize len = 0, off = 12;
	const guint8 *b, *fmt = NULL, *data = NULL;
	gsize fmt_len = 0, data_len = 0;
	unsigned tag, channels, bits;
	uint32_t rate;
	GError *gerr = NULL;
	struct wav *w = NULL;

	if (!g_file_get_contents(path, &raw, &len, &gerr)) {
		*err = g_strdup(gerr->message);
		g_error_free(gerr);
		return NULL;
	}
	b = (const guint8 *)raw;
	if (len < 12 || memcmp(b, "RIFF", 4) != 0 || memcmp(b + 8, "WAVE", 4) != 0) {
		*err = g_strdup_printf("%s: not a RIFF/WAVE file", path);
		goto out;
	}
	while (off + 8 <= len) {
		gsize size = le32(b + off + 4), avail = len - off - 8;

		if (memcmp(b + off, "fmt ", 4) == 0) {
			fmt = b + off + 8;
			fmt_len = MIN(size, avail);
		} else if (memcmp(b + off, "data", 4) == 0) {
			data = b + off + 8;
			data_len = MIN(size, avail);
		}
		if (size > avail)
			break;
		off += 8 + size + (size & 1);
	}
	if (!fmt || fmt_len < 16) {
		*err = g_strdup_printf("%s: no fmt chunk", path);
		goto out;
	}
	if (!data) {
		*err = g_strdup_printf("%s: no data chunk", path);
		goto out;
	}
	tag = le16(fmt);
	channels = le16(fmt + 2);
	rate = le32(fmt + 4);
	bits = le16(fmt + 14);
	if (tag == 0xFFFE && fmt_len >= 26)   /* WAVE_FORMAT_EXTENSIBLE: the sub-format GUID */
		tag = le16(fmt + 24);
	if (channels != 1) {
		*err = g_strdup_printf("%s: %u channels, expected mono", path, channels);
		goto out;
	}
	if (fabs((double)rate - rate_hz) > 0.5) {
		*err = g_strdup_printf("%s: sampled at %u Hz, expected %.0f Hz", path, rate, rate_hz);
		goto out;
	}
	w = g_new0(struct wav, 1);
	if (tag == 3 && bits == 32) {
		w->n = data_len / 4;
		w->x = g_new(float, MAX(w->n, 1));
		for (gsize i = 0; i < w->n; i++) {
			uint32_t u = le32(data + 4 * i);

			memcpy(&w->x[i], &u, 4);
		}
	} else if (tag == 1 && bits == 16) {
		w->n = data_len / 2;
		w->x = g_new(float, MAX(w->n, 1));
		for (gsize i = 0; i < w->n; i++)
			w->x[i] = (float)(int16_t)le16(data + 2 * i) / 32768.0f;
	} else {
		*err = g_strdup_printf("%s: format tag %u with %u bits per sample; expected IEEE "
				       "float32 (3) or 16-bit PCM (1)", path, tag, bits);
		wav_free(w);
		w = NULL;
	}
out:
	g_free(raw);
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

static void rows_free(GArray *rows)
{
	if (!rows)
		return;
	for (guint i = 0; i < rows->len; i++) {
		struct row *r = &g_array_index(rows, struct row, i);

		g_free(r->image);
		g_free(r->vibration);
	}
	g_array_free(rows, TRUE);
}

enum { COL_IMAGE, COL_VIBRATION, COL_VIB_START, COL_VIB_LEN, COL_COUNT };
static const char *const col_name[COL_COUNT] = { "image", "vibration", "vib_start", "vib_len" };

/* Reads the rows; col receives the 0-based position of each used column. */
static GArray *load_manifest(const char *path, int col[COL_COUNT], char **err)
{
	char *text = NULL, **lines = NULL, **head = NULL;
	GArray *rows = g_array_new(FALSE, TRUE, sizeof(struct row));
	GError *gerr = NULL;
	int ncols;

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
		if (col[k] < 0) {
			*err = g_strdup_printf("%s:1: the header has no '%s' column", path,
					       col_name[k]);
			goto fail;
		}
	}
	for (int i = 1; lines[i]; i++) {
		char **f;
		struct row r = { .line = i + 1 };

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
		for (int k = 0; k < COL_COUNT; k++)
			if (!f[col[k]][0]) {
				*err = g_strdup_printf("%s:%d: column %d '%s' is empty", path, i + 1,
						       col[k] + 1, col_name[k]);
				g_strfreev(f);
				goto fail;
			}
		if (parse_u64(f[col[COL_VIB_START]], &r.vib_start) < 0 ||
		    parse_u64(f[col[COL_VIB_LEN]], &r.vib_len) < 0) {
			int bad = parse_u64(f[col[COL_VIB_START]], &r.vib_start) < 0
				  ? COL_VIB_START : COL_VIB_LEN;

			*err = g_strdup_printf("%s:%d: column %d '%s': '%s' is not a sample count",
					       path, i + 1, col[bad] + 1, col_name[bad], f[col[bad]]);
			g_strfreev(f);
			goto fail;
		}
		r.image = g_strdup(f[col[COL_IMAGE]]);
		r.vibration = g_strdup(f[col[COL_VIBRATION]]);
		g_array_append_val(rows, r);
		g_strfreev(f);
	}
	if (rows->len == 0) {
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
	rows_free(rows);
	return NULL;
}

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

int main(int argc, char **argv)
{
	char *manifest = NULL, *root = NULL, *out_path = NULL, *tmp_path = NULL, *err = NULL;
	int width = 0, height = 0, window = 2048;
	double mean = 0.5, std = 0.25, rate = 12000;
	GOptionEntry entries[] = {
		{ "manifest", 0, 0, G_OPTION_ARG_FILENAME, &manifest, "Line manifest (parts.csv)", "CSV" },
		{ "data-root", 0, 0, G_OPTION_ARG_FILENAME, &root,
		  "Folder the manifest's paths are relative to (the manifest's)", "DIR" },
		{ "width", 0, 0, G_OPTION_ARG_INT, &width, "Model image width", "W" },
		{ "height", 0, 0, G_OPTION_ARG_INT, &height, "Model image height", "H" },
		{ "mean", 0, 0, G_OPTION_ARG_DOUBLE, &mean, "Image normalisation mean (0.5)", "M" },
		{ "std", 0, 0, G_OPTION_ARG_DOUBLE, &std, "Image normalisation std (0.25)", "S" },
		{ "window", 0, 0, G_OPTION_ARG_INT, &window, "Vibration window, samples (2048)", "N" },
		{ "rate", 0, 0, G_OPTION_ARG_DOUBLE, &rate, "Vibration sample rate (12000)", "HZ" },
		{ "out", 0, 0, G_OPTION_ARG_FILENAME, &out_path, "Output file", "FILE" },
		{ NULL, 0, 0, 0, NULL, NULL, NULL },
	};
	GOptionContext *ctx = g_option_context_new("- model inputs for a line manifest");
	GHashTable *wavs = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, wav_free);
	gsize cached_bytes = 0;
	GArray *rows = NULL;
	int col[COL_COUNT];
	fusion_sigfeat *sf = NULL;
	float *img_in = NULL, *sig = NULL;
	FILE *out = NULL;
	GError *gerr = NULL;
	size_t sig_dim = 0, img_floats;
	int rc = 1;

	g_option_context_add_main_entries(ctx, entries, NULL);
	if (!g_option_context_parse(ctx, &argc, &argv, &gerr)) {
		fprintf(stderr, "vigil-features: %s\n", gerr->message);
		g_error_free(gerr);
		goto done;
	}
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
	if (!root)
		root = g_path_get_dirname(manifest);
	rows = load_manifest(manifest, col, &err);
	if (!rows) {
		fprintf(stderr, "vigil-features: %s\n", err);
		goto done;
	}
	sf = fusion_sigfeat_new((size_t)window, rate);
	if (!sf) {
		fprintf(stderr, "vigil-features: cannot make the feature plans\n");
		goto done;
	}
	sig_dim = fusion_sigfeat_dim(sf);
	img_floats = (size_t)width * (size_t)height;
	img_in = g_new(float, img_floats);
	sig = g_new(float, sig_dim);

	tmp_path = g_strconcat(out_path, ".part", NULL);
	out = fopen(tmp_path, "wb");
	if (!out) {
		fprintf(stderr, "vigil-features: cannot write %s: %s\n", tmp_path, g_strerror(errno));
		goto done;
	}
	{
		uint32_t h[3] = { GUINT32_TO_LE(rows->len), GUINT32_TO_LE((uint32_t)img_floats),
				  GUINT32_TO_LE((uint32_t)sig_dim) };

		if (fwrite("VGF1", 1, 4, out) != 4 || fwrite(h, 4, 3, out) != 3) {
			fprintf(stderr, "vigil-features: writing %s failed\n", tmp_path);
			goto done;
		}
	}

	fprintf(stderr, "vigil-features: %u parts from %s, image %dx%d, %zu signal features (%s)\n",
		rows->len, manifest, width, height, sig_dim, FUSION_SIGFEAT_VERSION);
	for (guint i = 0; i < rows->len; i++) {
		const struct row *r = &g_array_index(rows, struct row, i);
		char *ipath = g_build_filename(root, r->image, NULL);
		char *vpath = g_build_filename(root, r->vibration, NULL);
		uint8_t *img = NULL;
		struct wav *w;
		int iw = 0, ih = 0, e;

		/* OpenCV only warns about a missing file; say it plainly. */
		e = g_file_test(ipath, G_FILE_TEST_IS_REGULAR) ? cvw_imread_gray(ipath, &img, &iw, &ih)
							       : -ENOENT;
		if (e == 0)
			e = fusion_image_prepare(img, iw, ih, iw, width, height, (float)mean,
						 (float)std, img_in);
		free(img);
		if (e < 0) {
			fprintf(stderr, "vigil-features: %s:%d: column %d 'image': %s: %s\n", manifest,
				r->line, col[COL_IMAGE] + 1, ipath,
				e == -ENOENT ? "missing or unreadable image" : g_strerror(-e));
			g_free(ipath);
			g_free(vpath);
			goto done;
		}
		g_free(ipath);

		w = g_hash_table_lookup(wavs, vpath);
		if (!w) {
			w = wav_load(vpath, rate, &err);
			if (!w) {
				fprintf(stderr, "vigil-features: %s:%d: column %d 'vibration': %s\n",
					manifest, r->line, col[COL_VIBRATION] + 1, err);
				g_free(vpath);
				goto done;
			}
			/* Manifests usually take many windows from one long
			 * recording: keep files, within a bound. */
			if (cached_bytes + w->n * sizeof(float) > WAV_CACHE_BYTES) {
				g_hash_table_remove_all(wavs);
				cached_bytes = 0;
			}
			cached_bytes += w->n * sizeof(float);
			g_hash_table_insert(wavs, g_strdup(vpath), w);
		}
		if (r->vib_len != (guint64)window) {
			fprintf(stderr, "vigil-features: %s:%d: column %d 'vib_len': %" G_GUINT64_FORMAT
				" samples, the features need windows of %d\n", manifest, r->line,
				col[COL_VIB_LEN] + 1, r->vib_len, window);
			g_free(vpath);
			goto done;
		}
		if (r->vib_start > w->n || w->n - r->vib_start < r->vib_len) {
			fprintf(stderr, "vigil-features: %s:%d: column %d 'vib_start': window [%"
				G_GUINT64_FORMAT ", +%" G_GUINT64_FORMAT ") runs past the %zu samples "
				"of %s\n", manifest, r->line, col[COL_VIB_START] + 1, r->vib_start,
				r->vib_len, (size_t)w->n, vpath);
			g_free(vpath);
			goto done;
		}
		e = fusion_sigfeat_compute(sf, w->x + r->vib_start, sig);
		if (e < 0) {
			fprintf(stderr, "vigil-features: %s:%d: column %d 'vibration': window of %s: "
				"%s\n", manifest, r->line, col[COL_VIBRATION] + 1, vpath,
				e == -EINVAL ? "non-finite samples" : g_strerror(-e));
			g_free(vpath);
			goto done;
		}
		g_free(vpath);
		if (write_floats(out, img_in, img_floats) < 0 || write_floats(out, sig, sig_dim) < 0) {
			fprintf(stderr, "vigil-features: writing %s failed\n", tmp_path);
			goto done;
		}
		if ((i + 1) % 500 == 0 || i + 1 == rows->len)
			fprintf(stderr, "vigil-features: %u/%u parts\n", i + 1, rows->len);
	}
	if (fclose(out) != 0) {
		out = NULL;
		fprintf(stderr, "vigil-features: writing %s failed\n", tmp_path);
		goto done;
	}
	out = NULL;
	if (g_rename(tmp_path, out_path) < 0) {
		fprintf(stderr, "vigil-features: cannot rename %s to %s: %s\n", tmp_path, out_path,
			g_strerror(errno));
		goto done;
	}
	rc = 0;
done:
	if (out) {
		fclose(out);
		g_unlink(tmp_path);
	}
	fusion_sigfeat_free(sf);
	rows_free(rows);
	g_hash_table_destroy(wavs);
	g_free(img_in);
	g_free(sig);
	g_free(err);
	g_free(manifest);
	g_free(root);
	g_free(out_path);
	g_free(tmp_path);
	g_option_context_free(ctx);
	return rc;
}
