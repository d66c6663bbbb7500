/* The line's lifecycle: builds the stages from the settings, starts and
 * stops their threads, and keeps the statistics they count. The threads
 * themselves live in line-inspect.c (acquire, inspect), line-log.c (log),
 * line-plc.c (PLC) and line-jobs.c (job loader). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "app/line-private.h"

void line_free(line *l)
{
	if (!l)
		return;
	/* First: its feeder reads the stages below for the status. */
	mqtt_client_free(l->mqtt);
	for (int i = 0; i < LINE_MAX_CAMERAS; i++)
		capture_camera_free(l->cameras[i]);
	sensor_source_free(l->sensor);
	line_jobs_free(l->jobs_loader);
	sensor_transmitter_free(l->transmitter);
	infer_model_free(l->model);
	fusion_sigfeat_free(l->sigfeat);
	condition_meter_free(l->condition);
	plc_link_free(l->plc);
	if (l->events)
		g_async_queue_unref(l->events);
	plant_forwarder_free(l->forwarder, 0);
	db_close(l->db);
	bqueue_free(l->q_inspect);
	bqueue_free(l->q_ready);
	bqueue_free(l->q_results);
	bqueue_free(l->q_log);
	line_settings_clear(&l->set);
	if (l->kept_fd >= 0)
		close(l->kept_fd);
	g_mutex_clear(&l->stats_lock);
	g_free(l);
}

/* The MQTT status's view of the line (feeder thread). */
static void line_mqtt_station(void *data, struct mqtt_station *out)
{
	line *l = data;
	struct line_stats st;
	struct line_health h;
	struct line_alarms a;

	line_get_stats(l, &st);
	line_get_health(l, &h);
	line_get_alarms(l, &a);
	memset(out, 0, sizeof *out);
	out->inspected = st.results_written;
	out->rejected = st.rejected;
	out->failsafe = st.failsafe;
	if (!h.plc_connected)
		out->faults[out->nfaults++] = "plc";
	if (h.cameras_up < h.cameras)
		out->faults[out->nfaults++] = "camera";
	if (!h.db_ok)
		out->faults[out->nfaults++] = "database";
	for (int k = 0; k < LINE_ALARM_KINDS && out->nfaults < MQTT_MAX_FAULTS; k++)
		if (a.active >> k & 1u)
			out->faults[out->nfaults++] = alarm_kind_name((enum alarm_kind)k);
}

static const char *const thread_names[LINE_THREADS] = { "plc", "acquire", "inspect", "log" };

/* VIGIL_TEST_HANG=THREAD:PARTS, a test hook (docs/operations.md): the
 * named thread hangs once the line has inspected PARTS parts, so that a
 * test sees the watchdog stop. Only the environment reaches it, never
 * the configuration or the network. */
static int read_test_hang(line *l, char **err)
{
	const char *v = g_getenv("VIGIL_TEST_HANG");
	const char *colon;
	char *end;
	guint64 parts;

	l->hang_thread = -1;
	if (!v)
		return 0;
	colon = strchr(v, ':');
	for (int t = 0; colon && t < LINE_THREADS; t++)
		if ((size_t)(colon - v) == strlen(thread_names[t]) &&
		    strncmp(v, thread_names[t], (size_t)(colon - v)) == 0)
			l->hang_thread = t;
	if (l->hang_thread >= 0) {
		errno = 0;
		parts = g_ascii_strtoull(colon + 1, &end, 10);
		if (colon[1] && !*end && !errno && g_ascii_isdigit(colon[1])) {
			l->hang_after_parts = parts;
			g_warning("VIGIL_TEST_HANG (a test hook): the %s thread will hang after %"
				  G_GUINT64_FORMAT " parts inspected", thread_names[l->hang_thread],
				  parts);
			return 0;
		}
	}
	l->hang_thread = -1;
	*err = g_strdup_printf("VIGIL_TEST_HANG=%s: expected THREAD:PARTS, THREAD one of plc, "
			       "acquire, inspect, log, PARTS a count of parts (a test hook; unset "
			       "it to run)", v);
	return -EINVAL;
}

