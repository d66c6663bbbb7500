/* Live results over MQTT: the [mqtt] reader, the bounded queue, the
 * feeder thread and libmosquitto's callbacks (mqtt.h states the rules). */
#include "app/mqtt.h"

#include <errno.h>
#include <math.h>
#include <string.h>
#include <time.h>

#include <glib.h>
#include <json-glib/json-glib.h>
#include <mosquitto.h>

/* ---- [mqtt] ---- */

static const char *const mqtt_keys[] = {
	"host", "port", "client_id", "username", "password", "password_file", "ca_file",
	"site", "line", "station", "topic_prefix", "qos", "keepalive_s", "queue",
	"retry_min_s", "retry_max_s", "status_period_s", "stop_flush_ms", NULL };

void mqtt_settings_clear(struct mqtt_settings *s)
{
	if (!s)
		return;
	g_free(s->host);
	g_free(s->site);
	g_free(s->line);
	g_free(s->station);
	g_free(s->client_id);
	g_free(s->topic_prefix);
	g_free(s->username);
	if (s->password)
		memset(s->password, 0, strlen(s->password));
	g_free(s->password);
	g_free(s->ca_file);
	memset(s, 0, sizeof *s);
}

/* A topic level must not hold the wildcards or the separator (MQTT 3.1.1
 * section 4.7.1: '+' and '#' are not allowed in a topic name). */
static int check_level(const config *cfg, const char *key, const char *v, char **err)
{
	if (!*v || strpbrk(v, "/+#") || strlen(v) > 64 || !g_utf8_validate(v, -1, NULL)) {
		*err = config_error(cfg, "mqtt", key, "\"%s\" is not a topic level: 1 to 64 bytes "
				    "of UTF-8 without '/', '+' or '#'", v);
		return -EINVAL;
	}
	return 0;
}

/* site, line and station: [mqtt]'s own, else [plant]'s, else the default. */
static int read_id(const config *cfg, const char *key, const char *def, char **out,
		   char **err)
{
	char *plant = NULL;
	int rc;

	if (config_has_group(cfg, "plant") &&
	    config_get_string(cfg, "plant", key, def, &plant, err) < 0)
		return -EINVAL;
	rc = config_get_string(cfg, "mqtt", key, plant ? plant : def, out, err);
	g_free(plant);
	if (rc < 0)
		return -EINVAL;
	return check_level(cfg, key, *out, err);
}

/* An optional string: absent or empty is NULL. */
static int opt_string(const config *cfg, const char *key, char **out, char **err)
{
	if (config_get_string(cfg, "mqtt", key, "", out, err) < 0)
		return -EINVAL;
	if (!**out)
		g_clear_pointer(out, g_free);
	return 0;
}

static int read_password_file(const config *cfg, char **out, char **err)
{
	char *path = NULL, *text = NULL;
	GError *gerr = NULL;
	int rc = -EINVAL;

	if (config_get_string(cfg, "mqtt", "password_file", NULL, &path, err) < 0)
		return -EINVAL;
	if (!g_file_get_contents(path, &text, NULL, &gerr)) {
		*err = config_error(cfg, "mqtt", "password_file", "%s", gerr->message);
		g_error_free(gerr);
		goto out;
	}
	text[strcspn(text, "\r\n")] = '\0';
	if (!*text) {
		*err = config_error(cfg, "mqtt", "password_file", "%s: empty first line", path);
		goto out;
	}
	*out = g_strdup(text);
	rc = 0;
out:
	if (text)
		memset(text, 0, strlen(text));
	g_free(text);
	g_free(path);
	return rc;
}

