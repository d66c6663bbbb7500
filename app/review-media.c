/* A part's files over HTTP (review-private.h): the media rows of its
 * latest inspection (or the one ?inspection= names), each file by its row's id (never by a path the
 * client names), and the vibration view: the logged window, its envelope
 * spectrum and the bearing frequencies to mark on it. */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "app/review-private.h"
#include "core/wav.h"

/* A media file larger than this is not served (an image or a vibration
 * window is far smaller), and a waveform is sent up to this many samples. */
#define REVIEW_MAX_MEDIA (64 * 1024 * 1024)
#define REVIEW_MAX_WAVEFORM 16384
/* The envelope spectrum is taken over at most this many samples. */
#define REVIEW_MAX_SPECTRUM (1 << 20)

/* ---- media: a part's image, its maps (the defect map, kind heatmap, and a
 * good-only model's anomaly map, kind anomaly: both PNG) and vibration
 * window ---- */

void review__add_bearing(review_server *s, JsonBuilder *b)
{
	json_builder_set_member_name(b, "bearing");
	if (!s->have_bearing) {
		json_builder_add_null_value(b);
		return;
	}
	json_builder_begin_object(b);
	review__add_number(b, "shaft_hz", s->shaft_hz);
	review__add_number(b, "ftf_hz", s->bearing.ftf);
	review__add_number(b, "bpfo_hz", s->bearing.bpfo);
	review__add_number(b, "bpfi_hz", s->bearing.bpfi);
	review__add_number(b, "bsf_hz", s->bearing.bsf);
	json_builder_end_object(b);
}

/* One row of table media, copied out of the db_read_media callback. */
struct media_row {
	int64_t id;
	char *camera, *kind, *path;
	int64_t bytes;
};

struct media_search {
	int64_t part_id;
	int64_t chosen;           /* the URLs name this inspection (-1: none) */
	JsonBuilder *list;        /* add every row to this array, or */
	int64_t want_id;          /* find the row with this id (-1: none), or */
	const char *want_kind;    /* the first of this kind */
	struct media_row found;
};

static int media_cb(const struct db_media *m, void *data)
{
	struct media_search *q = data;

	if (q->list) {
		char *url = q->chosen < 0
			? g_strdup_printf("/api/parts/%" PRId64 "/media/%" PRId64, q->part_id,
					  m->id)
			: g_strdup_printf("/api/parts/%" PRId64 "/media/%" PRId64
					  "?inspection=%" PRId64, q->part_id, m->id, q->chosen);

		json_builder_begin_object(q->list);
		review__add_int(q->list, "id", m->id);
		review__add_string(q->list, "kind", m->kind);
		review__add_string(q->list, "camera", m->camera);
		review__add_int(q->list, "bytes", m->bytes);
		/* A ring file: kept for the recent window only (the page says so). */
		json_builder_set_member_name(q->list, "recent");
		json_builder_add_boolean_value(q->list, m->recent != 0);
		review__add_string(q->list, "url", url);
		json_builder_end_object(q->list);
		g_free(url);
		return 0;
	}
	if (m->id != q->want_id && !(q->want_kind && strcmp(m->kind, q->want_kind) == 0))
		return 0;
	q->found = (struct media_row){ m->id, g_strdup(m->camera), g_strdup(m->kind),
				       g_strdup(m->path), m->bytes };
	return 1;
}

static void media_row_clear(struct media_row *r)
{
	g_free(r->camera);
	g_free(r->kind);
	g_free(r->path);
	memset(r, 0, sizeof *r);
}

int review__media_list(review_server *s, int64_t part_id, int64_t inspection_id,
		       int64_t chosen, JsonBuilder *b, char **err)
{
	struct media_search q = { .part_id = part_id, .chosen = chosen, .want_id = -1, .list = b };

	return db_read_media(s->db_path, inspection_id, media_cb, &q, err);
}

/* ---- media files ---- */

/* A path from table media that may be opened below the media folder: not
 * absolute, no empty, "." or ".." segment, no backslash. The row is
 * vigild's own, but the file is a plain SQLite file anyone with write
 * access can change, so it is checked like client input. */
