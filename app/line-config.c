#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "app/line-private.h"

static const char *const camera_keys[] = {
	"pipeline", "trigger", "frame_timeout_ms", "queue_frames", "restart", "restart_min_ms",
	"restart_max_ms", "watchdog_ms", NULL };
static const char *const vibration_keys[] = {
	"pipeline", "mode", "rate_hz", "window", "stride", "offset_ms", "buffer_s",
	"clip_level", "timeout_ms", "iso_class", "hf_hz", "shaft_hz", "bearing_balls",
	"ball_diameter_mm", "pitch_diameter_mm", "contact_angle_deg", "iio_uri", "iio_device",
	"iio_channel", "iio_unit_scale", "iio_buffer_samples", NULL };
static const char *const model_keys[] = { "package", "backend", "precision", "max_batch", NULL };
static const char *const job_keys[] = { "package", "reject", "marginal", NULL };
static const char *const database_keys[] = {
	"path", "queue_depth", "media_dir", "media_queue", "keep_accepted_every", "max_age_days",
	"protect_days", "disk_budget_mb", "retention_period_s", "commit_timeout_ms",
	"spool_rows", NULL };

static const char *const transmitter_keys[] = {
	"host", "port", "device", "baud", "parity", "stop_bits", "unit_id", "registers",
	"word_order", "velocity_register", "velocity_type", "velocity_scale",
	"acceleration_register", "acceleration_type", "acceleration_scale",
	"temperature_register", "temperature_type", "temperature_scale",
	"poll_ms", "timeout_ms", "stale_ms", NULL };

static const char *const known_groups[] = { "camera.", "vibration.", "transmitter.", "model",
					    "plc", "database", "job.", "review", NULL };

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
					    "[job.N], [review])");
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
static int read_jobs(line *l, const config *cfg, char **err)
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
		j = &l->jobs[n];
		j->number = (int)n;
		/* Thresholds left out are the package's own; a reject without a
		 * marginal has no marginal band. The package is loaded when the
		 * PLC selects the job, so a broken one stops no line. */
		if (config_check_keys(cfg, groups[i], job_keys, err) < 0 ||
		    config_get_string(cfg, groups[i], "package", l->model_dir, &j->package, err) < 0 ||
		    config_get_double(cfg, groups[i], "reject", NAN, 0, 1, &j->reject, err) < 0 ||
		    config_get_double(cfg, groups[i], "marginal", j->reject, 0, 1, &j->marginal,
				      err) < 0)
			break;
		rc = 0;
	}
	g_strfreev(groups);
	return rc;
}

/* One [camera.NAME] section into c. */
static int read_camera(line *l, const config *cfg, const char *group, struct line_camera *c,
		       char **err)
{
	static const char *const cam_modes[] = { "sequence", "timestamp", NULL };
	static const char *const restarts[] = { "auto", "always", "never", NULL };
	int mode = 0, queue = 0, restart = 0;

	(void)l;
	if (config_check_keys(cfg, group, camera_keys, err) < 0)
		return -EINVAL;
	c->name = g_strdup(group + strlen("camera."));
	if (config_get_string(cfg, group, "pipeline", NULL, &c->pipeline, err) < 0 ||
	    config_get_choice(cfg, group, "trigger", "sequence", cam_modes, &mode, err) < 0 ||
	    config_get_int(cfg, group, "frame_timeout_ms", 2000, 1, 600000,
			   &c->frame_timeout_ms, err) < 0 ||
	    config_get_int(cfg, group, "queue_frames", 8, 1, 1024, &queue, err) < 0 ||
	    config_get_choice(cfg, group, "restart", "auto", restarts, &restart, err) < 0)
		return -EINVAL;
	c->cfg = (struct capture_config){ .name = c->name, .pipeline = c->pipeline,
		.mode = (enum capture_mode)mode, .queue_frames = queue,
		.restart = (enum capture_restart)restart };
	if (config_get_int(cfg, group, "restart_min_ms", 500, 10, 600000,
			   &c->cfg.restart_min_ms, err) < 0 ||
	    config_get_int(cfg, group, "restart_max_ms", 10000, 10, 3600000,
			   &c->cfg.restart_max_ms, err) < 0 ||
	    config_get_int(cfg, group, "watchdog_ms", 0, 0, 3600000,
			   &c->cfg.watchdog_ms, err) < 0)
		return -EINVAL;
	return 0;
}

