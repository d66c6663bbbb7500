/* [plant]: the central PostgreSQL this station forwards its log to, and
 * the station's ids there. */
#include <errno.h>
#include <string.h>

#include <glib.h>
#include <libpq-fe.h>

#include "db/plant.h"

static const char *const plant_keys[] = { "conninfo", "passfile", "site", "line", "station",
	"batch", "retry_max_s", "media", "settle_s", "drain_s", NULL };
static const char *const no_yes[] = { "false", "true", NULL };

/* A site, line or station id: a name people read in the central
 * database, so it has to be one. */
static int check_id(const config *cfg, const char *key, const char *v, char **err)
{
	if (!*v || strlen(v) > 64 || !g_utf8_validate(v, -1, NULL)) {
		*err = config_error(cfg, "plant", key, "an id of 1 to 64 bytes of UTF-8");
		return -EINVAL;
	}
	return 0;
}

int plant_options_read(const config *cfg, const char *default_station, struct plant_settings *s,
		       char **err)
{
	struct plant_options *o = &s->opt;
	PQconninfoOption *parsed;
	char *why = NULL;

	*s = (struct plant_settings){ 0 };
	if (!config_has_group(cfg, "plant"))
		return 0;
	if (config_check_keys(cfg, "plant", plant_keys, err) < 0 ||
	    config_get_string(cfg, "plant", "conninfo", NULL, &s->conninfo, err) < 0 ||
	    config_get_string(cfg, "plant", "passfile", "", &s->passfile, err) < 0 ||
	    config_get_string(cfg, "plant", "site", NULL, &s->site, err) < 0 ||
	    config_get_string(cfg, "plant", "line", NULL, &s->line, err) < 0 ||
	    config_get_string(cfg, "plant", "station",
			      default_station ? default_station : g_get_host_name(), &s->station,
			      err) < 0 ||
	    config_get_int(cfg, "plant", "batch", 500, 1, 100000, &o->batch, err) < 0 ||
	    config_get_int(cfg, "plant", "retry_max_s", 30, 1, 3600, &o->retry_max_s, err) < 0 ||
	    config_get_choice(cfg, "plant", "media", "false", no_yes, &o->media, err) < 0 ||
	    config_get_int(cfg, "plant", "settle_s", 5, 0, 3600, &o->settle_s, err) < 0 ||
	    config_get_int(cfg, "plant", "drain_s", 10, 0, 600, &o->drain_s, err) < 0)
		return -EINVAL;
	if (check_id(cfg, "site", s->site, err) < 0 || check_id(cfg, "line", s->line, err) < 0 ||
	    check_id(cfg, "station", s->station, err) < 0)
		return -EINVAL;
	/* libpq's own parser: what it refuses here it would refuse at every
	 * connection attempt, so it is a configuration error. Its message
	 * quotes no value. */
	parsed = PQconninfoParse(s->conninfo, &why);
	if (!parsed) {
		*err = config_error(cfg, "plant", "conninfo", "not a libpq connection string: %s",
				    why ? g_strstrip(why) : "out of memory");
		PQfreemem(why);
		return -EINVAL;
	}
	PQconninfoFree(parsed);
	if (*s->passfile && !g_file_test(s->passfile, G_FILE_TEST_IS_REGULAR)) {
		*err = config_error(cfg, "plant", "passfile", "%s: no such file", s->passfile);
		return -EINVAL;
	}
	s->configured = 1;
	o->conninfo = s->conninfo;
	o->passfile = *s->passfile ? s->passfile : NULL;
	o->site = s->site;
	o->line = s->line;
	o->station = s->station;
	return 0;
}

void plant_settings_clear(struct plant_settings *s)
{
	if (!s)
		return;
	g_free(s->conninfo);
	g_free(s->passfile);
	g_free(s->site);
	g_free(s->line);
	g_free(s->station);
	*s = (struct plant_settings){ 0 };
}