static gboolean media_path_ok(const char *rel)
{
	gboolean ok = *rel && rel[0] != '/' && !strchr(rel, '\\');
	char **seg = ok ? g_strsplit(rel, "/", -1) : NULL;

	for (int i = 0; ok && seg[i]; i++)
		ok = *seg[i] && strcmp(seg[i], ".") != 0 && strcmp(seg[i], "..") != 0;
	g_strfreev(seg);
	return ok;
}

/* Reads the file of row r: 0 with *out; -EACCES when its path leads out of
 * the media folder (checked again after links are resolved), -ENOENT when
 * it is gone (retention removes files before rows), -EFBIG, or another
 * negative errno; *why says which for the log. */
static int media_read(review_server *s, const struct media_row *r, GBytes **out, char **why)
{
	char *dir = NULL, *full = NULL, *err = NULL, *text = NULL;
	char real_dir[PATH_MAX], real_full[PATH_MAX];
	size_t dlen;
	gsize len = 0;
	struct stat st;
	int rc = -EACCES;

	if (!media_path_ok(r->path)) {
		*why = g_strdup_printf("media %" PRId64 ": path '%s' leaves the media folder", r->id,
				       r->path);
		goto out;
	}
	if (!(dir = db_media_dir(s->db_path, &err))) {
		*why = g_strdup_printf("media folder: %s", err ? err : "unknown");
		rc = -EIO;
		goto out;
	}
	full = g_build_filename(dir, r->path, NULL);
	if (!realpath(dir, real_dir) || !realpath(full, real_full)) {
		rc = -errno;
		*why = g_strdup_printf("media %" PRId64 ": %s: %s", r->id, full, g_strerror(errno));
		goto out;
	}
	dlen = strlen(real_dir);
	if (strncmp(real_full, real_dir, dlen) != 0 || real_full[dlen] != '/') {
		*why = g_strdup_printf("media %" PRId64 ": %s leads out of %s", r->id, full, dir);
		goto out;
	}
	if (stat(real_full, &st) < 0 || !S_ISREG(st.st_mode)) {
		*why = g_strdup_printf("media %" PRId64 ": %s is not a file", r->id, full);
		rc = -ENOENT;
		goto out;
	}
	if (st.st_size > REVIEW_MAX_MEDIA) {
		*why = g_strdup_printf("media %" PRId64 ": %s is too large", r->id, full);
		rc = -EFBIG;
		goto out;
	}
	if (!g_file_get_contents(real_full, &text, &len, NULL)) {
		*why = g_strdup_printf("media %" PRId64 ": cannot read %s", r->id, full);
		rc = -EIO;
		goto out;
	}
	*out = g_bytes_new_take(text, len);
	rc = 0;
out:
	free(dir);
	free(err);
	g_free(full);
	return rc;
}

/* Finds the media row of part_id's latest inspection (or the one the
 * request names, ?inspection=) with id media_id (or the first of kind) and
 * reads its file; 0 with *row and *data, or an error replied. */
static int media_find(review_server *s, SoupServerMessage *msg, int64_t part_id,
		      int64_t media_id, const char *kind, struct media_row *row, GBytes **data)
{
	struct review_latest l = { 0 };
	struct media_search q = { .part_id = part_id, .want_id = media_id, .want_kind = kind };
	char *err = NULL, *why = NULL;
	int rc;

	if ((rc = review__find_latest(s, msg, part_id, &l)) < 0) {
		if (rc == -ENOENT)
			review__reply_error(msg, SOUP_STATUS_NOT_FOUND,
					    "no inspection of part %" PRId64, part_id);
		return rc;
	}
	if (db_read_media(s->db_path, l.id, media_cb, &q, &err) < 0) {
		review__reply_db_error(msg, DB_ESQLITE, err);
		free(err);
		return -EIO;
	}
	if (!q.found.path) {
		if (kind)
			review__reply_error(msg, SOUP_STATUS_NOT_FOUND,
					    "part %" PRId64 " has no %s kept", part_id, kind);
		else
			review__reply_error(msg, SOUP_STATUS_NOT_FOUND,
					    "part %" PRId64 " has no such media", part_id);
		return -ENOENT;
	}
	if ((rc = media_read(s, &q.found, data, &why)) < 0) {
		g_warning("review: %s", why);
		if (rc == -EACCES)
			review__reply_error(msg, SOUP_STATUS_FORBIDDEN,
					    "the media file is outside the media folder");
		else if (rc == -ENOENT)
			review__reply_error(msg, SOUP_STATUS_NOT_FOUND,
					    "the media file is gone (retention?)");
		else
			review__reply_error(msg, SOUP_STATUS_INTERNAL_SERVER_ERROR,
					    "cannot read the media file");
		g_free(why);
		media_row_clear(&q.found);
		return rc;
	}
	*row = q.found;
	return 0;
}

