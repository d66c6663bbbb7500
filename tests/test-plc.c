/* plc/plc.c: the register encoders, and the client over loopback against two
 * servers: the simulated PLC (tools/sim-plc.c, libmodbus) and a pymodbus
 * server (tests/plc_peer.py) that shares no code with us. plc-session.c:
 * the handshake on plain values, without a link. */
#include <errno.h>
#include <glib.h>
#include <glib/gstdio.h>
#include <modbus.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/part.h"
#include "plc/plc.h"
#include "tools/sim-plc.h"

#define PYTHON "/usr/bin/python3"

static const struct plc_result known_result = {
	.counter = 0x0102,
	.part_id = 0x00012345,
	.trigger_counter = 0x0304,
	.verdict = 2,
	.defect_class = 3,
	.score_milli = 875,
	.flags = 0x0025,
	.valid = 1,
	.job = 7,
};

/* Field by field: the struct has padding that copies need not preserve. */
static void assert_result_eq(const struct plc_result *a, const struct plc_result *b)
{
	g_assert_cmpuint(a->counter, ==, b->counter);
	g_assert_cmphex(a->part_id, ==, b->part_id);
	g_assert_cmpuint(a->trigger_counter, ==, b->trigger_counter);
	g_assert_cmpuint(a->verdict, ==, b->verdict);
	g_assert_cmpuint(a->defect_class, ==, b->defect_class);
	g_assert_cmpuint(a->score_milli, ==, b->score_milli);
	g_assert_cmphex(a->flags, ==, b->flags);
	g_assert_cmpuint(a->valid, ==, b->valid);
	g_assert_cmpuint(a->job, ==, b->job);
}

static void test_encode_result(void)
{
	const uint16_t want[PLC_RES_REGS] = { 0x0102, 0x0001, 0x2345, 0x0304, 2, 3, 875, 0x0025,
						1, 7 };
	uint16_t regs[PLC_RES_REGS];
	struct plc_result back;

	plc_encode_result(&known_result, regs);
	g_assert_cmpmem(regs, sizeof regs, want, sizeof want);
	plc_decode_result(regs, &back);
	assert_result_eq(&back, &known_result);

	/* High word first, including the top bit. */
	back.part_id = 0xfedcba98;
	plc_encode_result(&back, regs);
	g_assert_cmphex(regs[PLC_RES_PART_ID_HI], ==, 0xfedc);
	g_assert_cmphex(regs[PLC_RES_PART_ID_LO], ==, 0xba98);
}

static void test_encode_trigger(void)
{
	const struct plc_trigger t = { .counter = 65535, .part_id = 0x80000001, .ack = 7, .job = 4 };
	const uint16_t want[PLC_TRIG_REGS] = { 65535, 0x8000, 0x0001, 7, 4 };
	uint16_t regs[PLC_TRIG_REGS];
	struct plc_trigger back;

	plc_encode_trigger(&t, regs);
	g_assert_cmpmem(regs, sizeof regs, want, sizeof want);
	plc_decode_trigger(regs, &back);
	g_assert_cmpuint(back.counter, ==, t.counter);
	g_assert_cmphex(back.part_id, ==, t.part_id);
	g_assert_cmpuint(back.ack, ==, t.ack);
	g_assert_cmpuint(back.job, ==, t.job);
}

static void test_counter(void)
{
	uint16_t c = 0;

	g_assert_cmpuint(plc_counter_next(0), ==, 1);
	g_assert_cmpuint(plc_counter_next(1), ==, 2);
	g_assert_cmpuint(plc_counter_next(65534), ==, 65535);
	g_assert_cmpuint(plc_counter_next(65535), ==, 1);
	/* Two full laps: never 0, always +1 except at the wrap. */
	for (unsigned i = 0; i < 2u * 65535u; i++) {
		uint16_t n = plc_counter_next(c);

		g_assert_cmpuint(n, !=, 0);
		g_assert_true(n == c + 1 || (c == 65535 && n == 1));
		c = n;
	}
}

static struct plc_config config_for(int port)
{
	return (struct plc_config){
		.host = "127.0.0.1",
		.port = port,
		.unit_id = 1,
		.timeout_ms = 1000,
		.map = PLC_REGMAP_DEFAULT,
	};
}

static void test_config(void)
{
	struct plc_config cfg = config_for(1502);
	plc_link *link;

	link = plc_link_new(&cfg);
	g_assert_nonnull(link);
	g_assert_false(plc_link_connected(link));
	plc_link_free(link);
	plc_link_free(NULL);

	cfg.host = "localhost"; /* libmodbus's TCP backend takes addresses only */
	g_assert_null(plc_link_new(&cfg));
	cfg = config_for(0);
	g_assert_null(plc_link_new(&cfg));
	cfg = config_for(1502);
	cfg.timeout_ms = 0;
	g_assert_null(plc_link_new(&cfg));
	cfg = config_for(1502);
	cfg.unit_id = 248;
	g_assert_null(plc_link_new(&cfg));
	cfg = config_for(1502);
	cfg.map.result_base = 65536 - PLC_RES_REGS + 1;
	g_assert_null(plc_link_new(&cfg));
	cfg = config_for(1502);
	cfg.map.result_base = 65536 - PLC_RES_REGS;
	cfg.map.status_base = 30;
	link = plc_link_new(&cfg);
	g_assert_nonnull(link);
	plc_link_free(link);
	cfg = config_for(1502);
	cfg.map.status_base = cfg.map.result_base + PLC_RES_REGS - 1; /* overlaps */
	g_assert_null(plc_link_new(&cfg));
	cfg = config_for(1502);
	cfg.map.result_base = 2; /* overlaps the trigger block */
	g_assert_null(plc_link_new(&cfg));
}

static void test_strerror(void)
{
	g_assert_nonnull(strstr(plc_strerror(PLC_ENOTCONN), "not connected"));
	g_assert_nonnull(strstr(plc_strerror(PLC_EHANDSHAKE), "acknowledged"));
	g_assert_nonnull(strstr(plc_strerror(PLC_EMODBUS), "Modbus"));
	g_assert_cmpstr(plc_strerror(-ECONNREFUSED), ==, strerror(ECONNREFUSED));
	g_assert_cmpstr(plc_strerror(-EMBXILADD), ==, modbus_strerror(EMBXILADD));
}

/* A loopback port that nothing listens on: bound, then released. */
static int closed_port(void)
{
	struct sockaddr_in addr = { .sin_family = AF_INET };
	socklen_t len = sizeof addr;
	int s = socket(AF_INET, SOCK_STREAM, 0);

	g_assert_cmpint(s, >=, 0);
	addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	g_assert_cmpint(bind(s, (struct sockaddr *)&addr, sizeof addr), ==, 0);
	g_assert_cmpint(getsockname(s, (struct sockaddr *)&addr, &len), ==, 0);
	close(s);
	return ntohs(addr.sin_port);
}

static void test_refused(void)
{
	struct plc_config cfg = config_for(closed_port());
	plc_link *link = plc_link_new(&cfg);
	struct plc_trigger t;
	int64_t t0 = vigil_now_us();
	int rc;

	g_assert_nonnull(link);
	rc = plc_link_connect(link);
	g_assert_cmpint(rc, ==, -ECONNREFUSED);
	g_assert_cmpint(vigil_now_us() - t0, <, 2000000);
	g_assert_false(plc_link_connected(link));
	g_assert_cmpint(plc_read_trigger(link, &t), ==, PLC_ENOTCONN);
	g_assert_cmpint(plc_write_result(link, &known_result), ==, PLC_ENOTCONN);
	g_assert_cmpint(plc_write_status(link, &(struct plc_status){ .heartbeat = 1 }), ==, PLC_ENOTCONN);
	plc_link_free(link);
}

/* pthread rather than GMutex: ThreadSanitizer does not see GLib's futexes. */
struct results_seen {
	pthread_mutex_t lock;
	pthread_cond_t changed;
	unsigned n;
	struct plc_result last;
	int64_t t_us;
};

static void on_result(const struct plc_result *r, int64_t t_us, void *data)
{
	struct results_seen *seen = data;

	pthread_mutex_lock(&seen->lock);
	seen->n++;
	seen->last = *r;
	seen->t_us = t_us;
	pthread_cond_signal(&seen->changed);
	pthread_mutex_unlock(&seen->lock);
}

static unsigned wait_results(struct results_seen *seen, unsigned n)
{
	struct timespec end;
	unsigned got;

	clock_gettime(CLOCK_REALTIME, &end);
	end.tv_sec += 2;
	pthread_mutex_lock(&seen->lock);
	while (seen->n < n && pthread_cond_timedwait(&seen->changed, &seen->lock, &end) == 0)
		;
	got = seen->n;
	pthread_mutex_unlock(&seen->lock);
	return got;
}

static void test_sim_exchange(void)
{
	const struct plc_regmap map = PLC_REGMAP_DEFAULT;
	struct results_seen seen = { .lock = PTHREAD_MUTEX_INITIALIZER,
				     .changed = PTHREAD_COND_INITIALIZER };
	struct plc_config cfg;
	struct plc_result r = known_result;
	struct plc_trigger t;
	plc_link *link;
	sim_plc *sim;
	char *err = NULL;
	uint16_t hb = 0;
	int64_t t_write;

	sim = sim_plc_new("127.0.0.1", 0, 1, &map, &err);
	g_assert_null(err);
	g_assert_nonnull(sim);
	g_assert_cmpint(sim_plc_port(sim), >, 0);
	sim_plc_on_result(sim, on_result, &seen);

	cfg = config_for(sim_plc_port(sim));
	link = plc_link_new(&cfg);
	g_assert_cmpint(plc_link_connect(link), ==, 0);
	g_assert_true(plc_link_connected(link));
	g_assert_cmpint(plc_link_connect(link), ==, 0); /* already connected */

	/* No part yet. */
	g_assert_cmpint(plc_read_trigger(link, &t), ==, 0);
	g_assert_cmpuint(t.counter, ==, 0);

	/* The sim raises a trigger; the client reads it. */
	g_assert_cmpuint(sim_plc_trigger(sim, 0x00012345), ==, 1);
	g_assert_cmpint(plc_read_trigger(link, &t), ==, 0);
	g_assert_cmpuint(t.counter, ==, 1);
	g_assert_cmphex(t.part_id, ==, 0x00012345);
	g_assert_cmpuint(t.ack, ==, 0);

	/* The client writes a result; the sim reports it and acknowledges. */
	r.trigger_counter = t.counter;
	t_write = vigil_now_us();
	g_assert_cmpint(plc_write_result(link, &r), ==, 0);
	g_assert_cmpuint(wait_results(&seen, 1), ==, 1);
	pthread_mutex_lock(&seen.lock);
	assert_result_eq(&seen.last, &r);
	g_assert_cmpint(seen.t_us, >=, t_write);
	g_assert_cmpint(seen.t_us, <=, vigil_now_us());
	pthread_mutex_unlock(&seen.lock);
	/* The server thread sets ACK before it serves the next request. */
	g_assert_cmpint(plc_read_trigger(link, &t), ==, 0);
	g_assert_cmpuint(t.ack, ==, r.counter);
	g_assert_cmpuint(t.counter, ==, 1);

	/* Writing the same result again is not a new result. */
	g_assert_cmpint(plc_write_result(link, &r), ==, 0);
	r.counter = plc_counter_next(r.counter);
	r.verdict = 1;
	g_assert_cmpint(plc_write_result(link, &r), ==, 0);
	g_assert_cmpuint(wait_results(&seen, 2), ==, 2);
	g_assert_cmpuint(wait_results(&seen, 3), ==, 2);
	g_assert_cmpint(plc_read_trigger(link, &t), ==, 0);
	g_assert_cmpuint(t.ack, ==, r.counter);

	/* Status. */
	g_assert_cmpuint(sim_plc_status_word(sim, &hb), ==, 0);
	g_assert_cmpint(plc_write_status(link, &(struct plc_status){
				.heartbeat = 41, .word = PLC_STATUS_READY | PLC_STATUS_RUNNING }), ==, 0);
	g_assert_cmpuint(sim_plc_status_word(sim, &hb), ==, PLC_STATUS_READY | PLC_STATUS_RUNNING);
	g_assert_cmpuint(hb, ==, 41);
	g_assert_cmpuint(sim_plc_status_word(sim, NULL), ==, PLC_STATUS_READY | PLC_STATUS_RUNNING);

	/* The server going away is an I/O error: the link closes itself. */
	sim_plc_free(sim);
	g_assert_cmpint(plc_read_trigger(link, &t), <, 0);
	g_assert_false(plc_link_connected(link));
	g_assert_cmpint(plc_read_trigger(link, &t), ==, PLC_ENOTCONN);

	plc_link_free(link);
	sim_plc_free(NULL);
	pthread_mutex_destroy(&seen.lock);
	pthread_cond_destroy(&seen.changed);
}

