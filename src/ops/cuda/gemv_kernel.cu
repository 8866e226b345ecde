// The few-row matrix product of gemv_kernel.h. One warp computes one output feature for all m rows: its lanes
// walk the weight row in pieces of 8 elements (one 16-byte load for bf16/f16, two for f32) when the row and
// x are 16-byte aligned, element by element otherwise, then the warp adds its partial sums with shuffles.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "core/cuda/check.h"
#include "ops/cuda/gemv_kernel.h"

namespace mambacpp::cuda {
namespace {

constexpr int kWarps = 8;  // per block

__device__ __forceinline__ float to_f32(float x) { return x; }
__device__ __forceinline__ float to_f32(__nv_bfloat16 x) { return __bfloat162float(x); }
__device__ __forceinline__ float to_f32(__half x) { return __half2float(x); }

// Eight consecutive weights as f32 (16-byte aligned).
__device__ __forceinline__ void load8(const float* w, float* out) {
  const float4 a = reinterpret_cast<const float4*>(w)[0], b = reinterpret_cast<const float4*>(w)[1];
  out[0] = a.x, out[1] = a.y, out[2] = a.z, out[3] = a.w, out[4] = b.x, out[5] = b.y, out[6] = b.z, out[7] = b.w;
}
template <class H>
__device__ __forceinline__ void load8(const H* w, float* out) {
  const uint4 raw = *reinterpret_cast<const uint4*>(w);
  const H* h = reinterpret_cast<const H*>(&raw);
#pragma unroll
  for (int k = 0; k < 8; ++k) out[k] = to_f32(h[k]);
}

template <class W, int M>
__global__ void __launch_bounds__(kWarps * 32) gemv_kernel(GemvParams p, bool vec) {
  const int lane = threadIdx.x % 32;
  const int64_t row = int64_t(blockIdx.x) * kWarps + threadIdx.x / 32;
  if (row >= p.o) return;
  const W* w = static_cast<const W*>(p.w) + row * p.ld_w;
  float acc[M];
#pragma unroll
  for (int r = 0; r < M; ++r) acc[r] = 0.0f;
  int64_t k0 = 0;
  if (vec) {
    const int64_t full = p.i / 8 * 8;
    for (int64_t k = int64_t(lane) * 8; k < full; k += 32 * 8) {
      float wv[8];
      load8(w + k, wv);
#pragma unroll
      for (int r = 0; r < M; ++r) {
        if (r >= p.m) break;
        float xv[8];
        load8(p.x + r * p.ld_x + k, xv);
#pragma unroll
        for (int j = 0; j < 8; ++j) acc[r] += wv[j] * xv[j];
      }
    }
    k0 = full;
  }
  for (int64_t k = k0 + lane; k < p.i; k += 32) {
    const float wk = to_f32(w[k]);
#pragma unroll
    for (int r = 0; r < M; ++r)
      if (r < p.m) acc[r] += wk * p.x[r * p.ld_x + k];
  }
#pragma unroll
  for (int r = 0; r < M; ++r)
    for (int off = 16; off > 0; off >>= 1) acc[r] += __shfl_xor_sync(0xffffffffu, acc[r], off);
  if (lane == 0) {
    const float b = p.bias != nullptr ? p.bias[row] : 0.0f;
#pragma unroll
    for (int r = 0; r < M; ++r)
      if (r < p.m) p.y[r * p.ld_y + row] = acc[r] + b;
  }
}

bool aligned16(const void* ptr, int64_t pitch_bytes) {
  return reinterpret_cast<uintptr_t>(ptr) % 16 == 0 && pitch_bytes % 16 == 0;
}

template <class W>
void launch(const GemvParams& p, cudaStream_t stream) {
  const int64_t es = int64_t(sizeof(W));
  const bool vec = aligned16(p.w, p.ld_w * es) && (p.m <= 1 || aligned16(p.x, p.ld_x * 4)) &&
                   reinterpret_cast<uintptr_t>(p.x) % 16 == 0;
  const unsigned blocks = unsigned((p.o + kWarps - 1) / kWarps);
  // Rows are handled in register blocks of 1, 2, 4 or 8.
  if (p.m <= 1)
    gemv_kernel<W, 1><<<blocks, kWarps * 32, 0, stream>>>(p, vec);
  else if (p.m <= 2)
    gemv_kernel<W, 2><<<blocks, kWarps * 32, 0, stream>>>(p, vec);
  else if (p.m <= 4)
    gemv_kernel<W, 4><<<blocks, kWarps * 32, 0, stream>>>(p, vec);
  else
    gemv_kernel<W, 8><<<blocks, kWarps * 32, 0, stream>>>(p, vec);
  CUDA_CHECK_LAUNCH("gemv_kernel", stream);
}

}  // namespace

bool gemv_kernel_supports(const GemvParams& p, std::string* why) {
  if (p.m > kGemvMaxRows) {
    if (why != nullptr) *why = "gemv: more than " + std::to_string(kGemvMaxRows) + " rows";
    return false;
  }
  if ((p.o + kWarps - 1) / kWarps > int64_t(INT32_MAX)) {
    if (why != nullptr) *why = "gemv: too many output features for one launch";
    return false;
  }
  return true;
}

void gemv_kernel_launch(const GemvParams& p, cudaStream_t stream) {
  if (p.m == 0 || p.o == 0) return;
  switch (p.w_dtype) {
    case DType::f32: launch<float>(p, stream); break;
    case DType::bf16: launch<__nv_bfloat16>(p, stream); break;
    case DType::f16: launch<__half>(p, stream); break;
  }
}

}  // namespace mambacpp::cuda
