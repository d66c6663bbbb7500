/* The inspection line inside vigild: reads the configuration, builds the
 * stages and moves part records between them through bounded queues.
 *
 *   plc thread --q_inspect--> acquire thread --q_ready--> inspect thread
 *     --q_results--> plc thread
 *
 * The acquire thread waits for each part's frames and vibration window and
 * computes its features; the inspect thread runs the model on the parts
 * waiting in q_ready, up to [model] max_batch at once.
 *   plc thread --q_log--> log thread --> db writer
 *                                     \--> mqtt queue --> mqtt thread ([mqtt])
 *
 * The PLC thread owns the Modbus link and every decision sent to the PLC,
 * including the fail-safe reject at the deadline; the log thread is the
 * only one that may wait on the database, so a slow disk never delays a
 * PLC write. */
#ifndef VIGIL_APP_LINE_H
#define VIGIL_APP_LINE_H

#include <stdint.h>

#include "core/config.h"
#include "db/db.h"
#include "db/plant.h"

typedef struct line line;

/* Reads every setting and builds every stage; NULL with *err (g_free) on
 * any configuration or start-up error. */
line *line_new(const config *cfg, char **err);
int line_start(line *l, char **err);
/* Stops taking triggers, finishes the parts in flight (up to grace_ms),
 * writes their results and log rows, and stops every stage. */
void line_stop(line *l, int grace_ms);
void line_free(line *l);
/* Any thread: a row in the events table (kind and message copied), written
 * by the log thread within 0.2 s, e.g. a signal the daemon ignored. */
void line_event(line *l, const char *kind, const char *message);

/* Upper bounds (ms) of the trigger-to-PLC latency histogram's buckets. */
#define LINE_LATENCY_BUCKETS 12
extern const double line_latency_bounds_ms[LINE_LATENCY_BUCKETS];

/* The stages a part's time goes to, each with its own histogram:
 * capture wait (trigger to every frame and the vibration window in hand),
 * inference (features and model), PLC write (one result write on the
 * link), db write (the part's row queued, at its final verdict, to its
 * commit as the PLC thread sees it; the result waits for that). */
enum line_stage {
	LINE_STAGE_CAPTURE_WAIT,
	LINE_STAGE_INFERENCE,
	LINE_STAGE_PLC_WRITE,
	LINE_STAGE_DB_WRITE,
	LINE_STAGES
};
extern const char *const line_stage_names[LINE_STAGES];
#define LINE_STAGE_BUCKETS 16
extern const double line_stage_bounds_ms[LINE_STAGE_BUCKETS];

/* Upper bounds of the batch size histogram's buckets (parts per model run). */
#define LINE_BATCH_BUCKETS 8
extern const double line_batch_bounds[LINE_BATCH_BUCKETS];

/* Why a part got a fail-safe reject (enum vigil_failsafe_cause,
 * core/part.h): "deadline", "no_frame", ... as /metrics labels them. */
extern const char *const line_failsafe_cause_names[VIGIL_FAILSAFE_CAUSES];

struct line_stats {
	uint64_t triggers, missed_triggers, inspected, results_written;
	/* failsafe: every fail-safe reject, the sum of failsafe_by */
	uint64_t failsafe, failsafe_by[VIGIL_FAILSAFE_CAUSES];
	uint64_t rows_logged, rows_failed;
	uint64_t accepted, rejected, marginal;
	/* Trigger to PLC result of every logged part: parts per bucket (not
	 * cumulative), the last one above the largest bound; and their sum. */
	uint64_t latency_parts[LINE_LATENCY_BUCKETS + 1];
	double latency_sum_ms;
	/* Per stage, bucketed by line_stage_bounds_ms in the same way. */
	uint64_t stage_parts[LINE_STAGES][LINE_STAGE_BUCKETS + 1];
	double stage_sum_ms[LINE_STAGES];
	/* Model runs by the parts each judged ([model] max_batch), bucketed by
	 * line_batch_bounds; and the parts in them. */
	uint64_t batch_parts[LINE_BATCH_BUCKETS + 1];
	uint64_t batch_sum;
};
void line_get_stats(line *l, struct line_stats *st);

/* What the line looks like now, for the review server's status and
 * /metrics; safe to call from any thread while the line runs (not during or
 * after line_stop). */