line *line_new(const config *cfg, char **err)
{
	line *l = g_new0(line, 1);
	const struct line_settings *set = &l->set;
	const struct infer_info *info;
	char *why = NULL, *dberr = NULL, *sen_group = NULL;

	g_mutex_init(&l->stats_lock);
	l->kept_fd = -1;
	l->events = g_async_queue_new_full(line_event_free);
	if (read_test_hang(l, err) < 0 || line_read_config(l, cfg, err) < 0)
		goto fail;
	l->alarms.enabled = set->alarm.enabled;
	/* The stages below say what is wrong with a setting; here, where the
	 * settings came from, the error gets the file, line and key. */
	sen_group = g_strconcat("vibration.", set->vibration.name, NULL);
	l->sigfeat = fusion_sigfeat_new(set->vibration.cfg.window, set->vibration.cfg.rate_hz);
	if (!l->sigfeat) {
		*err = config_error(cfg, sen_group, "window", "no signal features for %zu samples "
				    "at %g Hz", set->vibration.cfg.window, set->vibration.cfg.rate_hz);
		goto fail;
	}
	/* The job the PLC selected last runs from the start (line-jobs.c). */
	if (line_jobs_load_start(l, cfg, err) < 0)
		goto fail;
	/* Said at every start, in the log and the journal, since a station
	 * left learning would pass every defect it sees. */
	if (set->learn) {
		static const char what[] =
			"learning mode ([model] learn = true): the station accepts every part "
			"its model judges and keeps each one's image and vibration, for training; "
			"the model's own verdict is only logged (model_verdict). Parts it cannot "
			"judge are still fail-safe rejects. Run known-good parts only";

		g_warning("%s", what);
		line_post_event(l, "learning", "%s; model %s judges", what, l->run_version);
	}
	info = infer_model_info(l->model);
	/* Every job runs on the same backend: a GPU one takes raw parts. */
	l->device_prep = infer_model_prepares_on_device(l->model);
	l->condition = condition_meter_new((size_t)info->window, info->rate_hz,
					   set->condition.hf_hz);
	if (!l->condition) {
		*err = config_error(cfg, sen_group, "window", "cannot measure a %d-sample window "
				    "at %g Hz", info->window, info->rate_hz);
		goto fail;
	}
	for (int i = 0; i < set->ncameras; i++) {
		if (!(l->cameras[i] = capture_camera_new(&set->cameras[i].cfg, &why))) {
			char *group = g_strconcat("camera.", set->cameras[i].name, NULL);

			*err = config_error(cfg, group, "pipeline", "%s", why);
			g_free(group);
			goto fail;
		}
	}
	if (!(l->sensor = sensor_source_new(&set->vibration.cfg, &why))) {
		*err = config_error(cfg, sen_group,
				    set->vibration.cfg.iio_uri ? "iio_uri" : "pipeline", "%s", why);
		goto fail;
	}
	if (set->transmitter.name &&
	    !(l->transmitter = sensor_transmitter_new(&set->transmitter.cfg, err)))
		goto fail;
	if (!(l->plc = plc_link_new(&l->set.plc.link))) {
		*err = config_error(cfg, "plc", NULL, "invalid endpoint");
		goto fail;
	}
	l->db = db_open_with(set->database.path, &set->database.opt, &dberr);
	if (!l->db) {
		*err = config_error(cfg, "database", "path", "%s", dberr ? dberr : "cannot open");
		free(dberr);
		goto fail;
	}
	if (set->mqtt.enabled &&
	    !(l->mqtt = mqtt_client_new(&set->mqtt, line_mqtt_station, l, err)))
		goto fail;
	l->q_inspect = bqueue_new(QUEUE_PARTS);
	/* Parts in hand wait here with their frames: room for two batches. */
	l->q_ready = bqueue_new((size_t)set->model.max_batch * 2);
	l->q_results = bqueue_new(QUEUE_PARTS);
	l->q_log = bqueue_new(QUEUE_PARTS * 16);
	g_free(sen_group);
	return l;
fail:
	g_free(why);
	g_free(sen_group);
	line_free(l);
	return NULL;
}

const double line_latency_bounds_ms[LINE_LATENCY_BUCKETS] = {
	1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000,
};

const char *const line_failsafe_cause_names[VIGIL_FAILSAFE_CAUSES] = {
	"deadline", "no_frame", "no_vibration", "model_error", "queue_full", "overrun", "fault",
	"not_inspected", "sensor_flat", "image_flat",
};

const char *const line_stage_names[LINE_STAGES] = {
	"capture_wait", "inference", "plc_write", "db_write",
};

const double line_stage_bounds_ms[LINE_STAGE_BUCKETS] = {
	0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000,
};

