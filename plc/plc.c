/* The PLC link: one plc_link over two roles, a libmodbus client
 * (here) and a libmodbus server (plc-server.c), each over TCP or RTU. The
 * register map is encoded in plc-map.c; docs/plc.md describes it. */
#include "plc/plc-private.h"

#include <arpa/inet.h>
#include <errno.h>
#include <modbus.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/part.h"

/* Converts a failed libmodbus request (-1 and errno) into our code, once.
 * An exception reply leaves the stream in step, so the link stays up.
 * Anything else (timeout, reset, a response that does not match the request)
 * may leave a late or partial response in the socket that the next request
 * would take for its own, so the link is closed and the caller reconnects. */
static int request_failed(plc_link *link)
{
	int e = errno;

	if (e >= EMBXILFUN && e <= EMBXGTAR)
		return PLC_EMODBUS;
	plc_link_close(link);
	if (e >= MODBUS_ENOBASE)
		return PLC_EMODBUS;
	return e > 0 ? -e : -EIO;
}

/* ---- client role: the PLC is the server ---- */

static int client_connect(plc_link *link)
{
	errno = 0;
	if (modbus_connect(link->ctx) < 0) {
		/* libmodbus's non-blocking connect returns -1 without setting
		 * errno when select() times out; errno still holds EINPROGRESS
		 * from connect() or our 0. */
		if (errno == 0 || errno == EINPROGRESS)
			return -ETIMEDOUT;
		return errno >= MODBUS_ENOBASE ? PLC_EMODBUS : -errno;
	}
	link->connected = 1;
	return 0;
}

static void client_close(plc_link *link)
{
	modbus_close(link->ctx);
	link->connected = 0;
}

/* Reads nregs registers at base in one function 3 request. */
static int client_read_block(plc_link *link, int base, uint16_t *regs, int nregs)
{
	int rc = modbus_read_registers(link->ctx, base, nregs, regs);

	if (rc < 0)
		return request_failed(link);
	if (rc != nregs) {
		plc_link_close(link);
		return -EPROTO;
	}
	link->last_request_us = vigil_now_us();
	return 0;
}

static int client_read_trigger(plc_link *link, struct plc_trigger *t)
{
	uint16_t regs[PLC_TRIG_REGS];
	int rc = client_read_block(link, link->map.trigger_base, regs, PLC_TRIG_REGS);

	if (rc == 0)
		plc_decode_trigger(regs, t);
	return rc;
}

/* Writes nregs registers at base in one function 16 request. */
static int client_write_block(plc_link *link, int base, const uint16_t *regs, int nregs)
{
	int rc = modbus_write_registers(link->ctx, base, nregs, regs);

	if (rc < 0)
		return request_failed(link);
	if (rc != nregs) {
		plc_link_close(link);
		return -EPROTO;
	}
	link->last_request_us = vigil_now_us();
	return 0;
}

static int client_serve(plc_link *link, int wait_ms)
{
	(void)link;
	if (wait_ms > 0)
		usleep((useconds_t)wait_ms * 1000);
	return 0;
}

static const struct plc_backend client_backend = {
	.name = "client",
	.connect = client_connect,
	.close = client_close,
	.read_trigger = client_read_trigger,
	.write_block = client_write_block,
	.serve = client_serve,
};

/* ---- the link ---- */

static int map_end(const struct plc_regmap *m)
{
	int end = m->trigger_base + PLC_TRIG_REGS;

	if (m->result_base + PLC_RES_REGS > end)
		end = m->result_base + PLC_RES_REGS;
	if (m->status_base + PLC_STAT_REGS > end)
		end = m->status_base + PLC_STAT_REGS;
	return end;
}

