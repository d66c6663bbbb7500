/* Private to inference/: how the .cu files launch their kernels.
 * VK_LAUNCH(kernel, grid, block, stream)(args...) is kernel<<<grid, block,
 * 0, stream>>>(args...) under nvcc; tests/cuda-emu/cuda-emu.h defines it
 * first to run the same kernels on the CPU. */
#ifndef VIGIL_INFERENCE_CUDA_LAUNCH_H
#define VIGIL_INFERENCE_CUDA_LAUNCH_H

#ifndef VK_LAUNCH
#define VK_LAUNCH(kernel, grid, block, stream) kernel<<<(grid), (block), 0, (stream)>>>
#endif

#endif
