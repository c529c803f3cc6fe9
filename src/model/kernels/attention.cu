// Decode attention (one query per head) with gpt-oss's per-head sinks, in one launch per
// layer (compiled to PTX by build.rs).
//
// q [heads, d]; k and v [kv_heads, keys, d] with rows of d contiguous values and a stride
// between kv heads (a view into the preallocated cache); sinks [heads] f32; out [heads, d].
// The query of head h sees every key given (the caller drops keys outside the sliding window)
// and attends with kv head h / (heads / kv_heads).
//
// Two ways: `attention_decode_*` runs one block per head over all keys (scratch [heads, keys]
// f32), for short contexts; long contexts split the keys over blocks as well
// (`attention_decode_split_*`, each block's share of the softmax and values into `part`), and
// `attention_decode_combine_*` merges the shares with the sink, so a long cache is read by
// heads * splits blocks instead of heads.

#include <cuda_bf16.h>
#include <stdint.h>

#define MAX_HEAD_DIM 256

__device__ __forceinline__ float load_f(float v) { return v; }
__device__ __forceinline__ float load_f(__nv_bfloat16 v) { return __bfloat162float(v); }
__device__ __forceinline__ void store_f(float* p, float v) { *p = v; }
__device__ __forceinline__ void store_f(__nv_bfloat16* p, float v) { *p = __float2bfloat16(v); }

// Block-wide reduction (max when `is_max`, else sum) over blockDim.x values; `red` has
// blockDim.x floats. Every thread gets the result.
__device__ float block_reduce(float value, float* red, bool is_max) {
    red[threadIdx.x] = value;
    __syncthreads();
    for (int half = blockDim.x / 2; half > 0; half >>= 1) {
        if (threadIdx.x < half) {
            const float other = red[threadIdx.x + half];
            red[threadIdx.x] = is_max ? fmaxf(red[threadIdx.x], other) : red[threadIdx.x] + other;
        }
        __syncthreads();
    }
    const float result = red[0];
    __syncthreads();
    return result;
}

// One block per head; blockDim.x a power of two and a multiple of d (d <= MAX_HEAD_DIM). q and
// out are Q (f32 or bf16), the cache KV (f32 or bf16); every sum is f32.
template <typename Q, typename KV>
__device__ void attention_decode(const Q* __restrict__ q, const KV* __restrict__ k,
                                 const KV* __restrict__ v, const float* __restrict__ sinks,
                                 float* __restrict__ scratch, Q* __restrict__ out, int heads,
                                 int kv_heads, int keys, int d, long long k_head_stride,
                                 long long v_head_stride) {
    __shared__ float q_s[MAX_HEAD_DIM];
    __shared__ float red[1024];
    const int head = blockIdx.x;
    const int kv = head / (heads / kv_heads);
    const KV* k_head = k + kv * k_head_stride;
    const KV* v_head = v + kv * v_head_stride;
    float* scores = scratch + (size_t)head * keys;
    for (int i = threadIdx.x; i < d; i += blockDim.x) {
        q_s[i] = load_f(q[(size_t)head * d + i]);
    }
    __syncthreads();

    // Scores and their maximum (the sink joins the softmax as one more logit).
    float local_max = -INFINITY;
    for (int j = threadIdx.x; j < keys; j += blockDim.x) {
        const KV* row = k_head + (size_t)j * d;
        float s = 0.0f;
        for (int i = 0; i < d; i++) {
            s += q_s[i] * load_f(row[i]);
        }
        scores[j] = s;
        local_max = fmaxf(local_max, s);
    }
    const float sink = sinks[head];
    const float top = fmaxf(block_reduce(local_max, red, true), sink);

    float local_sum = 0.0f;
    for (int j = threadIdx.x; j < keys; j += blockDim.x) {
        const float p = expf(scores[j] - top);
        scores[j] = p;
        local_sum += p;
    }
    const float total = block_reduce(local_sum, red, false) + expf(sink - top);

    // out[i] = sum_j p_j v[j, i] / total: groups of d threads take every groups-th key.
    const int groups = blockDim.x / d;
    const int i = threadIdx.x % d, group = threadIdx.x / d;
    float acc = 0.0f;
    if (group < groups) {
        for (int j = group; j < keys; j += groups) {
            acc += scores[j] * load_f(v_head[(size_t)j * d + i]);
        }
    }
    red[threadIdx.x] = acc;
    __syncthreads();
    if (threadIdx.x < d) {
        float sum = 0.0f;
        for (int g = 0; g < groups; g++) {
            sum += red[g * d + threadIdx.x];
        }
        store_f(out + (size_t)head * d + threadIdx.x, sum / total);
    }
}

