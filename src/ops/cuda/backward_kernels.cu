// The backward kernels of backward_kernels.h. Elementwise work takes one thread per element; row work (RMSNorm,
// the softmax) one block per row with block reductions in a fixed tree; sums over rows (weight and bias
// gradients) one thread per column over a fixed block of rows, then one thread per column over the blocks.
// Accumulation is in f32 except the losses (double).
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cmath>

#include "core/cuda/check.h"
#include "ops/cuda/backward_kernels.h"

namespace mambacpp::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kColumnSumRows = 128;  // rows per partial sum of column_sum
constexpr int64_t kConvGradRows = 64;    // positions per partial sum of the conv weight gradient
constexpr int kEmbedColumns = 128;       // columns per embedding-gradient block
constexpr int kEmbedBuckets = 128;       // table rows are split by id % kEmbedBuckets among the blocks
constexpr int kEmbedIdsPerLoad = 1024;
constexpr int kXentThreads = 512;

unsigned blocks_for(int64_t count, int per = kThreads) { return unsigned((count + per - 1) / per); }

__device__ __forceinline__ float sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }

// Sum (or max) of one value per thread of a block of kThreadsT threads, in a fixed tree; valid in every thread.
template <int kThreadsT, bool kMax>
__device__ float block_reduce(float x, float* shared) {
  shared[threadIdx.x] = x;
  __syncthreads();
  for (int half = kThreadsT / 2; half > 0; half /= 2) {
    if (int(threadIdx.x) < half) {
      const float o = shared[threadIdx.x + half];
      shared[threadIdx.x] = kMax ? fmaxf(shared[threadIdx.x], o) : shared[threadIdx.x] + o;
    }
    __syncthreads();
  }
  const float r = shared[0];
  __syncthreads();
  return r;
}

__global__ void column_partials(ColumnSumParams p) {
  const int64_t c = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (c >= p.cols) return;
  const int64_t r0 = int64_t(blockIdx.y) * kColumnSumRows, r1 = min(p.rows, r0 + kColumnSumRows);
  float acc = 0;
  for (int64_t r = r0; r < r1; ++r) {
    float v = p.a[r * p.ld_a + c];
    if (p.b != nullptr) v *= p.b[r * p.ld_b + c];
    if (p.row_scale != nullptr) v *= p.row_scale[r];
    acc += v;
  }
  p.partials[int64_t(blockIdx.y) * p.cols + c] = acc;
}

__global__ void column_finish(ColumnSumParams p, int64_t chunks) {
  const int64_t c = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (c >= p.cols) return;
  float acc = 0;
  for (int64_t i = 0; i < chunks; ++i) acc += p.partials[i * p.cols + c];
  p.out[c] += acc;
}

__global__ void embedding_grad_kernel(EmbeddingGradParams p) {
  __shared__ int32_t ids[kEmbedIdsPerLoad];
  const int64_t c = int64_t(blockIdx.x) * kEmbedColumns + threadIdx.x;
  const int bucket = int(blockIdx.y), buckets = int(gridDim.y);
  for (int64_t r0 = 0; r0 < p.m; r0 += kEmbedIdsPerLoad) {
    const int count = int(min(int64_t(kEmbedIdsPerLoad), p.m - r0));
    __syncthreads();
    for (int i = threadIdx.x; i < count; i += blockDim.x) ids[i] = p.ids[r0 + i];
    __syncthreads();
    if (c >= p.d) continue;
    for (int i = 0; i < count; ++i) {
      const int32_t id = ids[i];
      if (id < 0 || id >= p.v || id % buckets != bucket) continue;
      p.dtable[int64_t(id) * p.d + c] += p.dout[(r0 + i) * p.ld_dout + c];
    }
  }
}

__global__ void rmsnorm_grad_kernel(RmsNormGradParams p) {
  __shared__ float shared[kThreads];
  const int64_t r = blockIdx.x;
  const float* res = p.residual + r * p.ld_residual;
  const float* dout = p.dout + r * p.ld_dout;
  float sq = 0, dot = 0;
  for (int64_t c = threadIdx.x; c < p.d; c += kThreads) {
    const float x = res[c];
    sq += x * x;
    dot += dout[c] * p.w[c] * x;
  }
  sq = block_reduce<kThreads, false>(sq, shared);
  dot = block_reduce<kThreads, false>(dot, shared);
  const float s = 1.0f / sqrtf(sq / float(p.d) + p.eps);
  const float coef = s * s * s * dot / float(p.d);
  float* dres = p.dresidual + r * p.ld_dresidual;
  for (int64_t c = threadIdx.x; c < p.d; c += kThreads) dres[c] += s * (dout[c] * p.w[c]) - coef * res[c];
  if (p.row_scale != nullptr && threadIdx.x == 0) p.row_scale[r] = s;
}

