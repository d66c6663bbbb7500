/* [plc]: the link, the register map and the session's settings (plc.h;
 * the keys are docs/plc.md's Configuration). */
#include "plc/plc.h"

#include <arpa/inet.h>
#include <errno.h>

#include <glib.h>

/* state_file is read by the caller (its default lies beside the database),
 * but it is a [plc] key all the same. */
static const char *const plc_keys[] = {
	"mode", "host", "port", "unit_id", "timeout_ms", "poll_ms", "reject_deadline_ms",
	"trigger_base", "result_base", "status_base",
	"transport", "device", "baud", "parity", "stop_bits", "result_buffer", "peer_timeout_ms",
	"reconnect_min_ms", "reconnect_max_ms", "fault_policy", "job", "state_file", NULL };

/* mode, transport and the endpoint of either transport. */
static int read_endpoint(const config *cfg, const char *g, struct plc_settings *o, char **err)
{
	static const char *const modes[] = { "client", "server", NULL };
	static const char *const transports[] = { "tcp", "rtu", NULL };
	static const char *const parities[] = { "N", "E", "O", NULL };
	struct plc_config *c = &o->link;
	struct in_addr addr;
	int ival = 0;

	if (config_get_choice(cfg, g, "mode", "client", modes, &ival, err) < 0)
		return -EINVAL;
	c->role = ival == 1 ? PLC_ROLE_SERVER : PLC_ROLE_CLIENT;
	if (config_get_choice(cfg, g, "transport", "tcp", transports, &ival, err) < 0)
		return -EINVAL;
	c->transport = ival == 1 ? PLC_TRANSPORT_RTU : PLC_TRANSPORT_TCP;
	if (c->transport == PLC_TRANSPORT_TCP) {
		/* A server listens on every interface unless told otherwise; a
		 * client must be told where the PLC is. */
		if (config_get_string(cfg, g, "host", c->role == PLC_ROLE_SERVER ? "0.0.0.0" : NULL,
				      &o->host, err) < 0 ||
		    config_get_int(cfg, g, "port", 502, 1, 65535, &c->port, err) < 0)
			return -EINVAL;
		if (inet_pton(AF_INET, o->host, &addr) != 1) {
			*err = config_error(cfg, g, "host", "'%s' is not an IPv4 address (no "
					    "host names: libmodbus takes addresses only)", o->host);
			return -EINVAL;
		}
	} else {
		if (config_get_string(cfg, g, "device", NULL, &o->device, err) < 0 ||
		    config_get_int(cfg, g, "baud", 19200, 300, 4000000, &c->baud, err) < 0 ||
		    config_get_choice(cfg, g, "parity", "E", parities, &ival, err) < 0 ||
		    config_get_int(cfg, g, "stop_bits", 1, 1, 2, &c->stop_bits, err) < 0)
			return -EINVAL;
		c->parity = "NEO"[ival];
		o->host = g_strdup("");
	}
	return 0;
}

/* The key an overlap error names: the block base the file sets (the others
 * keep their defaults, so it is the one that moved onto another block),
 * status_base when it sets several or none. */
static const char *overlap_key(const config *cfg, const char *group)
{
	static const char *const bases[] = { "trigger_base", "result_base", "status_base" };
	const char *key = NULL;
	int set = 0;

	for (size_t i = 0; i < G_N_ELEMENTS(bases); i++) {
		char *v = NULL, *e = NULL;

		if (config_get_string(cfg, group, bases[i], "", &v, &e) == 0 && *v) {
			key = bases[i];
			set++;
		}
		g_free(v);
		g_free(e);
	}
	return set == 1 ? key : "status_base";
}

int plc_config_read(const config *cfg, const char *group, struct plc_settings *out,
		    char **err)
{
	static const char *const fault_policies[] = { "reject_all", "stop_line", NULL };
	struct plc_config *c = &out->link;
	int policy = 0;

	*out = (struct plc_settings){ .link.map = PLC_REGMAP_DEFAULT };
	if (config_check_keys(cfg, group, plc_keys, err) < 0 ||
	    read_endpoint(cfg, group, out, err) < 0)
		return -EINVAL;
	if (config_get_int(cfg, group, "unit_id", 1, c->transport == PLC_TRANSPORT_RTU ? 1 : 0,
			   247, &c->unit_id, err) < 0 ||
	    config_get_int(cfg, group, "timeout_ms", 500, 10, 60000, &c->timeout_ms, err) < 0 ||
	    config_get_int(cfg, group, "poll_ms", 5, 1, 10000, &out->poll_ms, err) < 0 ||
	    config_get_int(cfg, group, "reject_deadline_ms", 1000, 10, 600000,
			   &out->reject_deadline_ms, err) < 0 ||
	    config_get_int(cfg, group, "trigger_base", 0, 0, 65536 - PLC_TRIG_REGS,
			   &c->map.trigger_base, err) < 0 ||
	    config_get_int(cfg, group, "result_base", 10, 0, 65536 - PLC_RES_REGS,
			   &c->map.result_base, err) < 0 ||
	    config_get_int(cfg, group, "status_base", 20, 0, 65536 - PLC_STAT_REGS,
			   &c->map.status_base, err) < 0 ||
	    config_get_int(cfg, group, "result_buffer", 32, 0, 10000, &out->result_buffer,
			   err) < 0 ||
	    config_get_int(cfg, group, "peer_timeout_ms", 2000, 10, 600000,
			   &out->peer_timeout_ms, err) < 0 ||
	    config_get_int(cfg, group, "reconnect_min_ms", 100, 1, 600000,
			   &out->reconnect_min_ms, err) < 0 ||
	    config_get_int(cfg, group, "reconnect_max_ms", 5000, out->reconnect_min_ms, 600000,
			   &out->reconnect_max_ms, err) < 0 ||
	    config_get_choice(cfg, group, "fault_policy", "reject_all", fault_policies, &policy,
			      err) < 0 ||
	    config_get_int(cfg, group, "job", 0, 0, PLC_MAX_JOBS, &out->job, err) < 0)
		return -EINVAL;
	out->fault_policy = (enum plc_fault_policy)policy;
	if (plc_regmap_check(&c->map) < 0) {
		const struct plc_regmap *m = &c->map;

		*err = config_error(cfg, group, overlap_key(cfg, group),
				    "blocks overlap: trigger at %d..%d, result at %d..%d, status "
				    "at %d..%d", m->trigger_base, m->trigger_base + PLC_TRIG_REGS - 1,
				    m->result_base, m->result_base + PLC_RES_REGS - 1,
				    m->status_base, m->status_base + PLC_STAT_REGS - 1);
		return -EINVAL;
	}
	c->host = out->host;
	c->device = out->device;
	return 0;
}

void plc_settings_clear(struct plc_settings *s)
{
	if (!s)
		return;
	g_free(s->host);
	g_free(s->device);
	*s = (struct plc_settings){ 0 };
}
