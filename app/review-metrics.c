/* The line's figures over HTTP (review-private.h): a sample of the
 * line's counters once a second for rates and the status charts, GET
 * /api/status and /api/history, and /metrics in Prometheus's text
 * format. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "app/alarm.h"
#include "app/mqtt.h"
#include "app/review-private.h"

static const char *const refusal_names[REFUSALS] = { "max_connections", "request_timeout",
						     "body" };

/* ---- status and metrics ---- */

/* "plant": the forwarder to the plant's PostgreSQL ([plant]; null
 * without): link, backlog per table, lag, counts. */
static void add_plant(JsonBuilder *b, line *l)
{
	struct plant_stats p;
	int64_t now = vigil_wall_us();

	json_builder_set_member_name(b, "plant");
	if (!line_get_plant(l, &p)) {
		json_builder_add_null_value(b);
		return;
	}
	json_builder_begin_object(b);
	json_builder_set_member_name(b, "connected");
	json_builder_add_boolean_value(b, p.connected != 0);
	json_builder_set_member_name(b, "schema_newer");
	json_builder_add_boolean_value(b, p.schema_newer != 0);
	json_builder_set_member_name(b, "backlog");
	json_builder_begin_object(b);
	for (int t = 0; t < PLANT_NTABLES; t++)
		review__add_int(b, plant_table_name(t), p.backlog[t]);
	json_builder_end_object(b);
	json_builder_set_member_name(b, "forwarded");
	json_builder_begin_object(b);
	for (int t = 0; t < PLANT_NTABLES; t++)
		review__add_int(b, plant_table_name(t), (int64_t)p.forwarded[t]);
	json_builder_end_object(b);
	review__add_int(b, "lost", (int64_t)(p.lost[PLANT_INSPECTIONS] + p.lost[PLANT_EVENTS]));
	review__add_number(b, "oldest_unforwarded_age_s", p.oldest_unforwarded_us
			   ? MAX(now - p.oldest_unforwarded_us, 0) / 1e6 : 0.0);
	review__add_number(b, "since_last_batch_s", p.last_batch_us
			   ? MAX(now - p.last_batch_us, 0) / 1e6 : NAN);
	review__add_int(b, "reviews_pulled", (int64_t)p.reviews_pulled);
	review__add_int(b, "link_failures", (int64_t)p.link_failures);
	review__add_string(b, "last_error", p.last_error);
	json_builder_end_object(b);
}

