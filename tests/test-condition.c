/* fusion/condition: vibration condition figures against closed-form values. */
#include <errno.h>
#include <glib.h>
#include <math.h>
#include <string.h>

#include "fusion/condition.h"

#define RATE 12000.0

/* CWRU's drive-end bearing, SKF 6205-2RS JEM. */
static const struct bearing_geometry skf6205 = { 9, 7.94, 39.04, 0 };

static void test_bearing_frequencies(void)
{
	struct bearing_freqs f;
	double shaft = 1797.0 / 60.0;

	g_assert_cmpint(condition_bearing_freqs(&skf6205, shaft, &f), ==, 0);
	/* The multiples of shaft speed published with the CWRU data. */
	g_assert_cmpfloat_with_epsilon(f.bpfo / shaft, 3.5848, 2e-4);
	g_assert_cmpfloat_with_epsilon(f.bpfi / shaft, 5.4152, 2e-4);
	g_assert_cmpfloat_with_epsilon(f.ftf / shaft, 0.39828, 2e-4);
	g_assert_cmpfloat_with_epsilon(2 * f.bsf / shaft, 4.7135, 5e-4);
	g_assert_cmpint(condition_bearing_freqs(&skf6205, 0, &f), <, 0);
	{
		struct bearing_geometry bad = { 9, 40, 39, 0 };

		g_assert_cmpint(condition_bearing_freqs(&bad, shaft, &f), <, 0);
	}
}

static void test_iso_zones(void)
{
	g_assert_cmpint(condition_iso_zone(0.70, ISO_CLASS_I), ==, 'A');
	g_assert_cmpint(condition_iso_zone(0.71, ISO_CLASS_I), ==, 'B');
	g_assert_cmpint(condition_iso_zone(1.79, ISO_CLASS_I), ==, 'B');
	g_assert_cmpint(condition_iso_zone(1.80, ISO_CLASS_I), ==, 'C');
	g_assert_cmpint(condition_iso_zone(4.50, ISO_CLASS_I), ==, 'D');
	g_assert_cmpint(condition_iso_zone(2.00, ISO_CLASS_II), ==, 'B');
	g_assert_cmpint(condition_iso_zone(11.2, ISO_CLASS_III), ==, 'D');
	g_assert_cmpint(condition_iso_zone(11.1, ISO_CLASS_IV), ==, 'C');
	/* ISO 10816-3's groups: the demo rig's healthy 1.3-3.8 mm/s is A/B on a
	 * flexible group 2 foundation, C from 2.8 on a rigid one. */
	g_assert_cmpint(condition_iso_zone(2.29, ISO_GROUP2_FLEXIBLE), ==, 'A');
	g_assert_cmpint(condition_iso_zone(3.8, ISO_GROUP2_FLEXIBLE), ==, 'B');
	g_assert_cmpint(condition_iso_zone(4.5, ISO_GROUP2_FLEXIBLE), ==, 'C');
	g_assert_cmpint(condition_iso_zone(2.8, ISO_GROUP2_RIGID), ==, 'C');
	g_assert_cmpint(condition_iso_zone(4.5, ISO_GROUP2_RIGID), ==, 'D');
	g_assert_cmpint(condition_iso_zone(3.4, ISO_GROUP1_FLEXIBLE), ==, 'A');
	g_assert_cmpint(condition_iso_zone(11.0, ISO_GROUP1_FLEXIBLE), ==, 'D');
	g_assert_cmpint(condition_iso_zone(7.0, ISO_GROUP1_RIGID), ==, 'C');
}

