// The inference kernels of infer_kernels.h. All are memory-bound and simple: one thread per output element
// (embedding, conv1d, conversion, bias), one thread per channel (the conv1d decoding step) or one block per
// row (RMSNorm, argmax) with a block reduction.
// Accumulation is in f32 throughout.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>

#include "core/cuda/check.h"
#include "ops/cuda/infer_kernels.h"
#include "ops/cuda/scan_math.cuh"

namespace mambacpp::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxGrid = int64_t(1) << 30;

bool refuse(std::string* why, const std::string& msg) {
  if (why != nullptr) *why = msg;
  return false;
}

int blocks_for(int64_t count) { return int((count + kThreads - 1) / kThreads); }

__device__ __forceinline__ float load_as_f32(const void* p, DType t, int64_t i) {
  if (t == DType::bf16) return __bfloat162float(static_cast<const __nv_bfloat16*>(p)[i]);
  if (t == DType::f16) return __half2float(static_cast<const __half*>(p)[i]);
  return static_cast<const float*>(p)[i];
}

__global__ void embedding_kernel(EmbeddingParams p) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= p.m * p.d) return;
  const int64_t r = i / p.d, j = i % p.d;
  const int32_t id = p.ids[r];
  p.out[r * p.ld_out + j] = (id >= 0 && id < p.v) ? load_as_f32(p.table, p.table_dtype, int64_t(id) * p.d + j) : NAN;
}

// Sum over the block; every thread receives the total.
__device__ float block_sum(float v, float* shared) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, warps = blockDim.x / 32;
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  v = lane < warps ? shared[lane] : 0.0f;
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  __syncthreads();
  return v;
}

__global__ void rmsnorm_kernel(RmsNormParams p) {
  __shared__ float shared[32];
  const int64_t r = blockIdx.x;
  float* res = p.residual + r * p.ld_residual;
  const float* in = p.residual_in != nullptr ? p.residual_in + r * p.ld_residual_in : res;
  float sum = 0.0f;
  for (int64_t j = threadIdx.x; j < p.d; j += blockDim.x) {
    float v = in[j];
    if (p.x != nullptr) v += p.x[r * p.ld_x + j];
    if (p.x != nullptr || p.residual_in != nullptr) res[j] = v;
    sum += v * v;
  }
  const float scale = rsqrtf(block_sum(sum, shared) / float(p.d) + p.eps);
  for (int64_t j = threadIdx.x; j < p.d; j += blockDim.x) {
    const float v = res[j] * scale * p.w[j];
    const int64_t at = r * p.ld_out + j;
    if (p.out_dtype == DType::bf16)
      static_cast<__nv_bfloat16*>(p.out)[at] = __float2bfloat16_rn(v);
    else if (p.out_dtype == DType::f16)
      static_cast<__half*>(p.out)[at] = __float2half_rn(v);
    else
      static_cast<float*>(p.out)[at] = v;
  }
}

__device__ __forceinline__ float silu_f(float x) { return x / (1.0f + __expf(-x)); }

// One thread per V channels (one vector access when V = 4) and kConvTokens positions of one batch row, walking
// the positions with the last k inputs xx[t .. t+k-1] in registers, where xx is the carried state followed by x.
constexpr int64_t kConvTokens = 32;
constexpr int kConvThreads = 128;

using scan_math::to_f32;

// dst[0 .. V) = src[0 .. V) widened to f32 (when V = 4: one 16-byte load of f32, one 8-byte load of bf16/f16; the
// caller checks the alignment).
template <int V, typename X>
__device__ __forceinline__ void conv_load(float (&dst)[V], const X* src) {
  if constexpr (V == 4 && std::is_same_v<X, float>) {
    const float4 t = *reinterpret_cast<const float4*>(src);
    dst[0] = t.x, dst[1] = t.y, dst[2] = t.z, dst[3] = t.w;
  } else if constexpr (V == 4) {
    alignas(8) X h[4];
    *reinterpret_cast<uint2*>(h) = *reinterpret_cast<const uint2*>(src);
#pragma unroll
    for (int i = 0; i < 4; ++i) dst[i] = to_f32(h[i]);
  } else {
#pragma unroll
    for (int i = 0; i < V; ++i) dst[i] = to_f32(src[i]);
  }
}

