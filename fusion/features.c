/* Vibration features of one window (FUSION_SIGFEAT_VERSION "vigil-sigfeat-v1").
 *
 * Layout, for a window of N samples at rate R (Nyquist R/2); the model
 * packages name this layout and any change to it needs a new version name:
 *
 *   [0, 64)   log10 of the mean power per bin (g^2, see fusion_power_spectrum)
 *             of the mean-removed window in 64 equal bands from 0 Hz to R/2
 *             (band b holds the bins with b*R/128 <= f < (b+1)*R/128; DC is
 *             left out, the Nyquist bin goes to the last band), floor 1e-12.
 *   [64, 96)  log10 of the squared-envelope spectrum in 32 bands of 18.75 Hz
 *             from 0 to 600 Hz, where the defect frequencies of common rolling
 *             bearings lie (and, near 1800 rpm, their second harmonics). The
 *             squared envelope is |analytic signal|^2 of the window high-passed
 *             at 2 kHz (R/6 when R < 12 kHz): impacts of a damaged bearing ring
 *             structural resonances in the kHz range, above shaft harmonics
 *             and gear mesh, and the envelope of that band repeats at the
 *             defect frequency (squaring favours impacts over steady noise).
 *             Its mean is removed, its power spectrum (Hann) is divided by the
 *             squared mean, so the band values are modulation depths that do
 *             not depend on the signal level; floor 1e-10.
 *   [96]      log10(RMS + 1e-9) of the mean-removed window (g).
 *   [97]      ln(crest factor), 0 for a constant window.
 *   [98]      ln(kurtosis) (m4 / m2^2, 3 for Gaussian noise), 0 for a constant
 *             window.
 *   [99]      ln(kurtosis) of the high-passed band signal over the window less
 *             N/32 samples at each end, the classic impact indicator.
 *
 * A band without a bin of its own (short windows) takes the bin nearest its
 * centre. The logs make the inputs scale-robust: a gain change shifts the
 * power and RMS features by a constant and leaves the rest unchanged.
 *
 * The analytic signal comes from the spectrum of the window tapered by a
 * Tukey window (N/32 cosine samples at each end): without the taper the
 * jump between the window's ends would look like an impact to the high-pass.
 *
 * Plans are made with FFTW_ESTIMATE so the same input gives bit-identical
 * features on every run; planning is serialised because FFTW's planner is
 * not thread-safe (executing plans is). */
#include <errno.h>
#include <fftw3.h>
#include <glib.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fusion/fusion.h"
#include "fusion/prep-math.h"

#define POWER_BANDS FP_POWER_BANDS
#define ENV_BANDS FP_ENV_BANDS
#define SIGFEAT_DIM FP_SIGFEAT_DIM

struct fusion_sigfeat {
	size_t n;
	size_t nbins;              /* n/2 + 1 */
	double rate_hz;
	size_t highpass_bin;       /* first bin kept for the envelope */
	size_t edge;               /* Tukey taper length and kurtosis margin */
	float *hann;
	float *tukey;
	float *real_in;            /* r2c input */
	fftwf_complex *spec;       /* r2c output */
	fftwf_complex *analytic_spec;
	fftwf_complex *analytic;   /* c2c backward output */
	float *centred;
	float *envelope;           /* squared envelope, |analytic|^2 */
	double *power;
	int *power_band_lo, *power_band_hi;   /* bin ranges [lo, hi) */
	int *env_band_lo, *env_band_hi;
	fftwf_plan r2c;
	fftwf_plan analytic_plan;  /* complex-to-complex, backward */
};

static GMutex planner_lock;

