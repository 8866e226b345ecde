// The matrix product for few rows (decoding): y (m, o) = x (m, i) · wᵀ (o, i) [+ bias], m ≤ kGemvMaxRows,
// w in f32, bf16 or f16, x, y and bias in f32, f32 accumulation. It reads w once for all m rows, straight
// from its stored dtype (no rounding of x), so a decoding step streams each weight matrix once at close to
// memory bandwidth with one launch. Interface on raw device pointers; linear.cpp chooses it.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <string>

#include "core/dtype.h"

namespace mambacpp::cuda {

constexpr int64_t kGemvMaxRows = 8;

struct GemvParams {
  float* y = nullptr;
  int64_t ld_y = 0;
  const float* x = nullptr;
  int64_t ld_x = 0;
  const void* w = nullptr;
  DType w_dtype = DType::f32;
  int64_t ld_w = 0;
  const float* bias = nullptr;  // (o) or nullptr
  int64_t m = 0, i = 0, o = 0;
};

bool gemv_kernel_supports(const GemvParams& p, std::string* why);
void gemv_kernel_launch(const GemvParams& p, cudaStream_t stream);

}  // namespace mambacpp::cuda
