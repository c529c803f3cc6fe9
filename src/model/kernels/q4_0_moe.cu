// Q4_0 kernels for the mixture of experts on CUDA (compiled to PTX by build.rs).
//
// Weights of one projection are stacked: [experts, rows, cols / 32] GGML Q4_0 blocks of 18 bytes
// (f16 scale d, then 16 bytes: byte j holds element j in its low nibble and element j + 16 in its
// high nibble; value = d * (nibble - 8)). Every block starts at an even offset, so 16-bit loads
// are aligned.

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>

#define Q4_0_BYTES 18
#define Q4_0_VALUES 32

// Low and high nibble of a byte, centred.
__device__ __forceinline__ float lo4(uint32_t b) { return (float)((int)(b & 0xF) - 8); }
__device__ __forceinline__ float hi4(uint32_t b) { return (float)((int)((b >> 4) & 0xF) - 8); }

// Activations as f32, whatever their storage.
__device__ __forceinline__ float load_f(float v) { return v; }
__device__ __forceinline__ float load_f(__nv_bfloat16 v) { return __bfloat162float(v); }
__device__ __forceinline__ float ldg_f(const float* p) { return __ldg(p); }
__device__ __forceinline__ float ldg_f(const __nv_bfloat16* p) { return __bfloat162float(*p); }

// Dot product of one Q4_0 row with x (f32 or bf16, `blocks` * 32 values), computed by one warp: four
// lanes share a block (4 bytes = 8 values each), eight blocks per step. Every lane gets the sum.
template <typename X>
__device__ float q4_0_row_dot(const uint8_t* __restrict__ row, const X* __restrict__ x,
                              int blocks) {
    const int lane = threadIdx.x & 31;
    const int part = lane & 3;
    float acc = 0.0f;
    for (int b = lane >> 2; b < blocks; b += 8) {
        const uint16_t* p = (const uint16_t*)(row + (size_t)b * Q4_0_BYTES);
        const float d = __half2float(__ushort_as_half(__ldg(p)));
        const uint32_t q01 = __ldg(p + 1 + 2 * part);
        const uint32_t q23 = __ldg(p + 2 + 2 * part);
        const X* xl = x + b * Q4_0_VALUES + 4 * part;
        const X* xh = xl + 16;
        const uint32_t b0 = q01 & 0xFF, b1 = q01 >> 8, b2 = q23 & 0xFF, b3 = q23 >> 8;
        float s = lo4(b0) * ldg_f(xl) + lo4(b1) * ldg_f(xl + 1) + lo4(b2) * ldg_f(xl + 2) +
                  lo4(b3) * ldg_f(xl + 3);
        s += hi4(b0) * ldg_f(xh) + hi4(b1) * ldg_f(xh + 1) + hi4(b2) * ldg_f(xh + 2) +
             hi4(b3) * ldg_f(xh + 3);
        acc += d * s;
    }
#pragma unroll
    for (int offset = 16; offset > 0; offset >>= 1) {
        acc += __shfl_xor_sync(0xFFFFFFFFu, acc, offset);
    }
    return acc;
}

// out[t, s, r] = W[ids[t, s]][r, :] . x[t, s or 0, :] + bias[ids[t, s], r] for the top-k
// experts of each token. Grid: (ceil(rows / blockDim.y), tokens * top_k); block: (32, warps),
// one warp per row. x is [tokens, x_slots, cols] (f32 or bf16) with x_slots 1 (every expert
// sees the token) or top_k; bias is [experts, rows].
template <typename X>
__device__ void q4_0_indexed_matvec(const uint8_t* __restrict__ w, const X* __restrict__ x,
                                    const uint32_t* __restrict__ ids,
                                    const float* __restrict__ bias, float* __restrict__ out,
                                    int experts, int rows, int cols, int top_k, int x_slots) {
    const int pair = blockIdx.y;
    const int row = blockIdx.x * blockDim.y + threadIdx.y;
    if (row >= rows) {
        return;
    }
    const int token = pair / top_k;
    const int slot = pair % top_k;
    const uint32_t expert = ids[pair];
    float value = __int_as_float(0x7FC00000);  // NaN marks an expert id out of range
    if (expert < (uint32_t)experts) {
        const int blocks = cols / Q4_0_VALUES;
        const uint8_t* w_row = w + ((size_t)expert * rows + row) * blocks * Q4_0_BYTES;
        const X* x_row = x + ((size_t)token * x_slots + (x_slots == 1 ? 0 : slot)) * cols;
        value = q4_0_row_dot(w_row, x_row, blocks) + bias[(size_t)expert * rows + row];
    }
    if (threadIdx.x == 0) {
        out[(size_t)pair * rows + row] = value;
    }
}

