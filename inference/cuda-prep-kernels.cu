// GPU preprocessing: a uint8 frame to the model's normalised input and a
// vibration window to vigil-sigfeat-v1, with fusion/prep-math.h's
// formulas (the FFTs are cuFFT's, driven from cuda-prep.c). Reductions
// run in one block of kReduce threads, in double like the C code: a
// window is a few thousand samples and a frame a few hundred thousand
// pixels, so one block is enough and keeps the order fixed.
#include <cuda_runtime.h>

#include "inference/cuda-launch.h"

#include "inference/cuda-prep-kernels.h"

namespace {

constexpr int kThreads = 256;
constexpr int kReduce = 1024;

unsigned blocks(size_t n)
{
	size_t b = (n + kThreads - 1) / kThreads;
	return (unsigned)(b > 65535u * 8u ? 65535u * 8u : (b ? b : 1));
}

// Sum of v over the block into the block's thread 0 (and returned to all).
__device__ double block_sum(double v, double *shared)
{
	shared[threadIdx.x] = v;
	__syncthreads();
	for (int s = blockDim.x / 2; s > 0; s >>= 1) {
		if ((int)threadIdx.x < s)
			shared[threadIdx.x] += shared[threadIdx.x + s];
		__syncthreads();
	}
	double r = shared[0];
	__syncthreads();
	return r;
}

__device__ double block_max(double v, double *shared)
{
	shared[threadIdx.x] = v;
	__syncthreads();
	for (int s = blockDim.x / 2; s > 0; s >>= 1) {
		if ((int)threadIdx.x < s)
			shared[threadIdx.x] = fmax(shared[threadIdx.x], shared[threadIdx.x + s]);
		__syncthreads();
	}
	double r = shared[0];
	__syncthreads();
	return r;
}

__global__ void fit(uint8_t *fitted, unsigned long long *sum, const uint8_t *frame, int stride,
		    int h, struct fp_fit g)
{
	size_t n = (size_t)g.fw * g.fh;
	unsigned long long local = 0;

	for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
	     i += (size_t)gridDim.x * blockDim.x) {
		int x = (int)(i % g.fw), y = (int)(i / g.fw);
		int u = fp_round_u8(fp_fit_pixel(frame, stride, h, &g, x, y));

		fitted[i] = (uint8_t)u;
		local += (unsigned)u;
	}
	atomicAdd(sum, local);
}

__global__ void place(float *out, const uint8_t *fitted, const unsigned long long *sum,
		      struct fp_fit g, int out_w, int out_h, float mean, float std)
{
	size_t n = (size_t)out_w * out_h;
	int fill = fp_fill(*sum, (unsigned long long)g.fw * (unsigned long long)g.fh);

	for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
	     i += (size_t)gridDim.x * blockDim.x) {
		int fx = (int)(i % out_w) - g.x0, fy = (int)(i / out_w) - g.y0;
		int u = fx >= 0 && fx < g.fw && fy >= 0 && fy < g.fh ? fitted[(size_t)fy * g.fw + fx]
								     : fill;

		out[i] = fp_normalise(u, mean, std);
	}
}

__global__ void centre(float *centred, double *stats, const float *x, size_t n)
{
	__shared__ double sh[kReduce];
	double s = 0, ms = 0, peak = 0, cm, m2 = 0, m4 = 0, mean;

	for (size_t i = threadIdx.x; i < n; i += blockDim.x)
		s += x[i];
	mean = block_sum(s, sh) / (double)n;
	s = 0;
	for (size_t i = threadIdx.x; i < n; i += blockDim.x) {
		float c = (float)(x[i] - mean);

		centred[i] = c;
		s += c;
		ms += (double)c * c;
		peak = fmax(peak, fabs((double)c));
	}
	cm = block_sum(s, sh) / (double)n;
	ms = block_sum(ms, sh) / (double)n;
	peak = block_max(peak, sh);
	for (size_t i = threadIdx.x; i < n; i += blockDim.x) {
		double d = centred[i] - cm, d2 = d * d;

		m2 += d2;
		m4 += d2 * d2;
	}
	m2 = block_sum(m2, sh) / (double)n;
	m4 = block_sum(m4, sh) / (double)n;
	if (threadIdx.x == 0) {
		stats[VP_MS] = ms;
		stats[VP_PEAK] = peak;
		stats[VP_M2] = m2;
		stats[VP_M4] = m4;
		stats[VP_MEAN] = mean;
	}
}

__global__ void window(float *dst, const float *src, size_t n, int tukey)
{
	for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
	     i += (size_t)gridDim.x * blockDim.x)
		dst[i] = src[i] * (tukey ? fp_tukey(i, n) : fp_hann(i, n));
}

// One thread a band: the mean power of its bins.
__global__ void bands(float *feat, const float *spec, size_t n, double rate_hz, int first,
		      int count, const double *stats)
{
	int b = blockIdx.x * blockDim.x + threadIdx.x;

	if (b >= count)
		return;
	b += first;
	int lo, hi;
	double s = 0;

	fp_feature_band(b, n, rate_hz, &lo, &hi);
	for (int k = lo; k < hi; k++)
		s += fp_power(spec[2 * k], spec[2 * k + 1], (size_t)k, n);
	feat[b] = b < FP_POWER_BANDS ? fp_power_feature(s / (hi - lo))
				     : fp_envelope_feature(s / (hi - lo), stats[VP_ENV_MEAN]);
}

