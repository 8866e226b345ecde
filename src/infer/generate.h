// Generation: prefill the prompts (batched when they have one length, one by one otherwise), then decode
// one token per step for every unfinished sequence with the recurrent state, sampling each token.
//
// The model runs on the device its weights are on (ModelWeights::to_device). On cuda, decoding steps after
// the first are recorded once as a CUDA graph and replayed, the choice of the next ids included: every sampling
// setting runs on the GPU with the host Sampler's random draws (the same ids for the same seed), and only the
// chosen ids come back to the host. A step is one persistent kernel (FusedStep) for small batches of the
// selective model, else one launch per op (lm_step_device).
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "core/context.h"
#include "infer/sampler.h"
#include "model/weights.h"

namespace mambacpp {

struct GenerateOptions {
  int64_t max_new_tokens = 128;
  SamplingParams sampling;
  uint64_t seed = 0;
  int64_t eos_id = -1;   // stop a sequence when it produces this id (-1: never)
  int64_t chunk = 256;   // prefill chunk length (bounds memory for long prompts)
  bool cuda_graph = true;  // on cuda: replay decoding steps as a recorded graph (false: launch each op)
  // on cuda: decode with the one-launch fused step (model/lm_step_fused.h) where it applies (S6 model, one
  // matrix dtype, batch ≤ kFusedStepMaxBatch); false: always the op-by-op step lm_step_device
  bool fused_step = true;
  // on cuda with half matrices: the prefill's mixer activations in the matrices' dtype where lm.cpp's conditions
  // hold (ForwardOptions::half_activations); false: f32 activations in the prefill (decoding steps take the
  // default, which matters only for batches above kLinearFewRows)
  bool half_activations = true;
};

struct GenerateStats {
  int64_t prompt_tokens = 0;
  double prompt_seconds = 0;
  int64_t generated_tokens = 0;
  double generate_seconds = 0;
};

// Receives each new token as it is produced: (sequence index, id).
using TokenCallback = std::function<void(int64_t, int32_t)>;

// Returns the new ids of each sequence (the EOS id included when it stopped one).
std::vector<std::vector<int32_t>> generate(const ModelWeights& w, const std::vector<std::vector<int32_t>>& prompts,
                                           const GenerateOptions& opt, const TokenCallback& on_token,
                                           GenerateStats* stats, Context& ctx);

}  // namespace mambacpp