int review__media_read_kind(review_server *s, SoupServerMessage *msg, int64_t part_id,
			    const char *kind, GBytes **data)
{
	struct media_row r = { 0 };
	int rc = media_find(s, msg, part_id, -1, kind, &r, data);

	media_row_clear(&r);
	return rc;
}

/* GET /api/parts/ID/media/MEDIA_ID: the file, by the row's id only; the
 * client never names a path. */
void review__api_media(review_server *s, SoupServerMessage *msg, int64_t part_id,
		       int64_t media_id)
{
	struct media_row r = { 0 };
	GBytes *data = NULL;

	if (media_find(s, msg, part_id, media_id, NULL, &r, &data) < 0)
		return;
	/* Every kind but the vibration window is a PNG (image, heatmap,
	 * anomaly): the schema's CHECK on media.kind allows no other. */
	review__reply_bytes(msg, SOUP_STATUS_OK,
			    strcmp(r.kind, "vibration") == 0 ? "audio/wav" : "image/png", data);
	g_bytes_unref(data);
	media_row_clear(&r);
}

/* GET /api/parts/ID/vibration: the part's logged vibration window, its
 * envelope spectrum (computed here by the same meter the line reads its
 * bearing lines with) and the bearing defect frequencies to mark on it. */
void review__api_vibration(review_server *s, SoupServerMessage *msg, int64_t part_id)
{
	struct media_row r = { 0 };
	GBytes *data = NULL;
	JsonBuilder *b;
	condition_meter *meter = NULL;
	struct vigil_vibration fig;
	const double *env;
	struct wav w = { 0 };
	const float *x;
	char *why = NULL;
	size_t n, nbins = 0;
	double rate, df = 0;

	if (media_find(s, msg, part_id, -1, "vibration", &r, &data) < 0)
		return;
	/* The log's own form only (core/wav.h): vigild wrote this file. */
	if (wav_parse(g_bytes_get_data(data, NULL), g_bytes_get_size(data), WAV_FLOAT32, &w,
		      &why) < 0) {
		g_warning("review: media %" PRId64 " (%s) is not a mono float32 WAV", r.id, r.path);
		review__reply_error(msg, SOUP_STATUS_INTERNAL_SERVER_ERROR,
				    "the vibration file is not a mono 32-bit float WAV");
		g_free(why);
		goto out;
	}
	x = w.x;
	n = w.n;
	rate = w.rate_hz;
	b = json_builder_new();
	json_builder_begin_object(b);
	review__add_int(b, "media_id", r.id);
	review__add_string(b, "sensor", r.camera ? r.camera : s->vibration_name);
	review__add_number(b, "rate_hz", rate);
	review__add_int(b, "samples", (int64_t)n);
	json_builder_set_member_name(b, "waveform_g");
	json_builder_begin_array(b);
	for (size_t i = 0; i < n && i < REVIEW_MAX_WAVEFORM; i++)
		json_builder_add_double_value(b, isfinite(x[i]) ? x[i] : 0.0);
	json_builder_end_array(b);
	review__add_bearing(s, b);
	json_builder_set_member_name(b, "envelope");
	if (s->hf_hz < rate / 2 &&
	    (meter = condition_meter_new(MIN(n, REVIEW_MAX_SPECTRUM), rate, s->hf_hz)) &&
	    condition_measure(meter, x, ISO_CLASS_I, s->have_bearing ? &s->bearing : NULL,
			      &fig) == 0 &&
	    (env = condition_envelope(meter, &nbins, &df))) {
		json_builder_begin_object(b);
		review__add_number(b, "df_hz", df);
		review__add_number(b, "band_hz", s->hf_hz);
		/* Read off this spectrum as the line reads them: equal to the
		 * logged figures when the window and settings are the line's. */
		review__add_number(b, "ftf_env", fig.ftf_env);
		review__add_number(b, "bpfo_env", fig.bpfo_env);
		review__add_number(b, "bpfi_env", fig.bpfi_env);
		review__add_number(b, "bsf_env", fig.bsf_env);
		json_builder_set_member_name(b, "magnitude");
		json_builder_begin_array(b);
		for (size_t i = 0; i < nbins; i++)
			json_builder_add_double_value(b, isfinite(env[i]) ? env[i] : 0.0);
		json_builder_end_array(b);
		json_builder_end_object(b);
	} else {
		json_builder_add_null_value(b);  /* too short, or the band is above Nyquist */
	}
	json_builder_end_object(b);
	review__reply_json(msg, SOUP_STATUS_OK, json_builder_get_root(b));
	g_object_unref(b);
out:
	condition_meter_free(meter);
	wav_clear(&w);
	g_bytes_unref(data);
	media_row_clear(&r);
}


