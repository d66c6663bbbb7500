// The cuda backend's own kernels (infer-cuda.c does the rest through
// cuDNN and cuBLAS): element-wise ops, bias, concatenation and precision
// conversion, for activations stored as float, half or bfloat16. Each op
// computes in float and rounds once when it stores.
//
// int8: quantization of an activation and direct int8 convolution and
// GEMM with int32 sums, dequantized, bias and activation fused, one
// output per thread. They do what the reference executor does, in the same
// order, so that the two agree to float rounding of the dequantization;
// they are not tuned (no dp4a packing, no tensor cores).
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "inference/cuda-launch.h"

#include "inference/infer-cuda-kernels.h"

namespace {

__device__ __forceinline__ float load(const float *p, size_t i) { return p[i]; }
__device__ __forceinline__ float load(const __half *p, size_t i) { return __half2float(p[i]); }
__device__ __forceinline__ float load(const __nv_bfloat16 *p, size_t i) { return __bfloat162float(p[i]); }
__device__ __forceinline__ void store(float *p, size_t i, float v) { p[i] = v; }
__device__ __forceinline__ void store(__half *p, size_t i, float v) { p[i] = __float2half_rn(v); }
__device__ __forceinline__ void store(__nv_bfloat16 *p, size_t i, float v) { p[i] = __float2bfloat16_rn(v); }

constexpr int kThreads = 256;

unsigned blocks(size_t n)
{
	size_t b = (n + kThreads - 1) / kThreads;
	return (unsigned)(b > 65535u * 8u ? 65535u * 8u : (b ? b : 1));
}

template <typename D, typename S>
__global__ void convert(D *dst, const S *src, size_t n)
{
	for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
	     i += (size_t)gridDim.x * blockDim.x)
		store(dst, i, load(src, i));
}

template <typename T>
__global__ void bias_act(T *y, const float *bias, float scale, size_t n, size_t plane,
			 size_t channels, int act)
{
	for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
	     i += (size_t)gridDim.x * blockDim.x) {
		float v = load(y, i);

		if (bias)
			v += scale * bias[(i / plane) % channels];
		if (act == VK_ACT_RELU)
			v = v > 0.0f ? v : 0.0f;
		else if (act == VK_ACT_SIGMOID)
			v = 1.0f / (1.0f + __expf(-v));
		store(y, i, v);
	}
}

template <typename T>
__global__ void act_copy(T *y, const T *x, size_t n, int act)
{
	for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
	     i += (size_t)gridDim.x * blockDim.x) {
		float v = load(x, i);

		if (act == VK_ACT_RELU)
			v = v > 0.0f ? v : 0.0f;
		else if (act == VK_ACT_SIGMOID)
			v = 1.0f / (1.0f + __expf(-v));
		store(y, i, v);
	}
}

template <typename T>
__global__ void concat_part(T *dst, const T *src, size_t outer, size_t chunk, size_t row,
			    size_t at)
{
	size_t n = outer * chunk;

	for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
	     i += (size_t)gridDim.x * blockDim.x)
		dst[(i / chunk) * row + at + i % chunk] = src[i];
}

__device__ __forceinline__ float activate(float v, int act)
{
	if (act == VK_ACT_RELU)
		return v > 0.0f ? v : 0.0f;
	if (act == VK_ACT_SIGMOID)
		return 1.0f / (1.0f + __expf(-v));
	return v;
}

__global__ void quantize(int8_t *q, const float *x, size_t n, float inv_scale)
{
	for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
	     i += (size_t)gridDim.x * blockDim.x) {
		float v = rintf(__fmul_rn(x[i], inv_scale));

		if (v != v)
			v = 0.0f;
		q[i] = (int8_t)(v > 127.0f ? 127.0f : v < -127.0f ? -127.0f : v);
	}
}

__global__ void conv_int8(float *y, const int8_t *x, const int8_t *w, const float *dequant,
			  const float *bias, vk_conv s, int act)
{
	size_t total = (size_t)s.batch * s.oc * s.oh * s.ow;
	int cg = s.c / s.group, ocg = s.oc / s.group;

	for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total;
	     i += (size_t)gridDim.x * blockDim.x) {
		size_t r = i / s.ow;
		int ox = (int)(i % s.ow), oy = (int)(r % s.oh);
		int oc = (int)((r / s.oh) % s.oc), n = (int)(r / s.oh / s.oc);
		const int8_t *wp = w + (size_t)oc * cg * s.kh * s.kw;
		int acc = 0;

		for (int ic = 0; ic < cg; ic++) {
			const int8_t *xp = x + ((size_t)n * s.c + (size_t)(oc / ocg) * cg + ic) *
					       s.h * s.w;

			for (int ky = 0; ky < s.kh; ky++) {
				int iy = oy * s.stride[0] - s.pad[0] + ky * s.dilation[0];

				if (iy < 0 || iy >= s.h)
					continue;
				for (int kx = 0; kx < s.kw; kx++) {
					int ix = ox * s.stride[1] - s.pad[1] + kx * s.dilation[1];

					if (ix >= 0 && ix < s.w)
						acc += (int)wp[(ic * s.kh + ky) * s.kw + kx] *
						       (int)xp[(size_t)iy * s.w + ix];
				}
			}
		}
		y[i] = activate(__fadd_rn(__fmul_rn((float)acc, dequant[oc]),
					  bias ? bias[oc] : 0.0f), act);
	}
}