/* Exceptions, garbage and reconnects: the sim answers and keeps serving. */
static void test_sim_robust(void)
{
	const struct plc_regmap map = { 100, 110, 120 };
	struct plc_config cfg;
	struct plc_trigger t;
	plc_link *link, *outside;
	modbus_t *raw;
	uint16_t regs[4];
	uint8_t bits[4];
	sim_plc *sim;
	int64_t t0;
	int s;

	sim = sim_plc_new(NULL, 0, 1, &map, NULL);
	g_assert_nonnull(sim);
	cfg = config_for(sim_plc_port(sim));
	cfg.map = map;
	link = plc_link_new(&cfg);
	g_assert_cmpint(plc_link_connect(link), ==, 0);
	sim_plc_trigger(sim, 77);
	g_assert_cmpint(plc_read_trigger(link, &t), ==, 0);
	g_assert_cmpuint(t.part_id, ==, 77);
	plc_link_free(link);

	/* Registers outside the mapping: an exception reply, which leaves the
	 * link up. The sim accepts this second client after the first left. */
	cfg.map.trigger_base = 200;
	cfg.map.result_base = 65536 - PLC_RES_REGS;
	outside = plc_link_new(&cfg);
	g_assert_cmpint(plc_link_connect(outside), ==, 0);
	g_assert_cmpint(plc_read_trigger(outside, &t), ==, PLC_EMODBUS);
	g_assert_true(plc_link_connected(outside));
	g_assert_cmpint(plc_write_result(outside, &known_result), ==, PLC_EMODBUS);
	g_assert_true(plc_link_connected(outside));
	plc_link_free(outside);

	/* Other function codes on the same connection. */
	raw = modbus_new_tcp("127.0.0.1", sim_plc_port(sim));
	g_assert_nonnull(raw);
	g_assert_cmpint(modbus_connect(raw), ==, 0);
	errno = 0;
	g_assert_cmpint(modbus_read_bits(raw, 0, 4, bits), ==, -1);
	g_assert_cmpint(errno, ==, EMBXILADD);
	g_assert_cmpint(modbus_read_registers(raw, 0, 0, regs), ==, -1); /* zero count */
	g_assert_cmpint(modbus_read_registers(raw, 100, 4, regs), ==, 4);
	g_assert_cmpuint(regs[PLC_TRIG_PART_ID_LO], ==, 77);
	modbus_close(raw);
	modbus_free(raw);

	/* Bytes that are not Modbus, then a client that stalls mid-frame. */
	for (int i = 0; i < 2; i++) {
		static const char junk[] = "GET / HTTP/1.0\r\n\r\n\xff\xff\xff\xff";
		struct sockaddr_in addr = { .sin_family = AF_INET };

		addr.sin_port = htons((uint16_t)sim_plc_port(sim));
		addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		s = socket(AF_INET, SOCK_STREAM, 0);
		g_assert_cmpint(connect(s, (struct sockaddr *)&addr, sizeof addr), ==, 0);
		g_assert_cmpint(send(s, junk, i == 0 ? sizeof junk - 1 : 3, MSG_NOSIGNAL), >, 0);
		g_usleep(i == 0 ? 100000 : 700000);
		close(s);
	}

	link = plc_link_new(&(struct plc_config){ .host = "127.0.0.1",
						  .port = sim_plc_port(sim),
						  .unit_id = 1,
						  .timeout_ms = 1000,
						  .map = map });
	g_assert_cmpint(plc_link_connect(link), ==, 0);
	g_assert_cmpint(plc_read_trigger(link, &t), ==, 0);
	g_assert_cmpuint(t.part_id, ==, 77);

	/* sim_plc_free stops promptly with a client still connected. */
	t0 = vigil_now_us();
	sim_plc_free(sim);
	g_assert_cmpint(vigil_now_us() - t0, <, 1000000);
	plc_link_free(link);
}

/* ---- The pymodbus peer ---- */

struct peer {
	GPid pid;
	int out_fd;
	GString *buf;
};

/* One line of the peer's stdout without its newline (caller frees), or NULL
 * on EOF or after timeout_ms. */
static char *peer_read_line(struct peer *pp, int timeout_ms)
{
	int64_t end = g_get_monotonic_time() + (int64_t)timeout_ms * 1000;

	for (;;) {
		char *nl = memchr(pp->buf->str, '\n', pp->buf->len);
		struct pollfd pfd = { .fd = pp->out_fd, .events = POLLIN };
		int64_t left = end - g_get_monotonic_time();
		char chunk[512];
		ssize_t n;

		if (nl) {
			char *line = g_strndup(pp->buf->str, (gsize)(nl - pp->buf->str));

			g_string_erase(pp->buf, 0, nl - pp->buf->str + 1);
			return line;
		}
		if (left <= 0 || poll(&pfd, 1, (int)(left / 1000) + 1) <= 0)
			return NULL;
		n = read(pp->out_fd, chunk, sizeof chunk);
		if (n <= 0)
			return NULL;
		g_string_append_len(pp->buf, chunk, n);
	}
}

static gboolean python_has_pymodbus(void)
{
	char *argv[] = { PYTHON, "-c", "import pymodbus.server.async_io, pymodbus.datastore",
			 NULL };
	int status = 0;

	if (!g_file_test(PYTHON, G_FILE_TEST_IS_EXECUTABLE))
		return FALSE;
	if (!g_spawn_sync(NULL, argv, NULL, G_SPAWN_STDOUT_TO_DEV_NULL | G_SPAWN_STDERR_TO_DEV_NULL,
			  NULL, NULL, NULL, NULL, &status, NULL))
		return FALSE;
	return g_spawn_check_wait_status(status, NULL);
}

static void test_pymodbus_peer(void)
{
	const char *root = g_getenv("VIGIL_SOURCE_ROOT");
	struct plc_config cfg;
	struct peer pp = { 0 };
	struct plc_result r = known_result;
	struct plc_trigger t;
	GPtrArray *lines = g_ptr_array_new_with_free_func(g_free);
	GError *gerr = NULL;
	plc_link *link;
	char *script, *line;
	int port = 0, status = 0;

	if (!python_has_pymodbus()) {
		g_test_skip(PYTHON " cannot import pymodbus (apt install python3-pymodbus)");
		g_ptr_array_unref(lines);
		return;
	}
	g_assert_nonnull(root); /* set by tests/meson.build */
	script = g_build_filename(root, "tests", "plc_peer.py", NULL);
	{
		char *argv[] = { PYTHON, script, "--trigger-base", "100", "--counter", "7",
				 "--part-id", "0x00abcdef", "--ack", "6", "--writes", "2",
				 "--timeout", "20", NULL };

		g_assert_true(g_spawn_async_with_pipes(NULL, argv, NULL, G_SPAWN_DO_NOT_REAP_CHILD,
						       NULL, NULL, &pp.pid, NULL, &pp.out_fd, NULL,
						       &gerr));
	}
	g_assert_no_error(gerr);
	pp.buf = g_string_new(NULL);

	line = peer_read_line(&pp, 15000);
	g_assert_nonnull(line);
	g_assert_true(sscanf(line, "PORT %d", &port) == 1);
	g_free(line);

	cfg = config_for(port);
	cfg.map = (struct plc_regmap){ 100, 200, 300 };
	link = plc_link_new(&cfg);
	g_assert_cmpint(plc_link_connect(link), ==, 0);
	g_assert_cmpint(plc_read_trigger(link, &t), ==, 0);
	g_assert_cmpuint(t.counter, ==, 7);
	g_assert_cmphex(t.part_id, ==, 0x00abcdef);
	g_assert_cmpuint(t.ack, ==, 6);
	r.counter = 7;
	r.part_id = t.part_id;
	r.trigger_counter = t.counter;
	g_assert_cmpint(plc_write_result(link, &r), ==, 0);
	g_assert_cmpint(plc_write_status(link, &(struct plc_status){
				.heartbeat = 1, .word = PLC_STATUS_READY | PLC_STATUS_DB_OK,
				.error = 5, .job = 3, .trigger_seen = 7, .buffered = 2,
				.capacity = 32, .overruns = 1 }), ==, 0);

	while ((line = peer_read_line(&pp, 15000))) {
		g_ptr_array_add(lines, line);
		if (!strcmp(line, "DONE") || !strcmp(line, "TIMEOUT"))
			break;
	}
	plc_link_free(link);
	/* Every request, as the peer saw it: one read of the trigger block,
	 * one function 16 write per block, part id high word first. */
	g_assert_cmpuint(lines->len, ==, 4);
	g_assert_cmpstr(lines->pdata[0], ==,
			"READ fc=3 addr=100 count=5 values=0x0007,0x00ab,0xcdef,0x0006,0x0000");
	g_assert_cmpstr(lines->pdata[1], ==,
			"WRITE fc=16 addr=200 count=10 values=0x0007,0x00ab,0xcdef,0x0007,0x0002,"
			"0x0003,0x036b,0x0025,0x0001,0x0007");
	g_assert_cmpstr(lines->pdata[2], ==,
			"WRITE fc=16 addr=300 count=9 values=0x0001,0x0041,0x0005,0x0003,"
			"0x0007,0x0002,0x0020,0x0001,0x0003");
	g_assert_cmpstr(lines->pdata[3], ==, "DONE");

	g_assert_cmpint(waitpid(pp.pid, &status, 0), ==, pp.pid);
	g_assert_true(g_spawn_check_wait_status(status, NULL));
	g_spawn_close_pid(pp.pid);
	close(pp.out_fd);
	g_string_free(pp.buf, TRUE);
	g_ptr_array_unref(lines);
	g_free(script);
}


/* ---- The server role: vigild's registers, polled by a libmodbus master ---- */

struct server_run {
	plc_link *link;
	GThread *thread;
	volatile int stop;
};

static gpointer server_loop(gpointer data)
{
	struct server_run *sr = data;

	while (!sr->stop)
		plc_serve(sr->link, 10);
	return NULL;
}

