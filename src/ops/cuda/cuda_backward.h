// The CUDA implementations behind the backward dispatchers of ops_backward.h (the selective scan's is in
// cuda_scan_backward.h), on Tensors that live on the GPU.
//
// The dispatchers (ops_backward.cpp) check shapes, row strides and which optional tensors go together, then call
// these. Each op has a *_supports function that says whether the CUDA implementation handles a call (devices,
// dtypes, sizes) and, if not, why. Work is queued on the Context's stream; the results are the same on every
// run (no float atomics: sums over rows are taken in blocks in a fixed order, matrix products by cuBLASLt,
// whose results are reproducible on one GPU model).
#pragma once

#include <cstdint>
#include <string>

#include "core/context.h"
#include "core/tensor.h"

namespace mambacpp {

// linear_backward through cuBLASLt with f32 accumulation. w may be f32, bf16 or f16: with bf16/f16, dy and x
// are rounded to w's dtype (in the stream's scratch memory) unless they already hold it, and the products run
// on the tensor cores; every gradient is f32 (dw added to with beta = 1, dx too when accumulate_dx).
bool linear_backward_cuda_supports(const Tensor& dx, const Tensor& dw, const Tensor& dbias, const Tensor& dy,
                                   const Tensor& x, const Tensor& w, std::string* why);
void linear_backward_cuda(Tensor dx, Tensor dw, Tensor dbias, Tensor dy, Tensor x, Tensor w, bool accumulate_dx,
                          Context& ctx);

// embedding_backward with `ids` in device memory (not range-checked on the host: a row whose id is outside
// [0, v) adds nothing).
bool embedding_backward_cuda_supports(const Tensor& dtable, const Tensor& dout, std::string* why);
void embedding_backward_cuda(Tensor dtable, Tensor dout, const int32_t* ids, int64_t m, Context& ctx);

bool rmsnorm_backward_cuda_supports(const Tensor& dresidual, const Tensor& dw, const Tensor& dout,
                                    const Tensor& residual, const Tensor& w, std::string* why);
// dresidual_half (bf16 or f16, or undefined) receives the resulting dresidual rounded.
void rmsnorm_backward_cuda(Tensor dresidual, Tensor dresidual_half, Tensor dw, Tensor dout, Tensor residual,
                           Tensor w, float eps, Context& ctx);

// Any conv width k from 1 to 8.
bool conv1d_backward_cuda_supports(const Tensor& dx, const Tensor& dw, const Tensor& dbias, const Tensor& dstate_in,
                                   const Tensor& dout, const Tensor& x, const Tensor& w, const Tensor& bias,
                                   const Tensor& state_in, std::string* why);
void conv1d_causal_backward_cuda(Tensor dx, Tensor dw, Tensor dbias, Tensor dstate_in, Tensor dout, Tensor x,
                                 Tensor w, Tensor bias, Tensor state_in, bool apply_silu, Context& ctx);

// linear_cross_entropy with `targets` in device memory (negative: the row is skipped; ≥ v: its loss is NaN and
// it adds no gradient). The rows run in blocks holding at most kXentLogitBytes of logits; w may be f32, bf16 or
// f16 (as in linear_backward_cuda). Returns the loss after waiting for the stream.
constexpr int64_t kXentLogitBytes = int64_t(256) << 20;
bool linear_cross_entropy_cuda_supports(const Tensor& dx, const Tensor& dw, const Tensor& x, const Tensor& w,
                                        std::string* why);
double linear_cross_entropy_cuda(Tensor dx, Tensor dw, Tensor x, Tensor w, const int32_t* targets, float scale,
                                 Context& ctx);

}  // namespace mambacpp