// dst[0 .. V) = v rounded to T (one 8-byte store when V = 4; the caller checks the alignment).
template <typename T, int V>
__device__ __forceinline__ void store_rounded(T* dst, const float (&v)[V]) {
  if constexpr (V == 4) {
    alignas(8) T h[4];
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      if constexpr (std::is_same_v<T, __half>)
        h[i] = __float2half_rn(v[i]);
      else
        h[i] = __float2bfloat16_rn(v[i]);
    }
    *reinterpret_cast<uint2*>(dst) = *reinterpret_cast<const uint2*>(h);
  } else {
#pragma unroll
    for (int i = 0; i < V; ++i) {
      if constexpr (std::is_same_v<T, __half>)
        dst[i] = __float2half_rn(v[i]);
      else
        dst[i] = __float2bfloat16_rn(v[i]);
    }
  }
}

// X: x's element type (float, __nv_bfloat16 or __half).
template <int K, int V, typename X>
__global__ void conv_kernel(ConvParams p) {
  const X* x = static_cast<const X*>(p.x);
  const int64_t c0 = (int64_t(blockIdx.y) * blockDim.x + threadIdx.x) * V;
  if (c0 >= p.e) return;
  const int64_t runs = (p.l + kConvTokens - 1) / kConvTokens;
  const int64_t bi = blockIdx.x / runs, t0 = (blockIdx.x % runs) * kConvTokens, t1 = min(p.l, t0 + kConvTokens);
  constexpr int km1 = K - 1;
  float w[K][V], bias[V], xs[K][V];
#pragma unroll
  for (int i = 0; i < V; ++i) {
    bias[i] = p.bias != nullptr ? p.bias[c0 + i] : 0.0f;
#pragma unroll
    for (int j = 0; j < K; ++j) w[j][i] = p.w[(c0 + i) * K + j];
  }
#pragma unroll
  for (int j = 0; j < km1; ++j) {
    const int64_t s = t0 + j;  // position in xx
    if (s >= km1) {
      conv_load<V>(xs[j + 1], x + bi * p.x_sb + (s - km1) * p.x_sl + c0);
    } else {
#pragma unroll
      for (int i = 0; i < V; ++i)
        xs[j + 1][i] = p.state_in != nullptr ? p.state_in[(bi * p.e + c0 + i) * km1 + s] : 0.0f;
    }
  }
  for (int64_t t = t0; t < t1; ++t) {
#pragma unroll
    for (int j = 0; j < km1; ++j)
#pragma unroll
      for (int i = 0; i < V; ++i) xs[j][i] = xs[j + 1][i];
    conv_load<V>(xs[km1], x + bi * p.x_sb + t * p.x_sl + c0);
    float out[V];
#pragma unroll
    for (int i = 0; i < V; ++i) {
      float acc = bias[i];
#pragma unroll
      for (int j = 0; j < K; ++j) acc += w[j][i] * xs[j][i];
      out[i] = p.silu ? silu_f(acc) : acc;
    }
    if (p.out != nullptr) {
      float* dst = p.out + bi * p.out_sb + t * p.out_sl + c0;
      if constexpr (V == 4) {
        *reinterpret_cast<float4*>(dst) = make_float4(out[0], out[1], out[2], out[3]);
      } else {
#pragma unroll
        for (int i = 0; i < V; ++i) dst[i] = out[i];
      }
    }
    if (p.out_half != nullptr) {
      const int64_t at = bi * p.half_sb + t * p.half_sl + c0;
      if (p.half_dtype == DType::bf16)
        store_rounded<__nv_bfloat16, V>(static_cast<__nv_bfloat16*>(p.out_half) + at, out);
      else
        store_rounded<__half, V>(static_cast<__half*>(p.out_half) + at, out);
    }
  }
}