/* vigild's side: a server link holding known_result and st, served on a
 * thread as the PLC thread would. */
static void server_start(struct server_run *sr, const struct plc_config *cfg,
			 const struct plc_status *st)
{
	*sr = (struct server_run){ .link = plc_link_new(cfg) };
	g_assert_nonnull(sr->link);
	g_assert_cmpint(plc_link_role(sr->link), ==, PLC_ROLE_SERVER);
	g_assert_cmpint(plc_link_connect(sr->link), ==, 0);
	g_assert_true(plc_link_connected(sr->link));
	g_assert_cmpint(plc_link_last_request_us(sr->link), ==, 0);
	g_assert_cmpint(plc_write_result(sr->link, &known_result), ==, 0);
	g_assert_cmpint(plc_write_status(sr->link, st), ==, 0);
	sr->thread = g_thread_new("server", server_loop, sr);
}

/* Stops serving; the link stays for the test to look at. */
static void server_stop(struct server_run *sr)
{
	sr->stop = 1;
	g_thread_join(sr->thread);
}

/* Stops serving and checks the trigger block the master left: what vigild
 * reads next from its own registers. The link is freed. */
static void server_stop_expect(struct server_run *sr, uint16_t counter, uint32_t part_id,
			       uint16_t ack, uint16_t job)
{
	struct plc_trigger t;

	server_stop(sr);
	g_assert_cmpint(plc_read_trigger(sr->link, &t), ==, 0);
	g_assert_cmpuint(t.counter, ==, counter);
	g_assert_cmphex(t.part_id, ==, part_id);
	g_assert_cmpuint(t.ack, ==, ack);
	g_assert_cmpuint(t.job, ==, job);
	plc_link_free(sr->link);
}

/* The PLC's side, a libmodbus master, connected. */
static modbus_t *master_tcp(int port)
{
	modbus_t *mb = modbus_new_tcp("127.0.0.1", port);

	g_assert_nonnull(mb);
	modbus_set_response_timeout(mb, 2, 0);
	g_assert_cmpint(modbus_connect(mb), ==, 0);
	return mb;
}

/* A plain TCP connection to a loopback port. */
static int raw_connect(int port)
{
	struct sockaddr_in addr = { .sin_family = AF_INET };
	int s = socket(AF_INET, SOCK_STREAM, 0);

	addr.sin_port = htons((uint16_t)port);
	addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	g_assert_cmpint(s, >=, 0);
	g_assert_cmpint(connect(s, (struct sockaddr *)&addr, sizeof addr), ==, 0);
	return s;
}

/* Reads exactly n bytes within 5 s; the count read (less: closed or late). */
static int read_full(int s, uint8_t *buf, int n)
{
	int got = 0;

	while (got < n) {
		struct pollfd pfd = { .fd = s, .events = POLLIN };
		ssize_t r;

		if (poll(&pfd, 1, 5000) <= 0)
			break;
		r = read(s, buf + got, (size_t)(n - got)); /* a socket or a tty */
		if (r <= 0)
			break;
		got += (int)r;
	}
	return got;
}

/* Sends a raw request (unit id + PDU) and returns the exception code of the
 * reply, 0 for a normal reply, -1 for no reply. */
static int raw_exception(modbus_t *mb, const uint8_t *req, int len)
{
	uint8_t rsp[MODBUS_TCP_MAX_ADU_LENGTH];
	int rc;

	if (modbus_send_raw_request(mb, (uint8_t *)req, len) < 0)
		return -1;
	rc = modbus_receive_confirmation(mb, rsp);
	if (rc < 0)
		return -1;
	/* MBAP (7) + function + exception code */
	return (rsp[7] & 0x80) ? rsp[8] : 0;
}

static struct plc_config server_config(void)
{
	return (struct plc_config){ .role = PLC_ROLE_SERVER, .host = "127.0.0.1",
				    .port = closed_port(), .unit_id = 1, .timeout_ms = 500,
				    .map = PLC_REGMAP_DEFAULT };
}

static void test_server(void)
{
	const struct plc_regmap map = PLC_REGMAP_DEFAULT;
	struct plc_config cfg = server_config();
	struct server_run sr;
	struct plc_result r;
	uint16_t regs[PLC_RES_REGS], trig[PLC_TRIG_REGS] = { 1, 0x0001, 0x0002, 0, 3 };
	uint16_t sregs[PLC_STAT_REGS];
	modbus_t *mb;

	server_start(&sr, &cfg, &(struct plc_status){ .heartbeat = 9, .word = PLC_STATUS_READY,
						       .capacity = 32 });
	mb = master_tcp(cfg.port);
	g_assert_cmpint(modbus_read_registers(mb, map.result_base, PLC_RES_REGS, regs), ==,
			PLC_RES_REGS);
	plc_decode_result(regs, &r);
	assert_result_eq(&r, &known_result);
	g_assert_cmpint(modbus_read_registers(mb, map.status_base, PLC_STAT_REGS, sregs), ==,
			PLC_STAT_REGS);
	g_assert_cmpuint(sregs[PLC_STAT_HEARTBEAT], ==, 9);
	g_assert_cmpuint(sregs[PLC_STAT_CAPACITY], ==, 32);
	g_assert_cmpuint(sregs[PLC_STAT_MAP_VERSION], ==, PLC_MAP_VERSION);
	/* The PLC writes the trigger block, whole or one register. */
	g_assert_cmpint(modbus_write_registers(mb, map.trigger_base, PLC_TRIG_REGS, trig), ==,
			PLC_TRIG_REGS);
	g_assert_cmpint(modbus_write_register(mb, map.trigger_base + PLC_TRIG_ACK, 0x0102), ==, 1);

	/* Malformed requests: exception replies, and the session goes on. */
	errno = 0;
	g_assert_cmpint(modbus_write_register(mb, map.result_base + PLC_RES_VERDICT, 1), ==, -1);
	g_assert_cmpint(errno, ==, EMBXILADD); /* a forged verdict */
	g_assert_cmpint(modbus_write_registers(mb, map.trigger_base + 3, 4, trig), ==, -1);
	g_assert_cmpint(errno, ==, EMBXILADD); /* runs past the trigger block */
	g_assert_cmpint(modbus_read_registers(mb, 60000, 2, regs), ==, -1);
	g_assert_cmpint(errno, ==, EMBXILADD);
	g_assert_cmpint(modbus_read_registers(mb, 0, 0, regs), ==, -1);
	g_assert_cmpint(errno, ==, EMBXILVAL);
	/* Holding registers only (docs/plc.md): the other tables' functions
	 * are unsupported (01), not an address out of range (02). */
	{
		uint8_t bits[8] = { 0 };

		g_assert_cmpint(modbus_read_bits(mb, 0, 2, bits), ==, -1);
		g_assert_cmpint(errno, ==, EMBXILFUN);
		g_assert_cmpint(modbus_read_input_bits(mb, 0, 2, bits), ==, -1);
		g_assert_cmpint(errno, ==, EMBXILFUN);
		g_assert_cmpint(modbus_read_input_registers(mb, 0, 2, regs), ==, -1);
		g_assert_cmpint(errno, ==, EMBXILFUN);
		g_assert_cmpint(modbus_write_bit(mb, 0, 1), ==, -1);
		g_assert_cmpint(errno, ==, EMBXILFUN);
		g_assert_cmpint(modbus_write_bits(mb, 0, 8, bits), ==, -1);
		g_assert_cmpint(errno, ==, EMBXILFUN);
	}
	{
		const uint8_t diag[] = { 1, 0x08, 0, 0, 0x12, 0x34 };      /* diagnostics */
		const uint8_t unknown[] = { 1, 0x41, 0, 0 };              /* no such function */
		const uint8_t slave_id[] = { 1, 0x11 };                   /* report slave id */
		/* FC16, 2 registers, but a byte count of 3 */
		const uint8_t badlen[] = { 1, 0x10, 0, 0, 0, 2, 3, 0, 1, 0 };

		g_assert_cmpint(raw_exception(mb, diag, sizeof diag), ==, MODBUS_EXCEPTION_ILLEGAL_FUNCTION);
		g_assert_cmpint(raw_exception(mb, unknown, sizeof unknown), ==,
				MODBUS_EXCEPTION_ILLEGAL_FUNCTION);
		g_assert_cmpint(raw_exception(mb, slave_id, sizeof slave_id), ==,
				MODBUS_EXCEPTION_ILLEGAL_FUNCTION);
		g_assert_cmpint(raw_exception(mb, badlen, sizeof badlen), ==,
				MODBUS_EXCEPTION_ILLEGAL_DATA_VALUE);
	}
	g_assert_cmpint(modbus_read_registers(mb, map.trigger_base, PLC_TRIG_REGS, trig), ==,
			PLC_TRIG_REGS);
	g_assert_cmpuint(trig[PLC_TRIG_ACK], ==, 0x0102);
	modbus_close(mb);

	/* Bytes that are not Modbus, and a client that stalls mid-frame: the
	 * server drops them and serves the next master. */
	for (int i = 0; i < 2; i++) {
		static const char junk[] = "GET / HTTP/1.0\r\n\r\n\xff\xff\xff\xff";
		int s = raw_connect(cfg.port);

		g_assert_cmpint(send(s, junk, i == 0 ? sizeof junk - 1 : 3, MSG_NOSIGNAL), >, 0);
		g_usleep(200000);
		close(s);
	}
	g_assert_cmpint(modbus_connect(mb), ==, 0);
	g_assert_cmpint(modbus_read_registers(mb, map.trigger_base, PLC_TRIG_REGS, trig), ==,
			PLC_TRIG_REGS);
	modbus_close(mb);
	modbus_free(mb);

	g_assert_cmpint(plc_link_last_request_us(sr.link), >, 0);
	server_stop_expect(&sr, 1, 0x00010002, 0x0102, 3);

	/* Bad server configurations. */
	cfg.transport = PLC_TRANSPORT_RTU;
	g_assert_null(plc_link_new(&cfg)); /* no device */
	cfg.device = "/dev/null";
	cfg.unit_id = 0;
	g_assert_null(plc_link_new(&cfg)); /* broadcast address as our unit */
}

/* Sends one raw Modbus TCP request (transaction tid, unit, PDU) on s. */
static void raw_send(int s, uint16_t tid, uint8_t unit, const uint8_t *pdu, int n)
{
	uint8_t req[MODBUS_TCP_MAX_ADU_LENGTH];

	req[0] = (uint8_t)(tid >> 8);
	req[1] = (uint8_t)tid;
	req[2] = req[3] = 0;
	req[4] = (uint8_t)((n + 1) >> 8);
	req[5] = (uint8_t)(n + 1);
	req[6] = unit;
	memcpy(req + 7, pdu, (size_t)n);
	g_assert_cmpint(send(s, req, (size_t)n + 7, MSG_NOSIGNAL), ==, n + 7);
}

/* Which requests the server answers, and how: the function byte of an
 * exception reply, and the unit ids it takes as its own on TCP. */