/* ---- GET /api/reference?camera=NAME: a good part to compare with ---- */

/* Searched newest first among this many accepted parts: a kept image of
 * an accepted part is a sample (about one in ten), so a few hundred
 * reach back far enough without reading the whole log per request. */
#define REVIEW_REFERENCE_SCAN 500

struct reference_scan {
	GArray *ids;   /* struct db_inspection's part_id and id, pairs of int64 */
};

static int reference_cb(const struct db_inspection *row, void *data)
{
	struct reference_scan *r = data;
	int64_t pair[2] = { row->part_id, row->id };

	/* A part a reviewer overruled to reject or marginal is no reference. */
	if (row->review && row->review_verdict != VIGIL_VERDICT_ACCEPT)
		return 0;
	g_array_append_vals(r->ids, pair, 2);
	return 0;
}

struct camera_image {
	const char *camera;   /* NULL: any */
	int64_t media_id;
	char *camera_found;
};

static int camera_image_cb(const struct db_media *m, void *data)
{
	struct camera_image *c = data;

	if (strcmp(m->kind, "image") != 0 ||
	    (c->camera && (!m->camera || strcmp(m->camera, c->camera) != 0)))
		return 0;
	c->media_id = m->id;
	c->camera_found = g_strdup(m->camera);
	return 1;
}

void review__api_reference(review_server *s, SoupServerMessage *msg, const char *camera)
{
	struct db_filter f = DB_FILTER_ALL;
	struct reference_scan r = { g_array_new(FALSE, FALSE, sizeof(int64_t)) };
	struct db_row_cb cb = { reference_cb, &r };
	struct camera_image c = { camera, -1, NULL };
	int64_t part_id = -1;
	char *err = NULL;

	f.verdict = "accept";
	f.limit = REVIEW_REFERENCE_SCAN;
	if (db_query(s->db_path, &f, &cb, &err) < 0)
		goto fail;
	/* db_query gives the newest rows oldest first: walk them backwards. */
	for (guint i = r.ids->len; i >= 2 && part_id < 0; i -= 2) {
		int64_t *pair = &g_array_index(r.ids, int64_t, i - 2);

		if (db_read_media(s->db_path, pair[1], camera_image_cb, &c, &err) < 0)
			goto fail;
		if (c.media_id >= 0)
			part_id = pair[0];
	}
	if (part_id < 0) {
		review__reply_error(msg, SOUP_STATUS_NOT_FOUND,
				    "no recent accepted part kept an image%s%s",
				    camera ? " of camera " : "", camera ? camera : "");
	} else {
		JsonBuilder *b = json_builder_new();
		char *url = g_strdup_printf("/api/parts/%" PRId64 "/media/%" PRId64, part_id,
					    c.media_id);

		json_builder_begin_object(b);
		review__add_int(b, "part_id", part_id);
		review__add_string(b, "verdict", "accept");
		review__add_string(b, "camera", c.camera_found);
		review__add_int(b, "media_id", c.media_id);
		review__add_string(b, "url", url);
		json_builder_end_object(b);
		review__reply_json(msg, SOUP_STATUS_OK, json_builder_get_root(b));
		g_object_unref(b);
		g_free(url);
	}
	goto out;
fail:
	review__reply_db_error(msg, DB_ESQLITE, err);
	free(err);
out:
	g_free(c.camera_found);
	g_array_free(r.ids, TRUE);
}