static void test_velocity_of_a_sine(void)
{
	size_t n = 12000;
	condition_meter *m = condition_meter_new(n, RATE, 2000);
	float *x = g_new(float, n);
	struct vigil_vibration c;
	/* 1 g at 100 Hz: velocity amplitude 9.80665 / (2 pi 100) m/s. */
	double want = 9.80665 / (2 * G_PI * 100) / sqrt(2) * 1000;

	for (size_t i = 0; i < n; i++)
		x[i] = (float)(sin(2 * G_PI * 100 * (double)i / RATE) +
			       0.5 * sin(2 * G_PI * 5 * (double)i / RATE)); /* below the band */
	g_assert_cmpint(condition_measure(m, x, ISO_CLASS_I, NULL, &c), ==, 0);
	g_test_message("v_rms %.4f mm/s, want %.4f", c.rms_velocity_mm_s, want);
	g_assert_cmpfloat(fabs(c.rms_velocity_mm_s - want) / want, <, 0.01);
	g_assert_cmpint(c.iso_zone, ==, 'D');

	for (size_t i = 0; i < n; i++)
		x[i] = (float)sin(2 * G_PI * 100 * (double)i / RATE);
	g_assert_cmpint(condition_measure(m, x, ISO_CLASS_I, NULL, &c), ==, 0);
	g_assert_cmpfloat_with_epsilon(c.rms_accel_g, 1 / sqrt(2), 1e-4);
	g_assert_cmpfloat_with_epsilon(c.crest_factor, sqrt(2), 1e-3);
	g_assert_cmpfloat_with_epsilon(c.kurtosis, 1.5, 1e-3);
	g_assert_cmpfloat(c.hf_accel_g, <, 1e-3);

	x[7] = NAN;
	g_assert_cmpint(condition_measure(m, x, ISO_CLASS_I, NULL, &c), <, 0);
	g_free(x);
	condition_meter_free(m);
}

/* An outer-race fault: impacts at BPFO, each ringing a 3 kHz resonance. */
static void test_bpfo_line_of_a_bearing_signal(void)
{
	size_t n = 12000;
	condition_meter *m = condition_meter_new(n, RATE, 2000);
	float *x = g_new0(float, n);
	struct bearing_freqs f;
	struct vigil_vibration c;
	const double *env;
	size_t nbins, peak = 0;
	double df, shaft = 1797.0 / 60.0;
	GRand *rng = g_rand_new_with_seed(7);

	condition_bearing_freqs(&skf6205, shaft, &f);
	for (size_t i = 0; i < n; i++) {
		double t = (double)i / RATE;

		x[i] = (float)(0.3 * sin(2 * G_PI * shaft * t) + 0.05 * g_rand_double_range(rng, -1, 1));
	}
	for (double t0 = 0.001; t0 < (double)n / RATE; t0 += 1 / f.bpfo) {
		for (size_t i = (size_t)(t0 * RATE); i < n && i < (size_t)(t0 * RATE) + 200; i++) {
			double t = (double)i / RATE - t0;

			x[i] += (float)(0.8 * exp(-t * 900) * sin(2 * G_PI * 3000 * t));
		}
	}
	g_assert_cmpint(condition_measure(m, x, ISO_CLASS_I, &f, &c), ==, 0);
	env = condition_envelope(m, &nbins, &df);
	for (size_t k = (size_t)(20 / df); k < (size_t)(500 / df); k++)
		if (env[k] > env[peak])
			peak = k;
	g_test_message("envelope peak %.2f Hz, BPFO %.2f Hz; line %.1f x median, BPFI %.1f x",
		       (double)peak * df, f.bpfo, c.bpfo_env, c.bpfi_env);
	g_assert_cmpfloat(fabs((double)peak * df - f.bpfo), <=, df);
	g_assert_cmpfloat(c.bpfo_env, >, 10);
	g_assert_cmpfloat(c.bpfo_env, >, 3 * c.bpfi_env);
	g_assert_cmpfloat(c.kurtosis, >, 3.0); /* impulsive; a sine is 1.5 */
	g_rand_free(rng);
	g_free(x);
	condition_meter_free(m);
}

/* The condition figures' keys of [vibration.NAME]: the documented
 * defaults, the bearing lines, and errors named by file, line and key. */