static void test_server_addressing(void)
{
	const struct plc_regmap map = PLC_REGMAP_DEFAULT;
	struct plc_config cfg = server_config();
	struct server_run sr;
	const uint8_t read_status[] = { MODBUS_FC_READ_HOLDING_REGISTERS, 0, (uint8_t)map.status_base,
					0, PLC_STAT_REGS };
	/* Function codes 128-255 are exception responses, not requests. */
	const uint8_t exc_fc[] = { 0x83, 0, (uint8_t)map.status_base, 0, PLC_STAT_REGS };
	uint8_t rsp[9 + 2 * PLC_STAT_REGS];
	int s;

	cfg.unit_id = 7;
	server_start(&sr, &cfg, &(struct plc_status){ .heartbeat = 6, .word = PLC_STATUS_READY });
	s = raw_connect(cfg.port);
	/* 0x83 is refused as an illegal function; the reply's function byte
	 * keeps the high bit (not 0x03, a good reply to a read). */
	raw_send(s, 0x0101, 7, exc_fc, sizeof exc_fc);
	g_assert_cmpint(read_full(s, rsp, 9), ==, 9);
	g_assert_cmphex(rsp[0] << 8 | rsp[1], ==, 0x0101);
	g_assert_cmpuint(rsp[5], ==, 3);
	g_assert_cmphex(rsp[7], ==, 0x83);
	g_assert_cmpuint(rsp[8], ==, MODBUS_EXCEPTION_ILLEGAL_FUNCTION);
	/* Our unit id, 255 and 0 are answered, each with its own unit id. */
	for (int i = 0; i < 3; i++) {
		const uint8_t unit[] = { 7, MODBUS_TCP_SLAVE, 0 };

		raw_send(s, (uint16_t)(0x0200 + i), unit[i], read_status, sizeof read_status);
		g_assert_cmpint(read_full(s, rsp, sizeof rsp), ==, (int)sizeof rsp);
		g_assert_cmphex(rsp[0] << 8 | rsp[1], ==, 0x0200 + i);
		g_assert_cmpuint(rsp[6], ==, unit[i]);
		g_assert_cmpuint(rsp[7], ==, MODBUS_FC_READ_HOLDING_REGISTERS);
		g_assert_cmpuint(rsp[9 + 2 * PLC_STAT_HEARTBEAT + 1], ==, 6);
	}
	/* Another unit id gets no reply: the next reply on the connection is
	 * the one to the request after it. A write to another unit is not
	 * done either. */
	{
		const uint8_t write_ack[] = { MODBUS_FC_WRITE_SINGLE_REGISTER, 0,
					      (uint8_t)(map.trigger_base + PLC_TRIG_ACK), 0x12, 0x34 };
		const uint8_t read_ack[] = { MODBUS_FC_READ_HOLDING_REGISTERS, 0,
					     (uint8_t)(map.trigger_base + PLC_TRIG_ACK), 0, 1 };

		raw_send(s, 0x0301, 1, read_status, sizeof read_status);
		raw_send(s, 0x0302, 8, write_ack, sizeof write_ack);
		raw_send(s, 0x0303, 7, read_ack, sizeof read_ack);
		g_assert_cmpint(read_full(s, rsp, 11), ==, 11);
		g_assert_cmphex(rsp[0] << 8 | rsp[1], ==, 0x0303);
		g_assert_cmpuint(rsp[9] << 8 | rsp[10], ==, 0);
	}
	close(s);
	server_stop_expect(&sr, 0, 0, 0, 0);
}

/* A write long enough to pass the trigger block must be refused where the
 * map leaves room for it behind the trigger block (a gap before the status
 * block), whatever its quantity: 123 registers is function 16's most, past
 * function 23's 121. */
static void test_server_long_write(void)
{
	struct plc_config cfg = server_config();
	struct server_run sr;
	uint16_t many[MODBUS_MAX_WRITE_REGISTERS], regs[PLC_RES_REGS];
	struct plc_result r;
	modbus_t *mb;

	cfg.map.status_base = 200;
	for (int i = 0; i < MODBUS_MAX_WRITE_REGISTERS; i++)
		many[i] = 0x5555;
	server_start(&sr, &cfg, &(struct plc_status){ .heartbeat = 1 });
	mb = master_tcp(cfg.port);
	for (int nb = PLC_TRIG_REGS + 1; nb <= MODBUS_MAX_WRITE_REGISTERS; nb++) {
		errno = 0;
		g_assert_cmpint(modbus_write_registers(mb, cfg.map.trigger_base, nb, many), ==, -1);
		g_assert_cmpint(errno, ==, EMBXILADD);
	}
	g_assert_cmpint(modbus_read_registers(mb, cfg.map.result_base, PLC_RES_REGS, regs), ==,
			PLC_RES_REGS);
	plc_decode_result(regs, &r);
	assert_result_eq(&r, &known_result);
	modbus_close(mb);
	modbus_free(mb);
	server_stop_expect(&sr, 0, 0, 0, 0);
}

/* A master that sends its request slowly, or stops halfway, holds only its
 * own session: the PLC's requests are answered meanwhile, the slow request
 * too once it is whole, and a stalled one ends its session after the
 * link's timeout_ms. */
static void test_server_slow_master(void)
{
	const struct plc_regmap map = PLC_REGMAP_DEFAULT;
	struct plc_config cfg = server_config();
	struct server_run sr;
	/* Read the status block, transaction 0x0102. */
	const uint8_t req[] = { 0x01, 0x02, 0, 0, 0, 6, 1, MODBUS_FC_READ_HOLDING_REGISTERS, 0,
				(uint8_t)map.status_base, 0, PLC_STAT_REGS };
	uint8_t rsp[9 + 2 * PLC_STAT_REGS];
	uint16_t regs[PLC_TRIG_REGS], trig[PLC_TRIG_REGS] = { 4, 0, 44, 0, 0 };
	struct plc_trigger t;
	modbus_t *mb;
	int slow, stalled;

	server_start(&sr, &cfg, &(struct plc_status){ .heartbeat = 5, .word = PLC_STATUS_READY });
	mb = master_tcp(cfg.port);
	slow = raw_connect(cfg.port);
	stalled = raw_connect(cfg.port);
	/* The first bytes of both, then the PLC's own requests. */
	for (size_t i = 0; i < 8; i++) {
		g_assert_cmpint(send(slow, req + i, 1, MSG_NOSIGNAL), ==, 1);
		g_usleep(20000);
	}
	g_assert_cmpint(send(stalled, req, 5, MSG_NOSIGNAL), ==, 5);
	g_assert_cmpint(modbus_write_registers(mb, map.trigger_base, PLC_TRIG_REGS, trig), ==,
			PLC_TRIG_REGS);
	g_assert_cmpint(modbus_read_registers(mb, map.trigger_base, PLC_TRIG_REGS, regs), ==,
			PLC_TRIG_REGS);
	g_assert_cmpuint(regs[PLC_TRIG_PART_ID_LO], ==, 44);
	/* The rest of the slow request: its answer, whole. */
	g_assert_cmpint(send(slow, req + 8, sizeof req - 8, MSG_NOSIGNAL), ==, (int)(sizeof req - 8));
	g_assert_cmpint(read_full(slow, rsp, sizeof rsp), ==, (int)sizeof rsp);
	g_assert_cmphex(rsp[0] << 8 | rsp[1], ==, 0x0102);
	g_assert_cmpuint(rsp[7], ==, MODBUS_FC_READ_HOLDING_REGISTERS);
	g_assert_cmpuint(rsp[8], ==, 2 * PLC_STAT_REGS);
	g_assert_cmpuint(rsp[9 + 2 * PLC_STAT_HEARTBEAT + 1], ==, 5);
	/* The stalled one: closed once it has been silent for timeout_ms. */
	g_assert_cmpint(read_full(stalled, rsp, 1), ==, 0);
	close(slow);
	close(stalled);

	/* A length that disagrees with the function (two bytes too many):
	 * exception 03, and the session goes on. */
	{
		const uint8_t longer[] = { 0, 9, 0, 0, 0, 8, 1, MODBUS_FC_READ_HOLDING_REGISTERS, 0,
					   0, 0, 1, 0xaa, 0xbb };
		int s = raw_connect(cfg.port);

		g_assert_cmpint(send(s, longer, sizeof longer, MSG_NOSIGNAL), ==, (int)sizeof longer);
		g_assert_cmpint(read_full(s, rsp, 9), ==, 9);
		g_assert_cmpuint(rsp[7], ==, 0x80 | MODBUS_FC_READ_HOLDING_REGISTERS);
		g_assert_cmpuint(rsp[8], ==, MODBUS_EXCEPTION_ILLEGAL_DATA_VALUE);
		g_assert_cmpint(send(s, req, sizeof req, MSG_NOSIGNAL), ==, (int)sizeof req);
		g_assert_cmpint(read_full(s, rsp, sizeof rsp), ==, (int)sizeof rsp);
		g_assert_cmpuint(rsp[7], ==, MODBUS_FC_READ_HOLDING_REGISTERS);
		close(s);
	}
	modbus_close(mb);
	modbus_free(mb);
	server_stop(&sr);
	g_assert_cmpint(plc_read_trigger(sr.link, &t), ==, 0);
	g_assert_cmpuint(t.counter, ==, 4);
	plc_link_free(sr.link);
}

/* ---- Modbus RTU over a socat pseudo-terminal pair ---- */

struct pty_pair {
	GPid socat;
	char *dir, *a, *b;
};

/* socat ends with the test, even when an assertion aborts it. */
static void socat_setup(gpointer data)
{
	(void)data;
	prctl(PR_SET_PDEATHSIG, SIGTERM);
}

/* Starts socat with two linked pseudo-terminals; FALSE (test skipped) when
 * socat is missing. */
static gboolean pty_pair_open(struct pty_pair *pp)
{
	char *socat = g_find_program_in_path("socat");
	char *la, *lb;
	GError *gerr = NULL;
	int64_t end;

	if (!socat) {
		g_test_skip("socat is not installed (apt install socat)");
		return FALSE;
	}
	pp->dir = g_dir_make_tmp("vigil-rtu-XXXXXX", &gerr);
	g_assert_no_error(gerr);
	pp->a = g_build_filename(pp->dir, "vigild", NULL);
	pp->b = g_build_filename(pp->dir, "plc", NULL);
	la = g_strdup_printf("pty,raw,echo=0,link=%s", pp->a);
	lb = g_strdup_printf("pty,raw,echo=0,link=%s", pp->b);
	{
		char *argv[] = { socat, la, lb, NULL };

		g_assert_true(g_spawn_async(NULL, argv, NULL,
					    G_SPAWN_DO_NOT_REAP_CHILD | G_SPAWN_STDOUT_TO_DEV_NULL |
						    G_SPAWN_STDERR_TO_DEV_NULL,
					    socat_setup, NULL, &pp->socat, &gerr));
		g_assert_no_error(gerr);
	}
	end = g_get_monotonic_time() + 10 * G_USEC_PER_SEC;
	while (!(g_file_test(pp->a, G_FILE_TEST_EXISTS) && g_file_test(pp->b, G_FILE_TEST_EXISTS)))
	{
		g_assert_cmpint(g_get_monotonic_time(), <, end);
		g_usleep(10000);
	}
	g_free(la);
	g_free(lb);
	g_free(socat);
	return TRUE;
}

static void pty_pair_close(struct pty_pair *pp)
{
	int status;

	kill(pp->socat, SIGTERM);
	waitpid(pp->socat, &status, 0);
	g_spawn_close_pid(pp->socat);
	g_remove(pp->a);
	g_remove(pp->b);
	g_rmdir(pp->dir);
	g_free(pp->a);
	g_free(pp->b);
	g_free(pp->dir);
}

