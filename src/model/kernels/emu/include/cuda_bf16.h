// Stand-in for CUDA's header when the kernels are compiled for the CPU emulator.
#include "cuda_emu.h"
