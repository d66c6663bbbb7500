/* The CUDA emulation (cuda-emu.cc): inference/'s .cu files compiled by
 * the host C++ compiler and run on the CPU, for the tests on machines
 * without a GPU (CI). Included before a .cu file (kernels-emu.cc,
 * prep-kernels-emu.cc); nothing outside tests/ sees it.
 *
 * A kernel launch runs its grid at once, block after block, each thread
 * of a block a fiber that __syncthreads() switches away from, so the
 * block reductions run as written. On a capturing stream a launch is
 * recorded for the CUDA graph instead. Device intrinsics are their
 * correctly rounded host equivalents (the device's __expf is an
 * approximation; nothing here depends on its last bits). */
#ifndef VIGIL_TESTS_CUDA_EMU_H
#define VIGIL_TESTS_CUDA_EMU_H

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <math.h>

#include <functional>
#include <utility>

extern "C" {
/* The emulated thread's coordinates (cuda-emu.cc sets them per fiber). */
extern uint3 vk_emu_thread_idx, vk_emu_block_idx;
extern dim3 vk_emu_block_dim, vk_emu_grid_dim;
void vk_emu_syncthreads(void);
}

/* Runs body on every thread of a grid, or records it on a capturing
 * stream; a launch that CUDA refuses (block over 1024 threads, empty
 * grid) sets the error that cudaGetLastError returns. */
void vk_emu_launch(unsigned grid, unsigned block, cudaStream_t stream,
		   std::function<void()> body);

#undef __shared__
#define __shared__ static
#define threadIdx vk_emu_thread_idx
#define blockIdx vk_emu_block_idx
#define blockDim vk_emu_block_dim
#define gridDim vk_emu_grid_dim
#define __syncthreads() vk_emu_syncthreads()

/* Fibers share one host thread: an add is atomic. */
static inline unsigned long long atomicAdd(unsigned long long *p, unsigned long long v)
{
	unsigned long long old = *p;

	*p = old + v;
	return old;
}

inline float __expf(float x) { return expf(x); }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fadd_rn(float a, float b) { return a + b; }

/* kernel<<<grid, block, 0, stream>>>(args...): K calls the kernel (a
 * template's arguments are deduced at the call), args are copied. */
namespace vk_emu {
template <typename K> struct launcher {
	K kernel;
	unsigned grid, block;
	cudaStream_t stream;

	template <typename... A> void operator()(A... args) const
	{
		K k = kernel;

		vk_emu_launch(grid, block, stream, [=]() { k(args...); });
	}
};
template <typename K> launcher<K> launch(K k, unsigned grid, unsigned block, cudaStream_t s)
{
	return launcher<K>{ k, grid, block, s };
}
} // namespace vk_emu

#define VK_LAUNCH(kernel, grid, block, stream)                                          \
	vk_emu::launch([](auto... a) { kernel(a...); }, (unsigned)(grid), (unsigned)(block), \
		       (cudaStream_t)(stream))

#endif
