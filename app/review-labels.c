/* Labels worth training on (review-private.h): the defect types a review
 * may name (the model package's classes, from its manifest's [classes],
 * plus the plant's own [review] defect_types) and the region QA painted
 * on the part's image, which arrives as a PNG data URL in the review's
 * JSON and is kept as a 0/255 mask of the image's size in the media
 * folder, so that `vigilctl export` can hand it to training. */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <glib/gstdio.h>

#include "app/review-private.h"
#include "core/part.h"
#include "cvwrap/cvwrap.h"

#define LABEL_MAX_TYPES 200
#define DATA_URL_PREFIX "data:image/png;base64,"

/* ---- the defect types ---- */

/* Appends the comma-separated words of list to arr, skipping empty ones
 * and repeats; the first word that is not a type is returned (g_free), or
 * NULL. */
static char *add_words(GPtrArray *arr, const char *list)
{
	char **words = g_strsplit(list, ",", -1);
	char *bad = NULL;

	for (int i = 0; words[i] && !bad; i++) {
		char *w = g_strstrip(words[i]);

		if (!*w)
			continue;
		if (!vigil_defect_type_ok(w) || arr->len >= LABEL_MAX_TYPES)
			bad = g_strdup(w);
		else if (!g_ptr_array_find_with_equal_func(arr, w, g_str_equal, NULL))
			g_ptr_array_add(arr, g_strdup(w));
	}
	g_strfreev(words);
	return bad;
}

/* The [classes] of package dir's manifest.ini into surface and vibration.
 * A package without the section (older ones) adds none; a package that
 * cannot be read is the line's to report, not the review page's. */
static void add_package(review_server *s, const char *dir)
{
	char *path = g_build_filename(dir, "manifest.ini", NULL);
	GKeyFile *kf = g_key_file_new();

	if (g_key_file_load_from_file(kf, path, G_KEY_FILE_NONE, NULL)) {
		static const char *const keys[] = { "surface", "vibration" };
		GPtrArray *into[] = { s->label_surface, s->label_vibration };

		for (int k = 0; k < 2; k++) {
			char *v = g_key_file_get_string(kf, "classes", keys[k], NULL);
			char *bad = v ? add_words(into[k], v) : NULL;

			if (bad)
				g_warning("review: %s: [classes] %s: '%s' is not a class name (letters, "
					  "digits, _ - . up to %d characters); left out", path,
					  keys[k], bad, VIGIL_DEFECT_TYPE_MAX);
			g_free(bad);
			g_free(v);
		}
	}
	g_key_file_unref(kf);
	g_free(path);
}

int review__labels_read(review_server *s, const config *cfg, char **err)
{
	char **jobs = config_groups(cfg, "job.");
	char *pkg = NULL, *plant = NULL, *bad;
	int rc = -EINVAL;

	s->label_surface = g_ptr_array_new_with_free_func(g_free);
	s->label_vibration = g_ptr_array_new_with_free_func(g_free);
	s->label_plant = g_ptr_array_new_with_free_func(g_free);
	if (config_get_string(cfg, "review", "defect_types", "", &plant, err) < 0)
		goto out;
	if ((bad = add_words(s->label_plant, plant))) {
		*err = config_error(cfg, "review", "defect_types",
				    "'%s' is not a defect type: one word of letters, digits, _ - . up "
				    "to %d characters, at most %d types, separated by commas", bad,
				    VIGIL_DEFECT_TYPE_MAX, LABEL_MAX_TYPES);
		g_free(bad);
		goto out;
	}
	/* Every package the line may run: [model] and each job's. */
	if (config_get_string(cfg, "model", "package", "", &pkg, NULL) == 0 && *pkg)
		add_package(s, pkg);
	for (int i = 0; jobs[i]; i++) {
		g_free(pkg);
		pkg = NULL;
		if (config_get_string(cfg, jobs[i], "package", "", &pkg, NULL) == 0 && *pkg)
			add_package(s, pkg);
	}
	rc = 0;
out:
	g_strfreev(jobs);
	g_free(pkg);
	g_free(plant);
	return rc;
}

