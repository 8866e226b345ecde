// Model weights: every parameter of a Mamba-1 LM listed once, with its checkpoint name and expected shape,
// loaded from a TensorStore (checking every shape against the config) or initialised at random.
//
// Storage: the large matrices (embedding, in_proj, x_proj, dt_proj, out_proj, untied lm_head) are held in
// `matrix_dtype` (f32, bf16 or f16); the small vectors (norms, conv, biases, A, D) are always f32.
// A = -exp(A_log) is computed once at load time and held beside A_log.
#pragma once

#include <memory>
#include <string>
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
  Tensor x_proj;        // (r + 2n, e)
  Tensor dt_proj;       // (e, r)
  Tensor dt_bias;       // (e) f32
  Tensor A_log;         // (e, n) f32
  Tensor A;             // (e, n) f32, = -exp(A_log)
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

  // Loads from a checkpoint folder's tensors. Accepts both naming schemes (backbone.embeddings.* and
  // backbone.embedding.*) and an optional untied lm_head.weight. Throws Error naming the checkpoint file,
  // tensor, expected and actual shape on any mismatch, and naming any missing tensor.
  static ModelWeights load(const TensorStore& store, const MambaConfig& cfg, DType matrix_dtype);
  // Random weights with the reference initialisation's scales (for benchmarks and tests).
  static ModelWeights random(const MambaConfig& cfg, DType matrix_dtype, uint64_t seed);
  // Number of parameters (tied head counted once).
  int64_t parameter_count() const;
  // Bytes read per decoded token (all weights once).
  int64_t weight_bytes() const;
};

}  // namespace mambacpp
