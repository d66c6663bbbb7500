/* [vibration.NAME] and [transmitter.NAME]: the vibration sources' settings.
 * The keys, their defaults and their ranges live here, beside the sources
 * that use them; vigild only hands each section to its reader. */
#include <errno.h>
#include <math.h>
#include <string.h>

#include <glib.h>

#include "fusion/condition.h"
#include "sensors/sensors.h"

/* The condition figures' keys are fusion's (condition_config_read): the
 * section is one, so its key list is one. */
static const char *const vibration_keys[] = {
	"pipeline", "mode", "rate_hz", "window", "stride", "offset_ms", "buffer_s",
	"clip_level", "flat_level", "timeout_ms", CONDITION_CONFIG_KEYS, "iio_uri", "iio_device",
	"iio_channel", "iio_unit_scale", "iio_buffer_samples", NULL };

static const char *const transmitter_keys[] = {
	"host", "port", "device", "baud", "parity", "stop_bits", "unit_id", "registers",
	"word_order", "velocity_register", "velocity_type", "velocity_scale",
	"acceleration_register", "acceleration_type", "acceleration_scale",
	"temperature_register", "temperature_type", "temperature_scale",
	"poll_ms", "timeout_ms", "stale_ms", NULL };

/* flat_level's default, in g as the samples are: a window whose range is
 * below 10 mg is a dead sensor. A dead one reads all zero, a constant, or a
 * constant moving by a few ADC steps: a 16-bit ADC over +-50 g (100 mV/g
 * into +-5 V) steps by 1.5 mg, so +-3 steps span 9 mg; the CWRU rig's DAQ
 * steps by 0.16 mg. A running machine is far above it: the quietest
 * 2048-sample window of the CWRU healthy motor spans 0.40 g, the simulated
 * line's quietest (vigil-sim generate, 500 parts) 0.27 g, and a pure
 * running-speed sine at the top of ISO 10816 zone A for small machines
 * (0.71 mm/s RMS at 30 Hz) 39 mg. */
#define FLAT_LEVEL_DEFAULT 0.01

/* NAME of [PREFIXNAME]. */
static char *section_name(const char *group, const char *prefix)
{
	return g_strdup(g_str_has_prefix(group, prefix) ? group + strlen(prefix) : group);
}

int sensor_config_read(const config *cfg, const char *group, struct sensor_settings *s,
		       char **err)
{
	static const char *const sen_modes[] = { "sequence", "clock", NULL };
	struct sensor_config *c = &s->cfg;
	int mode = 0, ival = 0;
	double clip = 0, flat = 0;

	*s = (struct sensor_settings){ 0 };
	if (config_check_keys(cfg, group, vibration_keys, err) < 0)
		return -EINVAL;
	s->name = section_name(group, "vibration.");
	c->name = s->name;
	/* An IIO source (iio_uri) takes the place of the pipeline. */
	if (config_get_string(cfg, group, "iio_uri", "", &s->iio_uri, err) < 0)
		return -EINVAL;
	if (*s->iio_uri) {
		if (config_get_string(cfg, group, "iio_device", NULL, &s->iio_device, err) < 0 ||
		    config_get_string(cfg, group, "iio_channel", NULL, &s->iio_channel, err) < 0 ||
		    config_get_double(cfg, group, "iio_unit_scale", 1, -1e12, 1e12,
				      &c->iio_unit_scale, err) < 0 ||
		    config_get_int(cfg, group, "iio_buffer_samples", 0, 0, 1 << 20, &ival, err) < 0)
			return -EINVAL;
		c->iio_uri = s->iio_uri;
		c->iio_device = s->iio_device;
		c->iio_channel = s->iio_channel;
		c->iio_buffer_samples = (size_t)ival;
	}
	if ((!*s->iio_uri &&
	     config_get_string(cfg, group, "pipeline", NULL, &s->pipeline, err) < 0) ||
	    config_get_choice(cfg, group, "mode", "sequence", sen_modes, &mode, err) < 0 ||
	    config_get_double(cfg, group, "rate_hz", 12000, 100, 1e6, &c->rate_hz, err) < 0 ||
	    config_get_int(cfg, group, "window", 2048, 16, 1 << 22, &ival, err) < 0)
		return -EINVAL;
	c->pipeline = s->pipeline;
	c->mode = (enum sensor_mode)mode;
	c->window = (size_t)ival;
	/* The stride defaults to the window: sequence-mode windows back to back. */
	if (config_get_int(cfg, group, "stride", ival, 1, 1 << 24, &ival, err) < 0 ||
	    config_get_double(cfg, group, "offset_ms", 0, -60000, 60000, &c->offset_ms, err) < 0 ||
	    config_get_double(cfg, group, "buffer_s", 10, 0.1, 3600, &c->buffer_s, err) < 0 ||
	    config_get_double(cfg, group, "clip_level", 0, 0, 1e9, &clip, err) < 0 ||
	    config_get_double(cfg, group, "flat_level", NAN, 0, 1e9, &flat, err) < 0 ||
	    config_get_int(cfg, group, "timeout_ms", 2000, 1, 600000, &s->timeout_ms, err) < 0)
		return -EINVAL;
	/* A window that is not clipped spans less than twice the clip level:
	 * at or above that, every window would be refused one way or the
	 * other. The error names the key the file sets. */
	if (clip > 0 && !isnan(flat) && flat >= 2 * clip) {
		*err = config_error(cfg, group, "flat_level", "%g is not below twice clip_level "
				    "(%g): every window would be flat or clipped", flat, clip);
		return -EINVAL;
	}
	if (isnan(flat))
		flat = FLAT_LEVEL_DEFAULT;
	if (clip > 0 && flat >= 2 * clip) {
		*err = config_error(cfg, group, "clip_level", "%g is not above half of flat_level "
				    "(%g, the default): every window would be flat or clipped; set "
				    "flat_level lower (0: off)", clip, flat);
		return -EINVAL;
	}
	c->stride = (size_t)ival;
	c->clip_level = (float)clip;
	c->flat_level = (float)flat;
	return 0;
}

