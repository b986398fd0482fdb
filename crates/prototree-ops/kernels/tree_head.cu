// CUDA kernels of the tree head (prototree-ops), compiled to PTX by build.rs under the
// `cuda` feature and loaded once per device. f32 only; every other dtype takes the
// generic path. Each kernel does the arithmetic of its CPU twin in the same order
// (build.rs passes --fmad=false so no multiply-add is contracted), so the results match
// the CPU kernels and the generic path up to the order of sums.

#include <stdint.h>

// The nearest patch of every (image, prototype): winners[b, j] is the first patch i
// reaching min_i |patch_sq[b, i] - 2 cross[b, i, j] + proto_sq[j]|.
// cross (b*n, p) row-major, patch_sq (b*n), proto_sq (p), winners (b*p). One thread per
// (image, prototype); neighbouring threads read neighbouring prototypes (coalesced).
extern "C" __global__ void min_argmin_f32(const float* cross, const float* patch_sq,
                                          const float* proto_sq, uint32_t* winners,
                                          uint32_t b, uint32_t n, uint32_t p) {
    const size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (size_t)b * p) return;
    const uint32_t bi = (uint32_t)(idx / p), j = (uint32_t)(idx % p);
    const float pp = proto_sq[j];
    const float* c = cross + (size_t)bi * n * p + j;
    const float* zz = patch_sq + (size_t)bi * n;
    float best = __int_as_float(0x7f800000);  // +inf
    uint32_t arg = 0;
    for (uint32_t i = 0; i < n; ++i) {
        const float v = fabsf(zz[i] - 2.0f * c[(size_t)i * p] + pp);
        if (v < best) {
            best = v;
            arg = i;
        }
    }
    winners[idx] = arg;
}

// Path probabilities of every node of one image into shared memory `nodes` (2p + 1
// values, heap order): right = pa * s, left = pa - right, level by level.
__device__ void node_paths(const float* r, float* nodes, uint32_t depth) {
    if (threadIdx.x == 0) nodes[0] = 1.0f;
    __syncthreads();
    for (uint32_t level = 0; level < depth; ++level) {
        const uint32_t width = 1u << level, first = width - 1;
        for (uint32_t k = threadIdx.x; k < width; k += blockDim.x) {
            const uint32_t h = first + k;
            const float right = nodes[h] * r[h];
            nodes[2 * h + 2] = right;
            nodes[2 * h + 1] = nodes[h] - right;
        }
        __syncthreads();
    }
}

// Leaf path probabilities: s (b, p) -> out (b, p + 1), one block per image, dynamic
// shared memory of (2p + 1) floats.
extern "C" __global__ void leaf_paths_fwd_f32(const float* s, float* out, uint32_t p,
                                              uint32_t depth) {
    extern __shared__ float nodes[];
    const float* r = s + (size_t)blockIdx.x * p;
    node_paths(r, nodes, depth);
    float* o = out + (size_t)blockIdx.x * (p + 1);
    for (uint32_t k = threadIdx.x; k <= p; k += blockDim.x) o[k] = nodes[p + k];
}

// Gradient of the leaf path probabilities: s (b, p), g (b, p + 1) -> gs (b, p), the exact
// reverse of `right = pa * s; left = pa - right`. One block per image, dynamic shared
// memory of 2 (2p + 1) floats.
extern "C" __global__ void leaf_paths_bwd_f32(const float* s, const float* g, float* gs,
                                              uint32_t p, uint32_t depth) {
    extern __shared__ float shared[];
    float* nodes = shared;
    float* gnodes = shared + 2 * p + 1;
    const float* r = s + (size_t)blockIdx.x * p;
    const float* gr = g + (size_t)blockIdx.x * (p + 1);
    float* gsr = gs + (size_t)blockIdx.x * p;
    for (uint32_t k = threadIdx.x; k <= p; k += blockDim.x) gnodes[p + k] = gr[k];
    node_paths(r, nodes, depth);  // ends with a barrier
    for (int level = (int)depth - 1; level >= 0; --level) {
        const uint32_t width = 1u << level, first = width - 1;
        for (uint32_t k = threadIdx.x; k < width; k += blockDim.x) {
            const uint32_t h = first + k;
            const float g_right = gnodes[2 * h + 2] - gnodes[2 * h + 1];
            gnodes[h] = gnodes[2 * h + 1] + g_right * r[h];
            gsr[h] = g_right * nodes[h];
        }
        __syncthreads();
    }
}