extern "C" __global__ void q4_0_indexed_matvec_f32(const uint8_t* __restrict__ w,
                                                   const float* __restrict__ x,
                                                   const uint32_t* __restrict__ ids,
                                                   const float* __restrict__ bias,
                                                   float* __restrict__ out, int experts, int rows,
                                                   int cols, int top_k, int x_slots) {
    q4_0_indexed_matvec<float>(w, x, ids, bias, out, experts, rows, cols, top_k, x_slots);
}

extern "C" __global__ void q4_0_indexed_matvec_bf16(const uint8_t* __restrict__ w,
                                                    const __nv_bfloat16* __restrict__ x,
                                                    const uint32_t* __restrict__ ids,
                                                    const float* __restrict__ bias,
                                                    float* __restrict__ out, int experts,
                                                    int rows, int cols, int top_k, int x_slots) {
    q4_0_indexed_matvec<__nv_bfloat16>(w, x, ids, bias, out, experts, rows, cols, top_k,
                                       x_slots);
}

// One expert's weight [rows, cols] dequantized; one thread per block of 32 values.
template <typename T>
__device__ void q4_0_dequantize_expert(const uint8_t* __restrict__ w, T* __restrict__ out,
                                       int expert, int rows, int cols,
                                       T (*convert)(float)) {
    const size_t blocks = (size_t)rows * (cols / Q4_0_VALUES);
    const size_t b = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (b >= blocks) {
        return;
    }
    const uint16_t* p = (const uint16_t*)(w + ((size_t)expert * blocks + b) * Q4_0_BYTES);
    const float d = __half2float(__ushort_as_half(p[0]));
    T* dst = out + b * Q4_0_VALUES;
#pragma unroll
    for (int j = 0; j < 8; j++) {
        const uint32_t q = p[1 + j];
        const uint32_t lo = q & 0xFF, hi = q >> 8;
        dst[2 * j] = convert(d * lo4(lo));
        dst[2 * j + 1] = convert(d * lo4(hi));
        dst[2 * j + 16] = convert(d * hi4(lo));
        dst[2 * j + 17] = convert(d * hi4(hi));
    }
}

__device__ __forceinline__ void store_f(float* p, float v) { *p = v; }
__device__ __forceinline__ void store_f(__nv_bfloat16* p, float v) { *p = __float2bfloat16(v); }

__device__ float to_f32(float v) { return v; }
__device__ __nv_bfloat16 to_bf16(float v) { return __float2bfloat16(v); }

extern "C" __global__ void q4_0_dequantize_expert_f32(const uint8_t* __restrict__ w,
                                                      float* __restrict__ out, int expert,
                                                      int rows, int cols) {
    q4_0_dequantize_expert<float>(w, out, expert, rows, cols, to_f32);
}

extern "C" __global__ void q4_0_dequantize_expert_bf16(const uint8_t* __restrict__ w,
                                                       __nv_bfloat16* __restrict__ out,
                                                       int expert, int rows, int cols) {
    q4_0_dequantize_expert<__nv_bfloat16>(w, out, expert, rows, cols, to_bf16);
}

// A float's rank in IEEE total order as an int (Rust's f32::total_cmp, which the CPU routing
// sorts by): -NaN < -inf < ... < -0 < +0 < ... < +inf < +NaN.
__device__ __forceinline__ int total_order_key(float f) {
    const int i = __float_as_int(f);
    return i < 0 ? i ^ 0x7FFFFFFF : i;
}

// The router's top-k for each token: ids[t, 0..k] are the k largest of logits[t, e] + bias[e]
// (logits f32 or bf16, the sum in f32) in total order, largest first, ties to the lower index
// (as a stable sort). One thread per token.
template <typename L>
__device__ void moe_route_top_k(const L* __restrict__ logits, const float* __restrict__ bias,
                                uint32_t* __restrict__ ids, int tokens, int experts, int top_k) {
    const int t = blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= tokens) {
        return;
    }
    const L* row = logits + (size_t)t * experts;
    uint32_t* chosen = ids + (size_t)t * top_k;
    for (int s = 0; s < top_k; s++) {
        int best = -1;
        int best_key = 0;
        for (int e = 0; e < experts; e++) {
            bool taken = false;
            for (int j = 0; j < s; j++) {
                taken |= chosen[j] == (uint32_t)e;
            }
            const int key = total_order_key(load_f(row[e]) + bias[e]);
            if (!taken && (best < 0 || key > best_key)) {
                best = e;
                best_key = key;
            }
        }
        chosen[s] = (uint32_t)best;
    }
}

