// The CUDA implementations behind the op dispatchers of ops.h, on Tensors that live on the GPU.
//
// The dispatchers of ops.cpp check what every implementation requires (shapes, row strides, aliasing) and then
// call these. Each op has a *_supports function that says whether the CUDA implementation handles a call —
// dtypes, devices, sizes — and, if not, why; the op itself throws mambacpp::Error with that reason. Work is
// queued on the Context's stream (core/cuda/cuda_state.h) and is asynchronous to the host, unless
// MAMBACPP_CUDA_SYNC=1 (then each op waits for its kernels and reports their faults).
#pragma once

#include <string>

#include "core/context.h"
#include "ops/ops.h"

namespace mambacpp {

// linear_forward (ops.h) through cuBLASLt with f32 accumulation: f32 w multiplies f32 x directly; bf16 or f16
// w multiplies x rounded to w's dtype (in the stream's scratch memory), or x as it is when it already holds
// w's dtype (row-strided or not), on the tensor cores. bias f32; y f32, or w's half dtype for more than
// kLinearFewRows rows without a bias (cuBLASLt rounds the f32 sums once).
bool linear_cuda_supports(const Tensor& y, const Tensor& x, const Tensor& w, const Tensor& bias, std::string* why);
void linear_forward_cuda(Tensor y, Tensor x, Tensor w, Tensor bias, Context& ctx);

// embedding_forward (ops.h) with `ids` in device memory. The ids are not range-checked here (the host cannot
// read them without waiting): a row whose id is out of range comes out NaN.
bool embedding_cuda_supports(const Tensor& out, int64_t m, const Tensor& table, std::string* why);
void embedding_forward_cuda(Tensor out, const int32_t* ids, int64_t m, Tensor table, Context& ctx);

// residual_in undefined: the in-place form (residual += x). out may be f32, bf16 or f16.
bool rmsnorm_cuda_supports(const Tensor& out, const Tensor& residual, const Tensor& residual_in, const Tensor& x,
                           const Tensor& w, std::string* why);
void rmsnorm_forward_cuda(Tensor out, Tensor residual, Tensor residual_in, Tensor x, Tensor w, float eps,
                          Context& ctx);

// Any conv width k from 1 to 8. x may be f32, bf16 or f16 (widened to f32 as it is loaded).
bool conv1d_cuda_supports(const Tensor& out, const Tensor& state_out, const Tensor& x, const Tensor& w,
                          const Tensor& bias, const Tensor& state_in, std::string* why);
void conv1d_causal_forward_cuda(Tensor out, Tensor state_out, Tensor x, Tensor w, Tensor bias, Tensor state_in,
                                bool apply_silu, Context& ctx);
// The same, with out also written rounded to out_half's dtype (bf16 or f16; undefined: not written).
bool conv1d_cuda_supports(const Tensor& out, const Tensor& out_half, const Tensor& state_out, const Tensor& x,
                          const Tensor& w, const Tensor& bias, const Tensor& state_in, std::string* why);
void conv1d_causal_forward_cuda(Tensor out, Tensor out_half, Tensor state_out, Tensor x, Tensor w, Tensor bias,
                                Tensor state_in, bool apply_silu, Context& ctx);

// ids (m) on the device = the index of the largest logit of each row of logits (m, v) f32 on the device (the
// lowest index among equal maxima): greedy decoding without leaving the GPU.
void argmax_rows_cuda(int32_t* ids, Tensor logits, Context& ctx);

// selective_scan_forward (ops.h) on the GPU. u, dt, B, C and z share one dtype (f32, bf16 or f16); y has that
// dtype or f32 (with f32 inputs also bf16 or f16); A, D, dt_bias, state_in and state_out are f32. Any n from 1 to
// 256.
bool selective_scan_cuda_supports(const ScanArgs& args, std::string* why);
void selective_scan_forward_cuda(const ScanArgs& args, Context& ctx);

// The filters of a draw (infer/sampler.h's SamplingParams, as plain numbers).
struct SampleFilters {
  float temperature = 0.0f;  // 0 = greedy
  int64_t top_k = 0;         // 0 = off
  float top_p = 1.0f;        // 1 = off
  float min_p = 0.0f;        // 0 = off
  float repetition_penalty = 1.0f;
};

// ids (m) on the device = one token drawn from each row of logits (m, v) f32 on the device, with the CPU
// Sampler's filters in its order (sample_kernel.h), given one uniform number in [0, 1) per row (uniforms (m) on
// the device; unused when the temperature is 0): the Sampler's choice for the Sampler's draw. The penalty
// applies to the ids marked non-zero in seen (m, v) on the device (nullptr: none), and the chosen id is marked.
void sample_rows_cuda(int32_t* ids, Tensor logits, unsigned char* seen, const double* uniforms,
                      const SampleFilters& f, Context& ctx);

}  // namespace mambacpp
