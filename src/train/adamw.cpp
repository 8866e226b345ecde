// AdamW with the reference's weight-decay grouping, and global gradient-norm clipping (adamw.h).
#include "train/adamw.h"

#include <cmath>
#include <cstring>

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

double clip_grad_norm(const std::vector<Tensor>& grads, double max_norm) {
  double sum = 0;
  for (const Tensor& g : grads) {
    const float* p = g.f32();
    const int64_t n = g.numel();
    for (int64_t i = 0; i < n; ++i) sum += double(p[i]) * double(p[i]);
  }
  const double norm = std::sqrt(sum);
  if (!std::isfinite(norm) || max_norm <= 0 || norm <= max_norm) return norm;
  const float scale = float(max_norm / (norm + 1e-6));
  for (const Tensor& g : grads) {
    float* p = g.f32();
    const int64_t n = g.numel();
    for (int64_t i = 0; i < n; ++i) p[i] *= scale;
  }
  return norm;
}

AdamW::AdamW(std::vector<std::pair<std::string, Tensor>> params, const AdamWOptions& opt)
    : params_(std::move(params)), opt_(opt) {
  opt_.validate();
  size_t bytes = 0;
  for (const auto& [name, p] : params_) {
    MAMBA_CHECK(p.dtype == DType::f32 && p.is_contiguous() && p.device == Device::cpu,
                "AdamW: parameter '{}' must be a contiguous f32 tensor on the CPU", name);
    bytes += 2 * ((p.nbytes() + 63) / 64 * 64);
  }
  storage_ = Buffer(bytes);
  std::memset(storage_.data(), 0, bytes);
  char* at = storage_.as<char>();
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

void AdamW::step(const std::vector<Tensor>& grads, double lr) {
  MAMBA_CHECK(grads.size() == params_.size(), "AdamW: {} gradients for {} parameters", grads.size(), params_.size());
  ++t_;
  const double bc1 = 1.0 - std::pow(opt_.beta1, double(t_));
  const double bc2 = 1.0 - std::pow(opt_.beta2, double(t_));
  const float step_size = float(lr / bc1);
  const float sqrt_bc2 = float(std::sqrt(bc2));
  const float b1 = float(opt_.beta1), b2 = float(opt_.beta2), eps = float(opt_.eps);
  for (size_t i = 0; i < params_.size(); ++i) {
    const Tensor& p = params_[i].second;
    MAMBA_CHECK(grads[i].numel() == p.numel() && grads[i].dtype == DType::f32,
                "AdamW: gradient {} for '{}' does not match the parameter's shape {}", grads[i].shape_str(),
                params_[i].first, p.shape_str());
    const float keep = decay_[i] ? float(1.0 - lr * opt_.weight_decay) : 1.0f;
    float* w = p.f32();
    float* m = m_[i].f32();
    float* v = v_[i].f32();
    const float* g = grads[i].f32();
    const int64_t n = p.numel();
#pragma omp parallel for schedule(static) if (n > (1 << 16))
    for (int64_t j = 0; j < n; ++j) {
      w[j] *= keep;
      m[j] = b1 * m[j] + (1 - b1) * g[j];
      v[j] = b2 * v[j] + (1 - b2) * g[j] * g[j];
      w[j] -= step_size * m[j] / (std::sqrt(v[j]) / sqrt_bc2 + eps);
    }
  }
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
      std::memcpy(dst.data, t.data, dst.nbytes());
    }
  }
  t_ = steps;
}

}  // namespace mambacpp
