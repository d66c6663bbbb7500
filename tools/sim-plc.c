/* The simulated PLC: libmodbus's TCP server over a holding register mapping
 * shared, under a mutex, between the server thread and the line simulator. */
#include "tools/sim-plc.h"

#include <arpa/inet.h>
#include <errno.h>
#include <glib.h>
#include <modbus.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <string.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/part.h"

/* How long the server thread waits in select() before looking at the stop
 * flag: the bound on how long sim_plc_free takes. */
#define SIM_PLC_POLL_US 50000

struct sim_plc {
	struct plc_regmap map;
	int port;

	/* Owned by the server thread once it runs. */
	modbus_t *ctx;
	int listen_fd;
	int client_fd;

	pthread_t thread;
	int thread_started;
	atomic_bool stop;

	/* lock guards the mapping and everything below it. It is held while
	 * modbus_reply() reads or writes the mapping, so a request never sees
	 * half of a sim_plc_trigger(). */
	pthread_mutex_t lock;
	int lock_ready;
	/* Broadcast after every request served: a client may have written
	 * the status block (sim_plc_wait_trigger_seen). CLOCK_MONOTONIC. */
	pthread_cond_t served;
	int served_ready;
	modbus_mapping_t *mb;
	uint16_t last_result_counter;
	void (*on_result)(const struct plc_result *r, int64_t t_us, void *data);
	void *on_result_data;
};

static int block_end(int base, int nregs)
{
	return base + nregs;
}

static void set_err(char **err, const char *what, int e)
{
	if (err)
		*err = g_strdup_printf("simulated PLC: %s: %s", what, modbus_strerror(e));
}

/* Serves one request that modbus_receive() has read; reports and
 * acknowledges a new result block. Returns modbus_reply()'s result. */
static int serve_request(sim_plc *p, const uint8_t *query, int len)
{
	const uint16_t *res;
	struct plc_result r;
	void (*fn)(const struct plc_result *, int64_t, void *) = NULL;
	void *data = NULL;
	int fresh = 0;
	int64_t t_us;
	int rc;

	pthread_mutex_lock(&p->lock);
	rc = modbus_reply(p->ctx, query, len, p->mb);
	pthread_cond_broadcast(&p->served);
	res = p->mb->tab_registers + p->map.result_base;
	/* A new result is a new counter, not a new write: a client repeating
	 * a write it thinks was lost must not produce a second result. The
	 * write landed in the registers even if sending the reply failed, as
	 * on a real PLC. */
	if (res[PLC_RES_COUNTER] != p->last_result_counter) {
		plc_decode_result(res, &r);
		p->last_result_counter = r.counter;
		fn = p->on_result;
		data = p->on_result_data;
		fresh = 1;
	}
	pthread_mutex_unlock(&p->lock);
	if (!fresh)
		return rc;

	t_us = vigil_now_us();
	/* Called unlocked: the callback's owner may hold its own lock while
	 * calling sim_plc_trigger() from another thread. */
	if (fn)
		fn(&r, t_us, data);
	pthread_mutex_lock(&p->lock);
	p->mb->tab_registers[p->map.trigger_base + PLC_TRIG_ACK] = r.counter;
	pthread_mutex_unlock(&p->lock);
	return rc;
}

static void drop_client(sim_plc *p)
{
	if (p->client_fd < 0)
		return;
	modbus_close(p->ctx); /* closes the client socket, not the listener */
	p->client_fd = -1;
}

static void *serve(void *arg)
{
	sim_plc *p = arg;
	uint8_t query[MODBUS_TCP_MAX_ADU_LENGTH];

	while (!atomic_load(&p->stop)) {
		int fd = p->client_fd >= 0 ? p->client_fd : p->listen_fd;
		struct timeval tv = { 0, SIM_PLC_POLL_US };
		fd_set rset;
		int rc;

		FD_ZERO(&rset);
		FD_SET(fd, &rset);
		rc = select(fd + 1, &rset, NULL, NULL, &tv);
		if (rc < 0 && errno != EINTR) {
			/* Only a bug can get here (a closed descriptor); stop
			 * serving rather than spin. */
			g_warning("simulated PLC: select: %s", strerror(errno));
			break;
		}
		if (rc <= 0)
			continue;

		if (p->client_fd < 0) {
			int listen_fd = p->listen_fd;

			/* Sets the context's socket to the new client. A failed
			 * accept (client gone already) leaves us listening. */
			p->client_fd = modbus_tcp_accept(p->ctx, &listen_fd);
			continue;
		}

		/* The first byte is there, so this blocks at most the byte
		 * timeout per missing byte. Disconnects and frames libmodbus
		 * cannot parse end the session; the client may reconnect. */
		rc = modbus_receive(p->ctx, query);
		if (rc < 0) {
			drop_client(p);
			continue;
		}
		if (rc == 0)
			continue; /* not for us (libmodbus filters only on RTU) */
		if (serve_request(p, query, rc) < 0)
			drop_client(p);
	}
	drop_client(p);
	return NULL;
}

