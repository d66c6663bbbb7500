/* Private to inference/: launchers of the GPU preprocessing kernels
 * (cuda-prep-kernels.cu), callable from C. The arithmetic is
 * fusion/prep-math.h's, which test-fusion checks against the C path on
 * the CPU. Each enqueues on stream (a cudaStream_t) and returns a
 * cudaError_t as int, 0 on success. */
#ifndef VIGIL_INFERENCE_CUDA_PREP_KERNELS_H
#define VIGIL_INFERENCE_CUDA_PREP_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#include "fusion/prep-math.h"

#ifdef __cplusplus
extern "C" {
#endif

/* fitted (g->fw x g->fh, stride fw) from the frame (h rows of stride
 * bytes), and the sum of its pixels added to *sum (zero it first). */
int vp_fit(uint8_t *fitted, unsigned long long *sum, const uint8_t *frame, int stride, int h,
	   struct fp_fit g, void *stream);
/* The model input, out_w x out_h floats: fitted at (x0, y0), the rest
 * the rounded mean of fitted (from *sum). */
int vp_place(float *out, const uint8_t *fitted, const unsigned long long *sum, struct fp_fit g,
	     int out_w, int out_h, float mean, float std, void *stream);

/* stats (9 doubles) filled by the feature kernels:
 *   0 ms, 1 peak, 2 m2, 3 m4 of the mean-removed window,
 *   4 env_mean, 5 hm2, 6 hm4 of the high band, 7 window mean. */
enum { VP_MS, VP_PEAK, VP_M2, VP_M4, VP_ENV_MEAN, VP_HM2, VP_HM4, VP_MEAN, VP_STATS };

/* centred[i] = (float)(x[i] - mean) and its moments into stats. */
int vp_centre(float *centred, double *stats, const float *x, size_t n, void *stream);
/* dst[i] = src[i] * window(i): 0 Hann, 1 Tukey. */
int vp_window(float *dst, const float *src, size_t n, int tukey, void *stream);
/* Features first .. first+count-1 of vigil-sigfeat-v1 from the r2c
 * spectrum spec (n/2+1 complex, interleaved float pairs): power bands
 * (first < FP_POWER_BANDS) or envelope bands over stats' env_mean. */
int vp_bands(float *feat, const float *spec, size_t n, double rate_hz, int first, int count,
	     const double *stats, void *stream);
/* The analytic signal's spectrum (n complex) from the r2c one. */
int vp_analytic(float *dst, const float *spec, size_t n, size_t highpass_bin, void *stream);
/* env[i] = |a[i] / n|^2 from the inverse c2c output a; env_mean and the
 * high band's moments into stats. */
int vp_envelope(float *env, double *stats, const float *a, size_t n, void *stream);
/* dst[i] = (float)((env[i] - env_mean) * hann(i)). */
int vp_envelope_window(float *dst, const float *env, const double *stats, size_t n,
		       void *stream);
/* The last four features from stats. */
int vp_time_features(float *feat, const double *stats, void *stream);

#ifdef __cplusplus
}
#endif

#endif
