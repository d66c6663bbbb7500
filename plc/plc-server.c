/* The server role: vigild holds the registers and the PLC (or mbpoll)
 * polls them, over Modbus TCP (several masters) or RTU (plc.h). Runs on
 * the thread that owns the link, as every plc_link call. */
#include "plc/plc-private.h"

#include <arpa/inet.h>
#include <errno.h>
#include <modbus.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/part.h"

/* ---- server role: vigild holds the registers, the PLC polls ---- */

static void server_drop_session(plc_link *link, int i)
{
	close(link->sessions[i].fd);
	link->sessions[i] = link->sessions[--link->nsessions];
}

static void server_add_session(plc_link *link, int fd)
{
	link->sessions[link->nsessions++] = (struct server_session){ .fd = fd };
}

static int server_connect(plc_link *link)
{
	if (link->transport == PLC_TRANSPORT_RTU) {
		errno = 0;
		if (modbus_connect(link->ctx) < 0)
			return errno > 0 && errno < MODBUS_ENOBASE ? -errno : -EIO;
		server_add_session(link, modbus_get_socket(link->ctx));
	} else {
		errno = 0;
		link->listen_fd = modbus_tcp_listen(link->ctx, PLC_SERVER_MAX_CLIENTS);
		if (link->listen_fd < 0)
			return errno > 0 && errno < MODBUS_ENOBASE ? -errno : -EIO;
	}
	link->connected = 1;
	return 0;
}

static void server_close(plc_link *link)
{
	if (link->transport == PLC_TRANSPORT_RTU) {
		modbus_close(link->ctx);
		link->nsessions = 0;
	} else {
		while (link->nsessions > 0)
			server_drop_session(link, link->nsessions - 1);
		if (link->listen_fd >= 0)
			close(link->listen_fd);
		link->listen_fd = -1;
	}
	link->connected = 0;
}

/* The PLC may write the trigger block and nothing else: a write that
 * reaches into the result or status block would forge a verdict. */
static int write_allowed(const plc_link *link, int addr, int nb)
{
	int base = link->map.trigger_base;

	return addr >= base && addr + nb <= base + PLC_TRIG_REGS;
}

static int get_u16(const uint8_t *p)
{
	return p[0] << 8 | p[1];
}

/* An exception reply to q. libmodbus builds the reply's function byte as
 * function + 0x80 in 8 bits, so a request whose function already has the
 * high bit set (0x83) would be answered 0x03, which reads as a good reply
 * to a read. "In an exception response, the server sets the MSB of the
 * function code to 1" (MODBUS Application Protocol Specification V1.1b3,
 * 7): hand libmodbus the function without it, so the reply carries
 * function | 0x80 for every request. On a serial line "no response is
 * returned to broadcast requests" (MODBUS over Serial Line V1.02, 2.2),
 * exceptions included; modbus_reply() already keeps quiet there. */
static int reply_exception(plc_link *link, const uint8_t *q, int code)
{
	uint8_t head[MODBUS_TCP_MAX_ADU_LENGTH];
	int h = modbus_get_header_length(link->ctx);

	if (link->transport == PLC_TRANSPORT_RTU && q[h - 1] == MODBUS_BROADCAST_ADDRESS)
		return 0;
	memcpy(head, q, (size_t)h + 1);
	head[h] &= 0x7f;
	return modbus_reply_exception(link->ctx, head, (unsigned)code);
}

/* Answers one whole request: holding registers only, as docs/plc.md
 * promises. The checks follow the order of the specification's state
 * diagrams (MODBUS Application Protocol Specification V1.1b3, 6): function
 * code (exception 01), quantity (03), address (02). Codes 128-255 "are
 * reserved and used for exception responses" (ibid., 4.1), so a request
 * carrying one is an unsupported function like any other. libmodbus
 * would serve coils, discrete inputs and input registers from an empty
 * table (exception 02) and report-slave-id with its own version string:
 * those are ours to refuse. q is whole, its length checked against its
 * function (by modbus_receive() on RTU, pdu_length() on TCP). Returns
 * modbus_reply()'s result. */
