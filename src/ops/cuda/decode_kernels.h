// The persistent decoding-step kernel: one launch runs a whole decoding step (one token per sequence, b ≤
// kDecodeMaxRows rows) — embedding, every layer, final norm and head — with grid-wide barriers between the
// phases that need them, on raw device pointers; src/model/lm_step_fused.cpp prepares it. Activations, residual
// stream and recurrent state are f32; every matrix (embedding and head included) has one dtype, f32, bf16 or
// f16, read as stored; f32 accumulation. Per layer, with a barrier after each phase:
//   A  xz (b, 2e) = rmsnorm(residual) · in_projᵀ [+ bias]; the block that makes x feature c also runs the conv
//      step of channel c: xc = silu(conv(state, x)), state shifted        (layer 0 reads the embedding rows)
//   B  partial x_proj products over slices of 256 or 512 input channels: part (s, b, r + 2n)
//   C  xdbl = Σ_s part (every block, fixed order); Δ = softplus(dt_proj · xdbl[:r] + dt_bias); one scan step of
//      the (b, e, n) state; y = (C·h + D·u) · silu(z)
//   D  residual (b, d) += y · out_projᵀ [+ bias]
// then F: logits (b, v) = rmsnorm_f(residual) · lm_headᵀ and, when asked, each row's greedy id: every block
// writes the best (logit, id) among the columns it computed, one more barrier, and block 0 picks among them. The grid is one block of 512 threads per SM, launched
// cooperatively (all blocks resident); the barrier counts arrivals in one ever-growing word of device memory,
// which needs no reset between barriers or launches, so one launch can be recorded in a CUDA graph and replayed.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <string>

#include "core/dtype.h"

namespace mambacpp::cuda {

constexpr int64_t kDecodeMaxRows = 8;
constexpr int64_t kDecodeMaxD = 4096;  // d_model
constexpr int kDecodeMaxWidth = 4;     // conv width k
constexpr int64_t kDecodeSlice = 256;  // input channels per partial x_proj product and piece (8 per lane)
constexpr int kDecodeMaxXPieces = 2;   // pieces per lane in a slice of x_proj's product

// One block's greedy candidate for one row: the largest logit among the columns it computed, and its id.
struct GreedyKey {
  float value;
  int32_t id;
};

// One layer's parameters and recurrent state (device pointers; matrices in DecodeStepParams::w_dtype).
struct DecodeLayer {
  const float* norm = nullptr;       // (d)
  const void* in_proj = nullptr;     // (2e, d)
  const float* in_bias = nullptr;    // (2e) or nullptr
  const float* conv_w = nullptr;     // (e, k)
  const float* conv_b = nullptr;     // (e) or nullptr
  float* conv_state = nullptr;       // (b, e, k-1)
  const void* x_proj = nullptr;      // (r + 2n, e)
  const void* dt_proj = nullptr;     // (e, r)
  const float* dt_bias = nullptr;    // (e)
  const float* A = nullptr;          // (e, n)
  const float* D = nullptr;          // (e)
  float* ssm_state = nullptr;        // (b, e, n)
  const void* out_proj = nullptr;    // (d, e)
  const float* out_bias = nullptr;   // (d) or nullptr
};

struct DecodeStepParams {
  const DecodeLayer* layers = nullptr;  // (n_layer), in device memory
  int64_t n_layer = 0, b = 0, d = 0, e = 0, n = 0, r = 0, k = 0, v = 0;
  float eps = 0;
  DType w_dtype = DType::bf16;
  const void* embedding = nullptr;  // (v, d)
  const float* norm_f = nullptr;    // (d)
  const void* lm_head = nullptr;    // (v, d)
  const int32_t* ids = nullptr;     // (b)
  float* logits = nullptr;          // (b, v)
  // scratch, f32
  float* residual = nullptr;  // (b, d)
  float* xz = nullptr;        // (b, 2e)
  float* xc = nullptr;        // (b, e)
  float* part = nullptr;      // (slices, b, r + 2n), slices = ceil(e / kDecodeSlice)
  float* y = nullptr;         // (b, e)
  // greedy (b) or nullptr: each row's id of the largest logit, the lowest among equal ones, NaN never chosen over a
  // number, 0 where every logit is NaN (argmax_kernel's choice); may be `ids` itself (read before it is written)
  int32_t* greedy = nullptr;
  GreedyKey* greedy_part = nullptr;  // (kDecodeMaxRows, blocks) scratch, when greedy is set
  // the barrier's arrival count: zero before the first launch, and shared only by launches of one grid size
  unsigned long long* barrier = nullptr;
  int xpieces = 1;  // x_proj's slices of xpieces · kDecodeSlice channels (set by decode_step_launch)
};

// Whether the sizes are handled (b ≤ kDecodeMaxRows, d and e multiples of 8, 1 ≤ k ≤ kDecodeMaxWidth, shared
// memory); else *why.
bool decode_step_supports(const DecodeStepParams& p, std::string* why);
// Bytes of the part buffer the step needs.
int64_t decode_step_part_bytes(const DecodeStepParams& p);
// Bytes of the greedy_part buffer for a grid of `blocks` blocks.
int64_t decode_step_greedy_bytes(int blocks);
// Sets the kernel's shared-memory limit and returns the grid size (blocks) for p; call before any capture.
int decode_step_prepare(const DecodeStepParams& p);
// Queues one step (one cooperative launch of `blocks` blocks, as returned by decode_step_prepare).
void decode_step_launch(const DecodeStepParams& p, int blocks, cudaStream_t stream);

}  // namespace mambacpp::cuda
