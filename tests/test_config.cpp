// Tests of config.json reading in both dialects (transformers and mamba_ssm), the derived sizes, every refused
// or malformed config (each Error naming the file and field), and the transformers JSON we write.
#include <functional>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "model/config.h"
#include "support/test_util.h"

namespace mambacpp {
namespace {

using test::expect_error;

using nlohmann::json;

// The config.json of state-spaces/mamba-130m-hf.
const char* kHf130m = R"({
  "architectures": ["MambaForCausalLM"], "bos_token_id": 0, "conv_kernel": 4, "eos_token_id": 0, "expand": 2,
  "fused_add_norm": true, "hidden_act": "silu", "hidden_size": 768, "initializer_range": 0.1,
  "intermediate_size": 1536, "layer_norm_epsilon": 1e-05, "model_type": "mamba", "n_layer": 24,
  "num_hidden_layers": 24, "pad_token_id": 0, "pad_vocab_size_multiple": 8, "rescale_prenorm_residual": false,
  "residual_in_fp32": true, "rms_norm": true, "state_size": 16, "time_step_floor": 0.0001,
  "time_step_init_scheme": "random", "time_step_max": 0.1, "time_step_min": 0.001, "time_step_rank": 48,
  "time_step_scale": 1.0, "torch_dtype": "float32", "transformers_version": "4.39.0.dev0", "use_bias": false,
  "use_cache": true, "use_conv_bias": true, "vocab_size": 50280})";

// The config.json of state-spaces/mamba-130m (mamba_ssm).
const char* kSsm130m = R"({"d_model": 768, "n_layer": 24, "vocab_size": 50277, "ssm_cfg": {}, "rms_norm": true,
  "residual_in_fp32": true, "fused_add_norm": true, "pad_vocab_size_multiple": 8})";

MambaConfig parse(const json& j) { return MambaConfig::from_json_text(j.dump(), "cfg.json"); }

TEST(Config, TransformersDialect) {
  const MambaConfig c = MambaConfig::from_json_text(kHf130m, "config.json");
  EXPECT_EQ(c.d_model, 768);
  EXPECT_EQ(c.n_layer, 24);
  EXPECT_EQ(c.vocab_size, 50280);
  EXPECT_EQ(c.d_state, 16);
  EXPECT_EQ(c.d_conv, 4);
  EXPECT_EQ(c.expand, 2);
  EXPECT_EQ(c.d_inner, 1536);
  EXPECT_EQ(c.dt_rank, 48);
  EXPECT_FALSE(c.use_bias);
  EXPECT_TRUE(c.use_conv_bias);
  EXPECT_TRUE(c.residual_in_fp32);
  EXPECT_TRUE(c.tie_embeddings);
  EXPECT_FLOAT_EQ(c.norm_eps, 1e-5f);
  EXPECT_EQ(c.eos_token_id, 0);
}

TEST(Config, TransformersDefaultsAndAutoRank) {
  const MambaConfig c = parse({{"hidden_size", 100}, {"num_hidden_layers", 3}, {"vocab_size", 77},
                               {"time_step_rank", "auto"}, {"pad_token_id", nullptr}});
  EXPECT_EQ(c.d_state, 16);
  EXPECT_EQ(c.d_conv, 4);
  EXPECT_EQ(c.expand, 2);
  EXPECT_EQ(c.d_inner, 200);
  EXPECT_EQ(c.dt_rank, 7);  // ceil(100 / 16)
  EXPECT_EQ(c.vocab_size, 77);  // never padded in this dialect
  EXPECT_FALSE(c.use_bias);
  EXPECT_TRUE(c.use_conv_bias);
  EXPECT_TRUE(c.residual_in_fp32);
  EXPECT_TRUE(c.tie_embeddings);
  EXPECT_FLOAT_EQ(c.norm_eps, 1e-5f);
  const MambaConfig d = parse({{"hidden_size", 64}, {"num_hidden_layers", 2}, {"vocab_size", 10}, {"expand", 3},
                               {"intermediate_size", 150}, {"state_size", 5}, {"conv_kernel", 2},
                               {"use_bias", true}, {"use_conv_bias", false}, {"residual_in_fp32", false},
                               {"tie_word_embeddings", false}, {"layer_norm_epsilon", 1e-6},
                               {"eos_token_id", {3, 4}}});
  EXPECT_EQ(d.d_inner, 150);  // an explicit intermediate_size wins, as in transformers
  EXPECT_EQ(d.dt_rank, 4);
  EXPECT_EQ(d.d_state, 5);
  EXPECT_EQ(d.d_conv, 2);
  EXPECT_TRUE(d.use_bias);
  EXPECT_FALSE(d.use_conv_bias);
  EXPECT_FALSE(d.residual_in_fp32);
  EXPECT_FALSE(d.tie_embeddings);
  EXPECT_FLOAT_EQ(d.norm_eps, 1e-6f);
  EXPECT_EQ(d.eos_token_id, 3);
}

