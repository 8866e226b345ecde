// The fused kernels of a decoding step (one token per sequence, b ≤ kDecodeMaxRows rows), four per layer instead
// of seven, on raw device pointers; src/model/lm_step_fused.cpp strings them together. Activations, residual
// stream and recurrent state are f32; matrices f32, bf16 or f16 (read as stored), f32 accumulation.
//   norm_gemv:  y (b, o) = (rmsnorm(residual) · norm_w) · wᵀ [+ bias]   (RMSNorm recomputed by every block)
//   conv_gemv:  y (b, o) = silu(conv1d step(conv state, x)) · wᵀ          (conv recomputed by every block; the
//                                                                          state is left for ssm_step to shift)
//   ssm_step:   per channel: conv output again, conv state shifted, Δ = softplus(dt_proj row · xdbl + dt_bias),
//               one scan step of the (b, e, n) state, y = (C·h + D·u) · silu(z)
//   gemv_add:   residual (b, o) += y · wᵀ [+ bias]
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <string>

#include "core/dtype.h"

namespace mambacpp::cuda {

constexpr int64_t kDecodeMaxRows = 8;
constexpr int64_t kDecodeMaxWidth = 8;   // conv width k
constexpr int64_t kDecodeMaxState = 256; // n

// The matrix product of a step: y (b, o) [row stride ld_y] = x (b, i) · w (o, i)ᵀ + bias, where x is made by
// the kernel's prologue (see the kinds above) into shared memory. w rows 16-byte aligned, i a multiple of 8.
struct DecodeGemvParams {
  float* y = nullptr;
  int64_t ld_y = 0;
  const void* w = nullptr;
  DType w_dtype = DType::f32;
  const float* bias = nullptr;  // (o) or nullptr
  int64_t b = 0, i = 0, o = 0;
  // norm_gemv: x = rmsnorm(residual (b, i)) · norm_w (i)
  const float* residual = nullptr;
  const float* norm_w = nullptr;
  float eps = 0;
  // conv_gemv: x = silu(conv_b + Σ_j conv_w (i, k)[:, j] · [state (b, i, k-1), xin (b, i) [row stride ld_xin]])
  const float* conv_w = nullptr;
  const float* conv_b = nullptr;  // (i) or nullptr
  const float* conv_state = nullptr;
  const float* xin = nullptr;
  int64_t ld_xin = 0, k = 0;
  // gemv_add: x = y_in (b, i) contiguous; y += the product
  const float* y_in = nullptr;
};

// One scan step of every (row, channel), with the conv step and dt_proj folded in (see above).
struct DecodeSsmParams {
  float* y = nullptr;                // (b, e)
  float* conv_state = nullptr;       // (b, e, k-1), shifted in place
  float* ssm_state = nullptr;        // (b, e, n), updated in place
  const float* xz = nullptr;         // (b, 2e): x then z
  const float* xdbl = nullptr;       // (b, r + 2n): dt input, B, C
  const float* conv_w = nullptr;     // (e, k)
  const float* conv_b = nullptr;     // (e) or nullptr
  const void* dt_proj = nullptr;     // (e, r)
  DType dt_dtype = DType::f32;
  const float* dt_bias = nullptr;    // (e)
  const float* A = nullptr;          // (e, n)
  const float* D = nullptr;          // (e)
  int64_t b = 0, e = 0, n = 0, r = 0, k = 0;
};

enum class DecodeGemvKind { norm, conv, add };
bool decode_gemv_supports(const DecodeGemvParams& p, DecodeGemvKind kind, std::string* why);
void decode_gemv_launch(const DecodeGemvParams& p, DecodeGemvKind kind, cudaStream_t stream);
bool decode_ssm_supports(const DecodeSsmParams& p, std::string* why);
void decode_ssm_launch(const DecodeSsmParams& p, cudaStream_t stream);

}  // namespace mambacpp::cuda
