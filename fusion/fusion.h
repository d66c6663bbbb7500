/* Turning one part's frame and vibration window into model inputs.
 * The same code runs in vigild and in tools/vigil-features, which the
 * training tool calls, so training and run time see identical inputs. */
#ifndef VIGIL_FUSION_FUSION_H
#define VIGIL_FUSION_FUSION_H

#include <stddef.h>
#include <stdint.h>

/* Name of the signal feature layout computed below; a model manifest names
 * the layout it was trained on and vigild refuses a mismatch. */
#define FUSION_SIGFEAT_VERSION "vigil-sigfeat-v1"

/* Image preprocessing: resize (area averaging when shrinking) to out_w x
 * out_h and normalise to (pixel / 255 - mean) / std into out (out_w*out_h
 * floats, row-major, one channel). Returns 0 or -EINVAL / -ENOMEM. */
int fusion_image_prepare(const uint8_t *gray, int w, int h, int stride,
			 int out_w, int out_h, float mean, float std, float *out);

typedef struct fusion_sigfeat fusion_sigfeat;

/* Spectral features of one vibration window of window_len samples at
 * rate_hz (FFTW plans made once here; not thread-safe per object: use one
 * per thread). NULL on invalid arguments. */
fusion_sigfeat *fusion_sigfeat_new(size_t window_len, double rate_hz);
void fusion_sigfeat_free(fusion_sigfeat *f);

/* Number of floats fusion_sigfeat_compute writes. */
size_t fusion_sigfeat_dim(const fusion_sigfeat *f);

/* Computes the feature vector of x (window_len samples, in g) into out.
 * Layout (FUSION_SIGFEAT_VERSION): see fusion/features.c. Returns 0 or a
 * negative errno code (e.g. -EINVAL for non-finite input). */
int fusion_sigfeat_compute(fusion_sigfeat *f, const float *x, float *out);

/* One-sided power spectrum of x (Hann window, window_len/2+1 bins, bin k at
 * k*rate/window_len Hz), for tests and condition figures. */
int fusion_power_spectrum(fusion_sigfeat *f, const float *x, float *power);

/* Time-domain condition figures of a window. */
struct fusion_condition {
	float rms;
	float peak;
	float crest_factor;
	float kurtosis;
};
int fusion_condition(const float *x, size_t n, struct fusion_condition *out);

#endif
