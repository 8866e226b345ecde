// Reading, checking and writing Mamba-1 config.json files in both dialects (see config.h). Defaults follow the
// writers of each dialect: transformers' MambaConfig and mamba_ssm's MambaConfig / Mamba module.
#include "model/config.h"

#include <cmath>
#include <algorithm>
#include <cstdlib>
#include <limits>
#include <utility>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/mapped_file.h"

namespace mambacpp {

namespace {

using nlohmann::json;

constexpr int64_t kMaxVocab = std::numeric_limits<int32_t>::max();

// Typed access to the fields of one JSON object, with errors naming the source and the field's path.
class Fields {
 public:
  Fields(const json& obj, std::string source, std::string prefix = "")
      : obj_(obj), source_(std::move(source)), prefix_(std::move(prefix)) {}

  bool has(const char* key) const { return obj_.contains(key) && !obj_.at(key).is_null(); }
  const json& at(const char* key) const { return obj_.at(key); }
  std::string name(const char* key) const { return prefix_ + key; }
  const std::string& source() const { return source_; }

  // An integer field in [lo, hi]; `def` when absent, an error when absent and `required`.
  int64_t integer(const char* key, int64_t def, int64_t lo, int64_t hi, bool required = false) const {
    if (!has(key)) {
      MAMBA_CHECK(!required, "{}: required field '{}' is missing", source_, name(key));
      return def;
    }
    return integer_value(obj_.at(key), key, lo, hi);
  }
  bool boolean(const char* key, bool def) const {
    if (!has(key)) return def;
    const json& v = obj_.at(key);
    MAMBA_CHECK(v.is_boolean(), "{}: field '{}' must be true or false, found {} {}", source_, name(key),
                v.type_name(), v.dump());
    return v.get<bool>();
  }
  double number(const char* key, double def) const {
    if (!has(key)) return def;
    const json& v = obj_.at(key);
    MAMBA_CHECK(v.is_number(), "{}: field '{}' must be a number, found {} {}", source_, name(key), v.type_name(),
                v.dump());
    return v.get<double>();
  }
  std::string string(const char* key, const std::string& def) const {
    if (!has(key)) return def;
    const json& v = obj_.at(key);
    MAMBA_CHECK(v.is_string(), "{}: field '{}' must be a string, found {} {}", source_, name(key), v.type_name(),
                v.dump());
    return v.get<std::string>();
  }
  // dt_rank / time_step_rank: "auto" (0 here, filled in later) or a positive integer.
  int64_t rank(const char* key) const {
    if (has(key) && obj_.at(key).is_string()) {
      MAMBA_CHECK(obj_.at(key) == "auto", "{}: field '{}' must be \"auto\" or an integer, found {}", source_,
                  name(key), obj_.at(key).dump());
      return 0;
    }
    return integer(key, 0, 1, 1 << 20);
  }
  // A token id: an integer or, as some configs write it, a list whose first entry is used.
  int64_t token_id(const char* key) const {
    if (has(key) && obj_.at(key).is_array() && !obj_.at(key).empty())
      return integer_value(obj_.at(key).at(0), key, 0, kMaxVocab);
    return integer(key, 0, 0, kMaxVocab);
  }

 private:
  int64_t integer_value(const json& v, const char* key, int64_t lo, int64_t hi) const {
    MAMBA_CHECK(v.is_number_integer(), "{}: field '{}' must be an integer, found {} {}", source_, name(key),
                v.type_name(), v.dump());
    const bool in_range = v.is_number_unsigned() ? v.get<uint64_t>() <= uint64_t(hi) && v.get<int64_t>() >= lo
                                                 : v.get<int64_t>() >= lo && v.get<int64_t>() <= hi;
    MAMBA_CHECK(in_range, "{}: field '{}' = {} is out of range [{}, {}]", source_, name(key), v.dump(), lo, hi);
    return v.get<int64_t>();
  }

