// The CPU implementations behind the op dispatchers of ops.h, on plain views (raw pointers and strides).
//
// The dispatchers (ops.cpp) validate every argument; these functions assume valid, non-overlapping arguments
// except where an aliasing is stated. Parallel loops use `threads` OpenMP threads and split the work so that
// every output element is computed by the same sequence of operations whatever the thread count: results are
// bitwise identical for any `threads`.
#pragma once

#include <cstdint>

#include "core/dtype.h"

namespace mambacpp::cpu {

// An f32 matrix (rows, cols): each row contiguous, rows `ld` elements apart.
struct MatF32 {
  float* p = nullptr;
  int64_t rows = 0, cols = 0, ld = 0;
  float* row(int64_t r) const { return p + r * ld; }
};

// A read-only matrix (rows, cols) of any element type, rows contiguous and `ld` elements apart.
struct MatAny {
  const void* p = nullptr;
  DType dtype = DType::f32;
  int64_t rows = 0, cols = 0, ld = 0;
};

// An f32 sequence tensor (b, l, c) with contiguous channels: element (bi, t, ch) at p[bi·sb + t·sl + ch].
struct SeqF32 {
  float* p = nullptr;
  int64_t sb = 0, sl = 0;
  float* at(int64_t bi, int64_t t) const { return p + bi * sb + t * sl; }
};

// y (m, o) = x (m, i) · wᵀ (o, i) + bias (o); bias may be null.
void linear(MatF32 y, MatF32 x, MatAny w, const float* bias, int threads);

// out (m, d) = table[ids[r]] converted to f32; ids already checked to lie in [0, table.rows).
void embedding(MatF32 out, const int32_t* ids, MatAny table, int threads);

// residual += x (when x.p is not null), then out = residual · rsqrt(mean(residual²) + eps) · w (d).
// out may alias x but not residual.
void rmsnorm(MatF32 out, MatF32 residual, MatF32 x, const float* w, float eps, int threads);

struct ConvParams {
  int64_t b = 0, l = 0, e = 0, k = 0;
  SeqF32 out, x;                      // (b, l, e)
  const float* w = nullptr;           // (e, k)
  const float* bias = nullptr;        // (e) or null
  const float* state_in = nullptr;    // (b, e, k-1) contiguous, or null for zeros
  float* state_out = nullptr;         // (b, e, k-1) contiguous, or null; may equal state_in
  bool silu = false;
};
// The largest conv width conv1d_causal supports.
constexpr int64_t kMaxConvWidth = 16;
void conv1d_causal(const ConvParams& p, int threads);

struct ScanParams {
  int64_t b = 0, l = 0, e = 0, n = 0;
  SeqF32 y, u, dt, z;                 // (b, l, e); z.p null means no gate
  SeqF32 B, C;                        // (b, l, n); B.p / C.p null when that one is time-invariant
  const float* B_lti = nullptr;       // (e, n) contiguous: a time-invariant B, or null
  const float* C_lti = nullptr;       // (e, n) contiguous: a time-invariant C, or null
  const float* A = nullptr;           // (e, n)
  const float* D = nullptr;           // (e) or null
  const float* dt_bias = nullptr;     // (e) or null
  const float* state_in = nullptr;    // (b, e, n) contiguous, or null for zeros
  float* state_out = nullptr;         // (b, e, n) contiguous, or null; may equal state_in
  float* chunk_states = nullptr;      // (b, scan_state_count(l), n, e) contiguous, or null (ops.h)
  bool dt_softplus = true;
};
void selective_scan(const ScanParams& p, int threads);

}  // namespace mambacpp::cpu
