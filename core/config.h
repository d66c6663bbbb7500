/* Configuration files: GLib key files whose every error names the file, the
 * line and the key. Getters return 0 or -EINVAL and then set *err to
 * "FILE:LINE: [group] key: what is wrong" (g_free it). */
#ifndef VIGIL_CORE_CONFIG_H
#define VIGIL_CORE_CONFIG_H

#include <stddef.h>

typedef struct config config;

/* Loads a file. NULL on failure with *err set (g_free it): a syntax error,
 * or a key given twice in a section (also in a section given twice), which
 * names both lines. */
config *config_load_file(const char *path, char **err);
/* Loads text held in memory; name stands for the file in messages. */
config *config_load_data(const char *text, const char *name, char **err);
void config_free(config *c);

const char *config_name(const config *c);
int config_has_group(const config *c, const char *group);

/* Groups whose name starts with prefix (e.g. "camera."), NULL-terminated;
 * free with g_strfreev. */
char **config_groups(const config *c, const char *prefix);

/* Fails naming the first key of group that is not in allowed (NULL-terminated). */
int config_check_keys(const config *c, const char *group,
		      const char *const *allowed, char **err);

/* A missing key takes def; required keys pass def = NULL (strings) or use
 * config_require. *out of config_get_string is g_strdup'ed (g_free it). */
int config_get_string(const config *c, const char *group, const char *key,
		      const char *def, char **out, char **err);
int config_get_int(const config *c, const char *group, const char *key,
		   int def, int min, int max, int *out, char **err);
int config_get_double(const config *c, const char *group, const char *key,
		      double def, double min, double max, double *out, char **err);
/* One of the NULL-terminated choices; *out is its index. */
int config_get_choice(const config *c, const char *group, const char *key,
		      const char *def, const char *const *choices, int *out, char **err);

/* Formats an error at the line of group/key (or the group, if key is NULL). */
char *config_error(const config *c, const char *group, const char *key,
		   const char *fmt, ...) __attribute__((format(printf, 4, 5)));

#endif
