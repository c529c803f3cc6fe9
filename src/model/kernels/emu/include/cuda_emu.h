// A CPU emulation of the part of CUDA that ossterm's kernels use, so their own source can run
// in the tests on machines without a GPU. Every thread of a block is a fiber (ucontext) with
// its own stack; the scheduler runs the fibers of one block until each waits at a barrier
// (`__syncthreads`, or a warp shuffle's exchange) or returns, then releases the barriers that
// every live participant has reached. A barrier that can never be released (divergent
// `__syncthreads`, a shuffle with lanes that returned) is reported as an error, not a hang.
//
// `__shared__` variables become function statics: blocks run one after another, so one copy
// serves each block in turn, as shared memory does.

#pragma once

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ucontext.h>

#include <vector>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __restrict__ __restrict
#define __shared__ static

struct dim3 {
    unsigned x = 1, y = 1, z = 1;
};
typedef dim3 uint3;

inline dim3 threadIdx, blockIdx, blockDim, gridDim;

// 16-bit float types: only their bits; conversions below.
struct __half {
    uint16_t x;
};
struct __nv_bfloat16 {
    uint16_t x;
};

inline __half __ushort_as_half(uint16_t bits) { return __half{bits}; }

// The same bits as another type of the same size (what CUDA's __*_as_* intrinsics do).
template <typename To, typename From>
inline To bits_as(From from) {
    static_assert(sizeof(To) == sizeof(From), "bit cast between sizes");
    To to;
    memcpy(&to, &from, sizeof(To));
    return to;
}

inline float __half2float(__half h) {
    const uint32_t sign = (uint32_t)(h.x & 0x8000u) << 16;
    const uint32_t exponent = (h.x >> 10) & 0x1Fu, mantissa = h.x & 0x3FFu;
    if (exponent == 0) {
        return bits_as<float>(bits_as<uint32_t>(ldexpf((float)mantissa, -24)) | sign);
    }
    return bits_as<float>(exponent == 31 ? sign | 0x7F800000u | (mantissa << 13)
                                         : sign | ((exponent + 112) << 23) | (mantissa << 13));
}

inline float __bfloat162float(__nv_bfloat16 b) { return bits_as<float>((uint32_t)b.x << 16); }

// Round to nearest even, as CUDA's __float2bfloat16 does.
inline __nv_bfloat16 __float2bfloat16(float f) {
    uint32_t u = bits_as<uint32_t>(f);
    if ((u & 0x7FFFFFFFu) > 0x7F800000u) {
        return __nv_bfloat16{(uint16_t)((u >> 16) | 0x40u)};
    }
    u += 0x7FFFu + ((u >> 16) & 1u);
    return __nv_bfloat16{(uint16_t)(u >> 16)};
}

inline float __int_as_float(int i) { return bits_as<float>(i); }
inline float __uint_as_float(uint32_t u) { return bits_as<float>(u); }
inline int __float_as_int(float f) { return bits_as<int>(f); }

inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }

template <typename T>
inline T __ldg(const T* p) {
    return *p;
}

namespace emu {

enum class Wait { Running, Block, Warp, Done };

struct Thread {
    ucontext_t context;
    dim3 index;
    unsigned linear;
    Wait wait;
};

inline std::vector<Thread> threads;
inline ucontext_t scheduler;
inline unsigned current;
// One exchange slot per lane of each warp (a block has at most 32 warps).
inline uint64_t exchange[32][32];

[[noreturn]] inline void fail(const char* what) {
    fprintf(stderr, "kernel emulator: %s (block %u,%u,%u)\n", what, blockIdx.x, blockIdx.y,
            blockIdx.z);
    exit(3);
}

// The running thread waits at a barrier of kind `wait`; the scheduler resumes it on release.
inline void wait_at(Wait wait) {
    threads[current].wait = wait;
    swapcontext(&threads[current].context, &scheduler);
}

}  // namespace emu

inline void __syncthreads() { emu::wait_at(emu::Wait::Block); }

template <typename T>
inline T __shfl_xor_sync(unsigned mask, T value, int lane_mask) {
    static_assert(sizeof(T) <= sizeof(uint64_t), "shuffle of a wide type");
    if (mask != 0xFFFFFFFFu) {
        emu::fail("only full-warp shuffles are emulated");
    }
    const unsigned me = emu::threads[emu::current].linear;
    const unsigned warp = me / 32, lane = me % 32, other = (lane ^ (unsigned)lane_mask) & 31;
    memcpy(&emu::exchange[warp][lane], &value, sizeof(T));
    emu::wait_at(emu::Wait::Warp);
    T result;
    memcpy(&result, &emu::exchange[warp][other], sizeof(T));
    // Nobody overwrites a slot before every lane has read.
    emu::wait_at(emu::Wait::Warp);
    return result;
}