fusion_sigfeat *fusion_sigfeat_new(size_t window_len, double rate_hz)
{
	fusion_sigfeat *f;

	if (window_len < 64 || window_len > (1u << 24) || !(rate_hz > 0) || !isfinite(rate_hz))
		return NULL;
	f = calloc(1, sizeof *f);
	if (!f)
		return NULL;
	f->n = window_len;
	f->nbins = window_len / 2 + 1;
	f->rate_hz = rate_hz;
	f->edge = window_len / 32;
	f->highpass_bin = fp_highpass_bin(window_len, rate_hz);

	f->hann = fftwf_malloc(sizeof(float) * f->n);
	f->tukey = fftwf_malloc(sizeof(float) * f->n);
	f->real_in = fftwf_malloc(sizeof(float) * f->n);
	f->centred = fftwf_malloc(sizeof(float) * f->n);
	f->envelope = fftwf_malloc(sizeof(float) * f->n);
	f->spec = fftwf_malloc(sizeof(fftwf_complex) * f->nbins);
	f->analytic_spec = fftwf_malloc(sizeof(fftwf_complex) * f->n);
	f->analytic = fftwf_malloc(sizeof(fftwf_complex) * f->n);
	f->power = calloc(f->nbins, sizeof(double));
	f->power_band_lo = calloc(POWER_BANDS, sizeof(int));
	f->power_band_hi = calloc(POWER_BANDS, sizeof(int));
	f->env_band_lo = calloc(ENV_BANDS, sizeof(int));
	f->env_band_hi = calloc(ENV_BANDS, sizeof(int));
	if (!f->hann || !f->tukey || !f->real_in || !f->centred || !f->envelope || !f->spec ||
	    !f->analytic_spec || !f->analytic || !f->power || !f->power_band_lo ||
	    !f->power_band_hi || !f->env_band_lo || !f->env_band_hi)
		goto fail;

	/* The formulas are fusion/prep-math.h's, which the GPU path shares. */
	for (size_t i = 0; i < f->n; i++) {
		/* Periodic Hann: the DFT of a bin-centred sine leaks into exactly
		 * the two neighbouring bins at half amplitude. */
		f->hann[i] = fp_hann(i, f->n);
		f->tukey[i] = fp_tukey(i, f->n);
	}
	for (int b = 0; b < POWER_BANDS; b++)
		fp_feature_band(b, f->n, rate_hz, &f->power_band_lo[b], &f->power_band_hi[b]);
	for (int b = 0; b < ENV_BANDS; b++)
		fp_feature_band(POWER_BANDS + b, f->n, rate_hz, &f->env_band_lo[b],
				&f->env_band_hi[b]);

	g_mutex_lock(&planner_lock);
	f->r2c = fftwf_plan_dft_r2c_1d((int)f->n, f->real_in, f->spec, FFTW_ESTIMATE);
	f->analytic_plan = fftwf_plan_dft_1d((int)f->n, f->analytic_spec, f->analytic,
					    FFTW_BACKWARD, FFTW_ESTIMATE);
	g_mutex_unlock(&planner_lock);
	if (!f->r2c || !f->analytic_plan)
		goto fail;
	return f;
fail:
	fusion_sigfeat_free(f);
	return NULL;
}

void fusion_sigfeat_free(fusion_sigfeat *f)
{
	if (!f)
		return;
	g_mutex_lock(&planner_lock);
	if (f->r2c)
		fftwf_destroy_plan(f->r2c);
	if (f->analytic_plan)
		fftwf_destroy_plan(f->analytic_plan);
	g_mutex_unlock(&planner_lock);
	fftwf_free(f->hann);
	fftwf_free(f->tukey);
	fftwf_free(f->real_in);
	fftwf_free(f->centred);
	fftwf_free(f->envelope);
	fftwf_free(f->spec);
	fftwf_free(f->analytic_spec);
	fftwf_free(f->analytic);
	free(f->power);
	free(f->power_band_lo);
	free(f->power_band_hi);
	free(f->env_band_lo);
	free(f->env_band_hi);
	free(f);
}

size_t fusion_sigfeat_dim(const fusion_sigfeat *f)
{
	return f ? SIGFEAT_DIM : 0;
}

static int all_finite(const float *x, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!isfinite(x[i]))
			return 0;
	return 1;
}

/* Hann-windowed one-sided power of f->real_in (already windowed) into
 * f->power. Scaled so that the bins sum to the window's mean square for a
 * stationary signal: a sine of amplitude A between bins sums to A^2/2, and
 * one centred on bin k gives A^2/3 there and A^2/12 in each neighbour. */
static void windowed_power(fusion_sigfeat *f)
{
	fftwf_execute(f->r2c);
	for (size_t k = 0; k < f->nbins; k++)
		f->power[k] = fp_power(f->spec[k][0], f->spec[k][1], k, f->n);
}

int fusion_power_spectrum(fusion_sigfeat *f, const float *x, float *power)
{
	if (!f || !x || !power)
		return -EINVAL;
	if (!all_finite(x, f->n))
		return -EINVAL;
	for (size_t i = 0; i < f->n; i++)
		f->real_in[i] = x[i] * f->hann[i];
	windowed_power(f);
	for (size_t k = 0; k < f->nbins; k++)
		power[k] = (float)f->power[k];
	return 0;
}