extern "C" __global__ void attention_decode_bf16(
    const __nv_bfloat16* __restrict__ q, const __nv_bfloat16* __restrict__ k,
    const __nv_bfloat16* __restrict__ v, const float* __restrict__ sinks,
    float* __restrict__ scratch, __nv_bfloat16* __restrict__ out, int heads, int kv_heads,
    int keys, int d, long long k_head_stride, long long v_head_stride) {
    attention_decode(q, k, v, sinks, scratch, out, heads, kv_heads, keys, d, k_head_stride,
                     v_head_stride);
}

extern "C" __global__ void attention_decode_f32(
    const float* __restrict__ q, const float* __restrict__ k, const float* __restrict__ v,
    const float* __restrict__ sinks, float* __restrict__ scratch, float* __restrict__ out,
    int heads, int kv_heads, int keys, int d, long long k_head_stride,
    long long v_head_stride) {
    attention_decode(q, k, v, sinks, scratch, out, heads, kv_heads, keys, d, k_head_stride,
                     v_head_stride);
}

// f32 queries over a bf16 cache (CUDA's default mode).
extern "C" __global__ void attention_decode_f32_bf16(
    const float* __restrict__ q, const __nv_bfloat16* __restrict__ k,
    const __nv_bfloat16* __restrict__ v, const float* __restrict__ sinks,
    float* __restrict__ scratch, float* __restrict__ out, int heads, int kv_heads, int keys,
    int d, long long k_head_stride, long long v_head_stride) {
    attention_decode(q, k, v, sinks, scratch, out, heads, kv_heads, keys, d, k_head_stride,
                     v_head_stride);
}

// One block per (head, split): keys [split * blockDim.x, ...) of the head, one thread per key
// for the scores. Writes part[head, split] = (sum_j e^(s_j - m) v_j [d values], m, sum_j
// e^(s_j - m)), the block's maximum score m, unnormalised.
template <typename Q, typename KV>
__device__ void attention_decode_split(const Q* __restrict__ q, const KV* __restrict__ k,
                                       const KV* __restrict__ v, float* __restrict__ part,
                                       int heads, int kv_heads, int keys, int d,
                                       long long k_head_stride, long long v_head_stride) {
    __shared__ float q_s[MAX_HEAD_DIM];
    __shared__ float p_s[1024];
    __shared__ float red[1024];
    const int head = blockIdx.x, split = blockIdx.y, splits = gridDim.y;
    const int kv = head / (heads / kv_heads);
    const int first = split * blockDim.x;
    const int count = min((int)blockDim.x, keys - first);
    const KV* k_head = k + kv * k_head_stride + (size_t)first * d;
    const KV* v_head = v + kv * v_head_stride + (size_t)first * d;
    for (int i = threadIdx.x; i < d; i += blockDim.x) {
        q_s[i] = load_f(q[(size_t)head * d + i]);
    }
    __syncthreads();

    float score = -INFINITY;
    if ((int)threadIdx.x < count) {
        const KV* row = k_head + (size_t)threadIdx.x * d;
        score = 0.0f;
        for (int i = 0; i < d; i++) {
            score += q_s[i] * load_f(row[i]);
        }
    }
    const float top = block_reduce(score, red, true);
    const float p = (int)threadIdx.x < count ? expf(score - top) : 0.0f;
    p_s[threadIdx.x] = p;
    const float total = block_reduce(p, red, false);

    // Groups of d threads take every groups-th key of the block's share.
    const int groups = blockDim.x / d;
    const int i = threadIdx.x % d, group = threadIdx.x / d;
    float acc = 0.0f;
    for (int j = group; j < count; j += groups) {
        acc += p_s[j] * load_f(v_head[(size_t)j * d + i]);
    }
    red[threadIdx.x] = acc;
    __syncthreads();
    float* out = part + ((size_t)head * splits + split) * (d + 2);
    if ((int)threadIdx.x < d) {
        float sum = 0.0f;
        for (int g = 0; g < groups; g++) {
            sum += red[g * d + threadIdx.x];
        }
        out[threadIdx.x] = sum;
    }
    if (threadIdx.x == 0) {
        out[d] = top;
        out[d + 1] = total;
    }
}

