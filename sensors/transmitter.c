/* Modbus vibration transmitters (sensors.h). */
#include "sensors/sensors.h"

#include <errno.h>
#include <glib.h>
#include <math.h>
#include <modbus.h>
#include <string.h>

#include "core/part.h"

struct sensor_transmitter {
	struct transmitter_config cfg;
	char *name, *host, *device;
	GThread *thread;

	GMutex lock;
	GCond wake;
	gboolean stopping;
	gboolean have;
	struct transmitter_reading latest;
	struct transmitter_reading *trend; /* ring of trend_len */
	size_t trend_head, trend_count;
	struct transmitter_stats st;
};

static int reg_words(enum transmitter_type type)
{
	return type >= TRANSMITTER_U32 ? 2 : 1;
}

sensor_transmitter *sensor_transmitter_new(const struct transmitter_config *cfg, char **err)
{
	sensor_transmitter *t = g_new0(sensor_transmitter, 1);
	int any = 0;

	g_mutex_init(&t->lock);
	g_cond_init(&t->wake);
	t->cfg = *cfg;
	t->name = g_strdup(cfg->name);
	t->host = g_strdup(cfg->host);
	t->device = g_strdup(cfg->device);
	t->cfg.name = t->name;
	t->cfg.host = t->host;
	t->cfg.device = t->device;
	if (!t->cfg.trend_len)
		t->cfg.trend_len = 1024;
	if (!t->cfg.stale_ms)
		t->cfg.stale_ms = 3 * cfg->poll_ms;
	if (!cfg->host == !cfg->device) {
		*err = g_strdup_printf("transmitter %s: give either a host (TCP) or a device (RTU)",
				       cfg->name);
		goto fail;
	}
	if (cfg->poll_ms <= 0 || cfg->timeout_ms <= 0) {
		*err = g_strdup_printf("transmitter %s: poll and timeout must be positive", cfg->name);
		goto fail;
	}
	for (int q = 0; q < TRANSMITTER_QUANTITIES; q++) {
		const struct transmitter_register *r = &cfg->reg[q];

		if (r->address < 0)
			continue;
		if (r->address + reg_words(r->type) > 65536 || r->type > TRANSMITTER_F32 ||
		    !isfinite(r->scale)) {
			*err = g_strdup_printf("transmitter %s: register %d does not fit", cfg->name,
					       r->address);
			goto fail;
		}
		any = 1;
	}
	if (!any) {
		*err = g_strdup_printf("transmitter %s: no register to read", cfg->name);
		goto fail;
	}
	t->trend = g_new0(struct transmitter_reading, t->cfg.trend_len);
	return t;
fail:
	sensor_transmitter_free(t);
	return NULL;
}

static double decode(const struct transmitter_register *r, const uint16_t *w, int low_first)
{
	uint32_t u = low_first ? ((uint32_t)w[1] << 16) | w[0] : ((uint32_t)w[0] << 16) | w[1];
	float f;

	switch (r->type) {
	case TRANSMITTER_U16:
		return w[0] * r->scale;
	case TRANSMITTER_S16:
		return (int16_t)w[0] * r->scale;
	case TRANSMITTER_U32:
		return u * r->scale;
	case TRANSMITTER_S32:
		return (int32_t)u * r->scale;
	case TRANSMITTER_F32:
		memcpy(&f, &u, sizeof f);
		return f * r->scale;
	}
	return NAN;
}

/* One poll: every configured register, or nothing. */
static int poll_once(sensor_transmitter *t, modbus_t *ctx, struct transmitter_reading *out)
{
	out->t_us = vigil_now_us();
	for (int q = 0; q < TRANSMITTER_QUANTITIES; q++) {
		const struct transmitter_register *r = &t->cfg.reg[q];
		uint16_t w[2];
		int n = reg_words(r->type), rc;

		out->value[q] = NAN;
		if (r->address < 0)
			continue;
		rc = t->cfg.input_registers ? modbus_read_input_registers(ctx, r->address, n, w)
					    : modbus_read_registers(ctx, r->address, n, w);
		if (rc != n)
			return -EIO;
		out->value[q] = decode(r, w, t->cfg.low_word_first);
	}
	return 0;
}

static modbus_t *connect_transmitter(sensor_transmitter *t)
{
	modbus_t *ctx = t->host ? modbus_new_tcp(t->host, t->cfg.port)
				: modbus_new_rtu(t->device, t->cfg.baud, t->cfg.parity, 8,
						 t->cfg.stop_bits);

	if (!ctx)
		return NULL;
	modbus_set_slave(ctx, t->cfg.unit_id);
	modbus_set_response_timeout(ctx, (uint32_t)(t->cfg.timeout_ms / 1000),
				    (uint32_t)(t->cfg.timeout_ms % 1000) * 1000);
	if (modbus_connect(ctx) < 0) {
		modbus_free(ctx);
		return NULL;
	}
	return ctx;
}

