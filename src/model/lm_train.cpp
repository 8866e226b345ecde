// The LM loss and its gradient (see lm_train.h). The batch is taken in groups of whole sequences of at most
// TrainWorkspace::rows_per_pass tokens (a split fixed by b and l). Per group: forward over its m rows from a zero
// state, keeping per layer what the backward needs (TrainWorkspace); the head fused with cross-entropy (logits
// never held beyond a block of rows); then the backward, layer by layer in reverse:
//   d mixer_out = dres                       (residual_{i+1} = residual_i + mixer_out_i)
//   out_proj:  dy      = dres · W_out,            dW_out += dresᵀ · y
//   scan:      dxc, ddt, dB, dC, dz, dA, dD, dΔbias   (dA_log += dA ⊙ A, as A = −exp(A_log))
//   dt_proj:   d dt_low = ddt · W_dt,             dW_dt += ddtᵀ · dt_low
//   x_proj:    dxc    += dxdbl · W_x,             dW_x += dxdblᵀ · xc
// The selection ablations (config.h): x_proj's output holds only the selective parts (dt_low, B, C in that
// order); a time-invariant B / C is the (e, n) parameter mixer.B / mixer.C, its gradient added to by the scan;
// a time-invariant Δ runs the scan on a dt of zeros (no dt_proj), its gradient reaching dt_proj.bias alone.
//   conv1d:    dx (first half of dxz), dconv_w, dconv_b
//   in_proj:   dhidden = dxz · W_in,              dW_in += dxzᵀ · hidden
//   norm:      dres   += RMSNorm backward of dhidden
// and finally the embedding's scatter-add of dres (with a tied head, into the same gradient as the head's).
// Packed documents: the conv and the scan (the only ops that carry state along the sequence) run once per
// document, each from a zero state; every other op works on rows and does not care.
#include "model/lm_train.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <unordered_map>
#include <vector>

#include "core/error.h"
#include "ops/ops.h"
#include "ops/ops_backward.h"

