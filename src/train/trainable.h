// A model being trained on one device: the f32 master weights that AdamW updates, the weights the forward and
// backward passes compute with, the gradients and the optimizer, kept consistent by one update per step.
//
// On the CPU the passes compute with the masters themselves (f32). On cuda the masters live on the GPU and the
// passes may compute with bf16 or f16 copies of the matrices (mixed precision: products on the tensor cores with
// f32 accumulation), whose vectors (norms, conv, biases, A_log, A, D) are the masters' own; the AdamW update
// writes the copies as it updates the masters (one pass over each parameter).
#pragma once

#include <memory>

#include "core/context.h"
#include "model/lm_train.h"
#include "model/weights.h"
#include "train/adamw.h"

namespace mambacpp {

class TrainableModel {
 public:
  // `host`: f32 weights on the CPU, moved in (they become the masters on the CPU, or are copied to the GPU).
  // compute_dtype: f32 anywhere; bf16 or f16 on cuda only (an Error naming --dtype otherwise).
  TrainableModel(ModelWeights host, Device device, DType compute_dtype, const AdamWOptions& adam, Context& ctx);

  Device device() const { return device_; }
  DType compute_dtype() const { return compute_ ? compute_->matrix_dtype : DType::f32; }
  const ModelWeights& compute() const { return compute_ ? *compute_ : master_; }
  const ModelWeights& master() const { return master_; }
  ParamGrads& grads() { return *grads_; }
  AdamW& optimizer() { return *adam_; }
  const AdamW& optimizer() const { return *adam_; }

  // The global norm of the gradients scaled by `accum` (1/grad_accum for the mean over micro-batches; 1 when
  // they already are the step's gradients), non-finite when a gradient is, and the factors that step() is to
  // apply so that the norm is at most max_norm (≤ 0: no clipping). The gradients are not modified.
  ClippedGrads clip_gradients(double max_norm, float accum, Context& ctx);
  // One AdamW update at `lr` from the gradients multiplied by `scale` (clip_gradients' factors), writing the
  // compute copy's matrices as it goes, then A = −exp(A_log).
  void step(double lr, const GradScale& scale, Context& ctx);
  // The master weights as f32 on the CPU (a copy on cuda; on the CPU the masters themselves are returned by
  // master()).
  ModelWeights host_copy() const;

 private:
  Device device_;
  ModelWeights master_;
  std::unique_ptr<ModelWeights> compute_;  // the low-precision copy, when there is one
  std::unique_ptr<ParamGrads> grads_;
  std::unique_ptr<AdamW> adam_;
};

// Sets every layer's A = −exp(A_log) after A_log has changed, on the weights' device.
void refresh_derived(ModelWeights& w, Context& ctx);

}  // namespace mambacpp
