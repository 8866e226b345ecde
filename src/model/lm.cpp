// The Mamba-1 LM forward pass (see lm.h). Data flow per chunk of tokens, m = b·lc rows:
//   residual = embed(ids)                                   (m, d) f32, the residual stream
//   per layer i: hidden = RMSNorm_i(residual += mixer_out)  (no add before layer 0)
//     xz  = in_proj(hidden)            (m, 2e): x = xz[:, :e], z = xz[:, e:]
//     xc  = SiLU(conv1d(x))            (b, lc, e), conv state carried in `state`
//     xdbl = x_proj(xc)                (m, r + 2n): dt_low = [:, :r], B = [:, r:r+n], C = [:, r+n:]
//     dt  = dt_proj(dt_low)            (m, e), its bias applied inside the scan before softplus
//     y   = scan(xc, dt, A, B, C, D, z) (b, lc, e), SSM state carried in `state`
//   The ablations without selection (config.h) keep only the selective parts in xdbl; a time-invariant B or C
//   is the layer's (e, n) parameter, and a time-invariant Δ a dt of zeros (Δ = softplus(dt_bias)).
//     mixer_out = out_proj(y)          (m, d)
//   hidden = RMSNorm_f(residual += mixer_out); logits = head(hidden) for the positions asked for.
//
// Dtypes: the residual stream, the norms' sums, mixer_out and the state are f32. With bf16/f16 matrices on cuda
// and more than kLinearFewRows rows, an op that makes a product's input writes it in the matrices' dtype (hidden,
// y, and the conv a half copy of xc), while xz, xc, xdbl and dt are f32. In the half-activations form
// (mixer_forward_half; ForwardOptions::half_activations, for the selective model with its four mixer matrices in
// one half dtype and no in_proj bias) every activation from hidden to y is held in that dtype, as mamba_ssm
// keeps them under bf16: xz, xdbl and dt are cuBLASLt's outputs (f32 sums rounded once), xc the conv's, and the
// conv and the scan widen their inputs to f32 as they load them.
#include "model/lm.h"

#include <algorithm>

#include "core/cuda/device_memory.h"
#include "core/error.h"
#include "ops/ops.h"