#define LINE_HEALTH_CAMERAS 8
struct line_health {
	uint64_t q_inspect, q_results, q_log;  /* parts waiting in each queue */
	int plc_connected;
	int cameras, cameras_up;
	struct {
		const char *name;  /* [camera.NAME]; owned by the line */
		uint64_t frames;   /* delivered since start */
		int up;
	} camera[LINE_HEALTH_CAMERAS];
	uint64_t db_rows_written, db_rows_failed; /* inspections and events */
	int db_ok;                    /* 0 while the database fault is raised (status
				       * bit 6 clear): a failed write, or results sent
				       * before their rows were committed */
	double db_write_lag_ms;  /* queueing to commit, oldest row of the last batch */
	double db_write_lag_max_ms;   /* the most seen */
	uint64_t db_queue_high_water; /* the deepest the writer's queue has been */
	/* The log's file deleted or moved under it and followed, and 1 while
	 * it is not at its path yet (db.h, db_check_path). */
	uint64_t db_file_moves;
	int db_file_away;
	uint64_t db_clock_steps;      /* steps of the wall clock seen (db.h) */
	uint64_t db_media_written, db_media_dropped;
	/* The recent ring (db.h, struct db_stats). */
	uint64_t db_ring_files, db_ring_bytes, db_ring_dropped, db_ring_removed;
	int64_t db_ring_oldest_us;
	/* Rows given up, by table and cause (db.h), and items in the spool. */
	uint64_t db_rows_dropped[DB_NTABLES][DB_NDROP_CAUSES];
	uint64_t db_spool_depth;
	/* The model judging parts now: its version, the backend it runs on
	 * ([model] backend, or what auto chose) and the precision; valid for
	 * the life of the process. */
	const char *model_version, *model_backend, *model_precision;
	/* [model] learn: every part the model judges is accepted (fail-safe
	 * rejects stay rejects) and keeps its files, for a first model. */
	int learning;
};
void line_get_health(line *l, struct line_health *h);

/* The quality alarms (app/alarm.h) of the running line, for /api/status
 * and /metrics; any thread, as line_get_health. */
#define LINE_ALARM_KINDS 3
struct line_alarms {
	int enabled;                         /* [alarm] enabled */
	unsigned active;                     /* 1u << enum alarm_kind each */
	int64_t since_us[LINE_ALARM_KINDS];  /* wall clock it was raised, 0: not */
	char message[LINE_ALARM_KINDS][256]; /* the figures it was raised with */
};
void line_get_alarms(line *l, struct line_alarms *out);

/* The forwarder to the plant's PostgreSQL ([plant]), for /api/status and
 * /metrics; any thread, as line_get_health. 0 without [plant] (*out
 * zeroed), else 1 and *out filled. */
int line_get_plant(line *l, struct plant_stats *out);
/* The MQTT client's figures (app/mqtt.h; enabled 0 without [mqtt]), for
 * /api/status and /metrics; any thread, as line_get_health. */
struct mqtt_stats;
void line_get_mqtt(line *l, struct mqtt_stats *out);

/* Whether the line is ready and its threads make progress, for systemd's
 * READY=1 and watchdog (app/notify.h); any thread, as line_get_health.
 * Each long-lived thread of the line (plc, acquire, inspect, log, and the
 * database writer, db-writer) stamps a heartbeat at every turn of its
 * loop, and an idle one turns at least every LINE_IDLE_TURN_MS (a queue
 * wait's timeout), so an old heartbeat means a thread stuck in one call.
 * The rule for the caller: a long call that is legitimate (a model run, a
 * commit on a slow disk, a Modbus timeout, frames awaited up to
 * frame_timeout_ms) stamps nothing while it lasts, so a thread counts as
 * stalled only when its heartbeat is older than a limit that exceeds the
 * longest such call; notify.c takes the watchdog interval. */
#define LINE_IDLE_TURN_MS 500
struct line_progress {
	/* sources_up: every camera and the vibration source have delivered
	 * since start (the PLC's ready bit). ready: that, and the PLC thread
	 * has tried the link once, whatever came of it (plc_connected in
	 * struct line_health says); a PLC that is not there is a fault the
	 * line reports and retries, not a start that has not finished. */
	int sources_up, ready;
	double oldest_ms;    /* age of the oldest heartbeat */
	const char *oldest;  /* whose it is: "plc", "acquire", "inspect", "log",
			      * "db-writer"; static */
};
void line_get_progress(line *l, struct line_progress *out);

#endif
