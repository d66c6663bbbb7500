/* Private to inference/: launchers of the cuda backend's own kernels
 * (infer-cuda-kernels.cu, compiled by nvcc), callable from C. Each enqueues
 * on stream (a cudaStream_t) and returns a cudaError_t as int, 0 on success. */
#ifndef VIGIL_INFERENCE_INFER_CUDA_KERNELS_H
#define VIGIL_INFERENCE_INFER_CUDA_KERNELS_H

#include <stddef.h>

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

#ifdef __cplusplus
}
#endif

#endif
