/* The link to the line PLC over Modbus (libmodbus), register map version 3.
 *
 * vigild takes one of two roles, chosen in the config:
 *   client: the PLC is the Modbus server; vigild polls its trigger block and
 *           writes the result and status blocks into the PLC's registers;
 *   server: vigild is the Modbus server; the PLC polls the result and status
 *           blocks from vigild and writes the trigger block into vigild.
 * Either role runs over TCP or RTU (serial). The register map is the same in
 * every case; it is documented in docs/plc.md, and the encoders below are its
 * single source of truth, shared by vigild and the simulated PLC in
 * tools/vigil-sim. 32-bit values take two registers, high word first.
 *
 * A plc_link is used from one thread only (libmodbus contexts are not
 * thread-safe). In the server role the link serves the PLC's requests only
 * inside plc_read_trigger() and plc_serve(), so the caller must call one
 * at least every poll period; neither waits on a master that sends its
 * request slowly (TCP requests are read as far as they have arrived). */
#ifndef VIGIL_PLC_PLC_H
#define VIGIL_PLC_PLC_H

#include <stdint.h>

#include "core/config.h"

/* Project error codes, below -PLC_ENOBASE; others are negative errno. */
#define PLC_ENOBASE 20000
#define PLC_ENOTCONN (-(PLC_ENOBASE + 1))  /* not connected */
#define PLC_EHANDSHAKE (-(PLC_ENOBASE + 2)) /* PLC has not acknowledged */
#define PLC_EMODBUS (-(PLC_ENOBASE + 3))    /* Modbus exception reply */

#define PLC_MAP_VERSION 3

/* Holding register offsets, relative to the block bases in plc_regmap. */
enum {
	/* Trigger block, written by the PLC. */
	PLC_TRIG_COUNTER = 0,     /* u16, +1 per part, 65535 wraps to 1; 0 = none yet */
	PLC_TRIG_PART_ID_HI = 1,  /* u32 part id, high word first */
	PLC_TRIG_PART_ID_LO = 2,
	PLC_TRIG_ACK = 3,         /* u16: result counter the PLC has consumed */
	PLC_TRIG_JOB = 4,         /* u16: job (recipe) the PLC selects; 0 = no request */
	PLC_TRIG_REGS = 5,

	/* Result block, written by vigild in one write-multiple-registers. */
	PLC_RES_COUNTER = 0,      /* u16, +1 per result, 65535 wraps to 1 */
	PLC_RES_PART_ID_HI = 1,
	PLC_RES_PART_ID_LO = 2,
	PLC_RES_TRIGGER_ECHO = 3, /* trigger counter of this part */
	PLC_RES_VERDICT = 4,      /* 1 accept, 2 reject, 3 marginal */
	PLC_RES_CLASS = 5,        /* 0 none, 1 surface, 2 vibration, 3 both */
	PLC_RES_SCORE = 6,        /* fused defect score x 1000 (0..1000) */
	PLC_RES_FLAGS = 7,        /* enum vigil_part_flags, low 16 bits */
	PLC_RES_VALID = 8,        /* 1: this result awaits the PLC's ack; 0: acknowledged */
	PLC_RES_JOB = 9,          /* job whose model and thresholds judged the part (map 3) */
	PLC_RES_REGS = 10,

	/* Status block, written by vigild. */
	PLC_STAT_HEARTBEAT = 0,   /* u16, +1 about every 0.5 s */
	PLC_STAT_WORD = 1,        /* enum plc_status_bits */
	PLC_STAT_ERROR = 2,       /* enum plc_error_code, the most important active one */
	PLC_STAT_JOB = 3,         /* job (recipe) in use */
	PLC_STAT_TRIGGER_SEEN = 4,/* last trigger counter vigild took */
	PLC_STAT_BUFFERED = 5,    /* results not yet acknowledged, the presented one included */
	PLC_STAT_CAPACITY = 6,    /* results that may wait behind the presented one */
	PLC_STAT_OVERRUNS = 7,    /* results lost to a full buffer since start (saturates) */
	PLC_STAT_MAP_VERSION = 8, /* PLC_MAP_VERSION */
	PLC_STAT_REGS = 9,
};