static struct plc_config rtu_config(enum plc_role role, const char *device)
{
	return (struct plc_config){ .role = role, .transport = PLC_TRANSPORT_RTU,
				    .device = device, .baud = 115200, .parity = 'E',
				    .stop_bits = 1, .unit_id = 7, .timeout_ms = 1000,
				    .map = PLC_REGMAP_DEFAULT };
}

/* The PLC's end of the line, as rtu_config's peer: unit 7 at 115200 8E1. */
static modbus_t *rtu_peer(const char *device)
{
	modbus_t *mb = modbus_new_rtu(device, 115200, 'E', 8, 1);

	g_assert_nonnull(mb);
	g_assert_cmpint(modbus_set_slave(mb, 7), ==, 0);
	modbus_set_response_timeout(mb, 2, 0);
	g_assert_cmpint(modbus_connect(mb), ==, 0);
	return mb;
}

/* Server role on one end; a libmodbus RTU master (the PLC) on the other. */
static void test_rtu_server(void)
{
	const struct plc_regmap map = PLC_REGMAP_DEFAULT;
	struct pty_pair pp;
	struct plc_config cfg;
	struct server_run sr;
	struct plc_result r;
	uint16_t regs[PLC_RES_REGS], trig[PLC_TRIG_REGS] = { 5, 0x0001, 0x0203, 0, 2 };
	uint16_t sregs[PLC_STAT_REGS];
	modbus_t *mb;

	if (!pty_pair_open(&pp))
		return;
	cfg = rtu_config(PLC_ROLE_SERVER, pp.a);
	server_start(&sr, &cfg, &(struct plc_status){ .heartbeat = 3, .word = PLC_STATUS_READY });
	mb = rtu_peer(pp.b);
	g_assert_cmpint(modbus_read_registers(mb, map.result_base, PLC_RES_REGS, regs), ==,
			PLC_RES_REGS);
	plc_decode_result(regs, &r);
	assert_result_eq(&r, &known_result);
	g_assert_cmpint(modbus_read_registers(mb, map.status_base, PLC_STAT_REGS, sregs), ==,
			PLC_STAT_REGS);
	g_assert_cmpuint(sregs[PLC_STAT_HEARTBEAT], ==, 3);
	g_assert_cmpuint(sregs[PLC_STAT_MAP_VERSION], ==, PLC_MAP_VERSION);
	g_assert_cmpint(modbus_write_registers(mb, map.trigger_base, PLC_TRIG_REGS, trig), ==,
			PLC_TRIG_REGS);
	/* A forged verdict: exception 02, and the line stays in step. */
	errno = 0;
	g_assert_cmpint(modbus_write_register(mb, map.result_base + PLC_RES_VERDICT, 1), ==, -1);
	g_assert_cmpint(errno, ==, EMBXILADD);
	/* An unknown function: exception 01. A frame with a broken CRC: no
	 * answer (the master times out), and the next frame is served. */
	{
		const uint8_t unknown[] = { 7, 0x41 }; /* libmodbus frames it with no data */
		const uint8_t bad_crc[] = { 7, MODBUS_FC_READ_HOLDING_REGISTERS, 0, 0, 0, 1, 0xde,
					    0xad };
		uint8_t rsp[MODBUS_RTU_MAX_ADU_LENGTH];

		g_assert_cmpint(modbus_send_raw_request(mb, (uint8_t *)unknown, sizeof unknown), >, 0);
		g_assert_cmpint(modbus_receive_confirmation(mb, rsp), ==, 5);
		g_assert_cmpuint(rsp[1], ==, 0x80 | 0x41);
		g_assert_cmpuint(rsp[2], ==, MODBUS_EXCEPTION_ILLEGAL_FUNCTION);
		g_assert_cmpint(write(modbus_get_socket(mb), bad_crc, sizeof bad_crc), ==,
				(ssize_t)sizeof bad_crc);
		modbus_set_response_timeout(mb, 0, 300000);
		g_assert_cmpint(modbus_receive_confirmation(mb, rsp), ==, -1);
		modbus_set_response_timeout(mb, 2, 0);
	}
	g_assert_cmpint(modbus_write_register(mb, map.trigger_base + PLC_TRIG_ACK, 0x0102), ==, 1);
	/* Slave 8's request is not ours: not done, not answered, and slave
	 * 8's reply (an echo, for function 6), which libmodbus expects next
	 * on the line, is not taken for a request. A broadcast write (address
	 * 0) is done and not answered, nor is a refused one. Each time, the
	 * next bytes on the line are the answer to slave 7's read that
	 * follows. */
	{
		const uint8_t other[] = { 8, MODBUS_FC_WRITE_SINGLE_REGISTER, 0,
					  (uint8_t)(map.trigger_base + PLC_TRIG_JOB), 0, 9 };
		const uint8_t bcast[] = { 0, MODBUS_FC_WRITE_SINGLE_REGISTER, 0,
					  (uint8_t)(map.trigger_base + PLC_TRIG_JOB), 0, 4 };
		const uint8_t forged[] = { 0, MODBUS_FC_WRITE_SINGLE_REGISTER, 0,
					   (uint8_t)(map.result_base + PLC_RES_VERDICT), 0, 1 };
		const uint8_t *sent[] = { other, bcast, forged };
		const int want_job[] = { 2, 4, 4 };
		const uint8_t read_job[] = { 7, MODBUS_FC_READ_HOLDING_REGISTERS, 0,
					     (uint8_t)(map.trigger_base + PLC_TRIG_JOB), 0, 1 };
		uint8_t rsp[7];

		for (int i = 0; i < 3; i++) {
			g_assert_cmpint(modbus_send_raw_request(mb, (uint8_t *)sent[i], sizeof other),
					>, 0);
			if (sent[i] == other)
				g_assert_cmpint(modbus_send_raw_request(mb, (uint8_t *)other,
									sizeof other), >, 0);
			g_assert_cmpint(modbus_send_raw_request(mb, (uint8_t *)read_job,
								sizeof read_job), >, 0);
			g_assert_cmpint(read_full(modbus_get_socket(mb), rsp, sizeof rsp), ==,
					(int)sizeof rsp);
			g_assert_cmpuint(rsp[0], ==, 7);
			g_assert_cmpuint(rsp[1], ==, MODBUS_FC_READ_HOLDING_REGISTERS);
			g_assert_cmpuint(rsp[3] << 8 | rsp[4], ==, want_job[i]);
		}
		g_assert_cmpint(modbus_write_register(mb, map.trigger_base + PLC_TRIG_JOB, 2), ==, 1);
	}
	modbus_close(mb);
	modbus_free(mb);

	server_stop_expect(&sr, 5, 0x00010203, 0x0102, 2);
	pty_pair_close(&pp);
}

/* The PLC as an RTU slave: libmodbus serving a mapping on its own thread. */
struct rtu_slave {
	modbus_t *ctx;
	modbus_mapping_t *mb;
	volatile int stop;
};

static gpointer rtu_slave_loop(gpointer data)
{
	struct rtu_slave *sl = data;
	uint8_t q[MODBUS_RTU_MAX_ADU_LENGTH];

	while (!sl->stop) {
		struct pollfd pfd = { .fd = modbus_get_socket(sl->ctx), .events = POLLIN };
		int rc;

		if (poll(&pfd, 1, 20) <= 0)
			continue;
		rc = modbus_receive(sl->ctx, q);
		if (rc > 0)
			modbus_reply(sl->ctx, q, rc, sl->mb);
	}
	return NULL;
}

/* Client role on one end; the PLC, an RTU slave, on the other. */
static void test_rtu_client(void)
{
	const struct plc_regmap map = PLC_REGMAP_DEFAULT;
	const uint16_t trig[PLC_TRIG_REGS] = { 9, 0x0004, 0x0005, 0, 0 };
	struct pty_pair pp;
	struct plc_config cfg;
	struct rtu_slave sl = { 0 };
	struct plc_trigger t;
	struct plc_result r;
	struct plc_status st;
	plc_link *link;
	GThread *th;

	if (!pty_pair_open(&pp))
		return;
	sl.ctx = rtu_peer(pp.b);
	sl.mb = modbus_mapping_new(0, 0, 64, 0);
	g_assert_nonnull(sl.mb);
	memcpy(sl.mb->tab_registers + map.trigger_base, trig, sizeof trig);
	th = g_thread_new("rtu-slave", rtu_slave_loop, &sl);

	cfg = rtu_config(PLC_ROLE_CLIENT, pp.a);
	link = plc_link_new(&cfg);
	g_assert_nonnull(link);
	g_assert_cmpint(plc_link_connect(link), ==, 0);
	g_assert_cmpint(plc_read_trigger(link, &t), ==, 0);
	g_assert_cmpuint(t.counter, ==, 9);
	g_assert_cmphex(t.part_id, ==, 0x00040005);
	g_assert_cmpint(plc_write_result(link, &known_result), ==, 0);
	g_assert_cmpint(plc_write_status(link, &(struct plc_status){ .heartbeat = 4,
			.word = PLC_STATUS_READY, .trigger_seen = 9 }), ==, 0);
	/* Out of the slave's range: an exception reply keeps the link up. */
	g_assert_true(plc_link_connected(link));

	sl.stop = 1;
	g_thread_join(th);
	plc_decode_result(sl.mb->tab_registers + map.result_base, &r);
	assert_result_eq(&r, &known_result);
	plc_decode_status(sl.mb->tab_registers + map.status_base, &st);
	g_assert_cmpuint(st.heartbeat, ==, 4);
	g_assert_cmpuint(st.trigger_seen, ==, 9);
	g_assert_cmpuint(sl.mb->tab_registers[map.status_base + PLC_STAT_MAP_VERSION], ==,
			 PLC_MAP_VERSION);
	/* The slave gone silent: a timeout, and the link closes for a retry. */
	g_assert_cmpint(plc_read_trigger(link, &t), <, 0);
	g_assert_false(plc_link_connected(link));
	plc_link_free(link);
	modbus_close(sl.ctx);
	modbus_free(sl.ctx);
	modbus_mapping_free(sl.mb);
	pty_pair_close(&pp);
}

/* ---- the PLC session (plc-session.c): no link, no clock, no daemon ----
 *
 * Parts are small integers made into handles; the fixture records what the
 * session hands back and answers row_committed as told. */

#define PART(n) GINT_TO_POINTER(n)
#define T0 1000000      /* the first trigger, in microseconds */

struct sess_fix {
	plc_session *s;
	GArray *not_sent;        /* int: the parts handed back as never sent */
	unsigned failsafes;      /* fail-safe decisions */
	uint32_t failsafe_part_id;
	void *failsafe_part;
	int committed;           /* what row_committed answers */
	unsigned committed_asks;
	void *asked_part;        /* the part row_committed was last asked about */
	GArray *marked;          /* int: parts plc_session_untaken marked */
};

static void fix_not_sent(void *data, void *part)
{
	struct sess_fix *f = data;
	int n = GPOINTER_TO_INT(part);

	g_array_append_val(f->not_sent, n);
}

static void fix_failsafe(void *data, void *part, uint32_t part_id)
{
	struct sess_fix *f = data;

	f->failsafes++;
	f->failsafe_part = part;
	f->failsafe_part_id = part_id;
}

static int fix_row_committed(void *data, void *part, uint32_t part_id, int64_t now_us)
{
	struct sess_fix *f = data;

	(void)part_id;
	(void)now_us;
	f->committed_asks++;
	f->asked_part = part;
	return f->committed;
}

