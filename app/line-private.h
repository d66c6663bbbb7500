/* Private to app/: the line's state, shared by line.c (stages, inspection
 * and log threads), line-config.c (reading the configuration) and
 * line-plc.c (the PLC thread). */
#ifndef VIGIL_APP_LINE_PRIVATE_H
#define VIGIL_APP_LINE_PRIVATE_H

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
#define LINE_MAX_JOBS 64

#define LINE_MAX_CAMERAS 8

/* One [camera.NAME]: every camera sees every part. */
struct line_camera {
	char *name, *pipeline;
	struct capture_config cfg;
	int frame_timeout_ms;
	capture_camera *cam;
};

/* A recipe the PLC may select by number ([job.N]). */
struct line_job {
	int number;               /* 1..LINE_MAX_JOBS; 0 = slot unused */
	char *package;            /* must be the loaded [model] package in this version */
	double reject, marginal;  /* thresholds on the fused probability */
};

enum line_fault_policy { LINE_FAULT_REJECT_ALL = 0, LINE_FAULT_STOP_LINE = 1 };

/* What the PLC thread remembers of a part it has handed to inspection. */
struct outstanding {
	uint64_t seq;
	uint32_t part_id;
	uint16_t trigger_counter;
	int64_t deadline_us;
	gboolean has_verdict;     /* its verdict waits in the PLC thread's pending queue */
	gboolean failsafe_sent;
	int64_t t_plc_us;
};

struct line {
	/* configuration */
	char *model_dir, *backend, *db_path;
	int window_timeout_ms, poll_ms, reject_deadline_ms;
	int db_queue;
	struct plc_config plc_cfg;
	char *plc_host;
	char *plc_device;
	int plc_result_buffer;    /* results that may wait behind the presented one */
	int plc_peer_timeout_ms;  /* server: the PLC counts as silent after this */
	int plc_reconnect_min_ms, plc_reconnect_max_ms; /* client: backoff bounds */
	int plc_fault_policy;     /* enum line_fault_policy */
	int plc_default_job;      /* 0: the [model] thresholds */
	char *plc_state_path;     /* the selected job, kept across restarts */
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
	infer_model *model;
	fusion_sigfeat *sigfeat;
	condition_meter *condition;
	plc_link *plc;
	db_log *db;

	bqueue *q_inspect, *q_results, *q_log;
	GThread *t_plc, *t_inspect, *t_log;
	volatile gint stop_triggers;   /* set: take no new triggers */
	volatile gint stop_all;        /* set: PLC thread ends once idle */
	int64_t grace_end_us;

	GMutex stats_lock;
	struct line_stats st;
};

/* Reads every setting of cfg into l (line-config.c). */
int line_read_config(line *l, const config *cfg, char **err);

/* The PLC thread (line-plc.c); data is the line. */
gpointer line_plc_thread(gpointer data);

/* All cameras at once: up only if every camera is up; failed if any failed. */
void line_camera_stats(line *l, struct capture_stats *st);

/* Adds n to a statistics counter under the line's lock. */
void line_count(line *l, uint64_t *field, uint64_t n);

#endif