/* vigil_plant_*: the same figures for Prometheus. */
static void plant_metrics(GString *m, line *l)
{
	struct plant_stats p;
	int64_t now = vigil_wall_us();
	char label[48];

	if (!line_get_plant(l, &p))
		return;
	g_string_append(m, "# HELP vigil_plant_link_up 1 while the forwarder is connected to "
			"the plant's PostgreSQL ([plant]).\n# TYPE vigil_plant_link_up gauge\n");
	g_string_append_printf(m, "vigil_plant_link_up %d\n", p.connected ? 1 : 0);
	g_string_append(m, "# HELP vigil_plant_schema_newer 1 while the central schema is newer "
			"than this build (nothing is forwarded).\n"
			"# TYPE vigil_plant_schema_newer gauge\n");
	g_string_append_printf(m, "vigil_plant_schema_newer %d\n", p.schema_newer ? 1 : 0);
	g_string_append(m, "# HELP vigil_plant_backlog_rows Local rows not yet in the central "
			"database, by table.\n# TYPE vigil_plant_backlog_rows gauge\n");
	for (int t = 0; t < PLANT_NTABLES; t++) {
		g_snprintf(label, sizeof label, "{table=\"%s\"}", plant_table_name(t));
		g_string_append_printf(m, "vigil_plant_backlog_rows%s %" G_GINT64_FORMAT "\n", label,
				       p.backlog[t]);
	}
	g_string_append(m, "# HELP vigil_plant_forwarded_rows_total Rows forwarded since vigild "
			"started, by table.\n# TYPE vigil_plant_forwarded_rows_total counter\n");
	for (int t = 0; t < PLANT_NTABLES; t++) {
		g_snprintf(label, sizeof label, "{table=\"%s\"}", plant_table_name(t));
		g_string_append_printf(m, "vigil_plant_forwarded_rows_total%s %" G_GUINT64_FORMAT
				       "\n", label, p.forwarded[t]);
	}
	g_string_append(m, "# HELP vigil_plant_lost_rows_total Rows local retention removed before "
			"they were forwarded, by table.\n"
			"# TYPE vigil_plant_lost_rows_total counter\n");
	for (int t = PLANT_INSPECTIONS; t <= PLANT_EVENTS; t++) {
		g_snprintf(label, sizeof label, "{table=\"%s\"}", plant_table_name(t));
		g_string_append_printf(m, "vigil_plant_lost_rows_total%s %" G_GUINT64_FORMAT "\n",
				       label, p.lost[t]);
	}
	g_string_append(m, "# HELP vigil_plant_lag_seconds Age of the oldest local inspection or "
			"event not yet forwarded (0: none).\n# TYPE vigil_plant_lag_seconds gauge\n");
	g_string_append_printf(m, "vigil_plant_lag_seconds %.3f\n", p.oldest_unforwarded_us
			       ? MAX(now - p.oldest_unforwarded_us, 0) / 1e6 : 0.0);
	g_string_append(m, "# HELP vigil_plant_since_last_batch_seconds Seconds since the last "
			"committed batch (NaN: none yet).\n"
			"# TYPE vigil_plant_since_last_batch_seconds gauge\n");
	if (p.last_batch_us)
		g_string_append_printf(m, "vigil_plant_since_last_batch_seconds %.3f\n",
				       MAX(now - p.last_batch_us, 0) / 1e6);
	else
		g_string_append(m, "vigil_plant_since_last_batch_seconds NaN\n");
	g_string_append(m, "# HELP vigil_plant_link_failures_total Failed connections and "
			"batches.\n# TYPE vigil_plant_link_failures_total counter\n");
	g_string_append_printf(m, "vigil_plant_link_failures_total %" G_GUINT64_FORMAT "\n",
			       p.link_failures);
	g_string_append(m, "# HELP vigil_plant_reviews_pulled_total Reviews made centrally and "
			"stored in the local log.\n# TYPE vigil_plant_reviews_pulled_total counter\n");
	g_string_append_printf(m, "vigil_plant_reviews_pulled_total %" G_GUINT64_FORMAT "\n",
			       p.reviews_pulled);
}

static void take_sample(review_server *s, struct rate_sample *out)
{
	struct line_stats st;
	struct line_health h;
	uint64_t lat = 0;

	line_get_stats(s->line, &st);
	line_get_health(s->line, &h);
	for (int b = 0; b <= LINE_LATENCY_BUCKETS; b++)
		lat += st.latency_parts[b];
	*out = (struct rate_sample){
		.t_us = g_get_monotonic_time(),
		.t_wall_us = g_get_real_time(),
		.parts = st.results_written,
		.accepted = st.accepted,
		.latency_parts = lat,
		.latency_sum_ms = st.latency_sum_ms,
	};
	for (int i = 0; i < h.cameras && i < LINE_HEALTH_CAMERAS; i++)
		out->camera_frames[i] = h.camera[i].frames;
}

/* Rate, yield and mean latency from sample old to sample now; NAN where
 * there is nothing to measure. */
static void rates_between(const struct rate_sample *old, const struct rate_sample *now,
			  double *rate, double *yield, double *latency_ms)
{
	uint64_t parts = now->parts - old->parts;

	*rate = *yield = *latency_ms = NAN;
	if (now->t_us <= old->t_us + 500000)
		return;
	*rate = (double)parts * 60e6 / (double)(now->t_us - old->t_us);
	if (parts)
		*yield = (double)(now->accepted - old->accepted) / (double)parts;
	if (now->latency_parts > old->latency_parts)
		*latency_ms = (now->latency_sum_ms - old->latency_sum_ms) /
			      (double)(now->latency_parts - old->latency_parts);
}

/* The sample RATE_SAMPLES - 1 seconds before the newest one, or the oldest. */
static const struct rate_sample *rate_base(const review_server *s)
{
	return s->nsamples ? &s->samples[MAX(0, s->nsamples - RATE_SAMPLES)] : NULL;
}

gboolean review__on_sample(gpointer data)
{
	review_server *s = data;

	if (s->nsamples == HISTORY_SAMPLES) {
		memmove(s->samples, s->samples + 1, sizeof s->samples[0] * (HISTORY_SAMPLES - 1));
		s->nsamples--;
	}
	take_sample(s, &s->samples[s->nsamples++]);
	return G_SOURCE_CONTINUE;
}

