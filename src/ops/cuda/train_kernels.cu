// The training bookkeeping kernels of train_kernels.h: grid-stride loops, one element per step. The sum of
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

__global__ void elementwise_kernel(ElementwiseParams p) {
  const int64_t step = int64_t(gridDim.x) * blockDim.x;
  float* d = static_cast<float*>(p.dst);
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < p.n; i += step) {
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
}

__global__ void adamw_kernel(AdamWParams p) {
  const int64_t step = int64_t(gridDim.x) * blockDim.x;
  for (int64_t j = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; j < p.n; j += step) {
    const float g = p.grad[j];
    const float w = p.param[j] * p.keep;
    const float m = p.beta1 * p.m[j] + (1 - p.beta1) * g;
    const float v = p.beta2 * p.v[j] + (1 - p.beta2) * g * g;
    p.m[j] = m, p.v[j] = v;
    p.param[j] = w - p.step_size * m / (sqrtf(v) / p.sqrt_bc2 + p.eps);
  }
}

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
  elementwise_kernel<<<grid_for(p.n), kThreads, 0, stream>>>(p);
  CUDA_CHECK_LAUNCH("elementwise_kernel", stream);
}

void adamw_kernel_launch(const AdamWParams& p, cudaStream_t stream) {
  if (p.n == 0) return;
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
