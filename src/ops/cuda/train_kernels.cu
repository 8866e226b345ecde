// The training bookkeeping kernels of train_kernels.h: grid-stride loops, four elements per step (one 16-byte
// access per array) when the arrays are 16-byte aligned, else one. The sum of
// squares gives each block a fixed slice of the array (the slices depend on n only), reduces it in double in a
// fixed tree, and one last block adds the block sums in order: the result is the same on every run.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>

#include "core/cuda/check.h"
#include "ops/cuda/train_kernels.h"

namespace mambacpp::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 4096;
// sum_squares: elements per block (a multiple of kThreads), and at most this many blocks.
constexpr int64_t kSumSlice = int64_t(1) << 16;
constexpr int64_t kSumMaxBlocks = 2048;

int grid_for(int64_t n) { return int(std::clamp<int64_t>((n + kThreads - 1) / kThreads, 1, kMaxBlocks)); }

__device__ __forceinline__ void elementwise_one(const ElementwiseParams& p, int64_t i) {
  float* d = static_cast<float*>(p.dst);
  switch (p.op) {
    case ElementOp::zero: d[i] = 0.0f; break;
    case ElementOp::add: d[i] += p.a[i]; break;
    case ElementOp::add_product: d[i] += p.a[i] * p.b[i]; break;
    case ElementOp::scale: d[i] *= p.s; break;
    case ElementOp::neg_exp: d[i] = -expf(p.a[i]); break;
    case ElementOp::convert:
      if (p.dst_dtype == DType::f32)
        d[i] = p.a[i];
      else if (p.dst_dtype == DType::bf16)
        static_cast<__nv_bfloat16*>(p.dst)[i] = __float2bfloat16_rn(p.a[i]);
      else
        static_cast<__half*>(p.dst)[i] = __float2half_rn(p.a[i]);
      break;
  }
}

__global__ void elementwise_kernel(ElementwiseParams p) {
  const int64_t step = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < p.n; i += step) elementwise_one(p, i);
}

// 16-byte aligned arrays: four elements per access (an 8-byte store for a half destination), the last n % 4 one
// at a time.
__global__ void elementwise_vec4_kernel(ElementwiseParams p) {
  const int64_t step = int64_t(gridDim.x) * blockDim.x, n4 = p.n / 4;
  float4* d = static_cast<float4*>(p.dst);
  const float4* a = reinterpret_cast<const float4*>(p.a);
  const float4* b = reinterpret_cast<const float4*>(p.b);
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n4; i += step) {
    if (p.op == ElementOp::convert && p.dst_dtype != DType::f32) {  // four halves in one 8-byte store
      const float4 x = a[i];
      uint2 packed;
      if (p.dst_dtype == DType::bf16) {
        const __nv_bfloat162 h0 = __floats2bfloat162_rn(x.x, x.y), h1 = __floats2bfloat162_rn(x.z, x.w);
        packed.x = *reinterpret_cast<const uint32_t*>(&h0), packed.y = *reinterpret_cast<const uint32_t*>(&h1);
      } else {
        const __half2 h0 = __floats2half2_rn(x.x, x.y), h1 = __floats2half2_rn(x.z, x.w);
        packed.x = *reinterpret_cast<const uint32_t*>(&h0), packed.y = *reinterpret_cast<const uint32_t*>(&h1);
      }
      reinterpret_cast<uint2*>(p.dst)[i] = packed;
      continue;
    }
    float4 r;
    switch (p.op) {
      case ElementOp::zero: r = make_float4(0.0f, 0.0f, 0.0f, 0.0f); break;
      case ElementOp::add: {
        const float4 x = a[i];
        r = d[i], r.x += x.x, r.y += x.y, r.z += x.z, r.w += x.w;
        break;
      }
      case ElementOp::add_product: {
        const float4 x = a[i], y = b[i];
        r = d[i], r.x += x.x * y.x, r.y += x.y * y.y, r.z += x.z * y.z, r.w += x.w * y.w;
        break;
      }
      case ElementOp::scale: r = d[i], r.x *= p.s, r.y *= p.s, r.z *= p.s, r.w *= p.s; break;
      case ElementOp::neg_exp: {
        const float4 x = a[i];
        r = make_float4(-expf(x.x), -expf(x.y), -expf(x.z), -expf(x.w));
        break;
      }
      default: r = a[i]; break;  // convert to f32: a copy
    }
    d[i] = r;
  }
  const int64_t tail = n4 * 4 + int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (tail < p.n) elementwise_one(p, tail);
}

__device__ __forceinline__ void adamw_one(const AdamWParams& p, float& param, float g, float& m1, float& v1) {
  const float w = param * p.keep;
  const float m = p.beta1 * m1 + (1 - p.beta1) * g;
  const float v = p.beta2 * v1 + (1 - p.beta2) * g * g;
  m1 = m, v1 = v;
  param = w - p.step_size * m / (sqrtf(v) / p.sqrt_bc2 + p.eps);
}