__global__ void analytic(float *dst, const float *spec, size_t n, size_t highpass_bin)
{
	for (size_t k = blockIdx.x * (size_t)blockDim.x + threadIdx.x; k < n;
	     k += (size_t)gridDim.x * blockDim.x) {
		double gk = fp_analytic_gain(k, n, highpass_bin);

		dst[2 * k] = gk ? (float)(gk * spec[2 * k]) : 0.0f;
		dst[2 * k + 1] = gk ? (float)(gk * spec[2 * k + 1]) : 0.0f;
	}
}

__global__ void envelope(float *env, double *stats, const float *a, size_t n)
{
	__shared__ double sh[kReduce];
	double inv_n = 1.0 / (double)n, s = 0, hs = 0, hm, m2 = 0, m4 = 0;
	size_t edge = n / 32, cnt = n - 2 * edge;

	for (size_t i = threadIdx.x; i < n; i += blockDim.x) {
		double re = a[2 * i] * inv_n, im = a[2 * i + 1] * inv_n;

		env[i] = (float)(re * re + im * im);
		s += env[i];
		if (i >= edge && i < n - edge)
			hs += re;
	}
	s = block_sum(s, sh) / (double)n;
	hm = block_sum(hs, sh) / (double)cnt;
	for (size_t i = edge + threadIdx.x; i < n - edge; i += blockDim.x) {
		double d = a[2 * i] * inv_n - hm, d2 = d * d;

		m2 += d2;
		m4 += d2 * d2;
	}
	m2 = block_sum(m2, sh) / (double)cnt;
	m4 = block_sum(m4, sh) / (double)cnt;
	if (threadIdx.x == 0) {
		stats[VP_ENV_MEAN] = s;
		stats[VP_HM2] = m2;
		stats[VP_HM4] = m4;
	}
}

__global__ void envelope_window(float *dst, const float *env, const double *stats, size_t n)
{
	double env_mean = stats[VP_ENV_MEAN];

	for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
	     i += (size_t)gridDim.x * blockDim.x)
		dst[i] = (float)((env[i] - env_mean) * fp_hann(i, n));
}

__global__ void time_features(float *feat, const double *stats)
{
	fp_time_features(stats[VP_MS], stats[VP_PEAK], stats[VP_M2], stats[VP_M4], stats[VP_HM2],
			 stats[VP_HM4], feat + FP_POWER_BANDS + FP_ENV_BANDS);
}

int done()
{
	return (int)cudaGetLastError();
}

} // namespace

extern "C" int vp_fit(uint8_t *fitted, unsigned long long *sum, const uint8_t *frame, int stride,
		      int h, struct fp_fit g, void *stream)
{
	VK_LAUNCH(fit, blocks((size_t)g.fw * g.fh), kThreads, (cudaStream_t)stream)(fitted, sum, frame,
										 stride, h, g);
	return done();
}

extern "C" int vp_place(float *out, const uint8_t *fitted, const unsigned long long *sum,
			struct fp_fit g, int out_w, int out_h, float mean, float std, void *stream)
{
	VK_LAUNCH(place, blocks((size_t)out_w * out_h), kThreads, (cudaStream_t)stream)(
		out, fitted, sum, g, out_w, out_h, mean, std);
	return done();
}

extern "C" int vp_centre(float *centred, double *stats, const float *x, size_t n, void *stream)
{
	VK_LAUNCH(centre, 1, kReduce, (cudaStream_t)stream)(centred, stats, x, n);
	return done();
}

extern "C" int vp_window(float *dst, const float *src, size_t n, int tukey, void *stream)
{
	VK_LAUNCH(window, blocks(n), kThreads, (cudaStream_t)stream)(dst, src, n, tukey);
	return done();
}

extern "C" int vp_bands(float *feat, const float *spec, size_t n, double rate_hz, int first,
			int count, const double *stats, void *stream)
{
	VK_LAUNCH(bands, (count + 63) / 64, 64, (cudaStream_t)stream)(feat, spec, n, rate_hz, first,
								 count, stats);
	return done();
}

extern "C" int vp_analytic(float *dst, const float *spec, size_t n, size_t highpass_bin,
			   void *stream)
{
	VK_LAUNCH(analytic, blocks(n), kThreads, (cudaStream_t)stream)(dst, spec, n, highpass_bin);
	return done();
}

extern "C" int vp_envelope(float *env, double *stats, const float *a, size_t n, void *stream)
{
	VK_LAUNCH(envelope, 1, kReduce, (cudaStream_t)stream)(env, stats, a, n);
	return done();
}

extern "C" int vp_envelope_window(float *dst, const float *env, const double *stats, size_t n,
				  void *stream)
{
	VK_LAUNCH(envelope_window, blocks(n), kThreads, (cudaStream_t)stream)(dst, env, stats, n);
	return done();
}

extern "C" int vp_time_features(float *feat, const double *stats, void *stream)
{
	VK_LAUNCH(time_features, 1, 1, (cudaStream_t)stream)(feat, stats);
	return done();
}