/* [database]: where the log and its files go, and how long they stay. */
static int read_database(line *l, const config *cfg, char **err)
{
	struct db_options *o = &l->db_opt;
	int media_queue, keep, age, protect, budget, period, spool;
	char *def = g_strconcat(l->db_path, ".media", NULL);
	const char *max_pages;
	int rc;

	*o = (struct db_options)DB_OPTIONS_DEFAULT;
	rc = config_get_string(cfg, "database", "media_dir", def, &l->db_media_dir, err);
	g_free(def);
	if (rc < 0 ||
	    config_get_int(cfg, "database", "media_queue", 64, 1, 1 << 16, &media_queue, err) < 0 ||
	    config_get_int(cfg, "database", "keep_accepted_every", 100, 0, 1 << 30, &keep, err) < 0 ||
	    config_get_int(cfg, "database", "max_age_days", 0, 0, 36500, &age, err) < 0 ||
	    config_get_int(cfg, "database", "protect_days", 7, 0, 36500, &protect, err) < 0 ||
	    config_get_int(cfg, "database", "disk_budget_mb", 0, 0, 1 << 30, &budget, err) < 0 ||
	    config_get_int(cfg, "database", "retention_period_s", 600, 1, 86400, &period, err) < 0 ||
	    config_get_int(cfg, "database", "spool_rows", 4096, 1, 1 << 20, &spool, err) < 0 ||
	    config_get_int(cfg, "database", "commit_timeout_ms", 100, 1, 10000,
			   &l->db_commit_timeout_ms, err) < 0)
		return -EINVAL;
	if (age && age < protect) {
		*err = config_error(cfg, "database", "max_age_days",
				    "%d is less than protect_days (%d): rows of the protected "
				    "last days are never removed", age, protect);
		return -EINVAL;
	}
	o->queue_depth = (size_t)l->db_queue;
	o->media_dir = l->db_media_dir;
	o->media_queue = (size_t)media_queue;
	o->keep_accepted_every = keep;
	o->max_age_days = age;
	o->protect_days = protect;
	o->disk_budget_mb = budget;
	o->retention_period_s = period;
	o->spool_rows = (size_t)spool;
	/* Test only (docs/operations.md): a database that is "full" after
	 * this many pages, to exercise the full-disk path. */
	max_pages = g_getenv("VIGIL_TEST_DB_MAX_PAGES");
	if (max_pages)
		o->max_pages = g_ascii_strtoll(max_pages, NULL, 10);
	/* Test only: a slow disk, each commit this much later. */
	if (g_getenv("VIGIL_TEST_DB_COMMIT_DELAY_MS"))
		o->commit_delay_ms = atoi(g_getenv("VIGIL_TEST_DB_COMMIT_DELAY_MS"));
	return 0;
}

/* [transmitter.NAME]: a Modbus vibration transmitter (sensors.h); at most
 * one in this version. */
static int read_transmitter(line *l, const config *cfg, char **err)
{
	static const char *const quantities[] = { "velocity", "acceleration", "temperature" };
	static const char *const types[] = { "u16", "s16", "u32", "s32", "f32", NULL };
	static const char *const reg_kinds[] = { "holding", "input", NULL };
	static const char *const orders[] = { "ABCD", "CDAB", NULL };
	static const char *const parities[] = { "N", "E", "O", NULL };
	struct transmitter_config *t = &l->tx_cfg;
	char **groups = config_groups(cfg, "transmitter.");
	const char *g = groups[0];
	int rc = -EINVAL, ival = 0;

	if (!g) {
		rc = 0;
		goto out;
	}
	if (groups[1]) {
		*err = config_error(cfg, groups[1], NULL,
				    "a second [transmitter.NAME] section: this version takes one");
		goto out;
	}
	if (config_check_keys(cfg, g, transmitter_keys, err) < 0)
		goto out;
	l->tx_name = g_strdup(g + strlen("transmitter."));
	t->name = l->tx_name;
	if (config_get_string(cfg, g, "host", "", &l->tx_host, err) < 0 ||
	    config_get_string(cfg, g, "device", "", &l->tx_device, err) < 0 ||
	    config_get_int(cfg, g, "port", 502, 1, 65535, &t->port, err) < 0 ||
	    config_get_int(cfg, g, "baud", 19200, 300, 4000000, &t->baud, err) < 0 ||
	    config_get_choice(cfg, g, "parity", "E", parities, &ival, err) < 0)
		goto out;
	t->parity = "NEO"[ival];
	if (config_get_int(cfg, g, "stop_bits", 1, 1, 2, &t->stop_bits, err) < 0 ||
	    config_get_int(cfg, g, "unit_id", 1, 0, 247, &t->unit_id, err) < 0 ||
	    config_get_choice(cfg, g, "registers", "input", reg_kinds, &t->input_registers,
			      err) < 0 ||
	    config_get_choice(cfg, g, "word_order", "ABCD", orders, &t->low_word_first, err) < 0 ||
	    config_get_int(cfg, g, "poll_ms", 1000, 10, 3600000, &t->poll_ms, err) < 0 ||
	    config_get_int(cfg, g, "timeout_ms", 500, 10, 60000, &t->timeout_ms, err) < 0 ||
	    config_get_int(cfg, g, "stale_ms", 0, 0, 3600000, &t->stale_ms, err) < 0)
		goto out;
	if (!*l->tx_host == !*l->tx_device) {
		*err = config_error(cfg, g, "host", "give either host (Modbus TCP) or device "
				    "(Modbus RTU)");
		goto out;
	}
	t->host = *l->tx_host ? l->tx_host : NULL;
	t->device = *l->tx_device ? l->tx_device : NULL;
	for (int q = 0; q < TRANSMITTER_QUANTITIES; q++) {
		char *k_reg = g_strconcat(quantities[q], "_register", NULL);
		char *k_type = g_strconcat(quantities[q], "_type", NULL);
		char *k_scale = g_strconcat(quantities[q], "_scale", NULL);
		int type = 0, bad;

		bad = config_get_int(cfg, g, k_reg, -1, -1, 65535, &t->reg[q].address, err) < 0 ||
		      config_get_choice(cfg, g, k_type, "u16", types, &type, err) < 0 ||
		      config_get_double(cfg, g, k_scale, 1, -1e9, 1e9, &t->reg[q].scale, err) < 0;
		t->reg[q].type = (enum transmitter_type)type;
		g_free(k_reg);
		g_free(k_type);
		g_free(k_scale);
		if (bad)
			goto out;
	}
	if (t->reg[0].address < 0 && t->reg[1].address < 0 && t->reg[2].address < 0) {
		*err = config_error(cfg, g, "velocity_register",
				    "no register to read (velocity_, acceleration_ or "
				    "temperature_register)");
		goto out;
	}
	rc = 0;
out:
	g_strfreev(groups);
	return rc;
}