int mqtt_settings_read(const config *cfg, const char *db_station, struct mqtt_settings *s,
		       char **err)
{
	char *def = NULL;
	int rc = -EINVAL;

	memset(s, 0, sizeof *s);
	if (!config_has_group(cfg, "mqtt"))
		return 0;
	s->enabled = 1;
	if (config_check_keys(cfg, "mqtt", mqtt_keys, err) < 0 ||
	    config_get_string(cfg, "mqtt", "host", NULL, &s->host, err) < 0 ||
	    opt_string(cfg, "ca_file", &s->ca_file, err) < 0 ||
	    config_get_int(cfg, "mqtt", "port", s->ca_file ? 8883 : 1883, 1, 65535, &s->port,
			   err) < 0 ||
	    read_id(cfg, "site", "default", &s->site, err) < 0 ||
	    read_id(cfg, "line", "default", &s->line, err) < 0 ||
	    read_id(cfg, "station", db_station ? db_station : g_get_host_name(), &s->station,
		    err) < 0)
		goto out;
	if (s->ca_file && !g_file_test(s->ca_file, G_FILE_TEST_IS_REGULAR)) {
		*err = config_error(cfg, "mqtt", "ca_file", "%s: no such file", s->ca_file);
		goto out;
	}
	def = g_strdup_printf("vigil-%s-%s-%s", s->site, s->line, s->station);
	if (config_get_string(cfg, "mqtt", "client_id", def, &s->client_id, err) < 0)
		goto out;
	/* A fixed id is what keeps the session (MQTT 3.1.1 section 3.1.3.1:
	 * an empty one gets a session that ends with the connection). */
	if (!*s->client_id || strlen(s->client_id) > 65535) {
		*err = config_error(cfg, "mqtt", "client_id", "1 to 65535 bytes: an empty client "
				    "id keeps no session");
		goto out;
	}
	g_free(def);
	def = g_strdup_printf("vigil/%s/%s/%s", s->site, s->line, s->station);
	if (config_get_string(cfg, "mqtt", "topic_prefix", def, &s->topic_prefix, err) < 0)
		goto out;
	if (!*s->topic_prefix || strpbrk(s->topic_prefix, "+#") ||
	    g_str_has_suffix(s->topic_prefix, "/")) {
		*err = config_error(cfg, "mqtt", "topic_prefix", "\"%s\": a topic without '+', '#' "
				    "or a trailing '/'", s->topic_prefix);
		goto out;
	}
	if (opt_string(cfg, "username", &s->username, err) < 0 ||
	    opt_string(cfg, "password", &s->password, err) < 0)
		goto out;
	{
		char *pf = NULL;
		gboolean have_pf;

		if (opt_string(cfg, "password_file", &pf, err) < 0)
			goto out;
		if (pf && s->password) {
			*err = config_error(cfg, "mqtt", "password_file",
					    "give password or password_file, not both");
			g_free(pf);
			goto out;
		}
		have_pf = pf != NULL;
		g_free(pf);
		if (have_pf && read_password_file(cfg, &s->password, err) < 0)
			goto out;
		if (s->password && !s->username) {
			*err = config_error(cfg, "mqtt", have_pf ? "password_file" : "password",
					    "a password needs a username");
			goto out;
		}
	}
	if (config_get_int(cfg, "mqtt", "qos", 1, 0, 2, &s->qos, err) < 0 ||
	    config_get_int(cfg, "mqtt", "keepalive_s", 30, 5, 3600, &s->keepalive_s, err) < 0 ||
	    config_get_int(cfg, "mqtt", "queue", 10000, 1, 10000000, &s->queue, err) < 0 ||
	    config_get_int(cfg, "mqtt", "retry_min_s", 1, 1, 3600, &s->retry_min_s, err) < 0 ||
	    config_get_int(cfg, "mqtt", "retry_max_s", MAX(30, s->retry_min_s), s->retry_min_s,
			   86400, &s->retry_max_s, err) < 0 ||
	    config_get_int(cfg, "mqtt", "status_period_s", 5, 1, 3600, &s->status_period_s,
			   err) < 0 ||
	    config_get_int(cfg, "mqtt", "stop_flush_ms", 2000, 0, 600000, &s->stop_flush_ms,
			   err) < 0)
		goto out;
	rc = 0;
out:
	g_free(def);
	return rc;
}

/* ---- the client ---- */

struct mqtt_msg {
	char *payload;
	int len;
};

