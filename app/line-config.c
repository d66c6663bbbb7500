/* Routes each section of the configuration to its stage's reader (the keys,
 * defaults and errors of a stage live in its own folder: capture/,
 * sensors/, fusion/condition, inference/, db/), checks the sections it
 * knows, reads [job.N] and checks what spans stages. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "app/line-private.h"

static const char *const job_keys[] = { "package", "reject", "marginal", NULL };
static const char *const known_groups[] = { "camera.", "vibration.", "transmitter.", "model",
					    "plc", "database", "job.", "review", "alarm", "mqtt",
					    "plant", NULL };

static int check_groups(const config *cfg, char **err)
{
	char **groups = config_groups(cfg, "");
	int rc = 0;

	for (int i = 0; groups[i] && rc == 0; i++) {
		gboolean known = FALSE;

		for (int k = 0; known_groups[k]; k++) {
			const char *g = known_groups[k];
			size_t n = strlen(g);

			if (g[n - 1] == '.' ? strncmp(groups[i], g, n) == 0 && groups[i][n]
					    : strcmp(groups[i], g) == 0)
				known = TRUE;
		}
		if (!known) {
			*err = config_error(cfg, groups[i], NULL,
					    "unknown section (known: [camera.NAME], [vibration.NAME], "
					    "[transmitter.NAME], [model], [plc], [database], "
					    "[job.N], [review], [alarm], [mqtt], [plant])");
			rc = -EINVAL;
		}
	}
	g_strfreev(groups);
	return rc;
}

/* The one group with the given prefix; this version takes one vibration
 * source per part. */
static int single_group(const config *cfg, const char *prefix, char **out, char **err)
{
	char **groups = config_groups(cfg, prefix);
	int n = (int)g_strv_length(groups);
	int rc = 0;

	if (n != 1) {
		*err = n == 0
			? g_strdup_printf("%s: no [%sNAME] section", config_name(cfg), prefix)
			: config_error(cfg, groups[1], NULL,
				       "a second [%sNAME] section: this version takes exactly one",
				       prefix);
		rc = -EINVAL;
	} else {
		*out = g_strdup(groups[0]);
	}
	g_strfreev(groups);
	return rc;
}

/* [job.N] sections: the recipes the PLC selects by number. */
static int read_jobs(struct line_settings *set, const config *cfg, char **err)
{
	char **groups = config_groups(cfg, "job.");
	int rc = 0;

	for (int i = 0; groups[i] && rc == 0; i++) {
		const char *num = groups[i] + strlen("job.");
		char *end = NULL;
		long n = strtol(num, &end, 10);
		struct line_job *j;

		rc = -EINVAL;
		if (!*num || *end || n < 1 || n > LINE_MAX_JOBS) {
			*err = config_error(cfg, groups[i], NULL,
					    "a job number must be 1..%d", LINE_MAX_JOBS);
			break;
		}
		j = &set->jobs[n];
		j->number = (int)n;
		/* Thresholds left out are the package's own; a reject without a
		 * marginal has no marginal band. The package is loaded when the
		 * PLC selects the job, so a broken one stops no line. */
		if (config_check_keys(cfg, groups[i], job_keys, err) < 0 ||
		    config_get_string(cfg, groups[i], "package", set->model.package, &j->package,
				      err) < 0 ||
		    config_get_double(cfg, groups[i], "reject", NAN, 0, 1, &j->reject, err) < 0 ||
		    config_get_double(cfg, groups[i], "marginal", j->reject, 0, 1, &j->marginal,
				      err) < 0)
			break;
		rc = 0;
	}
	g_strfreev(groups);
	return rc;
}

/* [model]: inference's keys, and learn, which is the line's: it changes
 * what the line does with a verdict, not how the model reaches it. */
static int read_model(struct line_settings *set, const config *cfg, char **err)
{
	static const char *const no_yes[] = { "false", "true", NULL };
	int learn = 0;

	if (config_get_choice(cfg, "model", "learn", "false", no_yes, &learn, err) < 0)
		return -EINVAL;
	set->learn = learn;
	return infer_options_read(cfg, &set->model, err);
}

