// The training bookkeeping kernels of train_kernels.h: grid-stride loops, four elements per step (one 16-byte
// access per array) when the arrays are 16-byte aligned, else one; AdamW gives each block a fixed slice of one
// tensor, so that one launch may cover many tensors. The sum of
// squares gives each block a fixed slice of the array (the slices depend on n only), reduces it in double in a
// fixed tree, and one last block adds the block sums in order: the result is the same on every run.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <cstdint>

#include "core/cuda/check.h"
#include "ops/cuda/train_kernels.h"

namespace mambacpp::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 4096;
// sum_squares: elements per block (a multiple of kThreads), and at most this many blocks.
constexpr int64_t kSumSlice = int64_t(1) << 16;
constexpr int64_t kSumMaxBlocks = 2048;
// adamw: elements per block (four float4 accesses per thread).
constexpr int64_t kAdamWSlice = int64_t(kThreads) * 16;
constexpr int64_t kAdamWMaxBlocks = int64_t(1) << 20;

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

// The update of one element, each operation rounded on its own (the _rn intrinsics are never contracted into
// fused multiply-adds), in the order of the CPU loop (cpu/train_ops.cpp): every form of the kernel, and the CPU,
// give the same bits.
__device__ __forceinline__ void adamw_one(const AdamWScalars& s, float keep, float& param, float grad, float& m1,
                                          float& v1) {
  const float g = __fmul_rn(__fmul_rn(grad, s.grad_scale), s.clip_scale);
  const float w = __fmul_rn(param, keep);
  const float m = __fadd_rn(__fmul_rn(s.beta1, m1), __fmul_rn(s.one_minus_beta1, g));
  const float v = __fadd_rn(__fmul_rn(s.beta2, v1), __fmul_rn(__fmul_rn(s.one_minus_beta2, g), g));
  const float denom = __fadd_rn(__fdiv_rn(__fsqrt_rn(v), s.sqrt_bc2), s.eps);
  m1 = m, v1 = v;
  param = __fsub_rn(w, __fdiv_rn(__fmul_rn(s.step_size, m), denom));
}

__device__ __forceinline__ void adamw_scalar(const AdamWTensorArgs& t, const AdamWScalars& s, int64_t i) {
  adamw_one(s, t.keep, t.param[i], t.grad[i], t.m[i], t.v[i]);
  if (t.copy == nullptr) return;
  if (t.copy_dtype == DType::bf16)
    static_cast<__nv_bfloat16*>(t.copy)[i] = __float2bfloat16_rn(t.param[i]);
  else
    static_cast<__half*>(t.copy)[i] = __float2half_rn(t.param[i]);
}

// Elements 4j … 4j+3 with 16-byte accesses (an 8-byte store of the copy).
__device__ __forceinline__ void adamw_four(const AdamWTensorArgs& t, const AdamWScalars& s, int64_t j) {
  float4 w = reinterpret_cast<float4*>(t.param)[j], m = reinterpret_cast<float4*>(t.m)[j];
  float4 v = reinterpret_cast<float4*>(t.v)[j];
  const float4 g = reinterpret_cast<const float4*>(t.grad)[j];
  adamw_one(s, t.keep, w.x, g.x, m.x, v.x), adamw_one(s, t.keep, w.y, g.y, m.y, v.y);
  adamw_one(s, t.keep, w.z, g.z, m.z, v.z), adamw_one(s, t.keep, w.w, g.w, m.w, v.w);
  reinterpret_cast<float4*>(t.param)[j] = w, reinterpret_cast<float4*>(t.m)[j] = m;
  reinterpret_cast<float4*>(t.v)[j] = v;
  if (t.copy == nullptr) return;
  uint2 packed;
  if (t.copy_dtype == DType::bf16) {
    const __nv_bfloat162 h0 = __floats2bfloat162_rn(w.x, w.y), h1 = __floats2bfloat162_rn(w.z, w.w);
    packed.x = *reinterpret_cast<const uint32_t*>(&h0), packed.y = *reinterpret_cast<const uint32_t*>(&h1);
  } else {
    const __half2 h0 = __floats2half2_rn(w.x, w.y), h1 = __floats2half2_rn(w.z, w.w);
    packed.x = *reinterpret_cast<const uint32_t*>(&h0), packed.y = *reinterpret_cast<const uint32_t*>(&h1);
  }
  reinterpret_cast<uint2*>(t.copy)[j] = packed;
}

