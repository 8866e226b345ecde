// The inference kernels of infer_kernels.h. All are memory-bound and simple: one thread per output element
// (embedding, conv1d, conversion, bias), one thread per channel (the conv1d decoding step) or one block per
// row (RMSNorm, argmax) with a block reduction.
// Accumulation is in f32 throughout.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cmath>

#include "core/cuda/check.h"
#include "ops/cuda/infer_kernels.h"

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
  float sum = 0.0f;
  for (int64_t j = threadIdx.x; j < p.d; j += blockDim.x) {
    float v = res[j];
    if (p.x != nullptr) {
      v += p.x[r * p.ld_x + j];
      res[j] = v;
    }
    sum += v * v;
  }
  const float scale = rsqrtf(block_sum(sum, shared) / float(p.d) + p.eps);
  for (int64_t j = threadIdx.x; j < p.d; j += blockDim.x) p.out[r * p.ld_out + j] = res[j] * scale * p.w[j];
}

__device__ __forceinline__ float silu_f(float x) { return x / (1.0f + __expf(-x)); }

// One thread per output (bi, t, c); reads the k inputs xx[t .. t+k-1] of its channel, where xx is the carried
// state followed by x.
__global__ void conv_kernel(ConvParams p) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= p.b * p.l * p.e) return;
  const int64_t c = i % p.e, t = (i / p.e) % p.l, bi = i / (p.e * p.l);
  const int64_t km1 = p.k - 1;
  float acc = p.bias != nullptr ? p.bias[c] : 0.0f;
  for (int64_t j = 0; j < p.k; ++j) {
    const int64_t s = t + j;  // position in xx
    float v;
    if (s < km1)
      v = p.state_in != nullptr ? p.state_in[(bi * p.e + c) * km1 + s] : 0.0f;
    else
      v = p.x[bi * p.x_sb + (s - km1) * p.x_sl + c];
    acc += p.w[c * p.k + j] * v;
  }
  p.out[bi * p.out_sb + t * p.out_sl + c] = p.silu ? silu_f(acc) : acc;
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
      v[j] = p.x[bi * p.x_sb + (s - km1) * p.x_sl + c];
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
  v[km1] = p.x[bi * p.x_sb + c];
  float acc = p.bias != nullptr ? p.bias[c] : 0.0f;
  for (int64_t j = 0; j < p.k; ++j) acc += p.w[c * p.k + j] * v[j];
  p.out[bi * p.out_sb + c] = p.silu ? silu_f(acc) : acc;
  if (p.state_out != nullptr)
    for (int64_t j = 0; j < km1; ++j) p.state_out[i * km1 + j] = v[j + 1];
}

__global__ void convert_kernel(ConvertParams p) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= p.m * p.c) return;
  const float v = p.src[(i / p.c) * p.ld_src + i % p.c];
  if (p.dst_dtype == DType::bf16)
    static_cast<__nv_bfloat16*>(p.dst)[i] = __float2bfloat16_rn(v);
  else
    static_cast<__half*>(p.dst)[i] = __float2half_rn(v);
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
  if (p.k < 1 || p.k > kConvMaxWidth)
    return refuse(why, "conv1d: width k = " + std::to_string(p.k) + " is outside 1.." + std::to_string(kConvMaxWidth));
  if (blocks_for(p.b * p.l * p.e) > kMaxGrid) return refuse(why, "conv1d: b·l·e is too large for one launch");
  return true;
}

void conv_kernel_launch(const ConvParams& p, cudaStream_t stream) {
  if (p.l == 1 && p.b * p.e > 0) {
    conv_step_kernel<<<blocks_for(p.b * p.e), kThreads, 0, stream>>>(p);
    CUDA_CHECK_LAUNCH("conv_step_kernel", stream);
    return;
  }
  if (p.b * p.l * p.e > 0) {
    conv_kernel<<<blocks_for(p.b * p.l * p.e), kThreads, 0, stream>>>(p);
    CUDA_CHECK_LAUNCH("conv_kernel", stream);
  }
  if (p.state_out != nullptr && p.k > 1 && p.b * p.e > 0) {
    conv_state_kernel<<<blocks_for(p.b * p.e), kThreads, 0, stream>>>(p);
    CUDA_CHECK_LAUNCH("conv_state_kernel", stream);
  }
}

bool convert_kernel_supports(const ConvertParams& p, std::string* why) {
  if (p.dst_dtype == DType::f32) return refuse(why, "convert: the destination must be bf16 or f16");
  if (blocks_for(p.m * p.c) > kMaxGrid) return refuse(why, "convert: too many elements for one launch");
  return true;
}

void convert_kernel_launch(const ConvertParams& p, cudaStream_t stream) {
  if (p.m * p.c == 0) return;
  convert_kernel<<<blocks_for(p.m * p.c), kThreads, 0, stream>>>(p);
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