TEST(Config, MambaSsmDialect) {
  const MambaConfig c = MambaConfig::from_json_text(kSsm130m, "config.json");
  EXPECT_EQ(c.d_model, 768);
  EXPECT_EQ(c.n_layer, 24);
  EXPECT_EQ(c.vocab_size, 50280);  // 50277 padded to a multiple of 8
  EXPECT_EQ(c.d_inner, 1536);
  EXPECT_EQ(c.dt_rank, 48);
  EXPECT_EQ(c.d_state, 16);
  EXPECT_TRUE(c.tie_embeddings);
  const MambaConfig d = parse({{"d_model", 40},
                               {"n_layer", 2},
                               {"vocab_size", 101},
                               {"pad_vocab_size_multiple", 16},
                               {"tie_embeddings", false},
                               {"residual_in_fp32", false},
                               {"ssm_cfg",
                                {{"d_state", 8}, {"d_conv", 3}, {"expand", 4}, {"dt_rank", 5}, {"bias", true},
                                 {"conv_bias", false}, {"layer", "Mamba1"}, {"dt_min", 0.01}}}});
  EXPECT_EQ(d.vocab_size, 112);
  EXPECT_EQ(d.d_state, 8);
  EXPECT_EQ(d.d_conv, 3);
  EXPECT_EQ(d.expand, 4);
  EXPECT_EQ(d.d_inner, 160);
  EXPECT_EQ(d.dt_rank, 5);
  EXPECT_TRUE(d.use_bias);
  EXPECT_FALSE(d.use_conv_bias);
  EXPECT_FALSE(d.tie_embeddings);
  EXPECT_FALSE(d.residual_in_fp32);
  const MambaConfig e = parse({{"d_model", 40}, {"n_layer", 1}, {"vocab_size", 100}, {"pad_vocab_size_multiple", 1}});
  EXPECT_EQ(e.vocab_size, 100);
  EXPECT_EQ(e.dt_rank, 3);
}

TEST(Config, FromFileAndMissingFile) {
  test::TempDir dir;
  const std::string path = dir.file("config.json");
  test::write_file(path, kHf130m);
  EXPECT_EQ(MambaConfig::from_json_file(path).dt_rank, 48);
  const std::string missing = dir.file("absent.json");
  expect_error([&] { MambaConfig::from_json_file(missing); }, {missing, "No such file"});
}

TEST(Config, MalformedJsonNamesFileAndPosition) {
  test::TempDir dir;
  const std::string path = dir.file("config.json");
  test::write_file(path, R"({"hidden_size": 768, "num_hidden_layers": })");
  expect_error([&] { MambaConfig::from_json_file(path); }, {path, "malformed JSON", "byte 43"});
  expect_error([&] { MambaConfig::from_json_text("[1]", "c.json"); }, {"c.json", "object"});
  expect_error([&] { MambaConfig::from_json_text(R"({"vocab_size": 5})", "c.json"); },
               {"c.json", "hidden_size", "d_model"});
}

struct BadField {
  json config;
  std::vector<std::string> parts;
};

