// The CUDA kernels of the training bookkeeping ops (ops_train.h) on raw contiguous device arrays of n elements:
// one elementwise kernel with a choice of operation, the AdamW update, and the sum of squares in double. Each
// takes one parameter struct; launches go on the given stream. The dispatchers (ops_train.cpp) validate sizes
// and dtypes.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "core/dtype.h"

namespace mambacpp::cuda {

enum class ElementOp : uint8_t {
  zero,         // dst = 0
  add,          // dst += a
  add_product,  // dst += a · b
  scale,        // dst *= s
  neg_exp,      // dst = −exp(a)
  convert,      // dst (dst_dtype) = a rounded to nearest even
};

struct ElementwiseParams {
  ElementOp op = ElementOp::zero;
  void* dst = nullptr;  // f32, or dst_dtype for convert
  DType dst_dtype = DType::f32;
  const float* a = nullptr;
  const float* b = nullptr;
  float s = 1;
  int64_t n = 0;
};
void elementwise_kernel_launch(const ElementwiseParams& p, cudaStream_t stream);

// The per-element update of ops_train.h's adamw_update, with its f32 scalars already rounded from double.
struct AdamWParams {
  float* param = nullptr;
  const float* grad = nullptr;
  float* m = nullptr;
  float* v = nullptr;
  int64_t n = 0;
  float keep = 1, step_size = 0, sqrt_bc2 = 1, beta1 = 0, beta2 = 0, eps = 0;
};
void adamw_kernel_launch(const AdamWParams& p, cudaStream_t stream);

// *result (one double on the device) = Σ t², from per-block partials in double (`partials`, at least
// sum_squares_partials(n) doubles of device memory) added in block order; the block count depends on n only.
struct SumSquaresParams {
  const float* t = nullptr;
  int64_t n = 0;
  double* partials = nullptr;
  double* result = nullptr;
};
int64_t sum_squares_partials(int64_t n);
void sum_squares_kernel_launch(const SumSquaresParams& p, cudaStream_t stream);

}  // namespace mambacpp::cuda