void review__labels_clear(review_server *s)
{
	g_clear_pointer(&s->label_surface, g_ptr_array_unref);
	g_clear_pointer(&s->label_vibration, g_ptr_array_unref);
	g_clear_pointer(&s->label_plant, g_ptr_array_unref);
}

static gboolean type_known(review_server *s, const char *t)
{
	GPtrArray *all[] = { s->label_surface, s->label_vibration, s->label_plant };

	for (int k = 0; k < 3; k++)
		if (all[k] && g_ptr_array_find_with_equal_func(all[k], t, g_str_equal, NULL))
			return TRUE;
	return FALSE;
}

static void add_list(JsonBuilder *b, const char *name, GPtrArray *arr)
{
	json_builder_set_member_name(b, name);
	json_builder_begin_array(b);
	for (guint i = 0; arr && i < arr->len; i++)
		json_builder_add_string_value(b, g_ptr_array_index(arr, i));
	json_builder_end_array(b);
}

/* GET /api/classes: {"surface": [...], "vibration": [...], "plant": [...],
 * "max_mask_bytes": N}. */
void review__api_classes(review_server *s, SoupServerMessage *msg)
{
	JsonBuilder *b = json_builder_new();

	json_builder_begin_object(b);
	add_list(b, "surface", s->label_surface);
	add_list(b, "vibration", s->label_vibration);
	add_list(b, "plant", s->label_plant);
	review__add_int(b, "max_mask_bytes", REVIEW_MAX_MASK_URL);
	json_builder_end_object(b);
	review__reply_json(msg, SOUP_STATUS_OK, json_builder_get_root(b));
	g_object_unref(b);
}

/* ---- the label of one review ---- */

void review__label_clear(struct review_label_in *in)
{
	free(in->mask);
	memset(in, 0, sizeof *in);
}

static int bad_label(SoupServerMessage *msg, const char *fmt, const char *arg)
{
	review__reply_error(msg, SOUP_STATUS_BAD_REQUEST, fmt, arg);
	return -EINVAL;
}

/* The part's image size, from its file: 0, or an error replied. */
static int image_size(review_server *s, SoupServerMessage *msg, int64_t part_id, int *w, int *h)
{
	GBytes *data = NULL;
	uint8_t *img = NULL;
	gsize len;
	const void *bytes;
	int rc;

	if (review__media_read_kind(s, msg, part_id, "image", &data) < 0)
		return -ENOENT;
	bytes = g_bytes_get_data(data, &len);
	rc = cvw_imdecode_gray(bytes, len, &img, w, h);
	g_bytes_unref(data);
	free(img);
	if (rc < 0) {
		review__reply_error(msg, SOUP_STATUS_INTERNAL_SERVER_ERROR,
				    "the image of part %" PRId64 " does not decode", part_id);
		return -EIO;
	}
	return 0;
}

static int wrong_size(SoupServerMessage *msg, int64_t part_id, guint32 mw, guint32 mh, int w,
		      int h)
{
	review__reply_error(msg, SOUP_STATUS_BAD_REQUEST,
			    "mask: the PNG is %ux%u, but the image of part %" PRId64 " is %dx%d (a "
			    "mask is the image's size)", mw, mh, part_id, w, h);
	return -EINVAL;
}

/* The mask's data URL decoded to gray pixels of the part's image's size,
 * thresholded to 0/255 (a browser's canvas smooths the edges of what it
 * paints). The size in the PNG's header is checked before anything is
 * decoded, so that a small file cannot make a huge image. */
