// The backward ops: for each forward op of ops.h, the gradients of a scalar loss with respect to its inputs,
// given the gradient with respect to its outputs. Same conventions as ops.h (outputs first, then inputs, then
// sizes/scalars, then the Context; the legend b l d e n k r v m; row-strided views allowed where the forward op
// allows them; an undefined Tensor is an absent optional argument or an unwanted gradient).
//
// Gradients with respect to activations are WRITTEN; gradients with respect to parameters (weights, biases,
// A, D, the Δ bias) are ADDED to what the tensor holds, so that a caller can accumulate them over layers,
// micro-batches or the tied head and embedding. Every gradient is f32. The CPU implementations are bitwise
// independent of the thread count: every sum runs in an order fixed by the shapes alone.
#pragma once

#include <array>
#include <cstdint>
#include <utility>

#include "core/context.h"
#include "core/tensor.h"
#include "ops/ops.h"

namespace mambacpp {

// Backward of linear_forward, y (m, o) = x (m, i) · wᵀ (o, i) + bias (o):
//   dx (m, i) = dy (m, o) · w;   dw (o, i) += dyᵀ · x;   dbias (o) += Σ_rows dy.
// Any of dx, dw, dbias may be undefined (not wanted); x is needed only for dw. w: f32 (on cuda also bf16 or f16:
// dy and x are then rounded to w's dtype for the tensor-core products, with f32 accumulation). On cuda, dy and x
// may also be held in w's half dtype already (used as they are, no rounding pass); dbias then needs an f32 dy.
void linear_backward(Tensor dx, Tensor dw, Tensor dbias, Tensor dy, Tensor x, Tensor w, Context& ctx);
// The same with dx ADDED to when accumulate_dx (dx += dy · w, for an activation that takes gradient from two
// places; on cuda the product is added by the matrix product itself, beta = 1).
void linear_backward(Tensor dx, Tensor dw, Tensor dbias, Tensor dy, Tensor x, Tensor w, bool accumulate_dx,
                     Context& ctx);

// Backward of embedding_forward: dtable (v, d) += Σ over rows r with ids[r] = row of dout (m, d)[r], the rows
// added in order r = 0, 1, … . ids: int32 in [0, v) (checked).
void embedding_backward(Tensor dtable, Tensor dout, const int32_t* ids, int64_t m, Context& ctx);

// Backward of rmsnorm_forward, out = residual · s · w with s = rsqrt(mean(residual²) + eps), residual being
// the stream after the add (what the forward left in it):
//   dresidual (m, d) += s · (dout·w) − residual · s³ · Σ_c (dout·w·residual) / d;   dw (d) += Σ_rows dout·residual·s.
// The gradient of the forward's added x equals the gradient of its residual input: both are dresidual.
// dw may be undefined.
void rmsnorm_backward(Tensor dresidual, Tensor dw, Tensor dout, Tensor residual, Tensor w, float eps, Context& ctx);
// The same, with the resulting dresidual also written rounded to dresidual_half's dtype (bf16 or f16, nearest
// even; (m, d) with a row stride) where that is defined: for a product that reads it in half precision next.
void rmsnorm_backward(Tensor dresidual, Tensor dresidual_half, Tensor dw, Tensor dout, Tensor residual, Tensor w,
                      float eps, Context& ctx);

// Backward of conv1d_causal_forward, pre[b, t, c] = bias[c] + Σ_j w[c, j] · xx[b, t + j, c], out = act(pre),
// xx = state_in (b, e, k-1) then x (b, l, e):
//   dpre = dout · act'(pre);  dxx[p] = Σ_j w[c, j] · dpre[p − j];  dx (b, l, e) = dxx[k-1 ..];
//   dstate_in (b, e, k-1) = dxx[.. k-1];  dw (e, k) += Σ_{b,t} dpre · xx[t + j];  dbias (e) += Σ_{b,t} dpre.
// dw, dbias, dstate_in may be undefined; state_in undefined means zeros (as in the forward). dx may also be bf16
// or f16: the gradient is then written rounded to nearest even (for a product that reads it in half precision). The forward's
// state_out takes no gradient here: a loss that depends on it (a sequence split into chunks whose backward
// passes are chained) is not supported by this op.
void conv1d_causal_backward(Tensor dx, Tensor dw, Tensor dbias, Tensor dstate_in, Tensor dout, Tensor x, Tensor w,
                            Tensor bias, Tensor state_in, bool apply_silu, Context& ctx);

// Backward of selective_scan_forward (see ops.h for the recurrence). With y'[t] = Σ_s h[t,s]·C[t,s] + D·u[t]
// (before the gate), dy' = dy·silu(z), and g[t,s] the total gradient of h[t,s]:
//   g[t,s] = dy'[t]·C[t,s] + exp(δ[t+1]·A[s])·g[t+1,s]      (g[l] = dstate_out, or 0)
//   dC[t,s] = Σ_c dy'·h[t,s]      dB[t,s] = Σ_c g·δ·u      du = dy'·D + Σ_s g·δ·B
//   dδ = Σ_s g·(A·exp(δA)·h[t-1,s] + B·u)     ddt = dδ · softplus'(dt + dt_bias)   (1 without softplus)
//   dA += Σ_t g·δ·exp(δA)·h[t-1]    dD += Σ_t dy'·u    ddt_bias += Σ_t ddt    dz = dy·y'·silu'(z)
//   dstate_in = exp(δ[0]·A)·g[0]
// The forward states are recomputed chunk by chunk (a checkpoint of the state every few dozen tokens, then
// each chunk's states again in reverse order): memory is O(b·e·n + l·n) per thread, never (b, l, e, n).
// du, ddt, dz: (b, l, e) written; dB, dC: (b, l, n) written (row-strided views allowed); dA (e, n), dD (e),
// ddt_bias (e): added to; dstate_in (b, e, n) written. dz is required exactly when z is defined; dD only with
// D, ddt_bias only with dt_bias; dA, dD, ddt_bias and dstate_in may be undefined.
// A time-invariant B or C (e, n) (see ops.h) has its gradient dB / dC (e, n) ADDED to, like dA (the sums over
// t of the terms above, per channel); it may be undefined. A time-invariant Δ (dt zero) takes its gradient
// through ddt_bias; ddt is still written.
// ddt and dz may also be bf16 or f16: the gradient is then written rounded to nearest even (for a product that
// reads it in half precision). u may also be bf16 or f16 (every other input f32, as in the forward): the
// gradients are exactly those of the op on u widened to f32; du is f32 all the same.
// chunk_states, when defined, holds the states that the forward pass wrote for these inputs (ScanArgs, ops.h:
// (b, scan_state_count(l), n, e) f32): an implementation may start from them instead of running the forward
// recurrence again. The gradients are the same up to rounding. The CUDA kernel uses them at n ≤ 64 and then skips
// its forward pass over the sequence; the CPU op checks their shape and recomputes.
struct ScanGradArgs {
  Tensor du, ddt, dB, dC, dz, dstate_in;  // written (dB, dC added to when (e, n), see above)
  Tensor dA, dD, ddt_bias;                // added to
  Tensor dy, dstate_out;                  // incoming gradients; dstate_out may be undefined (zero)
  Tensor u, dt, A, B, C, D, z, dt_bias;   // the forward's inputs
  Tensor state_in;
  Tensor chunk_states;                    // optional: the forward's chunk_states (ops.h), see above
  bool dt_softplus = true;
  // Every tensor with its name, for the implementations' checks.
  std::array<std::pair<const char*, const Tensor*>, 21> named() const {
    return {{{"du", &du}, {"ddt", &ddt}, {"dB", &dB}, {"dC", &dC}, {"dz", &dz}, {"dstate_in", &dstate_in},
             {"dA", &dA}, {"dD", &dD}, {"ddt_bias", &ddt_bias}, {"dy", &dy}, {"dstate_out", &dstate_out},
             {"u", &u}, {"dt", &dt}, {"A", &A}, {"B", &B}, {"C", &C}, {"D", &D}, {"z", &z}, {"dt_bias", &dt_bias},
             {"state_in", &state_in}, {"chunk_states", &chunk_states}}};
  }
};
void selective_scan_backward(const ScanGradArgs& args, Context& ctx);

// The head fused with cross-entropy, never holding more than a block of rows of logits (logits = x · wᵀ):
//   returns Σ over rows r with targets[r] ≥ 0 of −log softmax(logits[r])[targets[r]] (in double);
//   dx (m, d) = scale · (softmax(logits) − onehot(targets)) · w   (zero rows where targets[r] < 0);
//   dw (v, d) += scale · (softmax(logits) − onehot(targets))ᵀ · x.
// x: (m, d) f32 with a row stride (on cuda also in w's half dtype, as in linear_backward); w: (v, d) f32 (on cuda
// also bf16 or f16, as in linear_backward); targets: m
// ids in [0, v), or negative to skip the row (in the memory of the tensors' device).
// dx and dw may be undefined (the loss alone).
double linear_cross_entropy(Tensor dx, Tensor dw, Tensor x, Tensor w, const int32_t* targets, float scale,
                            Context& ctx);

}  // namespace mambacpp
