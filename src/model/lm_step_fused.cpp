// The fused decoding step (see lm_step_fused.h): the model's parameters and the state's per-layer pointers in a
// table on the device, the scratch rows of the workspace, and one launch of the persistent kernel per step.
#include "model/lm_step_fused.h"

#include <vector>

#include "core/cuda/device_memory.h"
#include "core/error.h"
#ifdef MAMBACPP_HAS_CUDA
#include "core/cuda/cuda_state.h"
#include "ops/cuda/decode_kernels.h"
#endif

namespace mambacpp {

namespace {

bool refuse(std::string* why, const std::string& msg) {
  if (why != nullptr) *why = msg;
  return false;
}

}  // namespace

#ifdef MAMBACPP_HAS_CUDA

namespace {

const float* f32_or_null(const Tensor& t) { return t.defined() ? t.f32() : nullptr; }

// The kernel's sizes and model pointers; the per-step buffers are filled in by FusedStep.
cuda::DecodeStepParams model_params(const ModelWeights& w, int64_t b) {
  const MambaConfig& c = w.config;
  cuda::DecodeStepParams p;
  p.n_layer = c.n_layer, p.b = b, p.d = c.d_model, p.e = c.d_inner, p.n = c.d_state, p.r = c.dt_rank;
  p.k = c.d_conv, p.v = c.vocab_size, p.eps = c.norm_eps;
  p.w_dtype = w.embedding.dtype;
  p.embedding = w.embedding.data, p.norm_f = w.norm_f.f32(), p.lm_head = w.lm_head.data;
  return p;
}

cuda::DecodeLayer layer_table_row(const LayerWeights& lw, RecurrentState& state, int64_t layer) {
  cuda::DecodeLayer L;
  L.norm = lw.norm.f32();
  L.in_proj = lw.in_proj.data, L.in_bias = f32_or_null(lw.in_proj_bias);
  L.conv_w = lw.conv_w.f32(), L.conv_b = f32_or_null(lw.conv_b), L.conv_state = state.conv(layer).f32();
  L.x_proj = lw.x_proj.data, L.dt_proj = lw.dt_proj.data, L.dt_bias = lw.dt_bias.f32();
  L.A = lw.A.f32(), L.D = lw.D.f32(), L.ssm_state = state.ssm(layer).f32();
  L.out_proj = lw.out_proj.data, L.out_bias = f32_or_null(lw.out_proj_bias);
  return L;
}

}  // namespace

struct FusedStep::Impl {
  cuda::DecodeStepParams p;
  int blocks = 0;
  Buffer layers, part, greedy_part, barrier;
};

bool FusedStep::supports(const ModelWeights& w, int64_t b, std::string* why) {
  const MambaConfig& c = w.config;
  if (w.embedding.device != Device::cuda) return refuse(why, "the fused decoding step runs on cuda only");
  if (!c.selective_dt || !c.selective_B || !c.selective_C)
    return refuse(why, "the fused decoding step needs the selective (S6) model");
  const DType dt = w.embedding.dtype;
  const auto matrix_ok = [&](const Tensor& t) { return t.defined() && t.is_contiguous() && t.dtype == dt; };
  if (!matrix_ok(w.embedding) || !matrix_ok(w.lm_head))
    return refuse(why, "the fused decoding step needs the embedding and head contiguous in one dtype");
  for (const LayerWeights& lw : w.layers)
    for (const Tensor* t : {&lw.in_proj, &lw.x_proj, &lw.dt_proj, &lw.out_proj})
      if (!matrix_ok(*t))
        return refuse(why, "the fused decoding step needs every matrix contiguous in the embedding's dtype");
  return cuda::decode_step_supports(model_params(w, b), why);
}

FusedStep::FusedStep(const ModelWeights& w, RecurrentState& state, Workspace& ws, Context& ctx)
    : impl_(std::make_unique<Impl>()) {
  const int64_t b = state.batch();
  std::string why;
  MAMBA_CHECK(supports(w, b, &why), "fused decoding step: {}", why);
  MAMBA_CHECK(state.device() == Device::cuda && ws.device() == Device::cuda,
              "fused decoding step: the state and workspace must be on cuda");
  MAMBA_CHECK(ws.rows() >= b, "fused decoding step: the workspace holds {} rows, the step needs {}", ws.rows(), b);
  cuda::DecodeStepParams& p = impl_->p;
  p = model_params(w, b);
  std::vector<cuda::DecodeLayer> table;
  for (int64_t i = 0; i < w.config.n_layer; ++i) table.push_back(layer_table_row(w.layers[size_t(i)], state, i));
  if (!table.empty()) {
    impl_->layers = Buffer(table.size() * sizeof(cuda::DecodeLayer), Device::cuda);
    copy_memory(impl_->layers.data(), Device::cuda, table.data(), Device::cpu, impl_->layers.bytes());
  }
  impl_->part = Buffer(size_t(cuda::decode_step_part_bytes(p)), Device::cuda);
  impl_->barrier = Buffer(sizeof(unsigned long long), Device::cuda);
  zero_memory(impl_->barrier.data(), Device::cuda, impl_->barrier.bytes());
  p.layers = impl_->layers.as<cuda::DecodeLayer>();
  p.residual = ws.residual.as<float>(), p.xz = ws.xz.as<float>(), p.xc = ws.xc.as<float>(), p.y = ws.y.as<float>();
  p.part = impl_->part.as<float>();
  p.barrier = impl_->barrier.as<unsigned long long>();
  impl_->blocks = cuda::decode_step_prepare(p);
  MAMBA_CHECK(impl_->blocks > 0, "fused decoding step: this GPU cannot run the persistent kernel (cooperative "
                                 "launch or one block per multiprocessor unavailable)");
  impl_->greedy_part = Buffer(size_t(cuda::decode_step_greedy_bytes(impl_->blocks)), Device::cuda);
  p.greedy_part = impl_->greedy_part.as<cuda::GreedyKey>();
  (void)ctx;
}

FusedStep::~FusedStep() = default;

void FusedStep::run(Tensor logits, const int32_t* ids, Context& ctx, int32_t* greedy) {
  cuda::DecodeStepParams p = impl_->p;
  MAMBA_CHECK(logits.device == Device::cuda && logits.dtype == DType::f32 && logits.is_contiguous() &&
                  logits.ndim == 2 && logits.shape[0] == p.b && logits.shape[1] == p.v,
              "fused decoding step: logits must be a contiguous f32 tensor of shape [{}, {}] on cuda, got {}", p.b,
              p.v, logits.shape_str());
  p.ids = ids;
  p.logits = logits.f32();
  p.greedy = greedy;
  cuda::decode_step_launch(p, impl_->blocks, cuda_state(ctx).stream);
}

#else

struct FusedStep::Impl {};

bool FusedStep::supports(const ModelWeights&, int64_t, std::string* why) {
  return refuse(why, "this build has no CUDA backend");
}

FusedStep::FusedStep(const ModelWeights&, RecurrentState&, Workspace&, Context&) {
  MAMBA_CHECK(false, "fused decoding step: this build has no CUDA backend");
}

FusedStep::~FusedStep() = default;

void FusedStep::run(Tensor, const int32_t*, Context&, int32_t*) {
  MAMBA_CHECK(false, "fused decoding step: this build has no CUDA backend");
}

#endif

}  // namespace mambacpp
