// The decoding step with fused kernels (ops/cuda/decode_kernels.h): the same function as lm_step_device
// (lm.h) — embedding, every layer, final norm, head — in 4 launches per layer instead of 7, for small batches
// of the selective (S6) model on the GPU. lm_step_fused_supports says whether a model and batch qualify.
// Generation does not use it yet: measured on an H100 (docs/PERFORMANCE.md) it is slower than lm_step_device
// replayed as a graph (0.679 against 0.655 ms/token for 130M bf16, 2.94 against 2.41 for 1.4B).
#pragma once

#include <cstdint>
#include <string>

#include "core/context.h"
#include "core/tensor.h"
#include "model/lm.h"
#include "model/weights.h"

namespace mambacpp {

// True when the fused step handles the weights w (on cuda, matrices f32/bf16/f16 with contiguous rows, S6:
// Δ, B and C all selective, d_conv ≤ 8, d_state ≤ 256) at batch b (≤ 8); otherwise sets *why.
bool lm_step_fused_supports(const ModelWeights& w, int64_t b, std::string* why);

// logits (b, v) f32 on the device = one step of every sequence on the ids (b) in device memory, advancing the
// state; ws must hold b rows (Workspace::reserve). Throws Error when lm_step_fused_supports is false.
void lm_step_fused(Tensor logits, RecurrentState& state, const ModelWeights& w, const int32_t* ids, Workspace& ws,
                   Context& ctx);

}  // namespace mambacpp