struct mqtt_client {
	struct mqtt_settings set;     /* copies of the strings */
	char *topic_result, *topic_status;
	mqtt_station_fn station;
	void *station_data;
	struct mosquitto *mosq;
	int64_t run_us;               /* wall clock at creation: results' "run" */

	GMutex lock;                  /* everything below */
	GCond wake;
	GQueue queue;                 /* struct mqtt_msg *, oldest at the head */
	gboolean connected, stopping, loop_started;
	GHashTable *status_mids;      /* status messages not yet acknowledged */
	int refused_rc;               /* the last CONNACK refusal logged (0: none) */
	struct mqtt_stats st;
	char *model_version;          /* of the last result, for the status */
	int job;
	GThread *feeder;
};

static void msg_free(struct mqtt_msg *m)
{
	g_free(m->payload);
	g_free(m);
}

static void on_connect(struct mosquitto *mosq, void *data, int rc)
{
	mqtt_client *c = data;

	(void)mosq;
	g_mutex_lock(&c->lock);
	if (rc == 0) {
		c->connected = TRUE;
		c->st.connected = 1;
		c->refused_rc = 0;
		g_cond_broadcast(&c->wake);
	} else if (rc != c->refused_rc) {
		/* A refusal is retried like an outage: the broker's accounts
		 * may be fixed while the line runs. */
		c->refused_rc = rc;
		g_warning("mqtt: %s:%d refused the connection: %s; retrying", c->set.host,
			  c->set.port, mosquitto_connack_string(rc));
	}
	g_mutex_unlock(&c->lock);
	if (rc == 0)
		g_message("mqtt: connected to %s:%d as %s", c->set.host, c->set.port,
			  c->set.client_id);
}

static void on_disconnect(struct mosquitto *mosq, void *data, int rc)
{
	mqtt_client *c = data;
	gboolean was;

	(void)mosq;
	g_mutex_lock(&c->lock);
	was = c->connected;
	c->connected = FALSE;
	c->st.connected = 0;
	g_mutex_unlock(&c->lock);
	if (was && rc != 0)
		g_warning("mqtt: lost %s:%d (%s); queueing up to %d results meanwhile",
			  c->set.host, c->set.port, mosquitto_strerror(rc), c->set.queue);
}

static void on_publish(struct mosquitto *mosq, void *data, int mid)
{
	mqtt_client *c = data;

	(void)mosq;
	g_mutex_lock(&c->lock);
	if (!g_hash_table_remove(c->status_mids, GINT_TO_POINTER(mid))) {
		c->st.acknowledged++;
		if (c->st.in_flight)
			c->st.in_flight--;
	}
	g_cond_broadcast(&c->wake);
	g_mutex_unlock(&c->lock);
}

void mqtt_client_free(mqtt_client *c)
{
	if (!c)
		return;
	mqtt_client_stop(c);
	if (c->mosq)
		mosquitto_destroy(c->mosq);
	g_queue_clear_full(&c->queue, (GDestroyNotify)msg_free);
	if (c->status_mids)
		g_hash_table_destroy(c->status_mids);
	g_free(c->topic_result);
	g_free(c->topic_status);
	g_free(c->model_version);
	mqtt_settings_clear(&c->set);
	g_mutex_clear(&c->lock);
	g_cond_clear(&c->wake);
	g_free(c);
}

static const char offline_payload[] = "{\"state\":\"offline\"}";