static void test_condition_settings(void)
{
	static const char text[] =
		"[vibration.plain]\n"
		"pipeline = x\n"
		"\n"
		"[vibration.bearing]\n"
		"iso_class = III\n"
		"shaft_hz = 25\n"
		"bearing_balls = 9\n"
		"ball_diameter_mm = 7.94\n"
		"pitch_diameter_mm = 39.04\n"
		"\n"
		"[vibration.half]\n"
		"shaft_hz = 25\n"
		"\n"
		"[vibration.fast]\n"
		"hf_hz = 6000\n"
		"\n"
		"[vibration.rig]\n"
		"iso_class = group2-flexible\n"
		"\n"
		"[vibration.typo]\n"
		"iso_class = group3\n";
	struct condition_settings s;
	struct bearing_freqs f;
	struct bearing_geometry g = { 9, 7.94, 39.04, 0 };
	char *err = NULL;
	config *c = config_load_data(text, "line.conf", &err);

	g_assert_nonnull(c);
	g_assert_cmpint(condition_config_read(c, "vibration.plain", 12000, &s, &err), ==, 0);
	g_assert_cmpint(s.iso_class, ==, ISO_CLASS_I);
	g_assert_cmpfloat(s.hf_hz, ==, 2000);
	g_assert_cmpfloat(s.shaft_hz, ==, 0);
	g_assert_false(s.have_bearing);

	g_assert_cmpint(condition_config_read(c, "vibration.bearing", 12000, &s, &err), ==, 0);
	g_assert_cmpint(s.iso_class, ==, ISO_CLASS_III);
	g_assert_true(s.have_bearing);
	g_assert_cmpint(condition_bearing_freqs(&g, 25, &f), ==, 0);
	g_assert_cmpfloat(s.bearing.bpfo, ==, f.bpfo);

	g_assert_cmpint(condition_config_read(c, "vibration.half", 12000, &s, &err), ==, -EINVAL);
	g_assert_true(g_str_has_prefix(err, "line.conf:11: [vibration.half] bearing_balls: "
					    "shaft_hz is set but the bearing geometry is incomplete"));
	g_clear_pointer(&err, g_free);

	/* hf_hz must lie below the source's Nyquist; without a rate it is not checked. */
	g_assert_cmpint(condition_config_read(c, "vibration.fast", 16000, &s, &err), ==, 0);
	g_assert_cmpint(condition_config_read(c, "vibration.fast", 8000, &s, &err), ==, -EINVAL);
	g_assert_cmpstr(err, ==, "line.conf:15: [vibration.fast] hf_hz: 6000 Hz is not below "
			"Nyquist (4000 Hz)");
	g_clear_pointer(&err, g_free);
	g_assert_cmpint(condition_config_read(c, "vibration.fast", 0, &s, &err), ==, 0);

	g_assert_cmpint(condition_config_read(c, "vibration.rig", 12000, &s, &err), ==, 0);
	g_assert_cmpint(s.iso_class, ==, ISO_GROUP2_FLEXIBLE);
	g_assert_cmpint(condition_config_read(c, "vibration.typo", 12000, &s, &err), ==, -EINVAL);
	g_test_message("%s", err);
	g_assert_true(g_str_has_prefix(err, "line.conf:21: [vibration.typo] iso_class: "));
	g_assert_nonnull(strstr(err, "group2-flexible"));
	g_clear_pointer(&err, g_free);
	config_free(c);
}

int main(int argc, char **argv)
{
	g_test_init(&argc, &argv, NULL);
	g_test_add_func("/condition/bearing-frequencies", test_bearing_frequencies);
	g_test_add_func("/condition/iso-zones", test_iso_zones);
	g_test_add_func("/condition/velocity-of-a-sine", test_velocity_of_a_sine);
	g_test_add_func("/condition/bpfo-line-of-a-bearing-signal", test_bpfo_line_of_a_bearing_signal);
	g_test_add_func("/condition/settings", test_condition_settings);
	return g_test_run();
}
