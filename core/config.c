#include "core/config.h"

#include <errno.h>
#include <glib.h>
#include <stdarg.h>
#include <string.h>

struct config {
	GKeyFile *kf;
	char *name;
	/* 1-based line of each "group" header (its first) and "group\nkey",
	 * for messages: GKeyFile does not keep them. */
	GHashTable *lines;
};

void config_free(config *c)
{
	if (!c)
		return;
	if (c->kf)
		g_key_file_free(c->kf);
	if (c->lines)
		g_hash_table_destroy(c->lines);
	g_free(c->name);
	g_free(c);
}

/* Records where each group and key is, reading the text as GKeyFile did.
 * GKeyFile keeps the last of a key given twice, also across a section
 * given twice (it merges them): the first value would be dropped without a
 * word, so a repeated key is refused here, naming both lines. */
static int index_lines(config *c, const char *text, char **err)
{
	char **lines = g_strsplit(text, "\n", -1);
	char *group = NULL;
	int rc = 0;

	c->lines = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
	for (int i = 0; lines[i] && rc == 0; i++) {
		char *line = g_strstrip(lines[i]), *eq, *id;
		gpointer first;

		if (line[0] == '[') {
			char *end = strrchr(line, ']');

			if (end)
				*end = '\0';
			g_free(group);
			group = g_strdup(line + 1);
			if (!g_hash_table_contains(c->lines, group))
				g_hash_table_insert(c->lines, g_strdup(group), GINT_TO_POINTER(i + 1));
			continue;
		}
		if (!group || line[0] == '#' || line[0] == ';' || !(eq = strchr(line, '=')))
			continue;
		*eq = '\0';
		g_strchomp(line);
		id = g_strconcat(group, "\n", line, NULL);
		if (g_hash_table_lookup_extended(c->lines, id, NULL, &first)) {
			*err = g_strdup_printf("%s:%d: [%s] %s: given twice (first at line %d)",
					       c->name, i + 1, group, line, GPOINTER_TO_INT(first));
			g_free(id);
			rc = -EINVAL;
		} else {
			g_hash_table_insert(c->lines, id, GINT_TO_POINTER(i + 1));
		}
	}
	g_free(group);
	g_strfreev(lines);
	return rc;
}

config *config_load_data(const char *text, const char *name, char **err)
{
	config *c = g_new0(config, 1);
	GError *gerr = NULL;

	c->name = g_strdup(name);
	c->kf = g_key_file_new();
	if (!g_key_file_load_from_data(c->kf, text, (gsize)-1, G_KEY_FILE_NONE, &gerr)) {
		/* GLib's parse errors already name the offending line's text. */
		*err = g_strdup_printf("%s: %s", name, gerr->message);
		g_error_free(gerr);
		config_free(c);
		return NULL;
	}
	if (index_lines(c, text, err) < 0) {
		config_free(c);
		return NULL;
	}
	return c;
}

config *config_load_file(const char *path, char **err)
{
	char *text = NULL;
	GError *gerr = NULL;
	config *c;

	if (!g_file_get_contents(path, &text, NULL, &gerr)) {
		*err = g_strdup_printf("%s: %s", path, gerr->message);
		g_error_free(gerr);
		return NULL;
	}
	c = config_load_data(text, path, err);
	g_free(text);
	return c;
}

const char *config_name(const config *c) { return c->name; }

int config_has_group(const config *c, const char *group)
{
	return g_key_file_has_group(c->kf, group);
}

/* 1-based line of [group] or of key inside it; 0 when not found. */
static int find_line(const config *c, const char *group, const char *key)
{
	char *id = key ? g_strconcat(group, "\n", key, NULL) : g_strdup(group);
	int line = GPOINTER_TO_INT(g_hash_table_lookup(c->lines, id));

	g_free(id);
	return line;
}

char *config_error(const config *c, const char *group, const char *key,
		   const char *fmt, ...)
{
	va_list ap;
	char *what, *msg;
	int line = find_line(c, group, key);

	if (line == 0 && key)
		line = find_line(c, group, NULL);
	va_start(ap, fmt);
	what = g_strdup_vprintf(fmt, ap);
	va_end(ap);
	if (key)
		msg = g_strdup_printf("%s:%d: [%s] %s: %s", c->name, line, group, key, what);
	else
		msg = g_strdup_printf("%s:%d: [%s]: %s", c->name, line, group, what);
	g_free(what);
	return msg;
}