  const json& obj_;
  std::string source_;
  std::string prefix_;
};

void check_model_type(const Fields& f) {
  const std::string type = f.string("model_type", "mamba");
  MAMBA_CHECK(type != "mamba2", "{}: model_type 'mamba2': Mamba-2 checkpoints are not supported yet (only Mamba-1)",
              f.source());
  MAMBA_CHECK(type == "mamba", "{}: model_type '{}' is not supported (only 'mamba', Mamba-1)", f.source(), type);
  const std::string act = f.string("hidden_act", "silu");
  MAMBA_CHECK(act == "silu", "{}: hidden_act '{}' is not supported (only 'silu')", f.source(), act);
}

MambaConfig from_hf(const Fields& f) {
  MambaConfig c;
  c.d_model = f.integer("hidden_size", 0, 1, 1 << 20, true);
  c.n_layer = f.integer("num_hidden_layers", 0, 1, 1 << 16, true);
  c.vocab_size = f.integer("vocab_size", 0, 1, kMaxVocab, true);
  c.d_state = f.integer("state_size", 16, 1, 1 << 12);
  c.d_conv = f.integer("conv_kernel", 4, 1, 1 << 10);
  c.expand = f.integer("expand", 2, 1, 64);
  c.d_inner = f.integer("intermediate_size", 0, 1, 1 << 24);
  c.dt_rank = f.rank("time_step_rank");
  c.use_bias = f.boolean("use_bias", false);
  c.use_conv_bias = f.boolean("use_conv_bias", true);
  c.residual_in_fp32 = f.boolean("residual_in_fp32", true);
  c.tie_embeddings = f.boolean("tie_word_embeddings", true);
  c.norm_eps = float(f.number("layer_norm_epsilon", 1e-5));
  c.eos_token_id = f.token_id("eos_token_id");
  c.bos_token_id = f.token_id("bos_token_id");
  c.pad_token_id = f.token_id("pad_token_id");
  return c;
}

void check_mamba_ssm_features(const Fields& top, const Fields& ssm) {
  const std::string layer = ssm.string("layer", "Mamba1");
  MAMBA_CHECK(layer != "Mamba2", "{}: ssm_cfg.layer is 'Mamba2': Mamba-2 checkpoints are not supported yet (only "
              "Mamba-1)", top.source());
  MAMBA_CHECK(layer == "Mamba1", "{}: ssm_cfg.layer '{}' is not supported (only 'Mamba1')", top.source(), layer);
  MAMBA_CHECK(top.boolean("rms_norm", true),
              "{}: rms_norm is false: the LayerNorm variant of Mamba is not supported (only RMSNorm)", top.source());
  MAMBA_CHECK(top.integer("d_intermediate", 0, 0, std::numeric_limits<int64_t>::max()) == 0,
              "{}: d_intermediate > 0: Mamba blocks with MLP layers are not supported", top.source());
  if (top.has("attn_layer_idx")) {
    const json& a = top.at("attn_layer_idx");
    MAMBA_CHECK(a.is_array(), "{}: field 'attn_layer_idx' must be a list, found {}", top.source(), a.type_name());
    MAMBA_CHECK(a.empty(), "{}: attn_layer_idx is not empty: hybrid attention layers are not supported",
                top.source());
  }
}

MambaConfig from_mamba_ssm(const Fields& top, const json& j) {
  static const json kEmpty = json::object();
  const json& ssm_json = top.has("ssm_cfg") ? j.at("ssm_cfg") : kEmpty;
  MAMBA_CHECK(ssm_json.is_object(), "{}: field 'ssm_cfg' must be an object, found {}", top.source(),
              ssm_json.type_name());
  const Fields ssm(ssm_json, top.source(), "ssm_cfg.");
  check_mamba_ssm_features(top, ssm);
  MambaConfig c;
  c.d_model = top.integer("d_model", 0, 1, 1 << 20, true);
  c.n_layer = top.integer("n_layer", 0, 1, 1 << 16, true);
  const int64_t vocab = top.integer("vocab_size", 0, 1, kMaxVocab, true);
  const int64_t multiple = top.integer("pad_vocab_size_multiple", 8, 1, 1 << 20);
  c.vocab_size = (vocab + multiple - 1) / multiple * multiple;
  MAMBA_CHECK(c.vocab_size <= kMaxVocab, "{}: vocab_size {} padded to a multiple of {} is too large",
              top.source(), vocab, multiple);
  c.d_state = ssm.integer("d_state", 16, 1, 1 << 12);
  c.d_conv = ssm.integer("d_conv", 4, 1, 1 << 10);
  c.expand = ssm.integer("expand", 2, 1, 64);
  c.dt_rank = ssm.rank("dt_rank");
  c.use_bias = ssm.boolean("bias", false);
  c.use_conv_bias = ssm.boolean("conv_bias", true);
  c.residual_in_fp32 = top.boolean("residual_in_fp32", true);
  c.tie_embeddings = top.boolean("tie_embeddings", true);
  c.norm_eps = float(top.number("norm_epsilon", 1e-5));
  return c;
}

// The "selectivity" object (see config.h): keys dt, B, C, each true or false, absent meaning true.
void read_selectivity(const Fields& top, const json& j, MambaConfig& c) {
  if (!top.has("selectivity")) return;
  const json& sel = j.at("selectivity");
  MAMBA_CHECK(sel.is_object(), "{}: field 'selectivity' must be an object with keys dt, B, C, found {}",
              top.source(), sel.type_name());
  for (const auto& item : sel.items())
    MAMBA_CHECK(item.key() == "dt" || item.key() == "B" || item.key() == "C",
                "{}: field 'selectivity.{}' is not known (the keys are dt, B and C)", top.source(), item.key());
  const Fields f(sel, top.source(), "selectivity.");
  c.selective_dt = f.boolean("dt", true);
  c.selective_B = f.boolean("B", true);
  c.selective_C = f.boolean("C", true);
}

void check_range(const std::string& source, const char* field, int64_t v, int64_t lo, int64_t hi) {
  MAMBA_CHECK(v >= lo && v <= hi, "{}: {} = {} is out of range [{}, {}]", source, field, v, lo, hi);
}

}  // namespace

MambaConfig MambaConfig::from_json_text(const std::string& text, const std::string& source) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::parse_error& e) {
    fail("{}: malformed JSON (at byte {}): {}", source, e.byte, e.what());
  }
  MAMBA_CHECK(j.is_object(), "{}: config must be a JSON object, found {}", source, j.type_name());
  const Fields f(j, source);
  check_model_type(f);
  MambaConfig c;
  if (f.has("hidden_size"))
    c = from_hf(f);
  else if (f.has("d_model"))
    c = from_mamba_ssm(f, j);
  else
    fail("{}: neither 'hidden_size' (transformers) nor 'd_model' (mamba_ssm) is present: not a Mamba config",
         source);
  read_selectivity(f, j, c);
  c.fill_derived();
  c.validate(source);
  return c;
}