const double line_batch_bounds[LINE_BATCH_BUCKETS] = { 1, 2, 4, 8, 16, 32, 64, 128 };

void line_count_stage(line *l, enum line_stage stage, double ms)
{
	int b = 0;

	while (b < LINE_STAGE_BUCKETS && ms > line_stage_bounds_ms[b])
		b++;
	g_mutex_lock(&l->stats_lock);
	l->st.stage_parts[stage][b]++;
	l->st.stage_sum_ms[stage] += ms;
	g_mutex_unlock(&l->stats_lock);
}

void line_count(line *l, uint64_t *field, uint64_t n)
{
	g_mutex_lock(&l->stats_lock);
	*field += n;
	g_mutex_unlock(&l->stats_lock);
}

/* ---- part records ---- */

struct vigil_part *line_part_new(void)
{
	struct line_part *lp = g_new0(struct line_part, 1);

	return &lp->p;
}

void line_part_free(struct vigil_part *p)
{
	if (!p)
		return;
	db_media_set_free(((struct line_part *)p)->media);
	g_free(p);
}

void line_camera_stats(line *l, struct capture_stats *st)
{
	memset(st, 0, sizeof *st);
	st->up = 1;
	for (int i = 0; i < l->set.ncameras; i++) {
		struct capture_stats one;

		capture_camera_stats(l->cameras[i], &one);
		st->frames += one.frames;
		st->dropped += one.dropped;
		st->restarts += one.restarts;
		st->failed |= one.failed;
		st->up &= one.up;
	}
}

int line_start(line *l, char **err)
{
	int rc;

	for (int i = 0; i < l->set.ncameras; i++)
		if ((rc = capture_camera_start(l->cameras[i], err)) < 0)
			return rc;
	if ((rc = sensor_source_start(l->sensor, err)) < 0)
		return rc;
	l->jobs_loader = line_jobs_new(l);
	if (l->set.plant.configured) {
		char *why = NULL;

		l->forwarder = plant_forwarder_new(l->set.database.path, &l->set.plant.opt, &why);
		if (!l->forwarder) {
			*err = g_strdup(why ? why : "cannot start the plant forwarder");
			free(why);
			return -EIO;
		}
	}
	if (l->mqtt && (rc = mqtt_client_start(l->mqtt, err)) < 0)
		return rc;
	if (l->transmitter && (rc = sensor_transmitter_start(l->transmitter, err)) < 0)
		return rc;
	for (int t = 0; t < LINE_THREADS; t++)
		atomic_store(&l->beat_us[t], vigil_now_us());
	l->t_log = g_thread_new("log", line_log_thread, l);
	l->t_acquire = g_thread_new("acquire", line_acquire_thread, l);
	l->t_inspect = g_thread_new("inspect", line_inspect_thread, l);
	l->t_plc = g_thread_new("plc", line_plc_thread, l);
	return 0;
}

void line_stop(line *l, int grace_ms)
{
	if (!l->t_plc)
		return;
	g_atomic_int_set(&l->stop_triggers, 1);
	l->grace_end_us = vigil_now_us() + (int64_t)grace_ms * 1000;
	g_atomic_int_set(&l->stop_all, 1);
	g_thread_join(l->t_plc);
	l->t_plc = NULL;
	bqueue_close(l->q_inspect);
	g_thread_join(l->t_acquire);  /* it closes q_ready */
	g_thread_join(l->t_inspect);
	line_jobs_free(l->jobs_loader); /* it may log an event */
	l->jobs_loader = NULL;
	/* Verdicts that came after the PLC thread ended are still logged,
	 * as never presented unless a fail-safe reject went out for them. */
	{
		void *item;

		while (bqueue_pop(l->q_results, &item, 0) == 0) {
			if (!atomic_load(&((struct line_part *)item)->failsafe_ticket))
				line_log_not_sent(l, item);
			bqueue_push(l->q_log, item, -1);
		}
	}
	bqueue_close(l->q_log);
	g_thread_join(l->t_log);
	/* Every result is queued by now; the status reads the database's
	 * figures, so the client stops before it closes. */
	mqtt_client_stop(l->mqtt);
	db_close(l->db);
	l->db = NULL;
	/* Every row is in the file now: the forwarder sends what is left,
	 * for at most [plant] drain_s, and what it could not send goes at the
	 * next start. */
	plant_forwarder_free(l->forwarder, 1);
	l->forwarder = NULL;
}