char **config_groups(const config *c, const char *prefix)
{
	gsize n = 0;
	char **all = g_key_file_get_groups(c->kf, &n);
	GPtrArray *out = g_ptr_array_new();

	for (gsize i = 0; i < n; i++)
		if (g_str_has_prefix(all[i], prefix))
			g_ptr_array_add(out, g_strdup(all[i]));
	g_ptr_array_add(out, NULL);
	g_strfreev(all);
	return (char **)g_ptr_array_free(out, FALSE);
}

int config_check_keys(const config *c, const char *group,
		      const char *const *allowed, char **err)
{
	gsize n = 0;
	char **keys = g_key_file_get_keys(c->kf, group, &n, NULL);
	int rc = 0;

	for (gsize i = 0; keys && i < n && rc == 0; i++) {
		if (!g_strv_contains(allowed, keys[i])) {
			char *list = g_strjoinv(", ", (char **)allowed);

			*err = config_error(c, group, keys[i], "unknown key (known: %s)", list);
			g_free(list);
			rc = -EINVAL;
		}
	}
	g_strfreev(keys);
	return rc;
}

int config_get_string(const config *c, const char *group, const char *key,
		      const char *def, char **out, char **err)
{
	GError *gerr = NULL;
	char *v;

	if (!g_key_file_has_key(c->kf, group, key, NULL)) {
		if (!def) {
			*err = g_key_file_has_group(c->kf, group)
				? config_error(c, group, NULL, "missing required key '%s'", key)
				: g_strdup_printf("%s: missing group [%s] (key '%s' is required)",
						  c->name, group, key);
			return -EINVAL;
		}
		*out = g_strdup(def);
		return 0;
	}
	v = g_key_file_get_string(c->kf, group, key, &gerr);
	if (!v) {
		*err = config_error(c, group, key, "%s", gerr->message);
		g_error_free(gerr);
		return -EINVAL;
	}
	g_strstrip(v);
	if (!def && v[0] == '\0') {
		*err = config_error(c, group, key, "must not be empty");
		g_free(v);
		return -EINVAL;
	}
	*out = v;
	return 0;
}

/* Reads the raw value, or NULL when absent. */
static char *raw_value(const config *c, const char *group, const char *key)
{
	char *v = g_key_file_get_value(c->kf, group, key, NULL);

	return v ? g_strstrip(v) : NULL;
}

int config_get_int(const config *c, const char *group, const char *key,
		   int def, int min, int max, int *out, char **err)
{
	char *v = raw_value(c, group, key), *end = NULL;
	long long x;

	if (!v) {
		*out = def;
		return 0;
	}
	errno = 0;
	x = g_ascii_strtoll(v, &end, 10);
	if (v[0] == '\0' || *end != '\0' || errno) {
		*err = config_error(c, group, key, "'%s' is not a whole number", v);
		g_free(v);
		return -EINVAL;
	}
	if (x < min || x > max) {
		*err = config_error(c, group, key, "%lld is out of range %d..%d", x, min, max);
		g_free(v);
		return -EINVAL;
	}
	g_free(v);
	*out = (int)x;
	return 0;
}

int config_get_double(const config *c, const char *group, const char *key,
		      double def, double min, double max, double *out, char **err)
{
	char *v = raw_value(c, group, key), *end = NULL;
	double x;

	if (!v) {
		*out = def;
		return 0;
	}
	errno = 0;
	x = g_ascii_strtod(v, &end);
	if (v[0] == '\0' || *end != '\0' || errno || x != x) {
		*err = config_error(c, group, key, "'%s' is not a number", v);
		g_free(v);
		return -EINVAL;
	}
	if (x < min || x > max) {
		*err = config_error(c, group, key, "%g is out of range %g..%g", x, min, max);
		g_free(v);
		return -EINVAL;
	}
	g_free(v);
	*out = x;
	return 0;
}

int config_get_choice(const config *c, const char *group, const char *key,
		      const char *def, const char *const *choices, int *out, char **err)
{
	char *v = NULL;
	int rc = config_get_string(c, group, key, def, &v, err);

	if (rc < 0)
		return rc;
	for (int i = 0; choices[i]; i++) {
		if (strcmp(choices[i], v) == 0) {
			*out = i;
			g_free(v);
			return 0;
		}
	}
	{
		char *list = g_strjoinv(", ", (char **)choices);

		*err = config_error(c, group, key, "'%s' is not one of: %s", v, list);
		g_free(list);
	}
	g_free(v);
	return -EINVAL;
}
