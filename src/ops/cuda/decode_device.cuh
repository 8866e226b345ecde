// Device building blocks of the fused decoding step (decode_kernels.cu): weight rows read 8 elements (a
// "piece") per 16-byte load, the grid barrier in two halves, and a warp's product of one weight row with up to M
// input rows held in shared memory.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <type_traits>

namespace mambacpp::cuda::decode_step {

// ---- loads ---------------------------------------------------------------------------------------------------

// 16 bytes of weights, not kept in L1 (each is read once per step).
__device__ __forceinline__ uint4 ld_weights(const void* p) {
  uint4 v;
  asm("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
      : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
      : "l"(p));
  return v;
}

__device__ __forceinline__ void prefetch_l2(const void* p) { asm volatile("prefetch.global.L2 [%0];" ::"l"(p)); }

// Asks L2 for `bytes` bytes at p, the warp's lanes taking 128-byte lines in turn.
__device__ __forceinline__ void prefetch_bytes(const void* p, int64_t bytes, int lane) {
  for (int64_t off = int64_t(lane) * 128; off < bytes; off += 32 * 128) prefetch_l2(static_cast<const char*>(p) + off);
}

// Asks L1 for `bytes` bytes at p (the lines come to the SM, so later loads of them hit L1), the warp's lanes taking
// 128-byte lines in turn.
__device__ __forceinline__ void prefetch_l1_bytes(const void* p, int64_t bytes, int lane) {
  for (int64_t off = int64_t(lane) * 128; off < bytes; off += 32 * 128)
    asm volatile("prefetch.global.L1 [%0];" ::"l"(static_cast<const char*>(p) + off));
}

// 8 consecutive weights in their stored dtype.
template <class W>
struct Piece {
  uint4 raw;
};
template <>
struct Piece<float> {
  uint4 lo, hi;
};

template <class W>
__device__ __forceinline__ Piece<W> load_piece(const W* w) {
  return Piece<W>{ld_weights(w)};
}
template <>
__device__ __forceinline__ Piece<float> load_piece<float>(const float* w) {
  return Piece<float>{ld_weights(w), ld_weights(w + 4)};
}

__device__ __forceinline__ void unpack(const Piece<float>& p, float* f) {
  f[0] = __uint_as_float(p.lo.x), f[1] = __uint_as_float(p.lo.y), f[2] = __uint_as_float(p.lo.z);
  f[3] = __uint_as_float(p.lo.w), f[4] = __uint_as_float(p.hi.x), f[5] = __uint_as_float(p.hi.y);
  f[6] = __uint_as_float(p.hi.z), f[7] = __uint_as_float(p.hi.w);
}
__device__ __forceinline__ float2 to_float2(__nv_bfloat162 h) { return __bfloat1622float2(h); }
__device__ __forceinline__ float2 to_float2(__half2 h) { return __half22float2(h); }

// A half piece (W = __nv_bfloat16 or __half): its four pairs widened.
template <class W>
__device__ __forceinline__ void unpack(const Piece<W>& p, float* f) {
  using Pair = std::conditional_t<std::is_same_v<W, __half>, __half2, __nv_bfloat162>;
  const Pair* h = reinterpret_cast<const Pair*>(&p.raw);
#pragma unroll
  for (int k = 0; k < 4; ++k) {
    const float2 t = to_float2(h[k]);
    f[2 * k] = t.x, f[2 * k + 1] = t.y;
  }
}

__device__ __forceinline__ float to_f32(float x) { return x; }
__device__ __forceinline__ float to_f32(__nv_bfloat16 x) { return __bfloat162float(x); }
__device__ __forceinline__ float to_f32(__half x) { return __half2float(x); }

__device__ __forceinline__ float silu_f(float x) { return x / (1.0f + __expf(-x)); }

// ---- the grid barrier ----------------------------------------------------------------------------------------

__device__ __forceinline__ unsigned long long ld_acquire(const unsigned long long* p) {
  unsigned long long v;
  asm volatile("ld.acquire.gpu.global.u64 %0, [%1];" : "=l"(v) : "l"(p) : "memory");
  return v;
}

__device__ __forceinline__ unsigned long long ld_relaxed(const unsigned long long* p) {
  unsigned long long v;
  asm volatile("ld.relaxed.gpu.global.u64 %0, [%1];" : "=l"(v) : "l"(p) : "memory");
  return v;
}

__device__ __forceinline__ void red_release(unsigned long long* p, unsigned long long x) {
  asm volatile("red.release.gpu.global.add.u64 [%0], %1;" ::"l"(p), "l"(x) : "memory");
}

// The grid barrier in two halves: grid_arrive, then grid_wait. Every block waits in grid_wait until all have
// called grid_arrive; writes before grid_arrive are visible to reads after grid_wait. *count only grows, by one
// per arrival: nothing is reset, so the counter is ready for the next barrier and the next launch (2^64 arrivals
// do not wrap in practice). Thread 0 of each block keeps the count that passes its next barrier (`next`): at the
// start of a launch every earlier launch's arrivals are in, and no barrier of this launch can pass before this
// block has arrived, so the count it reads then lies in [base, base + blocks), base a multiple of the grid size
// (grid_start). An arrival is a release-reduction, which does not wait for an answer; the critical path is the
// reduction reaching L2 and one acquire-load round trip of the pollers.
//
// Between the halves the warps load the next phase's first weights and inputs (data written before the previous
// barrier, or never written). They are not loaded before the arrival: the release waits until the arriving
// warp's earlier loads have returned, so loads queued behind the L2 requests of a whole phase held every block's
// arrival by their DRAM latency (a trace per phase measured phase C → D at ~7 µs instead of ~1.5).
struct GridBarrier {
  unsigned long long* count;
  unsigned long long next;  // thread 0: the count that passes this block's next barrier
};

__device__ __forceinline__ GridBarrier grid_start(unsigned long long* count) {
  GridBarrier g{count, 0};
  if (threadIdx.x == 0) g.next = ld_relaxed(count) / gridDim.x * gridDim.x;
  return g;
}

__device__ __forceinline__ void grid_arrive(GridBarrier& g) {
  __syncthreads();
  if (threadIdx.x == 0) {
    red_release(g.count, 1);
    g.next += gridDim.x;
  }
}

__device__ __forceinline__ void grid_wait(const GridBarrier& g) {
  if (threadIdx.x == 0)
    while (ld_acquire(g.count) < g.next) {
    }
  __syncthreads();
}

// ---- products ------------------------------------------------------------------------------------------------

template <int M>
__device__ __forceinline__ void warp_sum(float (&acc)[M]) {
#pragma unroll
  for (int r = 0; r < M; ++r)
    for (int off = 16; off > 0; off >>= 1) acc[r] += __shfl_xor_sync(0xffffffffu, acc[r], off);
}

// acc[r] += the piece · x[r·ldx .. +8] for the rows r < b (x 16-byte aligned).
template <class W, int M>
__device__ __forceinline__ void fma_piece(float (&acc)[M], const Piece<W>& pc, const float* x, int64_t ldx, int64_t b) {
  float w[8];
  unpack(pc, w);
#pragma unroll
  for (int r = 0; r < M; ++r) {
    if (r >= b) break;
    const float4 x0 = reinterpret_cast<const float4*>(x + r * ldx)[0];
    const float4 x1 = reinterpret_cast<const float4*>(x + r * ldx)[1];
    acc[r] += w[0] * x0.x, acc[r] += w[1] * x0.y, acc[r] += w[2] * x0.z, acc[r] += w[3] * x0.w;
    acc[r] += w[4] * x1.x, acc[r] += w[5] * x1.y, acc[r] += w[6] * x1.z, acc[r] += w[7] * x1.w;
  }
}

// The first H pieces of a lane's share of one weight row, loaded ahead (before a barrier).
template <class W, int H>
struct RowHead {
  Piece<W> pc[H];
};

template <class W, int H>
__device__ __forceinline__ void load_head(RowHead<W, H>& h, const W* w, int64_t i, int lane) {
#pragma unroll
  for (int g = 0; g < H; ++g)
    if (int64_t(lane) * 8 + g * 256 < i) h.pc[g] = load_piece(w + int64_t(lane) * 8 + g * 256);
}

// acc[r] = Σ_k w[k] · x[r·ldx + k] over a weight row of i elements (i a multiple of 8), summed over the warp:
// every lane holds the totals. With from_head, head holds the row's first pieces (load_head). (head is taken by
// reference with a flag, not as a pointer that may be null: a pointer chosen at run time kept it in local memory,
// and the store of each preloaded piece there waited for its load.)
template <class W, int M, int G, int H>
__device__ __forceinline__ void row_dot(float (&acc)[M], const W* w, const float* x, int64_t ldx, int64_t i,
                                        int64_t b, int lane, const RowHead<W, H>& head, bool from_head) {
#pragma unroll
  for (int r = 0; r < M; ++r) acc[r] = 0.0f;
  for (int64_t k0 = int64_t(lane) * 8; k0 < i; k0 += 256 * G) {
    Piece<W> pc[G];
    if (from_head && k0 == int64_t(lane) * 8) {
#pragma unroll
      for (int g = 0; g < G; ++g)
        if (g < H)
          pc[g] = head.pc[g];
        else if (k0 + g * 256 < i)
          pc[g] = load_piece(w + k0 + g * 256);
    } else {
#pragma unroll
      for (int g = 0; g < G; ++g)
        if (k0 + g * 256 < i) pc[g] = load_piece(w + k0 + g * 256);
    }
#pragma unroll
    for (int g = 0; g < G; ++g)
      if (k0 + g * 256 < i) fma_piece<W, M>(acc, pc[g], x + k0 + g * 256, ldx, b);
  }
  warp_sum(acc);
}

// acc[lane] (+ bias): row `lane`'s result, held by lane `lane`.
template <int M>
__device__ __forceinline__ float lane_value(const float (&acc)[M], int lane) {
  float v = 0.0f;
#pragma unroll
  for (int r = 0; r < M; ++r)
    if (lane == r) v = acc[r];
  return v;
}

}  // namespace mambacpp::cuda::decode_step