enum plc_status_bits {
	PLC_STATUS_READY = 1 << 0,
	PLC_STATUS_RUNNING = 1 << 1,
	PLC_STATUS_FAULT = 1 << 2,
	PLC_STATUS_MODEL_LOADED = 1 << 3,
	PLC_STATUS_CAMERA_OK = 1 << 4,
	PLC_STATUS_SENSOR_OK = 1 << 5,
	PLC_STATUS_DB_OK = 1 << 6,
	PLC_STATUS_STOP_LINE = 1 << 7,    /* fault_policy = stop_line and a fault is active */
	PLC_STATUS_RESULTS_VALID = 1 << 8,/* mirror of the result block's VALID */
	PLC_STATUS_OVERRUN = 1 << 9,      /* a result was lost to a full buffer (latched) */
	PLC_STATUS_PLC_SILENT = 1 << 10,  /* server role: the PLC stopped polling */
	PLC_STATUS_JOB_INVALID = 1 << 11, /* the selected job was refused (error code says why) */
	PLC_STATUS_JOB_LOADING = 1 << 12, /* a selected job's model package is loading */
	PLC_STATUS_QUEUE_FULL = 1 << 13,  /* a part found inspection saturated (latched
					   * until the next part is taken) */
	PLC_STATUS_QUALITY_ALARM = 1 << 14, /* yield out of control, a defect class
					     * surging or a collapse after a model
					     * change (vigild [alarm]) */
};

enum plc_error_code {
	PLC_ERR_NONE = 0,
	PLC_ERR_CAMERA = 1,
	PLC_ERR_SENSOR = 2,
	PLC_ERR_MODEL = 3,
	PLC_ERR_DATABASE = 4,
	PLC_ERR_OVERRUN = 5,
	PLC_ERR_JOB = 6,
	PLC_ERR_PLC_SILENT = 7,
	/* A selected job's model package was refused; the running job stays. */
	PLC_ERR_JOB_PACKAGE_MISSING = 8,  /* no package (manifest) at its path */
	PLC_ERR_JOB_PACKAGE_CORRUPT = 9,  /* checksum, module or trial run failed */
	PLC_ERR_JOB_PACKAGE_UNFIT = 10,   /* vibration rate, window or features differ */
	PLC_ERR_QUEUE_FULL = 11,          /* inspection queue full: parts fail-safe rejected */
	/* Another reason a selected job's package is refused, beside 8-10. */
	PLC_ERR_JOB_PACKAGE_GATE = 12,    /* its held-out figures miss the [model] limits */
	PLC_ERR_QUALITY_ALARM = 13,       /* a quality alarm is raised (status bit 14) */
};

struct plc_regmap {
	int trigger_base;   /* default 0 */
	int result_base;    /* default 10 */
	int status_base;    /* default 20 */
};

#define PLC_REGMAP_DEFAULT { 0, 10, 20 }

struct plc_trigger {
	uint16_t counter;
	uint32_t part_id;
	uint16_t ack;       /* last result counter the PLC consumed */
	uint16_t job;       /* 0: no selection */
};

struct plc_result {
	uint16_t counter;
	uint32_t part_id;
	uint16_t trigger_counter;
	uint16_t verdict;
	uint16_t defect_class;
	uint16_t score_milli;
	uint16_t flags;
	uint16_t valid;
	uint16_t job;
};

struct plc_status {
	uint16_t heartbeat;
	uint16_t word;
	uint16_t error;
	uint16_t job;
	uint16_t trigger_seen;
	uint16_t buffered;
	uint16_t capacity;
	uint16_t overruns;
};

