/* The link to the line PLC over Modbus TCP (libmodbus). In this first
 * version vigild is the Modbus client: it polls the PLC's trigger block and
 * writes the result block into the PLC's holding registers. The register map
 * is in docs/plc.md; the encoders below are the single source of truth for
 * it, shared by vigild and the simulated PLC in tools/vigil-sim.
 *
 * A plc_link is used from one thread only (libmodbus contexts are not
 * thread-safe). */
#ifndef VIGIL_PLC_PLC_H
#define VIGIL_PLC_PLC_H

#include <stdint.h>

/* Project error codes, below -PLC_ENOBASE; others are negative errno. */
#define PLC_ENOBASE 20000
#define PLC_ENOTCONN (-(PLC_ENOBASE + 1))  /* not connected */
#define PLC_EHANDSHAKE (-(PLC_ENOBASE + 2)) /* PLC has not acknowledged */
#define PLC_EMODBUS (-(PLC_ENOBASE + 3))    /* Modbus exception reply */

/* Holding register offsets, relative to the block bases in plc_regmap. */
enum {
	/* Trigger block, written by the PLC. */
	PLC_TRIG_COUNTER = 0,     /* u16, +1 per part, 65535 wraps to 1; 0 = none yet */
	PLC_TRIG_PART_ID_HI = 1,  /* u32 part id, high word first */
	PLC_TRIG_PART_ID_LO = 2,
	PLC_TRIG_ACK = 3,         /* u16: result counter the PLC has consumed */
	PLC_TRIG_REGS = 4,

	/* Result block, written by vigild in one write-multiple-registers. */
	PLC_RES_COUNTER = 0,      /* u16, +1 per result, 65535 wraps to 1 */
	PLC_RES_PART_ID_HI = 1,
	PLC_RES_PART_ID_LO = 2,
	PLC_RES_TRIGGER_ECHO = 3, /* trigger counter of this part */
	PLC_RES_VERDICT = 4,      /* 1 accept, 2 reject, 3 marginal */
	PLC_RES_CLASS = 5,        /* 0 none, 1 surface, 2 vibration, 3 both */
	PLC_RES_SCORE = 6,        /* fused defect score x 1000 (0..1000) */
	PLC_RES_FLAGS = 7,        /* enum vigil_part_flags, low 16 bits */
	PLC_RES_REGS = 8,

	/* Status block, written by vigild about once per second. */
	PLC_STAT_HEARTBEAT = 0,   /* u16, +1 per status write */
	PLC_STAT_WORD = 1,        /* enum plc_status_bits */
	PLC_STAT_REGS = 2,
};

enum plc_status_bits {
	PLC_STATUS_READY = 1 << 0,
	PLC_STATUS_RUNNING = 1 << 1,
	PLC_STATUS_FAULT = 1 << 2,
	PLC_STATUS_MODEL_LOADED = 1 << 3,
	PLC_STATUS_CAMERA_OK = 1 << 4,
	PLC_STATUS_SENSOR_OK = 1 << 5,
	PLC_STATUS_DB_OK = 1 << 6,
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
};

struct plc_result {
	uint16_t counter;
	uint32_t part_id;
	uint16_t trigger_counter;
	uint16_t verdict;
	uint16_t defect_class;
	uint16_t score_milli;
	uint16_t flags;
};

/* Encoding, shared with the simulated PLC. */
void plc_encode_result(const struct plc_result *r, uint16_t regs[PLC_RES_REGS]);
void plc_decode_result(const uint16_t regs[PLC_RES_REGS], struct plc_result *r);
void plc_encode_trigger(const struct plc_trigger *t, uint16_t regs[PLC_TRIG_REGS]);
void plc_decode_trigger(const uint16_t regs[PLC_TRIG_REGS], struct plc_trigger *t);
/* Next counter value after c: 1..65535, skipping 0 (which means "none"). */
uint16_t plc_counter_next(uint16_t c);

typedef struct plc_link plc_link;

struct plc_config {
	const char *host;        /* Modbus TCP server (the PLC) */
	int port;
	int unit_id;
	int timeout_ms;          /* per request */
	struct plc_regmap map;
};

/* Copies what it needs from cfg. Does not connect. NULL on bad config. */
plc_link *plc_link_new_tcp(const struct plc_config *cfg);
void plc_link_free(plc_link *link);

/* Connects if not connected. 0 or a negative code. */
int plc_link_connect(plc_link *link);
void plc_link_close(plc_link *link);
int plc_link_connected(const plc_link *link);

/* Reads the trigger block (one read of PLC_TRIG_REGS registers). On an I/O
 * error the link is closed (reconnect with plc_link_connect). */
int plc_read_trigger(plc_link *link, struct plc_trigger *t);

/* Writes the whole result block in one request (function 16), so the PLC
 * never sees half a result. */
int plc_write_result(plc_link *link, const struct plc_result *r);

/* Writes heartbeat and status word. */
int plc_write_status(plc_link *link, uint16_t heartbeat, uint16_t status_word);

const char *plc_strerror(int code);

#endif
