// The cuda backend's own kernels (infer-cuda.c does the rest through
// cuDNN and cuBLAS): element-wise ops, bias, concatenation and precision
// conversion, for activations stored as float, half or bfloat16. Each op
// computes in float and rounds once when it stores.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

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

template <typename D>
int convert_from(D *dst, const void *src, int src_type, size_t n, cudaStream_t s)
{
	switch (src_type) {
	case VK_F32: convert<<<blocks(n), kThreads, 0, s>>>(dst, (const float *)src, n); break;
	case VK_F16: convert<<<blocks(n), kThreads, 0, s>>>(dst, (const __half *)src, n); break;
	case VK_BF16: convert<<<blocks(n), kThreads, 0, s>>>(dst, (const __nv_bfloat16 *)src, n); break;
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
	case VK_F32: bias_act<<<blocks(n), kThreads, 0, s>>>((float *)y, bias, scale, n, plane, channels, act); break;
	case VK_F16: bias_act<<<blocks(n), kThreads, 0, s>>>((__half *)y, bias, scale, n, plane, channels, act); break;
	case VK_BF16: bias_act<<<blocks(n), kThreads, 0, s>>>((__nv_bfloat16 *)y, bias, scale, n, plane, channels, act); break;
	default: return (int)cudaErrorInvalidValue;
	}
	return (int)cudaGetLastError();
}

int vk_act(void *y, const void *x, int type, size_t n, int act, void *stream)
{
	cudaStream_t s = (cudaStream_t)stream;

	switch (type) {
	case VK_F32: act_copy<<<blocks(n), kThreads, 0, s>>>((float *)y, (const float *)x, n, act); break;
	case VK_F16: act_copy<<<blocks(n), kThreads, 0, s>>>((__half *)y, (const __half *)x, n, act); break;
	case VK_BF16: act_copy<<<blocks(n), kThreads, 0, s>>>((__nv_bfloat16 *)y, (const __nv_bfloat16 *)x, n, act); break;
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
	case VK_F32: concat_part<<<blocks(n), kThreads, 0, s>>>((float *)dst, (const float *)src, outer, chunk, row, at); break;
	case VK_F16: concat_part<<<blocks(n), kThreads, 0, s>>>((__half *)dst, (const __half *)src, outer, chunk, row, at); break;
	case VK_BF16: concat_part<<<blocks(n), kThreads, 0, s>>>((__nv_bfloat16 *)dst, (const __nv_bfloat16 *)src, outer, chunk, row, at); break;
	default: return (int)cudaErrorInvalidValue;
	}
	return (int)cudaGetLastError();
}

} // extern "C"
