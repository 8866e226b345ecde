// Tests of model weight loading from small checkpoints written here (both naming schemes, tied and untied
// heads, with and without biases, f32/bf16/f16 files, bf16 matrices, shards), of every missing or mis-shaped
// tensor (each Error naming tensor, file and shapes), and of the random initialisation.
#include <cmath>
#include <cstring>
#include <functional>
#include <nlohmann/json.hpp>
#include <numeric>

#include "core/error.h"
#include "io/safetensors.h"
#include "model/weights.h"
#include "support/test_util.h"

namespace mambacpp {
namespace {

using test::expect_error;

using test::TempDir;

MambaConfig small_config(bool bias, bool conv_bias, bool tied) {
  MambaConfig c;
  c.d_model = 8;
  c.n_layer = 2;
  c.vocab_size = 11;
  c.d_state = 3;
  c.d_conv = 4;
  c.expand = 2;
  c.d_inner = 16;
  c.dt_rank = 3;
  c.use_bias = bias;
  c.use_conv_bias = conv_bias;
  c.tie_embeddings = tied;
  return c;
}

using Shape = std::vector<int64_t>;

// The tensors a checkpoint of `c` holds, with their shapes, written out by hand.
std::vector<std::pair<std::string, Shape>> checkpoint_shapes(const MambaConfig& c, bool ssm_names, bool lm_head) {
  const int64_t d = c.d_model, e = c.d_inner, n = c.d_state, k = c.d_conv, r = c.dt_rank, v = c.vocab_size;
  std::vector<std::pair<std::string, Shape>> out = {
      {ssm_names ? "backbone.embedding.weight" : "backbone.embeddings.weight", {v, d}}};
  for (int i = 0; i < c.n_layer; ++i) {
    const std::string p = "backbone.layers." + std::to_string(i) + ".";
    out.push_back({p + "norm.weight", {d}});
    out.push_back({p + "mixer.in_proj.weight", {2 * e, d}});
    if (c.use_bias) out.push_back({p + "mixer.in_proj.bias", {2 * e}});
    out.push_back({p + "mixer.conv1d.weight", {e, 1, k}});
    if (c.use_conv_bias) out.push_back({p + "mixer.conv1d.bias", {e}});
    const int64_t x = (c.selective_dt ? r : 0) + (c.selective_B ? n : 0) + (c.selective_C ? n : 0);
    if (x > 0) out.push_back({p + "mixer.x_proj.weight", {x, e}});
    if (c.selective_dt) out.push_back({p + "mixer.dt_proj.weight", {e, r}});
    out.push_back({p + "mixer.dt_proj.bias", {e}});
    out.push_back({p + "mixer.A_log", {e, n}});
    if (!c.selective_B) out.push_back({p + "mixer.B", {e, n}});
    if (!c.selective_C) out.push_back({p + "mixer.C", {e, n}});
    out.push_back({p + "mixer.D", {e}});
    out.push_back({p + "mixer.out_proj.weight", {d, e}});
    if (c.use_bias) out.push_back({p + "mixer.out_proj.bias", {d}});
  }
  out.push_back({"backbone.norm_f.weight", {d}});
  if (lm_head) out.push_back({"lm_head.weight", {v, d}});
  return out;
}

float round_to(float x, DType t) {
  if (t == DType::bf16) return bf16_to_f32(f32_to_bf16(x));
  if (t == DType::f16) return f16_to_f32(f32_to_f16(x));
  return x;
}

std::vector<float> to_f32(const Tensor& t) {
  std::vector<float> out(size_t(t.numel()));
  convert_to_f32(out.data(), t.data, t.dtype, out.size());
  return out;
}

// A checkpoint with random contents: `values` are exactly what the file holds (as f32).
struct Checkpoint {
  DType dtype = DType::f32;
  std::map<std::string, Shape> shapes;
  std::map<std::string, std::vector<float>> values;
  std::map<std::string, std::vector<uint16_t>> half;

