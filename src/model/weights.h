// Model weights: every parameter of a Mamba-1 LM listed once, with its checkpoint name and expected shape,
// loaded from a TensorStore (checking every shape against the config) or initialised at random.
//
// Storage: the large matrices (embedding, in_proj, x_proj, dt_proj, out_proj, untied lm_head) are held in
// `matrix_dtype` (f32, bf16 or f16); the small vectors (norms, conv, biases, A, B, C, D) are always f32.
// A = -exp(A_log) is computed once at load time and held beside A_log.
//
// Selectivity (config.h): x_proj holds only the selective parts, rows [dt_low (r) | B (n) | C (n)] each present
// when that part is selective, and is absent when none is. A time-invariant Δ has no dt_proj.weight: Δ is
// softplus(dt_proj.bias) per channel. A time-invariant B or C is the parameter mixer.B / mixer.C (e, n).
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/buffer.h"
#include "core/tensor.h"
#include "model/config.h"

namespace mambacpp {

class TensorStore;
class Rng;

struct LayerWeights {
  Tensor norm;          // (d) f32
  Tensor in_proj;       // (2e, d)
  Tensor in_proj_bias;  // (2e) f32 or undefined
  Tensor conv_w;        // (e, k) f32 (checkpoint: (e, 1, k))
  Tensor conv_b;        // (e) f32 or undefined
  Tensor x_proj;        // (r + 2n, e), only its selective parts (see above); undefined when none is
  Tensor dt_proj;       // (e, r), undefined when Δ is not selective
  Tensor dt_bias;       // (e) f32
  Tensor A_log;         // (e, n) f32
  Tensor A;             // (e, n) f32, = -exp(A_log)
  Tensor B;             // (e, n) f32 when B is not selective; else undefined
  Tensor C;             // (e, n) f32 when C is not selective; else undefined
  Tensor D;             // (e) f32
  Tensor out_proj;      // (d, e)
  Tensor out_proj_bias; // (d) f32 or undefined
};

struct ModelWeights {
  MambaConfig config;
  DType matrix_dtype = DType::f32;
  Tensor embedding;  // (v, d)
  Tensor norm_f;     // (d) f32
  Tensor lm_head;    // (v, d): the embedding itself when tied
  std::vector<LayerWeights> layers;
  std::vector<Buffer> storage;  // owns every tensor above

  // Loads from a checkpoint folder's tensors (stored as f32, bf16 or f16; converted on copy). Accepts both
  // naming schemes (backbone.embeddings.* and backbone.embedding.*). lm_head.weight is used when the config
  // unties it (and then required); with tied embeddings a stored copy is ignored. The embedding's row count
  // is the config's vocab_size. Tensors the model does not use are ignored. Throws Error naming the checkpoint
  // file, tensor, expected and actual shape on any mismatch, and naming any missing tensor and the folder.
  static ModelWeights load(const TensorStore& store, const MambaConfig& cfg, DType matrix_dtype);
  // Random weights initialised as mamba_ssm does: embedding N(0, 0.02); linear layers U(±1/sqrt(fan_in)),
  // out_proj further scaled by 1/sqrt(n_layer); conv weight and bias U(±1/sqrt(k)); dt_proj U(±dt_rank^-0.5);
  // dt_bias = softplus⁻¹(dt), dt log-uniform in [0.001, 0.1] floored at 1e-4; A_log[c, s] = log(s + 1);
  // D and norms 1; linear biases 0. A time-invariant B is 1 and C ~ N(0, 1), as S4D's real-valued variant
  // initialises them. Deterministic for a seed.
  static ModelWeights random(const MambaConfig& cfg, DType matrix_dtype, uint64_t seed);
  // Every parameter once, by its Hugging Face checkpoint name and in the checkpoint's shape (conv1d.weight as
  // (e, 1, k)), viewing this object's storage (on its device): embedding, the layers in order, norm_f, and
  // lm_head.weight only when untied. A, derived from A_log, is not listed. Ready to pass to save_safetensors.
  std::vector<std::pair<std::string, Tensor>> named_parameters() const;
  // A copy on `device` (its own storage there), the matrices converted to `matrix_dtype` (rounded to nearest
  // even), the vectors f32; a tied head stays tied. Throws Error naming the size when device memory runs out.
  ModelWeights to_device(Device device, DType matrix_dtype) const;
  // Number of parameters (tied head counted once; A not counted beside A_log). Needs only `config`.
  int64_t parameter_count() const;
  // Bytes read per decoded token (all weights once, as held: matrices in matrix_dtype, vectors in f32).
  // Needs only `config` and `matrix_dtype`.
  int64_t weight_bytes() const;
};

}  // namespace mambacpp