sim_plc *sim_plc_new(const char *host, int port, int unit_id, const struct plc_regmap *map,
		     char **err)
{
	struct sockaddr_in addr;
	socklen_t addr_len = sizeof addr;
	struct in_addr ip;
	pthread_condattr_t cattr;
	sim_plc *p = NULL;
	int nregs;

	if (err)
		*err = NULL;
	if (!host)
		host = "127.0.0.1";
	if (inet_pton(AF_INET, host, &ip) != 1 || port < 0 || port > 65535 || !map) {
		if (err)
			*err = g_strdup_printf("simulated PLC: invalid endpoint %s:%d", host, port);
		return NULL;
	}
	nregs = block_end(map->trigger_base, PLC_TRIG_REGS);
	nregs = MAX(nregs, block_end(map->result_base, PLC_RES_REGS));
	nregs = MAX(nregs, block_end(map->status_base, PLC_STAT_REGS));
	if (map->trigger_base < 0 || map->result_base < 0 || map->status_base < 0 ||
	    nregs > 65536) {
		if (err)
			*err = g_strdup("simulated PLC: register map out of range");
		return NULL;
	}

	p = g_new0(sim_plc, 1);
	p->map = *map;
	p->listen_fd = -1;
	p->client_fd = -1;
	atomic_init(&p->stop, false);
	if (pthread_mutex_init(&p->lock, NULL) != 0) {
		if (err)
			*err = g_strdup("simulated PLC: cannot create a mutex");
		goto fail;
	}
	p->lock_ready = 1;
	if (pthread_condattr_init(&cattr) != 0) {
		if (err)
			*err = g_strdup("simulated PLC: cannot create a condition variable");
		goto fail;
	}
	/* Waits are bounded in monotonic time, as everything else here. */
	if (pthread_condattr_setclock(&cattr, CLOCK_MONOTONIC) != 0 ||
	    pthread_cond_init(&p->served, &cattr) != 0) {
		pthread_condattr_destroy(&cattr);
		if (err)
			*err = g_strdup("simulated PLC: cannot create a condition variable");
		goto fail;
	}
	pthread_condattr_destroy(&cattr);
	p->served_ready = 1;

	p->mb = modbus_mapping_new(0, 0, nregs, 0);
	if (!p->mb) {
		set_err(err, "register mapping", errno);
		goto fail;
	}
	p->ctx = modbus_new_tcp(host, port);
	if (!p->ctx) {
		set_err(err, "modbus_new_tcp", errno);
		goto fail;
	}
	/* libmodbus sleeps one response timeout before flushing after some
	 * malformed requests, with our lock held; keep that short. */
	if (modbus_set_slave(p->ctx, unit_id) < 0 ||
	    modbus_set_response_timeout(p->ctx, 0, 50000) < 0) {
		set_err(err, "unit id", errno);
		goto fail;
	}
	p->listen_fd = modbus_tcp_listen(p->ctx, 1);
	if (p->listen_fd < 0) {
		set_err(err, "listen", errno);
		goto fail;
	}
	if (getsockname(p->listen_fd, (struct sockaddr *)&addr, &addr_len) < 0) {
		set_err(err, "getsockname", errno);
		goto fail;
	}
	p->port = ntohs(addr.sin_port);

	if (pthread_create(&p->thread, NULL, serve, p) != 0) {
		if (err)
			*err = g_strdup("simulated PLC: cannot start the server thread");
		goto fail;
	}
	p->thread_started = 1;
	return p;

fail:
	sim_plc_free(p);
	return NULL;
}