mqtt_client *mqtt_client_new(const struct mqtt_settings *s, mqtt_station_fn station,
			     void *data, char **err)
{
	static gsize lib_init;
	mqtt_client *c = g_new0(mqtt_client, 1);
	int rc;

	if (g_once_init_enter(&lib_init)) {
		mosquitto_lib_init();
		g_once_init_leave(&lib_init, 1);
	}
	g_mutex_init(&c->lock);
	g_cond_init(&c->wake);
	g_queue_init(&c->queue);
	c->status_mids = g_hash_table_new(NULL, NULL);
	c->set = *s;
	c->set.host = g_strdup(s->host);
	c->set.site = g_strdup(s->site);
	c->set.line = g_strdup(s->line);
	c->set.station = g_strdup(s->station);
	c->set.client_id = g_strdup(s->client_id);
	c->set.topic_prefix = g_strdup(s->topic_prefix);
	c->set.username = g_strdup(s->username);
	c->set.password = g_strdup(s->password);
	c->set.ca_file = g_strdup(s->ca_file);
	c->topic_result = g_strconcat(s->topic_prefix, "/result", NULL);
	c->topic_status = g_strconcat(s->topic_prefix, "/status", NULL);
	c->station = station;
	c->station_data = data;
	c->run_us = vigil_wall_us();
	c->job = -1;
	c->st.enabled = 1;
	/* clean_session false with a fixed id: the broker keeps the session
	 * and libmosquitto re-sends what was not acknowledged on reconnect. */
	c->mosq = mosquitto_new(c->set.client_id, false, c);
	if (!c->mosq) {
		*err = g_strdup_printf("[mqtt]: libmosquitto: %s", g_strerror(errno));
		goto fail;
	}
	mosquitto_connect_callback_set(c->mosq, on_connect);
	mosquitto_disconnect_callback_set(c->mosq, on_disconnect);
	mosquitto_publish_callback_set(c->mosq, on_publish);
	mosquitto_reconnect_delay_set(c->mosq, (unsigned)c->set.retry_min_s,
				      (unsigned)c->set.retry_max_s, true);
	if ((rc = mosquitto_will_set(c->mosq, c->topic_status, (int)strlen(offline_payload),
				     offline_payload, c->set.qos, true)) != MOSQ_ERR_SUCCESS ||
	    (c->set.username &&
	     (rc = mosquitto_username_pw_set(c->mosq, c->set.username, c->set.password)) !=
		     MOSQ_ERR_SUCCESS) ||
	    (c->set.ca_file &&
	     (rc = mosquitto_tls_set(c->mosq, c->set.ca_file, NULL, NULL, NULL, NULL)) !=
		     MOSQ_ERR_SUCCESS)) {
		*err = g_strdup_printf("[mqtt]: libmosquitto refused a setting: %s",
				       mosquitto_strerror(rc));
		goto fail;
	}
	return c;
fail:
	mqtt_client_free(c);
	return NULL;
}

/* ---- results ---- */

static void add_number(JsonBuilder *b, const char *name, double v)
{
	json_builder_set_member_name(b, name);
	if (isfinite(v))
		json_builder_add_double_value(b, v);
	else
		json_builder_add_null_value(b);
}

static void add_string(JsonBuilder *b, const char *name, const char *v)
{
	json_builder_set_member_name(b, name);
	if (v)
		json_builder_add_string_value(b, v);
	else
		json_builder_add_null_value(b);
}

static void add_int(JsonBuilder *b, const char *name, int64_t v)
{
	json_builder_set_member_name(b, name);
	json_builder_add_int_value(b, v);
}

/* ISO 8601 in UTC with microseconds: what every consumer parses. */
static void iso_time(int64_t wall_us, char out[40])
{
	time_t t = (time_t)(wall_us / G_USEC_PER_SEC);
	struct tm tm;
	size_t n;

	gmtime_r(&t, &tm);
	n = strftime(out, 40, "%Y-%m-%dT%H:%M:%S", &tm);
	g_snprintf(out + n, 40 - n, ".%06dZ", (int)(wall_us % G_USEC_PER_SEC));
}

static void add_ids(mqtt_client *c, JsonBuilder *b)
{
	add_string(b, "site", c->set.site);
	add_string(b, "line", c->set.line);
	add_string(b, "station", c->set.station);
}

static struct mqtt_msg *take_json(JsonBuilder *b)
{
	JsonGenerator *gen = json_generator_new();
	JsonNode *root = json_builder_get_root(b);
	struct mqtt_msg *m = g_new(struct mqtt_msg, 1);
	gsize len = 0;

