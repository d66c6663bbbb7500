/* Private to app/: the line's state, shared by line.c (building, starting
 * and stopping the stages), line-config.c (routing the configuration's
 * sections to the stages), line-inspect.c (the acquire and inspect
 * threads), line-log.c (the log thread, rows and events), line-jobs.c (the
 * job loader) and line-plc.c (the PLC thread). */
#ifndef VIGIL_APP_LINE_PRIVATE_H
#define VIGIL_APP_LINE_PRIVATE_H

#include <stdatomic.h>

#include <glib.h>

#include "app/alarm.h"
#include "app/line.h"
#include "app/mqtt.h"
#include "capture/capture.h"
#include "core/bqueue.h"
#include "core/part.h"
#include "db/db.h"
#include "db/plant.h"
#include "fusion/condition.h"
#include "fusion/fusion.h"
#include "inference/inference.h"
#include "plc/plc.h"
#include "sensors/sensors.h"

#define QUEUE_PARTS 256
#define LINE_MAX_JOBS PLC_MAX_JOBS  /* job_select is the PLC's */

#define LINE_MAX_CAMERAS 8
G_STATIC_ASSERT(LINE_MAX_CAMERAS <= LINE_HEALTH_CAMERAS);

/* A recipe the PLC may select by number ([job.N]): a model package and
 * its thresholds. Job 0 is the [model] package with its own thresholds. */
struct line_job {
	int number;               /* 1..LINE_MAX_JOBS; 0 = slot unused */
	char *package;            /* default: the [model] package */
	double reject, marginal;  /* on the fused probability; NAN: the package's */
};

typedef struct line_jobs line_jobs;

/* Every setting, one member per stage, each read by its stage's reader
 * (line-config.c routes the sections); the line's strings are owned here
 * and freed by line_settings_clear. Written before line_start, read only
 * after. */
/* The line's long-lived threads whose heartbeats line_get_progress reads
 * (the database writer's is db_writer_heartbeat_us). */
enum line_thread {
	LINE_THREAD_PLC,
	LINE_THREAD_ACQUIRE,
	LINE_THREAD_INSPECT,
	LINE_THREAD_LOG,
	LINE_THREADS
};

struct line_settings {
	struct capture_settings cameras[LINE_MAX_CAMERAS]; /* [camera.NAME], every
							     * camera sees every part */
	int ncameras;
	struct sensor_settings vibration;      /* [vibration.NAME] */
	struct condition_settings condition;   /* its condition-figure keys */
	struct transmitter_settings transmitter; /* [transmitter.NAME]; name NULL: none */
	struct infer_settings model;           /* [model] but learn (infer_options_read) */
	/* [model] learn: the station collects known-good parts for a first
	 * model. Every part the model judges is accepted and keeps its files;
	 * the model's verdict is only logged (model_verdict). */
	gboolean learn;
	struct db_settings database;           /* [database] */
	struct plc_settings plc;               /* [plc] but state_file (plc_config_read) */
	char *plc_state_path;     /* [plc] state_file: the selected job, kept across restarts */
	struct line_job jobs[LINE_MAX_JOBS + 1]; /* [job.N], indexed by job number */
	struct alarm_settings alarm;           /* [alarm] */
	struct plant_settings plant;           /* [plant]; configured 0: none */
	struct mqtt_settings mqtt;             /* [mqtt] */
};

/* What q_inspect and q_ready carry: a part, or the loader's job change,
 * which the inspect thread puts in place between parts. The message is
 * embedded in what it stands for (struct line_part, struct ready_part,
 * struct line_jobs), so sending one allocates nothing. */
enum line_msg_kind {
	LINE_MSG_PART,    /* q_inspect: a part to acquire (struct line_part) */
	LINE_MSG_READY,   /* q_ready: a part with frames and window in hand */
	LINE_MSG_JOB,     /* both: a job handed over (line_jobs_swap) */
};

struct line_msg {
	enum line_msg_kind kind;
};

