// MambaConfig: the hyper-parameters of a Mamba-1 language model, read from either config.json dialect:
//  - Hugging Face transformers MambaConfig: hidden_size, state_size, num_hidden_layers, expand, conv_kernel,
//    time_step_rank ("auto" = ceil(hidden_size / 16)), use_bias, use_conv_bias, residual_in_fp32,
//    layer_norm_epsilon, tie_word_embeddings, vocab_size, intermediate_size, pad/bos/eos_token_id;
//  - the original mamba_ssm config: d_model, n_layer, vocab_size, ssm_cfg {d_state, d_conv, expand, dt_rank,
//    bias, conv_bias, layer ("Mamba1")}, rms_norm, residual_in_fp32, pad_vocab_size_multiple,
//    tie_embeddings.
// vocab_size is the embedding's row count, after padding to pad_vocab_size_multiple where the dialect asks.
// The dialect is told by the key present: hidden_size (transformers) or d_model (mamba_ssm). Models this code
// does not implement are refused by name: model_type other than "mamba" (e.g. "mamba2", "falcon_mamba"),
// ssm_cfg.layer other than "Mamba1", rms_norm false (LayerNorm), MLP (d_intermediate) or attention layers, and a
// hidden_act other than "silu". A JSON null counts as an absent field.
//
// Selectivity (the ablations of the Mamba paper, §4.6): which of Δ, B and C depend on the input. The S6 model
// (every checkpoint published) has all three; "lti" none (a time-invariant SSM, as S4D: Δ, B and C learned per
// channel); "dt", "b" and "c" one each. In JSON (both dialects read it; to_hf_json writes it only when not S6)
// it is an object {"selectivity": {"dt": bool, "B": bool, "C": bool}}; an absent key counts as true, so a
// config without it is the S6 model.
#pragma once

#include <cstdint>
#include <string>

namespace mambacpp {

struct MambaConfig {
  int64_t d_model = 0;     // d
  int64_t n_layer = 0;
  int64_t vocab_size = 0;  // v (embedding rows)
  int64_t d_state = 16;    // n
  int64_t d_conv = 4;      // k
  int64_t expand = 2;
  int64_t d_inner = 0;     // e (= expand · d unless given)
  int64_t dt_rank = 0;     // r
  bool use_bias = false;       // in_proj / out_proj bias
  bool use_conv_bias = true;
  bool residual_in_fp32 = true;
  bool tie_embeddings = true;
  float norm_eps = 1e-5f;
  int64_t eos_token_id = 0;
  int64_t bos_token_id = 0;
  int64_t pad_token_id = 0;
  bool selective_dt = true;  // Δ = softplus(dt_proj(x_proj(x)) + bias); else softplus(bias) per channel
  bool selective_B = true;   // B (b, l, n) from x_proj; else a parameter (e, n)
  bool selective_C = true;   // C (b, l, n) from x_proj; else a parameter (e, n)

  // x_proj's output rows: r if Δ is selective, n for a selective B, n for a selective C, in that order
  // (0: the model has no x_proj).
  int64_t x_proj_rows() const;
  // The variant's name: "s6" (all selective), "lti" (none), "dt", "b" or "c" (only that one); other
  // combinations are named by their selective parts joined with '+' (e.g. "dt+b").
  std::string ssm_variant() const;
  // Sets the three flags from a name ssm_variant() gives (or "dt+c" etc.); throws Error listing the names.
  void set_ssm_variant(const std::string& name);

  // Throws Error naming the file and field when a field is missing, of the wrong type or out of range.
  static MambaConfig from_json_file(const std::string& path);
  static MambaConfig from_json_text(const std::string& text, const std::string& source);
  // Fills the derived sizes left at 0: d_inner = expand·d_model, dt_rank = ceil(d_model / 16).
  void fill_derived();
  // Checks every size is positive and within this code's limits, norm_eps positive and token ids inside the
  // vocabulary; names `source` and the field. (d_inner may differ from expand·d_model when a config says so.)
  void validate(const std::string& source) const;
  // The transformers MambaConfig JSON for this config (what a saved checkpoint carries): every field
  // MambaForCausalLM.from_pretrained reads, keys sorted, indented by 2.
  std::string to_hf_json() const;
};

}  // namespace mambacpp
