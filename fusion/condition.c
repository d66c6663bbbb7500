#include "fusion/condition.h"

#include <errno.h>
#include <fftw3.h>
#include <glib.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define G_TO_MS2 9.80665

struct condition_meter {
	size_t n, nbins;
	double rate, hf_hz;
	float *in;
	fftwf_complex *spec;
	fftwf_complex *analytic;   /* n complex: the analytic signal of the HF band */
	float *env;                /* envelope (n) */
	fftwf_complex *env_spec;
	double *env_mag;           /* nbins */
	fftwf_plan fwd, inv, env_fwd;
};

int condition_bearing_freqs(const struct bearing_geometry *g, double shaft_hz,
			    struct bearing_freqs *out)
{
	double r, c;

	if (!g || !out || !(g->balls >= 1) || !(g->ball_diameter_mm > 0) ||
	    !(g->pitch_diameter_mm > g->ball_diameter_mm) || !(shaft_hz > 0))
		return -EINVAL;
	r = g->ball_diameter_mm / g->pitch_diameter_mm;
	c = cos(g->contact_angle_deg * G_PI / 180.0);
	out->ftf = shaft_hz / 2.0 * (1.0 - r * c);
	out->bpfo = g->balls * shaft_hz / 2.0 * (1.0 - r * c);
	out->bpfi = g->balls * shaft_hz / 2.0 * (1.0 + r * c);
	out->bsf = g->pitch_diameter_mm / (2.0 * g->ball_diameter_mm) * shaft_hz *
		   (1.0 - r * r * c * c);
	return 0;
}

char condition_iso_zone(double v, enum iso_class cls)
{
	/* Zone boundaries A/B, B/C, C/D in mm/s RMS, 10-1000 Hz. */
	static const double limits[8][3] = {
		{ 0.71, 1.8, 4.5 },   /* 10816-1 class I: small machines up to 15 kW */
		{ 1.12, 2.8, 7.1 },   /* class II: medium machines */
		{ 1.8, 4.5, 11.2 },   /* class III: large, rigid foundations */
		{ 2.8, 7.1, 18.0 },   /* class IV: large, soft foundations */
		{ 2.3, 4.5, 7.1 },    /* 10816-3 group 1 (300 kW-50 MW), rigid */
		{ 3.5, 7.1, 11.0 },   /* group 1, flexible */
		{ 1.4, 2.8, 4.5 },    /* group 2 (15-300 kW), rigid */
		{ 2.3, 4.5, 7.1 },    /* group 2, flexible */
	};
	const double *b = limits[CLAMP((int)cls, 1, 8) - 1];

	return v < b[0] ? 'A' : v < b[1] ? 'B' : v < b[2] ? 'C' : 'D';
}

void condition_meter_free(condition_meter *m)
{
	if (!m)
		return;
	if (m->fwd)
		fftwf_destroy_plan(m->fwd);
	if (m->inv)
		fftwf_destroy_plan(m->inv);
	if (m->env_fwd)
		fftwf_destroy_plan(m->env_fwd);
	fftwf_free(m->in);
	fftwf_free(m->spec);
	fftwf_free(m->analytic);
	fftwf_free(m->env);
	fftwf_free(m->env_spec);
	g_free(m->env_mag);
	g_free(m);
}

/* FFTW's planner is not thread-safe; plans are made under one lock. */
static GMutex plan_lock;