	json_generator_set_root(gen, root);
	m->payload = json_generator_to_data(gen, &len);
	m->len = (int)len;
	json_node_unref(root);
	g_object_unref(gen);
	g_object_unref(b);
	return m;
}

void mqtt_client_publish_result(mqtt_client *c, const struct vigil_part *p)
{
	JsonBuilder *b;
	struct mqtt_msg *m, *old = NULL;
	char when[40];

	if (!c)
		return;
	b = json_builder_new();
	iso_time(p->t_wall_us, when);
	json_builder_begin_object(b);
	add_ids(c, b);
	/* (station, run, seq) names the part uniquely: seq counts from 0 in
	 * every run of vigild, run is the run's start. */
	add_int(b, "run", c->run_us);
	add_int(b, "seq", (int64_t)p->seq);
	add_int(b, "part_id", p->part_id);
	add_int(b, "trigger_counter", p->trigger_counter);
	add_string(b, "time", when);
	add_string(b, "verdict", vigil_verdict_name(p->verdict));
	add_string(b, "model_verdict", p->model_verdict ? vigil_verdict_name(p->model_verdict)
							: NULL);
	add_number(b, "score", p->score);
	add_number(b, "model_score", p->model_verdict ? p->model_score : NAN);
	add_number(b, "vision_score", p->vision_score);
	add_number(b, "signal_score", p->signal_score);
	add_string(b, "defect_class", vigil_class_name(p->defect_class));
	add_int(b, "flags", p->flags);
	json_builder_set_member_name(b, "failsafe");
	json_builder_add_boolean_value(b, (p->flags & VIGIL_FLAG_FAILSAFE) != 0);
	add_number(b, "latency_ms",
		   p->t_plc_us ? (double)(p->t_plc_us - p->t_trigger_us) / 1000.0 : NAN);
	add_number(b, "infer_ms", p->infer_ms);
	add_string(b, "model_version", p->model_version);
	add_int(b, "job", p->job);
	json_builder_end_object(b);
	m = take_json(b);

	g_mutex_lock(&c->lock);
	if (p->model_version &&
	    (!c->model_version || strcmp(c->model_version, p->model_version) != 0)) {
		g_free(c->model_version);
		c->model_version = g_strdup(p->model_version);
	}
	c->job = p->job;
	if ((int)c->queue.length >= c->set.queue) {
		old = g_queue_pop_head(&c->queue);
		c->st.dropped++;
	}
	g_queue_push_tail(&c->queue, m);
	c->st.queued = c->queue.length;
	g_cond_broadcast(&c->wake);
	g_mutex_unlock(&c->lock);
	if (old)
		msg_free(old);
}

/* ---- status ---- */

struct status_view {
	struct mqtt_station line;
	char *model_version;
	int job;
};

/* Status publication is best effort: a message that cannot be handed over
 * now is replaced by the next one. */
static void publish_status(mqtt_client *c, const struct status_view *v, double rate)
{
	JsonBuilder *b = json_builder_new();
	struct mqtt_msg *m;
	char when[40];
	int mid = 0;

	iso_time(vigil_wall_us(), when);
	json_builder_begin_object(b);
	add_string(b, "state", "online");
	add_ids(c, b);
	add_string(b, "time", when);
	add_number(b, "rate_per_min", rate);
	add_int(b, "inspected", (int64_t)v->line.inspected);
	add_int(b, "rejected", (int64_t)v->line.rejected);
	add_int(b, "failsafe", (int64_t)v->line.failsafe);
	json_builder_set_member_name(b, "faults");
	json_builder_begin_array(b);
	for (int i = 0; i < v->line.nfaults; i++)
		json_builder_add_string_value(b, v->line.faults[i]);
	json_builder_end_array(b);
	add_string(b, "model", v->model_version);
	add_int(b, "job", v->job);
	json_builder_end_object(b);
	m = take_json(b);
	/* Under the lock, so that on_publish (called for every message, at
	 * QoS 0 once it is sent) cannot see the mid before it is marked as a
	 * status message; libmosquitto never calls back from inside
	 * mosquitto_publish on the threaded loop. */
	g_mutex_lock(&c->lock);
	if (mosquitto_publish(c->mosq, &mid, c->topic_status, m->len, m->payload, c->set.qos,
			      true) == MOSQ_ERR_SUCCESS)
		g_hash_table_add(c->status_mids, GINT_TO_POINTER(mid));
	g_mutex_unlock(&c->lock);
	msg_free(m);
}

