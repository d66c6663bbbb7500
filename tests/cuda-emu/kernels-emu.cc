// inference/infer-cuda-kernels.cu on the CPU (cuda-emu.h).
#include "tests/cuda-emu/cuda-emu.h"

#include "inference/infer-cuda-kernels.cu"