namespace mambacpp {
namespace {

Tensor matrix(float* p, int64_t rows, int64_t cols, int64_t ld) {
  Tensor t(p, DType::f32, {rows, cols});
  t.stride[0] = ld;
  return t;
}

Tensor sequence(float* p, int64_t b, int64_t l, int64_t cols, int64_t ld) {
  Tensor t(p, DType::f32, {b, l, cols});
  t.stride[1] = ld;
  t.stride[0] = l * ld;
  return t;
}

void ensure(Buffer& buf, size_t floats) {
  if (buf.bytes() < floats * sizeof(float)) buf = Buffer(floats * sizeof(float));
}

// The gradients of one layer's parameters, viewing ParamGrads' storage (undefined where the model has no such
// parameter). conv_w is viewed as (e, k).
struct LayerGrads {
  Tensor norm, in_proj, in_proj_bias, conv_w, conv_b, x_proj, dt_proj, dt_bias, A_log, B, C, D, out_proj,
      out_proj_bias;
};

struct ModelGrads {
  Tensor embedding, norm_f, lm_head;
  std::vector<LayerGrads> layers;
};

ModelGrads map_grads(ParamGrads& g, const MambaConfig& c) {
  std::unordered_map<std::string, Tensor> by_name;
  for (size_t i = 0; i < g.names.size(); ++i) by_name[g.names[i]] = g.grads[i];
  auto get = [&](const std::string& name) {
    const auto it = by_name.find(name);
    return it == by_name.end() ? Tensor{} : it->second;
  };
  ModelGrads m;
  m.embedding = g.grads.front();
  m.norm_f = get("backbone.norm_f.weight");
  m.lm_head = c.tie_embeddings ? m.embedding : get("lm_head.weight");
  for (int64_t i = 0; i < c.n_layer; ++i) {
    const std::string p = "backbone.layers." + std::to_string(i) + ".";
    LayerGrads l;
    l.norm = get(p + "norm.weight");
    l.in_proj = get(p + "mixer.in_proj.weight");
    l.in_proj_bias = get(p + "mixer.in_proj.bias");
    const Tensor conv = get(p + "mixer.conv1d.weight");
    l.conv_w = Tensor(conv.data, DType::f32, {c.d_inner, c.d_conv});
    l.conv_b = get(p + "mixer.conv1d.bias");
    l.x_proj = get(p + "mixer.x_proj.weight");
    l.dt_proj = get(p + "mixer.dt_proj.weight");
    l.dt_bias = get(p + "mixer.dt_proj.bias");
    l.A_log = get(p + "mixer.A_log");
    l.B = get(p + "mixer.B");
    l.C = get(p + "mixer.C");
    l.D = get(p + "mixer.D");
    l.out_proj = get(p + "mixer.out_proj.weight");
    l.out_proj_bias = get(p + "mixer.out_proj.bias");
    m.layers.push_back(l);
  }
  return m;
}

// A run of tokens that starts from a zero state: `rows` sequences of `len` tokens, beginning at row `row0` of the
// (m, ·) activations. Without document starts after position 0, one run covers the whole batch (so that the
// result is the same, bit for bit, as without doc_start).
struct Run {
  int64_t row0, rows, len;
};

std::vector<Run> make_runs(const uint8_t* doc_start, int64_t b, int64_t l) {
  bool internal = false;  // a document starting after position 0 somewhere
  for (int64_t i = 0; doc_start && i < b * l; ++i) internal = internal || (i % l != 0 && doc_start[i]);
  if (!internal) return {{0, b, l}};
  std::vector<Run> out;
  for (int64_t bi = 0; bi < b; ++bi) {
    int64_t t0 = 0;
    for (int64_t t = 1; t <= l; ++t)
      if (t == l || doc_start[bi * l + t]) {
        out.push_back({bi * l + t0, 1, t - t0});
        t0 = t;
      }
  }
  return out;
}

// A (rows, len, cols) view of run `r` in the (m, ·) activation at p with row stride ld.
Tensor run_view(float* p, const Run& r, int64_t cols, int64_t ld) {
  return sequence(p + r.row0 * ld, r.rows, r.len, cols, ld);
}

// Views of layer i's kept activations.
struct LayerActs {
  float *residual, *hidden, *xz, *xc, *xdbl, *dt, *y;
};

LayerActs layer_acts(TrainWorkspace& ws, const MambaConfig& c, int64_t m, int64_t i) {
  const int64_t d = c.d_model, e = c.d_inner, x = c.dt_rank + 2 * c.d_state;
  return {ws.residual.as<float>() + i * m * d, ws.hidden.as<float>() + i * m * d, ws.xz.as<float>() + i * m * 2 * e,
          ws.xc.as<float>() + i * m * e,       ws.xdbl.as<float>() + i * m * x,   ws.dt.as<float>() + i * m * e,
          ws.y.as<float>() + i * m * e};
}

// Where B and C sit in x_proj's output (x = x_proj_rows() columns): column offsets, or -1 when time-invariant.
struct SsmColumns {
  int64_t x, B, C;
};

SsmColumns ssm_columns(const MambaConfig& c) {
  const int64_t b0 = c.selective_dt ? c.dt_rank : 0;
  return {c.x_proj_rows(), c.selective_B ? b0 : -1, c.selective_C ? b0 + (c.selective_B ? c.d_state : 0) : -1};
}

// Run `run`'s view of the scan's B or C: the columns of xdbl at `col`, or the time-invariant parameter.
Tensor ssm_part(float* xdbl, int64_t col, const Run& run, const MambaConfig& c, const Tensor& lti) {
  const int64_t x = c.x_proj_rows();
  return col >= 0 ? run_view(xdbl + col, run, c.d_state, x) : lti;
}

void mixer_forward(const LayerWeights& lw, const LayerActs& a, float* mixer_out, int64_t m,
                   const std::vector<Run>& runs, const MambaConfig& c, Context& ctx) {
  const int64_t d = c.d_model, e = c.d_inner, r = c.dt_rank;
  const SsmColumns col = ssm_columns(c);
  const int64_t x = col.x;
  linear_forward(matrix(a.xz, m, 2 * e, 2 * e), matrix(a.hidden, m, d, d), lw.in_proj, lw.in_proj_bias, ctx);
  for (const Run& run : runs)
    conv1d_causal_forward(run_view(a.xc, run, e, e), Tensor{}, run_view(a.xz, run, e, 2 * e), lw.conv_w, lw.conv_b,
                          Tensor{}, /*apply_silu=*/true, ctx);
  if (x > 0) linear_forward(matrix(a.xdbl, m, x, x), matrix(a.xc, m, e, e), lw.x_proj, Tensor{}, ctx);
  if (c.selective_dt)
    linear_forward(matrix(a.dt, m, e, e), matrix(a.xdbl, m, r, x), lw.dt_proj, Tensor{}, ctx);
  else
    std::fill_n(a.dt, m * e, 0.0f);  // Δ = softplus(dt_bias) per channel
  for (const Run& run : runs) {
    ScanArgs s;
    s.y = run_view(a.y, run, e, e);
    s.u = run_view(a.xc, run, e, e);
    s.dt = run_view(a.dt, run, e, e);
    s.A = lw.A;
    s.B = ssm_part(a.xdbl, col.B, run, c, lw.B);
    s.C = ssm_part(a.xdbl, col.C, run, c, lw.C);
    s.D = lw.D;
    s.z = run_view(a.xz + e, run, e, 2 * e);
    s.dt_bias = lw.dt_bias;
    selective_scan_forward(s, ctx);
  }
  linear_forward(matrix(mixer_out, m, d, d), matrix(a.y, m, e, e), lw.out_proj, lw.out_proj_bias, ctx);
}

// Runs embedding → layers → final norm over all rows, keeping the activations in ws.
void model_forward(const ModelWeights& w, const int32_t* ids, int64_t m, const std::vector<Run>& runs,
                   TrainWorkspace& ws, Context& ctx) {
  const MambaConfig& c = w.config;
  const int64_t d = c.d_model;
  float* mixer_out = ws.mixer_out.as<float>();
  embedding_forward(matrix(ws.residual.as<float>(), m, d, d), ids, m, w.embedding, ctx);
  for (int64_t i = 0; i <= c.n_layer; ++i) {
    const LayerActs a = layer_acts(ws, c, m, i);
    if (i > 0) std::memcpy(a.residual, a.residual - m * d, size_t(m * d) * sizeof(float));
    const Tensor norm = i < c.n_layer ? w.layers[size_t(i)].norm : w.norm_f;
    rmsnorm_forward(matrix(a.hidden, m, d, d), matrix(a.residual, m, d, d),
                    i > 0 ? matrix(mixer_out, m, d, d) : Tensor{}, norm, c.norm_eps, ctx);
    if (i < c.n_layer) mixer_forward(w.layers[size_t(i)], a, mixer_out, m, runs, c, ctx);
  }
}

// The backward of layer i's mixer and norm: consumes dres (the gradient of the residual after the layer) and
// leaves in it the gradient of the residual before the layer.
void layer_backward(const LayerWeights& lw, const LayerGrads& g, const LayerActs& a, TrainWorkspace& ws, int64_t m,
                    const std::vector<Run>& runs, const MambaConfig& c, Context& ctx) {
  const int64_t d = c.d_model, e = c.d_inner, n = c.d_state, r = c.dt_rank;
  const SsmColumns col = ssm_columns(c);
  const int64_t x = col.x;
  float* dres = ws.dresidual.as<float>();
  float* dxz = ws.dxz.as<float>();
  float* dxdbl = ws.dxdbl.as<float>();
  float* dxc = ws.dxc.as<float>();
  linear_backward(matrix(ws.dy.as<float>(), m, e, e), g.out_proj, g.out_proj_bias, matrix(dres, m, d, d),
                  matrix(a.y, m, e, e), lw.out_proj, ctx);

  float* dA = ws.dA.as<float>();
  std::fill_n(dA, e * n, 0.0f);
  for (const Run& run : runs) {
    ScanGradArgs s;
    s.du = run_view(dxc, run, e, e);
    s.ddt = run_view(ws.ddt.as<float>(), run, e, e);
    s.dB = ssm_part(dxdbl, col.B, run, c, g.B);
    s.dC = ssm_part(dxdbl, col.C, run, c, g.C);
    s.dz = run_view(dxz + e, run, e, 2 * e);
    s.dA = Tensor(dA, DType::f32, {e, n});
    s.dD = g.D;
    s.ddt_bias = g.dt_bias;
    s.dy = run_view(ws.dy.as<float>(), run, e, e);
    s.u = run_view(a.xc, run, e, e);
    s.dt = run_view(a.dt, run, e, e);
    s.A = lw.A;
    s.B = ssm_part(a.xdbl, col.B, run, c, lw.B);
    s.C = ssm_part(a.xdbl, col.C, run, c, lw.C);
    s.D = lw.D;
    s.z = run_view(a.xz + e, run, e, 2 * e);
    s.dt_bias = lw.dt_bias;
    selective_scan_backward(s, ctx);
  }
  const float* A = lw.A.f32();
  float* dA_log = g.A_log.f32();
  for (int64_t i = 0; i < e * n; ++i) dA_log[i] += dA[i] * A[i];

  if (c.selective_dt)
    linear_backward(matrix(dxdbl, m, r, x), g.dt_proj, Tensor{}, matrix(ws.ddt.as<float>(), m, e, e),
                    matrix(a.xdbl, m, r, x), lw.dt_proj, ctx);
  if (x > 0) {
    float* dxc_proj = ws.dxc_proj.as<float>();
    linear_backward(matrix(dxc_proj, m, e, e), g.x_proj, Tensor{}, matrix(dxdbl, m, x, x), matrix(a.xc, m, e, e),
                    lw.x_proj, ctx);
    for (int64_t i = 0; i < m * e; ++i) dxc[i] += dxc_proj[i];
  }
  for (const Run& run : runs)
    conv1d_causal_backward(run_view(dxz, run, e, 2 * e), g.conv_w, g.conv_b, Tensor{}, run_view(dxc, run, e, e),
                           run_view(a.xz, run, e, 2 * e), lw.conv_w, lw.conv_b, Tensor{}, /*apply_silu=*/true, ctx);
  float* dhidden = ws.dhidden.as<float>();
  linear_backward(matrix(dhidden, m, d, d), g.in_proj, g.in_proj_bias, matrix(dxz, m, 2 * e, 2 * e),
                  matrix(a.hidden, m, d, d), lw.in_proj, ctx);
  rmsnorm_backward(matrix(dres, m, d, d), g.norm, matrix(dhidden, m, d, d), matrix(a.residual, m, d, d), lw.norm,
                   c.norm_eps, ctx);
}

void check_inputs(const ModelWeights& w, const int32_t* ids, int64_t b, int64_t l, int64_t min_l) {
  MAMBA_CHECK(w.matrix_dtype == DType::f32, "lm_loss: training needs f32 weights, these hold {} matrices",
              dtype_name(w.matrix_dtype));
  MAMBA_CHECK(b >= 1, "lm_loss: batch size must be at least 1, got {}", b);
  MAMBA_CHECK(l >= min_l, "lm_loss: sequences need at least {} tokens to predict one, got {}", min_l, l);
  const int64_t v = w.config.vocab_size;
  for (int64_t i = 0; i < b * l; ++i)
    MAMBA_CHECK(ids[i] >= 0 && ids[i] < v, "lm_loss: token id {} at position {} of sequence {} is out of range [0, {})",
                ids[i], i % l, i / l, v);
}

// The target of each of the m = b·l positions: explicit ones, or the next token of the same document.
void fill_targets(int32_t* out, const int32_t* ids, const uint8_t* doc_start, const int32_t* targets, int64_t m,
                  int64_t l) {
  for (int64_t i = 0; i < m; ++i)
    out[i] = targets                                               ? std::max(targets[i], -1)
             : i % l != l - 1 && !(doc_start && doc_start[i + 1]) ? ids[i + 1]
                                                                   : -1;
}

// Forward and (when g is given) backward over b sequences of l tokens, adding scale · the gradient of the
// summed loss to g; returns the summed loss of the predicted tokens.
double sequences_pass(const ModelGrads* g, const ModelWeights& w, const int32_t* ids, const uint8_t* doc_start,
                      const int32_t* targets, int64_t b, int64_t l, float scale, TrainWorkspace& ws, Context& ctx) {
  const MambaConfig& c = w.config;
  const int64_t m = b * l, d = c.d_model;
  ws.reserve(c, m);
  const std::vector<Run> runs = make_runs(doc_start, b, l);
  model_forward(w, ids, m, runs, ws, ctx);
  fill_targets(ws.targets.data(), ids, doc_start, targets, m, l);
  const LayerActs top = layer_acts(ws, c, m, c.n_layer);
  float* dhidden = ws.dhidden.as<float>();
  const double sum = linear_cross_entropy(g ? matrix(dhidden, m, d, d) : Tensor{}, g ? g->lm_head : Tensor{},
                                          matrix(top.hidden, m, d, d), w.lm_head, ws.targets.data(), scale, ctx);
  if (!g) return sum;
  float* dres = ws.dresidual.as<float>();
  std::fill_n(dres, m * d, 0.0f);
  rmsnorm_backward(matrix(dres, m, d, d), g->norm_f, matrix(dhidden, m, d, d), matrix(top.residual, m, d, d),
                   w.norm_f, c.norm_eps, ctx);
  for (int64_t i = c.n_layer - 1; i >= 0; --i)
    layer_backward(w.layers[size_t(i)], g->layers[size_t(i)], layer_acts(ws, c, m, i), ws, m, runs, c, ctx);
  embedding_backward(g->embedding, matrix(dres, m, d, d), ids, m, ctx);
  return sum;
}

// The batch in groups of whole sequences (TrainWorkspace::rows_per_pass), each forward and backward; the mean
// of the loss over `count` predicted positions, its gradient added to grads.
double loss_over_groups(ParamGrads* grads, const ModelWeights& w, const int32_t* ids, const uint8_t* doc_start,
                        const int32_t* targets, int64_t b, int64_t l, int64_t count, TrainWorkspace& ws,
                        Context& ctx) {
  ModelGrads g;
  if (grads) {
    MAMBA_CHECK(grads->names.size() == w.named_parameters().size(),
                "lm_loss: the gradients were made for a different model ({} tensors, this one has {})",
                grads->names.size(), w.named_parameters().size());
    g = map_grads(*grads, w.config);
  }
  const int64_t group = std::clamp(ws.rows_per_pass / l, int64_t(1), b);
  double sum = 0;
  for (int64_t b0 = 0; b0 < b; b0 += group)
    sum += sequences_pass(grads ? &g : nullptr, w, ids + b0 * l, doc_start ? doc_start + b0 * l : nullptr,
                          targets ? targets + b0 * l : nullptr, std::min(group, b - b0), l, 1.0f / float(count), ws,
                          ctx);
  return sum / double(count);
}

}  // namespace

ParamGrads::ParamGrads(const ModelWeights& w) {
  const auto params = w.named_parameters();
  int64_t total = 0;
  for (const auto& p : params) total += p.second.numel();
  storage = Buffer(size_t(total) * sizeof(float));
  float* next = storage.as<float>();
  for (const auto& [name, t] : params) {
    names.push_back(name);
    grads.emplace_back(next, DType::f32, std::span<const int64_t>(t.shape.data(), size_t(t.ndim)));
    next += t.numel();
  }
  zero();
}

void ParamGrads::zero() {
  if (!storage.empty()) std::memset(storage.data(), 0, storage.bytes());
}

double ParamGrads::norm() const {
  double sq = 0;
  const float* p = storage.as<float>();
  for (size_t i = 0; i < storage.bytes() / sizeof(float); ++i) sq += double(p[i]) * double(p[i]);
  return std::sqrt(sq);
}

void ParamGrads::scale(float s) {
  float* p = storage.as<float>();
  for (size_t i = 0; i < storage.bytes() / sizeof(float); ++i) p[i] *= s;
}

void TrainWorkspace::reserve(const MambaConfig& c, int64_t rows) {
  const size_t m = size_t(rows), L = size_t(c.n_layer), d = size_t(c.d_model), e = size_t(c.d_inner);
  const size_t x = size_t(c.dt_rank + 2 * c.d_state);
  ensure(residual, (L + 1) * m * d);
  ensure(hidden, (L + 1) * m * d);
  ensure(xz, L * m * 2 * e);
  ensure(xc, L * m * e);
  ensure(xdbl, L * m * x);
  ensure(dt, L * m * e);
  ensure(y, L * m * e);
  ensure(mixer_out, m * d);
  ensure(dresidual, m * d);
  ensure(dhidden, m * d);
  ensure(dy, m * e);
  ensure(dxz, m * 2 * e);
  ensure(dxc, m * e);
  ensure(dxc_proj, m * e);
  ensure(dxdbl, m * x);
  ensure(ddt, m * e);
  ensure(dA, e * size_t(c.d_state));
  targets.resize(m);
  rows_ = rows;
}

double lm_loss(ParamGrads* grads, const ModelWeights& w, const int32_t* ids, int64_t b, int64_t l,
               TrainWorkspace& ws, Context& ctx) {
  return lm_loss_packed(grads, w, ids, nullptr, b, l, ws, ctx);
}

double lm_loss_packed(ParamGrads* grads, const ModelWeights& w, const int32_t* ids, const uint8_t* doc_start,
                      int64_t b, int64_t l, TrainWorkspace& ws, Context& ctx) {
  check_inputs(w, ids, b, l, 2);
  int64_t count = 0;
  for (int64_t i = 0; i < b * l; ++i) count += i % l != l - 1 && !(doc_start && doc_start[i + 1]);
  MAMBA_CHECK(count > 0, "lm_loss: no token to predict (every document holds a single token)");
  return loss_over_groups(grads, w, ids, doc_start, nullptr, b, l, count, ws, ctx);
}

double lm_loss_targets(ParamGrads* grads, const ModelWeights& w, const int32_t* ids, const int32_t* targets,
                       int64_t b, int64_t l, TrainWorkspace& ws, Context& ctx) {
  check_inputs(w, ids, b, l, 1);
  const int64_t v = w.config.vocab_size;
  int64_t count = 0;
  for (int64_t i = 0; i < b * l; ++i) {
    MAMBA_CHECK(targets[i] < v, "lm_loss: target {} at position {} of sequence {} is out of range [0, {})",
                targets[i], i % l, i / l, v);
    count += targets[i] >= 0;
  }
  MAMBA_CHECK(count > 0, "lm_loss: no token to predict (every target is negative)");
  return loss_over_groups(grads, w, ids, nullptr, targets, b, l, count, ws, ctx);
}

}  // namespace mambacpp
