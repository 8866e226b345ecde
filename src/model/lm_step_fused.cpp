// The fused decoding step (see lm_step_fused.h). Per layer:
//   1. xz (b, 2e)      = rmsnorm(residual) · in_proj        (norm_gemv)
//   2. xdbl (b, r+2n)  = silu(conv step(xz's x)) · x_proj    (conv_gemv)
//   3. y (b, e)        = scan step with Δ = softplus(dt_proj · xdbl + bias), the conv state shifted (ssm_step)
//   4. residual       += y · out_proj                        (gemv_add)
// then the final norm and the head through the ordinary ops. The residual of layer i+1 is updated in place by
// layer i's step 4, so no step reads a buffer that the same launch writes.
#include "model/lm_step_fused.h"

#include <algorithm>

#include "core/error.h"
#include "ops/ops.h"
#ifdef MAMBACPP_HAS_CUDA
#include "core/cuda/cuda_state.h"
#include "ops/cuda/decode_kernels.h"
#endif

namespace mambacpp {

#ifdef MAMBACPP_HAS_CUDA
namespace {

Tensor rows(void* p, int64_t m, int64_t c) { return Tensor(p, DType::f32, {m, c}, Device::cuda); }

const float* f32_or_null(const Tensor& t) { return t.defined() ? t.f32() : nullptr; }

struct LayerLaunch {
  cuda::DecodeGemvParams in, x;
  cuda::DecodeSsmParams ssm;
  cuda::DecodeGemvParams out;
};

// The parameters of one layer's four launches at batch b.
LayerLaunch layer_launch(const ModelWeights& w, int64_t layer, RecurrentState& state, Workspace& ws, int64_t b) {
  const MambaConfig& c = w.config;
  const LayerWeights& lw = w.layers[size_t(layer)];
  const int64_t d = c.d_model, e = c.d_inner, n = c.d_state, r = c.dt_rank, xw = r + 2 * n;
  LayerLaunch L;
  L.in.y = ws.xz.as<float>(), L.in.ld_y = 2 * e;
  L.in.w = lw.in_proj.data, L.in.w_dtype = lw.in_proj.dtype, L.in.bias = f32_or_null(lw.in_proj_bias);
  L.in.b = b, L.in.i = d, L.in.o = 2 * e;
  L.in.residual = ws.residual.as<float>(), L.in.norm_w = lw.norm.f32(), L.in.eps = c.norm_eps;

  L.x.y = ws.xdbl.as<float>(), L.x.ld_y = xw;
  L.x.w = lw.x_proj.data, L.x.w_dtype = lw.x_proj.dtype;
  L.x.b = b, L.x.i = e, L.x.o = xw;
  L.x.conv_w = lw.conv_w.f32(), L.x.conv_b = f32_or_null(lw.conv_b), L.x.conv_state = state.conv(layer).f32();
  L.x.xin = ws.xz.as<float>(), L.x.ld_xin = 2 * e, L.x.k = c.d_conv;

  cuda::DecodeSsmParams& s = L.ssm;
  s.y = ws.y.as<float>(), s.conv_state = state.conv(layer).f32(), s.ssm_state = state.ssm(layer).f32();
  s.xz = ws.xz.as<float>(), s.xdbl = ws.xdbl.as<float>();
  s.conv_w = lw.conv_w.f32(), s.conv_b = f32_or_null(lw.conv_b);
  s.dt_proj = lw.dt_proj.data, s.dt_dtype = lw.dt_proj.dtype, s.dt_bias = lw.dt_bias.f32();
  s.A = lw.A.f32(), s.D = lw.D.f32();
  s.b = b, s.e = e, s.n = n, s.r = r, s.k = c.d_conv;

  L.out.y = ws.residual.as<float>(), L.out.ld_y = d;
  L.out.w = lw.out_proj.data, L.out.w_dtype = lw.out_proj.dtype, L.out.bias = f32_or_null(lw.out_proj_bias);
  L.out.b = b, L.out.i = e, L.out.o = d;
  L.out.y_in = ws.y.as<float>();
  return L;
}

bool refuse(std::string* why, const std::string& msg) {
  if (why != nullptr) *why = msg;
  return false;
}

}  // namespace

bool lm_step_fused_supports(const ModelWeights& w, int64_t b, std::string* why) {
  const MambaConfig& c = w.config;
  if (w.embedding.device != Device::cuda) return refuse(why, "the fused decoding step runs on cuda only");
  if (!c.selective_dt || !c.selective_B || !c.selective_C)
    return refuse(why, "the fused decoding step needs the selective (S6) model");
  for (const LayerWeights& lw : w.layers)
    for (const Tensor* t : {&lw.in_proj, &lw.x_proj, &lw.dt_proj, &lw.out_proj})
      if (!t->defined() || !t->is_contiguous()) return refuse(why, "the fused decoding step needs contiguous matrices");
  const int64_t e = c.d_inner;
  for (const LayerWeights& lw : w.layers) {
    cuda::DecodeGemvParams in, x, out;
    in.w = lw.in_proj.data, in.b = b, in.i = c.d_model;
    x.w = lw.x_proj.data, x.b = b, x.i = e, x.k = c.d_conv;
    out.w = lw.out_proj.data, out.b = b, out.i = e;
    cuda::DecodeSsmParams ssm;
    ssm.n = c.d_state, ssm.k = c.d_conv, ssm.r = c.dt_rank;
    if (!cuda::decode_gemv_supports(in, cuda::DecodeGemvKind::norm, why) ||
        !cuda::decode_gemv_supports(x, cuda::DecodeGemvKind::conv, why) || !cuda::decode_ssm_supports(ssm, why) ||
        !cuda::decode_gemv_supports(out, cuda::DecodeGemvKind::add, why))
      return false;
  }
  return true;
}

void lm_step_fused(Tensor logits, RecurrentState& state, const ModelWeights& w, const int32_t* ids, Workspace& ws,
                   Context& ctx) {
  const MambaConfig& c = w.config;
  const int64_t b = state.batch(), d = c.d_model, v = c.vocab_size;
  std::string why;
  MAMBA_CHECK(lm_step_fused_supports(w, b, &why), "lm_step_fused: {}", why);
  MAMBA_CHECK(state.device() == Device::cuda && ws.device() == Device::cuda && logits.device == Device::cuda,
              "lm_step_fused: the state, workspace and logits must be on cuda");
  MAMBA_CHECK(logits.dtype == DType::f32 && logits.is_contiguous() && logits.ndim == 2 && logits.shape[0] == b &&
                  logits.shape[1] == v,
              "lm_step_fused: logits must be a contiguous f32 tensor of shape [{}, {}], got {}", b, v,
              logits.shape_str());
  MAMBA_CHECK(ws.rows() >= b, "lm_step_fused: the workspace holds {} rows, the step needs {}", ws.rows(), b);
  const cudaStream_t stream = cuda_state(ctx).stream;
  const Tensor residual = rows(ws.residual.data(), b, d), hidden = rows(ws.hidden.data(), b, d);
  embedding_forward(residual, ids, b, w.embedding, ctx);
  for (int64_t i = 0; i < c.n_layer; ++i) {
    const LayerLaunch L = layer_launch(w, i, state, ws, b);
    cuda::decode_gemv_launch(L.in, cuda::DecodeGemvKind::norm, stream);
    cuda::decode_gemv_launch(L.x, cuda::DecodeGemvKind::conv, stream);
    cuda::decode_ssm_launch(L.ssm, stream);
    cuda::decode_gemv_launch(L.out, cuda::DecodeGemvKind::add, stream);
  }
  rmsnorm_forward(hidden, residual, Tensor{}, w.norm_f, c.norm_eps, ctx);
  linear_forward(logits, hidden, w.lm_head, Tensor{}, ctx);
}

#else

bool lm_step_fused_supports(const ModelWeights&, int64_t, std::string* why) {
  if (why != nullptr) *why = "this build has no CUDA backend";
  return false;
}

void lm_step_fused(Tensor, RecurrentState&, const ModelWeights&, const int32_t*, Workspace&, Context&) {
  MAMBA_CHECK(false, "lm_step_fused: this build has no CUDA backend");
}

#endif

}  // namespace mambacpp