__global__ void adamw_kernel(AdamWParams p) {
  const int64_t step = int64_t(gridDim.x) * blockDim.x;
  for (int64_t j = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; j < p.n; j += step)
    adamw_one(p, p.param[j], p.grad[j], p.m[j], p.v[j]);
}

// 16-byte aligned arrays: four elements per access, the last n % 4 one at a time.
__global__ void adamw_vec4_kernel(AdamWParams p) {
  const int64_t step = int64_t(gridDim.x) * blockDim.x, n4 = p.n / 4;
  for (int64_t j = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; j < n4; j += step) {
    float4 w = reinterpret_cast<float4*>(p.param)[j], m = reinterpret_cast<float4*>(p.m)[j];
    float4 v = reinterpret_cast<float4*>(p.v)[j];
    const float4 g = reinterpret_cast<const float4*>(p.grad)[j];
    adamw_one(p, w.x, g.x, m.x, v.x), adamw_one(p, w.y, g.y, m.y, v.y);
    adamw_one(p, w.z, g.z, m.z, v.z), adamw_one(p, w.w, g.w, m.w, v.w);
    reinterpret_cast<float4*>(p.param)[j] = w, reinterpret_cast<float4*>(p.m)[j] = m;
    reinterpret_cast<float4*>(p.v)[j] = v;
  }
  const int64_t tail = n4 * 4 + int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (tail < p.n) adamw_one(p, p.param[tail], p.grad[tail], p.m[tail], p.v[tail]);
}

bool aligned16(const void* p) { return p == nullptr || reinterpret_cast<uintptr_t>(p) % 16 == 0; }

// Block sum of one double per thread, in a fixed tree; the total is valid in thread 0.
__device__ double block_sum(double x) {
  __shared__ double s[kThreads];
  s[threadIdx.x] = x;
  __syncthreads();
  for (int half = kThreads / 2; half > 0; half /= 2) {
    if (int(threadIdx.x) < half) s[threadIdx.x] += s[threadIdx.x + half];
    __syncthreads();
  }
  return s[0];
}

__global__ void sum_squares_blocks(SumSquaresParams p, int64_t slice) {
  const int64_t begin = int64_t(blockIdx.x) * slice, end = min(p.n, begin + slice);
  double acc = 0;
  for (int64_t i = begin + threadIdx.x; i < end; i += kThreads) acc += double(p.t[i]) * double(p.t[i]);
  const double total = block_sum(acc);
  if (threadIdx.x == 0) p.partials[blockIdx.x] = total;
}

__global__ void sum_squares_final(SumSquaresParams p, int64_t blocks) {
  double acc = 0;
  for (int64_t i = threadIdx.x; i < blocks; i += kThreads) acc += p.partials[i];
  const double total = block_sum(acc);
  if (threadIdx.x == 0) *p.result = total;
}

// Elements per block: kSumSlice, or larger (a multiple of kThreads) so that there are at most kSumMaxBlocks.
int64_t sum_slice(int64_t n) {
  const int64_t per = (n + kSumMaxBlocks - 1) / kSumMaxBlocks;
  return std::max(kSumSlice, (per + kThreads - 1) / kThreads * kThreads);
}

}  // namespace

void elementwise_kernel_launch(const ElementwiseParams& p, cudaStream_t stream) {
  if (p.n == 0) return;
  const bool vec = aligned16(p.dst) && aligned16(p.a) && aligned16(p.b);
  if (vec)
    elementwise_vec4_kernel<<<grid_for((p.n + 3) / 4), kThreads, 0, stream>>>(p);
  else
    elementwise_kernel<<<grid_for(p.n), kThreads, 0, stream>>>(p);
  CUDA_CHECK_LAUNCH("elementwise_kernel", stream);
}

void adamw_kernel_launch(const AdamWParams& p, cudaStream_t stream) {
  if (p.n == 0) return;
  if (aligned16(p.param) && aligned16(p.grad) && aligned16(p.m) && aligned16(p.v))
    adamw_vec4_kernel<<<grid_for((p.n + 3) / 4), kThreads, 0, stream>>>(p);
  else
    adamw_kernel<<<grid_for(p.n), kThreads, 0, stream>>>(p);
  CUDA_CHECK_LAUNCH("adamw_kernel", stream);
}

int64_t sum_squares_partials(int64_t n) { return std::max<int64_t>(1, (n + sum_slice(n) - 1) / sum_slice(n)); }

void sum_squares_kernel_launch(const SumSquaresParams& p, cudaStream_t stream) {
  const int64_t slice = sum_slice(p.n), blocks = sum_squares_partials(p.n);
  sum_squares_blocks<<<unsigned(blocks), kThreads, 0, stream>>>(p, slice);
  CUDA_CHECK_LAUNCH("sum_squares_blocks", stream);
  sum_squares_final<<<1, kThreads, 0, stream>>>(p, blocks);
  CUDA_CHECK_LAUNCH("sum_squares_final", stream);
}

}  // namespace mambacpp::cuda
