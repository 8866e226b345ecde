// Token sampling from one row of logits: repetition penalty, temperature, top-k, top-p (nucleus), min-p
// (relative to the most likely token), then a draw from the seeded Rng. Temperature 0 is greedy (argmax, the
// lowest id winning ties), independent of the other settings.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "core/rng.h"

namespace mambacpp {

struct SamplingParams {
  float temperature = 0.8f;          // 0 = greedy
  int64_t top_k = 40;                // 0 = off
  float top_p = 0.95f;               // 1 = off
  float min_p = 0.05f;               // 0 = off
  float repetition_penalty = 1.0f;   // 1 = off; applied to every id in the history, as in the CTRL paper
  // Throws Error naming the option when a value is out of range.
  void validate() const;
};

class Sampler {
 public:
  Sampler(const SamplingParams& p, uint64_t seed);
  // Chooses the next token from logits (v) given the ids seen so far (prompt and generated).
  int32_t sample(const float* logits, int64_t v, std::span<const int32_t> history);

 private:
  SamplingParams p_;
  Rng rng_;
  std::vector<std::pair<float, int32_t>> cand_;  // (logit, id) scratch
};

// Index of the largest value (the lowest index among equals).
int32_t argmax(const float* x, int64_t n);

}  // namespace mambacpp