/* [transmitter.NAME]: a Modbus vibration transmitter, at most one in this
 * version. */
static int read_transmitter(struct line_settings *set, const config *cfg, char **err)
{
	char **groups = config_groups(cfg, "transmitter.");
	int rc = 0;

	if (groups[0] && groups[1]) {
		*err = config_error(cfg, groups[1], NULL,
				    "a second [transmitter.NAME] section: this version takes one");
		rc = -EINVAL;
	} else if (groups[0]) {
		rc = transmitter_config_read(cfg, groups[0], &set->transmitter, err);
	}
	g_strfreev(groups);
	return rc;
}

void line_settings_clear(struct line_settings *set)
{
	if (!set)
		return;
	for (int i = 0; i < LINE_MAX_CAMERAS; i++)
		capture_settings_clear(&set->cameras[i]);
	sensor_settings_clear(&set->vibration);
	transmitter_settings_clear(&set->transmitter);
	infer_settings_clear(&set->model);
	db_settings_clear(&set->database);
	plc_settings_clear(&set->plc);
	mqtt_settings_clear(&set->mqtt);
	g_free(set->plc_state_path);
	plant_settings_clear(&set->plant);
	for (size_t i = 0; i < G_N_ELEMENTS(set->jobs); i++)
		g_free(set->jobs[i].package);
	memset(set, 0, sizeof *set);
}

int line_read_config(line *l, const config *cfg, char **err)
{
	struct line_settings *set = &l->set;
	char **cams = NULL, *sen = NULL;
	int ival = 0;
	int rc;

	if ((rc = check_groups(cfg, err)) < 0 ||
	    (rc = single_group(cfg, "vibration.", &sen, err)) < 0 ||
	    (rc = read_transmitter(set, cfg, err)) < 0)
		goto out;
	rc = -EINVAL;
	cams = config_groups(cfg, "camera.");
	if (!cams[0]) {
		*err = g_strdup_printf("%s: no [camera.NAME] section", config_name(cfg));
		goto out;
	}
	for (int i = 0; cams[i]; i++) {
		if (i == LINE_MAX_CAMERAS) {
			*err = config_error(cfg, cams[i], NULL, "more than %d cameras",
					    LINE_MAX_CAMERAS);
			goto out;
		}
		if (capture_config_read(cfg, cams[i], &set->cameras[i], err) < 0)
			goto out;
		set->ncameras = i + 1;
	}
	/* One section, two readers: the source's keys, then the condition
	 * figures' (whose envelope band must lie below the source's Nyquist). */
	if (sensor_config_read(cfg, sen, &set->vibration, err) < 0 ||
	    condition_config_read(cfg, sen, set->vibration.cfg.rate_hz, &set->condition,
				  err) < 0 ||
	    read_model(set, cfg, err) < 0)
		goto out;

	if (plc_config_read(cfg, "plc", &l->set.plc, err) < 0)
		goto out;
	if ((rc = read_jobs(set, cfg, err)) < 0)
		goto out;
	rc = -EINVAL;
	if (alarm_settings_read(cfg, &set->alarm, err) < 0)
		goto out;
	if (db_options_read(cfg, &set->database, err) < 0 ||
	    mqtt_settings_read(cfg, set->database.station, &set->mqtt, err) < 0 ||
	    plant_options_read(cfg, set->database.station, &set->plant, err) < 0)
		goto out;
	/* Learning keeps every accepted part's image and vibration: they are
	 * the training set, whatever the sample says. */
	if (set->learn)
		set->database.opt.keep_accepted_every = 1;
	/* The PLC's job selection lives next to the database, so a replaced
	 * appliance disk keeps both or neither. */
	{
		char *def = g_strconcat(set->database.path, ".plc-state", NULL);

		ival = config_get_string(cfg, "plc", "state_file", def, &l->set.plc_state_path, err);
		g_free(def);
		if (ival < 0)
			goto out;
	}
	if (l->set.plc.job && !set->jobs[l->set.plc.job].number) {
		*err = config_error(cfg, "plc", "job", "no [job.%d] section", l->set.plc.job);
		goto out;
	}
	rc = 0;
out:
	g_strfreev(cams);
	g_free(sen);
	return rc;
}
