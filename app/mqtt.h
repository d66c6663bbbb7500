/* Live results over MQTT ([mqtt], docs/operations.md): every result and
 * the station's status as JSON to a broker, through libmosquitto.
 *
 *   PREFIX/result   one message per part once its row is final, QoS [mqtt]
 *                   qos (1), not retained;
 *   PREFIX/status   {"state":"online",...} retained, every status_period_s
 *                   and at once when the faults or the model change; the
 *                   last will, and what a clean stop publishes, is
 *                   {"state":"offline"} retained.
 *
 * The line never waits on the broker: mqtt_client_publish_result only
 * puts the message in a bounded queue (queue messages). When the queue is
 * full the OLDEST message is dropped and counted: a live view wants the
 * newest results, and the complete record is the log. A feeder thread
 * ("mqtt") hands queued messages to libmosquitto while it is connected,
 * at most MQTT_WINDOW unacknowledged at once; libmosquitto's own thread
 * (mosquitto_loop_start) does the network and reconnects with back-off.
 * The session is persistent (clean session off, fixed client id), so a
 * message handed over but not acknowledged (PUBACK) when the connection
 * drops is sent again on reconnect: at least once, never lost while
 * vigild runs. */
#ifndef VIGIL_APP_MQTT_H
#define VIGIL_APP_MQTT_H

#include <stdint.h>

#include "core/config.h"
#include "core/part.h"

/* Messages handed to libmosquitto and not yet acknowledged, at most: also
 * the most results a broker restart can duplicate from this station. */
#define MQTT_WINDOW 20

/* [mqtt]; strings owned, freed by mqtt_settings_clear. */
struct mqtt_settings {
	int enabled;                 /* an [mqtt] section is present */
	char *host;                  /* host, required */
	int port;                    /* port (1883; 8883 with ca_file) */
	char *site, *line, *station; /* site, line, station ([plant]'s, else
				      * "default", "default", [database] station) */
	char *client_id;             /* client_id (vigil-SITE-LINE-STATION) */
	char *topic_prefix;          /* topic_prefix (vigil/SITE/LINE/STATION) */
	char *username;              /* username (NULL: none) */
	char *password;              /* password, or password_file's first line;
				      * never logged */
	char *ca_file;               /* ca_file: TLS with this CA (NULL: plain) */
	int qos;                     /* qos (1) */
	int keepalive_s;             /* keepalive_s (30) */
	int queue;                   /* queue (10000 messages) */
	int retry_min_s, retry_max_s; /* retry_min_s (1), retry_max_s (30) */
	int status_period_s;         /* status_period_s (5) */
	int stop_flush_ms;           /* stop_flush_ms (2000): a clean stop's wait
				      * for the queue to empty */
};

/* Reads [mqtt] of cfg (absent: enabled 0, nothing else set); db_station
 * is [database] station, the default station. 0, or -EINVAL with *err
 * (g_free) naming the file, line and key; *s owns what it holds even on
 * failure (mqtt_settings_clear, NULL ok). */
int mqtt_settings_read(const config *cfg, const char *db_station, struct mqtt_settings *s,
		       char **err);
void mqtt_settings_clear(struct mqtt_settings *s);

/* What the station's status message says of the line, filled by the
 * line's callback (any thread: the feeder calls it). */
#define MQTT_MAX_FAULTS 8
struct mqtt_station {
	uint64_t inspected, rejected, failsafe;
	const char *faults[MQTT_MAX_FAULTS]; /* static names, e.g. "plc" */
	int nfaults;
};
typedef void (*mqtt_station_fn)(void *data, struct mqtt_station *out);

struct mqtt_stats {
	int enabled, connected;
	uint64_t queued;        /* messages waiting in the queue now */
	uint64_t in_flight;     /* handed to libmosquitto, not yet acknowledged */
	uint64_t published;     /* results handed to libmosquitto */
	uint64_t acknowledged;  /* results the broker acknowledged (PUBACK) */
	uint64_t dropped;       /* results given up: queue full, or at stop queued
				 * or unacknowledged */
};

typedef struct mqtt_client mqtt_client;

/* A client for s (copied); station(data) fills the status. NULL with *err
 * (g_free) when libmosquitto refuses a setting. Nothing connects yet. */
mqtt_client *mqtt_client_new(const struct mqtt_settings *s, mqtt_station_fn station,
			     void *data, char **err);
/* Starts the feeder and libmosquitto's thread and begins connecting; an
 * unreachable broker is no error (it is retried with back-off). */
int mqtt_client_start(mqtt_client *c, char **err);
/* Any thread, never waiting on the broker: queues p's result (copied).
 * Call once per part, once its row is final. NULL c: nothing. */
void mqtt_client_publish_result(mqtt_client *c, const struct vigil_part *p);
/* Waits up to stop_flush_ms for the queue to empty, publishes the offline
 * status, disconnects and stops both threads; what is left counts as
 * dropped. NULL or never started: nothing. */
void mqtt_client_stop(mqtt_client *c);
void mqtt_client_free(mqtt_client *c);  /* stops it first; NULL ok */

/* Any thread. NULL c: all zero (enabled 0). */
void mqtt_client_get_stats(mqtt_client *c, struct mqtt_stats *st);

#endif