MambaConfig MambaConfig::from_json_file(const std::string& path) {
  const MappedFile file(path);
  return from_json_text(std::string(reinterpret_cast<const char*>(file.data()), file.size()), path);
}

void MambaConfig::fill_derived() {
  if (d_inner == 0 && (__builtin_mul_overflow(expand, d_model, &d_inner) || d_inner < 0)) d_inner = 0;
  if (dt_rank == 0 && d_model > 0) dt_rank = (d_model + 15) / 16;
}

void MambaConfig::validate(const std::string& source) const {
  check_range(source, "d_model", d_model, 1, 1 << 20);
  check_range(source, "n_layer", n_layer, 1, 1 << 16);
  check_range(source, "vocab_size", vocab_size, 1, kMaxVocab);
  check_range(source, "d_state", d_state, 1, 1 << 12);
  check_range(source, "d_conv", d_conv, 1, 1 << 10);
  check_range(source, "expand", expand, 1, 64);
  check_range(source, "d_inner", d_inner, 1, 1 << 24);
  check_range(source, "dt_rank", dt_rank, 1, 1 << 20);
  MAMBA_CHECK(std::isfinite(norm_eps) && norm_eps > 0, "{}: norm_eps = {} must be a positive number", source,
              norm_eps);
  check_range(source, "eos_token_id", eos_token_id, 0, vocab_size - 1);
  check_range(source, "bos_token_id", bos_token_id, 0, vocab_size - 1);
  check_range(source, "pad_token_id", pad_token_id, 0, vocab_size - 1);
}

