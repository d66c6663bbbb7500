/* Private to plc/: the link's state, shared by plc.c (the link and the
 * client role) and plc-server.c (the server role). */
#ifndef VIGIL_PLC_PRIVATE_H
#define VIGIL_PLC_PRIVATE_H

#include <modbus.h>

#include "plc/plc.h"

/* A role's operations; chosen by name in plc_link_new. */
struct plc_backend {
	const char *name;
	int (*connect)(plc_link *link);
	void (*close)(plc_link *link);
	int (*read_trigger)(plc_link *link, struct plc_trigger *t);
	int (*write_block)(plc_link *link, int base, const uint16_t *regs, int nregs);
	int (*serve)(plc_link *link, int wait_ms);
};

/* The server keeps up to this many TCP clients: the PLC, plus a service
 * laptop running mbpoll, plus a PLC reconnecting before its old connection
 * timed out. */
#define PLC_SERVER_MAX_CLIENTS 8

/* MBAP header: transaction id, protocol id, length, unit id. */
#define MBAP_LENGTH 7

/* One master's connection to the server (TCP), or the serial line (RTU),
 * with the part of a TCP request received so far. */
struct server_session {
	int fd;
	uint8_t req[MODBUS_TCP_MAX_ADU_LENGTH];
	int len;
	int64_t last_byte_us;
};

struct plc_link {
	const struct plc_backend *backend;
	enum plc_role role;
	enum plc_transport transport;
	modbus_t *ctx;          /* made once in plc_link_new, reused across reconnects */
	int connected;          /* client: connected; server: listening / port open */
	int unit_id;            /* ours (server role) */
	struct plc_regmap map;
	int64_t last_request_us;

	/* server role */
	modbus_mapping_t *mb;   /* every register 0 .. end of the highest block */
	int listen_fd;
	struct server_session sessions[PLC_SERVER_MAX_CLIENTS];
	int nsessions;
	int64_t stall_us;       /* a TCP request stalled this long ends its session */
};

/* The server role's operations (plc-server.c). */
extern const struct plc_backend plc__server_backend;

#endif