extern "C" __global__ void moe_route_top_k_f32(const float* __restrict__ logits,
                                               const float* __restrict__ bias,
                                               uint32_t* __restrict__ ids, int tokens,
                                               int experts, int top_k) {
    moe_route_top_k<float>(logits, bias, ids, tokens, experts, top_k);
}

extern "C" __global__ void moe_route_top_k_bf16(const __nv_bfloat16* __restrict__ logits,
                                                const float* __restrict__ bias,
                                                uint32_t* __restrict__ ids, int tokens,
                                                int experts, int top_k) {
    moe_route_top_k<__nv_bfloat16>(logits, bias, ids, tokens, experts, top_k);
}

// gpt-oss's clamped SwiGLU: gate_up is [pairs, 2 * inter] (gate then up), out [pairs, inter].
extern "C" __global__ void moe_swiglu_f32(const float* __restrict__ gate_up,
                                          float* __restrict__ out, int pairs, int inter,
                                          float alpha, float limit) {
    const size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (size_t)pairs * inter) {
        return;
    }
    const size_t pair = i / inter, col = i % inter;
    const float gate = fminf(gate_up[pair * 2 * inter + col], limit);
    const float up = fminf(fmaxf(gate_up[pair * 2 * inter + inter + col], -limit), limit);
    out[i] = (up + 1.0f) * gate / (1.0f + expf(-alpha * gate));
}

// out[t, h] = residual[t, h] + sum over s of softmax_s(logits[t, ids[t, s]] + bias[ids[t, s]])
// * down[t, s, h]: the top-k experts' outputs weighted by the router, added to the residual
// stream (logits, residual and out f32 or bf16; the sums in f32). One thread per output value.
template <typename T>
__device__ void moe_combine(const float* __restrict__ down, const T* __restrict__ logits,
                            const float* __restrict__ bias, const uint32_t* __restrict__ ids,
                            const T* __restrict__ residual, T* __restrict__ out, int tokens,
                            int top_k, int hidden, int experts) {
    const size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (size_t)tokens * hidden) {
        return;
    }
    const size_t t = i / hidden, h = i % hidden;
    const T* row = logits + t * experts;
    const uint32_t* chosen = ids + t * top_k;
    // An id out of range reads as NaN (and so makes the output NaN), as on the CPU.
    auto logit = [&](int s) {
        const uint32_t e = chosen[s];
        return e < (uint32_t)experts ? load_f(row[e]) + bias[e] : __int_as_float(0x7FC00000);
    };
    float top = -INFINITY;
    for (int s = 0; s < top_k; s++) {
        top = fmaxf(top, logit(s));
    }
    float total = 0.0f, acc = 0.0f;
    for (int s = 0; s < top_k; s++) {
        const float weight = expf(logit(s) - top);
        total += weight;
        acc += weight * down[(t * top_k + s) * hidden + h];
    }
    store_f(out + i, load_f(residual[i]) + acc / total);
}

extern "C" __global__ void moe_combine_f32(const float* __restrict__ down,
                                           const float* __restrict__ logits,
                                           const float* __restrict__ bias,
                                           const uint32_t* __restrict__ ids,
                                           const float* __restrict__ residual,
                                           float* __restrict__ out, int tokens, int top_k,
                                           int hidden, int experts) {
    moe_combine<float>(down, logits, bias, ids, residual, out, tokens, top_k, hidden, experts);
}

extern "C" __global__ void moe_combine_bf16(const float* __restrict__ down,
                                            const __nv_bfloat16* __restrict__ logits,
                                            const float* __restrict__ bias,
                                            const uint32_t* __restrict__ ids,
                                            const __nv_bfloat16* __restrict__ residual,
                                            __nv_bfloat16* __restrict__ out, int tokens,
                                            int top_k, int hidden, int experts) {
    moe_combine<__nv_bfloat16>(down, logits, bias, ids, residual, out, tokens, top_k, hidden,
                               experts);
}