static gboolean status_changed(const struct status_view *a, const struct status_view *b)
{
	if (a->line.nfaults != b->line.nfaults || a->job != b->job ||
	    g_strcmp0(a->model_version, b->model_version) != 0)
		return TRUE;
	for (int i = 0; i < a->line.nfaults; i++)
		if (strcmp(a->line.faults[i], b->line.faults[i]) != 0)
			return TRUE;
	return FALSE;
}

static void view_status(mqtt_client *c, struct status_view *v)
{
	memset(v, 0, sizeof *v);
	if (c->station)
		c->station(c->station_data, &v->line);
	g_mutex_lock(&c->lock);
	v->model_version = g_strdup(c->model_version);
	v->job = c->job;
	g_mutex_unlock(&c->lock);
}

/* ---- the feeder ---- */

static gpointer feeder_thread(gpointer data)
{
	mqtt_client *c = data;
	struct status_view last = { 0 };
	gboolean was_connected = FALSE;
	int64_t next_status_us = 0, rate_t0_us = vigil_now_us();
	/* libmosquitto retries quietly: say once if the broker never came. */
	int64_t warn_us = rate_t0_us + 10 * G_USEC_PER_SEC;
	uint64_t rate_n0 = 0;
	double rate = NAN;

	g_mutex_lock(&c->lock);
	while (!c->stopping) {
		int64_t now = vigil_now_us();

		/* Results first: hand over what the window allows. */
		while (c->connected && c->queue.length && c->st.in_flight < MQTT_WINDOW) {
			struct mqtt_msg *m = g_queue_pop_head(&c->queue);
			int rc;

			c->st.in_flight++;
			c->st.queued = c->queue.length;
			/* Under the lock: on_publish may run at once in the
			 * network thread and must find in_flight counted. */
			rc = mosquitto_publish(c->mosq, NULL, c->topic_result, m->len, m->payload,
					       c->set.qos, false);
			if (rc != MOSQ_ERR_SUCCESS) {
				/* Not taken (the connection went): it stays first. */
				c->st.in_flight--;
				g_queue_push_head(&c->queue, m);
				c->st.queued = c->queue.length;
				break;
			}
			if (c->set.qos == 0) {
				/* No PUBACK at QoS 0: handed over is all there is. */
				c->st.in_flight--;
			}
			c->st.published++;
			msg_free(m);
		}
		/* The status: on connecting (the will may have said offline),
		 * every status_period_s, and when faults or the model change. */
		{
			gboolean connected = c->connected;
			struct status_view v;

			g_mutex_unlock(&c->lock);
			view_status(c, &v);
			if (now - rate_t0_us >= (int64_t)c->set.status_period_s * G_USEC_PER_SEC) {
				rate = (double)(v.line.inspected - rate_n0) * 60e6 /
				       (double)(now - rate_t0_us);
				rate_t0_us = now;
				rate_n0 = v.line.inspected;
			}
			if (connected && (!was_connected || now >= next_status_us ||
					  status_changed(&v, &last))) {
				publish_status(c, &v, rate);
				next_status_us = now + (int64_t)c->set.status_period_s *
							       G_USEC_PER_SEC;
			}
			was_connected = connected;
			if (connected) {
				warn_us = INT64_MAX;
			} else if (now >= warn_us) {
				g_warning("mqtt: no connection to %s:%d after 10 s; results "
					  "queue (up to %d) until there is", c->set.host,
					  c->set.port, c->set.queue);
				warn_us = INT64_MAX;
			}
			g_free(last.model_version);
			last = v;
			g_mutex_lock(&c->lock);
		}
		if (c->stopping)
			break;
		if (!(c->connected && c->queue.length && c->st.in_flight < MQTT_WINDOW))
			g_cond_wait_until(&c->wake, &c->lock,
					  g_get_monotonic_time() + 250 * G_TIME_SPAN_MILLISECOND);
	}
	g_mutex_unlock(&c->lock);
	g_free(last.model_version);
	return NULL;
}

