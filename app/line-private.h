/* Private to app/: the line's state, shared by line.c (stages, inspection
 * and log threads), line-config.c (reading the configuration) and
 * line-plc.c (the PLC thread). */
#ifndef VIGIL_APP_LINE_PRIVATE_H
#define VIGIL_APP_LINE_PRIVATE_H

#include <stdatomic.h>

#include <glib.h>

#include "app/line.h"
#include "capture/capture.h"
#include "core/bqueue.h"
#include "core/part.h"
#include "db/db.h"
#include "fusion/condition.h"
#include "fusion/fusion.h"
#include "inference/inference.h"
#include "plc/plc.h"
#include "sensors/sensors.h"

#define QUEUE_PARTS 256
#define LINE_MAX_JOBS PLC_MAX_JOBS  /* job_select is the PLC's */

/* [model] max_batch: its default and its largest value. */
#define LINE_DEFAULT_MAX_BATCH 1
#define LINE_MAX_BATCH 64

#define LINE_MAX_CAMERAS 8
G_STATIC_ASSERT(LINE_MAX_CAMERAS <= LINE_HEALTH_CAMERAS);

/* One [camera.NAME]: every camera sees every part. */
struct line_camera {
	char *name, *pipeline;
	struct capture_config cfg;
	int frame_timeout_ms;
	capture_camera *cam;
};

/* A recipe the PLC may select by number ([job.N]): a model package and
 * its thresholds. Job 0 is the [model] package with its own thresholds. */
struct line_job {
	int number;               /* 1..LINE_MAX_JOBS; 0 = slot unused */
	char *package;            /* default: the [model] package */
	double reject, marginal;  /* on the fused probability; NAN: the package's */
};

typedef struct line_jobs line_jobs;

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
};

struct line {
	/* configuration */
	char *model_dir, *backend, *db_path;
	enum infer_precision precision;  /* [model] precision */
	int max_batch;            /* [model] max_batch: parts one model run may take */
	int window_timeout_ms;
	int db_queue;
	struct db_options db_opt;
	char *db_media_dir;
	int db_commit_timeout_ms; /* a result waits this long for its row */
	struct plc_settings plc_set; /* [plc] but state_file (plc_config_read) */
	char *plc_state_path;     /* [plc] state_file: the selected job, kept across restarts */
	struct line_job jobs[LINE_MAX_JOBS + 1]; /* indexed by job number */
	struct line_camera cameras[LINE_MAX_CAMERAS];
	int ncameras;
	struct sensor_config sen_cfg;
	char *sen_name, *sen_pipeline;
	char *sen_iio_uri, *sen_iio_device, *sen_iio_channel;
	enum iso_class iso_class;       /* machine group for the ISO 10816 zone */
	double hf_hz;                   /* high-frequency / envelope band edge */
	gboolean have_bearing;
	struct bearing_freqs bearing;   /* defect frequencies at the shaft speed */

	struct transmitter_config tx_cfg;     /* [transmitter.NAME], if any */
	char *tx_name, *tx_host, *tx_device;

	/* stages */
	sensor_source *sensor;
	sensor_transmitter *transmitter;      /* NULL without [transmitter.NAME] */
	/* The model and the job the inspection thread runs; after line_start
	 * only that thread touches them, and changes them only between parts
	 * (line_jobs_swap). */
	infer_model *model;
	int run_job;
	const char *run_version;  /* interned version of model */
	line_jobs *jobs_loader;   /* loads a selected job's package (line-jobs.c) */
	int start_refused, start_error; /* start-up job whose package was refused */
	fusion_sigfeat *sigfeat;
	/* The backend computes model inputs and features on the GPU from the
	 * raw frames and window (infer_model_run_raw); the line does not. */
	gboolean device_prep;
	condition_meter *condition;
	plc_link *plc;
	db_log *db;

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

	/* Set by the PLC thread when a result went out before its row was
	 * committed; cleared once the writer has caught up with that row. */
	uint64_t db_late_ticket;
};

/* Reads every setting of cfg into l (line-config.c). */
int line_read_config(line *l, const config *cfg, char **err);

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

/* Any thread, without waiting on the database: queues an event (kind and
 * message copied) that the log thread writes to the events table at its
 * next look, within 0.2 s; it is stamped then. */
void line_post_event(line *l, const char *kind, const char *fmt, ...) G_GNUC_PRINTF(3, 4);

/* The PLC thread (line-plc.c); data is the line. */
gpointer line_plc_thread(gpointer data);

/* ---- jobs (line-jobs.c) ---- */

/* The job to start on: the PLC's last selection kept in the state file,
 * else [plc] job. */
int line_jobs_start_job(line *l);
/* Keeps job as the selection (PLC thread, once the job runs). */
void line_jobs_save(line *l, int job);
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
/* Inspection thread: item is a job change waiting in q_inspect. */
gboolean line_jobs_is_swap(line *l, const void *item);
/* Inspection thread, between parts: puts the handed job (and its model)
 * in place. */
void line_jobs_swap(line *l);
/* The verdict for score under the running job's thresholds; model_verdict
 * (the package's own) when the job keeps them. */
enum vigil_verdict line_jobs_verdict(line *l, float score, enum vigil_verdict model_verdict);

/* All cameras at once: up only if every camera is up; failed if any failed. */
void line_camera_stats(line *l, struct capture_stats *st);

/* Adds n to a statistics counter under the line's lock. */
void line_count(line *l, uint64_t *field, uint64_t n);

/* Counts ms in stage's histogram, under the line's lock. */
void line_count_stage(line *l, enum line_stage stage, double ms);

#endif
