/* Condition figures of one vibration window, as vibration instruments
 * report them: RMS velocity 10-1000 Hz with its ISO 10816 zone, RMS and
 * high-frequency acceleration, peak, crest factor, kurtosis, and the
 * envelope spectrum read at the bearing defect frequencies. Logged with
 * every part; the same spectra can feed the signal model. */
#ifndef VIGIL_FUSION_CONDITION_H
#define VIGIL_FUSION_CONDITION_H

#include <stddef.h>

#include "core/config.h"
#include "core/part.h"

/* Rolling-element bearing geometry (from the bearing's data sheet). */
struct bearing_geometry {
	double balls;              /* number of rolling elements */
	double ball_diameter_mm;
	double pitch_diameter_mm;
	double contact_angle_deg;
};

/* Defect frequencies in Hz at a shaft speed. */
struct bearing_freqs {
	double ftf;   /* cage (fundamental train) */
	double bpfo;  /* ball pass, outer race */
	double bpfi;  /* ball pass, inner race */
	double bsf;   /* ball spin */
};

/* The textbook kinematic formulas; -EINVAL on a geometry that is not one. */
int condition_bearing_freqs(const struct bearing_geometry *g, double shaft_hz,
			    struct bearing_freqs *out);

/* The machine's class for the zone limits (mm/s RMS): ISO 10816-1's
 * classes I-IV (small machines up to large ones on soft foundations), or
 * ISO 10816-3's groups for machines above 15 kW in situ (group 2: 15-300
 * kW, group 1: 300 kW-50 MW), each on a rigid or a flexible foundation. */
enum iso_class {
	ISO_CLASS_I = 1, ISO_CLASS_II, ISO_CLASS_III, ISO_CLASS_IV,
	ISO_GROUP1_RIGID, ISO_GROUP1_FLEXIBLE, ISO_GROUP2_RIGID, ISO_GROUP2_FLEXIBLE,
};

/* The names iso_class takes in a configuration, in enum order. */
#define CONDITION_ISO_CLASSES "I", "II", "III", "IV", "group1-rigid", "group1-flexible", \
	"group2-rigid", "group2-flexible"

/* 'A' (new machine) .. 'D' (damage likely). */
char condition_iso_zone(double v_rms_mm_s, enum iso_class cls);

/* The condition figures' keys of a [vibration.NAME] section, in the order
 * the section's key list (sensors/sensor-config.c) names them. */
#define CONDITION_CONFIG_KEYS "iso_class", "hf_hz", "shaft_hz", "bearing_balls", \
	"ball_diameter_mm", "pitch_diameter_mm", "contact_angle_deg"

/* What condition_config_read makes of them. */
struct condition_settings {
	enum iso_class iso_class;  /* iso_class (I): one of CONDITION_ISO_CLASSES */
	double hf_hz;              /* hf_hz: the envelope band's lower edge (2000) */
	double shaft_hz;           /* shaft_hz (0: no bearing lines) */
	int have_bearing;          /* shaft_hz and the geometry are set */
	struct bearing_freqs bearing;
};

/* Reads the keys above from section group ("vibration.NAME") into *s,
 * which it overwrites (defaults first, so a failure leaves what was read
 * until then). 0, or -EINVAL with *err (g_free it) naming the file, line
 * and key: a value out of range, hf_hz not below the Nyquist frequency of
 * rate_hz (rate_hz <= 0: not checked), or shaft_hz without a complete
 * bearing geometry. */
int condition_config_read(const config *cfg, const char *group, double rate_hz,
			  struct condition_settings *s, char **err);

typedef struct condition_meter condition_meter;

/* A meter for windows of n samples at rate_hz; hf_hz is the lower edge of
 * the high-frequency band (envelope demodulation band). NULL on bad input. */
condition_meter *condition_meter_new(size_t n, double rate_hz, double hf_hz);
void condition_meter_free(condition_meter *m);

/* x in g. freqs may be NULL (no envelope lines). */
int condition_measure(condition_meter *m, const float *x, enum iso_class cls,
		      const struct bearing_freqs *freqs, struct vigil_vibration *out);

/* The envelope spectrum of the last measured window: *n bins of *df Hz
 * (owned by the meter, valid until the next measure). */
const double *condition_envelope(const condition_meter *m, size_t *n, double *df);

#endif