static void fix_mark(void *data, void *part)
{
	struct sess_fix *f = data;
	int n = GPOINTER_TO_INT(part);

	g_array_append_val(f->marked, n);
}

static const struct plc_session_ops fix_ops = {
	.not_sent = fix_not_sent,
	.failsafe = fix_failsafe,
	.row_committed = fix_row_committed,
};

static void fix_init(struct sess_fix *f, enum plc_role role, int result_buffer,
		     int deadline_ms, enum plc_fault_policy policy)
{
	struct plc_settings set = {
		.link.role = role,
		.result_buffer = result_buffer,
		.reject_deadline_ms = deadline_ms,
		.fault_policy = policy,
	};

	*f = (struct sess_fix){
		.not_sent = g_array_new(FALSE, FALSE, sizeof(int)),
		.marked = g_array_new(FALSE, FALSE, sizeof(int)),
		.committed = 1,
	};
	f->s = plc_session_new(&set, &fix_ops, f);
	g_assert_nonnull(f->s);
}

static void fix_clear(struct sess_fix *f)
{
	plc_session_free(f->s);
	g_array_free(f->not_sent, TRUE);
	g_array_free(f->marked, TRUE);
}

/* The PLC's trigger block as the session reads it. */
static struct plc_trigger_news fix_trigger(struct sess_fix *f, uint16_t counter, uint16_t ack)
{
	struct plc_trigger t = { .counter = counter, .part_id = 1000u + counter, .ack = ack };
	struct plc_trigger_news n;

	plc_session_take_trigger(f->s, &t, 1, &n);
	return n;
}

/* A trigger that makes a part: tracked as part handle `part`; its seq. */
static uint64_t fix_part(struct sess_fix *f, uint16_t counter, uint16_t ack, int part,
			 int64_t t_us)
{
	struct plc_trigger_news n = fix_trigger(f, counter, ack);

	g_assert_true(n.new_part);
	return plc_session_track(f->s, 1000u + counter, counter, t_us, PART(part));
}

static enum plc_verdict_fate fix_verdict(struct sess_fix *f, uint64_t seq, uint16_t counter,
					 int part, uint16_t verdict, float score)
{
	struct plc_verdict v = { .seq = seq, .part_id = 1000u + counter, .verdict = verdict,
				 .score = score, .flags = VIGIL_FLAG_VISION_DEFECT, .job = 3 };
	int64_t t_plc = -1;
	enum plc_verdict_fate fate = plc_session_verdict(f->s, &v, PART(part), &t_plc);

	g_assert_cmpint(t_plc, ==, 0);
	return fate;
}

static struct plc_status fix_status(struct sess_fix *f, unsigned faults)
{
	struct plc_session_line in = { .faults = faults, .ready = 1, .job = 3 };
	struct plc_status st;

	plc_session_status(f->s, &in, &st);
	return st;
}

static void test_session_present_ack(void)
{
	struct sess_fix f;
	struct plc_session_step st;
	const struct plc_result *r;
	struct plc_status status;
	uint64_t seq;

	fix_init(&f, PLC_ROLE_CLIENT, 32, 1000, PLC_FAULT_REJECT_ALL);
	/* What the PLC shows at connect was raised before us: no part. */
	g_assert_false(fix_trigger(&f, 0, 0).new_part);
	seq = fix_part(&f, 1, 0, 1, T0);
	g_assert_cmpuint(seq, ==, 0);

	/* Nothing to present before the verdict, and nothing asked. */
	plc_session_advance(f.s, T0 + 10, 0, &st);
	g_assert_false(st.committed);
	g_assert_cmpint(st.write, ==, PLC_SESSION_WRITE_NONE);
	g_assert_cmpuint(f.committed_asks, ==, 0);

	g_assert_cmpint(fix_verdict(&f, seq, 1, 1, VIGIL_VERDICT_ACCEPT, 0.1234f), ==,
			PLC_VERDICT_BUFFERED);
	plc_session_advance(f.s, T0 + 20, 0, &st);
	g_assert_true(st.committed);
	g_assert_true(st.part == PART(1));
	g_assert_true(f.asked_part == PART(1));
	g_assert_cmpint(st.write, ==, PLC_SESSION_WRITE_RESULT);
	r = plc_session_result(f.s);
	assert_result_eq(r, &(struct plc_result){ .counter = 1, .part_id = 1001,
			 .trigger_counter = 1, .verdict = VIGIL_VERDICT_ACCEPT, .score_milli = 123,
			 .flags = VIGIL_FLAG_VISION_DEFECT, .valid = 1, .job = 3 });
	/* A failed write is retried verbatim. */
	plc_session_advance(f.s, T0 + 30, 0, &st);
	g_assert_cmpint(st.write, ==, PLC_SESSION_WRITE_RESULT);
	g_assert_cmpuint(plc_session_result(f.s)->counter, ==, 1);
	g_assert_true(plc_session_written(f.s) == PART(1));
	g_assert_null(plc_session_written(f.s));
	plc_session_advance(f.s, T0 + 40, 0, &st);
	g_assert_cmpint(st.write, ==, PLC_SESSION_WRITE_NONE);
	status = fix_status(&f, 0);
	g_assert_cmpuint(status.buffered, ==, 1);
	g_assert_cmpuint(status.trigger_seen, ==, 1);
	g_assert_cmphex(status.word & PLC_STATUS_RESULTS_VALID, ==, PLC_STATUS_RESULTS_VALID);

	/* The acknowledge takes the valid flag down, keeping the counter. */
	g_assert_false(fix_trigger(&f, 1, 1).new_part);
	plc_session_advance(f.s, T0 + 50, 0, &st);
	g_assert_null(st.acked);  /* written: already handed back */
	g_assert_cmpint(st.write, ==, PLC_SESSION_WRITE_CLEAR);
	g_assert_cmpuint(plc_session_result(f.s)->counter, ==, 1);
	g_assert_cmpuint(plc_session_result(f.s)->valid, ==, 0);
	plc_session_cleared(f.s);
	plc_session_advance(f.s, T0 + 60, 0, &st);
	g_assert_cmpint(st.write, ==, PLC_SESSION_WRITE_NONE);
	status = fix_status(&f, 0);
	g_assert_cmpuint(status.buffered, ==, 0);
	g_assert_cmphex(status.word & PLC_STATUS_RESULTS_VALID, ==, 0);
	/* A second acknowledge of the same counter changes nothing. */
	fix_trigger(&f, 1, 1);
	plc_session_advance(f.s, T0 + 70, 0, &st);
	g_assert_cmpint(st.write, ==, PLC_SESSION_WRITE_NONE);

	/* The next result waits for its row, then goes out as counter 2; an
	 * acknowledge of a result never written hands its part back. */
	seq = fix_part(&f, 2, 1, 2, T0 + 100);
	g_assert_cmpint(fix_verdict(&f, seq, 2, 2, VIGIL_VERDICT_REJECT, 1.5f), ==,
			PLC_VERDICT_BUFFERED);
	f.committed = 0;
	plc_session_advance(f.s, T0 + 110, 0, &st);
	g_assert_true(st.awaiting_row);
	g_assert_false(st.committed);
	g_assert_cmpint(st.write, ==, PLC_SESSION_WRITE_NONE);
	f.committed = 1;
	plc_session_advance(f.s, T0 + 120, 0, &st);
	g_assert_true(st.committed);
	g_assert_cmpuint(plc_session_result(f.s)->counter, ==, 2);
	g_assert_cmpuint(plc_session_result(f.s)->score_milli, ==, 1000); /* clamped */
	fix_trigger(&f, 2, 2);
	plc_session_advance(f.s, T0 + 130, 0, &st);
	g_assert_true(st.acked == PART(2));
	g_assert_false(plc_session_busy(f.s, 1));
	g_assert_cmpuint(f.not_sent->len, ==, 0);
	fix_clear(&f);
}

static void test_session_overrun(void)
{
	struct sess_fix f;
	struct plc_session_step st;
	struct plc_status status;
	uint64_t seq[5];

	/* One result may wait behind the presented one. */
	fix_init(&f, PLC_ROLE_SERVER, 1, 1000, PLC_FAULT_REJECT_ALL);
	fix_trigger(&f, 0, 0);
	for (int i = 1; i <= 4; i++)
		seq[i] = fix_part(&f, (uint16_t)i, 0, i, T0 + i);
	g_assert_cmpint(fix_verdict(&f, seq[1], 1, 1, 1, 0), ==, PLC_VERDICT_BUFFERED);
	plc_session_advance(f.s, T0 + 10, 0, &st);
	g_assert_true(st.committed);
	plc_session_written(f.s);
	g_assert_cmpint(fix_verdict(&f, seq[2], 2, 2, 1, 0), ==, PLC_VERDICT_BUFFERED);
	g_assert_cmpint(fix_verdict(&f, seq[3], 3, 3, 1, 0), ==, PLC_VERDICT_OVERRUN);
	status = fix_status(&f, 0);
	g_assert_cmpuint(status.overruns, ==, 1);
	g_assert_cmpuint(status.buffered, ==, 2);
	g_assert_cmpuint(status.capacity, ==, 1);
	g_assert_cmphex(status.word & PLC_STATUS_OVERRUN, ==, PLC_STATUS_OVERRUN);
	g_assert_cmpuint(status.error, ==, PLC_ERR_OVERRUN);

	/* The PLC catches up: result 2 is part 2, then part 4 as result 3
	 * (its trigger echo shows the gap); the latch falls once drained,
	 * the count stays. */
	fix_trigger(&f, 4, 1);
	plc_session_advance(f.s, T0 + 20, 0, &st);
	g_assert_true(st.part == PART(2));
	g_assert_cmpuint(plc_session_result(f.s)->counter, ==, 2);
	g_assert_cmpuint(plc_session_result(f.s)->trigger_counter, ==, 2);
	plc_session_written(f.s);
	g_assert_cmphex(fix_status(&f, 0).word & PLC_STATUS_OVERRUN, ==, PLC_STATUS_OVERRUN);
	g_assert_cmpint(fix_verdict(&f, seq[4], 4, 4, 1, 0), ==, PLC_VERDICT_BUFFERED);
	fix_trigger(&f, 4, 2);
	plc_session_advance(f.s, T0 + 30, 0, &st);
	g_assert_cmpuint(plc_session_result(f.s)->counter, ==, 3);
	g_assert_cmpuint(plc_session_result(f.s)->trigger_counter, ==, 4);
	plc_session_written(f.s);
	fix_trigger(&f, 4, 3);
	plc_session_advance(f.s, T0 + 40, 0, &st);
	g_assert_cmpint(st.write, ==, PLC_SESSION_WRITE_CLEAR);
	status = fix_status(&f, 0);
	g_assert_cmphex(status.word & PLC_STATUS_OVERRUN, ==, 0);
	g_assert_cmpuint(status.error, ==, PLC_ERR_NONE);
	g_assert_cmpuint(status.overruns, ==, 1);
	g_assert_false(plc_session_busy(f.s, 1));
	fix_clear(&f);
}

