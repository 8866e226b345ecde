// Training the Mamba-1 LM: the loss of next-token prediction and its gradient with respect to every
// parameter, by explicit backward passes (no autograd). The forward pass keeps what the backward pass needs
// per layer (the layer's input rows, x_proj/in_proj outputs, ...) but never the (b, l, e, n) expansion of the
// scan, which the backward pass recomputes chunk by chunk.
//
// Devices: the weights, the gradients and the workspace share one device (cpu or cuda); ids and targets are
// host arrays (copied to the device once per group of sequences). On the CPU the weights hold f32 matrices; on
// cuda they may also hold bf16 or f16 matrices (mixed precision: the products run on the tensor cores with f32
// accumulation; the activations and gradients that feed only products are made in that dtype by the ops that
// produce them, exactly the values the products would have rounded; the other activations and gradients, the
// parameters' gradients and the vector parameters stay f32).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/buffer.h"
#include "core/context.h"
#include "core/tensor.h"
#include "model/weights.h"

namespace mambacpp {

// One gradient per parameter, in the order, names and shapes of ModelWeights::named_parameters(), f32, held in
// one block of memory on the device of the model's weights (in that order, without gaps).
struct ParamGrads {
  std::vector<std::string> names;
  std::vector<Tensor> grads;
  Buffer storage;

  explicit ParamGrads(const ModelWeights& w);  // zero-initialised
  // Every gradient as one flat tensor (the storage).
  Tensor all() const;
  void zero(Context& ctx);
  // Global L2 norm of all gradients (squares summed in double; the order is fixed by the sizes).
  double norm(Context& ctx) const;
  void scale(float s, Context& ctx);
};

// Per-call scratch memory for training, reused across calls (grown to the largest group seen). The forward pass
// keeps, per layer, the activations its backward needs, for the m rows of one group of sequences; the backward
// pass needs one layer's worth of gradient buffers. lm_loss sizes it; callers create it and pass it in.
class TrainWorkspace {
 public:
  // The workspace lives on `device`, which must be the device of the weights it trains.
  explicit TrainWorkspace(Device device = Device::cpu) : device_(device) {}
  // half: f32, or (on cuda) the matrices' bf16 / f16, in which hidden and y are then kept (see below).
  void reserve(const MambaConfig& cfg, int64_t rows, DType half = DType::f32);
  int64_t rows() const { return rows_; }
  Device device() const { return device_; }
  DType half_dtype() const { return half_; }

  // lm_loss runs the batch in groups of whole sequences of at most this many tokens (at least one sequence),
  // forward and backward per group, which bounds the activations kept here to about this many rows.
  int64_t rows_per_pass = 4096;

  // Kept by the forward pass (per layer i, then one more residual for the final norm):
  // With a half dtype, the activations that feed matrix products (hidden, y) and xc (x_proj's input and the
  // scan's u) are kept in it, rounded once where they are made, so that no product rounds its operand again:
  Buffer residual;  // (n_layer + 1, m, d) the residual stream entering norm i, after its add
  Buffer hidden;    // (n_layer + 1, m, d) the norm outputs (the last one feeds the head), f32 or half
  Buffer xz;        // (n_layer, m, 2e) in_proj outputs: x, z
  Buffer xc;        // (n_layer, m, e) SiLU(conv1d(x)), f32 or half
  Buffer xdbl;      // (n_layer, m, r + 2n) x_proj outputs: dt_low, B, C
  Buffer dt;        // (n_layer, m, e) dt_proj outputs (before the Δ bias)
  Buffer y;         // (n_layer, m, e) scan outputs, f32 or half
  Buffer mixer_out;  // (m, d) the current layer's output, forward scratch
  // The scan's state every 16 steps (ops.h, chunk_states), per layer, for the backward pass to start from instead
  // of running the recurrence forward again: kept when keep_scan_states, on cuda, at d_state ≤ 64 (where the
  // kernel uses them), and when the group's runs of tokens average at least 16 (packed documents may be
  // shorter). Per layer and 16 tokens one (e, n) f32 state: the size of an f32 (m, e) activation at n = 16.
  bool keep_scan_states = true;
  Buffer scan_states;
  int64_t scan_state_floats = 0;  // per layer in the current group; 0 when not kept
  // Backward scratch, one layer at a time:
  Buffer dresidual, dhidden, dy, dxz, dxc, dxdbl, ddt, dA;
  Buffer dresidual_half;  // (m, d) dresidual rounded by the norms' backward, for out_proj's (with a half dtype)
  Buffer dxz_half;        // (m, 2e) dxz rounded (the conv's dx written so, dz rounded), for in_proj's
  std::vector<int32_t> targets;  // (m) next-token ids, -1 at the last position of each sequence (host)
  Buffer ids;                    // (2, m) int32 on a device: the group's ids, then its targets

 private:
  Device device_ = Device::cpu;
  DType half_ = DType::f32;
  int64_t rows_ = 0;
};

// Mean cross-entropy (nats per predicted token) of predicting ids[bi, t+1] from ids[bi, 0..t], for
// t = 0 .. l-2, over b sequences of l ids (row-major), each from a zero state. When `grads` is non-null the
// gradient of that mean is ADDED to it (so accumulation over micro-batches is a sum; the caller scales).
// Ids are range-checked (on the host).
double lm_loss(ParamGrads* grads, const ModelWeights& w, const int32_t* ids, int64_t b, int64_t l,
               TrainWorkspace& ws, Context& ctx);

// lm_loss over packed sequences: doc_start (b, l), row-major like ids, flags (non-zero) each token that begins
// a new document. The conv window and the SSM state are reset to zero before such a token, in the forward and
// the backward pass, so no document sees another; and the first token of a document is not predicted from the
// previous document (the mean runs over the remaining targets; at least one is required). Position 0 always
// starts from a zero state. doc_start null is lm_loss.
double lm_loss_packed(ParamGrads* grads, const ModelWeights& w, const int32_t* ids, const uint8_t* doc_start,
                      int64_t b, int64_t l, TrainWorkspace& ws, Context& ctx);

// lm_loss with explicit targets (b, l), row-major like ids: position t of sequence bi is trained to predict
// targets[bi·l + t], and a negative target is not predicted (for tasks scored only at some positions). The
// mean runs over the non-negative targets (at least one is required); each sequence starts from a zero state.
// Ids and targets are range-checked.
double lm_loss_targets(ParamGrads* grads, const ModelWeights& w, const int32_t* ids, const int32_t* targets,
                       int64_t b, int64_t l, TrainWorkspace& ws, Context& ctx);

}  // namespace mambacpp
