// The one cuBLASLt matrix product every CUDA op uses (linear.cpp, backward.cpp): a column-major
// D = op(A) · op(B) + beta · D with f32 accumulation and scaling, A and B in f32, bf16 or f16, and D in f32 or,
// with half A and B, in their dtype (the f32 result rounded once, to nearest even). cuBLASLt is
// column-major; a row-major (r, c) matrix with row stride ld is read as a column-major (c, r) one with the same
// ld, so callers write their row-major products on those transposed views and no operand is copied.
#pragma once

#include <cstdint>

#include "core/cuda/cuda_state.h"
#include "core/dtype.h"

namespace mambacpp::cuda {

// Column-major D (rows, cols) = op(A) (rows, inner) · op(B) (inner, cols) + beta · D, f32 accumulation.
// A is stored (rows, inner), or (inner, rows) when trans_a; B (inner, cols), or (cols, inner) when trans_b.
// D is f32, or `in` when that is bf16 or f16 (`out`).
struct Gemm {
  bool trans_a = false, trans_b = false;
  const void* a = nullptr;
  int64_t lda = 0;
  const void* b = nullptr;
  int64_t ldb = 0;
  void* d = nullptr;
  int64_t ldd = 0;
  DType in = DType::f32;
  DType out = DType::f32;
  int64_t rows = 0, cols = 0, inner = 0;
  float beta = 0;
};

// Queues the product on the state's stream with its cuBLASLt handle and workspace (the algorithm chosen by
// cuBLASLt's heuristic for these shapes, dtypes and alignments). rows or cols 0: nothing; inner 0: D = beta · D
// (zeroed when beta is 0, in either dtype). A half `out` other than `in` is an Error; errors name `opname`.
void gemm_run(const char* opname, const Gemm& g, CudaState& cs);

}  // namespace mambacpp::cuda