// One thread per (bi, c): the new state is xx[l .. l+k-2]. All old values are read before any is written, so
// state_out may equal state_in.
__global__ void conv_state_kernel(ConvParams p) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= p.b * p.e) return;
  const int64_t c = i % p.e, bi = i / p.e, km1 = p.k - 1;
  float v[kConvMaxWidth];
  for (int64_t j = 0; j < km1; ++j) {
    const int64_t s = p.l + j;
    if (s < km1)
      v[j] = p.state_in != nullptr ? p.state_in[i * km1 + s] : 0.0f;
    else
      v[j] = load_as_f32(p.x, p.x_dtype, bi * p.x_sb + (s - km1) * p.x_sl + c);
  }
  for (int64_t j = 0; j < km1; ++j) p.state_out[i * km1 + j] = v[j];
}

// A single step (l = 1), fused: one thread per (bi, c) reads its window (the state, then x), writes the output
// and the shifted state. Each thread owns its state row, so state_out may equal state_in.
__global__ void conv_step_kernel(ConvParams p) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= p.b * p.e) return;
  const int64_t c = i % p.e, bi = i / p.e, km1 = p.k - 1;
  float v[kConvMaxWidth];
  for (int64_t j = 0; j < km1; ++j) v[j] = p.state_in != nullptr ? p.state_in[i * km1 + j] : 0.0f;
  v[km1] = load_as_f32(p.x, p.x_dtype, bi * p.x_sb + c);
  float acc = p.bias != nullptr ? p.bias[c] : 0.0f;
  for (int64_t j = 0; j < p.k; ++j) acc += p.w[c * p.k + j] * v[j];
  p.out[bi * p.out_sb + c] = p.silu ? silu_f(acc) : acc;
  if (p.state_out != nullptr)
    for (int64_t j = 0; j < km1; ++j) p.state_out[i * km1 + j] = v[j + 1];
}

// Rows (grid y, striding) × groups of 4 columns (grid x, striding); the 16-byte path when every row start is
// aligned (vec4), element by element otherwise. No division per element.
template <typename Half>
__device__ __forceinline__ Half to_half(float v);
template <>
__device__ __forceinline__ __nv_bfloat16 to_half<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }
template <>
__device__ __forceinline__ __half to_half<__half>(float v) { return __float2half_rn(v); }

template <typename Half>
__device__ void convert_rows(const ConvertParams& p, bool vec4) {
  Half* dst = static_cast<Half*>(p.dst);
  const int64_t step = int64_t(gridDim.x) * blockDim.x * 4;
  for (int64_t r = blockIdx.y; r < p.m; r += gridDim.y) {
    const float* src = p.src + r * p.ld_src;
    Half* out = dst + r * (p.ld_dst > 0 ? p.ld_dst : p.c);
    for (int64_t c = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) * 4; c < p.c; c += step) {
      if (vec4 && c + 4 <= p.c) {
        const float4 v = *reinterpret_cast<const float4*>(src + c);
        alignas(8) Half h[4] = {to_half<Half>(v.x), to_half<Half>(v.y), to_half<Half>(v.z), to_half<Half>(v.w)};
        *reinterpret_cast<uint2*>(out + c) = *reinterpret_cast<const uint2*>(h);
      } else {
        for (int64_t j = c; j < c + 4 && j < p.c; ++j) out[j] = to_half<Half>(src[j]);
      }
    }
  }
}

__global__ void convert_kernel(ConvertParams p, bool vec4) {
  if (p.dst_dtype == DType::bf16)
    convert_rows<__nv_bfloat16>(p, vec4);
  else
    convert_rows<__half>(p, vec4);
}

__global__ void bias_kernel(BiasParams p) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= p.m * p.o) return;
  p.y[(i / p.o) * p.ld_y + i % p.o] += p.bias[i % p.o];
}

// Whether (v, i) beats (best, bi): larger, or equal with a lower index; NaN never wins over a number.
__device__ __forceinline__ bool better(float v, int64_t i, float best, int64_t bi) {
  if (isnan(v)) return false;
  if (isnan(best)) return true;
  return v > best || (v == best && i < bi);
}

