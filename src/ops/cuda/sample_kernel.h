// The token-sampling kernel: one draw per row of logits with the filters of infer/sampler.h, in its order
// (repetition penalty, temperature, top-k, top-p, min-p), from a uniform number the caller supplies — so that
// the GPU makes the CPU Sampler's choice when given the Sampler's own draw. The Tensor-level entry point is
// sample_rows_cuda (cuda_ops.h).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <string>

namespace mambacpp::cuda {

// ids[r] = the token drawn from logits row r (m, v) [row stride ld] f32:
//   x = logits, divided (x > 0) or multiplied (x ≤ 0) by `penalty` where seen[r, i] != 0;
//   temperature 0: the largest x (lowest id among equals); otherwise, with the ids ordered by x descending (ties
//   by id ascending) and prob ∝ exp(x / temperature): keep the first top_k (0: all), renormalise, keep the
//   shortest prefix whose mass reaches top_p, drop ids with prob < min_p · prob[first], and choose the first id
//   whose running mass exceeds uniforms[r] · (the kept mass).
// seen (m, v) [row stride v] may be nullptr (then penalty is ignored); the chosen id is marked in it.
// Probabilities and running sums are in double, as on the CPU.
struct SampleParams {
  int32_t* ids = nullptr;             // (m)
  const float* logits = nullptr;      // (m, v)
  int64_t ld = 0, m = 0, v = 0;
  unsigned char* seen = nullptr;      // (m, v) or nullptr
  const double* uniforms = nullptr;   // (m) in [0, 1); unused when temperature is 0
  float temperature = 0.0f;
  int64_t top_k = 0;
  float top_p = 1.0f, min_p = 0.0f, penalty = 1.0f;
};
bool sample_kernel_supports(const SampleParams& p, std::string* why);
void sample_kernel_launch(const SampleParams& p, cudaStream_t stream);

}  // namespace mambacpp::cuda