/* A row queued before its result goes to the PLC (crash safety), as the
 * PLC thread waits for its commit. */
struct line_row {
	uint64_t ticket;                 /* its place in the writer's order (0: not queued) */
	int64_t t_queued_us;             /* monotonic, when it was queued */
	gboolean commit_seen;            /* the PLC thread saw it committed */
};

/* A part record as the line allocates it (line_part_new): the record the
 * stages see, plus what the log needs of it. */
struct line_part {
	struct vigil_part p;             /* first: a vigil_part * is a line_part * */
	struct db_media_set *media;      /* its files, until handed to the log */
	struct line_row row;             /* its row, queued at its final verdict */
	/* Its fail-safe row, queued by the PLC thread at the deadline while
	 * the part was still being inspected (0: none). Atomic: set by the
	 * PLC thread, read by the log thread, which then stores the model's
	 * late verdict beside it (db_set_late). */
	_Atomic uint64_t failsafe_ticket;
	struct line_msg msg;             /* LINE_MSG_PART, for q_inspect */
	/* Its vibration window's range (max - min, the sensor's unit) when the
	 * window was flat (VIGIL_FLAG_VIB_FLAT), for the log's event. */
	float flat_range;
	/* The cameras whose frame was flat (VIGIL_FLAG_IMAGE_FLAT), 1u << i,
	 * and each one's contrast (capture_frame_contrast), for the event. */
	unsigned flat_cameras;
	float flat_contrast[LINE_MAX_CAMERAS];
};

/* A warning that a fault in force would repeat for every part: when the
 * next may be written, and how many were held back since the last. */
struct held_warning {
	int64_t next_us;
	uint64_t held;
};

struct line {
	struct line_settings set; /* every stage's settings, read by line_read_config */

	/* stages */
	capture_camera *cameras[LINE_MAX_CAMERAS]; /* set.cameras[i]'s camera */
	int ncameras;
	sensor_source *sensor;
	sensor_transmitter *transmitter;      /* NULL without [transmitter.NAME] */
	/* The model and the job the inspection thread runs; after line_start
	 * only that thread touches them, and changes them only between parts
	 * (line_jobs_swap). */
	infer_model *model;
	int run_job;
	const char *run_version;  /* interned version of model */
	/* run_version and model's backend name (static) as /api/status and
	 * /metrics see them, and model's image input for the acquire thread,
	 * which prepares each part's images while the model runs the part
	 * before: written by whoever sets model (line_jobs_publish), under
	 * stats_lock. */
	const char *pub_version, *pub_backend;
	struct fusion_image_spec pub_image;
	/* The running package's [dark] settings (pub_has_dark 0: none), so
	 * that the acquire thread scores the frames off the model's thread. */
	struct fusion_dark_spec pub_dark;
	int pub_has_dark;
	line_jobs *jobs_loader;   /* loads a selected job's package (line-jobs.c) */
	int start_refused, start_error; /* start-up job whose package was refused */
	/* What state_file keeps across restarts: the PLC's job selection and
	 * where the handshake stood. Read before the threads start
	 * (line_jobs_start_job); after that only the PLC thread reads,
	 * changes and saves it. */
	int kept_job;
	struct plc_session_kept kept_plc;
	gboolean kept_save_failed;  /* warned once, until a save works */
	/* state_file open for the per-result record, written in place
	 * (line_state_save_result; PLC thread only); -1 when not open. */
	int kept_fd;
	fusion_sigfeat *sigfeat;
	/* The backend computes model inputs and features on the GPU from the
	 * raw frames and window (infer_model_run_raw); the line does not. */
	gboolean device_prep;
	condition_meter *condition;
	plc_link *plc;
	db_log *db;
	/* Forwards the log to the plant's PostgreSQL ([plant]; NULL: none),
	 * on its own thread and connections: the line never waits on it. */
	plant_forwarder *forwarder;
	mqtt_client *mqtt;        /* NULL without [mqtt]; fed by the log thread */

