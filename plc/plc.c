/* The PLC link: a libmodbus TCP client and the register map encoders.
 * docs/plc.md describes the map; plc.h is its single source of truth. */
#include "plc/plc.h"

#include <arpa/inet.h>
#include <errno.h>
#include <modbus.h>
#include <stdlib.h>
#include <string.h>

struct plc_link {
	modbus_t *ctx;          /* made once in plc_link_new_tcp, reused across reconnects */
	int connected;
	struct plc_regmap map;
};

void plc_encode_result(const struct plc_result *r, uint16_t regs[PLC_RES_REGS])
{
	regs[PLC_RES_COUNTER] = r->counter;
	regs[PLC_RES_PART_ID_HI] = (uint16_t)(r->part_id >> 16);
	regs[PLC_RES_PART_ID_LO] = (uint16_t)(r->part_id & 0xffff);
	regs[PLC_RES_TRIGGER_ECHO] = r->trigger_counter;
	regs[PLC_RES_VERDICT] = r->verdict;
	regs[PLC_RES_CLASS] = r->defect_class;
	regs[PLC_RES_SCORE] = r->score_milli;
	regs[PLC_RES_FLAGS] = r->flags;
}

void plc_decode_result(const uint16_t regs[PLC_RES_REGS], struct plc_result *r)
{
	r->counter = regs[PLC_RES_COUNTER];
	r->part_id = (uint32_t)regs[PLC_RES_PART_ID_HI] << 16 | regs[PLC_RES_PART_ID_LO];
	r->trigger_counter = regs[PLC_RES_TRIGGER_ECHO];
	r->verdict = regs[PLC_RES_VERDICT];
	r->defect_class = regs[PLC_RES_CLASS];
	r->score_milli = regs[PLC_RES_SCORE];
	r->flags = regs[PLC_RES_FLAGS];
}

void plc_encode_trigger(const struct plc_trigger *t, uint16_t regs[PLC_TRIG_REGS])
{
	regs[PLC_TRIG_COUNTER] = t->counter;
	regs[PLC_TRIG_PART_ID_HI] = (uint16_t)(t->part_id >> 16);
	regs[PLC_TRIG_PART_ID_LO] = (uint16_t)(t->part_id & 0xffff);
	regs[PLC_TRIG_ACK] = t->ack;
}

void plc_decode_trigger(const uint16_t regs[PLC_TRIG_REGS], struct plc_trigger *t)
{
	t->counter = regs[PLC_TRIG_COUNTER];
	t->part_id = (uint32_t)regs[PLC_TRIG_PART_ID_HI] << 16 | regs[PLC_TRIG_PART_ID_LO];
	t->ack = regs[PLC_TRIG_ACK];
}

uint16_t plc_counter_next(uint16_t c)
{
	return c == UINT16_MAX ? 1 : (uint16_t)(c + 1);
}

/* A block must lie inside the 16-bit protocol address space. */
static int block_fits(int base, int nregs)
{
	return base >= 0 && base <= 65536 - nregs;
}

static int blocks_overlap(int a, int na, int b, int nb)
{
	return a < b + nb && b < a + na;
}

plc_link *plc_link_new_tcp(const struct plc_config *cfg)
{
	const struct plc_regmap *m;
	struct in_addr addr;
	plc_link *link = NULL;

	if (!cfg || !cfg->host || cfg->port < 1 || cfg->port > 65535 || cfg->timeout_ms < 1)
		return NULL;
	/* libmodbus's TCP backend passes the host to inet_addr(), so a name
	 * such as "localhost" would fail on every connect with a stale errno;
	 * reject it here, where the caller reports a bad endpoint. */
	if (inet_pton(AF_INET, cfg->host, &addr) != 1)
		return NULL;
	if (cfg->unit_id < 0 || (cfg->unit_id > 247 && cfg->unit_id != MODBUS_TCP_SLAVE))
		return NULL;
	m = &cfg->map;
	if (!block_fits(m->trigger_base, PLC_TRIG_REGS) ||
	    !block_fits(m->result_base, PLC_RES_REGS) ||
	    !block_fits(m->status_base, PLC_STAT_REGS))
		return NULL;
	/* Overlapping blocks would have vigild overwrite the PLC's trigger or
	 * its own result with the heartbeat. */
	if (blocks_overlap(m->trigger_base, PLC_TRIG_REGS, m->result_base, PLC_RES_REGS) ||
	    blocks_overlap(m->trigger_base, PLC_TRIG_REGS, m->status_base, PLC_STAT_REGS) ||
	    blocks_overlap(m->result_base, PLC_RES_REGS, m->status_base, PLC_STAT_REGS))
		return NULL;

	link = calloc(1, sizeof *link);
	if (!link)
		goto fail;
	link->map = *m;
	link->ctx = modbus_new_tcp(cfg->host, cfg->port);
	if (!link->ctx)
		goto fail;
	if (modbus_set_slave(link->ctx, cfg->unit_id) < 0)
		goto fail;
	/* The response timeout also bounds modbus_connect(), so a PLC that is
	 * switched off cannot stall the caller for the kernel's SYN timeout. */
	if (modbus_set_response_timeout(link->ctx, (uint32_t)(cfg->timeout_ms / 1000),
					(uint32_t)(cfg->timeout_ms % 1000) * 1000) < 0)
		goto fail;
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
		if (link->connected)
			modbus_close(link->ctx);
		modbus_free(link->ctx);
	}
	free(link);
}

int plc_link_connect(plc_link *link)
{
	if (link->connected)
		return 0;
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

void plc_link_close(plc_link *link)
{
	if (!link || !link->connected)
		return;
	modbus_close(link->ctx);
	link->connected = 0;
}

int plc_link_connected(const plc_link *link)
{
	return link && link->connected;
}

/* Converts a failed libmodbus request (-1 and errno) into our code, once.
 * An exception reply leaves the TCP stream in step, so the link stays up.
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

int plc_read_trigger(plc_link *link, struct plc_trigger *t)
{
	uint16_t regs[PLC_TRIG_REGS];
	int rc;

	if (!link->connected)
		return PLC_ENOTCONN;
	rc = modbus_read_registers(link->ctx, link->map.trigger_base, PLC_TRIG_REGS, regs);
	if (rc < 0)
		return request_failed(link);
	if (rc != PLC_TRIG_REGS) {
		plc_link_close(link);
		return -EPROTO;
	}
	plc_decode_trigger(regs, t);
	return 0;
}

/* Writes nregs registers at base in one function 16 request. */
static int write_block(plc_link *link, int base, const uint16_t *regs, int nregs)
{
	int rc;

	if (!link->connected)
		return PLC_ENOTCONN;
	rc = modbus_write_registers(link->ctx, base, nregs, regs);
	if (rc < 0)
		return request_failed(link);
	if (rc != nregs) {
		plc_link_close(link);
		return -EPROTO;
	}
	return 0;
}

int plc_write_result(plc_link *link, const struct plc_result *r)
{
	uint16_t regs[PLC_RES_REGS];

	plc_encode_result(r, regs);
	return write_block(link, link->map.result_base, regs, PLC_RES_REGS);
}

int plc_write_status(plc_link *link, uint16_t heartbeat, uint16_t status_word)
{
	uint16_t regs[PLC_STAT_REGS];

	regs[PLC_STAT_HEARTBEAT] = heartbeat;
	regs[PLC_STAT_WORD] = status_word;
	return write_block(link, link->map.status_base, regs, PLC_STAT_REGS);
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