/* The smallest bucket bound that holds fraction q of the parts. */
static double latency_quantile_le(const struct line_stats *st, double q)
{
	uint64_t total = 0, seen = 0;

	for (int b = 0; b <= LINE_LATENCY_BUCKETS; b++)
		total += st->latency_parts[b];
	if (total == 0)
		return NAN;
	for (int b = 0; b < LINE_LATENCY_BUCKETS; b++) {
		seen += st->latency_parts[b];
		if ((double)seen >= q * (double)total)
			return line_latency_bounds_ms[b];
	}
	return INFINITY;
}

/* "mqtt": the live results' client ([mqtt], app/mqtt.h), null without. */
static void add_mqtt(JsonBuilder *b, line *l)
{
	struct mqtt_stats q;

	line_get_mqtt(l, &q);
	json_builder_set_member_name(b, "mqtt");
	if (!q.enabled) {
		json_builder_add_null_value(b);
		return;
	}
	json_builder_begin_object(b);
	json_builder_set_member_name(b, "connected");
	json_builder_add_boolean_value(b, q.connected != 0);
	review__add_int(b, "queued", (int64_t)q.queued);
	review__add_int(b, "in_flight", (int64_t)q.in_flight);
	review__add_int(b, "published", (int64_t)q.published);
	review__add_int(b, "acknowledged", (int64_t)q.acknowledged);
	review__add_int(b, "dropped", (int64_t)q.dropped);
	json_builder_end_object(b);
}

/* "alarms": { "enabled": bool, "active": [{ kind, since_us, since, message }] },
 * the raised quality alarms (app/alarm.h), oldest first. */
static void add_alarms(JsonBuilder *b, line *l)
{
	struct line_alarms a;
	int order[LINE_ALARM_KINDS], n = 0;

	line_get_alarms(l, &a);
	for (int k = 0; k < LINE_ALARM_KINDS; k++) {
		int i = n++;

		if (!(a.active & (1u << k))) {
			n--;
			continue;
		}
		while (i > 0 && a.since_us[order[i - 1]] > a.since_us[k]) {
			order[i] = order[i - 1];
			i--;
		}
		order[i] = k;
	}
	json_builder_set_member_name(b, "alarms");
	json_builder_begin_object(b);
	json_builder_set_member_name(b, "enabled");
	json_builder_add_boolean_value(b, a.enabled != 0);
	json_builder_set_member_name(b, "active");
	json_builder_begin_array(b);
	for (int i = 0; i < n; i++) {
		int k = order[i];
		char *iso = review__local_time(a.since_us[k], FALSE);

		json_builder_begin_object(b);
		review__add_string(b, "kind", alarm_kind_name((enum alarm_kind)k));
		review__add_int(b, "since_us", a.since_us[k]);
		review__add_string(b, "since", iso);
		review__add_string(b, "message", a.message[k]);
		json_builder_end_object(b);
		g_free(iso);
	}
	json_builder_end_array(b);
	json_builder_end_object(b);
}

