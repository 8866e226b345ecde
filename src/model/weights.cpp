// Mamba-1 LM parameters: the table of every parameter (checkpoint name, shapes, storage dtype, initialisation),
// loading from a TensorStore with full shape checks, and random initialisation (see weights.h).
#include "model/weights.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/error.h"
#include "core/rng.h"
#include "io/safetensors.h"

namespace mambacpp {

namespace {

// Where a parameter lives in ModelWeights.
enum class Slot {
  embedding, norm_f, lm_head, norm, in_proj, in_proj_bias, conv_w, conv_b, x_proj, dt_proj, dt_bias, A_log, B, C,
  D, out_proj, out_proj_bias
};
// How random() initialises a parameter (`scale` is the std or the bound).
enum class Init { normal, uniform, ones, zeros, a_log, dt_bias };

struct ParamSpec {
  std::string name;                 // Hugging Face checkpoint name
  Slot slot;
  int layer;                        // -1 outside the layers
  std::vector<int64_t> ckpt_shape;  // as stored in a checkpoint
  std::vector<int64_t> shape;       // as held (conv1d.weight squeezed to (e, k))
  const char* legend;               // the shape in the shared legend, for messages
  bool matrix;                      // held in matrix_dtype; otherwise f32
  Init init;
  double scale;
};

constexpr const char* kEmbedding = "backbone.embeddings.weight";
constexpr const char* kEmbeddingAlt = "backbone.embedding.weight";  // mamba_ssm's name

// x_proj's shape in the legend, for messages: "(r + 2n, e)" for S6, "(n, e)" with only B selective, etc.
const char* x_proj_legend(const MambaConfig& c) {
  static const char* const kLegends[8] = {"(0, e)",  "(n, e)",      "(n, e)",      "(2n, e)",
                                          "(r, e)",  "(r + n, e)",  "(r + n, e)",  "(r + 2n, e)"};
  return kLegends[(c.selective_dt ? 4 : 0) + (c.selective_B ? 2 : 0) + (c.selective_C ? 1 : 0)];
}

void add_layer_specs(std::vector<ParamSpec>& out, const MambaConfig& c, int i) {
  const int64_t d = c.d_model, e = c.d_inner, n = c.d_state, k = c.d_conv, r = c.dt_rank;
  const std::string p = "backbone.layers." + std::to_string(i) + ".";
  const std::string m = p + "mixer.";
  const double lin_d = 1.0 / std::sqrt(double(d)), lin_e = 1.0 / std::sqrt(double(e));
  const double conv = 1.0 / std::sqrt(double(k));
  out.push_back({p + "norm.weight", Slot::norm, i, {d}, {d}, "(d)", false, Init::ones, 0});
  out.push_back({m + "in_proj.weight", Slot::in_proj, i, {2 * e, d}, {2 * e, d}, "(2e, d)", true, Init::uniform,
                 lin_d});
  if (c.use_bias)
    out.push_back({m + "in_proj.bias", Slot::in_proj_bias, i, {2 * e}, {2 * e}, "(2e)", false, Init::zeros, 0});
  out.push_back({m + "conv1d.weight", Slot::conv_w, i, {e, 1, k}, {e, k}, "(e, 1, k)", false, Init::uniform, conv});
  if (c.use_conv_bias)
    out.push_back({m + "conv1d.bias", Slot::conv_b, i, {e}, {e}, "(e)", false, Init::uniform, conv});
  const int64_t x = c.x_proj_rows();
  if (x > 0)
    out.push_back({m + "x_proj.weight", Slot::x_proj, i, {x, e}, {x, e}, x_proj_legend(c), true, Init::uniform,
                   lin_e});
  if (c.selective_dt)
    out.push_back({m + "dt_proj.weight", Slot::dt_proj, i, {e, r}, {e, r}, "(e, r)", true, Init::uniform,
                   1.0 / std::sqrt(double(r))});
  out.push_back({m + "dt_proj.bias", Slot::dt_bias, i, {e}, {e}, "(e)", false, Init::dt_bias, 0});
  out.push_back({m + "A_log", Slot::A_log, i, {e, n}, {e, n}, "(e, n)", false, Init::a_log, 0});
  if (!c.selective_B) out.push_back({m + "B", Slot::B, i, {e, n}, {e, n}, "(e, n)", false, Init::ones, 0});
  if (!c.selective_C) out.push_back({m + "C", Slot::C, i, {e, n}, {e, n}, "(e, n)", false, Init::normal, 1.0});
  out.push_back({m + "D", Slot::D, i, {e}, {e}, "(e)", false, Init::ones, 0});
  out.push_back({m + "out_proj.weight", Slot::out_proj, i, {d, e}, {d, e}, "(d, e)", true, Init::uniform,
                 lin_e / std::sqrt(double(c.n_layer))});
  if (c.use_bias)
    out.push_back({m + "out_proj.bias", Slot::out_proj_bias, i, {d}, {d}, "(d)", false, Init::zeros, 0});
}

// Every parameter of the model the (filled-in) config describes, in checkpoint order.
std::vector<ParamSpec> param_specs(const MambaConfig& c) {
  const int64_t d = c.d_model, v = c.vocab_size;
  std::vector<ParamSpec> out;
  out.push_back({kEmbedding, Slot::embedding, -1, {v, d}, {v, d}, "(v, d)", true, Init::normal, 0.02});
  for (int i = 0; i < int(c.n_layer); ++i) add_layer_specs(out, c, i);
  out.push_back({"backbone.norm_f.weight", Slot::norm_f, -1, {d}, {d}, "(d)", false, Init::ones, 0});
  if (!c.tie_embeddings)
    out.push_back({"lm_head.weight", Slot::lm_head, -1, {v, d}, {v, d}, "(v, d)", true, Init::uniform,
                   1.0 / std::sqrt(double(d))});
  return out;
}

// The Tensor a spec describes (const or not, following W).
template <typename W>
auto& slot_ref(W& w, const ParamSpec& p) {
  switch (p.slot) {
    case Slot::embedding: return w.embedding;
    case Slot::norm_f: return w.norm_f;
    case Slot::lm_head: return w.lm_head;
    default: break;
  }
  auto& l = w.layers[size_t(p.layer)];
  switch (p.slot) {
    case Slot::norm: return l.norm;
    case Slot::in_proj: return l.in_proj;
    case Slot::in_proj_bias: return l.in_proj_bias;
    case Slot::conv_w: return l.conv_w;
    case Slot::conv_b: return l.conv_b;
    case Slot::x_proj: return l.x_proj;
    case Slot::dt_proj: return l.dt_proj;
    case Slot::dt_bias: return l.dt_bias;
    case Slot::A_log: return l.A_log;
    case Slot::B: return l.B;
    case Slot::C: return l.C;
    case Slot::D: return l.D;
    case Slot::out_proj: return l.out_proj;
    default: return l.out_proj_bias;
  }
}

int64_t numel_of(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t s : shape) n *= s;
  return n;
}

std::string shape_str(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

Tensor make_tensor(void* data, DType dtype, const std::vector<int64_t>& shape) {
  Tensor t;
  t.data = data;
  t.dtype = dtype;
  t.ndim = int(shape.size());
  int64_t st = 1;
  for (int k = t.ndim - 1; k >= 0; --k) {
    t.shape[k] = shape[k];
    t.stride[k] = st;
    st *= shape[k];
  }
  return t;
}

// A new tensor owned by `storage` (contents to be written by the caller).
Tensor allocate(std::vector<Buffer>& storage, DType dtype, const std::vector<int64_t>& shape) {
  storage.emplace_back(size_t(numel_of(shape)) * dtype_size(dtype));
  return make_tensor(storage.back().data(), dtype, shape);
}

// Copies n elements, converting between f32/bf16/f16; large copies run in parallel chunks.
void copy_convert(void* dst, DType dt, const void* src, DType st, int64_t n) {
  constexpr int64_t kChunk = 1 << 16;
  const int64_t chunks = (n + kChunk - 1) / kChunk;
#pragma omp parallel for schedule(static)
  for (int64_t c = 0; c < chunks; ++c) {
    const int64_t i0 = c * kChunk, m = std::min(kChunk, n - i0);
    const auto* s = static_cast<const uint8_t*>(src) + i0 * int64_t(dtype_size(st));
    auto* d = static_cast<uint8_t*>(dst) + i0 * int64_t(dtype_size(dt));
    if (st == dt) {
      std::memcpy(d, s, size_t(m) * dtype_size(dt));
    } else if (dt == DType::f32) {
      convert_to_f32(reinterpret_cast<float*>(d), s, st, size_t(m));
    } else if (st == DType::f32) {
      convert_from_f32(d, dt, reinterpret_cast<const float*>(s), size_t(m));
    } else {
      std::vector<float> tmp(static_cast<size_t>(m));
      convert_to_f32(tmp.data(), s, st, size_t(m));
      convert_from_f32(d, dt, tmp.data(), size_t(m));
    }
  }
}

// A copy of `cfg` with derived sizes filled in and checked, and one LayerWeights per layer.
ModelWeights prepare(const MambaConfig& cfg, DType matrix_dtype, const std::string& source) {
  ModelWeights w;
  w.config = cfg;
  w.config.fill_derived();
  w.config.validate(source);
  w.matrix_dtype = matrix_dtype;
  w.layers.resize(size_t(w.config.n_layer));
  return w;
}

// A = -exp(A_log) for every layer, and the head (the embedding itself when tied).
void finish(ModelWeights& w) {
  for (LayerWeights& l : w.layers) {
    l.A = allocate(w.storage, DType::f32, {l.A_log.shape[0], l.A_log.shape[1]});
    const int64_t n = l.A.numel();
    for (int64_t i = 0; i < n; ++i) l.A.f32()[i] = -std::exp(l.A_log.f32()[i]);
  }
  if (w.config.tie_embeddings) w.lm_head = w.embedding;
}

std::string config_summary(const MambaConfig& c) {
  return fmt::format("d={} e={} n={} k={} r={} v={} ssm={}", c.d_model, c.d_inner, c.d_state, c.d_conv, c.dt_rank,
                     c.vocab_size, c.ssm_variant());
}

// The checkpoint tensor for `p`, present and of the expected shape.
Tensor find_tensor(const TensorStore& store, const ParamSpec& p, const MambaConfig& c) {
  std::string name = p.name;
  if (p.slot == Slot::embedding && !store.contains(name) && store.contains(kEmbeddingAlt)) name = kEmbeddingAlt;
  if (!store.contains(name)) {
    const char* why = p.slot == Slot::embedding  ? " (nor 'backbone.embedding.weight')"
                      : p.slot == Slot::lm_head ? " (required: the config unties the embeddings)"
                                                : "";
    fail("checkpoint {}: missing tensor '{}'{}, expected shape {} {} for {}", store.dir(), p.name, why,
         shape_str(p.ckpt_shape), p.legend, config_summary(c));
  }
  const Tensor t = store.get(name);
  const bool same = t.ndim == int(p.ckpt_shape.size()) &&
                    std::equal(p.ckpt_shape.begin(), p.ckpt_shape.end(), t.shape.begin());
  MAMBA_CHECK(same, "{}: tensor '{}' has shape {}, expected {} {} for {}", store.source(name), name, t.shape_str(),
              shape_str(p.ckpt_shape), p.legend, config_summary(c));
  return t;
}

void fill_random(std::vector<float>& v, const ParamSpec& p, Rng& rng) {
  const int64_t row = p.shape.back();
  for (size_t i = 0; i < v.size(); ++i) {
    switch (p.init) {
      case Init::normal: v[i] = float(p.scale * rng.normal()); break;
      case Init::uniform: v[i] = float(p.scale * (2.0 * rng.uniform() - 1.0)); break;
      case Init::ones: v[i] = 1.0f; break;
      case Init::zeros: v[i] = 0.0f; break;
      case Init::a_log: v[i] = float(std::log(double(int64_t(i) % row + 1))); break;
      case Init::dt_bias: {
        const double lo = std::log(0.001), hi = std::log(0.1);
        const double dt = std::max(std::exp(lo + rng.uniform() * (hi - lo)), 1e-4);
        v[i] = float(dt + std::log(-std::expm1(-dt)));  // softplus⁻¹(dt)
        break;
      }
    }
  }
}

}  // namespace

ModelWeights ModelWeights::load(const TensorStore& store, const MambaConfig& cfg, DType matrix_dtype) {
  ModelWeights w = prepare(cfg, matrix_dtype, "config for checkpoint " + store.dir());
  for (const ParamSpec& p : param_specs(w.config)) {
    const Tensor src = find_tensor(store, p, w.config);
    Tensor& dst = slot_ref(w, p);
    dst = allocate(w.storage, p.matrix ? matrix_dtype : DType::f32, p.shape);
    copy_convert(dst.data, dst.dtype, src.data, src.dtype, dst.numel());
  }
  finish(w);
  return w;
}

ModelWeights ModelWeights::random(const MambaConfig& cfg, DType matrix_dtype, uint64_t seed) {
  ModelWeights w = prepare(cfg, matrix_dtype, "model config");
  Rng rng(seed);
  std::vector<float> values;
  for (const ParamSpec& p : param_specs(w.config)) {
    values.assign(size_t(numel_of(p.shape)), 0.0f);
    fill_random(values, p, rng);
    Tensor& dst = slot_ref(w, p);
    dst = allocate(w.storage, p.matrix ? matrix_dtype : DType::f32, p.shape);
    copy_convert(dst.data, dst.dtype, values.data(), DType::f32, dst.numel());
  }
  finish(w);
  return w;
}

std::vector<std::pair<std::string, Tensor>> ModelWeights::named_parameters() const {
  MAMBA_CHECK(layers.size() == size_t(config.n_layer) && embedding.defined(),
              "named_parameters: these weights were not loaded or initialised ({} layers held, config says {})",
              layers.size(), config.n_layer);
  std::vector<std::pair<std::string, Tensor>> out;
  for (const ParamSpec& p : param_specs(config)) {
    const Tensor& t = slot_ref(*this, p);
    Tensor view = make_tensor(t.data, t.dtype, p.ckpt_shape);
    view.device = t.device;
    out.emplace_back(p.name, view);
  }
  return out;
}

int64_t ModelWeights::parameter_count() const {
  MambaConfig c = config;
  c.fill_derived();
  int64_t total = 0;
  for (const ParamSpec& p : param_specs(c)) total += numel_of(p.shape);
  return total;
}

int64_t ModelWeights::weight_bytes() const {
  MambaConfig c = config;
  c.fill_derived();
  int64_t total = 0;
  for (const ParamSpec& p : param_specs(c))
    total += numel_of(p.shape) * int64_t(p.matrix ? dtype_size(matrix_dtype) : dtype_size(DType::f32));
  return total;
}

}  // namespace mambacpp
