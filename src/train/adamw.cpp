// AdamW with the reference's weight-decay grouping, and global gradient-norm clipping (adamw.h).
#include "train/adamw.h"

#include <cmath>
#include <cstring>

#include "core/cuda/device_memory.h"
#include "core/error.h"

namespace mambacpp {

void AdamWOptions::validate() const {
  MAMBA_CHECK(beta1 >= 0 && beta1 < 1, "--beta1 must be in [0, 1), got {}", beta1);
  MAMBA_CHECK(beta2 >= 0 && beta2 < 1, "--beta2 must be in [0, 1), got {}", beta2);
  MAMBA_CHECK(std::isfinite(eps) && eps > 0, "--eps must be a positive number, got {}", eps);
  MAMBA_CHECK(std::isfinite(weight_decay) && weight_decay >= 0, "--weight-decay must be ≥ 0, got {}", weight_decay);
}

bool decays(const std::string& name, const Tensor& param) {
  const auto ends_with = [&](const char* s) {
    const size_t n = std::strlen(s);
    return name.size() >= n && name.compare(name.size() - n, n, s) == 0;
  };
  if (ends_with("A_log") || ends_with("mixer.B") || ends_with("mixer.C") || ends_with("embeddings.weight") ||
      ends_with("embedding.weight"))
    return false;
  return param.ndim >= 2;
}

ClippedGrads clip_scale(Tensor all_grads, double max_norm, float accum, Context& ctx) {
  ClippedGrads c;
  c.norm = std::sqrt(sum_squares(all_grads, accum, ctx));
  c.scale.accum = accum;
  if (std::isfinite(c.norm) && max_norm > 0 && c.norm > max_norm) c.scale.clip = float(max_norm / (c.norm + 1e-6));
  return c;
}

double clip_grad_norm(Tensor all_grads, double max_norm, Context& ctx) {
  const ClippedGrads c = clip_scale(all_grads, max_norm, 1.0f, ctx);
  if (c.scale.clip != 1.0f) scale_inplace(all_grads, c.scale.clip, ctx);
  return c.norm;
}

AdamW::AdamW(std::vector<std::pair<std::string, Tensor>> params, const AdamWOptions& opt)
    : params_(std::move(params)), opt_(opt) {
  opt_.validate();
  size_t bytes = 0;
  const Device dev = params_.empty() ? Device::cpu : params_.front().second.device;
  for (const auto& [name, p] : params_) {
    MAMBA_CHECK(p.dtype == DType::f32 && p.is_contiguous() && p.device == dev,
                "AdamW: parameter '{}' must be a contiguous f32 tensor on {}, like the first one", name,
                device_name(dev));
    bytes += 2 * ((p.nbytes() + 63) / 64 * 64);
  }
  storage_ = Buffer(bytes, dev);
  zero_memory(storage_.data(), dev, bytes);
  char* at = storage_.as<char>();
  copies_.resize(params_.size());
  for (const auto& [name, p] : params_) {
    decay_.push_back(decays(name, p));
    for (std::vector<Tensor>* moments : {&m_, &v_}) {
      Tensor t = p;
      t.data = at;
      moments->push_back(t);
      at += (p.nbytes() + 63) / 64 * 64;
    }
  }
}

void AdamW::set_copy(const Tensor& param, Tensor copy) {
  for (size_t i = 0; i < params_.size(); ++i) {
    if (params_[i].second.data != param.data) continue;
    MAMBA_CHECK((copy.dtype == DType::bf16 || copy.dtype == DType::f16) && copy.numel() == param.numel() &&
                    copy.device == param.device && copy.is_contiguous(),
                "AdamW: the copy of '{}' must be a contiguous bf16/f16 tensor of shape {} on {}, got {} {} on {}",
                params_[i].first, params_[i].second.shape_str(), device_name(param.device), dtype_name(copy.dtype),
                copy.shape_str(), device_name(copy.device));
    copies_[i] = copy;
    return;
  }
  fail("AdamW: a copy was given for a tensor of shape {} that is none of the optimizer's parameters",
       param.shape_str());
}

void AdamW::step(const std::vector<Tensor>& grads, double lr, Context& ctx, const GradScale& scale) {
  MAMBA_CHECK(grads.size() == params_.size(), "AdamW: {} gradients for {} parameters", grads.size(), params_.size());
  std::vector<AdamWTensor> tensors(params_.size());
  for (size_t i = 0; i < params_.size(); ++i) {
    const Tensor& p = params_[i].second;
    MAMBA_CHECK(grads[i].numel() == p.numel() && grads[i].dtype == DType::f32,
                "AdamW: gradient {} for '{}' does not match the parameter's shape {}", grads[i].shape_str(),
                params_[i].first, p.shape_str());
    tensors[i] = AdamWTensor{p, grads[i], m_[i], v_[i], copies_[i], decay_[i]};
  }
  ++t_;
  AdamWStep s;
  s.lr = lr;
  s.beta1 = opt_.beta1;
  s.beta2 = opt_.beta2;
  s.eps = opt_.eps;
  s.weight_decay = opt_.weight_decay;
  s.bias_correction1 = 1.0 - std::pow(opt_.beta1, double(t_));
  s.bias_correction2 = 1.0 - std::pow(opt_.beta2, double(t_));
  s.grad_scale = scale;
  adamw_update_all(tensors, s, ctx);
}

std::map<std::string, Tensor> AdamW::state() const {
  std::map<std::string, Tensor> out;
  for (size_t i = 0; i < params_.size(); ++i) {
    out["exp_avg." + params_[i].first] = m_[i];
    out["exp_avg_sq." + params_[i].first] = v_[i];
  }
  return out;
}

void AdamW::load_state(const std::map<std::string, Tensor>& tensors, int64_t steps, const std::string& source) {
  MAMBA_CHECK(steps >= 0, "{}: optimizer step count {} is negative", source, steps);
  for (size_t i = 0; i < params_.size(); ++i) {
    for (const auto& [prefix, dst] : {std::pair{"exp_avg.", m_[i]}, std::pair{"exp_avg_sq.", v_[i]}}) {
      const std::string name = prefix + params_[i].first;
      const auto it = tensors.find(name);
      MAMBA_CHECK(it != tensors.end(), "{}: missing optimizer tensor '{}'", source, name);
      const Tensor& t = it->second;
      MAMBA_CHECK(t.dtype == DType::f32 && t.numel() == dst.numel() && t.shape_str() == dst.shape_str(),
                  "{}: optimizer tensor '{}' has shape {} {}, expected {} f32", source, name, t.shape_str(),
                  dtype_name(t.dtype), dst.shape_str());
      copy_memory(dst.data, dst.device, t.data, t.device, dst.nbytes());
    }
  }
  t_ = steps;
}

}  // namespace mambacpp