void review__api_status(review_server *s, SoupServerMessage *msg)
{
	JsonBuilder *b = json_builder_new();

	json_builder_begin_object(b);
	review__add_number(b, "uptime_s", (double)(g_get_monotonic_time() - s->started_us) / 1e6);
	json_builder_set_member_name(b, "writes_enabled");
	json_builder_add_boolean_value(b, s->have_token);
	{
		/* The log's file name, never its path: the server's folders
		 * are nobody's business over HTTP (the shift report names
		 * the log the same way). */
		char *base = g_path_get_basename(s->db_path);

		review__add_string(b, "database", base);
		g_free(base);
	}
	json_builder_set_member_name(b, "line");
	json_builder_add_boolean_value(b, s->line != NULL);
	if (s->line) {
		struct line_stats st;
		struct line_health h;
		struct rate_sample now;
		const struct rate_sample *old = rate_base(s);
		double rate = NAN, recent_yield = NAN, recent_latency = NAN;

		line_get_stats(s->line, &st);
		line_get_health(s->line, &h);
		take_sample(s, &now);
		if (old)
			rates_between(old, &now, &rate, &recent_yield, &recent_latency);
		review__add_int(b, "parts", (int64_t)st.results_written);
		review__add_int(b, "accepted", (int64_t)st.accepted);
		review__add_int(b, "rejected", (int64_t)st.rejected);
		review__add_int(b, "marginal", (int64_t)st.marginal);
		review__add_int(b, "failsafe", (int64_t)st.failsafe);
		review__add_int(b, "missed_triggers", (int64_t)st.missed_triggers);
		review__add_number(b, "rate_per_min", rate);
		review__add_number(b, "yield", st.results_written
					       ? (double)st.accepted / (double)st.results_written
					       : NAN);
		review__add_number(b, "recent_yield", recent_yield);
		review__add_number(b, "recent_latency_ms", recent_latency);
		review__add_number(b, "latency_p50_le_ms", latency_quantile_le(&st, 0.5));
		review__add_number(b, "latency_p99_le_ms", latency_quantile_le(&st, 0.99));
		json_builder_set_member_name(b, "plc_connected");
		json_builder_add_boolean_value(b, h.plc_connected != 0);
		review__add_int(b, "cameras", h.cameras);
		review__add_int(b, "cameras_up", h.cameras_up);
		review__add_string(b, "model_version", h.model_version);
		review__add_string(b, "model_backend", h.model_backend);
		review__add_string(b, "model_precision", h.model_precision);
		json_builder_set_member_name(b, "learning");
		json_builder_add_boolean_value(b, h.learning != 0);
		json_builder_set_member_name(b, "queues");
		json_builder_begin_object(b);
		review__add_int(b, "inspect", (int64_t)h.q_inspect);
		review__add_int(b, "results", (int64_t)h.q_results);
		review__add_int(b, "log", (int64_t)h.q_log);
		json_builder_end_object(b);
		review__add_int(b, "db_rows_written", (int64_t)h.db_rows_written);
		review__add_int(b, "db_rows_failed", (int64_t)h.db_rows_failed);
		add_alarms(b, s->line);
		add_plant(b, s->line);
		add_mqtt(b, s->line);
	} else {
		char *err = NULL;
		int64_t n = db_count_inspections(s->db_path, &err);

		review__add_int(b, "inspections", n < 0 ? -1 : n);
		free(err);
	}
	json_builder_end_object(b);
	review__reply_json(msg, SOUP_STATUS_OK, json_builder_get_root(b));
	g_object_unref(b);
}

/* GET /api/history: rate, yield and mean latency once a second over the
 * last HISTORY_SAMPLES seconds, each over the RATE_SAMPLES window before
 * it, for the status charts. Arrays of equal length; null where nothing
 * was measured. */
void review__api_history(review_server *s, SoupServerMessage *msg)
{
	static const char *const names[] = { "rate_per_min", "yield", "latency_ms" };
	JsonBuilder *b = json_builder_new();

	json_builder_begin_object(b);
	json_builder_set_member_name(b, "line");
	json_builder_add_boolean_value(b, s->line != NULL);
	review__add_int(b, "window_s", RATE_SAMPLES - 1);
	json_builder_set_member_name(b, "t");
	json_builder_begin_array(b);
	for (int i = 1; s->line && i < s->nsamples; i++)
		json_builder_add_double_value(b, (double)s->samples[i].t_wall_us / 1e6);
	json_builder_end_array(b);
	for (int k = 0; k < 3; k++) {
		json_builder_set_member_name(b, names[k]);
		json_builder_begin_array(b);
		for (int i = 1; s->line && i < s->nsamples; i++) {
			double v[3];

			rates_between(&s->samples[MAX(0, i - (RATE_SAMPLES - 1))], &s->samples[i],
				      &v[0], &v[1], &v[2]);
			if (isfinite(v[k]))
				json_builder_add_double_value(b, v[k]);
			else
				json_builder_add_null_value(b);
		}
		json_builder_end_array(b);
	}
	json_builder_end_object(b);
	review__reply_json(msg, SOUP_STATUS_OK, json_builder_get_root(b));
	g_object_unref(b);
}

/* A label value as Prometheus's text format reads it: backslash, quote
 * and newline escaped; g_free it. */
static char *label_value(const char *v)
{
	GString *e = g_string_new(NULL);

	for (; *v; v++) {
		if (*v == '\\' || *v == '"')
			g_string_append_c(e, '\\');
		if (*v == '\n')
			g_string_append(e, "\\n");
		else
			g_string_append_c(e, *v);
	}
	return g_string_free(e, FALSE);
}