int64_t MambaConfig::x_proj_rows() const {
  return (selective_dt ? dt_rank : 0) + (selective_B ? d_state : 0) + (selective_C ? d_state : 0);
}

std::string MambaConfig::ssm_variant() const {
  if (selective_dt && selective_B && selective_C) return "s6";
  if (!selective_dt && !selective_B && !selective_C) return "lti";
  std::string name;
  for (const auto& [on, part] :
       {std::pair{selective_dt, "dt"}, std::pair{selective_B, "b"}, std::pair{selective_C, "c"}})
    if (on) {
      if (!name.empty()) name += '+';
      name += part;
    }
  return name;
}

void MambaConfig::set_ssm_variant(const std::string& name) {
  if (name == "s6" || name == "lti") {
    selective_dt = selective_B = selective_C = name == "s6";
    return;
  }
  bool dt = false, B = false, C = false;
  size_t at = 0;
  while (at <= name.size()) {
    const size_t plus = std::min(name.find('+', at), name.size());
    const std::string part = name.substr(at, plus - at);
    bool* flag = part == "dt" ? &dt : part == "b" ? &B : part == "c" ? &C : nullptr;
    MAMBA_CHECK(flag != nullptr && !*flag,
                "unknown SSM variant '{}': the names are s6 (Δ, B, C selective), lti (none), dt, b, c (only that "
                "one), or selective parts joined with '+' (e.g. dt+b)",
                name);
    *flag = true;
    at = plus + 1;
  }
  selective_dt = dt, selective_B = B, selective_C = C;
}

std::string MambaConfig::to_hf_json() const {
  // The shortest decimal that reads back as the same float (1e-05, not 9.99999974737875e-06).
  const double eps = std::strtod(fmt::format("{}", norm_eps).c_str(), nullptr);
  json j = {
      {"architectures", json::array({"MambaForCausalLM"})},
      {"model_type", "mamba"},
      {"bos_token_id", bos_token_id},
      {"eos_token_id", eos_token_id},
      {"pad_token_id", pad_token_id},
      {"conv_kernel", d_conv},
      {"expand", expand},
      {"hidden_act", "silu"},
      {"hidden_size", d_model},
      {"initializer_range", 0.1},
      {"intermediate_size", d_inner},
      {"layer_norm_epsilon", eps},
      {"num_hidden_layers", n_layer},
      {"rescale_prenorm_residual", false},
      {"residual_in_fp32", residual_in_fp32},
      {"state_size", d_state},
      {"tie_word_embeddings", tie_embeddings},
      {"time_step_floor", 1e-4},
      {"time_step_init_scheme", "random"},
      {"time_step_max", 0.1},
      {"time_step_min", 0.001},
      {"time_step_rank", dt_rank},
      {"time_step_scale", 1.0},
      {"use_bias", use_bias},
      {"use_cache", true},
      {"use_conv_bias", use_conv_bias},
      {"use_mambapy", false},
      {"vocab_size", vocab_size},
  };
  if (!(selective_dt && selective_B && selective_C))
    j["selectivity"] = {{"dt", selective_dt}, {"B", selective_B}, {"C", selective_C}};
  return j.dump(2) + "\n";
}

}  // namespace mambacpp