static int server_answer(plc_link *link, const uint8_t *q, int len)
{
	const uint8_t *pdu = q + modbus_get_header_length(link->ctx);
	int addr, nb, quantity_ok;

	switch (pdu[0]) {
	case MODBUS_FC_READ_HOLDING_REGISTERS:
		/* Any register of the map may be read; libmodbus checks the
		 * quantity and the address against it. */
		return modbus_reply(link->ctx, q, len, link->mb);
	case MODBUS_FC_WRITE_SINGLE_REGISTER:
	case MODBUS_FC_MASK_WRITE_REGISTER:
		addr = get_u16(pdu + 1);
		nb = 1;
		quantity_ok = 1;
		break;
	case MODBUS_FC_WRITE_MULTIPLE_REGISTERS:
		addr = get_u16(pdu + 1);
		nb = get_u16(pdu + 3);
		quantity_ok = nb >= 1 && nb <= MODBUS_MAX_WRITE_REGISTERS && pdu[5] == 2 * nb;
		break;
	case MODBUS_FC_WRITE_AND_READ_REGISTERS:
		addr = get_u16(pdu + 5);
		nb = get_u16(pdu + 7);
		quantity_ok = get_u16(pdu + 3) >= 1 &&
			      get_u16(pdu + 3) <= MODBUS_MAX_WR_READ_REGISTERS && nb >= 1 &&
			      nb <= MODBUS_MAX_WR_WRITE_REGISTERS && pdu[9] == 2 * nb;
		break;
	default:
		return reply_exception(link, q, MODBUS_EXCEPTION_ILLEGAL_FUNCTION);
	}
	/* Refused here rather than left to libmodbus, so that no version of
	 * it can write a quantity we did not check. */
	if (!quantity_ok)
		return reply_exception(link, q, MODBUS_EXCEPTION_ILLEGAL_DATA_VALUE);
	if (!write_allowed(link, addr, nb))
		return reply_exception(link, q, MODBUS_EXCEPTION_ILLEGAL_DATA_ADDRESS);
	return modbus_reply(link->ctx, q, len, link->mb);
}

/* The length of a request's PDU as its function defines it, from the
 * bytes there are (avail >= 1); 0 for a function that server_answer()
 * refuses from the function code alone; -1 when the PDU is too short to
 * say. */
static int pdu_length(const uint8_t *pdu, int avail)
{
	switch (pdu[0]) {
	case MODBUS_FC_READ_HOLDING_REGISTERS:
	case MODBUS_FC_WRITE_SINGLE_REGISTER:
		return 5;
	case MODBUS_FC_MASK_WRITE_REGISTER:
		return 7;
	case MODBUS_FC_WRITE_MULTIPLE_REGISTERS:
		return avail >= 6 ? 6 + pdu[5] : -1;
	case MODBUS_FC_WRITE_AND_READ_REGISTERS:
		return avail >= 10 ? 10 + pdu[9] : -1;
	}
	return 0;
}

/* Reads what a TCP master has sent, up to the end of its request, without
 * waiting. libmodbus's modbus_receive() would wait for the rest of a
 * request it has started, a byte timeout per byte, so a master sending
 * slowly would hold this thread and every result and deadline with it.
 * The MBAP header says how long the request is ("Length: number of
 * following bytes", unit identifier included; MODBUS Messaging on TCP/IP
 * Implementation Guide V1.0b, 3.1.3).
 * Returns 1 with a whole request in ss->req, 0 while more is to come, -1
 * when the session must end (closed, reset, or not Modbus). */
static int session_read(struct server_session *ss, int64_t now)
{
	for (;;) {
		int end = ss->len < MBAP_LENGTH ? MBAP_LENGTH : 6 + (ss->req[4] << 8 | ss->req[5]);
		ssize_t n;

		if (ss->len == end)
			return 1;
		n = recv(ss->fd, ss->req + ss->len, (size_t)(end - ss->len), MSG_DONTWAIT);
		if (n == 0)
			return -1;
		if (n < 0)
			return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? 0 : -1;
		ss->len += (int)n;
		ss->last_byte_us = now;
		if (ss->len == MBAP_LENGTH) {
			int protocol = ss->req[2] << 8 | ss->req[3];
			int length = ss->req[4] << 8 | ss->req[5];

			/* Protocol 0 is Modbus; a request has at least a unit id
			 * and a function code. */
			if (protocol != 0 || length < 2 || 6 + length > MODBUS_TCP_MAX_ADU_LENGTH)
				return -1;
		}
	}
}

/* Whether a TCP request's unit id addresses us. On TCP "the MODBUS server
 * is addressed using its IP address; therefore, the MODBUS Unit Identifier
 * is useless. The value 0xFF has to be used." and "The value 0 is also
 * accepted to communicate directly to a MODBUS/TCP device" (MODBUS
 * Messaging on TCP/IP Implementation Guide V1.0b, 4.4.1.2); a PLC set up
 * for a serial slave sends the unit id we were given. Any other id is for
 * a device behind a gateway, which we are not: it gets no reply, as on a
 * serial line, rather than an answer from the wrong device. */
static int tcp_unit_ours(const plc_link *link, int unit)
{
	return unit == link->unit_id || unit == MODBUS_TCP_SLAVE || unit == 0;
}

