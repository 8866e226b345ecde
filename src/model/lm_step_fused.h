// The fused decoding step: the same function as lm_step_device (lm.h) — embedding, every layer, final norm, head
// — as one persistent kernel launch (ops/cuda/decode_kernels.h) with grid-wide barriers between its phases,
// instead of 7 launches per layer. It serves small batches (b ≤ 8) of the selective (S6) model on the GPU with
// all matrices in one dtype. generate() (infer/generate.cpp) decodes with it wherever FusedStep::supports holds
// and the batch is at most kFusedStepMaxBatch, and with lm_step_device otherwise.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "core/buffer.h"
#include "core/context.h"
#include "core/tensor.h"
#include "model/lm.h"
#include "model/weights.h"

namespace mambacpp {

// The largest batch generate() runs through the fused step (the kernel's own limit, kDecodeMaxRows): measured on
// an H100 it is faster than lm_step_device at every batch from 1 to 8 (docs/PERFORMANCE.md); larger batches take
// the unfused step, whose products of more than 8 rows run on the tensor cores through cuBLASLt.
constexpr int64_t kFusedStepMaxBatch = 8;

// One decoding step bound to a model, a recurrent state (its batch b) and a workspace (holding b rows): the
// constructor uploads the per-layer pointer table and the grid barrier, so that run() only launches and can be
// recorded in a CUDA graph.
class FusedStep {
 public:
  // True when the fused step handles the weights w at batch b (on cuda; Δ, B and C all selective; every matrix
  // contiguous in the embedding's dtype; d_model and d_inner multiples of 8; b ≤ 8); otherwise sets *why.
  static bool supports(const ModelWeights& w, int64_t b, std::string* why);

  // Throws Error when supports() is false, or when ws holds fewer than b rows.
  FusedStep(const ModelWeights& w, RecurrentState& state, Workspace& ws, Context& ctx);
  ~FusedStep();
  FusedStep(const FusedStep&) = delete;
  FusedStep& operator=(const FusedStep&) = delete;

  // logits (b, v) f32 on the device = one step of every sequence on the ids (b) in device memory (not
  // range-checked: an id out of range gives NaN logits, as lm_step_device does), advancing the state. With
  // `greedy` (b int32 on the device, which may be `ids` itself) the launch also writes each row's greedy id there:
  // argmax_rows_cuda's choice (the lowest id among equal maxima, NaN never chosen over a number, 0 for a row of
  // NaN), without a launch of its own.
  void run(Tensor logits, const int32_t* ids, Context& ctx, int32_t* greedy = nullptr);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace mambacpp
