/* vigil-sim stage: real parts from a line manifest into a simulated line's
 * folder (sim-stage.h). */
#include <errno.h>
#include <glib.h>
#include <glib/gstdio.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/wav.h"
#include "cvwrap/cvwrap.h"
#include "tools/manifest.h"
#include "tools/sim-stage.h"

/* vigil-sim run splits parts.csv on commas without quoting. */
static const char *csv_unsafe(const struct manifest_row *r)
{
	if (r->part_id && strpbrk(r->part_id, ",\"\r\n"))
		return "part_id";
	if (r->split && strpbrk(r->split, ",\"\r\n"))
		return "split";
	if (r->image_class && strpbrk(r->image_class, ",\"\r\n"))
		return "image_class";
	if (r->vib_class && strpbrk(r->vib_class, ",\"\r\n"))
		return "vib_class";
	return NULL;
}

/* Converts the row's mask, when it names one, to out_path. Returns 0, 1
 * when the row has none, or a negative errno code with *err (g_free). */
static int stage_mask(const char *root, const struct manifest_row *r, const char *out_path,
		      char **err)
{
	char *path;
	uint8_t *img = NULL;
	int w, h, rc;

	if (!r->mask || !r->mask[0])
		return 1;
	path = g_build_filename(root, r->mask, NULL);
	/* OpenCV only warns about a missing file; say it plainly. */
	rc = g_file_test(path, G_FILE_TEST_IS_REGULAR) ? cvw_imread_gray(path, &img, &w, &h)
						       : -ENOENT;
	if (rc < 0)
		*err = g_strdup_printf("column 'mask': %s: %s", path,
				       rc == -ENOENT ? "missing or unreadable image" : g_strerror(-rc));
	else if ((rc = cvw_imwrite_gray(out_path, img, w, h, w)) < 0)
		*err = g_strdup_printf("cannot write %s", out_path);
	free(img);
	g_free(path);
	return rc;
}

/* Stages row r as part i: its image, mask and window. why gets what went
 * wrong with the row (the caller adds file and line). */
static int stage_row(const struct sim_stage_opts *o, const char *root, const struct manifest_row *r,
		     unsigned i, manifest_wav_cache *wavs, size_t window, wav_writer *wav,
		     FILE *csv, char **why)
{
	struct manifest_raw raw;
	char name[64], *img_path, *mask_path;
	int rc, no_mask;

	rc = manifest_row_load(root, r, wavs, window, &raw, why);
	if (rc < 0)
		return rc;
	snprintf(name, sizeof name, "part-%05u.png", i);
	img_path = g_build_filename(o->out_dir, "images", name, NULL);
	mask_path = g_build_filename(o->out_dir, "masks", name, NULL);
	/* Stored, not compressed: a camera hands vigild raw pixels, so the
	 * replay's own decoding should take as little of the line's CPU as
	 * it can (a third of a compressed file's). */
	if ((rc = cvw_imwrite_gray_stored(img_path, raw.image, raw.width, raw.height,
					  raw.width)) < 0) {
		*why = g_strdup_printf("cannot write %s", img_path);
		goto out;
	}
	if ((no_mask = stage_mask(root, r, mask_path, why)) < 0) {
		rc = no_mask;
		goto out;
	}
	if ((rc = wav_writer_append(wav, raw.window, window)) < 0) {
		*why = g_strdup_printf("writing %s/vibration.wav failed: %s", o->out_dir,
				       g_strerror(-rc));
		goto out;
	}
	if (r->part_id)
		fprintf(csv, "%s,", r->part_id);
	else
		fprintf(csv, "P%05u,", i);
	fprintf(csv, "%s,images/%s,%s%s,%s,vibration.wav,%" G_GUINT64_FORMAT ",%zu,%s,%d\n",
		r->split ? r->split : "", name, no_mask ? "" : "masks/", no_mask ? "" : name,
		r->image_class ? r->image_class : "", (guint64)i * window, window,
		r->vib_class ? r->vib_class : "", r->defect);
out:
	g_free(img_path);
	g_free(mask_path);
	manifest_raw_clear(&raw);
	return rc;
}

