// The Mamba-1 language model's forward pass over a recurrent state: embedding → n × (RMSNorm → Mamba block,
// fp32 residual) → RMSNorm → head. One function serves a prompt of any length (processed in chunks of
// `chunk` tokens, carrying the conv and SSM states between chunks, so memory is bounded by the chunk, not by
// the prompt) and the single-token decoding step (l = 1).
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
  RecurrentState(const MambaConfig& cfg, int64_t batch);
  int64_t batch() const { return batch_; }
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

// Scratch memory for one forward call of up to `rows` = batch·chunk tokens; reused across calls.
class Workspace {
 public:
  void reserve(const MambaConfig& cfg, int64_t rows);
  int64_t rows() const { return rows_; }
  Buffer residual, hidden, xz, xc, xdbl, dt, y, mixer_out, last_hidden;

 private:
  int64_t rows_ = 0;
};

struct ForwardOptions {
  LogitsFor logits_for = LogitsFor::last_position;
  int64_t chunk = 256;  // tokens per sequence processed at once (bounds the workspace)
};

// Runs the tokens ids (b, l) (row-major, b = state.batch()) through the model, starting from `state` and
// leaving it after the last token. logits: (b, l, v) f32 for all_positions, (b, v) for last_position,
// undefined for none. Ids are range-checked (the error names the position and id).
void lm_forward(Tensor logits, RecurrentState& state, const ModelWeights& w, const int32_t* ids, int64_t l,
                const ForwardOptions& opt, Workspace& ws, Context& ctx);

}  // namespace mambacpp
