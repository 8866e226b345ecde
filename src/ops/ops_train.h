// Bookkeeping ops of the training loop: clearing and accumulating gradients, scaling, A from A_log, dtype copies
// of the parameters, the squared gradient norm and the AdamW update. Each works on the CPU and on the GPU (the
// device of its tensors, which must agree) and validates its arguments, throwing mambacpp::Error that names the
// op and the argument. Unless said otherwise every tensor is contiguous f32; "same numel" allows different
// shapes of one element count. CUDA work is queued on the Context's stream (asynchronous unless said).
// Results are deterministic on each device: every element is computed independently, and the one reduction
// (sum_squares) adds in an order fixed by the size alone.
#pragma once

#include "core/context.h"
#include "core/tensor.h"

namespace mambacpp {

// t = 0.
void fill_zero(Tensor t, Context& ctx);

// dst += src (same numel).
void add_into(Tensor dst, Tensor src, Context& ctx);

// dst += a ⊙ b (same numel, element by element).
void add_product_into(Tensor dst, Tensor a, Tensor b, Context& ctx);

// t *= s.
void scale_inplace(Tensor t, float s, Context& ctx);

// dst = −exp(src) (same numel): A from A_log.
void neg_exp(Tensor dst, Tensor src, Context& ctx);

// dst = src converted to dst's dtype (f32, bf16 or f16; rounded to nearest even, as core/dtype.h does).
// src is f32; both on one device, same numel, contiguous.
void copy_convert(Tensor dst, Tensor src, Context& ctx);

// The same for row views: dst (rows, cols) = src (rows, cols) rounded, each with a row stride (last dimension
// contiguous); dst bf16 or f16 (a half copy of part of a wider matrix, such as one half of in_proj's output).
void copy_convert_rows(Tensor dst, Tensor src, Context& ctx);

// Σ t² accumulated in double, in an order fixed by the size (the same result for any thread count, and on the
// GPU for any run). On cuda it waits for the stream.
double sum_squares(Tensor t, Context& ctx);

// The scalars of one AdamW update (train/adamw.h); bias_correction_i = 1 − βᵢᵗ at step t. The fields are double
// so that the update rounds them to f32 exactly as the trainer's loop does (lr / bc1, √bc2, 1 − lr·wd are formed
// in double, then rounded once).
struct AdamWStep {
  double lr = 0, beta1 = 0.9, beta2 = 0.95, eps = 1e-8, weight_decay = 0;
  double bias_correction1 = 1, bias_correction2 = 1;
};

// Per element (param, grad, m, v: same numel):
//   p ← p·(1 − lr·wd);  m ← β1·m + (1−β1)·g;  v ← β2·v + (1−β2)·g²;  p ← p − (lr / bc1) · m / (√v / √bc2 + ε),
// in f32 with the scalars rounded once from double. On the CPU this is bitwise the loop of train/adamw.cpp; on
// the GPU the same f32 arithmetic, where fused multiply-adds may round differently.
void adamw_update(Tensor param, Tensor grad, Tensor m, Tensor v, const AdamWStep& s, Context& ctx);

}  // namespace mambacpp
