// AdamW (decoupled weight decay, as torch.optim.AdamW) over a model's named parameters, with the reference's
// grouping: weight decay on the weight matrices only — never on A_log, D, the Δ bias (dt_proj.bias), norms,
// biases or the embedding — and global gradient-norm clipping. Parameters and gradients are f32; the moments
// are f32 tensors owned by the optimizer, one pair per parameter, in the parameters' order.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "core/buffer.h"
#include "core/context.h"
#include "core/tensor.h"
#include "ops/ops_train.h"

namespace mambacpp {

struct AdamWOptions {
  double beta1 = 0.9;
  double beta2 = 0.95;
  double eps = 1e-8;
  double weight_decay = 0.1;
  // Throws Error naming the option when a value is out of range.
  void validate() const;
};

// Whether the reference decays this parameter: tensors of rank ≥ 2 except the embedding and the SSM parameters
// A_log and (time-invariant models) mixer.B, mixer.C, which S4D does not decay either.
bool decays(const std::string& name, const Tensor& param);

// The global L2 norm of the gradients once each is multiplied by `accum` in f32 (over all tensors, in double), and
// the factors that make them the clipped gradients, as torch.nn.utils.clip_grad_norm_ does: scale.accum =
// accum, then scale.clip = max_norm / (norm + 1e-6) when norm > max_norm, else 1 (also when the norm is not
// finite, or max_norm ≤ 0: no clipping). The gradients are not modified: AdamW::step applies the factors as it
// reads them. `all_grads`: every gradient in one flat f32 tensor (ParamGrads::all()), on any device.
struct ClippedGrads {
  double norm = 0;
  GradScale scale;
};
ClippedGrads clip_scale(Tensor all_grads, double max_norm, float accum, Context& ctx);

// The same, applied in place: scales `grads` so that their global norm is at most `max_norm`; returns the norm
// before clipping (a non-finite norm is returned without touching the gradients).
double clip_grad_norm(Tensor all_grads, double max_norm, Context& ctx);

class AdamW {
 public:
  // `params`: contiguous f32 tensors the optimizer updates in place (ModelWeights::named_parameters()), all on
  // one device (cpu or cuda); the moments live there too.
  AdamW(std::vector<std::pair<std::string, Tensor>> params, const AdamWOptions& opt);

  // Makes `copy` (bf16 or f16, of the parameter's numel, on its device) a rounded copy of the parameter whose
  // memory is `param`'s, written by every later step as it updates the parameter (the compute copy of a
  // mixed-precision matrix). Throws Error when `param` is not one of the optimizer's parameters.
  void set_copy(const Tensor& param, Tensor copy);

  // One update with learning rate `lr`; grads[i] belongs to params[i] and has its shape, and is read as
  // (g·scale.accum)·scale.clip (not modified). Per element, with t the step count after increment:
  // p ← p·(1 − lr·wd); m ← β1·m + (1 − β1)·g; v ← β2·v + (1 − β2)·g²; p ← p − (lr / (1 − β1ᵗ)) · m / (√v /
  // √(1 − β2ᵗ) + ε); then each copy from its parameter. All tensors in one adamw_update_all (one launch on cuda).
  void step(const std::vector<Tensor>& grads, double lr, Context& ctx, const GradScale& scale = {});
  int64_t steps() const { return t_; }

  // The moments as named tensors ("exp_avg.<name>", "exp_avg_sq.<name>"), views of this optimizer's memory (on
  // its device).
  std::map<std::string, Tensor> state() const;
  // Restores the moments and the step count saved from an optimizer over the same parameters; throws Error
  // naming `source` and the tensor when one is missing or of another shape or dtype.
  void load_state(const std::map<std::string, Tensor>& tensors, int64_t steps, const std::string& source);

 private:
  std::vector<std::pair<std::string, Tensor>> params_;
  std::vector<bool> decay_;
  std::vector<Tensor> m_, v_, copies_;
  Buffer storage_;
  AdamWOptions opt_;
  int64_t t_ = 0;
};

}  // namespace mambacpp