condition_meter *condition_meter_new(size_t n, double rate_hz, double hf_hz)
{
	condition_meter *m;

	if (n < 64 || !(rate_hz > 0) || !(hf_hz > 0) || hf_hz >= rate_hz / 2)
		return NULL;
	m = g_new0(condition_meter, 1);
	m->n = n;
	m->nbins = n / 2 + 1;
	m->rate = rate_hz;
	m->hf_hz = hf_hz;
	m->in = fftwf_alloc_real(n);
	m->spec = fftwf_alloc_complex(m->nbins);
	m->analytic = fftwf_alloc_complex(n);
	m->env = fftwf_alloc_real(n);
	m->env_spec = fftwf_alloc_complex(m->nbins);
	m->env_mag = g_new0(double, m->nbins);
	g_mutex_lock(&plan_lock);
	m->fwd = fftwf_plan_dft_r2c_1d((int)n, m->in, m->spec, FFTW_ESTIMATE);
	m->inv = fftwf_plan_dft_1d((int)n, m->analytic, m->analytic, FFTW_BACKWARD, FFTW_ESTIMATE);
	m->env_fwd = fftwf_plan_dft_r2c_1d((int)n, m->env, m->env_spec, FFTW_ESTIMATE);
	g_mutex_unlock(&plan_lock);
	if (!m->fwd || !m->inv || !m->env_fwd) {
		condition_meter_free(m);
		return NULL;
	}
	return m;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

/* The largest envelope line within one bin of f, over the median line. */
static double env_line(const condition_meter *m, double f, double median)
{
	double df = m->rate / (double)m->n, best = 0;
	long k = lround(f / df);

	for (long i = k - 1; i <= k + 1; i++)
		if (i > 0 && (size_t)i < m->nbins)
			best = MAX(best, m->env_mag[i]);
	return median > 0 ? best / median : 0;
}

int condition_measure(condition_meter *m, const float *x, enum iso_class cls,
		      const struct bearing_freqs *freqs, struct vigil_vibration *out)
{
	size_t n = m->n;
	double df = m->rate / (double)n, mean = 0, m2 = 0, m4 = 0, peak = 0;
	double v2 = 0, hf2 = 0, median;
	double *sorted;

	for (size_t i = 0; i < n; i++) {
		if (!isfinite(x[i]))
			return -EINVAL;
		mean += x[i];
	}
	mean /= (double)n;
	for (size_t i = 0; i < n; i++) {
		double d = x[i] - mean;

		m->in[i] = (float)d;
		m2 += d * d;
		m4 += d * d * d * d;
		peak = MAX(peak, fabs(d));
	}
	m2 /= (double)n;
	m4 /= (double)n;
	out->rms_accel_g = sqrt(m2);
	out->peak_g = peak;
	out->crest_factor = m2 > 0 ? peak / sqrt(m2) : 0;
	out->kurtosis = m2 > 0 ? m4 / (m2 * m2) : 0;

	/* Parseval on the one-sided spectrum (rectangular window): the mean
	 * square of the bins in a band is 2|X_k|^2 / n^2 each (the Nyquist
	 * bin once). Velocity is acceleration over j*2*pi*f. */
	fftwf_execute(m->fwd);
	for (size_t k = 1; k < m->nbins; k++) {
		double f = (double)k * df;
		double p = ((double)m->spec[k][0] * m->spec[k][0] +
			    (double)m->spec[k][1] * m->spec[k][1]) / ((double)n * (double)n);

		if (!(n % 2 == 0 && k == n / 2))
			p *= 2;
		if (f >= 10.0 && f <= 1000.0) {
			double w = 2 * G_PI * f;

			v2 += p * G_TO_MS2 * G_TO_MS2 / (w * w);
		}
		if (f >= m->hf_hz)
			hf2 += p;
	}
	out->rms_velocity_mm_s = sqrt(v2) * 1000.0;
	out->iso_zone = condition_iso_zone(out->rms_velocity_mm_s, cls);
	out->hf_accel_g = sqrt(hf2);

	/* Envelope: keep only the HF band's positive frequencies (doubled), back
	 * to time as the analytic signal, take its magnitude, and transform. */
	memset(m->analytic, 0, sizeof(fftwf_complex) * n);
	for (size_t k = 1; k < m->nbins; k++) {
		if ((double)k * df >= m->hf_hz && k < n - k) {
			m->analytic[k][0] = 2 * m->spec[k][0];
			m->analytic[k][1] = 2 * m->spec[k][1];
		}
	}
	fftwf_execute(m->inv);
	{
		double emean = 0;

		for (size_t i = 0; i < n; i++) {
			double re = m->analytic[i][0] / (double)n, im = m->analytic[i][1] / (double)n;

			m->env[i] = (float)sqrt(re * re + im * im);
			emean += m->env[i];
		}
		emean /= (double)n;
		for (size_t i = 0; i < n; i++)
			m->env[i] -= (float)emean;
	}
	fftwf_execute(m->env_fwd);
	for (size_t k = 0; k < m->nbins; k++)
		m->env_mag[k] = hypot(m->env_spec[k][0], m->env_spec[k][1]) * 2.0 / (double)n;
	sorted = g_memdup2(m->env_mag + 1, sizeof(double) * (m->nbins - 1));
	qsort(sorted, m->nbins - 1, sizeof(double), cmp_double);
	median = sorted[(m->nbins - 1) / 2];
	g_free(sorted);
	out->ftf_env = freqs ? env_line(m, freqs->ftf, median) : 0;
	out->bpfo_env = freqs ? env_line(m, freqs->bpfo, median) : 0;
	out->bpfi_env = freqs ? env_line(m, freqs->bpfi, median) : 0;
	out->bsf_env = freqs ? env_line(m, freqs->bsf, median) : 0;
	return 0;
}

const double *condition_envelope(const condition_meter *m, size_t *n, double *df)
{
	*n = m->nbins;
	*df = m->rate / (double)m->n;
	return m->env_mag;
}