/* Encoding, shared with the simulated PLC. */
void plc_encode_result(const struct plc_result *r, uint16_t regs[PLC_RES_REGS]);
void plc_decode_result(const uint16_t regs[PLC_RES_REGS], struct plc_result *r);
void plc_encode_trigger(const struct plc_trigger *t, uint16_t regs[PLC_TRIG_REGS]);
void plc_decode_trigger(const uint16_t regs[PLC_TRIG_REGS], struct plc_trigger *t);
/* Sets the map version register too. */
void plc_encode_status(const struct plc_status *s, uint16_t regs[PLC_STAT_REGS]);
void plc_decode_status(const uint16_t regs[PLC_STAT_REGS], struct plc_status *s);
/* Next counter value after c: 1..65535, skipping 0 (which means "none"). */
uint16_t plc_counter_next(uint16_t c);
/* 0 when all three blocks fit in 0..65535 and do not overlap, else -EINVAL. */
int plc_regmap_check(const struct plc_regmap *m);

typedef struct plc_link plc_link;

enum plc_role {
	PLC_ROLE_CLIENT = 0,     /* the PLC is the server */
	PLC_ROLE_SERVER = 1,     /* vigild is the server */
};

enum plc_transport {
	PLC_TRANSPORT_TCP = 0,
	PLC_TRANSPORT_RTU = 1,
};

struct plc_config {
	enum plc_role role;
	enum plc_transport transport;
	const char *host;        /* TCP: the PLC (client role) or the address to
				  * listen on (server role), IPv4 dotted */
	int port;
	const char *device;      /* RTU: serial device, e.g. /dev/ttyS0 */
	int baud;                /* RTU: 0 means 19200 */
	char parity;             /* RTU: 'N', 'E' or 'O'; 0 means 'E' */
	int stop_bits;           /* RTU: 0 means 1 */
	int unit_id;             /* client: the PLC's unit id; server: ours. A
				  * server answers only requests for it (TCP:
				  * also 255 and 0; RTU: writes broadcast to 0
				  * are done, unanswered); others get no reply */
	int timeout_ms;          /* per request */
	struct plc_regmap map;
};

/* Any role over any transport, as cfg says. Copies what it needs from cfg.
 * Does not connect or listen. NULL on bad config. */
plc_link *plc_link_new(const struct plc_config *cfg);
void plc_link_free(plc_link *link);

/* Client: connects if not connected. Server: opens the listening socket or
 * the serial line if not open. 0 or a negative code. */
int plc_link_connect(plc_link *link);
void plc_link_close(plc_link *link);
/* Client: connected to the PLC. Server: listening (whether or not a PLC is
 * polling; see plc_link_last_request_us). */
int plc_link_connected(const plc_link *link);
enum plc_role plc_link_role(const plc_link *link);
/* CLOCK_MONOTONIC time (vigil_now_us) of the last request the PLC made of
 * us (server) or the last successful request we made (client); 0 if none. */
int64_t plc_link_last_request_us(const plc_link *link);

/* Client: reads the trigger block (one read of PLC_TRIG_REGS registers); on
 * an I/O error the link is closed (reconnect with plc_link_connect).
 * Server: serves every request waiting, up to wait_ms for the first one,
 * then returns the trigger block as the PLC last wrote it. */
int plc_read_trigger(plc_link *link, struct plc_trigger *t);
int plc_serve(plc_link *link, int wait_ms);

/* Reads the whole result block (client: from the PLC, one request, the
 * link closed on an I/O error; server: our own registers). */
int plc_read_result(plc_link *link, struct plc_result *r);

/* Writes the whole result block in one request (function 16; in the server
 * role, into our registers between two requests), so the PLC never sees
 * half a result. */
int plc_write_result(plc_link *link, const struct plc_result *r);

/* Writes the whole status block the same way. */
int plc_write_status(plc_link *link, const struct plc_status *s);

const char *plc_strerror(int code);

/* ---- [plc] settings (plc-config.c) ---- */

/* Jobs (recipes) the PLC may select: 1..PLC_MAX_JOBS in job_select. */
#define PLC_MAX_JOBS 64

enum plc_fault_policy {
	PLC_FAULT_REJECT_ALL = 0, /* every verdict a fail-safe reject while a fault lasts */
	PLC_FAULT_STOP_LINE = 1,  /* that, and the stop-line bit for the PLC */
};