static int decode_mask(review_server *s, SoupServerMessage *msg, int64_t part_id,
		       const char *url, struct review_label_in *in)
{
	guint32 mw, mh;
	int w, h;
	static const guchar png_sig[8] = { 0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n' };
	const char *b64;
	guchar *png;
	gsize len = 0;
	int rc;

	if (strlen(url) > REVIEW_MAX_MASK_URL) {
		review__reply_error(msg, SOUP_STATUS_BAD_REQUEST,
				    "mask: the data URL is over %d bytes", REVIEW_MAX_MASK_URL);
		return -EINVAL;
	}
	if (!g_str_has_prefix(url, DATA_URL_PREFIX))
		return bad_label(msg, "mask is a PNG data URL: %s...", DATA_URL_PREFIX "BASE64");
	b64 = url + strlen(DATA_URL_PREFIX);
	for (const char *p = b64; *p; p++)
		if (!g_ascii_isalnum(*p) && !strchr("+/=", *p))
			return bad_label(msg, "mask: the data URL's %s is not base64", "payload");
	png = g_base64_decode(b64, &len);
	if (len < sizeof png_sig || memcmp(png, png_sig, sizeof png_sig) != 0) {
		g_free(png);
		return bad_label(msg, "mask: the data URL holds %s, not a PNG file",
				 len ? "other bytes" : "nothing");
	}
	/* The IHDR chunk comes first: its width and height, big-endian. */
	if (len < 24 || memcmp(png + 12, "IHDR", 4) != 0) {
		g_free(png);
		return bad_label(msg, "mask: %s", "the PNG has no header (truncated or corrupt?)");
	}
	mw = (guint32)png[16] << 24 | (guint32)png[17] << 16 | (guint32)png[18] << 8 | png[19];
	mh = (guint32)png[20] << 24 | (guint32)png[21] << 16 | (guint32)png[22] << 8 | png[23];
	if (image_size(s, msg, part_id, &w, &h) < 0) {
		g_free(png);
		return -ENOENT;
	}
	if (mw != (guint32)w || mh != (guint32)h) {
		g_free(png);
		return wrong_size(msg, part_id, mw, mh, w, h);
	}
	rc = cvw_imdecode_gray(png, len, &in->mask, &in->w, &in->h);
	g_free(png);
	if (rc < 0)
		return bad_label(msg, "mask: %s", "the PNG does not decode (truncated or corrupt?)");
	if (in->w != w || in->h != h)
		return wrong_size(msg, part_id, (guint32)in->w, (guint32)in->h, w, h);
	for (size_t i = 0, n = (size_t)in->w * (size_t)in->h; i < n; i++) {
		in->mask[i] = in->mask[i] >= 128 ? 255 : 0;
		in->painted |= in->mask[i] != 0;
	}
	return 0;
}

int review__label_parse(review_server *s, SoupServerMessage *msg, JsonObject *o,
			int64_t part_id, struct review_label_in *in)
{
	JsonNode *t = json_object_get_member(o, "defect_type");
	JsonNode *m = json_object_get_member(o, "mask");

	memset(in, 0, sizeof *in);
	if (t && !JSON_NODE_HOLDS_NULL(t)) {
		if (!JSON_NODE_HOLDS_VALUE(t) || json_node_get_value_type(t) != G_TYPE_STRING)
			return bad_label(msg, "defect_type is a %s or null", "string");
		in->defect_type = json_node_get_string(t);
		if (!*in->defect_type)
			in->defect_type = NULL;
		else if (!type_known(s, in->defect_type))
			return bad_label(msg, "defect_type '%.60s' is not one of GET /api/classes "
					 "(the package's [classes] and [review] defect_types)",
					 in->defect_type);
	}
	if (!m || JSON_NODE_HOLDS_NULL(m))
		return 0;
	if (!JSON_NODE_HOLDS_VALUE(m) || json_node_get_value_type(m) != G_TYPE_STRING)
		return bad_label(msg, "mask is a %s or null", "PNG data URL string");
	if (decode_mask(s, msg, part_id, json_node_get_string(m), in) < 0) {
		review__label_clear(in);
		return -EINVAL;
	}
	return 0;
}

/* Writes a painted mask below the media folder as masks/PART-TIME.png
 * (a new name per review: an earlier review keeps its own), through a
 * temporary name so that no reader sees half a file. 0 with *rel the path
 * relative to the media folder (g_free; NULL when nothing was painted),
 * or -EIO with the error replied. */
int review__label_save_mask(review_server *s, SoupServerMessage *msg, int64_t part_id,
			    const struct review_label_in *in, char **rel)
{
	char *media = NULL, *err = NULL, *dir, *full, *tmp;
	int rc = 0;

	*rel = NULL;
	if (!in->mask || !in->painted)
		return 0;
	if (!(media = db_media_dir(s->db_path, &err))) {
		review__reply_db_error(msg, DB_ESQLITE, err);
		free(err);
		return -EIO;
	}
	dir = g_build_filename(media, "masks", NULL);
	*rel = g_strdup_printf("masks/%" PRId64 "-%" PRId64 ".png", part_id, g_get_real_time());
	full = g_build_filename(media, *rel, NULL);
	tmp = g_strconcat(full, ".tmp.png", NULL);
	if (g_mkdir_with_parents(dir, 0755) < 0 ||
	    (rc = cvw_imwrite_gray(tmp, in->mask, in->w, in->h, in->w)) < 0 ||
	    g_rename(tmp, full) < 0) {
		g_warning("review: cannot write the mask %s: %s", full,
			  g_strerror(rc < 0 ? -rc : errno));
		review__reply_error(msg, SOUP_STATUS_INTERNAL_SERVER_ERROR,
				    "cannot write the mask in the media folder");
		g_unlink(tmp);
		g_clear_pointer(rel, g_free);
		rc = -EIO;
	}
	free(media);
	g_free(dir);
	g_free(full);
	g_free(tmp);
	return rc;
}

/* Removes a mask written for a review that was then not stored. */
void review__label_drop_mask(review_server *s, const char *rel)
{
	char *media = rel ? db_media_dir(s->db_path, NULL) : NULL;
	char *full = media ? g_build_filename(media, rel, NULL) : NULL;

	if (full)
		g_unlink(full);
	g_free(full);
	free(media);
}

/* ---- the stored mask ---- */

static int mask_cb(const struct db_inspection *row, void *data)
{
	*(char **)data = g_strdup(row->review_mask);
	return 0;
}

/* A mask path as review__label_save_mask writes it: masks/NAME. The row
 * is vigild's own, but the file anyone with write access can change, so
 * nothing else is opened. */
static gboolean mask_path_ok(const char *rel)
{
	const char *name;

	if (!g_str_has_prefix(rel, "masks/"))
		return FALSE;
	name = rel + strlen("masks/");
	return *name && !strchr(name, '/') &&
	       !strchr(name, '\\') && strcmp(name, ".") != 0 && strcmp(name, "..") != 0;
}

void review__api_mask(review_server *s, SoupServerMessage *msg, int64_t part_id)
{
	struct review_latest l = { 0 };
	struct db_row_cb cb = { mask_cb, NULL };
	char *rel = NULL, *err = NULL, *media = NULL, *full = NULL, *data = NULL;
	gsize len = 0;
	int rc;

	cb.data = &rel;
	/* The latest inspection, or the one ?inspection= names. */
	if ((rc = review__find_latest(s, msg, part_id, &l)) < 0) {
		if (rc == -ENOENT)
			review__reply_error(msg, SOUP_STATUS_NOT_FOUND,
					    "no inspection of part %" PRId64, part_id);
		goto out;
	}
	if (db_neighbours(s->db_path, l.id, 0, &cb, &err) < 0 ||
	    !(media = db_media_dir(s->db_path, &err))) {
		review__reply_db_error(msg, DB_ESQLITE, err);
		free(err);
		goto out;
	}
	if (!rel) {
		review__reply_error(msg, SOUP_STATUS_NOT_FOUND,
				    "the latest review of part %" PRId64 " has no mask", part_id);
		goto out;
	}
	if (!mask_path_ok(rel)) {
		g_warning("review: part %" PRId64 ": mask path '%s' is not under masks/", part_id,
			  rel);
		review__reply_error(msg, SOUP_STATUS_FORBIDDEN,
				    "the mask file is outside the media folder's masks/");
		goto out;
	}
	full = g_build_filename(media, rel, NULL);
	if (!g_file_get_contents(full, &data, &len, NULL)) {
		review__reply_error(msg, SOUP_STATUS_NOT_FOUND, "the mask file is gone");
		goto out;
	}
	{
		GBytes *b = g_bytes_new_take(data, len);

		data = NULL;
		review__reply_bytes(msg, SOUP_STATUS_OK, "image/png", b);
		g_bytes_unref(b);
	}
out:
	g_free(rel);
	free(media);
	g_free(full);
	g_free(data);
}