plc_link *plc_link_new(const struct plc_config *cfg)
{
	struct in_addr addr;
	plc_link *link = NULL;
	int server;

	if (!cfg || cfg->timeout_ms < 1 || plc_regmap_check(&cfg->map) < 0)
		return NULL;
	server = cfg->role == PLC_ROLE_SERVER;
	if (cfg->role != PLC_ROLE_CLIENT && !server)
		return NULL;
	if (cfg->transport == PLC_TRANSPORT_TCP) {
		if (!cfg->host || cfg->port < 1 || cfg->port > 65535)
			return NULL;
		/* libmodbus's TCP backend passes the host to inet_addr(), so a
		 * name such as "localhost" would fail on every connect with a
		 * stale errno; reject it here, where the caller reports a bad
		 * endpoint. */
		if (inet_pton(AF_INET, cfg->host, &addr) != 1)
			return NULL;
		if (cfg->unit_id < 0 || (cfg->unit_id > 247 && cfg->unit_id != MODBUS_TCP_SLAVE))
			return NULL;
	} else if (cfg->transport == PLC_TRANSPORT_RTU) {
		char parity = cfg->parity ? cfg->parity : 'E';

		if (!cfg->device || !*cfg->device || cfg->baud < 0 ||
		    (parity != 'N' && parity != 'E' && parity != 'O') ||
		    cfg->stop_bits < 0 || cfg->stop_bits > 2)
			return NULL;
		/* Unit 0 is the broadcast address on a serial line. */
		if (cfg->unit_id < 1 || cfg->unit_id > 247)
			return NULL;
	} else {
		return NULL;
	}

	link = calloc(1, sizeof *link);
	if (!link)
		goto fail;
	link->backend = server ? &plc__server_backend : &client_backend;
	link->role = cfg->role;
	link->transport = cfg->transport;
	link->map = cfg->map;
	link->unit_id = cfg->unit_id;
	link->listen_fd = -1;
	link->stall_us = (int64_t)cfg->timeout_ms * 1000;
	if (cfg->transport == PLC_TRANSPORT_TCP)
		link->ctx = modbus_new_tcp(cfg->host, cfg->port);
	else
		link->ctx = modbus_new_rtu(cfg->device, cfg->baud ? cfg->baud : 19200,
					   cfg->parity ? cfg->parity : 'E', 8,
					   cfg->stop_bits ? cfg->stop_bits : 1);
	if (!link->ctx)
		goto fail;
	if (modbus_set_slave(link->ctx, cfg->unit_id) < 0)
		goto fail;
	if (server) {
		link->mb = modbus_mapping_new(0, 0, map_end(&cfg->map), 0);
		if (!link->mb)
			goto fail;
		/* On the serial line libmodbus sleeps one response timeout
		 * before flushing after some malformed requests, and waits a
		 * byte timeout for each byte of a frame cut short: keep both
		 * short. (TCP requests are read without waiting.) */
		if (modbus_set_response_timeout(link->ctx, 0, 20000) < 0 ||
		    modbus_set_byte_timeout(link->ctx, 0, 50000) < 0)
			goto fail;
	} else {
		/* The response timeout also bounds modbus_connect(), so a PLC
		 * that is switched off cannot stall the caller for the kernel's
		 * SYN timeout. */
		if (modbus_set_response_timeout(link->ctx, (uint32_t)(cfg->timeout_ms / 1000),
						(uint32_t)(cfg->timeout_ms % 1000) * 1000) < 0)
			goto fail;
	}
	return link;

fail:
	plc_link_free(link);
	return NULL;
}

void plc_link_free(plc_link *link)
{
	if (!link)
		return;
	if (link->ctx) {
		plc_link_close(link);
		modbus_free(link->ctx);
	}
	if (link->mb)
		modbus_mapping_free(link->mb);
	free(link);
}

int plc_link_connect(plc_link *link)
{
	if (link->connected)
		return 0;
	return link->backend->connect(link);
}

void plc_link_close(plc_link *link)
{
	if (!link || !link->connected)
		return;
	link->backend->close(link);
}

int plc_link_connected(const plc_link *link)
{
	return link && link->connected;
}

enum plc_role plc_link_role(const plc_link *link)
{
	return link->role;
}

int64_t plc_link_last_request_us(const plc_link *link)
{
	return link->last_request_us;
}

int plc_read_trigger(plc_link *link, struct plc_trigger *t)
{
	if (!link->connected)
		return PLC_ENOTCONN;
	return link->backend->read_trigger(link, t);
}

int plc_serve(plc_link *link, int wait_ms)
{
	if (!link->connected)
		return PLC_ENOTCONN;
	return link->backend->serve(link, wait_ms);
}

int plc_read_result(plc_link *link, struct plc_result *r)
{
	uint16_t regs[PLC_RES_REGS];
	int rc;

	if (!link->connected)
		return PLC_ENOTCONN;
	if (link->role == PLC_ROLE_SERVER) {
		plc_decode_result(link->mb->tab_registers + link->map.result_base, r);
		return 0;
	}
	rc = client_read_block(link, link->map.result_base, regs, PLC_RES_REGS);
	if (rc == 0)
		plc_decode_result(regs, r);
	return rc;
}

int plc_write_result(plc_link *link, const struct plc_result *r)
{
	uint16_t regs[PLC_RES_REGS];

	if (!link->connected)
		return PLC_ENOTCONN;
	plc_encode_result(r, regs);
	return link->backend->write_block(link, link->map.result_base, regs, PLC_RES_REGS);
}

int plc_write_status(plc_link *link, const struct plc_status *s)
{
	uint16_t regs[PLC_STAT_REGS];

	if (!link->connected)
		return PLC_ENOTCONN;
	plc_encode_status(s, regs);
	return link->backend->write_block(link, link->map.status_base, regs, PLC_STAT_REGS);
}

const char *plc_strerror(int code)
{
	switch (code) {
	case 0:
		return "success";
	case PLC_ENOTCONN:
		return "not connected to the PLC";
	case PLC_EHANDSHAKE:
		return "PLC has not acknowledged the last result";
	case PLC_EMODBUS:
		return "PLC answered with a Modbus exception or a malformed response";
	}
	/* modbus_strerror() covers libmodbus's own codes and falls back to
	 * strerror() for errno values. */
	return modbus_strerror(code < 0 ? -code : code);
}