/* Everything [plc] says but state_file, whose default is beside the
 * database and which the caller reads. */
struct plc_settings {
	struct plc_config link;   /* host and device point into the strings below */
	char *host;               /* TCP; "" for RTU */
	char *device;             /* RTU; NULL for TCP */
	int poll_ms;
	int reject_deadline_ms;
	int result_buffer;        /* results that may wait behind the presented one */
	int peer_timeout_ms;      /* server: the PLC counts as silent after this */
	int reconnect_min_ms, reconnect_max_ms; /* client: backoff bounds */
	enum plc_fault_policy fault_policy;
	int job;                  /* 0..PLC_MAX_JOBS, used until the PLC selects one;
				   * the caller checks that [job.N] exists */
};

/* Reads section group (normally "plc") of cfg into *out: unknown keys,
 * defaults, ranges, the IPv4 host and overlapping blocks, each error in
 * *err as "FILE:LINE: [plc] key: what" (g_free it). 0 or -EINVAL. *out owns
 * its strings, also on failure: free them with plc_settings_clear. */
int plc_config_read(const config *cfg, const char *group, struct plc_settings *out,
		    char **err);
/* Frees the strings of s and zeroes it; NULL and a zeroed s are fine. */
void plc_settings_clear(struct plc_settings *s);

/* ---- the PLC session (plc-session.c): docs/plc.md's handshake ----
 *
 * A plc_session is the handshake's state on plain values: triggers become
 * parts with deadlines, verdicts wait in the result buffer and go out one
 * per acknowledge, in trigger order, a fail-safe reject for a part without
 * a verdict at its deadline; the status block is made from it. It does no
 * I/O and reads no clock: the caller reads and writes the registers and
 * passes the CLOCK_MONOTONIC time in microseconds (vigil_now_us).
 *
 * A part is the caller's opaque handle (void *part), held by the session
 * from plc_session_track until handed back: by a return value or the
 * not_sent callback, or, at stop, by plc_session_take_current and
 * plc_session_pop_buffered. Handles of parts still being inspected (no
 * verdict yet) are never handed back: their verdicts come through
 * plc_session_verdict. Used from one thread, like plc_link. */

typedef struct plc_session plc_session;

struct plc_session_ops {
	/* A verdict that will never be presented: of a PLC session that
	 * ended (the PLC program restarted). The caller marks its row so and
	 * takes the part back. */
	void (*not_sent)(void *data, void *part);
	/* No verdict by its deadline: part's fail-safe reject is decided,
	 * once; the caller queues its row. Called just before row_committed
	 * asks about that row. */
	void (*failsafe)(void *data, void *part, uint32_t part_id);
	/* Whether the row of the result about to be presented is safe, so the
	 * result may go: part's verdict row, or for part NULL the row of the
	 * fail-safe decided last. Nonzero: present it; 0: ask again. */
	int (*row_committed)(void *data, void *part, uint32_t part_id, int64_t now_us);
};

/* Copies what it needs of set (role, reject_deadline_ms, result_buffer,
 * fault_policy) and ops; data goes to every callback. NULL on bad values. */
plc_session *plc_session_new(const struct plc_settings *set, const struct plc_session_ops *ops,
			     void *data);
/* Forgets what it holds; handles still held are the caller's to free. NULL ok. */
void plc_session_free(plc_session *s);

/* What the previous run of vigild left of the handshake (the caller keeps
 * it in state_file), for plc_session_resume. */
struct plc_session_kept {
	uint16_t result_counter;  /* the last result presented; 0: none */
	int have_trigger;         /* trigger_counter and part_id are known */
	uint16_t trigger_counter; /* the last trigger answered (a result presented) */
	uint32_t part_id;         /* its part id */
};

/* Before the first trigger block: results go on from k->result_counter,
 * and the first trigger block is judged against k's last answered trigger
 * (plc_session_take_trigger). Copies k. */