// The derivative-free leaf step after the evidence product:
// out = relu(params - (start * inv + 0)) + dist * evidence, elementwise over `count`.
extern "C" __global__ void leaf_step_f32(const float* params, const float* start,
                                         const float* dist, const float* evidence,
                                         float* out, uint32_t count, float inv) {
    const uint32_t i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= count) return;
    const float decayed = fmaxf(params[i] - (start[i] * inv + 0.0f), 0.0f);
    out[i] = decayed + dist[i] * evidence[i];
}

// Sum over the 32 lanes of a warp (every lane gets the sum).
__device__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

// Greedy path-only inference, one block per image (blockDim a multiple of 32): patch
// norms once, then per level only the reached node's prototype (a warp per patch, lanes
// over the channels). kinds[h]: 0 decide, 1 pass right, 2 pass left. For every image and
// level: heaps[b, level] the node and min_sq[b, level] its minimum squared distance (for
// deciding nodes; the host turns it into the similarity); leaves[b] the leaf reached.
// Dynamic shared memory: n + blockDim / 32 floats.
extern "C" __global__ void greedy_paths_f32(const float* z, const float* protos,
                                            const uint32_t* kinds, float* min_sq,
                                            uint32_t* heaps, uint32_t* leaves, uint32_t n,
                                            uint32_t d, uint32_t branches, uint32_t depth) {
    extern __shared__ float shared[];
    float* zz = shared;
    float* warp_best = shared + n;
    __shared__ uint32_t heap;
    const uint32_t lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
    const float* img = z + (size_t)blockIdx.x * n * d;
    for (uint32_t i = warp; i < n; i += warps) {
        float acc = 0.0f;
        for (uint32_t k = lane; k < d; k += 32) acc += img[(size_t)i * d + k] * img[(size_t)i * d + k];
        acc = warp_sum(acc);
        if (lane == 0) zz[i] = acc;
    }
    if (threadIdx.x == 0) heap = 0;
    __syncthreads();
    for (uint32_t level = 0; level < depth; ++level) {
        const uint32_t h = heap;
        __syncthreads();  // every thread has read `heap` before it changes
        const uint32_t kind = kinds[h];
        const size_t slot = (size_t)blockIdx.x * depth + level;
        if (kind == 0) {
            const float* pr = protos + (size_t)h * d;
            float pp = 0.0f;
            for (uint32_t k = lane; k < d; k += 32) pp += pr[k] * pr[k];
            pp = warp_sum(pp);
            float best = __int_as_float(0x7f800000);
            for (uint32_t i = warp; i < n; i += warps) {
                float c = 0.0f;
                for (uint32_t k = lane; k < d; k += 32) c += img[(size_t)i * d + k] * pr[k];
                c = warp_sum(c);
                best = fminf(best, fabsf(zz[i] - 2.0f * c + pp));
            }
            if (lane == 0) warp_best[warp] = best;
            __syncthreads();
            if (threadIdx.x == 0) {
                float m = warp_best[0];
                for (uint32_t w = 1; w < warps; ++w) m = fminf(m, warp_best[w]);
                const float sim = (float)exp(-sqrt((double)m + 1e-14));
                min_sq[slot] = m;
                heaps[slot] = h;
                heap = sim > 0.5f ? 2 * h + 2 : 2 * h + 1;
            }
        } else if (threadIdx.x == 0) {
            min_sq[slot] = 0.0f;
            heaps[slot] = h;
            heap = kind == 1 ? 2 * h + 2 : 2 * h + 1;
        }
        __syncthreads();
    }
    if (threadIdx.x == 0) leaves[blockIdx.x] = heap - branches;
}
