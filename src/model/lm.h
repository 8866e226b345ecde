// The Mamba-1 language model's forward pass over a recurrent state: embedding → n × (RMSNorm → Mamba block,
// fp32 residual) → RMSNorm → head. One function serves a prompt of any length (processed in chunks of
// `chunk` tokens, carrying the conv and SSM states between chunks, so memory is bounded by the chunk, not by
// the prompt) and the single-token decoding step (l = 1).
//
// Devices: the weights, the state, the workspace and the logits live on one device (cpu or cuda). On cuda the
// residual stream, the norms, the mixer's output and the state stay f32; the matrices are held in the weights'
// matrix_dtype, and with bf16/f16 matrices the mixer's activations of a chunk of more than kLinearFewRows rows
// are held in that dtype (ForwardOptions::half_activations; lm.cpp says which). The host ids are copied to the
// device chunk by chunk; lm_step_device() takes ids already on the device, so that a decoding step can be
// recorded as a CUDA graph (see infer/generate.cpp).
#pragma once

#include <cstdint>
#include <vector>

#include "core/buffer.h"
#include "core/context.h"
#include "core/tensor.h"
#include "model/weights.h"

namespace mambacpp {

// Per-layer recurrent state for `batch` sequences, f32: the last k-1 conv inputs (b, e, k-1) and the SSM
// state (b, e, n). Zero-initialised: the state before any token.
class RecurrentState {
 public:
  RecurrentState(const MambaConfig& cfg, int64_t batch, Device device = Device::cpu);
  int64_t batch() const { return batch_; }
  Device device() const { return conv_.device(); }
  Tensor conv(int64_t layer);  // (b, e, k-1)
  Tensor ssm(int64_t layer);   // (b, e, n)
  void reset();
  // Copies sequence `src_row` of `src` (a state of the same config) into row `dst_row` of this state.
  void copy_row_from(const RecurrentState& src, int64_t src_row, int64_t dst_row);

 private:
  MambaConfig cfg_;
  int64_t batch_;
  Buffer conv_, ssm_;
};

enum class LogitsFor { all_positions, last_position, none };

// Scratch memory, on one device, for one forward call of up to `rows` = batch·chunk tokens; reused across calls.
class Workspace {
 public:
  explicit Workspace(Device device = Device::cpu) : device_(device) {}
  void reserve(const MambaConfig& cfg, int64_t rows);
  int64_t rows() const { return rows_; }
  int64_t bytes() const;  // all of its buffers
  Device device() const { return device_; }
  // Each buffer is sized for f32 rows. hidden and y hold f32, or the half dtype of the product that reads them
  // (cuda, more rows than kLinearFewRows); xc_half (cuda only) is the conv's half copy of xc for x_proj. In the
  // half-activations form (lm.cpp) xz, xdbl and dt hold that half dtype too (in the first half of their bytes),
  // xc_half is the only xc, and xc is unused.
  Buffer residual, hidden, xz, xc, xc_half, xdbl, dt, y, mixer_out;
  Buffer ids;  // (rows) int32: the chunk's token ids, on the workspace's device
  Buffer zeros;  // (e) f32 zeros: the dt of a model whose Δ is not selective (see config.h)

 private:
  Device device_;
  int64_t rows_ = 0;
};

struct ForwardOptions {
  LogitsFor logits_for = LogitsFor::last_position;
  int64_t chunk = 256;  // tokens per sequence processed at once (bounds the workspace)
  // on cuda with half matrices: the mixer's activations in the matrices' dtype for chunks of more than
  // kLinearFewRows rows, where lm.cpp's conditions hold (the selective model, one half dtype for the four mixer
  // matrices, no in_proj bias); false: f32 activations, with only the products' inputs in the matrices' dtype
  bool half_activations = true;
};

// Runs the tokens ids (b, l) (row-major, b = state.batch()) through the model, starting from `state` and
// leaving it after the last token. logits: (b, l, v) f32 for all_positions, (b, v) for last_position,
// undefined for none. Ids are range-checked (the error names the position and id).
void lm_forward(Tensor logits, RecurrentState& state, const ModelWeights& w, const int32_t* ids, int64_t l,
                const ForwardOptions& opt, Workspace& ws, Context& ctx);

// One decoding step for every sequence: ids (b) int32 in the memory of the model's device (not range-checked
// on cuda, see embedding_forward), logits (b, v) f32 of the last position, with the default ForwardOptions (so
// half activations for b > kLinearFewRows where they apply). ws must hold b rows. Nothing in it allocates or
// waits for the host once ws and the CUDA scratch memory have been sized by an earlier step.
void lm_step_device(Tensor logits, RecurrentState& state, const ModelWeights& w, const int32_t* ids, Workspace& ws,
                    Context& ctx);

}  // namespace mambacpp
