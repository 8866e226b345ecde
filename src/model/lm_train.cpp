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

#include "core/cuda/device_memory.h"
#include "core/error.h"
#include "ops/ops.h"
#include "ops/ops_backward.h"
#include "ops/ops_train.h"

namespace mambacpp {
namespace {

// Every activation and gradient lives on the device of the workspace; the views below carry it.
Tensor matrix(float* p, int64_t rows, int64_t cols, int64_t ld, Device dev) {
  Tensor t(p, DType::f32, {rows, cols}, dev);
  t.stride[0] = ld;
  return t;
}

Tensor sequence(float* p, int64_t b, int64_t l, int64_t cols, int64_t ld, Device dev) {
  Tensor t(p, DType::f32, {b, l, cols}, dev);
  t.stride[1] = ld;
  t.stride[0] = l * ld;
  return t;
}

Tensor flat(float* p, int64_t count, Device dev) { return Tensor(p, DType::f32, {count}, dev); }

// An activation kept in `dtype` (f32, or the matrices' half dtype on cuda): a (rows, cols) view with row stride ld.
struct Act {
  void* p;
  DType dtype;
  Tensor view(int64_t rows, int64_t cols, int64_t ld, Device dev) const {
    Tensor t(p, dtype, {rows, cols}, dev);
    t.stride[0] = ld;
    return t;
  }
  Tensor flat(int64_t count, Device dev) const { return Tensor(p, dtype, {count}, dev); }
  // A (rows, len, cols) view of `rows` sequences beginning at row row0.
  Tensor sequence(int64_t row0, int64_t rows, int64_t len, int64_t cols, int64_t ld, Device dev) const {
    Tensor t(static_cast<char*>(p) + size_t(row0 * ld) * dtype_size(dtype), dtype, {rows, len, cols}, dev);
    t.stride[1] = ld;
    t.stride[0] = len * ld;
    return t;
  }
};

void ensure(Buffer& buf, size_t bytes, Device dev) {
  if (buf.bytes() < bytes || buf.device() != dev) buf = Buffer(bytes, dev);
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
    l.conv_w = Tensor(conv.data, DType::f32, {c.d_inner, c.d_conv}, conv.device);
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
Tensor run_view(float* p, const Run& r, int64_t cols, int64_t ld, Device dev) {
  return sequence(p + r.row0 * ld, r.rows, r.len, cols, ld, dev);
}

// Views of layer i's kept activations. hidden, xc and y are held in the workspace's half dtype when it has one:
// hidden and y feed only matrix products; xc feeds x_proj's product and is the scan's u. The conv writes xc and
// the scan y in that dtype themselves. The scan reads that one xc as its u, forward and backward: its kernels
// widen a half u to f32 where they use it.
struct LayerActs {
  float *residual, *xz, *xdbl, *dt;
  float* states;  // the scan's chunk_states of every run, one after the other, or nullptr (not kept)
  Act hidden, xc, y;
};

LayerActs layer_acts(TrainWorkspace& ws, const MambaConfig& c, int64_t m, int64_t i) {
  const int64_t d = c.d_model, e = c.d_inner, x = c.dt_rank + 2 * c.d_state;
  const DType h = ws.half_dtype();
  const size_t hs = dtype_size(h);
  char* y = static_cast<char*>(ws.y.data()) + size_t(i * m * e) * hs;
  LayerActs a;
  a.residual = ws.residual.as<float>() + i * m * d;
  a.xz = ws.xz.as<float>() + i * m * 2 * e;
  a.xdbl = ws.xdbl.as<float>() + i * m * x;
  a.dt = ws.dt.as<float>() + i * m * e;
  a.states = ws.scan_state_floats > 0 && i < c.n_layer ? ws.scan_states.as<float>() + i * ws.scan_state_floats
                                                        : nullptr;
  a.hidden = {static_cast<char*>(ws.hidden.data()) + size_t(i * m * d) * hs, h};
  a.xc = {static_cast<char*>(ws.xc.data()) + size_t(i * m * e) * hs, h};
  a.y = {y, h};
  return a;
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
Tensor ssm_part(float* xdbl, int64_t col, const Run& run, const MambaConfig& c, const Tensor& lti, Device dev) {
  return col >= 0 ? run_view(xdbl + col, run, c.d_state, c.x_proj_rows(), dev) : lti;
}

// Floats of the scan's chunk_states for one run.
int64_t run_state_floats(const Run& run, const MambaConfig& c) {
  return run.rows * scan_state_count(run.len) * c.d_state * c.d_inner;
}

// The scan's inputs for run `run` (u, dt, A, B, C, D, z, dt_bias), the same in the forward (ScanArgs) and the
// backward (ScanGradArgs) pass, and its chunk_states (written by the one, read by the other) when they are kept:
// states_at floats into the layer's.
template <typename Args>
void set_scan_inputs(Args& s, const LayerWeights& lw, const LayerActs& a, const Run& run, int64_t states_at,
                     const MambaConfig& c, const SsmColumns& col, Device dev) {
  const int64_t e = c.d_inner;
  if (a.states != nullptr)
    s.chunk_states = Tensor(a.states + states_at, DType::f32, {run.rows, scan_state_count(run.len), c.d_state, e}, dev);
  s.u = a.xc.sequence(run.row0, run.rows, run.len, e, e, dev);
  s.dt = run_view(a.dt, run, e, e, dev);
  s.A = lw.A;
  s.B = ssm_part(a.xdbl, col.B, run, c, lw.B, dev);
  s.C = ssm_part(a.xdbl, col.C, run, c, lw.C, dev);
  s.D = lw.D;
  s.z = run_view(a.xz + e, run, e, 2 * e, dev);
  s.dt_bias = lw.dt_bias;
}

void mixer_forward(const LayerWeights& lw, const LayerActs& a, float* mixer_out, int64_t m,
                   const std::vector<Run>& runs, const MambaConfig& c, Device dev, Context& ctx) {
  const int64_t d = c.d_model, e = c.d_inner, r = c.dt_rank;
  const SsmColumns col = ssm_columns(c);
  const int64_t x = col.x;
  const bool half = a.hidden.dtype != DType::f32;
  linear_forward(matrix(a.xz, m, 2 * e, 2 * e, dev), a.hidden.view(m, d, d, dev), lw.in_proj, lw.in_proj_bias, ctx);
  for (const Run& run : runs) {  // xc in f32, or only rounded to the half dtype (for x_proj and the scan)
    const Tensor xc = a.xc.sequence(run.row0, run.rows, run.len, e, e, dev);
    conv1d_causal_forward(half ? Tensor{} : xc, half ? xc : Tensor{}, Tensor{}, run_view(a.xz, run, e, 2 * e, dev),
                          lw.conv_w, lw.conv_b, Tensor{}, /*apply_silu=*/true, ctx);
  }
  if (x > 0) linear_forward(matrix(a.xdbl, m, x, x, dev), a.xc.view(m, e, e, dev), lw.x_proj, Tensor{}, ctx);
  if (c.selective_dt)
    linear_forward(matrix(a.dt, m, e, e, dev), matrix(a.xdbl, m, r, x, dev), lw.dt_proj, Tensor{}, ctx);
  else
    fill_zero(flat(a.dt, m * e, dev), ctx);  // Δ = softplus(dt_bias) per channel
  int64_t states_at = 0;
  for (const Run& run : runs) {
    ScanArgs s;
    s.y = a.y.sequence(run.row0, run.rows, run.len, e, e, dev);
    set_scan_inputs(s, lw, a, run, states_at, c, col, dev);
    selective_scan_forward(s, ctx);
    states_at += run_state_floats(run, c);
  }
  linear_forward(matrix(mixer_out, m, d, d, dev), a.y.view(m, e, e, dev), lw.out_proj, lw.out_proj_bias, ctx);
}

// Runs embedding → layers → final norm over all rows (ids in the workspace's memory), keeping the activations.
void model_forward(const ModelWeights& w, const int32_t* ids, int64_t m, const std::vector<Run>& runs,
                   TrainWorkspace& ws, Context& ctx) {
  const MambaConfig& c = w.config;
  const int64_t d = c.d_model;
  const Device dev = ws.device();
  float* mixer_out = ws.mixer_out.as<float>();
  embedding_forward(matrix(ws.residual.as<float>(), m, d, d, dev), ids, m, w.embedding, ctx);
  for (int64_t i = 0; i <= c.n_layer; ++i) {
    const LayerActs a = layer_acts(ws, c, m, i);
    const Tensor norm = i < c.n_layer ? w.layers[size_t(i)].norm : w.norm_f;
    // residual_i = residual_{i-1} + mixer_out, written by the norm itself (the stream before the add is kept).
    rmsnorm_forward(a.hidden.view(m, d, d, dev), matrix(a.residual, m, d, d, dev),
                    i > 0 ? matrix(a.residual - m * d, m, d, d, dev) : Tensor{},
                    i > 0 ? matrix(mixer_out, m, d, d, dev) : Tensor{}, norm, c.norm_eps, ctx);
    if (i < c.n_layer) mixer_forward(w.layers[size_t(i)], a, mixer_out, m, runs, c, dev, ctx);
  }
}

// The gradient of the residual rounded to the half dtype (written by the norms' backward), where out_proj's
// backward can read it (no out_proj bias, whose gradient needs the f32 one); undefined otherwise.
Tensor dres_half(const ModelWeights& w, TrainWorkspace& ws, int64_t m) {
  if (ws.half_dtype() == DType::f32 || w.layers.empty() || w.layers[0].out_proj_bias.defined()) return Tensor{};
  return Act{ws.dresidual_half.data(), ws.half_dtype()}.view(m, w.config.d_model, w.config.d_model, ws.device());
}

// The backward of layer i's mixer and norm: consumes dres (the gradient of the residual after the layer) and
// leaves in it the gradient of the residual before the layer. dres16: its half copy for out_proj's backward
// (or undefined), which the norm's backward refreshes for the layer below unless this is the last (layer 0).
void layer_backward(const LayerWeights& lw, const LayerGrads& g, const LayerActs& a, const Tensor& dres16,
                    bool last, TrainWorkspace& ws, int64_t m, const std::vector<Run>& runs, const MambaConfig& c,
                    Context& ctx) {
  const int64_t d = c.d_model, e = c.d_inner, n = c.d_state, r = c.dt_rank;
  const SsmColumns col = ssm_columns(c);
  const int64_t x = col.x;
  const Device dev = ws.device();
  float* dres = ws.dresidual.as<float>();
  float* dxz = ws.dxz.as<float>();
  float* dxdbl = ws.dxdbl.as<float>();
  float* dxc = ws.dxc.as<float>();
  float* dy = ws.dy.as<float>();
  // With a half dtype, the scan writes ddt rounded to it: dt_proj's backward reads it so. So is dz, beside the
  // conv's half dx, where in_proj's backward reads dxz rounded (no in_proj bias, whose gradient needs f32).
  const Act ddt{ws.ddt.data(), c.selective_dt ? ws.half_dtype() : DType::f32};
  const bool dxz_half = ws.half_dtype() != DType::f32 && !lw.in_proj_bias.defined();
  const Act dxz16{ws.dxz_half.data(), ws.half_dtype()};
  const Act dz = dxz_half ? Act{static_cast<char*>(ws.dxz_half.data()) + size_t(e) * dtype_size(dxz16.dtype), dxz16.dtype}
                          : Act{dxz + e, DType::f32};
  linear_backward(matrix(dy, m, e, e, dev), g.out_proj, g.out_proj_bias,
                  dres16.defined() ? dres16 : matrix(dres, m, d, d, dev), a.y.view(m, e, e, dev), lw.out_proj, ctx);

  const Tensor dA(ws.dA.data(), DType::f32, {e, n}, dev);
  fill_zero(dA, ctx);
  int64_t states_at = 0;
  for (const Run& run : runs) {
    ScanGradArgs s;
    s.du = run_view(dxc, run, e, e, dev);
    s.ddt = ddt.sequence(run.row0, run.rows, run.len, e, e, dev);
    s.dB = ssm_part(dxdbl, col.B, run, c, g.B, dev);
    s.dC = ssm_part(dxdbl, col.C, run, c, g.C, dev);
    s.dz = dz.sequence(run.row0, run.rows, run.len, e, 2 * e, dev);
    s.dA = dA;
    s.dD = g.D;
    s.ddt_bias = g.dt_bias;
    s.dy = run_view(dy, run, e, e, dev);
    set_scan_inputs(s, lw, a, run, states_at, c, col, dev);
    selective_scan_backward(s, ctx);
    states_at += run_state_floats(run, c);
  }
  add_product_into(g.A_log, dA, lw.A, ctx);  // A = −exp(A_log): dA_log = dA ⊙ A

  if (c.selective_dt)
    linear_backward(matrix(dxdbl, m, r, x, dev), g.dt_proj, Tensor{}, ddt.view(m, e, e, dev),
                    matrix(a.xdbl, m, r, x, dev), lw.dt_proj, ctx);
  if (x > 0)  // dxc (the scan's du) += x_proj's input gradient, added by the product itself
    linear_backward(matrix(dxc, m, e, e, dev), g.x_proj, Tensor{}, matrix(dxdbl, m, x, x, dev),
                    a.xc.view(m, e, e, dev), lw.x_proj, /*accumulate_dx=*/true, ctx);
  for (const Run& run : runs)
    conv1d_causal_backward(dxz_half ? dxz16.sequence(run.row0, run.rows, run.len, e, 2 * e, dev)
                                    : run_view(dxz, run, e, 2 * e, dev),
                           g.conv_w, g.conv_b, Tensor{}, run_view(dxc, run, e, e, dev),
                           run_view(a.xz, run, e, 2 * e, dev), lw.conv_w, lw.conv_b, Tensor{}, /*apply_silu=*/true,
                           ctx);
  float* dhidden = ws.dhidden.as<float>();
  linear_backward(matrix(dhidden, m, d, d, dev), g.in_proj, g.in_proj_bias,
                  dxz_half ? dxz16.view(m, 2 * e, 2 * e, dev) : matrix(dxz, m, 2 * e, 2 * e, dev),
                  a.hidden.view(m, d, d, dev), lw.in_proj, ctx);
  rmsnorm_backward(matrix(dres, m, d, d, dev), last ? Tensor{} : dres16, g.norm, matrix(dhidden, m, d, d, dev),
                   matrix(a.residual, m, d, d, dev), lw.norm, c.norm_eps, ctx);
}

void check_inputs(const ModelWeights& w, const TrainWorkspace& ws, const int32_t* ids, int64_t b, int64_t l,
                  int64_t min_l) {
  const Device dev = w.embedding.device;
  MAMBA_CHECK(ws.device() == dev, "lm_loss: the weights are on {} but the training workspace is on {}",
              device_name(dev), device_name(ws.device()));
  MAMBA_CHECK(w.matrix_dtype == DType::f32 || dev == Device::cuda,
              "lm_loss: training on the CPU needs f32 weights, these hold {} matrices", dtype_name(w.matrix_dtype));
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

// Forward and (when g is given) backward over b sequences of l tokens (host ids), adding scale · the gradient of
// the summed loss to g; returns the summed loss of the predicted tokens.
double sequences_pass(const ModelGrads* g, const ModelWeights& w, const int32_t* ids, const uint8_t* doc_start,
                      const int32_t* targets, int64_t b, int64_t l, float scale, TrainWorkspace& ws, Context& ctx) {
  const MambaConfig& c = w.config;
  const int64_t m = b * l, d = c.d_model;
  const Device dev = ws.device();
  ws.reserve(c, m, ws.device() == Device::cuda ? w.matrix_dtype : DType::f32);
  const std::vector<Run> runs = make_runs(doc_start, b, l);
  // The scan's chunk_states (TrainWorkspace::keep_scan_states): used by the CUDA kernel at n ≤ 64; not for runs
  // shorter than 16 tokens on average, where they would outgrow an f32 (m, e) activation.
  int64_t states = 0;
  for (const Run& run : runs) states += run_state_floats(run, c);
  const bool keep = ws.keep_scan_states && dev == Device::cuda && c.d_state <= 64 && int64_t(runs.size()) * 16 <= m;
  ws.scan_state_floats = keep ? states : 0;
  if (keep) ensure(ws.scan_states, size_t(c.n_layer * states) * sizeof(float), dev);
  fill_targets(ws.targets.data(), ids, doc_start, targets, m, l);
  const int32_t* dev_ids = ids;
  const int32_t* dev_targets = ws.targets.data();
  if (dev != Device::cpu) {  // the ids and targets go to the device once per group
    copy_memory_async(ws.ids.data(), dev, ids, Device::cpu, size_t(m) * sizeof(int32_t), ctx);
    copy_memory_async(ws.ids.as<int32_t>() + m, dev, ws.targets.data(), Device::cpu, size_t(m) * sizeof(int32_t),
                      ctx);
    dev_ids = ws.ids.as<int32_t>();
    dev_targets = dev_ids + m;
  }
  model_forward(w, dev_ids, m, runs, ws, ctx);
  const LayerActs top = layer_acts(ws, c, m, c.n_layer);
  float* dhidden = ws.dhidden.as<float>();
  const double sum =
      linear_cross_entropy(g ? matrix(dhidden, m, d, d, dev) : Tensor{}, g ? g->lm_head : Tensor{},
                           top.hidden.view(m, d, d, dev), w.lm_head, dev_targets, scale, ctx);
  if (!g) return sum;
  float* dres = ws.dresidual.as<float>();
  fill_zero(flat(dres, m * d, dev), ctx);
  const Tensor dres16 = dres_half(w, ws, m);  // for each out_proj's backward
  rmsnorm_backward(matrix(dres, m, d, d, dev), dres16, g->norm_f, matrix(dhidden, m, d, d, dev),
                   matrix(top.residual, m, d, d, dev), w.norm_f, c.norm_eps, ctx);
  for (int64_t i = c.n_layer - 1; i >= 0; --i)
    layer_backward(w.layers[size_t(i)], g->layers[size_t(i)], layer_acts(ws, c, m, i), dres16, i == 0, ws, m, runs,
                   c, ctx);
  embedding_backward(g->embedding, matrix(dres, m, d, d, dev), dev_ids, m, ctx);
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
    MAMBA_CHECK(grads->storage.device() == ws.device(), "lm_loss: the gradients are on {} but the model is on {}",
                device_name(grads->storage.device()), device_name(ws.device()));
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
  const Device dev = w.embedding.device;
  int64_t total = 0;
  for (const auto& p : params) total += p.second.numel();
  storage = Buffer(size_t(total) * sizeof(float), dev);
  float* next = storage.as<float>();
  for (const auto& [name, t] : params) {
    names.push_back(name);
    grads.emplace_back(next, DType::f32, std::span<const int64_t>(t.shape.data(), size_t(t.ndim)), dev);
    next += t.numel();
  }
  zero_memory(storage.data(), dev, storage.bytes());
}

Tensor ParamGrads::all() const {
  return Tensor(const_cast<void*>(storage.data()), DType::f32, {int64_t(storage.bytes() / sizeof(float))},
                storage.device());
}

void ParamGrads::zero(Context& ctx) { fill_zero(all(), ctx); }

double ParamGrads::norm(Context& ctx) const { return std::sqrt(sum_squares(all(), 1.0f, ctx)); }

void ParamGrads::scale(float s, Context& ctx) { scale_inplace(all(), s, ctx); }

void TrainWorkspace::reserve(const MambaConfig& c, int64_t rows, DType half) {
  const size_t m = size_t(rows), L = size_t(c.n_layer), d = size_t(c.d_model), e = size_t(c.d_inner);
  const size_t x = size_t(c.dt_rank + 2 * c.d_state), f = sizeof(float), h = dtype_size(half);
  const Device dev = device_;
  if (half != half_)
    rows_ = 0, half_ = half, hidden = Buffer(), xc = Buffer(), y = Buffer(), dresidual_half = Buffer(),
    dxz_half = Buffer();
  ensure(residual, (L + 1) * m * d * f, dev);
  ensure(hidden, (L + 1) * m * d * h, dev);
  ensure(xz, L * m * 2 * e * f, dev);
  ensure(xc, L * m * e * h, dev);
  ensure(xdbl, L * m * x * f, dev);
  ensure(dt, L * m * e * f, dev);
  ensure(y, L * m * e * h, dev);
  if (half != DType::f32) {
    ensure(dresidual_half, m * d * h, dev);
    ensure(dxz_half, m * 2 * e * h, dev);
  }
  ensure(mixer_out, m * d * f, dev);
  ensure(dresidual, m * d * f, dev);
  ensure(dhidden, m * d * f, dev);
  ensure(dy, m * e * f, dev);
  ensure(dxz, m * 2 * e * f, dev);
  ensure(dxc, m * e * f, dev);
  ensure(dxdbl, m * x * f, dev);
  ensure(ddt, m * e * f, dev);
  ensure(dA, e * size_t(c.d_state) * f, dev);
  if (dev != Device::cpu) ensure(ids, 2 * m * sizeof(int32_t), dev);
  targets.resize(m);
  rows_ = rows;
}

double lm_loss(ParamGrads* grads, const ModelWeights& w, const int32_t* ids, int64_t b, int64_t l,
               TrainWorkspace& ws, Context& ctx) {
  return lm_loss_packed(grads, w, ids, nullptr, b, l, ws, ctx);
}

double lm_loss_packed(ParamGrads* grads, const ModelWeights& w, const int32_t* ids, const uint8_t* doc_start,
                      int64_t b, int64_t l, TrainWorkspace& ws, Context& ctx) {
  check_inputs(w, ws, ids, b, l, 2);
  int64_t count = 0;
  for (int64_t i = 0; i < b * l; ++i) count += i % l != l - 1 && !(doc_start && doc_start[i + 1]);
  MAMBA_CHECK(count > 0, "lm_loss: no token to predict (every document holds a single token)");
  return loss_over_groups(grads, w, ids, doc_start, nullptr, b, l, count, ws, ctx);
}

double lm_loss_targets(ParamGrads* grads, const ModelWeights& w, const int32_t* ids, const int32_t* targets,
                       int64_t b, int64_t l, TrainWorkspace& ws, Context& ctx) {
  check_inputs(w, ws, ids, b, l, 1);
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