static void metric_head(GString *m, const char *name, const char *type, const char *help)
{
	g_string_append_printf(m, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void metric(GString *m, const char *name, const char *labels, double v)
{
	char num[G_ASCII_DTOSTR_BUF_SIZE];

	g_ascii_dtostr(num, sizeof num, v);
	g_string_append_printf(m, "%s%s %s\n", name, labels ? labels : "", num);
}

/* A camera's name as a label value: [camera.NAME] allows what the config
 * parser allows, so escape the three characters the format reserves. */
static void metric_camera(GString *m, const char *name, const char *camera, double v)
{
	GString *label = g_string_new("{camera=\"");

	for (const char *c = camera; *c; c++) {
		if (*c == '\\' || *c == '"')
			g_string_append_c(label, '\\');
		if (*c == '\n')
			g_string_append(label, "\\n");
		else
			g_string_append_c(label, *c);
	}
	g_string_append(label, "\"}");
	metric(m, name, label->str, v);
	g_string_free(label, TRUE);
}

/* Frames per second of camera i over the rate window, from the sampler. */
static double camera_fps(const review_server *s, int i, uint64_t frames_now)
{
	const struct rate_sample *old = rate_base(s);
	int64_t dt;

	if (!old || (dt = g_get_monotonic_time() - old->t_us) < 500000)
		return 0;
	return (double)(frames_now - old->camera_frames[i]) * 1e6 / (double)dt;
}

/* The samples of one Prometheus histogram from per-bucket (not
 * cumulative) counts; label is NULL or one label pair, e.g. stage="x". */
/* bounds and sum are in ms for a histogram of seconds (unit 1000), as
 * they are for a count (unit 1). */
static void metric_histogram_unit(GString *m, const char *name, const char *label,
				  const uint64_t *parts, const double *bounds_ms, int nbounds,
				  double sum_ms, double unit)
{
	char series[96], labels[160], num[G_ASCII_DTOSTR_BUF_SIZE];
	uint64_t cum = 0;

	g_snprintf(series, sizeof series, "%s_bucket", name);
	for (int b = 0; b <= nbounds; b++) {
		cum += parts[b];
		if (b < nbounds)
			g_ascii_dtostr(num, sizeof num, bounds_ms[b] / unit);
		g_snprintf(labels, sizeof labels, "{%s%sle=\"%s\"}", label ? label : "",
			   label ? "," : "", b < nbounds ? num : "+Inf");
		metric(m, series, labels, (double)cum);
	}
	g_snprintf(labels, sizeof labels, "{%s}", label ? label : "");
	g_snprintf(series, sizeof series, "%s_sum", name);
	metric(m, series, label ? labels : NULL, sum_ms / unit);
	g_snprintf(series, sizeof series, "%s_count", name);
	metric(m, series, label ? labels : NULL, (double)cum);
}

static void metric_histogram(GString *m, const char *name, const char *label,
			     const uint64_t *parts, const double *bounds_ms, int nbounds,
			     double sum_ms)
{
	metric_histogram_unit(m, name, label, parts, bounds_ms, nbounds, sum_ms, 1000.0);
}

/* Prometheus text exposition format 0.0.4. */
void review__serve_metrics(review_server *s, SoupServerMessage *msg)
{
	GString *m = g_string_new(NULL);

	metric_head(m, "vigil_review_up", "gauge", "The review server answers.");
	metric(m, "vigil_review_up", NULL, 1);
	metric_head(m, "vigil_review_connections", "gauge",
		    "Connections open to the review server ([review] max_connections).");
	metric(m, "vigil_review_connections", NULL, s->open_conns.length);
	metric_head(m, "vigil_review_refused_total", "counter",
		    "Requests answered before they were read: max_connections (503), "
		    "request_timeout (408), body (400, 411 or 413 on the headers).");
	for (int i = 0; i < REFUSALS; i++) {
		char label[64];

		g_snprintf(label, sizeof label, "{reason=\"%s\"}", refusal_names[i]);
		metric(m, "vigil_review_refused_total", label, (double)s->refused[i]);
	}
	metric_head(m, "vigil_line_running", "gauge", "1 when this vigild runs the line.");
	metric(m, "vigil_line_running", NULL, s->line ? 1 : 0);
	if (s->line) {
		struct line_stats st;
		struct line_health h;

		line_get_stats(s->line, &st);
		line_get_health(s->line, &h);
		if (h.model_version) {
			char *version = label_value(h.model_version);
			char *label = g_strdup_printf("{version=\"%s\",backend=\"%s\","
						      "precision=\"%s\"}", version,
						      h.model_backend, h.model_precision);

			metric_head(m, "vigil_model_info", "gauge",
				    "The model judging parts: its version, the backend it runs "
				    "on ([model] backend, or what auto chose) and precision.");
			metric(m, "vigil_model_info", label, 1);
			g_free(label);
			g_free(version);
		}
		metric_head(m, "vigil_learning_mode", "gauge",
			    "1 in learning mode ([model] learn): every part the model judges is "
			    "accepted and keeps its files.");
		metric(m, "vigil_learning_mode", NULL, h.learning ? 1 : 0);
		metric_head(m, "vigil_parts_total", "counter",
			    "Parts answered to the PLC, by verdict (fail-safe rejects included).");
		metric(m, "vigil_parts_total", "{verdict=\"accept\"}", (double)st.accepted);
		metric(m, "vigil_parts_total", "{verdict=\"reject\"}", (double)st.rejected);
		metric(m, "vigil_parts_total", "{verdict=\"marginal\"}", (double)st.marginal);
		metric_head(m, "vigil_failsafe_total", "counter",
			    "Fail-safe rejects by cause (overrun: never presented to the PLC).");
		for (int c = 0; c < VIGIL_FAILSAFE_CAUSES; c++) {
			char *label = g_strdup_printf("{cause=\"%s\"}",
						      line_failsafe_cause_names[c]);

			metric(m, "vigil_failsafe_total", label, (double)st.failsafe_by[c]);
			g_free(label);
		}
		metric_head(m, "vigil_triggers_total", "counter", "Triggers taken from the PLC.");
		metric(m, "vigil_triggers_total", NULL, (double)st.triggers);
		metric_head(m, "vigil_missed_triggers_total", "counter",
			    "Triggers the PLC counted that vigild never saw.");
		metric(m, "vigil_missed_triggers_total", NULL, (double)st.missed_triggers);
		metric_head(m, "vigil_inspected_total", "counter", "Parts run through the model.");
		metric(m, "vigil_inspected_total", NULL, (double)st.inspected);

		metric_head(m, "vigil_latency_seconds", "histogram",
			    "Trigger to PLC result, per logged part.");
		metric_histogram(m, "vigil_latency_seconds", NULL, st.latency_parts,
				 line_latency_bounds_ms, LINE_LATENCY_BUCKETS, st.latency_sum_ms);
		metric_head(m, "vigil_stage_seconds", "histogram",
			    "Time per stage: capture_wait (trigger to frames and vibration window "
			    "in hand), inference, plc_write (one result write), db_write (row "
			    "queued to its commit, which the result waits for).");
		for (int i = 0; i < LINE_STAGES; i++) {
			char label[64];

			g_snprintf(label, sizeof label, "stage=\"%s\"", line_stage_names[i]);
			metric_histogram(m, "vigil_stage_seconds", label, st.stage_parts[i],
					 line_stage_bounds_ms, LINE_STAGE_BUCKETS,
					 st.stage_sum_ms[i]);
		}

		metric_head(m, "vigil_infer_batch_size", "histogram",
			    "Parts judged by one model run ([model] max_batch; a batch "
			    "takes only parts already waiting).");
		metric_histogram_unit(m, "vigil_infer_batch_size", NULL, st.batch_parts,
				      line_batch_bounds, LINE_BATCH_BUCKETS, (double)st.batch_sum,
				      1.0);

		metric_head(m, "vigil_queue_depth", "gauge", "Parts waiting in each queue.");
		metric(m, "vigil_queue_depth", "{queue=\"inspect\"}", (double)h.q_inspect);
		metric(m, "vigil_queue_depth", "{queue=\"results\"}", (double)h.q_results);
		metric(m, "vigil_queue_depth", "{queue=\"log\"}", (double)h.q_log);
		metric_head(m, "vigil_plc_link_up", "gauge", "1 while the PLC link is up.");
		metric(m, "vigil_plc_link_up", NULL, h.plc_connected ? 1 : 0);
		metric_head(m, "vigil_cameras_up", "gauge", "Cameras delivering frames.");
		metric(m, "vigil_cameras_up", NULL, h.cameras_up);
		metric_head(m, "vigil_cameras", "gauge", "Cameras configured.");
		metric(m, "vigil_cameras", NULL, h.cameras);
		metric_head(m, "vigil_camera_up", "gauge", "1 while this camera delivers frames.");
		for (int i = 0; i < h.cameras; i++)
			metric_camera(m, "vigil_camera_up", h.camera[i].name, h.camera[i].up);
		metric_head(m, "vigil_camera_frames_total", "counter",
			    "Frames this camera delivered since vigild started.");
		for (int i = 0; i < h.cameras; i++)
			metric_camera(m, "vigil_camera_frames_total", h.camera[i].name,
				      (double)h.camera[i].frames);
		metric_head(m, "vigil_camera_fps", "gauge",
			    "Frames per second from this camera over the last 10 s.");
		for (int i = 0; i < h.cameras; i++)
			metric_camera(m, "vigil_camera_fps", h.camera[i].name,
				      camera_fps(s, i, h.camera[i].frames));
		metric_head(m, "vigil_db_rows_logged_total", "counter",
			    "Inspection rows handed to the database writer.");
		metric(m, "vigil_db_rows_logged_total", NULL, (double)st.rows_logged);
		metric_head(m, "vigil_db_rows_written_total", "counter",
			    "Rows of tables inspections, events and trend committed by the "
			    "database writer (what the file holds, less what retention removed).");
		metric(m, "vigil_db_rows_written_total", NULL, (double)h.db_rows_written);
		metric_head(m, "vigil_db_rows_failed_total", "counter",
			    "Rows (inspections, events, trend) given up for good: the sum of "
			    "vigil_db_rows_dropped_total, and rows the log could not even queue.");
		metric(m, "vigil_db_rows_failed_total", NULL,
		       (double)(h.db_rows_failed + st.rows_failed));
		metric_head(m, "vigil_db_rows_dropped_total", "counter",
			    "Rows the database writer gave up, by table and cause: spool_full "
			    "(writes failed longer than [database] spool_rows could hold), refused "
			    "(the database refused the row itself), closed (still spooled when "
			    "vigild stopped).");
		for (int t = 0; t < DB_NTABLES; t++)
			for (int c = 0; c < DB_NDROP_CAUSES; c++) {
				char labels[80];

				g_snprintf(labels, sizeof labels, "{table=\"%s\",cause=\"%s\"}",
					   db_table_name(t), db_drop_cause_name(c));
				metric(m, "vigil_db_rows_dropped_total", labels,
				       (double)h.db_rows_dropped[t][c]);
			}
		metric_head(m, "vigil_db_spool_rows", "gauge",
			    "Rows waiting in memory for the disk to take writes again.");
		metric(m, "vigil_db_spool_rows", NULL, (double)h.db_spool_depth);
		metric_head(m, "vigil_db_media_dropped_total", "counter",
			    "Parts whose files were not kept (media writer behind, the disk "
			    "refused them, or their row waited in the spool).");
		metric(m, "vigil_db_media_dropped_total", NULL, (double)h.db_media_dropped);
		/* The recent ring ([database] recent_images_mb). */
		metric_head(m, "vigil_db_recent_files", "gauge",
			    "Files in the recent ring (media/recent/): every part's files "
			    "the long-term sample does not keep.");
		metric(m, "vigil_db_recent_files", NULL, (double)h.db_ring_files);
		metric_head(m, "vigil_db_recent_bytes", "gauge",
			    "Bytes the recent ring takes ([database] recent_images_mb bounds it).");
		metric(m, "vigil_db_recent_bytes", NULL, (double)h.db_ring_bytes);
		metric_head(m, "vigil_db_recent_oldest_age_seconds", "gauge",
			    "Age of the oldest part in the recent ring: how far back every "
			    "part's image can be looked at (0: the ring is empty).");
		metric(m, "vigil_db_recent_oldest_age_seconds", NULL,
		       h.db_ring_oldest_us
			       ? MAX(vigil_wall_us() - h.db_ring_oldest_us, 0) / 1e6 : 0.0);
		metric_head(m, "vigil_db_recent_dropped_total", "counter",
			    "Parts whose files the recent ring did not keep: the media writer "
			    "half busy, the database in fault, or the write failed.");
		metric(m, "vigil_db_recent_dropped_total", NULL, (double)h.db_ring_dropped);
		metric_head(m, "vigil_db_recent_removed_total", "counter",
			    "Recent ring files removed to keep it in its bounds or to make room "
			    "on a full disk.");
		metric(m, "vigil_db_recent_removed_total", NULL, (double)h.db_ring_removed);
		metric_head(m, "vigil_db_ok", "gauge",
			    "0 while the database fault is raised (status word bit 6 clear): a "
			    "write failed, or results went to the PLC before their rows were "
			    "committed. Verdicts are not affected.");
		metric(m, "vigil_db_ok", NULL, h.db_ok);
		metric_head(m, "vigil_db_write_lag_seconds", "gauge",
			    "Queueing to commit of the oldest row in the database writer's last "
			    "batch.");
		metric(m, "vigil_db_write_lag_seconds", NULL, h.db_write_lag_ms / 1000.0);
		metric_head(m, "vigil_db_write_lag_max_seconds", "gauge",
			    "The longest queueing to commit the database writer has seen.");
		metric(m, "vigil_db_write_lag_max_seconds", NULL, h.db_write_lag_max_ms / 1000.0);
		metric_head(m, "vigil_db_queue_high_water", "gauge",
			    "The most rows that have waited for the database writer at once.");
		metric(m, "vigil_db_queue_high_water", NULL, (double)h.db_queue_high_water);
		metric_head(m, "vigil_db_file_moves_total", "counter",
			    "Times the log's file was deleted or moved while vigild wrote it, "
			    "and the log followed its path (written back there, or a fresh "
			    "log started there).");
		metric(m, "vigil_db_file_moves_total", NULL, (double)h.db_file_moves);
		metric_head(m, "vigil_db_file_away", "gauge",
			    "1 while the file vigild writes is not the one at [database] path "
			    "(deleted or moved) and following it has not worked yet: rows go "
			    "on into the open file meanwhile.");
		metric(m, "vigil_db_file_away", NULL, h.db_file_away);
		metric_head(m, "vigil_clock_steps_total", "counter",
			    "Times the wall clock stepped (more than 2 s against the boot clock "
			    "at once) while vigild ran: the rows' times jump there, and "
			    "retention and the recent ring age this run's rows by the time "
			    "since they were written.");
		metric(m, "vigil_clock_steps_total", NULL, (double)h.db_clock_steps);
		{
			struct line_alarms a;

			line_get_alarms(s->line, &a);
			metric_head(m, "vigil_alarm", "gauge",
				    "1 while the quality alarm is raised (status word bit 14, "
				    "error 12; [alarm]): yield out of control, a defect class "
				    "surging, a yield collapse after a model change.");
			for (int k = 0; k < LINE_ALARM_KINDS; k++) {
				char label[64];

				g_snprintf(label, sizeof label, "{kind=\"%s\"}",
					   alarm_kind_name((enum alarm_kind)k));
				metric(m, "vigil_alarm", label, (a.active >> k) & 1u);
			}
		}
		plant_metrics(m, s->line);
		{
			/* Live results over MQTT ([mqtt]); absent without. */
			struct mqtt_stats q;

			line_get_mqtt(s->line, &q);
			if (q.enabled) {
				metric_head(m, "vigil_mqtt_connected", "gauge",
					    "1 while the MQTT broker connection is up.");
				metric(m, "vigil_mqtt_connected", NULL, q.connected);
				metric_head(m, "vigil_mqtt_queue_depth", "gauge",
					    "Results waiting for the broker ([mqtt] queue bounds it).");
				metric(m, "vigil_mqtt_queue_depth", NULL, (double)q.queued);
				metric_head(m, "vigil_mqtt_in_flight", "gauge",
					    "Results handed to the broker and not yet acknowledged.");
				metric(m, "vigil_mqtt_in_flight", NULL, (double)q.in_flight);
				metric_head(m, "vigil_mqtt_published_total", "counter",
					    "Results handed to the MQTT client library.");
				metric(m, "vigil_mqtt_published_total", NULL, (double)q.published);
				metric_head(m, "vigil_mqtt_acknowledged_total", "counter",
					    "Results the broker acknowledged (PUBACK at QoS 1).");
				metric(m, "vigil_mqtt_acknowledged_total", NULL,
				       (double)q.acknowledged);
				metric_head(m, "vigil_mqtt_dropped_total", "counter",
					    "Results given up: the oldest dropped from a full "
					    "queue, or at a stop still queued or not acknowledged.");
				metric(m, "vigil_mqtt_dropped_total", NULL, (double)q.dropped);
			}
		}
	}
	review__reply_text(msg, SOUP_STATUS_OK, "text/plain; version=0.0.4; charset=utf-8", m);
	g_string_free(m, TRUE);
}

