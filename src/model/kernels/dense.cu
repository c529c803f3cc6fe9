// Dense projections with bf16 weights and f32 activations, for decode on CUDA (compiled to PTX
// by build.rs): the weights stream once at their stored 16 bits while the activations and the
// sums stay f32, as on the CPU.

#include <cuda_bf16.h>
#include <stdint.h>

// out[t, r] = W[r, :] . x[t, :] for W bf16 [rows, cols] (cols even), x f32 [tokens, cols].
// Grid: (ceil(rows / blockDim.y), tokens); block (32, warps): a warp per output row, each lane
// reading two weights (32 bits) per step so a warp reads 128 contiguous bytes.
extern "C" __global__ void bf16_matvec_f32(const __nv_bfloat16* __restrict__ w,
                                           const float* __restrict__ x,
                                           float* __restrict__ out, int rows, int cols) {
    const int token = blockIdx.y;
    const int row = blockIdx.x * blockDim.y + threadIdx.y;
    if (row >= rows) {
        return;
    }
    const int lane = threadIdx.x;
    const uint32_t* pairs = (const uint32_t*)(w + (size_t)row * cols);
    const float* xt = x + (size_t)token * cols;
    float acc = 0.0f;
    for (int p = lane; p < cols / 2; p += 32) {
        const uint32_t two = __ldg(pairs + p);
        acc += __uint_as_float(two << 16) * __ldg(xt + 2 * p);
        acc += __uint_as_float(two & 0xFFFF0000u) * __ldg(xt + 2 * p + 1);
    }
#pragma unroll
    for (int offset = 16; offset > 0; offset >>= 1) {
        acc += __shfl_xor_sync(0xFFFFFFFFu, acc, offset);
    }
    if (lane == 0) {
        out[(size_t)token * rows + row] = acc;
    }
}
