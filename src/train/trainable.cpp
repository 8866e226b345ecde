// The model being trained (trainable.h).
#include "train/trainable.h"

#include <span>
#include <utility>
#include <vector>

#include "core/error.h"
#include "ops/ops_train.h"

namespace mambacpp {
namespace {

// The matrices of w that are held in its matrix dtype (a tied head once), in a fixed order.
std::vector<Tensor> matrices(const ModelWeights& w) {
  std::vector<Tensor> out = {w.embedding};
  if (w.lm_head.data != w.embedding.data) out.push_back(w.lm_head);
  for (const LayerWeights& l : w.layers)
    for (const Tensor& t : {l.in_proj, l.x_proj, l.dt_proj, l.out_proj})
      if (t.defined()) out.push_back(t);
  return out;
}

// A copy of `master` whose matrices are held in `dtype` (converted on the device) and whose vectors are the
// master's own tensors (so that they never need a refresh).
ModelWeights low_precision_copy(const ModelWeights& master, DType dtype, Context& ctx) {
  ModelWeights c;
  c.config = master.config;
  c.matrix_dtype = dtype;
  c.norm_f = master.norm_f;
  c.layers = master.layers;
  const auto convert = [&](const Tensor& t) -> Tensor {
    if (!t.defined()) return Tensor{};
    c.storage.emplace_back(size_t(t.numel()) * dtype_size(dtype), t.device);
    Tensor out(c.storage.back().data(), dtype, std::span<const int64_t>(t.shape.data(), size_t(t.ndim)), t.device);
    copy_convert(out, t, ctx);
    return out;
  };
  c.embedding = convert(master.embedding);
  c.lm_head = master.lm_head.data == master.embedding.data ? c.embedding : convert(master.lm_head);
  for (size_t i = 0; i < c.layers.size(); ++i) {
    LayerWeights& l = c.layers[i];
    const LayerWeights& m = master.layers[i];
    l.in_proj = convert(m.in_proj);
    l.x_proj = convert(m.x_proj);
    l.dt_proj = convert(m.dt_proj);
    l.out_proj = convert(m.out_proj);
  }
  return c;
}

}  // namespace

TrainableModel::TrainableModel(ModelWeights host, Device device, DType compute_dtype, const AdamWOptions& adam,
                               Context& ctx)
    : device_(device) {
  MAMBA_CHECK(host.matrix_dtype == DType::f32 && host.embedding.device == Device::cpu,
              "training starts from f32 weights on the CPU, got {} weights on {}", dtype_name(host.matrix_dtype),
              device_name(host.embedding.device));
  MAMBA_CHECK(compute_dtype == DType::f32 || device == Device::cuda,
              "--dtype {}: training on the CPU computes in f32; mixed precision (bf16, f16) needs --device cuda",
              dtype_name(compute_dtype));
  master_ = device == Device::cpu ? std::move(host) : host.to_device(device, DType::f32);
  // A from A_log by the same op the updates use, so that a run resumed from a checkpoint (whose A the loader
  // computed on the host) continues bit for bit.
  refresh_derived(master_, ctx);
  if (compute_dtype != DType::f32) compute_ = std::make_unique<ModelWeights>(low_precision_copy(master_, compute_dtype, ctx));
  grads_ = std::make_unique<ParamGrads>(master_);
  adam_ = std::make_unique<AdamW>(master_.named_parameters(), adam);
  if (compute_) {
    const std::vector<Tensor> from = matrices(master_), to = matrices(*compute_);
    for (size_t i = 0; i < from.size(); ++i) adam_->set_copy(from[i], to[i]);
  }
}

ClippedGrads TrainableModel::clip_gradients(double max_norm, float accum, Context& ctx) {
  return clip_scale(grads_->all(), max_norm, accum, ctx);
}

void TrainableModel::step(double lr, const GradScale& scale, Context& ctx) {
  adam_->step(grads_->grads, lr, ctx, scale);
  refresh_derived(master_, ctx);
}

ModelWeights TrainableModel::host_copy() const { return master_.to_device(Device::cpu, DType::f32); }

void refresh_derived(ModelWeights& w, Context& ctx) {
  for (LayerWeights& l : w.layers) neg_exp(l.A, l.A_log, ctx);
}

}  // namespace mambacpp
