// inference/cuda-prep-kernels.cu on the CPU (cuda-emu.h).
#include "tests/cuda-emu/cuda-emu.h"

#include "inference/cuda-prep-kernels.cu"