// One block of d threads per head: the splits' shares rescaled to the largest of their maxima
// and the sink, summed, and divided by the total weight (the sink's included).
template <typename T>
__device__ void attention_decode_combine(const float* __restrict__ part,
                                         const float* __restrict__ sinks, T* __restrict__ out,
                                         int splits, int d) {
    const int head = blockIdx.x, i = threadIdx.x;
    const float* shares = part + (size_t)head * splits * (d + 2);
    const float sink = sinks[head];
    float top = sink;
    for (int s = 0; s < splits; s++) {
        top = fmaxf(top, shares[(size_t)s * (d + 2) + d]);
    }
    float total = expf(sink - top), acc = 0.0f;
    for (int s = 0; s < splits; s++) {
        const float* share = shares + (size_t)s * (d + 2);
        const float scale = expf(share[d] - top);
        total += scale * share[d + 1];
        acc += scale * share[i];
    }
    store_f(out + (size_t)head * d + i, acc / total);
}

extern "C" __global__ void attention_decode_split_bf16(
    const __nv_bfloat16* __restrict__ q, const __nv_bfloat16* __restrict__ k,
    const __nv_bfloat16* __restrict__ v, float* __restrict__ part, int heads, int kv_heads,
    int keys, int d, long long k_head_stride, long long v_head_stride) {
    attention_decode_split(q, k, v, part, heads, kv_heads, keys, d, k_head_stride,
                           v_head_stride);
}

extern "C" __global__ void attention_decode_split_f32(
    const float* __restrict__ q, const float* __restrict__ k, const float* __restrict__ v,
    float* __restrict__ part, int heads, int kv_heads, int keys, int d,
    long long k_head_stride, long long v_head_stride) {
    attention_decode_split(q, k, v, part, heads, kv_heads, keys, d, k_head_stride,
                           v_head_stride);
}

extern "C" __global__ void attention_decode_split_f32_bf16(
    const float* __restrict__ q, const __nv_bfloat16* __restrict__ k,
    const __nv_bfloat16* __restrict__ v, float* __restrict__ part, int heads, int kv_heads,
    int keys, int d, long long k_head_stride, long long v_head_stride) {
    attention_decode_split(q, k, v, part, heads, kv_heads, keys, d, k_head_stride,
                           v_head_stride);
}

extern "C" __global__ void attention_decode_combine_bf16(const float* __restrict__ part,
                                                         const float* __restrict__ sinks,
                                                         __nv_bfloat16* __restrict__ out,
                                                         int splits, int d) {
    attention_decode_combine<__nv_bfloat16>(part, sinks, out, splits, d);
}

extern "C" __global__ void attention_decode_combine_f32(const float* __restrict__ part,
                                                        const float* __restrict__ sinks,
                                                        float* __restrict__ out, int splits,
                                                        int d) {
    attention_decode_combine<float>(part, sinks, out, splits, d);
}
