// The CUDA kernels of the inference ops other than the scan and the matrix products, on raw device pointers
// (the Tensor-level entry points are in cuda_ops.h): embedding, RMSNorm with the residual add, causal conv1d
// with SiLU, f32 → bf16/f16 conversion, bias add and greedy token choice. Each kernel takes one parameter
// struct and has a *_supports function naming the limit it exceeds; launches go on the given stream.
//
// Layout: activations are token-major (rows of a last dimension that is contiguous, with a row stride in
// elements) and f32, or bf16/f16 where a struct names their dtype; see ops.h for the mathematics of each op.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <string>

#include "core/dtype.h"

namespace mambacpp::cuda {

// out (m, d) [row stride ld_out] = table (v, d)[ids (m)] in f32. ids on the device; a row whose id is outside
// [0, v) is filled with NaN (the callers check ids on the host, or produce them in range).
struct EmbeddingParams {
  float* out = nullptr;
  int64_t ld_out = 0;
  const int32_t* ids = nullptr;
  const void* table = nullptr;
  DType table_dtype = DType::f32;
  int64_t m = 0, d = 0, v = 0;
};
bool embedding_kernel_supports(const EmbeddingParams& p, std::string* why);
void embedding_kernel_launch(const EmbeddingParams& p, cudaStream_t stream);

// residual (m, d) += x (optional); out = residual · rsqrt(mean(residual²) + eps) · w. With residual_in:
// residual = residual_in + x (or a copy of residual_in without x), the same sums. out in out_dtype (f32, bf16
// or f16, rounded to nearest even).
struct RmsNormParams {
  void* out = nullptr;
  DType out_dtype = DType::f32;
  float* residual = nullptr;
  const float* residual_in = nullptr;  // nullptr: residual is read and written in place
  const float* x = nullptr;            // nullptr: no add
  const float* w = nullptr;            // (d)
  int64_t ld_out = 0, ld_residual = 0, ld_residual_in = 0, ld_x = 0;
  int64_t m = 0, d = 0;
  float eps = 0;
};
bool rmsnorm_kernel_supports(const RmsNormParams& p, std::string* why);
void rmsnorm_kernel_launch(const RmsNormParams& p, cudaStream_t stream);

// Causal depthwise conv1d over (b, l, e) with the (b, e, k-1) carried state; see ops.h. state_out may equal
// state_in; out must not overlap either state. out_half (optional) receives out rounded to half_dtype; out may
// then be nullptr (only the half output written). x is f32, bf16 or f16 (x_dtype), widened to f32 as it is
// loaded; the state is f32.
struct ConvParams {
  float* out = nullptr;
  int64_t out_sb = 0, out_sl = 0;
  void* out_half = nullptr;
  DType half_dtype = DType::bf16;
  int64_t half_sb = 0, half_sl = 0;
  const void* x = nullptr;
  DType x_dtype = DType::f32;
  int64_t x_sb = 0, x_sl = 0;
  const float* w = nullptr;         // (e, k)
  const float* bias = nullptr;      // (e) or nullptr
  const float* state_in = nullptr;  // (b, e, k-1) or nullptr for zeros
  float* state_out = nullptr;       // (b, e, k-1) or nullptr
  int64_t b = 0, l = 0, e = 0, k = 0;
  bool silu = false;
};
constexpr int64_t kConvMaxWidth = 8;
bool conv_kernel_supports(const ConvParams& p, std::string* why);
void conv_kernel_launch(const ConvParams& p, cudaStream_t stream);

// dst (m, c) in bf16 or f16 [row stride ld_dst; 0: c, contiguous] = src (m, c) [row stride ld_src] f32, rounded
// to nearest even.
struct ConvertParams {
  void* dst = nullptr;
  DType dst_dtype = DType::bf16;
  const float* src = nullptr;
  int64_t ld_src = 0, m = 0, c = 0;
  int64_t ld_dst = 0;
};
bool convert_kernel_supports(const ConvertParams& p, std::string* why);
void convert_kernel_launch(const ConvertParams& p, cudaStream_t stream);

// y (m, o) [row stride ld_y] += bias (o).
struct BiasParams {
  float* y = nullptr;
  const float* bias = nullptr;
  int64_t ld_y = 0, m = 0, o = 0;
};
void bias_kernel_launch(const BiasParams& p, cudaStream_t stream);

// ids[r] = argmax of logits row r (m, v) [row stride ld], the lowest index among equal maxima (NaN is never
// chosen over a number).
struct ArgmaxParams {
  int32_t* ids = nullptr;
  const float* logits = nullptr;
  int64_t ld = 0, m = 0, v = 0;
};
bool argmax_kernel_supports(const ArgmaxParams& p, std::string* why);
void argmax_kernel_launch(const ArgmaxParams& p, cudaStream_t stream);

}  // namespace mambacpp::cuda