/* Answers the whole request in ss; modbus_reply()'s result. */
static int session_answer(plc_link *link, struct server_session *ss)
{
	const uint8_t *pdu = ss->req + MBAP_LENGTH;
	int avail = ss->len - MBAP_LENGTH;
	int want = pdu_length(pdu, avail);
	int rc;

	modbus_set_socket(link->ctx, ss->fd);
	/* modbus_reply() trusts the length its function implies; a request
	 * that says otherwise would have it read what is not there. */
	if (want != 0 && want != avail)
		rc = reply_exception(link, ss->req, MODBUS_EXCEPTION_ILLEGAL_DATA_VALUE);
	else
		rc = server_answer(link, ss->req, ss->len);
	ss->len = 0;
	return rc;
}

/* One round of the serial line: libmodbus reads the frame (RTU frames end
 * with a silence on the line, which is its to see) and drops it, without a
 * reply, when it is for another slave address; a broadcast (address 0)
 * comes through, its reply suppressed. */
static int rtu_serve(plc_link *link)
{
	uint8_t query[MODBUS_RTU_MAX_ADU_LENGTH];
	int rc = modbus_receive(link->ctx, query);

	if (rc > 0) {
		link->last_request_us = vigil_now_us();
		if (server_answer(link, query, rc) < 0)
			modbus_flush(link->ctx);
		return 1;
	}
	/* A bad CRC or a frame cut short: libmodbus flushed it; the next
	 * frame starts clean. */
	if (rc < 0)
		modbus_flush(link->ctx);
	return 0;
}

static int server_serve(plc_link *link, int wait_ms)
{
	struct pollfd fds[PLC_SERVER_MAX_CLIENTS + 1];
	int served = 0;

	if (!link->connected)
		return PLC_ENOTCONN;
	/* At most a few rounds, so a chatty client cannot hold the PLC thread
	 * away from its deadlines. */
	for (int round = 0; round < 16; round++) {
		int64_t now;
		int nfds = 0, n;

		for (int i = 0; i < link->nsessions; i++)
			fds[nfds++] = (struct pollfd){ .fd = link->sessions[i].fd, .events = POLLIN };
		if (link->listen_fd >= 0)
			fds[nfds++] = (struct pollfd){ .fd = link->listen_fd, .events = POLLIN };
		n = poll(fds, (nfds_t)nfds, round == 0 ? wait_ms : 0);
		if (n < 0 && errno != EINTR)
			return -errno;
		now = vigil_now_us();
		/* Sessions from the last one down, so dropping one (which moves
		 * the last into its slot) does not skip another. */
		for (int i = link->nsessions - 1; i >= 0; i--) {
			struct server_session *ss = &link->sessions[i];
			int rc = 0;

			if (n > 0 && (fds[i].revents & (POLLIN | POLLERR | POLLHUP))) {
				if (link->transport == PLC_TRANSPORT_RTU) {
					served += rtu_serve(link);
					continue;
				}
				rc = session_read(ss, now);
				if (rc == 1 && !tcp_unit_ours(link, ss->req[MBAP_LENGTH - 1])) {
					ss->len = 0; /* not for us: no reply */
					rc = 0;
				} else if (rc == 1) {
					link->last_request_us = now;
					served++;
					rc = session_answer(link, ss) < 0 ? -1 : 0;
				}
			}
			/* A master that stopped in the middle of a request is
			 * not coming back to it. */
			if (rc < 0 || (ss->len > 0 && now - ss->last_byte_us > link->stall_us))
				server_drop_session(link, i);
		}
		if (n <= 0)
			break;
		if (link->listen_fd >= 0 && (fds[nfds - 1].revents & POLLIN)) {
			int fd = link->listen_fd;

			fd = modbus_tcp_accept(link->ctx, &fd);
			if (fd >= 0 && link->nsessions < PLC_SERVER_MAX_CLIENTS)
				server_add_session(link, fd);
			else if (fd >= 0)
				close(fd); /* full: the oldest sessions keep their places */
		}
	}
	return served;
}

static int server_read_trigger(plc_link *link, struct plc_trigger *t)
{
	int rc = server_serve(link, 0);

	if (rc < 0)
		return rc;
	plc_decode_trigger(link->mb->tab_registers + link->map.trigger_base, t);
	return 0;
}

/* Requests are served on this thread only, so a block written here is seen
 * whole by the next request. */
static int server_write_block(plc_link *link, int base, const uint16_t *regs, int nregs)
{
	memcpy(link->mb->tab_registers + base, regs, (size_t)nregs * sizeof *regs);
	return 0;
}

const struct plc_backend plc__server_backend = {
	.name = "server",
	.connect = server_connect,
	.close = server_close,
	.read_trigger = server_read_trigger,
	.write_block = server_write_block,
	.serve = server_serve,
};