namespace mambacpp {

namespace {

// Views on the device of the current call (f32 unless a dtype is given).
struct Views {
  Device dev;
  Tensor matrix(void* p, int64_t rows, int64_t cols, int64_t row_stride, DType t = DType::f32) const {
    Tensor v(p, t, {rows, cols}, dev);
    v.stride[0] = row_stride;
    return v;
  }
  Tensor sequence(void* p, int64_t b, int64_t l, int64_t cols, int64_t row_stride, DType t = DType::f32) const {
    Tensor v(p, t, {b, l, cols}, dev);
    v.stride[1] = row_stride;
    v.stride[0] = l * row_stride;
    return v;
  }
};

// The dtype in which an op writes the m rows that the product with w reads: w's half dtype where cuBLASLt
// multiplies them (on cuda, more than kLinearFewRows rows), so that the op rounds its output once instead of the
// product running a conversion pass over it (the same values: linear_forward rounds an f32 x to nearest even,
// as the ops do); otherwise f32.
DType product_input(const Tensor& w, int64_t m, Device dev) {
  return dev == Device::cuda && w.dtype != DType::f32 && m > kLinearFewRows ? w.dtype : DType::f32;
}

void ensure(Buffer& buf, size_t bytes, Device dev) {
  if (buf.bytes() < bytes) buf = Buffer(bytes, dev);
}

// The scan's dt, B and C for the m = b·lc rows of xdbl (x_proj's output, x = x_proj_rows() columns) and ws.dt:
// views into them where selective, else the time-invariant forms.
void ssm_inputs(ScanArgs& a, const LayerWeights& lw, Workspace& ws, int64_t b, int64_t lc, const MambaConfig& c) {
  const Views vw{ws.device()};
  const int64_t e = c.d_inner, n = c.d_state, x = c.x_proj_rows();
  float* xdbl = ws.xdbl.as<float>();
  int64_t col = c.selective_dt ? c.dt_rank : 0;
  // A time-invariant Δ: every token reads the same zeros (a view with zero strides), and dt_bias is Δ.
  a.dt = c.selective_dt ? vw.sequence(ws.dt.data(), b, lc, e, e) : vw.sequence(ws.zeros.data(), b, lc, e, 0);
  a.B = c.selective_B ? vw.sequence(xdbl + col, b, lc, n, x) : lw.B;
  col += c.selective_B ? n : 0;
  a.C = c.selective_C ? vw.sequence(xdbl + col, b, lc, n, x) : lw.C;
}

// The half dtype of a layer's activations in the half-activations form, or f32 where it does not apply: on cuda,
// more than kLinearFewRows rows (so every product runs on cuBLASLt), in_proj, x_proj, dt_proj and out_proj held
// in one half dtype, no in_proj bias (a half y takes none), and Δ, B and C selective (x_proj's output is then
// dt_low, B and C, all half).
DType half_activations(const LayerWeights& lw, int64_t m, Device dev, const MambaConfig& c,
                       const ForwardOptions& opt) {
  if (!opt.half_activations || dev != Device::cuda || m <= kLinearFewRows) return DType::f32;
  if (!c.selective_dt || !c.selective_B || !c.selective_C || lw.in_proj_bias.defined()) return DType::f32;
  const DType t = lw.in_proj.dtype;
  const bool same = lw.x_proj.dtype == t && lw.dt_proj.dtype == t && lw.out_proj.dtype == t;
  return (t == DType::bf16 || t == DType::f16) && same ? t : DType::f32;
}

// The mixer with its activations in the half dtype t (see the file comment). hidden is already in t (the norm
// writes it so for in_proj); xc goes to ws.xc_half, and xz, xdbl, dt and y fill the start of their f32-sized
// buffers.
void mixer_forward_half(const LayerWeights& lw, int64_t layer, RecurrentState& state, Workspace& ws, int64_t b,
                        int64_t lc, const MambaConfig& c, DType t, Context& ctx) {
  const int64_t m = b * lc, d = c.d_model, e = c.d_inner, r = c.dt_rank, n = c.d_state, x = c.x_proj_rows();
  const Views vw{ws.device()};
  const int64_t hs = int64_t(dtype_size(t));
  char* xz = static_cast<char*>(ws.xz.data());
  char* xdbl = static_cast<char*>(ws.xdbl.data());
  linear_forward(vw.matrix(xz, m, 2 * e, 2 * e, t), vw.matrix(ws.hidden.data(), m, d, d, t), lw.in_proj, Tensor{},
                 ctx);
  // xc = SiLU(conv1d(x)), only in t: x_proj multiplies it and the scan reads it as u.
  const Tensor xc = vw.sequence(ws.xc_half.data(), b, lc, e, e, t);
  conv1d_causal_forward(Tensor{}, xc, state.conv(layer), vw.sequence(xz, b, lc, e, 2 * e, t), lw.conv_w, lw.conv_b,
                        state.conv(layer), /*apply_silu=*/true, ctx);
  linear_forward(vw.matrix(xdbl, m, x, x, t), vw.matrix(xc.data, m, e, e, t), lw.x_proj, Tensor{}, ctx);
  // dt_low = xdbl[:, :r], read in place (row stride x).
  linear_forward(vw.matrix(ws.dt.data(), m, e, e, t), vw.matrix(xdbl, m, r, x, t), lw.dt_proj, Tensor{}, ctx);

  ScanArgs a;
  a.y = vw.sequence(ws.y.data(), b, lc, e, e, t);
  a.state_out = state.ssm(layer);
  a.state_in = state.ssm(layer);
  a.u = xc;
  a.dt = vw.sequence(ws.dt.data(), b, lc, e, e, t);
  a.A = lw.A;
  a.B = vw.sequence(xdbl + r * hs, b, lc, n, x, t);
  a.C = vw.sequence(xdbl + (r + n) * hs, b, lc, n, x, t);
  a.D = lw.D;
  a.z = vw.sequence(xz + e * hs, b, lc, e, 2 * e, t);
  a.dt_bias = lw.dt_bias;
  a.dt_softplus = true;
  selective_scan_forward(a, ctx);

  linear_forward(vw.matrix(ws.mixer_out.data(), m, d, d), vw.matrix(ws.y.data(), m, e, e, t), lw.out_proj,
                 lw.out_proj_bias, ctx);
}

void mixer_forward(const LayerWeights& lw, int64_t layer, RecurrentState& state, Workspace& ws, int64_t b,
                   int64_t lc, const MambaConfig& c, const ForwardOptions& opt, Context& ctx) {
  const DType half = half_activations(lw, b * lc, ws.device(), c, opt);
  if (half != DType::f32) return mixer_forward_half(lw, layer, state, ws, b, lc, c, half, ctx);
  const int64_t m = b * lc, d = c.d_model, e = c.d_inner, r = c.dt_rank, x = c.x_proj_rows();
  const Views vw{ws.device()};
  const auto matrix = [&](void* p, int64_t rows, int64_t cols, int64_t ld) { return vw.matrix(p, rows, cols, ld); };
  const auto sequence = [&](void* p, int64_t bb, int64_t l, int64_t cols, int64_t ld) {
    return vw.sequence(p, bb, l, cols, ld);
  };
  float* xz = ws.xz.as<float>();
  float* xdbl = ws.xdbl.as<float>();
  const Device dev = ws.device();
  const Tensor hidden = vw.matrix(ws.hidden.data(), m, d, d, product_input(lw.in_proj, m, dev));
  linear_forward(matrix(xz, m, 2 * e, 2 * e), hidden, lw.in_proj, lw.in_proj_bias, ctx);

  // xc in f32 for the scan, and for x_proj also rounded by the conv where the product reads it so.
  const Tensor xc = sequence(ws.xc.data(), b, lc, e, e);
  const DType xc_t = x > 0 ? product_input(lw.x_proj, m, dev) : DType::f32;
  const Tensor xc_half = xc_t == DType::f32 ? Tensor{} : vw.sequence(ws.xc_half.data(), b, lc, e, e, xc_t);
  conv1d_causal_forward(xc, xc_half, state.conv(layer), sequence(xz, b, lc, e, 2 * e), lw.conv_w, lw.conv_b,
                        state.conv(layer), /*apply_silu=*/true, ctx);

  if (x > 0) {
    void* x_in = xc_half.defined() ? ws.xc_half.data() : ws.xc.data();
    linear_forward(matrix(xdbl, m, x, x), vw.matrix(x_in, m, e, e, xc_t), lw.x_proj, Tensor{}, ctx);
  }
  if (c.selective_dt)
    linear_forward(matrix(ws.dt.data(), m, e, e), matrix(xdbl, m, r, x), lw.dt_proj, Tensor{}, ctx);

  // y in the dtype out_proj reads it in.
  const DType y_t = product_input(lw.out_proj, m, dev);
  ScanArgs a;
  a.y = vw.sequence(ws.y.data(), b, lc, e, e, y_t);
  a.state_out = state.ssm(layer);
  a.state_in = state.ssm(layer);
  a.u = xc;
  ssm_inputs(a, lw, ws, b, lc, c);
  a.A = lw.A;
  a.D = lw.D;
  a.z = sequence(xz + e, b, lc, e, 2 * e);
  a.dt_bias = lw.dt_bias;
  a.dt_softplus = true;
  selective_scan_forward(a, ctx);

  linear_forward(matrix(ws.mixer_out.data(), m, d, d), vw.matrix(ws.y.data(), m, e, e, y_t), lw.out_proj,
                 lw.out_proj_bias, ctx);
}

// Writes the logits this chunk contributes: every position (into the (b, l, v) output at offset t0) or,
// for the chunk that holds the last token, the last position of each sequence (into (b, v)).
void head_forward(Tensor logits, const ModelWeights& w, Workspace& ws, int64_t b, int64_t lc, int64_t t0,
                  int64_t l, const ForwardOptions& opt, Context& ctx) {
  const int64_t d = w.config.d_model, v = w.config.vocab_size;
  const Views vw{ws.device()};
  // hidden as the final norm wrote it (body_forward).
  const DType ht = product_input(w.lm_head, b * lc, ws.device());
  char* hidden = static_cast<char*>(ws.hidden.data());
  const auto row = [&](int64_t i) { return hidden + i * d * int64_t(dtype_size(ht)); };
  if (opt.logits_for == LogitsFor::all_positions) {
    for (int64_t bi = 0; bi < b; ++bi)
      linear_forward(vw.matrix(logits.f32() + (bi * l + t0) * v, lc, v, v), vw.matrix(row(bi * lc), lc, d, d, ht),
                     w.lm_head, Tensor{}, ctx);
  } else if (opt.logits_for == LogitsFor::last_position && t0 + lc == l) {
    // The last position of each sequence: rows lc-1, 2·lc-1, … of hidden, one row stride of lc·d.
    linear_forward(vw.matrix(logits.f32(), b, v, v), vw.matrix(row(lc - 1), b, d, lc * d, ht), w.lm_head, Tensor{},
                   ctx);
  }
}

void check_logits_shape(const Tensor& logits, int64_t b, int64_t l, int64_t v, LogitsFor mode, Device dev) {
  if (mode == LogitsFor::none) return;
  const bool all = mode == LogitsFor::all_positions;
  MAMBA_CHECK(!logits.defined() || logits.device == dev, "lm_forward: logits are on {} but the model is on {}",
              device_name(logits.device), device_name(dev));
  const bool ok = logits.defined() && logits.dtype == DType::f32 && logits.is_contiguous() &&
                  (all ? logits.ndim == 3 && logits.shape[0] == b && logits.shape[1] == l && logits.shape[2] == v
                       : logits.ndim == 2 && logits.shape[0] == b && logits.shape[1] == v);
  MAMBA_CHECK(ok, "lm_forward: logits must be a contiguous f32 tensor of shape {}, got {}",
              all ? fmt::format("[{}, {}, {}]", b, l, v) : fmt::format("[{}, {}]", b, v),
              logits.defined() ? logits.shape_str() : std::string("none"));
}

// Every part of a forward call on the weights' device.
void check_devices(const RecurrentState& state, const ModelWeights& w, const Workspace& ws) {
  const Device dev = w.embedding.device;
  MAMBA_CHECK(state.device() == dev && ws.device() == dev,
              "lm_forward: the model is on {}, the recurrent state on {} and the workspace on {}; they must share "
              "one device",
              device_name(dev), device_name(state.device()), device_name(ws.device()));
}

// The layers and the final norm over the m = b·lc rows whose ids are in ws.ids; leaves ws.hidden normalised.
void body_forward(RecurrentState& state, const ModelWeights& w, const int32_t* ids, int64_t b, int64_t lc,
                  const ForwardOptions& opt, Workspace& ws, Context& ctx) {
  const MambaConfig& c = w.config;
  const int64_t m = b * lc, d = c.d_model;
  const Views vw{ws.device()};
  const Tensor residual = vw.matrix(ws.residual.data(), m, d, d);
  const Tensor mixer_out = vw.matrix(ws.mixer_out.data(), m, d, d);
  // hidden in the dtype of the product that reads it (in_proj, or the head after the final norm).
  const auto hidden = [&](const Tensor& w_next) {
    return vw.matrix(ws.hidden.data(), m, d, d, product_input(w_next, m, ws.device()));
  };
  embedding_forward(residual, ids, m, w.embedding, ctx);
  for (int64_t i = 0; i < c.n_layer; ++i) {
    const LayerWeights& lw = w.layers[size_t(i)];
    rmsnorm_forward(hidden(lw.in_proj), residual, i == 0 ? Tensor{} : mixer_out, lw.norm, c.norm_eps, ctx);
    mixer_forward(lw, i, state, ws, b, lc, c, opt, ctx);
  }
  rmsnorm_forward(hidden(w.lm_head), residual, c.n_layer > 0 ? mixer_out : Tensor{}, w.norm_f, c.norm_eps, ctx);
}

}  // namespace

RecurrentState::RecurrentState(const MambaConfig& cfg, int64_t batch, Device device) : cfg_(cfg), batch_(batch) {
  MAMBA_CHECK(batch >= 1, "batch size must be at least 1, got {}", batch);
  conv_ = Buffer(size_t(cfg.n_layer * batch * cfg.d_inner * (cfg.d_conv - 1)) * sizeof(float), device);
  ssm_ = Buffer(size_t(cfg.n_layer * batch * cfg.d_inner * cfg.d_state) * sizeof(float), device);
  reset();
}

Tensor RecurrentState::conv(int64_t layer) {
  const int64_t per = batch_ * cfg_.d_inner * (cfg_.d_conv - 1);
  return Tensor(conv_.as<float>() + layer * per, DType::f32, {batch_, cfg_.d_inner, cfg_.d_conv - 1}, device());
}

Tensor RecurrentState::ssm(int64_t layer) {
  const int64_t per = batch_ * cfg_.d_inner * cfg_.d_state;
  return Tensor(ssm_.as<float>() + layer * per, DType::f32, {batch_, cfg_.d_inner, cfg_.d_state}, device());
}

void RecurrentState::reset() {
  if (!conv_.empty()) zero_memory(conv_.data(), device(), conv_.bytes());
  if (!ssm_.empty()) zero_memory(ssm_.data(), device(), ssm_.bytes());
}

void RecurrentState::copy_row_from(const RecurrentState& src, int64_t src_row, int64_t dst_row) {
  MAMBA_CHECK(src.cfg_.n_layer == cfg_.n_layer && src.cfg_.d_inner == cfg_.d_inner &&
                  src.cfg_.d_state == cfg_.d_state && src.cfg_.d_conv == cfg_.d_conv,
              "copy_row_from: states of different model shapes");
  MAMBA_CHECK(src_row >= 0 && src_row < src.batch_ && dst_row >= 0 && dst_row < batch_,
              "copy_row_from: row {} -> {} out of range ({} -> {} rows)", src_row, dst_row, src.batch_, batch_);
  MAMBA_CHECK(src.device() == device(), "copy_row_from: states on {} and {}", device_name(src.device()),
              device_name(device()));
  const int64_t cw = cfg_.d_inner * (cfg_.d_conv - 1), sw = cfg_.d_inner * cfg_.d_state;
  for (int64_t i = 0; i < cfg_.n_layer; ++i) {
    copy_memory(conv_.as<float>() + (i * batch_ + dst_row) * cw, device(),
                src.conv_.as<float>() + (i * src.batch_ + src_row) * cw, device(), size_t(cw) * sizeof(float));
    copy_memory(ssm_.as<float>() + (i * batch_ + dst_row) * sw, device(),
                src.ssm_.as<float>() + (i * src.batch_ + src_row) * sw, device(), size_t(sw) * sizeof(float));
  }
}

void Workspace::reserve(const MambaConfig& c, int64_t rows) {
  if (!c.selective_dt && zeros.bytes() < size_t(c.d_inner) * sizeof(float)) {
    zeros = Buffer(size_t(c.d_inner) * sizeof(float), device_);
    zero_memory(zeros.data(), device_, zeros.bytes());
  }
  if (rows <= rows_) return;
  const size_t m = size_t(rows), f = sizeof(float);
  ensure(residual, m * c.d_model * f, device_);
  ensure(hidden, m * c.d_model * f, device_);
  ensure(xz, m * 2 * c.d_inner * f, device_);
  ensure(xc, m * c.d_inner * f, device_);
  if (device_ == Device::cuda) ensure(xc_half, m * c.d_inner * sizeof(uint16_t), device_);
  ensure(xdbl, m * (c.dt_rank + 2 * c.d_state) * f, device_);
  ensure(dt, m * c.d_inner * f, device_);
  ensure(y, m * c.d_inner * f, device_);
  ensure(mixer_out, m * c.d_model * f, device_);
  ensure(ids, m * sizeof(int32_t), device_);
  rows_ = rows;
}

int64_t Workspace::bytes() const {
  int64_t total = 0;
  for (const Buffer* b : {&residual, &hidden, &xz, &xc, &xc_half, &xdbl, &dt, &y, &mixer_out, &ids, &zeros})
    total += int64_t(b->bytes());
  return total;
}

void lm_forward(Tensor logits, RecurrentState& state, const ModelWeights& w, const int32_t* ids, int64_t l,
                const ForwardOptions& opt, Workspace& ws, Context& ctx) {
  const MambaConfig& c = w.config;
  const int64_t b = state.batch(), v = c.vocab_size;
  MAMBA_CHECK(l >= 1, "lm_forward: empty input (no tokens)");
  MAMBA_CHECK(opt.chunk >= 1, "lm_forward: chunk must be at least 1, got {}", opt.chunk);
  check_devices(state, w, ws);
  check_logits_shape(logits, b, l, v, opt.logits_for, ws.device());
  for (int64_t i = 0; i < b * l; ++i)
    MAMBA_CHECK(ids[i] >= 0 && ids[i] < v, "token id {} at position {} of sequence {} is out of range [0, {})",
                ids[i], i % l, i / l, v);

  const int64_t chunk = std::min(opt.chunk, l);
  ws.reserve(c, b * chunk);
  std::vector<int32_t> chunk_ids(size_t(b * chunk));
  for (int64_t t0 = 0; t0 < l; t0 += chunk) {
    const int64_t lc = std::min(chunk, l - t0), m = b * lc;
    for (int64_t bi = 0; bi < b; ++bi) std::copy_n(ids + bi * l + t0, lc, chunk_ids.begin() + bi * lc);
    copy_memory_async(ws.ids.data(), ws.device(), chunk_ids.data(), Device::cpu, size_t(m) * sizeof(int32_t), ctx);
    body_forward(state, w, ws.ids.as<int32_t>(), b, lc, opt, ws, ctx);
    head_forward(logits, w, ws, b, lc, t0, l, opt, ctx);
  }
}

void lm_step_device(Tensor logits, RecurrentState& state, const ModelWeights& w, const int32_t* ids, Workspace& ws,
                    Context& ctx) {
  const int64_t b = state.batch();
  check_devices(state, w, ws);
  check_logits_shape(logits, b, 1, w.config.vocab_size, LogitsFor::last_position, ws.device());
  MAMBA_CHECK(ws.rows() >= b, "lm_step_device: the workspace holds {} rows, the step needs {}", ws.rows(), b);
  ForwardOptions opt;
  body_forward(state, w, ids, b, 1, opt, ws, ctx);
  head_forward(logits, w, ws, b, 1, 0, 1, opt, ctx);
}

}  // namespace mambacpp
