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

// The f32 scalars of ops_train.h's adamw_update, already rounded from double (keep is per tensor).
struct AdamWScalars {
  float step_size = 0, sqrt_bc2 = 1, beta1 = 0, one_minus_beta1 = 1, beta2 = 0, one_minus_beta2 = 1, eps = 0;
  float grad_scale = 1, clip_scale = 1;
};

// One tensor of the update: n elements in each array; copy nullptr or n elements of copy_dtype (bf16/f16);
// keep = f32(1 − lr·wd). first_block: in a table, the first slice of the launch that belongs to this tensor.
struct AdamWTensorArgs {
  float* param = nullptr;
  const float* grad = nullptr;
  float* m = nullptr;
  float* v = nullptr;
  void* copy = nullptr;
  DType copy_dtype = DType::f32;
  int64_t n = 0;
  float keep = 1;
  int64_t first_block = 0;
};

// One tensor, one launch.
struct AdamWParams {
  AdamWTensorArgs t;
  AdamWScalars s;
};
void adamw_kernel_launch(const AdamWParams& p, cudaStream_t stream);

// Every tensor of `tensors` (count entries, on the host) in one launch: the table, with first_block filled in, is
// copied on the stream into `device_table` (device memory of adamw_table_bytes(count)), which the kernel reads.
// Each block updates one slice of one tensor, the same slices adamw_kernel_launch uses, with the same arithmetic.
size_t adamw_table_bytes(int64_t count);
void adamw_all_kernel_launch(AdamWTensorArgs* tensors, int64_t count, const AdamWScalars& s, void* device_table,
                             cudaStream_t stream);

// *result (one double on the device) = Σ (scale·t)², from per-block partials in double (`partials`, at least
// sum_squares_partials(n) doubles of device memory) added in block order; the block count depends on n only.
struct SumSquaresParams {
  const float* t = nullptr;
  float scale = 1;  // each element is t·scale rounded to f32 before it is squared
  int64_t n = 0;
  double* partials = nullptr;
  double* result = nullptr;
};
int64_t sum_squares_partials(int64_t n);
void sum_squares_kernel_launch(const SumSquaresParams& p, cudaStream_t stream);

}  // namespace mambacpp::cuda