int line_read_config(line *l, const config *cfg, char **err)
{
	static const char *const sen_modes[] = { "sequence", "clock", NULL };
	char **cams = NULL, *sen = NULL;
	int mode = 0, ival = 0;
	double d = 0;
	int rc;

	if ((rc = check_groups(cfg, err)) < 0 ||
	    (rc = single_group(cfg, "vibration.", &sen, err)) < 0 ||
	    (rc = read_transmitter(l, cfg, err)) < 0)
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
		if (read_camera(l, cfg, cams[i], &l->cameras[i], err) < 0)
			goto out;
		l->ncameras = i + 1;
	}
	if (config_check_keys(cfg, sen, vibration_keys, err) < 0 ||
	    config_check_keys(cfg, "model", model_keys, err) < 0 ||
	    config_check_keys(cfg, "database", database_keys, err) < 0)
		goto out;

	l->sen_name = g_strdup(sen + strlen("vibration."));
	l->sen_cfg.name = l->sen_name;
	/* An IIO source (iio_uri) takes the place of the pipeline. */
	if (config_get_string(cfg, sen, "iio_uri", "", &l->sen_iio_uri, err) < 0)
		goto out;
	if (*l->sen_iio_uri) {
		if (config_get_string(cfg, sen, "iio_device", NULL, &l->sen_iio_device, err) < 0 ||
		    config_get_string(cfg, sen, "iio_channel", NULL, &l->sen_iio_channel, err) < 0 ||
		    config_get_double(cfg, sen, "iio_unit_scale", 1, -1e12, 1e12,
				      &l->sen_cfg.iio_unit_scale, err) < 0 ||
		    config_get_int(cfg, sen, "iio_buffer_samples", 0, 0, 1 << 20, &ival, err) < 0)
			goto out;
		l->sen_cfg.iio_uri = l->sen_iio_uri;
		l->sen_cfg.iio_device = l->sen_iio_device;
		l->sen_cfg.iio_channel = l->sen_iio_channel;
		l->sen_cfg.iio_buffer_samples = (size_t)ival;
	}
	if ((!*l->sen_iio_uri &&
	     config_get_string(cfg, sen, "pipeline", NULL, &l->sen_pipeline, err) < 0) ||
	    config_get_choice(cfg, sen, "mode", "sequence", sen_modes, &mode, err) < 0 ||
	    config_get_double(cfg, sen, "rate_hz", 12000, 100, 1e6, &l->sen_cfg.rate_hz, err) < 0 ||
	    config_get_int(cfg, sen, "window", 2048, 16, 1 << 22, &ival, err) < 0)
		goto out;
	l->sen_cfg.pipeline = l->sen_pipeline;
	l->sen_cfg.mode = (enum sensor_mode)mode;
	l->sen_cfg.window = (size_t)ival;
	if (config_get_int(cfg, sen, "stride", ival, 1, 1 << 24, &ival, err) < 0 ||
	    config_get_double(cfg, sen, "offset_ms", 0, -60000, 60000, &l->sen_cfg.offset_ms, err) < 0 ||
	    config_get_double(cfg, sen, "buffer_s", 10, 0.1, 3600, &l->sen_cfg.buffer_s, err) < 0 ||
	    config_get_double(cfg, sen, "clip_level", 0, 0, 1e9, &d, err) < 0 ||
	    config_get_int(cfg, sen, "timeout_ms", 2000, 1, 600000, &l->window_timeout_ms, err) < 0)
		goto out;
	l->sen_cfg.stride = (size_t)ival;
	{
		static const char *const iso_classes[] = { "I", "II", "III", "IV", NULL };
		struct bearing_geometry g = { 0 };
		double shaft_hz = 0;

		if (config_get_choice(cfg, sen, "iso_class", "I", iso_classes, &ival, err) < 0 ||
		    config_get_double(cfg, sen, "hf_hz", 2000, 10, 1e6, &l->hf_hz, err) < 0 ||
		    config_get_double(cfg, sen, "shaft_hz", 0, 0, 10000, &shaft_hz, err) < 0 ||
		    config_get_double(cfg, sen, "bearing_balls", 0, 0, 1000, &g.balls, err) < 0 ||
		    config_get_double(cfg, sen, "ball_diameter_mm", 0, 0, 1e4,
				      &g.ball_diameter_mm, err) < 0 ||
		    config_get_double(cfg, sen, "pitch_diameter_mm", 0, 0, 1e5,
				      &g.pitch_diameter_mm, err) < 0 ||
		    config_get_double(cfg, sen, "contact_angle_deg", 0, 0, 89,
				      &g.contact_angle_deg, err) < 0)
			goto out;
		l->iso_class = (enum iso_class)(ival + 1);
		if (l->hf_hz >= l->sen_cfg.rate_hz / 2) {
			*err = config_error(cfg, sen, "hf_hz", "%g Hz is not below Nyquist (%g Hz)",
					    l->hf_hz, l->sen_cfg.rate_hz / 2);
			goto out;
		}
		if (shaft_hz > 0) {
			if (condition_bearing_freqs(&g, shaft_hz, &l->bearing) < 0) {
				*err = config_error(cfg, sen, "bearing_balls",
						    "shaft_hz is set but the bearing geometry is "
						    "incomplete (bearing_balls, ball_diameter_mm < "
						    "pitch_diameter_mm)");
				goto out;
			}
			l->have_bearing = TRUE;
		}
	}
	l->sen_cfg.clip_level = (float)d;

	if (config_get_string(cfg, "model", "package", NULL, &l->model_dir, err) < 0 ||
	    config_get_string(cfg, "model", "backend", "opencv", &l->backend, err) < 0 ||
	    config_get_choice(cfg, "model", "precision", "fp32", infer_precision_names, &mode,
			      err) < 0 ||
	    config_get_int(cfg, "model", "max_batch", LINE_DEFAULT_MAX_BATCH, 1, LINE_MAX_BATCH,
			   &l->max_batch, err) < 0)
		goto out;
	l->precision = (enum infer_precision)mode;
	{
		/* An unknown backend is refused with the package, naming what
		 * this build has; a known one must run the precision asked. */
		const struct infer_backend *be = infer_backend_find(l->backend);

		if (be && !infer_backend_has_precision(be, l->precision)) {
			char *list = infer_backend_precision_list(be);

			*err = config_error(cfg, "model", "precision",
					    "the %s backend does not run %s (it runs: %s)",
					    l->backend, infer_precision_names[l->precision], list);
			g_free(list);
			goto out;
		}
	}

	if (plc_config_read(cfg, "plc", &l->plc_set, err) < 0)
		goto out;
	if ((rc = read_jobs(l, cfg, err)) < 0)
		goto out;
	rc = -EINVAL;

	if (config_get_string(cfg, "database", "path", NULL, &l->db_path, err) < 0 ||
	    config_get_int(cfg, "database", "queue_depth", 4096, 16, 1 << 20, &l->db_queue, err) < 0)
		goto out;
	if (read_database(l, cfg, err) < 0)
		goto out;
	/* The PLC's job selection lives next to the database, so a replaced
	 * appliance disk keeps both or neither. */
	{
		char *def = g_strconcat(l->db_path, ".plc-state", NULL);

		ival = config_get_string(cfg, "plc", "state_file", def, &l->plc_state_path, err);
		g_free(def);
		if (ival < 0)
			goto out;
	}
	if (l->plc_set.job && !l->jobs[l->plc_set.job].number) {
		*err = config_error(cfg, "plc", "job", "no [job.%d] section", l->plc_set.job);
		goto out;
	}
	rc = 0;
out:
	g_strfreev(cams);
	g_free(sen);
	return rc;
}