int mqtt_client_start(mqtt_client *c, char **err)
{
	int rc;

	/* The network thread first: connecting from it, libmosquitto retries
	 * a broker that is not there yet; a connect that failed before the
	 * thread ran is never retried (libmosquitto 2.0). */
	if ((rc = mosquitto_loop_start(c->mosq)) != MOSQ_ERR_SUCCESS) {
		*err = g_strdup_printf("[mqtt]: cannot start libmosquitto's thread: %s",
				       mosquitto_strerror(rc));
		return -EIO;
	}
	c->loop_started = TRUE;
	rc = mosquitto_connect_async(c->mosq, c->set.host, c->set.port, c->set.keepalive_s);
	if (rc != MOSQ_ERR_SUCCESS)
		g_warning("mqtt: %s:%d: %s; retrying every %d..%d s", c->set.host, c->set.port,
			  rc == MOSQ_ERR_ERRNO ? g_strerror(errno) : mosquitto_strerror(rc),
			  c->set.retry_min_s, c->set.retry_max_s);
	c->feeder = g_thread_new("mqtt", feeder_thread, c);
	return 0;
}

void mqtt_client_stop(mqtt_client *c)
{
	int64_t end;
	int mid = 0;
	gboolean connected;

	if (!c || !c->feeder)
		return;
	/* The feeder keeps handing over while the queue drains. */
	end = g_get_monotonic_time() + (int64_t)c->set.stop_flush_ms * G_TIME_SPAN_MILLISECOND;
	g_mutex_lock(&c->lock);
	while ((c->queue.length || c->st.in_flight) && c->connected &&
	       g_cond_wait_until(&c->wake, &c->lock, end))
		;
	c->stopping = TRUE;
	g_cond_broadcast(&c->wake);
	g_mutex_unlock(&c->lock);
	g_thread_join(c->feeder);
	c->feeder = NULL;

	g_mutex_lock(&c->lock);
	connected = c->connected;
	if (c->queue.length || c->st.in_flight)
		g_warning("mqtt: %u results not published and %" G_GUINT64_FORMAT " not "
			  "acknowledged at stop (counted as dropped)", c->queue.length,
			  c->st.in_flight);
	c->st.dropped += c->queue.length + c->st.in_flight;
	g_queue_clear_full(&c->queue, (GDestroyNotify)msg_free);
	c->st.queued = 0;
	c->st.in_flight = 0;
	/* A clean stop sends no will: say offline ourselves, and give the
	 * broker a moment to take it. */
	if (connected && mosquitto_publish(c->mosq, &mid, c->topic_status,
					   (int)strlen(offline_payload), offline_payload,
					   c->set.qos, true) == MOSQ_ERR_SUCCESS) {
		g_hash_table_add(c->status_mids, GINT_TO_POINTER(mid));
		end = g_get_monotonic_time() + G_TIME_SPAN_SECOND;
		while (c->connected &&
		       g_hash_table_contains(c->status_mids, GINT_TO_POINTER(mid)) &&
		       g_cond_wait_until(&c->wake, &c->lock, end))
			;
	}
	g_mutex_unlock(&c->lock);
	mosquitto_disconnect(c->mosq);
	if (c->loop_started)
		mosquitto_loop_stop(c->mosq, false);
	c->loop_started = FALSE;
	g_mutex_lock(&c->lock);
	c->connected = FALSE;
	c->st.connected = 0;
	g_mutex_unlock(&c->lock);
}

void mqtt_client_get_stats(mqtt_client *c, struct mqtt_stats *st)
{
	if (!c) {
		memset(st, 0, sizeof *st);
		return;
	}
	g_mutex_lock(&c->lock);
	*st = c->st;
	g_mutex_unlock(&c->lock);
}
