// The two kernels behind cpu::linear (cpu_ops.h), chosen by the number of rows: a weight-streaming
// matrix-vector kernel for decoding and a packed, cache-blocked matrix-matrix kernel for prompts and training.
// Both compute y (m, o) = x (m, i) · wᵀ (o, i) + bias (o) for f32, bf16 or f16 w; bias may be null.
#pragma once

#include "ops/cpu/cpu_ops.h"

namespace mambacpp::cpu {

// Up to this many rows, linear streams the weights once through matvec; above it, it uses gemm.
constexpr int64_t kMatvecMaxRows = 8;

// m ≤ kMatvecMaxRows.
void matvec(MatF32 y, MatF32 x, MatAny w, const float* bias, int threads);
// Any m.
void gemm(MatF32 y, MatF32 x, MatAny w, const float* bias, int threads);

}  // namespace mambacpp::cpu
