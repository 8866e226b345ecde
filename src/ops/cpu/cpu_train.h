// The CPU loops behind the training bookkeeping ops of ops_train.h, on raw contiguous arrays of n elements.
// The dispatchers (ops_train.cpp) validate the arguments. Every element is computed on its own, and the one
// reduction sums fixed blocks in order, so results do not depend on the thread count.
#pragma once

#include <cstdint>

#include "core/dtype.h"
#include "ops/ops_train.h"

namespace mambacpp::cpu {

void fill_zero(float* t, int64_t n, int threads);
void add_into(float* dst, const float* src, int64_t n, int threads);
void add_product_into(float* dst, const float* a, const float* b, int64_t n, int threads);
void scale_inplace(float* t, float s, int64_t n, int threads);
void neg_exp(float* dst, const float* src, int64_t n, int threads);
void copy_convert(void* dst, DType dst_dtype, const float* src, int64_t n, int threads);
double sum_squares(const float* t, float s, int64_t n, int threads);
// copy: nullptr, or n elements of copy_dtype (bf16/f16).
void adamw_update(float* param, const float* grad, float* m, float* v, void* copy, DType copy_dtype, int64_t n,
                  const AdamWStep& s, int threads);

}  // namespace mambacpp::cpu