static void test_session_counters(void)
{
	struct sess_fix f;
	struct plc_trigger_news n;
	uint64_t seq;

	/* The wrap: 65535 -> 1 is one step; 65500 -> 100 is 135 steps. */
	fix_init(&f, PLC_ROLE_CLIENT, 32, 1000, PLC_FAULT_REJECT_ALL);
	fix_trigger(&f, 65530, 0);
	n = fix_trigger(&f, 65535, 0);
	g_assert_true(n.new_part);
	g_assert_false(n.restarted);
	g_assert_cmpuint(n.missed, ==, 4);
	g_assert_cmpuint(n.missed_from, ==, 65530);
	/* The missed triggers' frames are skipped: 4 sequence numbers. */
	g_assert_cmpuint(plc_session_track(f.s, 1, 65535, T0, PART(1)), ==, 4);
	n = fix_trigger(&f, 1, 0);
	g_assert_true(n.new_part);
	g_assert_false(n.restarted);
	g_assert_cmpuint(n.missed, ==, 0);
	g_assert_cmpuint(plc_session_track(f.s, 2, 1, T0, PART(2)), ==, 5);
	fix_clear(&f);

	fix_init(&f, PLC_ROLE_CLIENT, 32, 1000, PLC_FAULT_REJECT_ALL);
	fix_trigger(&f, 65500, 0);
	n = fix_trigger(&f, 100, 0);
	g_assert_false(n.restarted);
	g_assert_cmpuint(n.missed, ==, 134);
	fix_clear(&f);

	/* A restart: a buffered verdict is never sent, a presented result
	 * not acknowledged is taken down with its counter kept, and the
	 * verdict of a part still in inspection is refused when it comes. */
	fix_init(&f, PLC_ROLE_CLIENT, 32, 1000, PLC_FAULT_REJECT_ALL);
	fix_trigger(&f, 0, 0);
	seq = fix_part(&f, 1, 0, 1, T0);
	g_assert_cmpint(fix_verdict(&f, seq, 1, 1, 1, 0), ==, PLC_VERDICT_BUFFERED);
	{
		struct plc_session_step st;

		plc_session_advance(f.s, T0 + 1, 0, &st);
		g_assert_true(st.committed);
		plc_session_written(f.s);
	}
	seq = fix_part(&f, 2, 0, 2, T0);
	g_assert_cmpint(fix_verdict(&f, seq, 2, 2, 1, 0), ==, PLC_VERDICT_BUFFERED);
	seq = fix_part(&f, 3, 0, 3, T0);  /* still in inspection */
	/* A step back by more than the wrap allows: 3 -> 2. */
	n = fix_trigger(&f, 2, 0);
	g_assert_true(n.restarted);
	g_assert_cmpuint(n.from, ==, 3);
	g_assert_cmpuint(n.dropped, ==, 3);
	/* Client role: counter 2 after the restart is 1 missed, from 0. */
	g_assert_true(n.new_part);
	g_assert_cmpuint(n.missed, ==, 1);
	g_assert_cmpuint(n.missed_from, ==, 0);
	g_assert_cmpuint(f.not_sent->len, ==, 1);
	g_assert_cmpint(g_array_index(f.not_sent, int, 0), ==, 2);
	g_assert_cmpuint(plc_session_result(f.s)->valid, ==, 0);
	g_assert_cmpuint(plc_session_result(f.s)->counter, ==, 1);
	g_assert_true(plc_session_stale(f.s, seq));
	g_assert_false(plc_session_stale(f.s, seq));
	plc_session_track(f.s, 1002, 2, T0 + 5, PART(4));
	/* 0 is a restart too, with no part; trigger_seen follows it. */
	n = fix_trigger(&f, 0, 0);
	g_assert_true(n.restarted);
	g_assert_false(n.new_part);
	g_assert_cmpuint(n.dropped, ==, 1);      /* part 4, still in inspection */
	g_assert_cmpuint(fix_status(&f, 0).trigger_seen, ==, 0);
	/* In the server role the first counter after a restart is the first
	 * part, whatever its value. */
	fix_clear(&f);
	fix_init(&f, PLC_ROLE_SERVER, 32, 1000, PLC_FAULT_REJECT_ALL);
	fix_trigger(&f, 0, 0);
	fix_part(&f, 7, 0, 1, T0);
	n = fix_trigger(&f, 50, 0);
	g_assert_cmpuint(n.missed, ==, 42);
	n = fix_trigger(&f, 9, 0);
	g_assert_true(n.restarted);
	g_assert_cmpuint(n.missed, ==, 0);
	g_assert_true(n.new_part);
	fix_clear(&f);
}

static void test_session_deadline(void)
{
	struct sess_fix f;
	struct plc_session_step st;
	const struct plc_result *r;
	struct plc_verdict v;
	int64_t t_plc = 0;
	uint64_t seq;

	fix_init(&f, PLC_ROLE_CLIENT, 32, 100, PLC_FAULT_REJECT_ALL);
	fix_trigger(&f, 0, 0);
	seq = fix_part(&f, 1, 0, 1, T0);
	plc_session_advance(f.s, T0 + 99999, 5, &st);
	g_assert_false(st.committed);
	g_assert_cmpuint(f.failsafes, ==, 0);

	/* At the deadline: decided once, while its row is not committed. */
	f.committed = 0;
	plc_session_advance(f.s, T0 + 100000, 5, &st);
	plc_session_advance(f.s, T0 + 100100, 5, &st);
	g_assert_cmpuint(f.failsafes, ==, 1);
	g_assert_true(f.failsafe_part == PART(1));
	g_assert_cmpuint(f.failsafe_part_id, ==, 1001);
	g_assert_null(f.asked_part);  /* the fail-safe's own row */
	g_assert_true(st.awaiting_row);
	g_assert_false(st.committed);
	f.committed = 1;
	plc_session_advance(f.s, T0 + 100200, 5, &st);
	g_assert_cmpuint(f.failsafes, ==, 1);
	g_assert_true(st.committed);
	g_assert_null(st.part);
	g_assert_cmpint(st.t_trigger_us, ==, T0);
	g_assert_cmpuint(st.flags, ==, VIGIL_FLAG_FAILSAFE | VIGIL_FLAG_DEADLINE);
	r = plc_session_result(f.s);
	assert_result_eq(r, &(struct plc_result){ .counter = 1, .part_id = 1001,
			 .trigger_counter = 1, .verdict = VIGIL_VERDICT_REJECT,
			 .defect_class = VIGIL_CLASS_NONE, .score_milli = 1000,
			 .flags = VIGIL_FLAG_FAILSAFE | VIGIL_FLAG_DEADLINE, .valid = 1, .job = 5 });
	g_assert_null(plc_session_written(f.s));

	/* The model's verdict comes late: it does not replace the reject. */
	v = (struct plc_verdict){ .seq = seq, .part_id = 1001, .verdict = VIGIL_VERDICT_ACCEPT };
	g_assert_cmpint(plc_session_verdict(f.s, &v, PART(1), &t_plc), ==, PLC_VERDICT_LATE);
	g_assert_cmpint(t_plc, ==, T0 + 100200);
	g_assert_cmpuint(fix_status(&f, 0).buffered, ==, 1);
	fix_trigger(&f, 1, 1);
	plc_session_advance(f.s, T0 + 200000, 5, &st);
	g_assert_cmpint(st.write, ==, PLC_SESSION_WRITE_CLEAR);
	g_assert_cmpuint(f.failsafes, ==, 1);
	g_assert_false(plc_session_busy(f.s, 1));
	fix_clear(&f);
}

static void test_session_stop(void)
{
	struct sess_fix f;
	struct plc_session_step st;
	uint64_t seq;
	char *msg;

	fix_init(&f, PLC_ROLE_CLIENT, 32, 1000, PLC_FAULT_REJECT_ALL);
	g_assert_null(plc_session_untaken(f.s, fix_mark, &f));
	fix_trigger(&f, 0, 0);
	for (int i = 1; i <= 3; i++) {
		seq = fix_part(&f, (uint16_t)i, 0, i, T0);
		g_assert_cmpint(fix_verdict(&f, seq, (uint16_t)i, i, 1, 0), ==,
				PLC_VERDICT_BUFFERED);
	}
	fix_part(&f, 4, 0, 4, T0);   /* still in inspection */
	plc_session_advance(f.s, T0 + 1, 0, &st);
	g_assert_true(st.committed); /* its write failed: part 1 still held */

	g_assert_true(plc_session_busy(f.s, 0));
	msg = plc_session_untaken(f.s, fix_mark, &f);
	g_assert_cmpstr(msg, ==, "stopped with results the PLC never took: result 1 (part 1001) "
			"presented, not acknowledged; never presented: part 1002 part 1003 "
			"part 1004");
	g_free(msg);
	g_assert_cmpuint(f.marked->len, ==, 2);
	g_assert_cmpint(g_array_index(f.marked, int, 0), ==, 2);
	g_assert_cmpint(g_array_index(f.marked, int, 1), ==, 3);
	g_assert_true(plc_session_take_current(f.s) == PART(1));
	g_assert_null(plc_session_take_current(f.s));
	g_assert_true(plc_session_pop_buffered(f.s) == PART(2));
	g_assert_true(plc_session_pop_buffered(f.s) == PART(3));
	g_assert_null(plc_session_pop_buffered(f.s));
	/* Part 4 is inspection's: its verdict is yet to come. */
	g_assert_true(plc_session_busy(f.s, 0));
	g_assert_cmpuint(f.not_sent->len, ==, 0);
	fix_clear(&f);
}

static void test_session_status(void)
{
	struct sess_fix f;
	struct plc_status st;
	struct plc_session_line in = { .ready = 1, .heartbeat = 9, .job = 2 };

	fix_init(&f, PLC_ROLE_CLIENT, 32, 1000, PLC_FAULT_STOP_LINE);
	plc_session_status(f.s, &in, &st);
	g_assert_cmphex(st.word, ==, PLC_STATUS_READY | PLC_STATUS_RUNNING |
			PLC_STATUS_MODEL_LOADED | PLC_STATUS_CAMERA_OK | PLC_STATUS_SENSOR_OK |
			PLC_STATUS_DB_OK);
	g_assert_cmpuint(st.heartbeat, ==, 9);
	g_assert_cmpuint(st.job, ==, 2);
	/* A database fault stops nothing. */
	in.faults = 1u << PLC_ERR_DATABASE;
	plc_session_status(f.s, &in, &st);
	g_assert_cmphex(st.word & (PLC_STATUS_FAULT | PLC_STATUS_DB_OK | PLC_STATUS_STOP_LINE),
			==, PLC_STATUS_FAULT);
	g_assert_cmpuint(st.error, ==, PLC_ERR_DATABASE);
	/* The first fault names the error; a sensor fault stops the line. */
	in.faults |= 1u << PLC_ERR_SENSOR;
	in.silent = 1;
	in.stopping = 1;
	plc_session_status(f.s, &in, &st);
	g_assert_cmpuint(st.error, ==, PLC_ERR_SENSOR);
	g_assert_cmphex(st.word & (PLC_STATUS_STOP_LINE | PLC_STATUS_SENSOR_OK |
				   PLC_STATUS_PLC_SILENT | PLC_STATUS_READY | PLC_STATUS_RUNNING),
			==, PLC_STATUS_STOP_LINE | PLC_STATUS_PLC_SILENT);
	fix_clear(&f);

	fix_init(&f, PLC_ROLE_CLIENT, 32, 1000, PLC_FAULT_REJECT_ALL);
	in = (struct plc_session_line){ .faults = 1u << PLC_ERR_MODEL, .job_refused = 4,
					.job_error = PLC_ERR_JOB_PACKAGE_CORRUPT, .ready = 0 };
	plc_session_status(f.s, &in, &st);
	g_assert_cmphex(st.word & (PLC_STATUS_STOP_LINE | PLC_STATUS_MODEL_LOADED |
				   PLC_STATUS_JOB_INVALID | PLC_STATUS_READY),
			==, PLC_STATUS_JOB_INVALID);
	g_assert_cmpuint(st.error, ==, PLC_ERR_MODEL);
	in.faults = 0;
	plc_session_status(f.s, &in, &st);
	g_assert_cmpuint(st.error, ==, PLC_ERR_JOB_PACKAGE_CORRUPT);
	fix_clear(&f);
}

