// The CPU implementations behind the backward dispatchers of ops_backward.h, on the plain views of cpu_ops.h.
//
// The dispatchers (ops_backward.cpp) validate every argument; these functions assume valid, non-overlapping
// arguments. A null pointer (or a view with p == nullptr) is an absent optional argument or an unwanted
// gradient. Every sum over rows, tokens, batch rows or channels runs in an order fixed by the shapes, never by
// the thread count, so results are bitwise identical for any `threads`.
#pragma once

#include <cstdint>

#include "ops/cpu/cpu_ops.h"

namespace mambacpp::cpu {

// dx = dy · w (dx += dy · w when accumulate_dx); dw += dyᵀ · x; dbias += Σ_rows dy. w: (o, i) f32 contiguous rows.
void linear_backward(MatF32 dx, MatF32 dw, float* dbias, MatF32 dy, MatF32 x, MatF32 w, bool accumulate_dx,
                     int threads);

// dtable[ids[r]] += dout[r] for r = 0 .. m-1 in order.
void embedding_backward(MatF32 dtable, MatF32 dout, const int32_t* ids, int threads);

// dresidual += ∂out/∂residual · dout; dw += Σ_rows dout·residual·s (dw may be null).
void rmsnorm_backward(MatF32 dresidual, float* dw, MatF32 dout, MatF32 residual, const float* w, float eps,
                      int threads);

struct ConvGradParams {
  int64_t b = 0, l = 0, e = 0, k = 0;
  SeqF32 dx, dout, x;                 // (b, l, e)
  float* dw = nullptr;                // (e, k) or null
  float* dbias = nullptr;             // (e) or null
  float* dstate_in = nullptr;         // (b, e, k-1) contiguous, or null
  const float* w = nullptr;           // (e, k)
  const float* bias = nullptr;        // (e) or null
  const float* state_in = nullptr;    // (b, e, k-1) contiguous, or null for zeros
  bool silu = false;
};
void conv1d_causal_backward(const ConvGradParams& p, int threads);

struct ScanGradParams {
  int64_t b = 0, l = 0, e = 0, n = 0;
  SeqF32 du, ddt, dz, dy;             // (b, l, e); dz.p null when there is no gate
  SeqF32 dB, dC;                      // (b, l, n); p null when that one is time-invariant
  float* dB_lti = nullptr;            // (e, n) added to, with a time-invariant B; or null (not wanted)
  float* dC_lti = nullptr;            // (e, n) added to, with a time-invariant C; or null (not wanted)
  float* dA = nullptr;                // (e, n) or null
  float* dD = nullptr;                // (e) or null
  float* ddt_bias = nullptr;          // (e) or null
  float* dstate_in = nullptr;         // (b, e, n) contiguous, or null
  const float* dstate_out = nullptr;  // (b, e, n) contiguous, or null for zero
  SeqF32 u, dt, z;                    // (b, l, e); z.p null means no gate
  SeqF32 B, C;                        // (b, l, n); p null when that one is time-invariant
  const float* B_lti = nullptr;       // (e, n) contiguous: a time-invariant B, or null
  const float* C_lti = nullptr;       // (e, n) contiguous: a time-invariant C, or null
  const float* A = nullptr;           // (e, n)
  const float* D = nullptr;           // (e) or null
  const float* dt_bias = nullptr;     // (e) or null
  const float* state_in = nullptr;    // (b, e, n) contiguous, or null for zeros
  bool dt_softplus = true;
};
void selective_scan_backward(const ScanGradParams& p, int threads);

// The fused head and cross-entropy of ops_backward.h; dx.p and dw.p may be null.
double linear_cross_entropy(MatF32 dx, MatF32 dw, MatF32 x, MatF32 w, const int32_t* targets, float scale,
                            int threads);

// dst (src.cols, src.rows) = srcᵀ, contiguous.
void transpose(float* dst, MatF32 src, int threads);

}  // namespace mambacpp::cpu