void plc_session_resume(plc_session *s, const struct plc_session_kept *k);
/* Client role, at connect, while this run has presented nothing: the
 * result block as the PLC holds it. Its counter, when not 0, is where
 * results go on from; if its valid flag is up the block is written again
 * with valid 0 (PLC_SESSION_WRITE_CLEAR), counter and content kept. */
void plc_session_peer_result(plc_session *s, const struct plc_result *r);

/* What taking one trigger block did. */
struct plc_trigger_news {
	int restarted;            /* the PLC program restarted: counter to 0, or back */
	uint16_t from;            /* the counter before */
	unsigned dropped;         /* results of the previous PLC session taken down
				   * or never sent */
	uint16_t missed;          /* triggers skipped: the counter jumped ... */
	uint16_t missed_from;     /* ... from this one (0 after a restart) */
	int new_part;             /* a new part: track it with plc_session_track */
	/* First block after start: the counter shown is not the trigger the
	 * last run answered (plc_session_resume), so it was raised while
	 * vigild was down. new_part is set too: track it with
	 * plc_session_track_unanswered and give it a fail-safe verdict.
	 * Counters raised before it while down are in missed (from the
	 * counter last answered; from 0 if the PLC program restarted too). */
	int unanswered;
	/* First block after start, nothing kept: a counter other than 0 was
	 * taken as the baseline, not as a part (it may have gone unanswered). */
	int adopted;
};

/* Takes the trigger block as last read: its acknowledge, and a change of
 * counter, which is a new part (take_new 0: none is taken, as when
 * stopping), a jump (missed triggers, whose sequence numbers are skipped:
 * a triggered camera took those frames anyway) or a restart: 0, or a step
 * back (65535 -> 1 is one step forwards, and so is any step back of at
 * most 256 across the wrap). On a restart the presented result, if not
 * acknowledged, is taken down (valid 0, counter kept), the buffered
 * verdicts go to not_sent, and the verdicts of parts still in inspection
 * are refused when they come (plc_session_stale). The first block after
 * plc_session_new sets the counter; it is a part only when unanswered
 * (see plc_trigger_news). */
void plc_session_take_trigger(plc_session *s, const struct plc_trigger *t, int take_new,
			      struct plc_trigger_news *news);
/* The new part of the last trigger, triggered at t_trigger_us: its
 * deadline runs from then. part is held until its verdict is handed back.
 * Returns its sequence number (the frame and window it is matched with). */
uint64_t plc_session_track(plc_session *s, uint32_t part_id, uint16_t trigger_counter,
			   int64_t t_trigger_us, void *part);

/* The part of an unanswered trigger (plc_trigger_news.unanswered): held as
 * plc_session_track holds it, but with a sequence number of its own
 * (PLC_SEQ_UNANSWERED and up), so no frame or window is matched to it. */
uint64_t plc_session_track_unanswered(plc_session *s, uint32_t part_id,
				      uint16_t trigger_counter, int64_t t_trigger_us, void *part);
#define PLC_SEQ_UNANSWERED (UINT64_C(1) << 62)

/* A final verdict, in plain values. */
struct plc_verdict {
	uint64_t seq;
	uint32_t part_id;
	uint16_t verdict;         /* enum vigil_verdict */
	uint16_t defect_class;
	float score;              /* 0..1, clamped to 0..1000 in the result */
	uint32_t flags;           /* enum vigil_part_flags; the low 16 bits go out */
	uint16_t job;
};

/* Nonzero when the verdict of part seq belongs to a PLC session that
 * ended: it is never presented (the caller marks and logs it). Forgets it. */
int plc_session_stale(plc_session *s, uint64_t seq);

enum plc_verdict_fate {
	PLC_VERDICT_BUFFERED = 0, /* held (with part) until presented */
	PLC_VERDICT_LATE,         /* its fail-safe reject was decided: the caller
				   * logs the verdict beside it; part is the caller's */
	PLC_VERDICT_OVERRUN,      /* the buffer is full: never sent; part is the caller's */
};

/* Takes the verdict v of part (not stale). For LATE, *t_plc_us is when the
 * fail-safe went to the PLC (0: not yet). */