/* Across a restart of vigild (docs/plc.md, restarts): results go on from
 * the kept counter, a stale ack never takes a result never presented, a
 * trigger raised while vigild was down is a part of its own (with no
 * frame), and a result block left valid is taken down. */
static void test_session_restart(void)
{
	struct sess_fix f;
	struct plc_session_step st;
	struct plc_trigger_news n;
	struct plc_session_kept k = { .result_counter = 1, .have_trigger = 1,
				      .trigger_counter = 5, .part_id = 1005 };
	struct plc_result peer = { .counter = 7, .part_id = 9, .trigger_counter = 3,
				   .verdict = 1, .valid = 1, .job = 2 };
	const struct plc_result *r;
	uint64_t seq;

	/* The kept counter goes on; the PLC's ack of 1 (the last run's
	 * result) takes nothing; the trigger shown is the one answered. */
	fix_init(&f, PLC_ROLE_CLIENT, 32, 1000, PLC_FAULT_REJECT_ALL);
	plc_session_resume(f.s, &k);
	n = fix_trigger(&f, 5, 1);
	g_assert_false(n.new_part);
	g_assert_false(n.unanswered);
	g_assert_false(n.adopted);
	seq = fix_part(&f, 6, 1, 1, T0);
	g_assert_cmpuint(seq, ==, 0);
	g_assert_cmpint(fix_verdict(&f, seq, 6, 1, 1, 0), ==, PLC_VERDICT_BUFFERED);
	plc_session_advance(f.s, T0 + 1, 0, &st);
	g_assert_true(st.committed);
	r = plc_session_result(f.s);
	g_assert_cmpuint(r->counter, ==, 2);
	g_assert_cmpuint(r->valid, ==, 1);
	plc_session_written(f.s);
	plc_session_advance(f.s, T0 + 2, 0, &st);
	g_assert_null(st.acked);
	g_assert_cmpuint(plc_session_result(f.s)->valid, ==, 1);
	/* Acknowledging it takes it down. */
	fix_trigger(&f, 6, 2);
	plc_session_advance(f.s, T0 + 3, 0, &st);
	g_assert_cmpint(st.write, ==, PLC_SESSION_WRITE_CLEAR);
	fix_clear(&f);

	/* Nothing kept (a first start, or a lost file): the counter would
	 * start at 1, which the PLC's stale ack shows: it is skipped. */
	fix_init(&f, PLC_ROLE_SERVER, 32, 1000, PLC_FAULT_REJECT_ALL);
	n = fix_trigger(&f, 0, 0);
	g_assert_false(n.adopted);
	seq = fix_part(&f, 1, 1, 1, T0);
	g_assert_cmpint(fix_verdict(&f, seq, 1, 1, 1, 0), ==, PLC_VERDICT_BUFFERED);
	plc_session_advance(f.s, T0 + 1, 0, &st);
	g_assert_true(st.committed);
	g_assert_cmpuint(plc_session_result(f.s)->counter, ==, 2);
	plc_session_written(f.s);
	plc_session_advance(f.s, T0 + 2, 0, &st);
	g_assert_null(st.acked);
	g_assert_cmpuint(plc_session_result(f.s)->valid, ==, 1);
	fix_clear(&f);

	/* The skip keeps the wrap: after 65535 comes 1, unless the PLC
	 * shows 1, then 2. */
	fix_init(&f, PLC_ROLE_CLIENT, 32, 1000, PLC_FAULT_REJECT_ALL);
	k.result_counter = 65535;
	plc_session_resume(f.s, &k);
	fix_trigger(&f, 5, 1);
	seq = fix_part(&f, 6, 1, 1, T0);
	fix_verdict(&f, seq, 6, 1, 1, 0);
	plc_session_advance(f.s, T0 + 1, 0, &st);
	g_assert_cmpuint(plc_session_result(f.s)->counter, ==, 2);
	fix_clear(&f);

	/* A trigger raised while vigild was down: a part, with a sequence
	 * number of its own, so the next part keeps the first frame. */
	fix_init(&f, PLC_ROLE_CLIENT, 32, 1000, PLC_FAULT_REJECT_ALL);
	k.result_counter = 4;
	plc_session_resume(f.s, &k);
	n = fix_trigger(&f, 6, 4);
	g_assert_true(n.new_part);
	g_assert_true(n.unanswered);
	g_assert_cmpuint(n.missed, ==, 0);
	g_assert_cmpuint(fix_status(&f, 0).trigger_seen, ==, 6);
	seq = plc_session_track_unanswered(f.s, 1006, 6, T0, PART(1));
	g_assert_cmpuint(seq, >=, PLC_SEQ_UNANSWERED);
	g_assert_cmpint(fix_verdict(&f, seq, 6, 1, VIGIL_VERDICT_REJECT, 1.0f), ==,
			PLC_VERDICT_BUFFERED);
	g_assert_cmpuint(fix_part(&f, 7, 4, 2, T0), ==, 0);
	plc_session_advance(f.s, T0 + 1, 0, &st);
	g_assert_true(st.committed);
	g_assert_true(st.part == PART(1));
	r = plc_session_result(f.s);
	g_assert_cmpuint(r->counter, ==, 5);
	g_assert_cmpuint(r->trigger_counter, ==, 6);
	g_assert_cmpuint(r->part_id, ==, 1006);
	g_assert_cmpuint(r->verdict, ==, VIGIL_VERDICT_REJECT);
	plc_session_written(f.s);
	fix_clear(&f);

	/* Three triggers raised while down: the last is answered, the two
	 * before it are missed, counted from the one answered last. */
	fix_init(&f, PLC_ROLE_CLIENT, 32, 1000, PLC_FAULT_REJECT_ALL);
	plc_session_resume(f.s, &k);
	n = fix_trigger(&f, 8, 4);
	g_assert_true(n.unanswered);
	g_assert_cmpuint(n.missed, ==, 2);
	g_assert_cmpuint(n.missed_from, ==, 5);
	/* No frame was taken for them (vigild was down): no sequence skipped. */
	g_assert_cmpuint(fix_part(&f, 9, 4, 2, T0), ==, 0);
	fix_clear(&f);

	/* Across the wrap: 65534 answered, then 65535, 1 and 2 raised. */
	fix_init(&f, PLC_ROLE_CLIENT, 32, 1000, PLC_FAULT_REJECT_ALL);
	k.trigger_counter = 65534;
	plc_session_resume(f.s, &k);
	n = fix_trigger(&f, 2, 4);
	g_assert_true(n.unanswered);
	g_assert_cmpuint(n.missed, ==, 2);
	g_assert_cmpuint(n.missed_from, ==, 65534);
	fix_clear(&f);

	/* The PLC program restarted too (far back, not across the wrap):
	 * counted from 0, as after a restart. */
	fix_init(&f, PLC_ROLE_CLIENT, 32, 1000, PLC_FAULT_REJECT_ALL);
	k.trigger_counter = 500;
	plc_session_resume(f.s, &k);
	n = fix_trigger(&f, 3, 4);
	g_assert_true(n.unanswered);
	g_assert_cmpuint(n.missed, ==, 2);
	g_assert_cmpuint(n.missed_from, ==, 0);
	fix_clear(&f);
	k.trigger_counter = 5;

	/* The same counter with another part id was raised while down too. */
	fix_init(&f, PLC_ROLE_CLIENT, 32, 1000, PLC_FAULT_REJECT_ALL);
	k.part_id = 77;
	plc_session_resume(f.s, &k);
	n = fix_trigger(&f, 5, 4);
	g_assert_true(n.unanswered);
	g_assert_cmpuint(n.missed, ==, 0);
	fix_clear(&f);

	/* Nothing kept: the counter shown is the baseline, said so. */
	fix_init(&f, PLC_ROLE_CLIENT, 32, 1000, PLC_FAULT_REJECT_ALL);
	n = fix_trigger(&f, 9, 0);
	g_assert_false(n.new_part);
	g_assert_true(n.adopted);
	fix_clear(&f);

	/* Client role: the PLC's result block of a killed run, still valid,
	 * is written again with valid 0, counter and content kept, and the
	 * next result goes on from its counter, whatever was kept. */
	fix_init(&f, PLC_ROLE_CLIENT, 32, 1000, PLC_FAULT_REJECT_ALL);
	k.result_counter = 3;
	plc_session_resume(f.s, &k);
	plc_session_peer_result(f.s, &peer);
	plc_session_relink(f.s);
	fix_trigger(&f, 5, 7);
	plc_session_advance(f.s, T0, 0, &st);
	g_assert_cmpint(st.write, ==, PLC_SESSION_WRITE_CLEAR);
	r = plc_session_result(f.s);
	g_assert_cmpuint(r->counter, ==, 7);
	g_assert_cmpuint(r->valid, ==, 0);
	g_assert_cmpuint(r->part_id, ==, 9);
	g_assert_cmpuint(r->trigger_counter, ==, 3);
	plc_session_cleared(f.s);
	seq = fix_part(&f, 6, 7, 1, T0);
	fix_verdict(&f, seq, 6, 1, 1, 0);
	plc_session_advance(f.s, T0 + 1, 0, &st);
	g_assert_cmpuint(plc_session_result(f.s)->counter, ==, 8);
	plc_session_written(f.s);
	/* Once this run presented a result, the block is its own. */
	plc_session_peer_result(f.s, &peer);
	g_assert_cmpuint(plc_session_result(f.s)->counter, ==, 8);
	fix_clear(&f);
}

int main(int argc, char **argv)
{
	g_test_init(&argc, &argv, NULL);
	g_test_add_func("/plc/encode/result", test_encode_result);
	g_test_add_func("/plc/encode/trigger", test_encode_trigger);
	g_test_add_func("/plc/counter", test_counter);
	g_test_add_func("/plc/session/present-ack", test_session_present_ack);
	g_test_add_func("/plc/session/overrun", test_session_overrun);
	g_test_add_func("/plc/session/counters", test_session_counters);
	g_test_add_func("/plc/session/deadline", test_session_deadline);
	g_test_add_func("/plc/session/stop", test_session_stop);
	g_test_add_func("/plc/session/status", test_session_status);
	g_test_add_func("/plc/session/restart", test_session_restart);
	g_test_add_func("/plc/config", test_config);
	g_test_add_func("/plc/strerror", test_strerror);
	g_test_add_func("/plc/refused", test_refused);
	g_test_add_func("/plc/sim/exchange", test_sim_exchange);
	g_test_add_func("/plc/sim/robust", test_sim_robust);
	g_test_add_func("/plc/pymodbus", test_pymodbus_peer);
	g_test_add_func("/plc/server", test_server);
	g_test_add_func("/plc/server/slow-master", test_server_slow_master);
	g_test_add_func("/plc/server/addressing", test_server_addressing);
	g_test_add_func("/plc/server/long-write", test_server_long_write);
	g_test_add_func("/plc/rtu/server", test_rtu_server);
	g_test_add_func("/plc/rtu/client", test_rtu_client);
	return g_test_run();
}