static gpointer poll_thread(gpointer data)
{
	sensor_transmitter *t = data;
	modbus_t *ctx = NULL;
	int backoff_ms = t->cfg.poll_ms;
	int64_t next_us = vigil_now_us();

	for (;;) {
		struct transmitter_reading r;
		int wait_ms = t->cfg.poll_ms;
		gboolean ok;

		if (!ctx)
			ctx = connect_transmitter(t);
		ok = ctx && poll_once(t, ctx, &r) == 0;
		g_mutex_lock(&t->lock);
		t->st.polls++;
		if (ok) {
			t->latest = r;
			t->have = TRUE;
			if (t->trend_count == t->cfg.trend_len) {
				t->trend_head = (t->trend_head + 1) % t->cfg.trend_len;
				t->trend_count--;
				t->st.trend_dropped++;
			}
			t->trend[(t->trend_head + t->trend_count) % t->cfg.trend_len] = r;
			t->trend_count++;
			if (!t->st.connected)
				g_message("transmitter %s: reading", t->name);
			t->st.connected = 1;
			backoff_ms = t->cfg.poll_ms;
		} else {
			t->st.failures++;
			if (t->st.connected || t->st.failures == 1)
				g_warning("transmitter %s: no answer (%s); retrying with back-off",
					  t->name, ctx ? modbus_strerror(errno) : "cannot connect");
			t->st.connected = 0;
			/* A half-dead link is rebuilt rather than reused. */
			if (ctx) {
				modbus_close(ctx);
				modbus_free(ctx);
				ctx = NULL;
			}
			wait_ms = backoff_ms;
			backoff_ms = MIN(backoff_ms * 2, 2000);
		}
		next_us += (int64_t)wait_ms * 1000;
		if (next_us < vigil_now_us())
			next_us = vigil_now_us(); /* late: poll again now, no burst */
		while (!t->stopping &&
		       g_cond_wait_until(&t->wake, &t->lock,
					 g_get_monotonic_time() + (next_us - vigil_now_us())))
			;
		if (t->stopping) {
			g_mutex_unlock(&t->lock);
			break;
		}
		g_mutex_unlock(&t->lock);
	}
	if (ctx) {
		modbus_close(ctx);
		modbus_free(ctx);
	}
	return NULL;
}

int sensor_transmitter_start(sensor_transmitter *t, char **err)
{
	(void)err;
	t->thread = g_thread_new("transmitter", poll_thread, t);
	return 0;
}

void sensor_transmitter_free(sensor_transmitter *t)
{
	if (!t)
		return;
	if (t->thread) {
		g_mutex_lock(&t->lock);
		t->stopping = TRUE;
		g_cond_broadcast(&t->wake);
		g_mutex_unlock(&t->lock);
		g_thread_join(t->thread);
	}
	g_mutex_clear(&t->lock);
	g_cond_clear(&t->wake);
	g_free(t->trend);
	g_free(t->name);
	g_free(t->host);
	g_free(t->device);
	g_free(t);
}

int sensor_transmitter_latest(sensor_transmitter *t, struct transmitter_reading *r)
{
	int rc;

	g_mutex_lock(&t->lock);
	if (!t->have) {
		rc = -ENODATA;
	} else {
		*r = t->latest;
		rc = vigil_now_us() - r->t_us > (int64_t)t->cfg.stale_ms * 1000 ? -ESTALE : 0;
	}
	g_mutex_unlock(&t->lock);
	return rc;
}

size_t sensor_transmitter_take_trend(sensor_transmitter *t, struct transmitter_reading *out,
				     size_t max)
{
	size_t n;

	g_mutex_lock(&t->lock);
	n = MIN(max, t->trend_count);
	for (size_t i = 0; i < n; i++)
		out[i] = t->trend[(t->trend_head + i) % t->cfg.trend_len];
	t->trend_head = (t->trend_head + n) % t->cfg.trend_len;
	t->trend_count -= n;
	g_mutex_unlock(&t->lock);
	return n;
}

void sensor_transmitter_stats(sensor_transmitter *t, struct transmitter_stats *st)
{
	g_mutex_lock(&t->lock);
	*st = t->st;
	g_mutex_unlock(&t->lock);
}
