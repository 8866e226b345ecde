// The CUDA kernels of the backward ops other than the selective scan and the matrix products (which go through
// cuBLASLt in backward.cpp), on raw device pointers. Each kernel takes one parameter struct and launches on the
// given stream. Every sum over rows runs in an order fixed by the shapes (per-block partial sums in a fixed
// order, then the blocks in order), never with float atomics, so the results are the same on every run.
//
// Layout: f32 rows of a contiguous last dimension with a row stride in elements; see ops_backward.h for the
// mathematics of each op.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "core/dtype.h"

namespace mambacpp::cuda {

// out (cols) += Σ_r a[r, c] · b[r, c] · row_scale[r] (b and row_scale optional, 1 when null). The rows are
// summed in blocks of kColumnSumRows in order, the block sums then in block order; `partials` holds
// column_sum_partials(rows, cols) floats of device memory.
struct ColumnSumParams {
  float* out = nullptr;
  const float* a = nullptr;
  const float* b = nullptr;
  const float* row_scale = nullptr;
  int64_t ld_a = 0, ld_b = 0, rows = 0, cols = 0;
  float* partials = nullptr;
};
int64_t column_sum_partials(int64_t rows, int64_t cols);
void column_sum_launch(const ColumnSumParams& p, cudaStream_t stream);

// dtable (v, d) += Σ over rows r with ids[r] = row of dout (m, d)[r], the rows of each table row added in
// order r = 0, 1, …; ids outside [0, v) are skipped. With `sorted` (m uint32 of device scratch) and m ≤ 32768,
// the rows are first sorted by id in one block and each id's rows summed by its own blocks; otherwise (or
// when v·2^⌈log2 m⌉ exceeds 32 bits) blocks split the table rows by id among themselves and scan all ids.
struct EmbeddingGradParams {
  float* dtable = nullptr;
  const float* dout = nullptr;
  int64_t ld_dout = 0;
  const int32_t* ids = nullptr;
  int64_t m = 0, d = 0, v = 0;
  uint32_t* sorted = nullptr;  // scratch, m
};
void embedding_grad_launch(const EmbeddingGradParams& p, cudaStream_t stream);

// dresidual (m, d) += s·(dout·w) − residual·s³·Σ_c(dout·w·residual)/d with s = rsqrt(mean(residual²) + eps);
// row_scale (m) = s when not null (for the weight gradient, a ColumnSum of dout·residual·s); dresidual_half
// (when not null) = the new dresidual rounded to half_dtype.
struct RmsNormGradParams {
  float* dresidual = nullptr;
  void* dresidual_half = nullptr;
  DType half_dtype = DType::bf16;
  int64_t ld_dresidual_half = 0;
  const float* dout = nullptr;
  const float* residual = nullptr;
  const float* w = nullptr;
  float* row_scale = nullptr;
  int64_t ld_dresidual = 0, ld_dout = 0, ld_residual = 0, m = 0, d = 0;
  float eps = 0;
};
void rmsnorm_grad_launch(const RmsNormGradParams& p, cudaStream_t stream);

// Backward of the causal depthwise conv1d (ops_backward.h), in one pass plus a short finish: each thread takes
// a run of positions of one batch row and recomputes dpre = dout · act'(pre) from x and w as it goes (k − 1
// positions past the run), writing dx and dstate_in and the run's sums for dw and dbias (partials:
// conv_grad_partials(...) floats); the finish adds the runs' sums in a fixed order (32 strided lanes, then a tree). Channels go 4 to a 16-byte
// access when e, the strides and the pointers allow.
struct ConvGradParams {
  float* dx = nullptr;
  int64_t dx_sb = 0, dx_sl = 0;
  void* dx_half = nullptr;  // when not null, dx is written here rounded to half_dtype instead (strides of dx)
  DType half_dtype = DType::bf16;
  float* dw = nullptr;         // (e, k) or nullptr
  float* dbias = nullptr;      // (e) or nullptr
  float* dstate_in = nullptr;  // (b, e, k-1) or nullptr
  const float* dout = nullptr;
  int64_t dout_sb = 0, dout_sl = 0;
  const float* x = nullptr;
  int64_t x_sb = 0, x_sl = 0;
  const float* w = nullptr;         // (e, k)
  const float* bias = nullptr;      // (e) or nullptr
  const float* state_in = nullptr;  // (b, e, k-1) or nullptr for zeros
  int64_t b = 0, l = 0, e = 0, k = 0;
  bool silu = false;
  float* partials = nullptr;  // scratch, conv_grad_partials(...) floats
};
constexpr int64_t kConvGradMaxWidth = 8;
int64_t conv_grad_partials(int64_t b, int64_t l, int64_t e, int64_t k);
void conv_grad_launch(const ConvGradParams& p, cudaStream_t stream);

// One block of rows of the fused head and cross-entropy: on entry logits (m, v) f32 contiguous; on exit the
// gradient scale·(softmax − onehot(target)) (zero rows where target < 0) is in grad_half (m, v) in half_dtype
// when that is not null (the logits are then left as they were), else in the logits; loss[r] = −log
// softmax[target] in double (0 where target < 0, NaN where target ≥ v). One read of the logits for the max
// and the sum of exponentials (online), one for the gradient.
struct SoftmaxXentParams {
  float* logits = nullptr;
  void* grad_half = nullptr;
  DType half_dtype = DType::bf16;
  const int32_t* targets = nullptr;
  double* loss = nullptr;
  int64_t m = 0, v = 0;
  float scale = 1;
};
void softmax_xent_launch(const SoftmaxXentParams& p, cudaStream_t stream);

// out = Σ in[0 .. n) in order (one double on the device).
void sum_doubles_launch(double* out, const double* in, int64_t n, cudaStream_t stream);

}  // namespace mambacpp::cuda