TEST(Config, WrongTypesAndRangesNameTheField) {
  const json hf = {{"hidden_size", 64}, {"num_hidden_layers", 2}, {"vocab_size", 100}};
  const json ssm = {{"d_model", 64}, {"n_layer", 2}, {"vocab_size", 100}};
  auto with = [](json j, const std::string& key, json v) {
    j[key] = std::move(v);
    return j;
  };
  const std::vector<BadField> cases = {
      {with(hf, "hidden_size", "768"), {"'hidden_size'", "integer"}},
      {with(hf, "hidden_size", -5), {"'hidden_size'", "-5", "out of range"}},
      {with(hf, "hidden_size", 64.5), {"'hidden_size'", "integer"}},
      {with(hf, "num_hidden_layers", 0), {"'num_hidden_layers'", "out of range"}},
      {with(hf, "state_size", -1), {"'state_size'"}},
      {with(hf, "vocab_size", 1e12), {"'vocab_size'"}},
      {with(hf, "vocab_size", 99999999999), {"'vocab_size'", "out of range"}},
      {with(hf, "use_bias", 1), {"'use_bias'", "true or false"}},
      {with(hf, "tie_word_embeddings", "yes"), {"'tie_word_embeddings'"}},
      {with(hf, "time_step_rank", "big"), {"'time_step_rank'", "auto"}},
      {with(hf, "time_step_rank", 0), {"'time_step_rank'"}},
      {with(hf, "layer_norm_epsilon", "small"), {"'layer_norm_epsilon'", "number"}},
      {with(hf, "layer_norm_epsilon", -1.0), {"norm_eps"}},
      {with(hf, "eos_token_id", 100), {"eos_token_id", "out of range"}},
      {with(hf, "hidden_act", "gelu"), {"hidden_act", "gelu"}},
      {with(hf, "model_type", "mamba2"), {"Mamba-2"}},
      {with(hf, "model_type", "falcon_mamba"), {"model_type", "falcon_mamba"}},
      {json::object({{"num_hidden_layers", 2}, {"hidden_size", 8}}), {"'vocab_size'", "missing"}},
      {with(ssm, "ssm_cfg", {{"layer", "Mamba2"}}), {"Mamba-2"}},
      {with(ssm, "ssm_cfg", {{"layer", "Hyena"}}), {"ssm_cfg.layer", "Hyena"}},
      {with(ssm, "ssm_cfg", 3), {"'ssm_cfg'", "object"}},
      {with(ssm, "ssm_cfg", {{"d_state", "16"}}), {"'ssm_cfg.d_state'", "integer"}},
      {with(ssm, "ssm_cfg", {{"dt_rank", -2}}), {"'ssm_cfg.dt_rank'"}},
      {with(ssm, "ssm_cfg", {{"bias", "no"}}), {"'ssm_cfg.bias'"}},
      {with(ssm, "rms_norm", false), {"rms_norm", "LayerNorm"}},
      {with(ssm, "d_intermediate", 128), {"d_intermediate", "MLP"}},
      {with(ssm, "attn_layer_idx", {1}), {"attn_layer_idx"}},
      {with(ssm, "n_layer", -1), {"'n_layer'"}},
      {with(ssm, "pad_vocab_size_multiple", 0), {"'pad_vocab_size_multiple'"}},
      {with(ssm, "d_model", nullptr), {"hidden_size", "d_model"}},
  };
  for (const BadField& c : cases) {
    SCOPED_TRACE(c.config.dump());
    std::vector<std::string> parts = c.parts;
    parts.push_back("bad.json");
    expect_error([&] { MambaConfig::from_json_text(c.config.dump(), "bad.json"); }, parts);
  }
}

TEST(Config, FillDerivedAndValidate) {
  MambaConfig c;
  c.d_model = 33;
  c.n_layer = 1;
  c.vocab_size = 10;
  c.fill_derived();
  EXPECT_EQ(c.d_inner, 66);
  EXPECT_EQ(c.dt_rank, 3);
  c.validate("built");
  c.d_state = 0;
  expect_error([&] { c.validate("built"); }, {"built", "d_state"});
  MambaConfig empty;
  expect_error([&] { empty.validate("empty"); }, {"empty", "d_model"});
}