void line_get_stats(line *l, struct line_stats *st)
{
	g_mutex_lock(&l->stats_lock);
	*st = l->st;
	g_mutex_unlock(&l->stats_lock);
}

int line_get_plant(line *l, struct plant_stats *out)
{
	plant_forwarder_get_stats(l->forwarder, out);
	return l->forwarder != NULL;
}

void line_get_mqtt(line *l, struct mqtt_stats *out)
{
	mqtt_client_get_stats(l->mqtt, out);
}

void line_get_health(line *l, struct line_health *h)
{
	struct db_stats db;

	db_get_stats(l->db, &db);
	G_STATIC_ASSERT(sizeof h->db_rows_dropped == sizeof db.rows_dropped);
	*h = (struct line_health){
		.q_inspect = bqueue_depth(l->q_inspect) + bqueue_depth(l->q_ready),
		.q_results = bqueue_depth(l->q_results),
		.q_log = bqueue_depth(l->q_log),
		/* The link itself belongs to the PLC thread; it publishes
		 * its state once per poll. */
		.plc_connected = g_atomic_int_get(&l->plc_up),
		.cameras = l->set.ncameras,
		.db_rows_written = db.rows_written,
		.db_rows_failed = db.rows_failed,
		.db_ok = !g_atomic_int_get(&l->db_fault_up),
		.db_write_lag_ms = db.write_lag_ms,
		.db_write_lag_max_ms = db.write_lag_max_ms,
		.db_queue_high_water = db.queue_high_water,
		.db_file_moves = db.file_moves,
		.db_file_away = db.file_away,
		.db_clock_steps = db.clock_steps,
		.db_media_written = db.media_written,
		.db_media_dropped = db.media_dropped,
		.db_ring_files = db.ring_files,
		.db_ring_bytes = db.ring_bytes,
		.db_ring_dropped = db.ring_dropped,
		.db_ring_removed = db.ring_removed,
		.db_ring_oldest_us = db.ring_oldest_us,
		.db_spool_depth = db.spool_depth,
		.model_precision = infer_precision_names[l->set.model.precision],
		.learning = l->set.learn,
	};
	g_mutex_lock(&l->stats_lock);
	h->model_version = l->pub_version;
	h->model_backend = l->pub_backend;
	g_mutex_unlock(&l->stats_lock);
	for (int i = 0; i < l->set.ncameras; i++) {
		struct capture_stats one;

		capture_camera_stats(l->cameras[i], &one);
		h->cameras_up += one.up ? 1 : 0;
		h->camera[i].name = l->set.cameras[i].name;
		h->camera[i].frames = one.frames;
		h->camera[i].up = one.up;
	}
	memcpy(h->db_rows_dropped, db.rows_dropped, sizeof h->db_rows_dropped);
}


void line_beat(line *l, enum line_thread t)
{
	atomic_store(&l->beat_us[t], vigil_now_us());
	if (G_UNLIKELY(l->hang_thread == (int)t)) {
		struct line_stats st;
		gboolean said = FALSE;

		/* Until line_stop: a stop is not the hang the test is after. */
		for (;;) {
			if (g_atomic_int_get(&l->stop_triggers))
				return;
			line_get_stats(l, &st);
			if (st.inspected < l->hang_after_parts)
				return;
			if (!said)
				g_message("VIGIL_TEST_HANG: the %s thread hangs now, after %"
					  G_GUINT64_FORMAT " parts inspected", thread_names[t],
					  st.inspected);
			said = TRUE;
			g_usleep(50000);
		}
	}
}

void line_get_progress(line *l, struct line_progress *out)
{
	int64_t now = vigil_now_us(), oldest = now, beat;

	*out = (struct line_progress){
		.sources_up = g_atomic_int_get(&l->sources_up),
		.oldest = thread_names[0],
	};
	out->ready = out->sources_up && g_atomic_int_get(&l->plc_tried);
	for (int t = 0; t < LINE_THREADS; t++) {
		if ((beat = atomic_load(&l->beat_us[t])) < oldest) {
			oldest = beat;
			out->oldest = thread_names[t];
		}
	}
	if ((beat = db_writer_heartbeat_us(l->db)) && beat < oldest) {
		oldest = beat;
		out->oldest = "db-writer";
	}
	out->oldest_ms = (double)(now - oldest) / 1000.0;
}