int fusion_condition(const float *x, size_t n, struct fusion_condition *out)
{
	double mean = 0, m2 = 0, m4 = 0, ms = 0, peak = 0;

	if (!x || !out || n == 0)
		return -EINVAL;
	for (size_t i = 0; i < n; i++) {
		if (!isfinite(x[i]))
			return -EINVAL;
		mean += x[i];
		ms += (double)x[i] * x[i];
		if (fabs(x[i]) > peak)
			peak = fabs(x[i]);
	}
	mean /= (double)n;
	ms /= (double)n;
	for (size_t i = 0; i < n; i++) {
		double d = x[i] - mean, d2 = d * d;

		m2 += d2;
		m4 += d2 * d2;
	}
	m2 /= (double)n;
	m4 /= (double)n;
	/* RMS and peak as a vibration meter shows them, on the signal as
	 * given; kurtosis from central moments (Pearson, 3 for Gaussian). */
	out->rms = (float)sqrt(ms);
	out->peak = (float)peak;
	out->crest_factor = ms > 0 ? (float)(peak / sqrt(ms)) : 0.0f;
	out->kurtosis = m2 > 0 ? (float)(m4 / (m2 * m2)) : 0.0f;
	return 0;
}

static float log_or_zero(double v)
{
	return v > 0 ? (float)log(v) : 0.0f;
}

int fusion_sigfeat_compute(fusion_sigfeat *f, const float *x, float *out)
{
	struct fusion_condition c;
	double mean = 0, env_mean = 0, m2 = 0, m4 = 0, inv_n;
	size_t n, half;
	float *o = out;
	int rc;

	if (!f || !x || !out)
		return -EINVAL;
	n = f->n;
	half = n / 2;
	inv_n = 1.0 / (double)n;
	if (!all_finite(x, n))
		return -EINVAL;
	for (size_t i = 0; i < n; i++)
		mean += x[i];
	mean *= inv_n;
	for (size_t i = 0; i < n; i++)
		f->centred[i] = (float)(x[i] - mean);
	if ((rc = fusion_condition(f->centred, n, &c)) < 0)
		return rc;

	/* Band powers. */
	for (size_t i = 0; i < n; i++)
		f->real_in[i] = f->centred[i] * f->hann[i];
	windowed_power(f);
	for (int b = 0; b < POWER_BANDS; b++) {
		double s = 0;
		int lo = f->power_band_lo[b], hi = f->power_band_hi[b];

		for (int k = lo; k < hi; k++)
			s += f->power[k];
		*o++ = fp_power_feature(s / (hi - lo));
	}

	/* Analytic signal of the high band: positive frequencies doubled,
	 * negative ones dropped, everything below the cut-off dropped. */
	for (size_t i = 0; i < n; i++)
		f->real_in[i] = f->centred[i] * f->tukey[i];
	fftwf_execute(f->r2c);
	memset(f->analytic_spec, 0, sizeof(fftwf_complex) * n);
	for (size_t k = f->highpass_bin; k <= half; k++) {
		double g = fp_analytic_gain(k, n, f->highpass_bin);

		f->analytic_spec[k][0] = (float)(g * f->spec[k][0]);
		f->analytic_spec[k][1] = (float)(g * f->spec[k][1]);
	}
	fftwf_execute(f->analytic_plan);
	for (size_t i = 0; i < n; i++) {
		double re = f->analytic[i][0] * inv_n, im = f->analytic[i][1] * inv_n;

		f->envelope[i] = (float)(re * re + im * im);
		env_mean += f->envelope[i];
	}
	env_mean *= inv_n;
	{
		size_t cnt = 0;
		double hmean = 0;

		for (size_t i = f->edge; i < n - f->edge; i++, cnt++)
			hmean += f->analytic[i][0] * inv_n;
		hmean /= (double)cnt;
		for (size_t i = f->edge; i < n - f->edge; i++) {
			double d = f->analytic[i][0] * inv_n - hmean, d2 = d * d;

			m2 += d2;
			m4 += d2 * d2;
		}
		m2 /= (double)cnt;
		m4 /= (double)cnt;
	}

	/* Envelope spectrum as modulation depth. */
	for (size_t i = 0; i < n; i++)
		f->real_in[i] = (float)((f->envelope[i] - env_mean) * f->hann[i]);
	windowed_power(f);
	for (int b = 0; b < ENV_BANDS; b++) {
		double s = 0;
		int lo = f->env_band_lo[b], hi = f->env_band_hi[b];

		for (int k = lo; k < hi; k++)
			s += f->power[k];
		*o++ = fp_envelope_feature(s / (hi - lo), env_mean);
	}

	*o++ = (float)log10(c.rms + 1e-9);
	*o++ = log_or_zero(c.crest_factor);
	*o++ = log_or_zero(c.kurtosis);
	*o++ = m2 > 0 ? log_or_zero(m4 / (m2 * m2)) : 0.0f;
	return 0;
}