__global__ void argmax_kernel(ArgmaxParams p) {
  __shared__ float sv[32];
  __shared__ int64_t si[32];
  const float* row = p.logits + int64_t(blockIdx.x) * p.ld;
  float best = NAN;
  int64_t bi = p.v;
  for (int64_t j = threadIdx.x; j < p.v; j += blockDim.x)
    if (better(row[j], j, best, bi)) best = row[j], bi = j;
  for (int o = 16; o > 0; o >>= 1) {
    const float ov = __shfl_xor_sync(0xffffffffu, best, o);
    const int64_t oi = __shfl_xor_sync(0xffffffffu, bi, o);
    if (better(ov, oi, best, bi)) best = ov, bi = oi;
  }
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (lane == 0) sv[warp] = best, si[warp] = bi;
  __syncthreads();
  if (threadIdx.x == 0) {
    for (int w = 1; w < int(blockDim.x / 32); ++w)
      if (better(sv[w], si[w], best, bi)) best = sv[w], bi = si[w];
    p.ids[blockIdx.x] = int32_t(bi < p.v ? bi : 0);
  }
}

}  // namespace

bool embedding_kernel_supports(const EmbeddingParams& p, std::string* why) {
  if (blocks_for(p.m * p.d) > kMaxGrid) return refuse(why, "embedding: m·d is too large for one launch");
  return true;
}

void embedding_kernel_launch(const EmbeddingParams& p, cudaStream_t stream) {
  if (p.m * p.d == 0) return;
  embedding_kernel<<<blocks_for(p.m * p.d), kThreads, 0, stream>>>(p);
  CUDA_CHECK_LAUNCH("embedding_kernel", stream);
}

bool rmsnorm_kernel_supports(const RmsNormParams& p, std::string* why) {
  if (p.m > kMaxGrid) return refuse(why, "rmsnorm: more than 2^30 rows");
  return true;
}

void rmsnorm_kernel_launch(const RmsNormParams& p, cudaStream_t stream) {
  if (p.m == 0) return;
  rmsnorm_kernel<<<unsigned(p.m), kThreads, 0, stream>>>(p);
  CUDA_CHECK_LAUNCH("rmsnorm_kernel", stream);
}

bool conv_kernel_supports(const ConvParams& p, std::string* why) {
  if (p.out == nullptr && p.out_half == nullptr && p.b * p.l * p.e > 0)
    return refuse(why, "conv1d: out or out_half must be given");
  if (p.out_half != nullptr && p.half_dtype != DType::bf16 && p.half_dtype != DType::f16)
    return refuse(why, "conv1d: out_half must be bf16 or f16");
  if (p.k < 1 || p.k > kConvMaxWidth)
    return refuse(why, "conv1d: width k = " + std::to_string(p.k) + " is outside 1.." + std::to_string(kConvMaxWidth));
  if (blocks_for(p.b * p.l * p.e) > kMaxGrid) return refuse(why, "conv1d: b·l·e is too large for one launch");
  return true;
}

template <int K, int V, typename X>
void conv_run(const ConvParams& p, cudaStream_t stream) {
  const int64_t runs = p.b * ((p.l + kConvTokens - 1) / kConvTokens), groups = (p.e + V - 1) / V;
  const unsigned gy = unsigned((groups + kConvThreads - 1) / kConvThreads);
  conv_kernel<K, V, X><<<dim3(unsigned(runs), gy), kConvThreads, 0, stream>>>(p);
  CUDA_CHECK_LAUNCH("conv_kernel", stream);
}

template <int V, typename X>
void conv_run_width(const ConvParams& p, cudaStream_t stream) {
  switch (p.k) {
    case 1: return conv_run<1, V, X>(p, stream);
    case 2: return conv_run<2, V, X>(p, stream);
    case 3: return conv_run<3, V, X>(p, stream);
    case 4: return conv_run<4, V, X>(p, stream);
    case 5: return conv_run<5, V, X>(p, stream);
    case 6: return conv_run<6, V, X>(p, stream);
    case 7: return conv_run<7, V, X>(p, stream);
    default: return conv_run<8, V, X>(p, stream);  // conv_kernel_supports limits k to 1..8
  }
}

