// The fused decoding-step kernels of decode_kernels.h.
//
// The three products (in_proj, x_proj, out_proj) share one kernel: a block first builds its input rows x (b, i)
// in shared memory — RMSNorm of the residual, the conv step with SiLU, or a plain copy — and then each warp
// computes output features for all b rows, its lanes reading 8 weights at a time (16 bytes for bf16/f16) as the
// few-row kernel of gemv_kernel.cu does. Recomputing the norm or the conv in every block costs a few KB of L2
// reads per block and saves a launch and a round trip through device memory; each warp loads the start of its
// weight row before the prologue, so that the two overlap. One warp per feature (the grid is capped at
// kMaxBlocks blocks, beyond which warps loop).
// The scan step gives each (row, channel) a group of G lanes (G = n rounded up to a power of two, at most 32),
// as scan_step_kernel.cu does, with the conv output, the conv-state shift and the dt_proj row folded in.
// The arithmetic follows the unfused ops (infer_kernels.cu, scan_step_kernel.cu) expression by expression.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <cstdint>

#include "core/cuda/check.h"
#include "ops/cuda/decode_kernels.h"

namespace mambacpp::cuda {
namespace {

constexpr int kWarps = 8;
constexpr int kThreads = kWarps * 32;
constexpr int kMaxBlocks = 4096;
constexpr int kPrefetch = 4;  // weight chunks (8 per lane) a warp loads before its block's prologue
constexpr int64_t kMaxSharedBytes = 200 * 1024;
constexpr int kSsmThreads = 128;

bool refuse(std::string* why, const std::string& msg) {
  if (why != nullptr) *why = msg;
  return false;
}

__device__ __forceinline__ float to_f32(float x) { return x; }
__device__ __forceinline__ float to_f32(__nv_bfloat16 x) { return __bfloat162float(x); }
__device__ __forceinline__ float to_f32(__half x) { return __half2float(x); }

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

__device__ __forceinline__ float silu_fast(float x) { return x / (1.0f + __expf(-x)); }

// xs (b, i) = rmsnorm(residual) · norm_w, rows reduced together (M ≥ b).
template <int M>
__device__ void norm_prologue(const DecodeGemvParams& p, float* xs) {
  __shared__ float part[kWarps][M];
  __shared__ float scale[M];
  float sum[M];
#pragma unroll
  for (int r = 0; r < M; ++r) {
    sum[r] = 0.0f;
    if (r < p.b)
      for (int64_t j = threadIdx.x; j < p.i; j += kThreads) {
        const float v = p.residual[r * p.i + j];
        sum[r] += v * v;
      }
    for (int o = 16; o > 0; o >>= 1) sum[r] += __shfl_xor_sync(0xffffffffu, sum[r], o);
    if (threadIdx.x % 32 == 0) part[threadIdx.x / 32][r] = sum[r];
  }
  __syncthreads();
  if (threadIdx.x < M) {
    float s = 0.0f;
    for (int w = 0; w < kWarps; ++w) s += part[w][threadIdx.x];
    scale[threadIdx.x] = rsqrtf(s / float(p.i) + p.eps);
  }
  __syncthreads();
  for (int64_t t = threadIdx.x; t < p.b * p.i; t += kThreads) {
    const int64_t r = t / p.i, j = t % p.i;
    xs[t] = p.residual[r * p.i + j] * scale[r] * p.norm_w[j];
  }
}

// xs (b, i) = silu(conv1d step) of every channel; the state is only read.
__device__ void conv_prologue(const DecodeGemvParams& p, float* xs) {
  const int64_t km1 = p.k - 1;
  for (int64_t t = threadIdx.x; t < p.b * p.i; t += kThreads) {
    const int64_t r = t / p.i, c = t % p.i;
    const float* st = p.conv_state + t * km1;
    float acc = p.conv_b != nullptr ? p.conv_b[c] : 0.0f;
    for (int64_t j = 0; j < km1; ++j) acc += p.conv_w[c * p.k + j] * st[j];
    acc += p.conv_w[c * p.k + km1] * p.xin[r * p.ld_xin + c];
    xs[t] = silu_fast(acc);
  }
}

// acc[r] += w chunk (8 weights at column k) · x row r chunk, for every row.
template <int M>
__device__ __forceinline__ void fma_chunk(float* acc, const float* wv, const float* xs, int64_t i, int64_t k, int64_t b) {
#pragma unroll
  for (int r = 0; r < M; ++r) {
    if (r >= b) break;
    float xv[8];
    load8(xs + r * i + k, xv);
#pragma unroll
    for (int j = 0; j < 8; ++j) acc[r] += wv[j] * xv[j];
  }
}

template <class W, DecodeGemvKind K, int M>
__global__ void __launch_bounds__(kThreads) decode_gemv_kernel(DecodeGemvParams p) {
  extern __shared__ float4 shared_x[];
  float* xs = reinterpret_cast<float*>(shared_x);
  const int lane = threadIdx.x % 32;
  const int64_t first_row = int64_t(blockIdx.x) * kWarps + threadIdx.x / 32;
  // The first kPrefetch chunks of this warp's first weight row are loaded before the prologue, so that their
  // latency overlaps it.
  float pre[kPrefetch][8];
#pragma unroll
  for (int c = 0; c < kPrefetch; ++c) {
    const int64_t k = int64_t(lane) * 8 + c * 256;
    if (first_row < p.o && k < p.i) load8(static_cast<const W*>(p.w) + first_row * p.i + k, pre[c]);
  }
  if constexpr (K == DecodeGemvKind::norm) {
    norm_prologue<M>(p, xs);
  } else if constexpr (K == DecodeGemvKind::conv) {
    conv_prologue(p, xs);
  } else {
    for (int64_t t = threadIdx.x; t < p.b * p.i; t += kThreads) xs[t] = p.y_in[t];
  }
  __syncthreads();
  for (int64_t row = first_row; row < p.o; row += int64_t(gridDim.x) * kWarps) {
    const W* w = static_cast<const W*>(p.w) + row * p.i;
    float acc[M];
#pragma unroll
    for (int r = 0; r < M; ++r) acc[r] = 0.0f;
#pragma unroll
    for (int c = 0; c < kPrefetch; ++c) {
      const int64_t k = int64_t(lane) * 8 + c * 256;
      if (k >= p.i) break;
      float wv[8];
      if (row == first_row) {
#pragma unroll
        for (int j = 0; j < 8; ++j) wv[j] = pre[c][j];
      } else {
        load8(w + k, wv);
      }
      fma_chunk<M>(acc, wv, xs, p.i, k, p.b);
    }
    for (int64_t k = int64_t(lane) * 8 + kPrefetch * 256; k < p.i; k += 32 * 8) {
      float wv[8];
      load8(w + k, wv);
      fma_chunk<M>(acc, wv, xs, p.i, k, p.b);
    }
#pragma unroll
    for (int r = 0; r < M; ++r)
      for (int off = 16; off > 0; off >>= 1) acc[r] += __shfl_xor_sync(0xffffffffu, acc[r], off);
    if (lane == 0) {
      const float bias = p.bias != nullptr ? p.bias[row] : 0.0f;
#pragma unroll
      for (int r = 0; r < M; ++r) {
        if (r >= p.b) break;
        if constexpr (K == DecodeGemvKind::add)
          p.y[r * p.ld_y + row] += acc[r] + bias;
        else
          p.y[r * p.ld_y + row] = acc[r] + bias;
      }
    }
  }
}

template <class W, DecodeGemvKind K, int M>
void launch_gemv(const DecodeGemvParams& p, cudaStream_t stream) {
  // The dynamic shared-memory limit is raised when a call first needs more than the default 48 KB (the first
  // decoding step runs outside any graph capture).
  static int64_t limit = 48 * 1024;
  const int64_t bytes = p.b * p.i * int64_t(sizeof(float));
  if (bytes > limit) {
    CUDA_CHECK(cudaFuncSetAttribute(decode_gemv_kernel<W, K, M>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                    int(bytes)));
    limit = bytes;
  }
  const int64_t blocks = std::min<int64_t>((p.o + kWarps - 1) / kWarps, kMaxBlocks);
  decode_gemv_kernel<W, K, M><<<unsigned(blocks), kThreads, size_t(bytes), stream>>>(p);
  CUDA_CHECK_LAUNCH("decode_gemv_kernel", stream);
}

template <class W, DecodeGemvKind K>
void launch_rows(const DecodeGemvParams& p, cudaStream_t stream) {
  if (p.b <= 1)
    launch_gemv<W, K, 1>(p, stream);
  else if (p.b <= 2)
    launch_gemv<W, K, 2>(p, stream);
  else if (p.b <= 4)
    launch_gemv<W, K, 4>(p, stream);
  else
    launch_gemv<W, K, 8>(p, stream);
}

template <class W>
void launch_kind(const DecodeGemvParams& p, DecodeGemvKind kind, cudaStream_t stream) {
  switch (kind) {
    case DecodeGemvKind::norm: launch_rows<W, DecodeGemvKind::norm>(p, stream); break;
    case DecodeGemvKind::conv: launch_rows<W, DecodeGemvKind::conv>(p, stream); break;
    case DecodeGemvKind::add: launch_rows<W, DecodeGemvKind::add>(p, stream); break;
  }
}

template <class W>
__global__ void __launch_bounds__(kSsmThreads) decode_ssm_kernel(DecodeSsmParams p, int group) {
  const int64_t t = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t i = t / group, g = t % group;
  const bool valid = i < p.b * p.e;
  const int64_t bi = valid ? i / p.e : 0, c = valid ? i % p.e : 0, n = p.n, km1 = p.k - 1;
  const int64_t xw = p.r + 2 * n;
  const float* xd = p.xdbl + bi * xw;
  float u = 0.0f, dt = 0.0f, y = 0.0f, x_new = 0.0f;
  if (valid) {
    const float* st = p.conv_state + i * km1;
    x_new = p.xz[bi * 2 * p.e + c];
    float acc = p.conv_b != nullptr ? p.conv_b[c] : 0.0f;
    for (int64_t j = 0; j < km1; ++j) acc += p.conv_w[c * p.k + j] * st[j];
    acc += p.conv_w[c * p.k + km1] * x_new;
    u = silu_fast(acc);
    const W* wd = static_cast<const W*>(p.dt_proj) + c * p.r;
    for (int64_t q = g; q < p.r; q += group) dt += to_f32(wd[q]) * xd[q];
  }
  for (int off = group / 2; off > 0; off >>= 1) dt += __shfl_xor_sync(0xffffffffu, dt, off);
  if (valid) {
    float delta = dt + p.dt_bias[c];
    delta = delta > 20.0f ? delta : log1pf(expf(delta));
    const float du = delta * u;
    const float* A = p.A + c * n;
    float* h = p.ssm_state + i * n;
    for (int64_t s = g; s < n; s += group) {
      const float hs = expf(delta * A[s]) * h[s] + du * xd[p.r + s];
      y += hs * xd[p.r + n + s];
      h[s] = hs;
    }
  }
  for (int off = group / 2; off > 0; off >>= 1) y += __shfl_xor_sync(0xffffffffu, y, off);
  if (!valid || g != 0) return;
  y += p.D[c] * u;
  const float z = p.xz[bi * 2 * p.e + p.e + c];
  p.y[bi * p.e + c] = y * (z / (1.0f + expf(-z)));
  float* st = p.conv_state + i * km1;  // every lane of the group has read it (the shuffles above)
  for (int64_t j = 0; j + 1 < km1; ++j) st[j] = st[j + 1];
  if (km1 > 0) st[km1 - 1] = x_new;
}

bool aligned16(const void* ptr) { return reinterpret_cast<uintptr_t>(ptr) % 16 == 0; }

}  // namespace

bool decode_gemv_supports(const DecodeGemvParams& p, DecodeGemvKind kind, std::string* why) {
  if (p.b < 1 || p.b > kDecodeMaxRows)
    return refuse(why, "decode step: batch " + std::to_string(p.b) + " is outside 1.." + std::to_string(kDecodeMaxRows));
  if (p.i % 8 != 0) return refuse(why, "decode step: the product's input width must be a multiple of 8");
  if (!aligned16(p.w)) return refuse(why, "decode step: the matrix is not 16-byte aligned");
  if (p.b * p.i * int64_t(sizeof(float)) > kMaxSharedBytes)
    return refuse(why, "decode step: b · i is too large for shared memory");
  if (kind == DecodeGemvKind::conv && (p.k < 1 || p.k > kDecodeMaxWidth))
    return refuse(why, "decode step: conv width outside 1.." + std::to_string(kDecodeMaxWidth));
  return true;
}

void decode_gemv_launch(const DecodeGemvParams& p, DecodeGemvKind kind, cudaStream_t stream) {
  if (p.o == 0) return;
  switch (p.w_dtype) {
    case DType::f32: launch_kind<float>(p, kind, stream); break;
    case DType::bf16: launch_kind<__nv_bfloat16>(p, kind, stream); break;
    case DType::f16: launch_kind<__half>(p, kind, stream); break;
  }
}

bool decode_ssm_supports(const DecodeSsmParams& p, std::string* why) {
  if (p.n < 1 || p.n > kDecodeMaxState)
    return refuse(why, "decode step: d_state outside 1.." + std::to_string(kDecodeMaxState));
  if (p.k < 1 || p.k > kDecodeMaxWidth)
    return refuse(why, "decode step: conv width outside 1.." + std::to_string(kDecodeMaxWidth));
  if (p.r < 1) return refuse(why, "decode step: dt_rank must be at least 1");
  return true;
}

void decode_ssm_launch(const DecodeSsmParams& p, cudaStream_t stream) {
  if (p.b * p.e == 0) return;
  int group = 1;
  while (group < 32 && group < p.n) group *= 2;
  const unsigned blocks = unsigned((p.b * p.e * group + kSsmThreads - 1) / kSsmThreads);
  switch (p.dt_dtype) {
    case DType::f32: decode_ssm_kernel<float><<<blocks, kSsmThreads, 0, stream>>>(p, group); break;
    case DType::bf16: decode_ssm_kernel<__nv_bfloat16><<<blocks, kSsmThreads, 0, stream>>>(p, group); break;
    case DType::f16: decode_ssm_kernel<__half><<<blocks, kSsmThreads, 0, stream>>>(p, group); break;
  }
  CUDA_CHECK_LAUNCH("decode_ssm_kernel", stream);
}

}  // namespace mambacpp::cuda
