// The Tensor-level CUDA ops of cuda_ops.h other than the scan and the linear layer: embedding, RMSNorm,
// conv1d and the greedy argmax. Shapes were checked by the dispatchers (ops.cpp); what is checked here is what
// the CUDA kernels add: every tensor on cuda, dtypes, and the kernels' own limits.
#include <string>

#include "core/cuda/cuda_state.h"
#include "core/error.h"
#include "ops/cuda/cuda_ops.h"
#include "ops/cuda/infer_kernels.h"
#include "ops/cuda/tensor_rows.h"

namespace mambacpp {

bool embedding_cuda_supports(const Tensor& out, int64_t m, const Tensor& table, std::string* why) {
  if (!cuda::on_cuda({{"out", &out}, {"table", &table}}, why)) return false;
  cuda::EmbeddingParams p;
  p.m = m, p.d = table.shape[1];
  return cuda::embedding_kernel_supports(p, why);
}

void embedding_forward_cuda(Tensor out, const int32_t* ids, int64_t m, Tensor table, Context& ctx) {
  std::string why;
  MAMBA_CHECK(embedding_cuda_supports(out, m, table, &why), "embedding_forward (cuda): {}", why);
  cuda::EmbeddingParams p;
  p.out = out.f32(), p.ld_out = cuda::rows_of(out).ld;
  p.ids = ids;
  p.table = table.data, p.table_dtype = table.dtype;
  p.m = m, p.d = table.shape[1], p.v = table.shape[0];
  MAMBA_CHECK(table.shape[0] <= 1 || table.stride[0] == p.d, "embedding_forward (cuda): table must be contiguous");
  cuda::embedding_kernel_launch(p, cuda_state(ctx).stream);
}

bool rmsnorm_cuda_supports(const Tensor& out, const Tensor& residual, const Tensor& residual_in, const Tensor& x,
                           const Tensor& w, std::string* why) {
  if (!cuda::on_cuda({{"out", &out}, {"residual", &residual}, {"residual_in", &residual_in}, {"x", &x}, {"w", &w}},
                     why))
    return false;
  if (out.dtype != DType::f32 && out.dtype != DType::bf16 && out.dtype != DType::f16) {
    if (why != nullptr) *why = std::string("out must be f32, bf16 or f16, got ") + dtype_name(out.dtype);
    return false;
  }
  cuda::RmsNormParams p;
  p.m = cuda::rows_of(residual).rows;
  return cuda::rmsnorm_kernel_supports(p, why);
}

void rmsnorm_forward_cuda(Tensor out, Tensor residual, Tensor residual_in, Tensor x, Tensor w, float eps,
                          Context& ctx) {
  std::string why;
  MAMBA_CHECK(rmsnorm_cuda_supports(out, residual, residual_in, x, w, &why), "rmsnorm_forward (cuda): {}", why);
  const cuda::Rows o = cuda::rows_of(out), r = cuda::rows_of(residual);
  cuda::RmsNormParams p;
  p.out = out.data, p.out_dtype = out.dtype, p.ld_out = o.ld;
  p.residual = residual.f32(), p.ld_residual = r.ld;
  if (residual_in.defined()) p.residual_in = residual_in.f32(), p.ld_residual_in = cuda::rows_of(residual_in).ld;
  if (x.defined()) p.x = x.f32(), p.ld_x = cuda::rows_of(x).ld;
  p.w = w.f32();
  p.m = r.rows, p.d = r.cols, p.eps = eps;
  cuda::rmsnorm_kernel_launch(p, cuda_state(ctx).stream);
}

namespace {

cuda::ConvParams conv_params(const Tensor& out, const Tensor& out_half, const Tensor& state_out, const Tensor& x,
                             const Tensor& w, const Tensor& bias, const Tensor& state_in, bool apply_silu) {
  cuda::ConvParams p;
  p.b = x.shape[0], p.l = x.shape[1], p.e = x.shape[2], p.k = w.shape[1];
  p.out = out.f32(), p.out_sb = out.stride[0], p.out_sl = out.stride[1];
  if (out_half.defined())
    p.out_half = out_half.data, p.half_dtype = out_half.dtype, p.half_sb = out_half.stride[0],
    p.half_sl = out_half.stride[1];
  p.x = x.data, p.x_dtype = x.dtype, p.x_sb = x.stride[0], p.x_sl = x.stride[1];
  p.w = w.f32();
  p.bias = bias.defined() ? bias.f32() : nullptr;
  p.state_in = state_in.defined() ? state_in.f32() : nullptr;
  p.state_out = state_out.defined() ? state_out.f32() : nullptr;
  p.silu = apply_silu;
  return p;
}

}  // namespace

bool conv1d_cuda_supports(const Tensor& out, const Tensor& out_half, const Tensor& state_out, const Tensor& x,
                          const Tensor& w, const Tensor& bias, const Tensor& state_in, std::string* why) {
  if (!cuda::on_cuda({{"out", &out}, {"out_half", &out_half}, {"state_out", &state_out}, {"x", &x}, {"w", &w},
                      {"bias", &bias}, {"state_in", &state_in}},
                     why))
    return false;
  return cuda::conv_kernel_supports(conv_params(out, out_half, state_out, x, w, bias, state_in, false), why);
}

bool conv1d_cuda_supports(const Tensor& out, const Tensor& state_out, const Tensor& x, const Tensor& w,
                          const Tensor& bias, const Tensor& state_in, std::string* why) {
  return conv1d_cuda_supports(out, Tensor{}, state_out, x, w, bias, state_in, why);
}

void conv1d_causal_forward_cuda(Tensor out, Tensor out_half, Tensor state_out, Tensor x, Tensor w, Tensor bias,
                                Tensor state_in, bool apply_silu, Context& ctx) {
  std::string why;
  MAMBA_CHECK(conv1d_cuda_supports(out, out_half, state_out, x, w, bias, state_in, &why),
              "conv1d_causal_forward (cuda): {}", why);
  cuda::conv_kernel_launch(conv_params(out, out_half, state_out, x, w, bias, state_in, apply_silu),
                           cuda_state(ctx).stream);
}

void conv1d_causal_forward_cuda(Tensor out, Tensor state_out, Tensor x, Tensor w, Tensor bias, Tensor state_in,
                                bool apply_silu, Context& ctx) {
  conv1d_causal_forward_cuda(out, Tensor{}, state_out, x, w, bias, state_in, apply_silu, ctx);
}

void argmax_rows_cuda(int32_t* ids, Tensor logits, Context& ctx) {
  std::string why;
  MAMBA_CHECK(cuda::on_cuda({{"logits", &logits}}, &why), "argmax (cuda): {}", why);
  MAMBA_CHECK(logits.dtype == DType::f32, "argmax (cuda): logits must be f32, got {}", dtype_name(logits.dtype));
  const cuda::Rows r = cuda::rows_of(logits);
  cuda::ArgmaxParams p;
  p.ids = ids, p.logits = logits.f32(), p.ld = r.ld, p.m = r.rows, p.v = r.cols;
  MAMBA_CHECK(cuda::argmax_kernel_supports(p, &why), "argmax (cuda): {}", why);
  cuda::argmax_kernel_launch(p, cuda_state(ctx).stream);
}

}  // namespace mambacpp