  Checkpoint(const std::vector<std::pair<std::string, Shape>>& list, DType file_dtype, uint64_t seed)
      : dtype(file_dtype) {
    for (const auto& [name, shape] : list) {
      shapes[name] = shape;
      const int64_t n = std::accumulate(shape.begin(), shape.end(), int64_t(1), std::multiplies<>());
      auto v = test::random_vector(size_t(n), seed++, -1.0f, 1.0f);
      for (float& x : v) x = round_to(x, file_dtype);
      values[name] = v;
      if (file_dtype != DType::f32) {
        half[name].resize(v.size());
        convert_from_f32(half[name].data(), file_dtype, v.data(), v.size());
      }
    }
  }
  std::map<std::string, Tensor> tensors(const std::vector<std::string>& names) {
    std::map<std::string, Tensor> out;
    for (const std::string& name : names) {
      void* data = dtype == DType::f32 ? static_cast<void*>(values[name].data()) : half[name].data();
      out[name] = Tensor(data, dtype, shapes[name]);
    }
    return out;
  }
  std::vector<std::string> names() const {
    std::vector<std::string> out;
    for (const auto& kv : shapes) out.push_back(kv.first);
    return out;
  }
};

// Writes `ck` (all of it) as dir/model.safetensors and `c` as dir/config.json.
void write_checkpoint(const TempDir& dir, Checkpoint& ck, const MambaConfig& c) {
  save_safetensors(dir.file("model.safetensors"), ck.tensors(ck.names()));
  test::write_file(dir.file("config.json"), c.to_hf_json());
}

ModelWeights load_dir(const TempDir& dir, DType matrix_dtype) {
  const TensorStore store(dir.path().string());
  return ModelWeights::load(store, MambaConfig::from_json_file(dir.file("config.json")), matrix_dtype);
}

void expect_tensor(const Tensor& t, DType dtype, const Shape& shape, const std::vector<float>& want,
                   const std::string& what) {
  SCOPED_TRACE(what);
  ASSERT_TRUE(t.defined());
  EXPECT_EQ(t.dtype, dtype);
  ASSERT_EQ(t.ndim, int(shape.size()));
  for (size_t i = 0; i < shape.size(); ++i) EXPECT_EQ(t.shape[i], shape[i]);
  const std::vector<float> got = to_f32(t);
  ASSERT_EQ(got.size(), want.size());
  size_t bad = 0;
  for (size_t i = 0; i < got.size(); ++i) bad += got[i] != round_to(want[i], dtype);
  EXPECT_EQ(bad, 0u) << "elements differ from the checkpoint";
}

// Every loaded tensor against the checkpoint's values, through a name -> field map written out here.
void expect_loaded(const ModelWeights& w, Checkpoint& ck, bool ssm_names, DType mat) {
  const MambaConfig& c = w.config;
  const int64_t d = c.d_model, e = c.d_inner, n = c.d_state, k = c.d_conv, r = c.dt_rank, v = c.vocab_size;
  const std::string emb = ssm_names ? "backbone.embedding.weight" : "backbone.embeddings.weight";
  expect_tensor(w.embedding, mat, {v, d}, ck.values[emb], emb);
  expect_tensor(w.norm_f, DType::f32, {d}, ck.values["backbone.norm_f.weight"], "norm_f");
  if (c.tie_embeddings)
    EXPECT_EQ(w.lm_head.data, w.embedding.data);
  else
    expect_tensor(w.lm_head, mat, {v, d}, ck.values["lm_head.weight"], "lm_head");
  ASSERT_EQ(w.layers.size(), size_t(c.n_layer));
  struct Field {
    const char* suffix;
    Tensor LayerWeights::*member;
    bool matrix;
    Shape shape;
  };
  const std::vector<Field> fields = {
      {"norm.weight", &LayerWeights::norm, false, {d}},
      {"mixer.in_proj.weight", &LayerWeights::in_proj, true, {2 * e, d}},
      {"mixer.in_proj.bias", &LayerWeights::in_proj_bias, false, {2 * e}},
      {"mixer.conv1d.weight", &LayerWeights::conv_w, false, {e, k}},
      {"mixer.conv1d.bias", &LayerWeights::conv_b, false, {e}},
      {"mixer.x_proj.weight", &LayerWeights::x_proj, true, {r + 2 * n, e}},
      {"mixer.dt_proj.weight", &LayerWeights::dt_proj, true, {e, r}},
      {"mixer.dt_proj.bias", &LayerWeights::dt_bias, false, {e}},
      {"mixer.A_log", &LayerWeights::A_log, false, {e, n}},
      {"mixer.D", &LayerWeights::D, false, {e}},
      {"mixer.out_proj.weight", &LayerWeights::out_proj, true, {d, e}},
      {"mixer.out_proj.bias", &LayerWeights::out_proj_bias, false, {d}},
  };
  for (int i = 0; i < c.n_layer; ++i) {
    const LayerWeights& l = w.layers[size_t(i)];
    for (const Field& f : fields) {
      const std::string name = "backbone.layers." + std::to_string(i) + "." + f.suffix;
      if (ck.values.count(name))
        expect_tensor(l.*f.member, f.matrix ? mat : DType::f32, f.shape, ck.values[name], name);
      else
        EXPECT_FALSE((l.*f.member).defined()) << name;
    }
    const std::vector<float> a_log = to_f32(l.A_log), a = to_f32(l.A);
    ASSERT_EQ(a.size(), size_t(e * n));
    for (size_t j = 0; j < a.size(); ++j) EXPECT_EQ(a[j], -std::exp(a_log[j]));
  }
}

TEST(Weights, LoadsTransformersCheckpointTiedWithoutBiases) {
  TempDir dir;
  const MambaConfig c = small_config(false, true, true);
  Checkpoint ck(checkpoint_shapes(c, false, false), DType::f32, 1);
  write_checkpoint(dir, ck, c);
  const ModelWeights w = load_dir(dir, DType::f32);
  EXPECT_EQ(w.matrix_dtype, DType::f32);
  expect_loaded(w, ck, false, DType::f32);
}

TEST(Weights, LoadsMambaSsmNamesUntiedWithBiases) {
  TempDir dir;
  const MambaConfig c = small_config(true, true, false);
  Checkpoint ck(checkpoint_shapes(c, true, true), DType::f32, 2);
  write_checkpoint(dir, ck, c);
  expect_loaded(load_dir(dir, DType::f32), ck, true, DType::f32);
}

TEST(Weights, LoadsWithoutConvBias) {
  TempDir dir;
  const MambaConfig c = small_config(false, false, true);
  Checkpoint ck(checkpoint_shapes(c, false, false), DType::f32, 3);
  write_checkpoint(dir, ck, c);
  expect_loaded(load_dir(dir, DType::f32), ck, false, DType::f32);
}

TEST(Weights, TiedHeadIgnoresAStoredCopyAndExtraTensors) {
  TempDir dir;
  const MambaConfig c = small_config(false, true, true);
  auto list = checkpoint_shapes(c, false, true);
  list.push_back({"backbone.layers.0.mixer.unused", {5}});
  list.push_back({"something.else", {2, 2}});
  Checkpoint ck(list, DType::f32, 4);
  write_checkpoint(dir, ck, c);
  const ModelWeights w = load_dir(dir, DType::f32);
  EXPECT_EQ(w.lm_head.data, w.embedding.data);
  expect_loaded(w, ck, false, DType::f32);
}

TEST(Weights, HalfPrecisionFilesConvertExactly) {
  for (DType file : {DType::bf16, DType::f16}) {
    SCOPED_TRACE(dtype_name(file));
    TempDir dir;
    const MambaConfig c = small_config(true, true, false);
    Checkpoint ck(checkpoint_shapes(c, false, true), file, 5);
    write_checkpoint(dir, ck, c);
    expect_loaded(load_dir(dir, DType::f32), ck, false, DType::f32);
  }
}

TEST(Weights, MatricesHeldInBf16OrF16) {
  for (DType file : {DType::f32, DType::f16, DType::bf16}) {
    for (DType mat : {DType::bf16, DType::f16}) {
      SCOPED_TRACE(std::string(dtype_name(file)) + " file, " + dtype_name(mat) + " matrices");
      TempDir dir;
      const MambaConfig c = small_config(true, true, false);
      Checkpoint ck(checkpoint_shapes(c, false, true), file, 6);
      write_checkpoint(dir, ck, c);
      const ModelWeights w = load_dir(dir, mat);
      EXPECT_EQ(w.matrix_dtype, mat);
      expect_loaded(w, ck, false, mat);
    }
  }
}

TEST(Weights, ShardedCheckpoint) {
  TempDir dir;
  const MambaConfig c = small_config(false, true, false);
  Checkpoint ck(checkpoint_shapes(c, false, true), DType::bf16, 7);
  std::vector<std::string> first, second;
  nlohmann::json weight_map;
  for (const std::string& name : ck.names()) {
    const bool one = name.find("layers.1.") == std::string::npos && name != "lm_head.weight";
    (one ? first : second).push_back(name);
    weight_map[name] = one ? "a.safetensors" : "b.safetensors";
  }
  save_safetensors(dir.file("a.safetensors"), ck.tensors(first));
  save_safetensors(dir.file("b.safetensors"), ck.tensors(second));
  test::write_file(dir.file("model.safetensors.index.json"), nlohmann::json({{"weight_map", weight_map}}).dump());
  test::write_file(dir.file("config.json"), c.to_hf_json());
  expect_loaded(load_dir(dir, DType::f32), ck, false, DType::f32);
}

// Writes the checkpoint of `c` without `drop`, with `changed` stored under a different shape.
void write_altered(const TempDir& dir, const MambaConfig& c, bool lm_head, const std::string& drop,
                   const std::string& changed = "", const Shape& shape = {}) {
  auto list = checkpoint_shapes(c, false, lm_head);
  std::vector<std::pair<std::string, Shape>> kept;
  for (auto& [name, s] : list)
    if (name != drop) kept.push_back({name, name == changed ? shape : s});
  Checkpoint ck(kept, DType::f32, 8);
  write_checkpoint(dir, ck, c);
}

TEST(Weights, MissingTensorsAreNamed) {
  const MambaConfig c = small_config(true, true, false);
  {
    TempDir dir;
    write_altered(dir, c, true, "backbone.layers.1.mixer.x_proj.weight");
    expect_error([&] { load_dir(dir, DType::f32); },
                 {"backbone.layers.1.mixer.x_proj.weight", dir.path().string(), "missing", "[9, 16]"});
  }
  {
    TempDir dir;
    write_altered(dir, c, false, "");
    expect_error([&] { load_dir(dir, DType::f32); }, {"'lm_head.weight'", "missing", dir.path().string()});
  }
  {
    TempDir dir;
    write_altered(dir, c, true, "backbone.embeddings.weight");
    expect_error([&] { load_dir(dir, DType::f32); },
                 {"backbone.embeddings.weight", "backbone.embedding.weight", dir.path().string()});
  }
  {
    TempDir dir;
    write_altered(dir, c, true, "backbone.layers.0.mixer.in_proj.bias");
    expect_error([&] { load_dir(dir, DType::f32); }, {"backbone.layers.0.mixer.in_proj.bias", "missing"});
  }
}

TEST(Weights, WrongShapesAreNamed) {
  const MambaConfig c = small_config(false, true, true);
  struct Case {
    std::string name;
    Shape shape;
    std::string actual, expected;
  };
  const std::vector<Case> cases = {
      {"backbone.layers.1.mixer.dt_proj.bias", {15}, "[15]", "[16]"},
      {"backbone.layers.0.mixer.conv1d.weight", {16, 4}, "[16, 4]", "[16, 1, 4]"},
      {"backbone.layers.1.mixer.A_log", {16, 4}, "[16, 4]", "[16, 3]"},
      {"backbone.embeddings.weight", {12, 8}, "[12, 8]", "[11, 8]"},
      {"backbone.norm_f.weight", {}, "[]", "[8]"},
  };
  for (const Case& k : cases) {
    SCOPED_TRACE(k.name);
    TempDir dir;
    write_altered(dir, c, false, "", k.name, k.shape);
    expect_error([&] { load_dir(dir, DType::f32); },
                 {"'" + k.name + "'", dir.file("model.safetensors"), k.actual, k.expected});
  }
}

TEST(Weights, ConfigThatDisagreesWithTheCheckpoint) {
  TempDir dir;
  MambaConfig c = small_config(false, true, true);
  write_altered(dir, c, false, "");
  c.d_state = 4;
  test::write_file(dir.file("config.json"), c.to_hf_json());
  expect_error([&] { load_dir(dir, DType::f32); },
               {"backbone.layers.0.mixer.x_proj.weight", "[9, 16]", "[11, 16]", "n=4"});
  MambaConfig bad = small_config(false, true, true);
  bad.d_model = 0;
  const TensorStore store(dir.path().string());
  expect_error([&] { ModelWeights::load(store, bad, DType::f32); }, {"d_model"});
}

TEST(Weights, UnreadableDtypeOfANeededTensorIsNamed) {
  TempDir dir;
  const MambaConfig c = small_config(false, true, true);
  Checkpoint ck(checkpoint_shapes(c, false, false), DType::f32, 9);
  const std::string name = "backbone.layers.0.mixer.D";
  std::vector<std::string> rest;
  nlohmann::json weight_map = {{name, "b.safetensors"}};
  for (const std::string& n : ck.names()) {
    if (n == name) continue;
    rest.push_back(n);
    weight_map[n] = "a.safetensors";
  }
  save_safetensors(dir.file("a.safetensors"), ck.tensors(rest));
  const std::string header = "{\"" + name + "\":{\"dtype\":\"F64\",\"shape\":[16],\"data_offsets\":[0,128]}}";
  std::string raw(8, '\0');
  raw[0] = char(header.size());
  test::write_file(dir.file("b.safetensors"), raw + header + std::string(128, '\0'));
  test::write_file(dir.file("model.safetensors.index.json"), nlohmann::json({{"weight_map", weight_map}}).dump());
  test::write_file(dir.file("config.json"), c.to_hf_json());
  expect_error([&] { load_dir(dir, DType::f32); }, {name, "F64", dir.file("b.safetensors")});
}

TEST(Weights, NamedParametersSaveAndLoadBack) {
  TempDir dir;
  const MambaConfig c = small_config(true, true, false);
  const ModelWeights w = ModelWeights::random(c, DType::bf16, 11);
  std::map<std::string, Tensor> tensors;
  for (const auto& [name, t] : w.named_parameters()) tensors[name] = t;
  EXPECT_EQ(tensors.size(), checkpoint_shapes(c, false, true).size());
  for (const auto& [name, shape] : checkpoint_shapes(c, false, true)) {
    ASSERT_TRUE(tensors.count(name)) << name;
    EXPECT_EQ(tensors[name].ndim, int(shape.size())) << name;
  }
  save_safetensors(dir.file("model.safetensors"), tensors);
  test::write_file(dir.file("config.json"), c.to_hf_json());
  const ModelWeights back = load_dir(dir, DType::bf16);
  for (const auto& [name, t] : back.named_parameters())
    EXPECT_EQ(std::memcmp(t.data, tensors[name].data, t.nbytes()), 0) << name;
}

TEST(Weights, RandomInitialisationFollowsTheReference) {
  MambaConfig c = small_config(true, true, false);
  c.d_model = 64;
  c.d_inner = 128;
  c.vocab_size = 500;
  c.d_state = 4;
  c.dt_rank = 4;
  c.n_layer = 4;
  const ModelWeights w = ModelWeights::random(c, DType::f32, 7);
  const std::vector<float> emb = to_f32(w.embedding);
  double sum = 0, sq = 0;
  for (float x : emb) sum += x, sq += double(x) * x;
  EXPECT_NEAR(sum / double(emb.size()), 0.0, 1e-3);
  EXPECT_NEAR(std::sqrt(sq / double(emb.size())), 0.02, 0.001);
  auto within = [](const Tensor& t, double bound, const char* what) {
    const std::vector<float> v = to_f32(t);
    double m = 0;
    for (float x : v) m = std::max(m, double(std::abs(x)));
    EXPECT_LE(m, bound) << what;
    EXPECT_GT(m, 0.9 * bound) << what;  // the whole range is used
  };
  const LayerWeights& l = w.layers[2];
  within(l.in_proj, 1 / std::sqrt(64.0), "in_proj");
  within(l.x_proj, 1 / std::sqrt(128.0), "x_proj");
  within(l.out_proj, 1 / std::sqrt(128.0) / std::sqrt(4.0), "out_proj");
  within(l.dt_proj, 1 / std::sqrt(4.0), "dt_proj");
  within(l.conv_w, 0.5, "conv_w");
  within(l.conv_b, 0.5, "conv_b");
  within(w.lm_head, 1 / std::sqrt(64.0), "lm_head");
  EXPECT_EQ(l.conv_w.shape_str(), "[128, 4]");
  for (float x : to_f32(l.in_proj_bias)) EXPECT_EQ(x, 0.0f);
  for (float x : to_f32(l.out_proj_bias)) EXPECT_EQ(x, 0.0f);
  for (float x : to_f32(l.D)) EXPECT_EQ(x, 1.0f);
  for (float x : to_f32(l.norm)) EXPECT_EQ(x, 1.0f);
  for (float x : to_f32(w.norm_f)) EXPECT_EQ(x, 1.0f);
  const std::vector<float> a_log = to_f32(l.A_log), a = to_f32(l.A);
  for (size_t i = 0; i < a_log.size(); ++i) {
    EXPECT_FLOAT_EQ(a_log[i], std::log(float(i % 4 + 1)));
    EXPECT_FLOAT_EQ(a[i], -float(i % 4 + 1));
  }
  for (float b : to_f32(l.dt_bias)) {
    const double dt = std::log1p(std::exp(double(b)));  // softplus
    EXPECT_GE(dt, 0.001 * (1 - 1e-5));
    EXPECT_LE(dt, 0.1 * (1 + 1e-5));
  }
  const ModelWeights same = ModelWeights::random(c, DType::f32, 7);
  const ModelWeights other = ModelWeights::random(c, DType::f32, 8);
  EXPECT_EQ(std::memcmp(same.layers[3].x_proj.data, w.layers[3].x_proj.data, w.layers[3].x_proj.nbytes()), 0);
  EXPECT_NE(std::memcmp(other.layers[3].x_proj.data, w.layers[3].x_proj.data, w.layers[3].x_proj.nbytes()), 0);
  const ModelWeights half = ModelWeights::random(c, DType::bf16, 7);
  EXPECT_EQ(half.embedding.dtype, DType::bf16);
  EXPECT_EQ(bf16_to_f32(half.embedding.ptr<uint16_t>()[5]), round_to(emb[5], DType::bf16));
}

TEST(Weights, ParameterCountAndBytes) {
  const MambaConfig c = small_config(true, true, false);
  const ModelWeights w = ModelWeights::random(c, DType::bf16, 1);
  int64_t count = 0, bytes = 0;
  for (const auto& [name, t] : w.named_parameters()) {
    count += t.numel();
    bytes += int64_t(t.nbytes());
  }
  EXPECT_EQ(w.parameter_count(), count);
  EXPECT_EQ(w.weight_bytes(), bytes);
  // state-spaces/mamba-130m: the published parameter count, from the config alone.
  ModelWeights m;
  m.config = MambaConfig::from_json_text(
      R"({"d_model": 768, "n_layer": 24, "vocab_size": 50277, "pad_vocab_size_multiple": 8})", "130m");
  EXPECT_EQ(m.parameter_count(), 129135360);
  EXPECT_EQ(m.weight_bytes(), 4 * 129135360);
  m.matrix_dtype = DType::bf16;
  const int64_t vectors_per_layer = 768 + 1536 * 4 + 1536 + 1536 + 1536 * 16 + 1536;
  const int64_t vectors = 24 * vectors_per_layer + 768;
  EXPECT_EQ(m.weight_bytes(), 2 * (129135360 - vectors) + 4 * vectors);
}

// The selection ablations: x_proj holds only the selective parts, dt_proj.weight goes with a selective Δ,
// mixer.B / mixer.C (e, n) stand for a time-invariant B / C; every variant saves and loads back bit for bit.
TEST(Weights, SelectivityVariantsSaveAndLoadBack) {
  for (const char* variant : {"lti", "dt", "b", "c", "dt+b"}) {
    SCOPED_TRACE(variant);
    TempDir dir;
    MambaConfig c = small_config(false, true, true);
    c.set_ssm_variant(variant);
    const ModelWeights w = ModelWeights::random(c, DType::f32, 5);
    std::map<std::string, Tensor> tensors;
    for (const auto& [name, t] : w.named_parameters()) tensors[name] = t;
    const auto shapes = checkpoint_shapes(c, false, false);
    EXPECT_EQ(tensors.size(), shapes.size());
    for (const auto& [name, shape] : shapes) {
      ASSERT_TRUE(tensors.count(name)) << name;
      EXPECT_EQ(tensors[name].shape_str(), Tensor(nullptr, DType::f32, shape).shape_str()) << name;
    }
    const LayerWeights& l = w.layers[1];
    EXPECT_EQ(l.x_proj.defined(), c.x_proj_rows() > 0);
    EXPECT_EQ(l.dt_proj.defined(), c.selective_dt);
    EXPECT_EQ(l.B.defined(), !c.selective_B);
    EXPECT_EQ(l.C.defined(), !c.selective_C);
    int64_t count = 0;
    for (const auto& [name, t] : tensors) count += t.numel();
    EXPECT_EQ(w.parameter_count(), count);
    EXPECT_EQ(w.weight_bytes(), 4 * count);
    save_safetensors(dir.file("model.safetensors"), tensors);
    test::write_file(dir.file("config.json"), c.to_hf_json());
    const ModelWeights back = load_dir(dir, DType::f32);
    EXPECT_EQ(back.config.ssm_variant(), variant);
    for (const auto& [name, t] : back.named_parameters())
      EXPECT_EQ(std::memcmp(t.data, tensors[name].data, t.nbytes()), 0) << name;
  }
  // A time-invariant model refuses an S6 checkpoint, naming the missing parameter.
  TempDir dir;
  MambaConfig c = small_config(false, true, true);
  const ModelWeights s6 = ModelWeights::random(c, DType::f32, 5);
  std::map<std::string, Tensor> tensors;
  for (const auto& [name, t] : s6.named_parameters()) tensors[name] = t;
  save_safetensors(dir.file("model.safetensors"), tensors);
  c.set_ssm_variant("dt");
  test::write_file(dir.file("config.json"), c.to_hf_json());
  expect_error([&] { load_dir(dir, DType::f32); }, {"backbone.layers.0.mixer.x_proj.weight", "[3, 16]", "(r, e)"});
}

TEST(Weights, TimeInvariantBAndCInitialisedAsS4D) {
  MambaConfig c = small_config(false, true, true);
  c.d_inner = 256;
  c.d_state = 16;
  c.set_ssm_variant("lti");
  const ModelWeights w = ModelWeights::random(c, DType::bf16, 3);
  const LayerWeights& l = w.layers[0];
  EXPECT_EQ(l.B.dtype, DType::f32);
  EXPECT_EQ(l.C.dtype, DType::f32);
  for (float b : to_f32(l.B)) EXPECT_EQ(b, 1.0f);
  const std::vector<float> C = to_f32(l.C);
  double sum = 0, sq = 0;
  for (float x : C) sum += x, sq += double(x) * x;
  EXPECT_NEAR(sum / double(C.size()), 0.0, 0.05);
  EXPECT_NEAR(std::sqrt(sq / double(C.size())), 1.0, 0.05);
  for (float b : to_f32(l.dt_bias)) {
    const double dt = std::log1p(std::exp(double(b)));
    EXPECT_GE(dt, 0.001 * (1 - 1e-5));
    EXPECT_LE(dt, 0.1 * (1 + 1e-5));
  }
}

}  // namespace
}  // namespace mambacpp