	/* q_ready: parts with frames and window in hand, acquire thread ->
	 * inspect thread, which batches what waits there. */
	bqueue *q_inspect, *q_ready, *q_results, *q_log;
	GThread *t_plc, *t_acquire, *t_inspect, *t_log;
	volatile gint stop_triggers;   /* set: take no new triggers */
	volatile gint stop_all;        /* set: PLC thread ends once idle */
	int64_t grace_end_us;

	/* Events for the database from a thread that must not wait on it
	 * (struct line_event *, line_post_event); the log thread writes them. */
	GAsyncQueue *events;

	gint plc_up;                   /* the PLC thread's view of the link, for readers */
	gint db_fault_up;              /* the database fault as the PLC sees it (status
					* bit 6 clear), for readers */

	GMutex stats_lock;
	struct line_stats st;
	/* The quality alarms as the PLC thread's monitor last left them,
	 * published for readers under stats_lock (line_get_alarms). */
	struct line_alarms alarms;

	/* Set by the PLC thread when a result went out before its row was
	 * committed; cleared once the writer has caught up with that row. */
	uint64_t db_late_ticket;

	/* Monotonic time of each thread's last loop turn (line_beat). */
	_Atomic int64_t beat_us[LINE_THREADS];
	gint sources_up;               /* the PLC thread's sources_up, for readers */
	gint plc_tried;                /* the PLC thread has tried the link once */
	/* The test hook VIGIL_TEST_HANG=THREAD:PARTS (line_beat); -1: none.
	 * Read from the environment by line_new, constant afterwards. */
	int hang_thread;
	uint64_t hang_after_parts;
	/* The acquire thread's own warnings of flat or clipped windows and
	 * flat frames, held back to one a period (line-inspect.c). */
	struct held_warning flat_window, clipped_window, flat_frame[LINE_MAX_CAMERAS];
};

/* Reads every setting of cfg into l (line-config.c): routes each section
 * to its stage's reader and checks what spans stages. */
int line_read_config(line *l, const config *cfg, char **err);
/* Frees what set owns (line-config.c); a zeroed or half-read set, or NULL, ok. */
void line_settings_clear(struct line_settings *set);

/* A zeroed part record; freed by the log thread with line_part_free. */
struct vigil_part *line_part_new(void);
void line_part_free(struct vigil_part *p);

/* Crash safety (PLC thread): queues p's row now that its verdict is final,
 * without waiting. line_row_committed then says whether its result may go
 * to the PLC: once the row is committed; at once when the database is in
 * fault or the row could not be queued; or after db_commit_timeout_ms,
 * raising the database fault. */
void line_log_early(line *l, struct vigil_part *p);
/* The same for a fail-safe reject at the deadline of p, still being
 * inspected: its row, queued into r (zeroed by the caller), says what the
 * PLC will get. */
void line_log_failsafe(line *l, struct vigil_part *p, struct line_row *r);
gboolean line_row_committed(line *l, struct line_row *r, uint32_t part_id, int64_t now_us);
/* PLC thread: p's early row will never reach the PLC (vigild stopped
 * first): the row is marked so. */
void line_log_not_sent(line *l, struct vigil_part *p);

/* The database fault for the status word: a failed write, or a result
 * that had to go out before its row was committed. */
gboolean line_db_fault(line *l);

/* The log thread (line-log.c); data is the line. It writes the rows of
 * the parts in q_log and the events, until q_log is closed and drained. */
gpointer line_log_thread(gpointer data);
/* Frees an event of l->events (struct line_event *). */
void line_event_free(gpointer event);

/* Any thread, without waiting on the database: queues an event (kind and
 * message copied) that the log thread writes to the events table at its
 * next look, within 0.2 s; it is stamped then. */
void line_post_event(line *l, const char *kind, const char *fmt, ...) G_GNUC_PRINTF(3, 4);

