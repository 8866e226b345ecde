// Bookkeeping ops of the training loop: clearing and accumulating gradients, scaling, A from A_log, dtype copies
// of the parameters, the squared gradient norm and the AdamW update. Each works on the CPU and on the GPU (the
// device of its tensors, which must agree) and validates its arguments, throwing mambacpp::Error that names the
// op and the argument. Unless said otherwise every tensor is contiguous f32; "same numel" allows different
// shapes of one element count. CUDA work is queued on the Context's stream (asynchronous unless said).
// Results are deterministic on each device: every element is computed independently, and the one reduction
// (sum_squares) adds in an order fixed by the size alone.
#pragma once

#include <span>

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

// Σ (s·t)² accumulated in double, each product s·t rounded to f32 first (the value scale_inplace(t, s) would
// leave; s = 1: Σ t²), in an order fixed by the size (the same result for any thread count, and on the GPU for
// any run). On cuda it waits for the stream.
double sum_squares(Tensor t, float s, Context& ctx);

// The factors an AdamW update multiplies each gradient by before using it, one f32 multiply each, in this order:
// `accum` (1/grad_accum, the mean over micro-batches), then `clip` (the clipping factor). The update thus sees,
// bit for bit, the gradient that scale_inplace(g, accum) then scale_inplace(g, clip) would have left in memory,
// without those passes; a factor of 1 leaves the gradient unchanged.
struct GradScale {
  float accum = 1, clip = 1;
};

// The scalars of one AdamW update (train/adamw.h); bias_correction_i = 1 − βᵢᵗ at step t. The fields are double
// so that the update rounds them to f32 exactly as the trainer's loop does (lr / bc1, √bc2, 1 − lr·wd are formed
// in double, then rounded once).
struct AdamWStep {
  double lr = 0, beta1 = 0.9, beta2 = 0.95, eps = 1e-8, weight_decay = 0;
  double bias_correction1 = 1, bias_correction2 = 1;
  GradScale grad_scale;
};

// Per element (param, grad, m, v: same numel), in f32 with the scalars rounded once from double (b1 = f32(β1),
// keep = f32(1 − lr·wd), step = f32(lr / bc1), sqrt_bc2 = f32(√bc2)), every operation rounded on its own (no
// fused multiply-adds, on the CPU and the GPU alike, so that both give the same bits):
//   g ← (g·accum)·clip;  p ← p·keep;  m ← b1·m + (1−b1)·g;  v ← b2·v + ((1−b2)·g)·g;
//   p ← p − (step·m) / (√v / sqrt_bc2 + ε);  copy ← p rounded to nearest even (when copy is defined).
// The gradient in memory is left as it is. `copy`: undefined, or a contiguous bf16/f16 tensor of param's numel
// (the compute copy of a mixed-precision matrix), written from the updated parameter exactly as copy_convert
// would.
void adamw_update(Tensor param, Tensor grad, Tensor m, Tensor v, Tensor copy, const AdamWStep& s, Context& ctx);

// One tensor of adamw_update_all: the arguments of adamw_update, and whether s.weight_decay applies to it.
struct AdamWTensor {
  Tensor param, grad, m, v, copy;
  bool decay = false;
};

// adamw_update for every tensor, with weight decay s.weight_decay on those marked `decay` and none on the others;
// on cuda in one launch over a device table of the tensors (the table goes through the stream's scratch memory).
// The result is bit for bit that of adamw_update tensor by tensor.
void adamw_update_all(std::span<const AdamWTensor> tensors, const AdamWStep& s, Context& ctx);

}  // namespace mambacpp