enum plc_verdict_fate plc_session_verdict(plc_session *s, const struct plc_verdict *v,
					  void *part, int64_t *t_plc_us);

enum plc_session_write {
	PLC_SESSION_WRITE_NONE = 0,  /* the result block is as it should be */
	PLC_SESSION_WRITE_RESULT,    /* the presented result, not written yet */
	PLC_SESSION_WRITE_CLEAR,     /* acknowledged, nothing newer: valid down */
};

/* What plc_session_advance did, and what the caller writes. */
struct plc_session_step {
	/* The acknowledged result's part, whose write was in doubt (it
	 * landed): the caller's again. NULL if none. */
	void *acked;
	/* A result was committed: its verdict's part (held until written) or,
	 * for a fail-safe reject at the deadline, NULL with t_trigger_us set. */
	int committed;
	void *part;
	uint16_t verdict;
	uint32_t flags;
	int64_t t_trigger_us;
	/* The next result waits for its row (row_committed said 0). */
	int awaiting_row;
	/* Write plc_session_result() now; then, if that worked, tell
	 * plc_session_written (RESULT) or plc_session_cleared (CLEAR). */
	enum plc_session_write write;
};

/* One turn of the result handshake, while the link is up: takes the
 * acknowledge, and when nothing is presented commits the next result in
 * trigger order (a verdict, or a fail-safe reject once its deadline has
 * passed), job being the job running now (a fail-safe's). */
void plc_session_advance(plc_session *s, int64_t now_us, uint16_t job,
			 struct plc_session_step *step);
/* The result block as the PLC should see it. */
const struct plc_result *plc_session_result(const plc_session *s);
/* The presented result was written. Returns its part, now the caller's
 * (NULL for a fail-safe, or if returned before). */
void *plc_session_written(plc_session *s);
/* The valid flag's fall was written. */
void plc_session_cleared(plc_session *s);
/* A new connection: the PLC may have lost our writes (or restarted), so
 * the presented result, or its taken-down valid flag, is written again. */
void plc_session_relink(plc_session *s);

/* What the caller knows for the status block. */
struct plc_session_line {
	unsigned faults;          /* 1u << code for each active PLC_ERR_CAMERA ..
				   * PLC_ERR_DATABASE */
	int queue_full;           /* a part found inspection saturated */
	uint16_t job;             /* the job in use */
	uint16_t job_refused;     /* a refused selection, 0 = none */
	uint16_t job_error;       /* its enum plc_error_code */
	int job_loading;
	int silent;               /* server: the PLC stopped polling */
	int ready;                /* every source has delivered once */
	int stopping;             /* no new triggers: ready and running clear */
	int quality_alarm;        /* a quality alarm is raised: bit 14, error 12 */
	uint16_t heartbeat;
};

/* The faults (bits 1u << enum plc_error_code) that make every verdict a
 * fail-safe reject and, under stop_line, set the stop-line bit: all but
 * the database's, which must not stop the line or scrap good parts. */
#define PLC_VERDICT_FAULTS (~(1u << PLC_ERR_DATABASE))

/* The status block; unlatches the overrun bit once the buffer drained. */
void plc_session_status(plc_session *s, const struct plc_session_line *in,
			struct plc_status *st);

/* Nonzero while the session holds a part or a result the PLC has not
 * taken (the latter only counts when can_present). */
int plc_session_busy(const plc_session *s, int can_present);

/* Stopping: the message naming what the PLC never took (the presented
 * result, and the results never presented), or NULL if nothing (g_free
 * it). mark(data, part) is called for each buffered verdict, which stays
 * held (plc_session_pop_buffered). */
char *plc_session_untaken(plc_session *s, void (*mark)(void *data, void *part), void *data);
/* Stopping: hands back the presented result's part, if still held, then
 * the buffered verdicts' parts one per call; NULL when none is left. */
void *plc_session_take_current(plc_session *s);
void *plc_session_pop_buffered(plc_session *s);

#endif