// Slice `slice` of tensor t (kAdamWSlice elements): four elements per access when every array allows it, the
// last n % 4 of the tensor one at a time.
__device__ void adamw_slice(const AdamWTensorArgs& t, const AdamWScalars& s, int64_t slice) {
  const int64_t begin = slice * kAdamWSlice, end = min(t.n, begin + kAdamWSlice);
  const auto bits = [](const void* q) { return reinterpret_cast<uintptr_t>(q); };
  const bool vec = ((bits(t.param) | bits(t.grad) | bits(t.m) | bits(t.v)) % 16 == 0) && bits(t.copy) % 8 == 0;
  if (vec) {
    for (int64_t j = begin / 4 + threadIdx.x; j < end / 4; j += kThreads) adamw_four(t, s, j);
    const int64_t i = end / 4 * 4 + threadIdx.x;
    if (i < end) adamw_scalar(t, s, i);
  } else {
    for (int64_t i = begin + threadIdx.x; i < end; i += kThreads) adamw_scalar(t, s, i);
  }
}

// Block b works on slices b, b + gridDim.x, … (a grid of at most kAdamWMaxBlocks).
__global__ void adamw_kernel(AdamWParams p, int64_t slices) {
  for (int64_t b = blockIdx.x; b < slices; b += gridDim.x) adamw_slice(p.t, p.s, b);
}

// Slice b of the launch is a slice of the tensor whose first_block is the last one ≤ b (found by bisection over
// the table, the same search in every thread).
__global__ void adamw_all_kernel(const AdamWTensorArgs* table, int64_t count, int64_t slices, AdamWScalars s) {
  for (int64_t b = blockIdx.x; b < slices; b += gridDim.x) {
    int64_t lo = 0, hi = count - 1;
    while (lo < hi) {
      const int64_t mid = (lo + hi + 1) / 2;
      if (table[mid].first_block <= b) lo = mid; else hi = mid - 1;
    }
    const AdamWTensorArgs t = table[lo];
    adamw_slice(t, s, b - t.first_block);
  }
}

int64_t adamw_blocks(int64_t n) { return (n + kAdamWSlice - 1) / kAdamWSlice; }

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
  for (int64_t i = begin + threadIdx.x; i < end; i += kThreads) {
    const float x = __fmul_rn(p.t[i], p.scale);
    acc += double(x) * double(x);
  }
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
  if (p.t.n == 0) return;
  const int64_t slices = adamw_blocks(p.t.n);
  adamw_kernel<<<unsigned(std::min(slices, kAdamWMaxBlocks)), kThreads, 0, stream>>>(p, slices);
  CUDA_CHECK_LAUNCH("adamw_kernel", stream);
}

size_t adamw_table_bytes(int64_t count) { return size_t(std::max<int64_t>(count, 1)) * sizeof(AdamWTensorArgs); }

void adamw_all_kernel_launch(AdamWTensorArgs* tensors, int64_t count, const AdamWScalars& s, void* device_table,
                             cudaStream_t stream) {
  int64_t blocks = 0;
  for (int64_t i = 0; i < count; ++i) tensors[i].first_block = blocks, blocks += adamw_blocks(tensors[i].n);
  if (blocks == 0) return;
  CUDA_CHECK(cudaMemcpyAsync(device_table, tensors, size_t(count) * sizeof(AdamWTensorArgs), cudaMemcpyHostToDevice,
                             stream));
  adamw_all_kernel<<<unsigned(std::min(blocks, kAdamWMaxBlocks)), kThreads, 0, stream>>>(
      static_cast<const AdamWTensorArgs*>(device_table), count, blocks, s);
  CUDA_CHECK_LAUNCH("adamw_all_kernel", stream);
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