template <int V>
void conv_run_dtype(const ConvParams& p, cudaStream_t stream) {
  if (p.x_dtype == DType::bf16) return conv_run_width<V, __nv_bfloat16>(p, stream);
  if (p.x_dtype == DType::f16) return conv_run_width<V, __half>(p, stream);
  conv_run_width<V, float>(p, stream);
}

void conv_kernel_launch(const ConvParams& p, cudaStream_t stream) {
  if (p.l == 1 && p.b * p.e > 0 && p.out_half == nullptr) {
    conv_step_kernel<<<blocks_for(p.b * p.e), kThreads, 0, stream>>>(p);
    CUDA_CHECK_LAUNCH("conv_step_kernel", stream);
    return;
  }
  if (p.b * p.l * p.e > 0) {
    // Vectors of 4 channels: every row of x, out and out_half starts at a multiple of 4 elements and each base
    // pointer is aligned to 4 elements of its dtype (16 bytes for f32, 8 for bf16/f16).
    const auto a4 = [](const void* q, size_t elem) { return reinterpret_cast<uintptr_t>(q) % (4 * elem) == 0; };
    const bool half_vec =
        p.out_half == nullptr || (p.half_sb % 4 == 0 && p.half_sl % 4 == 0 && a4(p.out_half, sizeof(uint16_t)));
    const bool vec = p.e % 4 == 0 && p.x_sb % 4 == 0 && p.x_sl % 4 == 0 && p.out_sb % 4 == 0 && p.out_sl % 4 == 0 &&
                     a4(p.x, dtype_size(p.x_dtype)) && a4(p.out, sizeof(float)) && half_vec;
    if (vec)
      conv_run_dtype<4>(p, stream);
    else
      conv_run_dtype<1>(p, stream);
  }
  if (p.state_out != nullptr && p.k > 1 && p.b * p.e > 0) {
    conv_state_kernel<<<blocks_for(p.b * p.e), kThreads, 0, stream>>>(p);
    CUDA_CHECK_LAUNCH("conv_state_kernel", stream);
  }
}

bool convert_kernel_supports(const ConvertParams& p, std::string* why) {
  if (p.dst_dtype == DType::f32) return refuse(why, "convert: the destination must be bf16 or f16");
  return true;
}

void convert_kernel_launch(const ConvertParams& p, cudaStream_t stream) {
  if (p.m * p.c == 0) return;
  const bool vec4 = p.c % 4 == 0 && p.ld_src % 4 == 0 && p.ld_dst % 4 == 0 &&
                    reinterpret_cast<uintptr_t>(p.src) % 16 == 0 && reinterpret_cast<uintptr_t>(p.dst) % 8 == 0;
  // About 8 waves of 256-thread blocks over the 132 multiprocessors; rows stride over grid y.
  const int64_t col_blocks = std::min<int64_t>((p.c + 4 * kThreads - 1) / (4 * kThreads), 64);
  const int64_t row_blocks = std::min<int64_t>(p.m, std::max<int64_t>(1, 8192 / col_blocks));
  convert_kernel<<<dim3(unsigned(col_blocks), unsigned(std::min<int64_t>(row_blocks, 65535))), kThreads, 0, stream>>>(
      p, vec4);
  CUDA_CHECK_LAUNCH("convert_kernel", stream);
}

void bias_kernel_launch(const BiasParams& p, cudaStream_t stream) {
  if (p.m * p.o == 0) return;
  bias_kernel<<<blocks_for(p.m * p.o), kThreads, 0, stream>>>(p);
  CUDA_CHECK_LAUNCH("bias_kernel", stream);
}

bool argmax_kernel_supports(const ArgmaxParams& p, std::string* why) {
  if (p.v < 1) return refuse(why, "argmax: empty rows");
  if (p.m > kMaxGrid) return refuse(why, "argmax: more than 2^30 rows");
  return true;
}

void argmax_kernel_launch(const ArgmaxParams& p, cudaStream_t stream) {
  if (p.m == 0) return;
  argmax_kernel<<<unsigned(p.m), 1024, 0, stream>>>(p);
  CUDA_CHECK_LAUNCH("argmax_kernel", stream);
}

}  // namespace mambacpp::cuda