// xx[p] of batch row bi, channel c: state_in for p < k-1, then x.
__device__ __forceinline__ float conv_input(const ConvGradParams& p, int64_t bi, int64_t pos, int64_t c) {
  const int64_t km1 = p.k - 1;
  if (pos >= km1) return p.x[bi * p.x_sb + (pos - km1) * p.x_sl + c];
  return p.state_in != nullptr ? p.state_in[(bi * p.e + c) * km1 + pos] : 0.0f;
}

__global__ void conv_dpre_kernel(ConvGradParams p) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= p.b * p.l * p.e) return;
  const int64_t c = i % p.e, t = (i / p.e) % p.l, bi = i / (p.e * p.l);
  const float g = p.dout[bi * p.dout_sb + t * p.dout_sl + c];
  if (!p.silu) {
    p.dpre[i] = g;
    return;
  }
  float pre = p.bias != nullptr ? p.bias[c] : 0.0f;
  for (int64_t j = 0; j < p.k; ++j) pre += p.w[c * p.k + j] * conv_input(p, bi, t + j, c);
  const float sg = sigmoid(pre);
  p.dpre[i] = g * sg * (1.0f + pre * (1.0f - sg));
}

// dxx[q] = Σ_j w[c, j] · dpre[q − j], q = 0 .. l+k-2: q ≥ k-1 goes to dx, the first k-1 to dstate_in.
__global__ void conv_dx_kernel(ConvGradParams p) {
  const int64_t km1 = p.k - 1, span = p.l + km1;
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= p.b * span * p.e) return;
  const int64_t c = i % p.e, q = (i / p.e) % span, bi = i / (p.e * span);
  if (q < km1 && p.dstate_in == nullptr) return;
  float acc = 0;
  for (int64_t j = 0; j < p.k; ++j) {
    const int64_t t = q - j;
    if (t >= 0 && t < p.l) acc += p.w[c * p.k + j] * p.dpre[(bi * p.l + t) * p.e + c];
  }
  if (q >= km1)
    p.dx[bi * p.dx_sb + (q - km1) * p.dx_sl + c] = acc;
  else
    p.dstate_in[(bi * p.e + c) * km1 + q] = acc;
}

__global__ void conv_dw_partials(ConvGradParams p) {
  const int64_t c = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (c >= p.e) return;
  const int64_t r0 = int64_t(blockIdx.y) * kConvGradRows, r1 = min(p.b * p.l, r0 + kConvGradRows);
  float acc[kConvGradMaxWidth + 1] = {};
  for (int64_t r = r0; r < r1; ++r) {
    const int64_t bi = r / p.l, t = r % p.l;
    const float g = p.dpre[r * p.e + c];
    for (int64_t j = 0; j < p.k; ++j) acc[j] += g * conv_input(p, bi, t + j, c);
    acc[kConvGradMaxWidth] += g;
  }
  float* out = p.partials + (int64_t(blockIdx.y) * p.e + c) * (p.k + 1);
  for (int64_t j = 0; j < p.k; ++j) out[j] = acc[j];
  out[p.k] = acc[kConvGradMaxWidth];
}

__global__ void conv_dw_finish(ConvGradParams p, int64_t chunks) {
  const int64_t c = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (c >= p.e) return;
  for (int64_t j = 0; j <= p.k; ++j) {
    float acc = 0;
    for (int64_t i = 0; i < chunks; ++i) acc += p.partials[(i * p.e + c) * (p.k + 1) + j];
    if (j < p.k && p.dw != nullptr) p.dw[c * p.k + j] += acc;
    if (j == p.k && p.dbias != nullptr) p.dbias[c] += acc;
  }
}

__global__ void softmax_xent_kernel(SoftmaxXentParams p) {
  __shared__ float shared[kXentThreads];
  const int64_t r = blockIdx.x;
  float* row = p.logits + r * p.v;
  const int32_t target = p.targets[r];
  const bool skip = target < 0 || target >= p.v;
  float mx = -INFINITY;
  if (!skip)
    for (int64_t c = threadIdx.x; c < p.v; c += kXentThreads) mx = fmaxf(mx, row[c]);
  mx = block_reduce<kXentThreads, true>(mx, shared);
  float total = 0;
  if (!skip)
    for (int64_t c = threadIdx.x; c < p.v; c += kXentThreads) total += expf(row[c] - mx);
  total = block_reduce<kXentThreads, false>(total, shared);
  if (threadIdx.x == 0)
    p.loss[r] = target < 0 ? 0.0 : target >= p.v ? double(NAN) : log(double(total)) - double(row[target] - mx);
  __syncthreads();  // row[target] is read above before it is overwritten below
  const float inv = skip ? 0.0f : p.scale / total;
  for (int64_t c = threadIdx.x; c < p.v; c += kXentThreads) {
    float g = skip ? 0.0f : expf(row[c] - mx) * inv;
    if (c == target) g -= p.scale;
    row[c] = g;
    if (p.grad_half == nullptr) continue;
    if (p.half_dtype == DType::bf16)
      static_cast<__nv_bfloat16*>(p.grad_half)[r * p.v + c] = __float2bfloat16_rn(g);
    else
      static_cast<__half*>(p.grad_half)[r * p.v + c] = __float2half_rn(g);
  }
}