void sensor_settings_clear(struct sensor_settings *s)
{
	if (!s)
		return;
	g_free(s->name);
	g_free(s->pipeline);
	g_free(s->iio_uri);
	g_free(s->iio_device);
	g_free(s->iio_channel);
	*s = (struct sensor_settings){ 0 };
}

int transmitter_config_read(const config *cfg, const char *group,
			    struct transmitter_settings *s, char **err)
{
	static const char *const quantities[] = { "velocity", "acceleration", "temperature" };
	static const char *const types[] = { "u16", "s16", "u32", "s32", "f32", NULL };
	static const char *const reg_kinds[] = { "holding", "input", NULL };
	static const char *const orders[] = { "ABCD", "CDAB", NULL };
	static const char *const parities[] = { "N", "E", "O", NULL };
	struct transmitter_config *t = &s->cfg;
	int ival = 0;

	*s = (struct transmitter_settings){ 0 };
	if (config_check_keys(cfg, group, transmitter_keys, err) < 0)
		return -EINVAL;
	s->name = section_name(group, "transmitter.");
	t->name = s->name;
	if (config_get_string(cfg, group, "host", "", &s->host, err) < 0 ||
	    config_get_string(cfg, group, "device", "", &s->device, err) < 0 ||
	    config_get_int(cfg, group, "port", 502, 1, 65535, &t->port, err) < 0 ||
	    config_get_int(cfg, group, "baud", 19200, 300, 4000000, &t->baud, err) < 0 ||
	    config_get_choice(cfg, group, "parity", "E", parities, &ival, err) < 0)
		return -EINVAL;
	t->parity = "NEO"[ival];
	if (config_get_int(cfg, group, "stop_bits", 1, 1, 2, &t->stop_bits, err) < 0 ||
	    config_get_int(cfg, group, "unit_id", 1, 0, 247, &t->unit_id, err) < 0 ||
	    config_get_choice(cfg, group, "registers", "input", reg_kinds, &t->input_registers,
			      err) < 0 ||
	    config_get_choice(cfg, group, "word_order", "ABCD", orders, &t->low_word_first,
			      err) < 0 ||
	    config_get_int(cfg, group, "poll_ms", 1000, 10, 3600000, &t->poll_ms, err) < 0 ||
	    config_get_int(cfg, group, "timeout_ms", 500, 10, 60000, &t->timeout_ms, err) < 0 ||
	    config_get_int(cfg, group, "stale_ms", 0, 0, 3600000, &t->stale_ms, err) < 0)
		return -EINVAL;
	if (!*s->host == !*s->device) {
		*err = config_error(cfg, group, "host", "give either host (Modbus TCP) or device "
				    "(Modbus RTU)");
		return -EINVAL;
	}
	t->host = *s->host ? s->host : NULL;
	t->device = *s->device ? s->device : NULL;
	for (int q = 0; q < TRANSMITTER_QUANTITIES; q++) {
		char *k_reg = g_strconcat(quantities[q], "_register", NULL);
		char *k_type = g_strconcat(quantities[q], "_type", NULL);
		char *k_scale = g_strconcat(quantities[q], "_scale", NULL);
		int type = 0, bad;

		bad = config_get_int(cfg, group, k_reg, -1, -1, 65535, &t->reg[q].address,
				     err) < 0 ||
		      config_get_choice(cfg, group, k_type, "u16", types, &type, err) < 0 ||
		      config_get_double(cfg, group, k_scale, 1, -1e9, 1e9, &t->reg[q].scale,
					err) < 0;
		t->reg[q].type = (enum transmitter_type)type;
		g_free(k_reg);
		g_free(k_type);
		g_free(k_scale);
		if (bad)
			return -EINVAL;
	}
	if (t->reg[0].address < 0 && t->reg[1].address < 0 && t->reg[2].address < 0) {
		*err = config_error(cfg, group, "velocity_register",
				    "no register to read (velocity_, acceleration_ or "
				    "temperature_register)");
		return -EINVAL;
	}
	return 0;
}

void transmitter_settings_clear(struct transmitter_settings *s)
{
	if (!s)
		return;
	g_free(s->name);
	g_free(s->host);
	g_free(s->device);
	*s = (struct transmitter_settings){ 0 };
}
