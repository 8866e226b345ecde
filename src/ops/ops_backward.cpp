// The backward dispatchers of ops_backward.h: each validates its arguments once (shapes, dtypes, strides,
// devices), throwing mambacpp::Error that names the op and the offending argument, then runs the CPU
// implementation (cpu/cpu_backward.h), which assumes valid arguments, or, for tensors on the GPU, the CUDA one
// (cuda/cuda_backward.h, cuda/cuda_scan_backward.h) after its *_supports check. Builds without the CUDA backend
// refuse cuda tensors, naming the op.
#include "ops/ops_backward.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <cmath>
#include <initializer_list>
#include <string>
#include <utility>
#include <tuple>
#include <vector>

#include "core/error.h"
#include "ops/dispatch.h"
#include "ops/cpu/cpu_backward.h"
#ifdef MAMBACPP_HAS_CUDA
#include "ops/cuda/cuda_backward.h"
#include "ops/cuda/cuda_scan_backward.h"
#endif

namespace mambacpp {
namespace {

using dispatch::common_device;
using dispatch::Named;
using dispatch::require_cuda_support;
using dispatch::round_rows;
using dispatch::widen_rows;
using dispatch::is_half;
using dispatch::as_f32_shape;

// On cuda a weight matrix may also be bf16 or f16 (the CUDA products read it in its dtype): its shape and
// strides are then checked as those of an f32 matrix.
Tensor weight_shape(const Tensor& w, Device dev) {
  Tensor t = w;
  if (dev == Device::cuda) t.dtype = DType::f32;
  return t;
}

// On cuda an activation or incoming gradient may be held in w's half dtype (bf16 or f16) where the op allows
// it: its shape and strides are then checked as those of an f32 matrix.
Tensor half_shape(const Tensor& t, Device dev, DType half) {
  Tensor c = t;
  if (dev == Device::cuda && half != DType::f32 && t.dtype == half) c.dtype = DType::f32;
  return c;
}

bool defined_or_empty(const Tensor& t) { return t.defined() || (t.ndim > 0 && t.numel() == 0); }

// An f32 (rows, cols) view with contiguous rows; `rows`/`cols` < 0 accept any size.
cpu::MatF32 matrix(const char* op, const char* name, const Tensor& t, int64_t rows, int64_t cols) {
  MAMBA_CHECK(defined_or_empty(t), "{}: {} is required but undefined", op, name);
  MAMBA_CHECK(t.dtype == DType::f32, "{}: {} must be f32, got {}", op, name, dtype_name(t.dtype));
  MAMBA_CHECK(t.ndim == 2, "{}: {} must be a matrix, got shape {}", op, name, t.shape_str());
  auto dim = [](int64_t n) { return n < 0 ? std::string("any") : std::to_string(n); };
  MAMBA_CHECK((rows < 0 || t.shape[0] == rows) && (cols < 0 || t.shape[1] == cols),
              "{}: {} must have shape [{}, {}], got {}", op, name, dim(rows), dim(cols), t.shape_str());
  MAMBA_CHECK(t.shape[1] <= 1 || t.stride[1] == 1, "{}: {} (shape {}) must be contiguous in its last dimension",
              op, name, t.shape_str());
  const int64_t ld = t.shape[0] <= 1 ? t.shape[1] : t.stride[0];
  MAMBA_CHECK(t.shape[0] <= 1 || ld >= t.shape[1], "{}: {} (shape {}) has overlapping rows", op, name, t.shape_str());
  return {t.f32(), t.shape[0], t.shape[1], ld};
}

cpu::MatF32 optional_matrix(const char* op, const char* name, const Tensor& t, int64_t rows, int64_t cols) {
  return t.defined() ? matrix(op, name, t, rows, cols) : cpu::MatF32{};
}

// A (b, l, c) f32 tensor with a contiguous last dimension.
cpu::SeqF32 sequence(const char* op, const char* name, const Tensor& t, int64_t b, int64_t l, int64_t c) {
  MAMBA_CHECK(defined_or_empty(t), "{}: {} is required but undefined", op, name);
  MAMBA_CHECK(t.dtype == DType::f32, "{}: {} must be f32, got {}", op, name, dtype_name(t.dtype));
  MAMBA_CHECK(t.ndim == 3 && t.shape[0] == b && t.shape[1] == l && t.shape[2] == c,
              "{}: {} must have shape [{}, {}, {}], got {}", op, name, b, l, c, t.shape_str());
  MAMBA_CHECK(c <= 1 || t.stride[2] == 1, "{}: {} (shape {}) must be contiguous in its last dimension", op, name,
              t.shape_str());
  return {t.f32(), t.stride[0], t.stride[1]};
}

// A contiguous f32 tensor of exactly the given shape, or nullptr when undefined.
template <typename P>
P* optional_exact(const char* op, const char* name, const Tensor& t, std::initializer_list<int64_t> dims) {
  if (!t.defined()) return nullptr;
  MAMBA_CHECK(t.dtype == DType::f32, "{}: {} must be f32, got {}", op, name, dtype_name(t.dtype));
  bool same = t.ndim == int(dims.size());
  int i = 0;
  for (int64_t d : dims) same = same && t.shape[i++] == d;
  MAMBA_CHECK(same && t.is_contiguous(), "{}: {} must be a contiguous tensor of shape [{}], got {}", op, name,
              fmt::join(dims, ", "), t.shape_str());
  return static_cast<P*>(t.data);
}

}  // namespace

void linear_backward(Tensor dx, Tensor dw, Tensor dbias, Tensor dy, Tensor x, Tensor w, Context& ctx) {
  linear_backward(dx, dw, dbias, dy, x, w, /*accumulate_dx=*/false, ctx);
}

void linear_backward(Tensor dx, Tensor dw, Tensor dbias, Tensor dy, Tensor x, Tensor w, bool accumulate_dx,
                     Context& ctx) {
  constexpr const char* op = "linear_backward";
  [[maybe_unused]] const Device dev = common_device(op, {{"dx", &dx}, {"dw", &dw}, {"dbias", &dbias}, {"dy", &dy}, {"x", &x}, {"w", &w}});
  const cpu::MatF32 wm = matrix(op, "w", weight_shape(w, dev), -1, -1);
  const cpu::MatF32 dym = matrix(op, "dy", half_shape(dy, dev, w.dtype), -1, wm.rows);
  const cpu::MatF32 dxm = optional_matrix(op, "dx", dx, dym.rows, wm.cols);
  const cpu::MatF32 xm = dw.defined() ? matrix(op, "x", half_shape(x, dev, w.dtype), dym.rows, wm.cols) : cpu::MatF32{};
  const cpu::MatF32 dwm = optional_matrix(op, "dw", dw, wm.rows, wm.cols);
  MAMBA_CHECK(!dw.defined() || dwm.ld == wm.cols, "{}: dw must be contiguous", op);
  float* db = optional_exact<float>(op, "dbias", dbias, {wm.rows});
#ifdef MAMBACPP_HAS_CUDA
  if (dev == Device::cuda) {
    std::string why;
    require_cuda_support(op, linear_backward_cuda_supports(dx, dw, dbias, dy, x, w, &why), why);
    return linear_backward_cuda(dx, dw, dbias, dy, x, w, accumulate_dx, ctx);
  }
#endif
  cpu::linear_backward(dxm, dwm, db, dym, xm, wm, accumulate_dx, ctx.threads());
}

void embedding_backward(Tensor dtable, Tensor dout, const int32_t* ids, int64_t m, Context& ctx) {
  constexpr const char* op = "embedding_backward";
  [[maybe_unused]] const Device dev = common_device(op, {{"dtable", &dtable}, {"dout", &dout}});
  const cpu::MatF32 tm = matrix(op, "dtable", dtable, -1, -1);
  const cpu::MatF32 om = matrix(op, "dout", dout, m, tm.cols);
  MAMBA_CHECK(m == 0 || ids != nullptr, "{}: ids is null but {} ids were given", op, m);
#ifdef MAMBACPP_HAS_CUDA
  if (dev == Device::cuda) {  // ids are in device memory: not read here
    std::string why;
    require_cuda_support(op, embedding_backward_cuda_supports(dtable, dout, &why), why);
    return embedding_backward_cuda(dtable, dout, ids, m, ctx);
  }
#endif
  for (int64_t r = 0; r < m; ++r)
    MAMBA_CHECK(ids[r] >= 0 && ids[r] < tm.rows, "{}: ids[{}] = {} is out of range [0, {})", op, r, ids[r], tm.rows);
  cpu::embedding_backward(tm, om, ids, ctx.threads());
}

void rmsnorm_backward(Tensor dresidual, Tensor dw, Tensor dout, Tensor residual, Tensor w, float eps, Context& ctx) {
  rmsnorm_backward(dresidual, Tensor{}, dw, dout, residual, w, eps, ctx);
}

void rmsnorm_backward(Tensor dresidual, Tensor dresidual_half, Tensor dw, Tensor dout, Tensor residual, Tensor w,
                      float eps, Context& ctx) {
  constexpr const char* op = "rmsnorm_backward";
  [[maybe_unused]] const Device dev = common_device(op, {{"dresidual", &dresidual}, {"dresidual_half", &dresidual_half}, {"dw", &dw}, {"dout", &dout}, {"residual", &residual}, {"w", &w}});
  const cpu::MatF32 rm = matrix(op, "residual", residual, -1, -1);
  const cpu::MatF32 om = matrix(op, "dout", dout, rm.rows, rm.cols);
  const cpu::MatF32 drm = matrix(op, "dresidual", dresidual, rm.rows, rm.cols);
  cpu::MatF32 hm;  // dresidual_half's shape and row stride (its pointer is not an f32 one)
  if (dresidual_half.defined()) {
    MAMBA_CHECK(dresidual_half.dtype == DType::bf16 || dresidual_half.dtype == DType::f16,
                "{}: dresidual_half must be bf16 or f16, got {}", op, dtype_name(dresidual_half.dtype));
    Tensor shape = dresidual_half;
    shape.dtype = DType::f32;
    hm = matrix(op, "dresidual_half", shape, rm.rows, rm.cols);
  }
  const float* wp = optional_exact<const float>(op, "w", w, {rm.cols});
  MAMBA_CHECK(wp || rm.cols == 0, "{}: w is required but undefined", op);
  float* dwp = optional_exact<float>(op, "dw", dw, {rm.cols});
  MAMBA_CHECK(eps >= 0.0f, "{}: eps = {} must be non-negative", op, eps);
#ifdef MAMBACPP_HAS_CUDA
  if (dev == Device::cuda) {
    std::string why;
    require_cuda_support(op, rmsnorm_backward_cuda_supports(dresidual, dw, dout, residual, w, &why), why);
    return rmsnorm_backward_cuda(dresidual, dresidual_half, dw, dout, residual, w, eps, ctx);
  }
#endif
  cpu::rmsnorm_backward(drm, dwp, om, rm, wp, eps, ctx.threads());
  for (int64_t r = 0; dresidual_half.defined() && r < rm.rows; ++r)  // each row of the result rounded
    convert_from_f32(static_cast<char*>(dresidual_half.data) + size_t(r * hm.ld) * dtype_size(dresidual_half.dtype),
                     dresidual_half.dtype, drm.row(r), size_t(rm.cols));
}

void conv1d_causal_backward(Tensor dx, Tensor dw, Tensor dbias, Tensor dstate_in, Tensor dout, Tensor x, Tensor w,
                            Tensor bias, Tensor state_in, bool apply_silu, Context& ctx) {
  constexpr const char* op = "conv1d_causal_backward";
  [[maybe_unused]] const Device dev = common_device(op, {{"dx", &dx}, {"dw", &dw}, {"dbias", &dbias}, {"dstate_in", &dstate_in}, {"dout", &dout},
                   {"x", &x}, {"w", &w}, {"bias", &bias}, {"state_in", &state_in}});
  MAMBA_CHECK(defined_or_empty(x) && x.ndim == 3, "{}: x must have shape [b, l, e], got {}", op, x.shape_str());
  MAMBA_CHECK(w.defined() && w.ndim == 2, "{}: w must have shape [e, k], got {}", op, w.shape_str());
  cpu::ConvGradParams p;
  p.b = x.shape[0], p.l = x.shape[1], p.e = x.shape[2], p.k = w.shape[1];
  MAMBA_CHECK(p.k >= 1 && p.k <= cpu::kMaxConvWidth, "{}: conv width k = {} is outside 1..{}", op, p.k,
              cpu::kMaxConvWidth);
  p.w = optional_exact<const float>(op, "w", w, {p.e, p.k});
  p.x = sequence(op, "x", x, p.b, p.l, p.e);
  p.dout = sequence(op, "dout", dout, p.b, p.l, p.e);
  const bool dx_half = dx.dtype == DType::bf16 || dx.dtype == DType::f16;
  Tensor dx_shape = dx;  // a half dx has the shape and strides rules of an f32 one
  if (dx_half) dx_shape.dtype = DType::f32;
  p.dx = sequence(op, "dx", dx_shape, p.b, p.l, p.e);
  p.dw = optional_exact<float>(op, "dw", dw, {p.e, p.k});
  p.bias = optional_exact<const float>(op, "bias", bias, {p.e});
  p.dbias = optional_exact<float>(op, "dbias", dbias, {p.e});
  p.state_in = optional_exact<const float>(op, "state_in", state_in, {p.b, p.e, p.k - 1});
  p.dstate_in = optional_exact<float>(op, "dstate_in", dstate_in, {p.b, p.e, p.k - 1});
  p.silu = apply_silu;
#ifdef MAMBACPP_HAS_CUDA
  if (dev == Device::cuda) {
    std::string why;
    require_cuda_support(op, conv1d_backward_cuda_supports(dx, dw, dbias, dstate_in, dout, x, w, bias, state_in, &why), why);
    return conv1d_causal_backward_cuda(dx, dw, dbias, dstate_in, dout, x, w, bias, state_in, apply_silu, ctx);
  }
#endif
  if (!dx_half) return cpu::conv1d_causal_backward(p, ctx.threads());
  // A half dx: the f32 gradient, then each row rounded.
  std::vector<float> full(size_t(p.b * p.l * p.e));
  p.dx = {full.data(), p.l * p.e, p.e};
  cpu::conv1d_causal_backward(p, ctx.threads());
  round_rows(dx, p.dx.p, p.dx.sb, p.dx.sl);
}

void selective_scan_backward(const ScanGradArgs& a, Context& ctx) {
  constexpr const char* op = "selective_scan_backward";
  [[maybe_unused]] const Device dev = common_device(op, a.named());
  MAMBA_CHECK(defined_or_empty(a.u) && a.u.ndim == 3, "{}: u must have shape [b, l, e], got {}", op, a.u.shape_str());
  MAMBA_CHECK(a.A.defined() && a.A.ndim == 2 && a.A.shape[1] >= 1, "{}: A must have shape [e, n] with n ≥ 1, got {}",
              op, a.A.shape_str());
  cpu::ScanGradParams p;
  p.b = a.u.shape[0], p.l = a.u.shape[1], p.e = a.u.shape[2], p.n = a.A.shape[1];
  p.A = optional_exact<const float>(op, "A", a.A, {p.e, p.n});
  // A half u (every other tensor f32): widened to f32 on the CPU path, which is exact.
  std::vector<float> u_wide;
  if (is_half(a.u))
    (void)sequence(op, "u", as_f32_shape(a.u), p.b, p.l, p.e);
  else
    p.u = sequence(op, "u", a.u, p.b, p.l, p.e);
  p.dt = sequence(op, "dt", a.dt, p.b, p.l, p.e);
  // B, C: (b, l, n), or (e, n) when time-invariant; then dB / dC are (e, n), added to, or undefined.
  if (a.B.ndim == 2) {
    p.B_lti = optional_exact<const float>(op, "B (time-invariant)", a.B, {p.e, p.n});
    p.dB_lti = optional_exact<float>(op, "dB (of a time-invariant B)", a.dB, {p.e, p.n});
  } else {
    p.B = sequence(op, "B", a.B, p.b, p.l, p.n);
    p.dB = sequence(op, "dB", a.dB, p.b, p.l, p.n);
  }
  if (a.C.ndim == 2) {
    p.C_lti = optional_exact<const float>(op, "C (time-invariant)", a.C, {p.e, p.n});
    p.dC_lti = optional_exact<float>(op, "dC (of a time-invariant C)", a.dC, {p.e, p.n});
  } else {
    p.C = sequence(op, "C", a.C, p.b, p.l, p.n);
    p.dC = sequence(op, "dC", a.dC, p.b, p.l, p.n);
  }
  p.dy = sequence(op, "dy", a.dy, p.b, p.l, p.e);
  p.du = sequence(op, "du", a.du, p.b, p.l, p.e);
  // A half ddt or dz (for a product that reads it so): the f32 gradient into a scratch on the CPU path, then
  // each row rounded (round_rows).
  const auto f32_or_checked = [&](const char* name, const Tensor& t) {
    if (!is_half(t)) return sequence(op, name, t, p.b, p.l, p.e);
    (void)sequence(op, name, as_f32_shape(t), p.b, p.l, p.e);
    return cpu::SeqF32{};
  };
  p.ddt = f32_or_checked("ddt", a.ddt);
  MAMBA_CHECK(a.z.defined() == a.dz.defined(), "{}: dz must be given exactly when z is", op);
  if (a.z.defined()) {
    p.z = sequence(op, "z", a.z, p.b, p.l, p.e);
    p.dz = f32_or_checked("dz", a.dz);
  }
  p.D = optional_exact<const float>(op, "D", a.D, {p.e});
  p.dt_bias = optional_exact<const float>(op, "dt_bias", a.dt_bias, {p.e});
  p.dA = optional_exact<float>(op, "dA", a.dA, {p.e, p.n});
  p.dD = optional_exact<float>(op, "dD", a.dD, {p.e});
  p.ddt_bias = optional_exact<float>(op, "ddt_bias", a.ddt_bias, {p.e});
  MAMBA_CHECK(!p.dD || p.D, "{}: dD is given but D is not", op);
  MAMBA_CHECK(!p.ddt_bias || p.dt_bias, "{}: ddt_bias is given but dt_bias is not", op);
  p.state_in = optional_exact<const float>(op, "state_in", a.state_in, {p.b, p.e, p.n});
  p.dstate_in = optional_exact<float>(op, "dstate_in", a.dstate_in, {p.b, p.e, p.n});
  p.dstate_out = optional_exact<const float>(op, "dstate_out", a.dstate_out, {p.b, p.e, p.n});
  optional_exact<const float>(op, "chunk_states", a.chunk_states, {p.b, scan_state_count(p.l), p.n, p.e});
  p.dt_softplus = a.dt_softplus;
#ifdef MAMBACPP_HAS_CUDA
  if (dev == Device::cuda) {
    std::string why;
    require_cuda_support(op, selective_scan_backward_cuda_supports(a, &why), why);
    return selective_scan_backward_cuda(a, ctx);
  }
#endif
  if (is_half(a.u)) u_wide = widen_rows(a.u), p.u = {u_wide.data(), p.l * p.e, p.e};
  std::vector<float> ddt_full, dz_full;
  for (auto [t, seq, full] : {std::tuple{&a.ddt, &p.ddt, &ddt_full}, std::tuple{&a.dz, &p.dz, &dz_full}})
    if (is_half(*t)) full->resize(size_t(p.b * p.l * p.e)), *seq = {full->data(), p.l * p.e, p.e};
  cpu::selective_scan_backward(p, ctx.threads());
  for (auto [t, seq] : {std::pair{&a.ddt, &p.ddt}, std::pair{&a.dz, &p.dz}})
    if (is_half(*t)) round_rows(*t, seq->p, seq->sb, seq->sl);
}

double linear_cross_entropy(Tensor dx, Tensor dw, Tensor x, Tensor w, const int32_t* targets, float scale,
                            Context& ctx) {
  constexpr const char* op = "linear_cross_entropy";
  [[maybe_unused]] const Device dev = common_device(op, {{"dx", &dx}, {"dw", &dw}, {"x", &x}, {"w", &w}});
  const cpu::MatF32 wm = matrix(op, "w", weight_shape(w, dev), -1, -1);
  const cpu::MatF32 xm = matrix(op, "x", half_shape(x, dev, w.dtype), -1, wm.cols);
  const cpu::MatF32 dxm = optional_matrix(op, "dx", dx, xm.rows, wm.cols);
  const cpu::MatF32 dwm = optional_matrix(op, "dw", dw, wm.rows, wm.cols);
  MAMBA_CHECK(xm.rows == 0 || targets != nullptr, "{}: targets is null", op);
  MAMBA_CHECK(std::isfinite(scale), "{}: scale = {} must be finite", op, scale);
#ifdef MAMBACPP_HAS_CUDA
  if (dev == Device::cuda) {  // targets are in device memory: not read here
    std::string why;
    require_cuda_support(op, linear_cross_entropy_cuda_supports(dx, dw, x, w, &why), why);
    return linear_cross_entropy_cuda(dx, dw, x, w, targets, scale, ctx);
  }
#endif
  for (int64_t r = 0; r < xm.rows; ++r)
    MAMBA_CHECK(targets[r] < wm.rows, "{}: targets[{}] = {} is out of range [0, {})", op, r, targets[r], wm.rows);
  return cpu::linear_cross_entropy(dxm, dwm, xm, wm, targets, scale, ctx.threads());
}

}  // namespace mambacpp