int sim_plc_port(sim_plc *p)
{
	return p->port;
}

uint16_t sim_plc_trigger(sim_plc *p, uint32_t part_id)
{
	struct plc_trigger t;
	uint16_t *regs;

	pthread_mutex_lock(&p->lock);
	regs = p->mb->tab_registers + p->map.trigger_base;
	plc_decode_trigger(regs, &t);
	t.counter = plc_counter_next(t.counter);
	t.part_id = part_id;
	plc_encode_trigger(&t, regs);
	pthread_mutex_unlock(&p->lock);
	return t.counter;
}

/* The CLOCK_MONOTONIC time timeout_us from now, for pthread_cond_timedwait. */
static struct timespec deadline(int64_t timeout_us)
{
	struct timespec until;
	int64_t end_us;

	clock_gettime(CLOCK_MONOTONIC, &until);
	end_us = (int64_t)until.tv_sec * 1000000 + until.tv_nsec / 1000 + timeout_us;
	until.tv_sec = (time_t)(end_us / 1000000);
	until.tv_nsec = (long)(end_us % 1000000) * 1000;
	return until;
}

int sim_plc_wait_trigger_seen(sim_plc *p, uint16_t counter, int64_t timeout_us)
{
	struct timespec until = deadline(timeout_us);
	int rc = 0;

	pthread_mutex_lock(&p->lock);
	while (p->mb->tab_registers[p->map.status_base + PLC_STAT_TRIGGER_SEEN] != counter) {
		if (pthread_cond_timedwait(&p->served, &p->lock, &until) == ETIMEDOUT &&
		    p->mb->tab_registers[p->map.status_base + PLC_STAT_TRIGGER_SEEN] != counter) {
			rc = -ETIMEDOUT;
			break;
		}
	}
	pthread_mutex_unlock(&p->lock);
	return rc;
}

/* Under p->lock: whether the last result taken is still up as far as
 * vigild knows (it has not taken its valid flag down). */
static int ack_unseen(const sim_plc *p)
{
	const uint16_t *res = p->mb->tab_registers + p->map.result_base;

	return p->last_result_counter && res[PLC_RES_COUNTER] == p->last_result_counter &&
	       res[PLC_RES_VALID] != 0;
}

int sim_plc_wait_ack_seen(sim_plc *p, int64_t timeout_us)
{
	struct timespec until = deadline(timeout_us);
	int rc = 0;

	/* vigild reads the ack at its next poll and then writes the block
	 * with valid 0: each request served is a chance it did. */
	pthread_mutex_lock(&p->lock);
	while (ack_unseen(p)) {
		if (pthread_cond_timedwait(&p->served, &p->lock, &until) == ETIMEDOUT &&
		    ack_unseen(p)) {
			rc = -ETIMEDOUT;
			break;
		}
	}
	pthread_mutex_unlock(&p->lock);
	return rc;
}

void sim_plc_on_result(sim_plc *p, void (*fn)(const struct plc_result *r, int64_t t_us,
					      void *data),
		       void *data)
{
	pthread_mutex_lock(&p->lock);
	p->on_result = fn;
	p->on_result_data = data;
	pthread_mutex_unlock(&p->lock);
}

uint16_t sim_plc_status_word(sim_plc *p, uint16_t *heartbeat)
{
	const uint16_t *regs;
	uint16_t word;

	pthread_mutex_lock(&p->lock);
	regs = p->mb->tab_registers + p->map.status_base;
	word = regs[PLC_STAT_WORD];
	if (heartbeat)
		*heartbeat = regs[PLC_STAT_HEARTBEAT];
	pthread_mutex_unlock(&p->lock);
	return word;
}

void sim_plc_free(sim_plc *p)
{
	if (!p)
		return;
	if (p->thread_started) {
		atomic_store(&p->stop, true);
		pthread_join(p->thread, NULL);
	}
	if (p->ctx) {
		drop_client(p);
		modbus_free(p->ctx);
	}
	if (p->listen_fd >= 0)
		close(p->listen_fd);
	modbus_mapping_free(p->mb);
	if (p->served_ready)
		pthread_cond_destroy(&p->served);
	if (p->lock_ready)
		pthread_mutex_destroy(&p->lock);
	g_free(p);
}
