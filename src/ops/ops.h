// The op catalogue: every numerical building block of the model, as free functions.
//
// Conventions (see docs/ARCHITECTURE.md):
//  - Arguments: outputs first, then saved-for-backward, then inputs, then sizes/scalars, then the Context.
//  - Shapes use one legend: b batch, l length, d d_model, e d_inner, n d_state, k conv width, r dt_rank,
//    v vocab, m rows (= b·l, or b when decoding), i/o a linear layer's input/output features.
//  - Activations are token-major (b, l, ·) and f32, or bf16/f16 where an op says so. A tensor argument may
//    have a row stride larger than its row length (a view into a wider tensor, e.g. the two halves of
//    in_proj's output); its last dimension is always contiguous. Weights of linear layers and the embedding
//    may be f32, bf16 or f16.
//  - An undefined Tensor (Tensor{}) is an absent optional argument.
//  - The dispatchers below validate shapes, dtypes and devices once and throw mambacpp::Error naming the
//    argument; the cpu/ implementations assume valid arguments.
#pragma once

#include <array>
#include <cmath>
#include <cstdint>
#include <utility>

#include "core/context.h"
#include "core/tensor.h"

namespace mambacpp {

// Reference scalar definitions, shared by every implementation and test.
inline float silu(float x) { return x / (1.0f + std::exp(-x)); }
// softplus as the reference defines it: log(1 + e^x), and x itself above 20.
inline float softplus(float x) { return x > 20.0f ? x : std::log1p(std::exp(x)); }

// y (m, o) = x (m, i) · wᵀ (o, i) [+ bias (o)].
// x, y: f32 with row strides; w: f32/bf16/f16 contiguous; bias: f32 or undefined. On cuda with a bf16 or f16 w,
// x may also be held in w's dtype: it is then multiplied as it is (an f32 x is rounded to that dtype first, so
// an x rounded beforehand gives the same y). There, with more than kLinearFewRows rows and no bias, y may also
// be held in w's dtype: the f32 sums rounded once, to nearest even. The CPU and the few-row kernel write f32.
void linear_forward(Tensor y, Tensor x, Tensor w, Tensor bias, Context& ctx);
// Products of at most this many rows read an f32 x and write an f32 y on cuda (a few-row kernel for decoding);
// above it, an x held in w's half dtype spares the product its rounding pass, and a half y its output's width.
constexpr int64_t kLinearFewRows = 8;

// out (m, d) = table (v, d)[ids (m)], converted to f32. ids: int32 in [0, v), in the memory of out's device.
// On the CPU they are checked (the error names the offending position and id); on cuda they are not (the host
// would have to wait for them) and a row with an id out of range comes out NaN.
void embedding_forward(Tensor out, const int32_t* ids, int64_t m, Tensor table, Context& ctx);

// RMSNorm with the fp32 residual stream. If x is defined: residual (m, d) += x (m, d); then
// out (m, d) = residual · rsqrt(mean(residual²) + eps) · w (d). out may not alias residual.
// out may also be bf16 or f16 (the f32 result rounded to nearest even).
void rmsnorm_forward(Tensor out, Tensor residual, Tensor x, Tensor w, float eps, Context& ctx);
// The same with the stream before the add kept: residual_out (m, d) = residual_in + x (x optional), then out as
// above from residual_out. Bitwise the same as copying residual_in to residual_out and calling the form above,
// without the copy. residual_out may not overlap residual_in, x or out.
void rmsnorm_forward(Tensor out, Tensor residual_out, Tensor residual_in, Tensor x, Tensor w, float eps,
                     Context& ctx);

// Causal depthwise conv1d over the sequence, with optional bias and SiLU:
//   out[b, t, c] = act(bias[c] + Σ_{j<k} w[c, j] · xx[b, t + j, c]),
// where xx is x (b, l, e) preceded by the k-1 inputs held in state_in (b, e, k-1) (zeros if undefined).
// If state_out (b, e, k-1) is defined it receives the last k-1 inputs of xx (it may alias state_in).
// w: (e, k) f32 (the checkpoint's (e, 1, k) squeezed); bias: (e) f32 or undefined.
// x may also be bf16 or f16 (e.g. the x half of a half in_proj output): the result is exactly the op's on x
// widened to f32 (every half value is exact in f32), on the CPU and on cuda; the state stays f32.
void conv1d_causal_forward(Tensor out, Tensor state_out, Tensor x, Tensor w, Tensor bias, Tensor state_in,
                           bool apply_silu, Context& ctx);
// The same, with out also written rounded to out_half's dtype (bf16 or f16, rounded to nearest even; the shape
// and strides rules of out) where out_half is defined: for a product that reads the output in half precision.
// out may then be undefined: only the half output is written (training keeps the conv's output so, for x_proj
// and the scan).
void conv1d_causal_forward(Tensor out, Tensor out_half, Tensor state_out, Tensor x, Tensor w, Tensor bias,
                           Tensor state_in, bool apply_silu, Context& ctx);

// Selective scan (Mamba-1 S6), fused with its discretisation, D skip and gate:
//   δ[t,c]   = dt_softplus ? softplus(dt[t,c] + dt_bias[c]) : dt[t,c] + dt_bias[c]
//   h[c,s]   = exp(δ[t,c]·A[c,s]) · h[c,s] + δ[t,c] · B[t,s] · u[t,c]       (h starts from state_in or 0)
//   y[t,c]   = (Σ_s h[c,s] · C[t,s] + D[c] · u[t,c]) · silu(z[t,c])
// per batch row. u, dt, z, y: (b, l, e); B, C: (b, l, n) with row strides (views into x_proj's output), or
// either of them (e, n) f32 contiguous: time-invariant, B[c,s] / C[c,s] in place of B[t,s] / C[t,s] (the
// ablations with a non-selective B or C; on cuda with f32 sequences). A time-invariant Δ is a dt of zeros (a
// view with zero strides will do) with dt_bias carrying Δ.
// A: (e, n) f32 (= -exp(A_log)); D, dt_bias: (e) f32 or undefined; z undefined means no gate;
// state_in, state_out: (b, e, n) f32, either undefined, and they may alias (a recurrent step in place).
// y may also be bf16 or f16 (the f32 result rounded to nearest even, for a product that reads it in half
// precision); on cuda, with half inputs, it is their dtype or f32.
// u may also be bf16 or f16 while dt, B, C and z are f32 (training keeps the conv's output so): the result is
// exactly the op's on u widened to f32 (every half value is exact in f32), on the CPU and on cuda.
// chunk_states, when defined, receives the state before every kScanStateInterval-th step, for the backward pass
// (ops_backward.h) to start from instead of running the forward recurrence again:
//   chunk_states[bi, k, s, c] = h[c, s] before step t = k·kScanStateInterval, k < scan_state_count(l),
// (b, scan_state_count(l), n, e) f32 contiguous (k = 0 is state_in, or zeros).
// Memory is O(b·e·n) whatever l is: no (b, l, e, n) expansion is ever formed (chunk_states, where asked for, is
// one state per kScanStateInterval steps: the size of a (b, l, e) tensor at n = 16).
constexpr int64_t kScanStateInterval = 16;
constexpr int64_t scan_state_count(int64_t l) { return (l + kScanStateInterval - 1) / kScanStateInterval; }
struct ScanArgs {
  Tensor y, state_out, chunk_states;         // outputs (chunk_states optional, see above)
  Tensor u, dt, A, B, C, D, z, dt_bias;      // inputs (B, C: (b, l, n) or time-invariant (e, n))
  Tensor state_in;
  bool dt_softplus = true;
  // Every tensor with its name, for the implementations' checks.
  std::array<std::pair<const char*, const Tensor*>, 12> named() const {
    return {{{"y", &y}, {"state_out", &state_out}, {"chunk_states", &chunk_states}, {"u", &u}, {"dt", &dt},
             {"A", &A}, {"B", &B}, {"C", &C}, {"D", &D}, {"z", &z}, {"dt_bias", &dt_bias}, {"state_in", &state_in}}};
  }
};
void selective_scan_forward(const ScanArgs& args, Context& ctx);

}  // namespace mambacpp
