/* Private to inference/: launchers of the cuda backend's own kernels
 * (infer-cuda-kernels.cu, compiled by nvcc), callable from C. Each enqueues
 * on stream (a cudaStream_t) and returns a cudaError_t as int, 0 on success. */
#ifndef VIGIL_INFERENCE_INFER_CUDA_KERNELS_H
#define VIGIL_INFERENCE_INFER_CUDA_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum { VK_F32, VK_F16, VK_BF16 };               /* element types */
enum { VK_ACT_NONE, VK_ACT_RELU, VK_ACT_SIGMOID };

int vk_convert(void *dst, int dst_type, const void *src, int src_type, size_t n, void *stream);
/* y[i] = act(y[i] + scale * bias[(i / plane) % channels]); bias may be NULL. */
int vk_bias_act(void *y, int type, const float *bias, float scale, size_t n, size_t plane,
		size_t channels, int act, void *stream);
/* y[i] = act(x[i]); y may be x. */
int vk_act(void *y, const void *x, int type, size_t n, int act, void *stream);
/* dst[o * row + at + i] = src[o * chunk + i] for o < outer, i < chunk. */
int vk_concat_part(void *dst, const void *src, int type, size_t outer, size_t chunk,
		   size_t row, size_t at, void *stream);

/* int8 (the reference executor's arithmetic, infer-reference.c): */

/* q[i] = x[i] * inv_scale rounded to nearest even, clipped to [-127, 127]
 * (NaN to 0), as infer_quantize on the host. */
int vk_quantize(int8_t *q, const float *x, size_t n, float inv_scale, void *stream);

struct vk_conv {
	int batch, c, h, w;        /* input, NCHW */
	int oc, oh, ow;            /* output */
	int kh, kw, group;
	int stride[2], pad[2], dilation[2];  /* y then x; pad: top, left */
};

/* y = act(int32 sum of x * w, times dequant[oc], plus bias[oc]), NCHW;
 * w: per output channel a row of c / group * kh * kw; bias may be NULL. */
int vk_conv_int8(float *y, const int8_t *x, const int8_t *w, const float *dequant,
		 const float *bias, const struct vk_conv *shape, int act, void *stream);

/* y[i * n + j] = act(alpha * (sum_p a(i, p) * w[j * k + p]) * dequant[j]
 *                    + beta * bias[nbias == 1 ? 0 : j]),
 * a(i, p) = trans_a ? a[p * m + i] : a[i * k + p]; bias may be NULL. */
int vk_gemm_int8(float *y, const int8_t *a, const int8_t *w, const float *dequant, float alpha,
		 const float *bias, size_t nbias, float beta, int m, int n, int k, int trans_a,
		 int act, void *stream);

#ifdef __cplusplus
}
#endif

#endif
