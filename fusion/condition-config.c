/* The condition figures' keys of a [vibration.NAME] section: the machine
 * group, the envelope band and the bearing. They live here, beside the
 * meter that uses them; the vibration source reads the rest of the section
 * (sensors/sensor-config.c). */
#include <errno.h>

#include "fusion/condition.h"

int condition_config_read(const config *cfg, const char *group, double rate_hz,
			  struct condition_settings *s, char **err)
{
	static const char *const iso_classes[] = { CONDITION_ISO_CLASSES, NULL };
	struct bearing_geometry g = { 0 };
	int cls = 0;

	*s = (struct condition_settings){ .iso_class = ISO_CLASS_I, .hf_hz = 2000 };
	if (config_get_choice(cfg, group, "iso_class", "I", iso_classes, &cls, err) < 0 ||
	    config_get_double(cfg, group, "hf_hz", 2000, 10, 1e6, &s->hf_hz, err) < 0 ||
	    config_get_double(cfg, group, "shaft_hz", 0, 0, 10000, &s->shaft_hz, err) < 0 ||
	    config_get_double(cfg, group, "bearing_balls", 0, 0, 1000, &g.balls, err) < 0 ||
	    config_get_double(cfg, group, "ball_diameter_mm", 0, 0, 1e4,
			      &g.ball_diameter_mm, err) < 0 ||
	    config_get_double(cfg, group, "pitch_diameter_mm", 0, 0, 1e5,
			      &g.pitch_diameter_mm, err) < 0 ||
	    config_get_double(cfg, group, "contact_angle_deg", 0, 0, 89,
			      &g.contact_angle_deg, err) < 0)
		return -EINVAL;
	s->iso_class = (enum iso_class)(cls + 1);
	if (rate_hz > 0 && s->hf_hz >= rate_hz / 2) {
		*err = config_error(cfg, group, "hf_hz", "%g Hz is not below Nyquist (%g Hz)",
				    s->hf_hz, rate_hz / 2);
		return -EINVAL;
	}
	if (s->shaft_hz > 0) {
		if (condition_bearing_freqs(&g, s->shaft_hz, &s->bearing) < 0) {
			*err = config_error(cfg, group, "bearing_balls",
					    "shaft_hz is set but the bearing geometry is "
					    "incomplete (bearing_balls, ball_diameter_mm < "
					    "pitch_diameter_mm)");
			return -EINVAL;
		}
		s->have_bearing = 1;
	}
	return 0;
}