__global__ void gemm_int8(float *y, const int8_t *a, const int8_t *w, const float *dequant,
			  float alpha, const float *bias, size_t nbias, float beta, int m, int n,
			  int k, int trans_a, int act)
{
	size_t total = (size_t)m * n;

	for (size_t idx = blockIdx.x * (size_t)blockDim.x + threadIdx.x; idx < total;
	     idx += (size_t)gridDim.x * blockDim.x) {
		int i = (int)(idx / n), j = (int)(idx % n);
		const int8_t *wr = w + (size_t)j * k;
		int acc = 0;

		for (int p = 0; p < k; p++)
			acc += (int)(trans_a ? a[(size_t)p * m + i] : a[(size_t)i * k + p]) * (int)wr[p];
		y[idx] = activate(__fadd_rn(__fmul_rn(alpha, __fmul_rn((float)acc, dequant[j])),
					    bias ? __fmul_rn(beta, bias[nbias == 1 ? 0 : j]) : 0.0f),
				  act);
	}
}

template <typename D>
int convert_from(D *dst, const void *src, int src_type, size_t n, cudaStream_t s)
{
	switch (src_type) {
	case VK_F32: VK_LAUNCH(convert, blocks(n), kThreads, s)(dst, (const float *)src, n); break;
	case VK_F16: VK_LAUNCH(convert, blocks(n), kThreads, s)(dst, (const __half *)src, n); break;
	case VK_BF16: VK_LAUNCH(convert, blocks(n), kThreads, s)(dst, (const __nv_bfloat16 *)src, n); break;
	default: return cudaErrorInvalidValue;
	}
	return (int)cudaGetLastError();
}

} // namespace

extern "C" {

int vk_convert(void *dst, int dst_type, const void *src, int src_type, size_t n, void *stream)
{
	cudaStream_t s = (cudaStream_t)stream;

	switch (dst_type) {
	case VK_F32: return convert_from((float *)dst, src, src_type, n, s);
	case VK_F16: return convert_from((__half *)dst, src, src_type, n, s);
	case VK_BF16: return convert_from((__nv_bfloat16 *)dst, src, src_type, n, s);
	}
	return (int)cudaErrorInvalidValue;
}

int vk_bias_act(void *y, int type, const float *bias, float scale, size_t n, size_t plane,
		size_t channels, int act, void *stream)
{
	cudaStream_t s = (cudaStream_t)stream;

	switch (type) {
	case VK_F32: VK_LAUNCH(bias_act, blocks(n), kThreads, s)((float *)y, bias, scale, n, plane, channels, act); break;
	case VK_F16: VK_LAUNCH(bias_act, blocks(n), kThreads, s)((__half *)y, bias, scale, n, plane, channels, act); break;
	case VK_BF16: VK_LAUNCH(bias_act, blocks(n), kThreads, s)((__nv_bfloat16 *)y, bias, scale, n, plane, channels, act); break;
	default: return (int)cudaErrorInvalidValue;
	}
	return (int)cudaGetLastError();
}

int vk_act(void *y, const void *x, int type, size_t n, int act, void *stream)
{
	cudaStream_t s = (cudaStream_t)stream;

	switch (type) {
	case VK_F32: VK_LAUNCH(act_copy, blocks(n), kThreads, s)((float *)y, (const float *)x, n, act); break;
	case VK_F16: VK_LAUNCH(act_copy, blocks(n), kThreads, s)((__half *)y, (const __half *)x, n, act); break;
	case VK_BF16: VK_LAUNCH(act_copy, blocks(n), kThreads, s)((__nv_bfloat16 *)y, (const __nv_bfloat16 *)x, n, act); break;
	default: return (int)cudaErrorInvalidValue;
	}
	return (int)cudaGetLastError();
}

int vk_concat_part(void *dst, const void *src, int type, size_t outer, size_t chunk,
		   size_t row, size_t at, void *stream)
{
	cudaStream_t s = (cudaStream_t)stream;
	size_t n = outer * chunk;

	switch (type) {
	case VK_F32: VK_LAUNCH(concat_part, blocks(n), kThreads, s)((float *)dst, (const float *)src, outer, chunk, row, at); break;
	case VK_F16: VK_LAUNCH(concat_part, blocks(n), kThreads, s)((__half *)dst, (const __half *)src, outer, chunk, row, at); break;
	case VK_BF16: VK_LAUNCH(concat_part, blocks(n), kThreads, s)((__nv_bfloat16 *)dst, (const __nv_bfloat16 *)src, outer, chunk, row, at); break;
	default: return (int)cudaErrorInvalidValue;
	}
	return (int)cudaGetLastError();
}

int vk_quantize(int8_t *q, const float *x, size_t n, float inv_scale, void *stream)
{
	VK_LAUNCH(quantize, blocks(n), kThreads, (cudaStream_t)stream)(q, x, n, inv_scale);
	return (int)cudaGetLastError();
}

int vk_conv_int8(float *y, const int8_t *x, const int8_t *w, const float *dequant,
		 const float *bias, const struct vk_conv *shape, int act, void *stream)
{
	size_t n = (size_t)shape->batch * shape->oc * shape->oh * shape->ow;

	VK_LAUNCH(conv_int8, blocks(n), kThreads, (cudaStream_t)stream)(y, x, w, dequant, bias, *shape,
								      act);
	return (int)cudaGetLastError();
}

int vk_gemm_int8(float *y, const int8_t *a, const int8_t *w, const float *dequant, float alpha,
		 const float *bias, size_t nbias, float beta, int m, int n, int k, int trans_a,
		 int act, void *stream)
{
	VK_LAUNCH(gemm_int8, blocks((size_t)m * n), kThreads, (cudaStream_t)stream)(
		y, a, w, dequant, alpha, bias, nbias, beta, m, n, k, trans_a, act);
	return (int)cudaGetLastError();
}

} // extern "C"