/* The PLC thread (line-plc.c); data is the line. */
gpointer line_plc_thread(gpointer data);

/* ---- inspection (line-inspect.c) ---- */

/* PLC thread: queues p (from line_part_new) for inspection, waiting up to
 * timeout_us as bqueue_push does; on failure p stays the caller's. */
int line_inspect_push(line *l, struct vigil_part *p, int64_t timeout_us);
/* The acquire and inspect threads; data is the line. The acquire thread
 * ends when q_inspect is closed and drained, and then closes q_ready; the
 * inspect thread ends when q_ready is. */
gpointer line_acquire_thread(gpointer data);
gpointer line_inspect_thread(gpointer data);

/* ---- jobs (line-jobs.c) ---- */

/* The job to start on: the PLC's last selection kept in the state file,
 * else [plc] job. Reads the handshake's state into l->kept_plc too. */
int line_jobs_start_job(line *l);
/* Keeps job as the selection (PLC thread, once the job runs), synced to
 * disk: a selection is rare and must survive a power cut. */
void line_jobs_save(line *l, int job);
/* Keeps the result about to be presented: its counter and the trigger it
 * answers (PLC thread, before the result is written). Overwritten in place
 * as one record of fixed size, not synced: one per part, and a power cut
 * that loses the last one still finds the PLC's stale ack skipped
 * (docs/plc.md). */
void line_state_save_result(line *l, uint16_t result_counter, uint16_t trigger_counter,
			    uint32_t part_id);
/* Loads the start job's package into l->model, falling back to the [model]
 * package (job 0, the refusal kept for the PLC) when it is refused. 0, or
 * -EINVAL with *err when no package can run (a package that does not fit
 * names the setting in cfg it does not fit). */
int line_jobs_load_start(line *l, const config *cfg, char **err);
/* 0 when model m can run on this line (vibration rate, window, features),
 * else -EINVAL with *err and *key: the [vibration.NAME] key the package
 * does not fit ("rate_hz", "window"), NULL when it does not fit this build. */
int line_model_fits(line *l, const infer_model *m, const char **key, char **err);

/* The loader thread: takes job selections from the PLC thread, loads and
 * checks their packages and hands them to the inspection thread. */
line_jobs *line_jobs_new(line *l);
/* Stops the thread; call after the inspection thread has ended. NULL ok. */
void line_jobs_free(line_jobs *j);
/* PLC thread: asks for job (1..LINE_MAX_JOBS, or 0); a newer request
 * replaces one not yet started. */
void line_jobs_request(line_jobs *j, int job);
/* PLC thread, without waiting: the next outcome of a request. 0 and
 * job and error set (error: 0 = the job now runs, else the plc_error_code
 * it was refused with), or -EAGAIN when there is none. */
int line_jobs_report(line_jobs *j, int *job, int *error);
/* Inspection thread, between parts: puts the handed job (and its model)
 * in place. */
void line_jobs_swap(line *l);
/* Whoever sets l->model (at start, then the inspection thread): records
 * its version and publishes what other threads read of it (pub_*). */
void line_jobs_publish(line *l);
/* The verdict for score under the running job's thresholds; model_verdict
 * (the package's own) when the job keeps them. */
enum vigil_verdict line_jobs_verdict(line *l, float score, enum vigil_verdict model_verdict);

/* All cameras at once: up only if every camera is up; failed if any failed. */
void line_camera_stats(line *l, struct capture_stats *st);

/* Thread t: one more turn of its loop (line_get_progress). Under the test
 * hook VIGIL_TEST_HANG, the named thread hangs here once the line has
 * inspected that many parts, until line_stop. */
void line_beat(line *l, enum line_thread t);

/* Adds n to a statistics counter under the line's lock. */
void line_count(line *l, uint64_t *field, uint64_t n);

/* Counts ms in stage's histogram, under the line's lock. */
void line_count_stage(line *l, enum line_stage stage, double ms);

#endif