__global__ void sum_doubles_kernel(double* out, const double* in, int64_t n) {
  double acc = 0;
  for (int64_t i = 0; i < n; ++i) acc += in[i];
  *out = acc;
}

}  // namespace

int64_t column_sum_partials(int64_t rows, int64_t cols) {
  return (rows + kColumnSumRows - 1) / kColumnSumRows * cols;
}

void column_sum_launch(const ColumnSumParams& p, cudaStream_t stream) {
  const int64_t chunks = (p.rows + kColumnSumRows - 1) / kColumnSumRows;
  if (chunks == 0 || p.cols == 0) return;
  column_partials<<<dim3(blocks_for(p.cols), unsigned(chunks)), kThreads, 0, stream>>>(p);
  CUDA_CHECK_LAUNCH("column_partials", stream);
  column_finish<<<blocks_for(p.cols), kThreads, 0, stream>>>(p, chunks);
  CUDA_CHECK_LAUNCH("column_finish", stream);
}

void embedding_grad_launch(const EmbeddingGradParams& p, cudaStream_t stream) {
  if (p.m == 0 || p.d == 0 || p.v == 0) return;
  const unsigned buckets = unsigned(p.v < kEmbedBuckets ? p.v : kEmbedBuckets);
  embedding_grad_kernel<<<dim3(blocks_for(p.d, kEmbedColumns), buckets), kEmbedColumns, 0, stream>>>(p);
  CUDA_CHECK_LAUNCH("embedding_grad_kernel", stream);
}

void rmsnorm_grad_launch(const RmsNormGradParams& p, cudaStream_t stream) {
  if (p.m == 0 || p.d == 0) return;
  rmsnorm_grad_kernel<<<unsigned(p.m), kThreads, 0, stream>>>(p);
  CUDA_CHECK_LAUNCH("rmsnorm_grad_kernel", stream);
}

int64_t conv_grad_partials(int64_t b, int64_t l, int64_t e, int64_t k) {
  return (b * l + kConvGradRows - 1) / kConvGradRows * e * (k + 1);
}

void conv_grad_launch(const ConvGradParams& p, cudaStream_t stream) {
  const int64_t n = p.b * p.l * p.e;
  if (n > 0) {
    conv_dpre_kernel<<<blocks_for(n), kThreads, 0, stream>>>(p);
    CUDA_CHECK_LAUNCH("conv_dpre_kernel", stream);
  }
  const int64_t nx = p.b * (p.l + p.k - 1) * p.e;
  if (nx > 0) {
    conv_dx_kernel<<<blocks_for(nx), kThreads, 0, stream>>>(p);
    CUDA_CHECK_LAUNCH("conv_dx_kernel", stream);
  }
  const int64_t chunks = (p.b * p.l + kConvGradRows - 1) / kConvGradRows;
  if ((p.dw == nullptr && p.dbias == nullptr) || p.e == 0 || chunks == 0) return;
  conv_dw_partials<<<dim3(blocks_for(p.e), unsigned(chunks)), kThreads, 0, stream>>>(p);
  CUDA_CHECK_LAUNCH("conv_dw_partials", stream);
  conv_dw_finish<<<blocks_for(p.e), kThreads, 0, stream>>>(p, chunks);
  CUDA_CHECK_LAUNCH("conv_dw_finish", stream);
}

void softmax_xent_launch(const SoftmaxXentParams& p, cudaStream_t stream) {
  if (p.m == 0) return;
  softmax_xent_kernel<<<unsigned(p.m), kXentThreads, 0, stream>>>(p);
  CUDA_CHECK_LAUNCH("softmax_xent_kernel", stream);
}

void sum_doubles_launch(double* out, const double* in, int64_t n, cudaStream_t stream) {
  sum_doubles_kernel<<<1, 1, 0, stream>>>(out, in, n);
  CUDA_CHECK_LAUNCH("sum_doubles_kernel", stream);
}

}  // namespace mambacpp::cuda