int sim_stage(const struct sim_stage_opts *o, unsigned *staged, char **err)
{
	GArray *rows = NULL;
	manifest_wav_cache *wavs = NULL;
	wav_writer *wav = NULL;
	FILE *csv = NULL;
	char *root = NULL, *csv_path = NULL, *wav_path = NULL, *why = NULL;
	char *img_dir = NULL, *mask_dir = NULL;
	unsigned n = 0;
	size_t window;
	int rc = -EINVAL;

	*staged = 0;
	rows = manifest_load(o->manifest, o->split, err);
	if (!rows)
		return -EINVAL;
	if (g_array_index(rows, struct manifest_row, 0).defect < 0) {
		*err = g_strdup_printf("%s:1: the header has no 'defect' column: vigil-sim run "
				       "scores each part against it", o->manifest);
		goto out;
	}
	n = o->limit && o->limit < rows->len ? o->limit : rows->len;
	window = (size_t)g_array_index(rows, struct manifest_row, 0).vib_len;
	/* Checked before anything is written: a manifest refused leaves no
	 * half-staged folder behind. */
	for (unsigned i = 0; i < n; i++) {
		const struct manifest_row *r = &g_array_index(rows, struct manifest_row, i);
		const struct manifest_row *r0 = &g_array_index(rows, struct manifest_row, 0);
		const char *bad = csv_unsafe(r);

		if (bad) {
			*err = g_strdup_printf("%s:%d: column '%s': a comma, quote or line break "
					       "cannot go into parts.csv", o->manifest, r->line, bad);
			goto out;
		}
		if (r->vib_len != r0->vib_len) {
			*err = g_strdup_printf("%s:%d: column 'vib_len': %" G_GUINT64_FORMAT
					       " samples, line %d has %" G_GUINT64_FORMAT ": a "
					       "sequence vibration source takes one window length",
					       o->manifest, r->line, r->vib_len, r0->line, r0->vib_len);
			goto out;
		}
	}
	/* The WAV's 32-bit sizes bound the samples staged. */
	if (window == 0 || (guint64)n * window > (UINT32_MAX - 64) / sizeof(float)) {
		*err = g_strdup_printf("%s: %u windows of %zu samples do not fit in one WAV file",
				       o->manifest, n, window);
		rc = -EFBIG;
		goto out;
	}

	root = o->data_root ? g_strdup(o->data_root) : g_path_get_dirname(o->manifest);
	img_dir = g_build_filename(o->out_dir, "images", NULL);
	mask_dir = g_build_filename(o->out_dir, "masks", NULL);
	if (g_mkdir_with_parents(img_dir, 0755) < 0 || g_mkdir_with_parents(mask_dir, 0755) < 0) {
		rc = -errno;
		*err = g_strdup_printf("cannot create %s: %s", mask_dir, g_strerror(errno));
		goto out;
	}
	/* parts.csv last, by rename: a folder whose staging failed midway has
	 * none for run to replay. */
	csv_path = g_build_filename(o->out_dir, "parts.csv.tmp", NULL);
	wav_path = g_build_filename(o->out_dir, "vibration.wav", NULL);
	{
		/* Nor one from an earlier staging beside this one's images. */
		char *old = g_build_filename(o->out_dir, "parts.csv", NULL);

		g_unlink(old);
		g_free(old);
	}
	csv = fopen(csv_path, "w");
	if (!csv) {
		rc = -errno;
		*err = g_strdup_printf("cannot write %s: %s", csv_path, g_strerror(errno));
		goto out;
	}
	if ((rc = wav_writer_new(wav_path, o->rate_hz, &wav)) < 0) {
		*err = g_strdup_printf("cannot write %s: %s", wav_path, g_strerror(-rc));
		goto out;
	}
	fprintf(csv, "part_id,split,image,mask,image_class,vibration,vib_start,vib_len,"
		"vib_class,defect\n");
	wavs = manifest_wav_cache_new(o->rate_hz);
	for (unsigned i = 0; i < n; i++) {
		const struct manifest_row *r = &g_array_index(rows, struct manifest_row, i);

		rc = stage_row(o, root, r, i, wavs, window, wav, csv, &why);
		if (rc < 0) {
			*err = g_strdup_printf("%s:%d: %s", o->manifest, r->line, why);
			goto out;
		}
	}
	rc = 0;
out:
	if (csv && fclose(csv) != 0 && rc == 0) {
		rc = -EIO;
		*err = g_strdup_printf("writing %s failed", csv_path);
	}
	if (wav && rc == 0 && (rc = wav_writer_finish(wav)) < 0)
		*err = g_strdup_printf("writing %s failed: %s", wav_path, g_strerror(-rc));
	if (csv && rc == 0) {
		char *final = g_build_filename(o->out_dir, "parts.csv", NULL);

		if (g_rename(csv_path, final) < 0) {
			rc = -errno;
			*err = g_strdup_printf("cannot rename %s to %s: %s", csv_path, final,
					       g_strerror(errno));
		}
		g_free(final);
	}
	if (csv && rc < 0)
		g_unlink(csv_path);
	if (rc == 0)
		*staged = n;
	wav_writer_free(wav);
	manifest_wav_cache_free(wavs);
	manifest_free(rows);
	g_free(why);
	g_free(root);
	g_free(img_dir);
	g_free(mask_dir);
	g_free(csv_path);
	g_free(wav_path);
	return rc;
}