TEST(Config, TransformersJsonRoundTrips) {
  MambaConfig c = MambaConfig::from_json_text(kSsm130m, "config.json");
  c.use_bias = true;
  c.tie_embeddings = false;
  c.norm_eps = 1e-6f;
  const std::string text = c.to_hf_json();
  const json j = json::parse(text);
  EXPECT_EQ(j["model_type"], "mamba");
  EXPECT_EQ(j["architectures"], json::array({"MambaForCausalLM"}));
  EXPECT_EQ(j["hidden_size"], 768);
  EXPECT_EQ(j["intermediate_size"], 1536);
  EXPECT_EQ(j["time_step_rank"], 48);
  EXPECT_EQ(j["vocab_size"], 50280);
  EXPECT_EQ(j["tie_word_embeddings"], false);
  EXPECT_EQ(j["layer_norm_epsilon"].get<double>(), 1e-6);
  for (const char* key : {"time_step_min", "time_step_max", "time_step_floor", "time_step_scale",
                          "time_step_init_scheme", "initializer_range", "rescale_prenorm_residual", "hidden_act",
                          "use_cache", "state_size", "conv_kernel", "expand", "num_hidden_layers"})
    EXPECT_TRUE(j.contains(key)) << key;
  const MambaConfig back = MambaConfig::from_json_text(text, "round trip");
  EXPECT_EQ(back.d_model, c.d_model);
  EXPECT_EQ(back.n_layer, c.n_layer);
  EXPECT_EQ(back.vocab_size, c.vocab_size);
  EXPECT_EQ(back.d_state, c.d_state);
  EXPECT_EQ(back.d_conv, c.d_conv);
  EXPECT_EQ(back.d_inner, c.d_inner);
  EXPECT_EQ(back.dt_rank, c.dt_rank);
  EXPECT_EQ(back.use_bias, c.use_bias);
  EXPECT_EQ(back.use_conv_bias, c.use_conv_bias);
  EXPECT_EQ(back.tie_embeddings, c.tie_embeddings);
  EXPECT_EQ(back.residual_in_fp32, c.residual_in_fp32);
  EXPECT_EQ(back.norm_eps, c.norm_eps);
}

// The selection ablations: names, the JSON "selectivity" object (written only when not S6, read in both
// dialects), and a config without it being the S6 model.
TEST(Config, SelectivityVariantsRoundTrip) {
  MambaConfig c = MambaConfig::from_json_text(kSsm130m, "config.json");
  EXPECT_TRUE(c.selective_dt && c.selective_B && c.selective_C);
  EXPECT_EQ(c.ssm_variant(), "s6");
  EXPECT_EQ(c.x_proj_rows(), 48 + 2 * 16);
  EXPECT_FALSE(json::parse(c.to_hf_json()).contains("selectivity"));
  const struct {
    const char* name;
    bool dt, B, C;
    int64_t rows;
  } variants[] = {{"s6", true, true, true, 80},  {"lti", false, false, false, 0}, {"dt", true, false, false, 48},
                  {"b", false, true, false, 16}, {"c", false, false, true, 16},   {"dt+c", true, false, true, 64}};
  for (const auto& v : variants) {
    SCOPED_TRACE(v.name);
    c.set_ssm_variant(v.name);
    EXPECT_EQ(c.selective_dt, v.dt);
    EXPECT_EQ(c.selective_B, v.B);
    EXPECT_EQ(c.selective_C, v.C);
    EXPECT_EQ(c.ssm_variant(), v.name);
    EXPECT_EQ(c.x_proj_rows(), v.rows);
    const std::string text = c.to_hf_json();
    const json j = json::parse(text);
    if (std::string(v.name) != "s6") {
      EXPECT_EQ(j["selectivity"], (json{{"dt", v.dt}, {"B", v.B}, {"C", v.C}}));
    }
    const MambaConfig back = MambaConfig::from_json_text(text, "round trip");
    EXPECT_EQ(back.ssm_variant(), v.name);
  }
  const MambaConfig ssm = MambaConfig::from_json_text(
      R"({"d_model": 64, "n_layer": 2, "vocab_size": 100, "selectivity": {"dt": true, "B": false}})", "ssm");
  EXPECT_EQ(ssm.ssm_variant(), "dt+c");
  expect_error([&] { c.set_ssm_variant("s4"); }, {"unknown SSM variant 's4'", "lti", "dt+b"});
  expect_error([&] { c.set_ssm_variant("dt+dt"); }, {"'dt+dt'"});
  expect_error([&] { c.set_ssm_variant(""); }, {"unknown SSM variant"});
  expect_error(
      [&] {
        MambaConfig::from_json_text(R"({"d_model": 64, "n_layer": 2, "vocab_size": 100, "selectivity": true})", "f");
      },
      {"f", "selectivity", "object"});
  expect_error(
      [&] {
        MambaConfig::from_json_text(R"({"hidden_size": 64, "num_hidden_layers": 2, "vocab_size": 100,
                                        "selectivity": {"delta": false}})", "f");
      },
      {"f", "selectivity.delta"});
  expect_error(
      [&] {
        MambaConfig::from_json_text(R"({"hidden_size": 64, "num_hidden_layers": 2, "vocab_size": 100,
                                        "selectivity": {"B": 0}})", "f");
      },
      {"f", "selectivity.B", "true or false"});
}

}  // namespace
}  // namespace mambacpp
