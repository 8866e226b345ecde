// The op dispatchers of ops.h: each validates its arguments once (shapes, dtypes, strides, devices), throwing
// mambacpp::Error that names the op and the offending argument, then routes to the implementation for the
// tensors' device: cpu/ (which assumes valid arguments) or, in CUDA builds, cuda/ after its *_supports check
// (an Error naming the limit otherwise). CPU-only builds reject cuda tensors here, naming the op.
#include "ops/ops.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <initializer_list>
#include <string>
#include <utility>
#include <vector>

#include "core/error.h"
#include "ops/dispatch.h"
#include "ops/cpu/cpu_ops.h"
#ifdef MAMBACPP_HAS_CUDA
#include "ops/cuda/cuda_ops.h"
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

// A required argument must be defined, except that a tensor with a shape of no elements may have no data.
void require_defined(const char* op, const char* name, const Tensor& t) {
  MAMBA_CHECK(t.defined() || (t.ndim > 0 && t.numel() == 0), "{}: {} is required but undefined", op, name);
}

void require_dtype(const char* op, const char* name, const Tensor& t, DType want) {
  MAMBA_CHECK(t.dtype == want, "{}: {} must be {}, got {}", op, name, dtype_name(want), dtype_name(t.dtype));
}

// A defined, contiguous f32 tensor of exactly the given shape.
void require_f32_shape(const char* op, const char* name, const Tensor& t, std::initializer_list<int64_t> dims) {
  require_defined(op, name, t);
  require_dtype(op, name, t, DType::f32);
  bool same = t.ndim == int(dims.size());
  int i = 0;
  for (int64_t d : dims) same = same && t.shape[i++] == d;
  if (!same) {
    std::string want = "[";
    i = 0;
    for (int64_t d : dims) want += (i++ ? ", " : "") + std::to_string(d);
    want += "]";
    fail("{}: {} must have shape {}, got {}", op, name, want, t.shape_str());
  }
  MAMBA_CHECK(t.is_contiguous(), "{}: {} (shape {}) must be contiguous", op, name, t.shape_str());
}

// An f32 tensor (…, c) viewed as rows of its last dimension: the last dimension must be contiguous and the
// leading ones must collapse into a single row stride.
cpu::MatF32 as_rows(const char* op, const char* name, const Tensor& t) {
  require_defined(op, name, t);
  require_dtype(op, name, t, DType::f32);
  MAMBA_CHECK(t.ndim >= 1, "{}: {} must have at least one dimension", op, name);
  const int last = t.ndim - 1;
  MAMBA_CHECK(t.shape[last] <= 1 || t.stride[last] == 1, "{}: {} (shape {}) must be contiguous in its last dimension",
              op, name, t.shape_str());
  cpu::MatF32 m{t.f32(), 1, t.shape[last], t.shape[last]};
  int64_t ld = -1, block = 0;  // the row stride, and the stride the next leading dimension must have
  for (int d = last - 1; d >= 0; --d) {
    m.rows *= t.shape[d];
    if (t.shape[d] == 1) continue;
    if (ld < 0) {
      ld = t.stride[d];
    } else {
      MAMBA_CHECK(t.stride[d] == block, "{}: {} (shape {}) has leading dimensions that are not one block of rows",
                  op, name, t.shape_str());
    }
    block = t.stride[d] * t.shape[d];
  }
  if (ld >= 0) m.ld = ld;
  MAMBA_CHECK(m.rows <= 1 || m.ld >= m.cols, "{}: {} (shape {}) has overlapping rows", op, name, t.shape_str());
  return m;
}

// A 3-D f32 tensor (b, l, c) with contiguous last dimension and the given sizes.
cpu::SeqF32 as_seq(const char* op, const char* name, const Tensor& t, int64_t b, int64_t l, int64_t c) {
  require_defined(op, name, t);
  require_dtype(op, name, t, DType::f32);
  MAMBA_CHECK(t.ndim == 3 && t.shape[0] == b && t.shape[1] == l && t.shape[2] == c,
              "{}: {} must have shape [{}, {}, {}], got {}", op, name, b, l, c, t.shape_str());
  MAMBA_CHECK(c <= 1 || t.stride[2] == 1, "{}: {} (shape {}) must be contiguous in its last dimension", op, name,
              t.shape_str());
  return {t.f32(), t.stride[0], t.stride[1]};
}

// A read-only 2-D matrix (rows, cols) of any dtype with contiguous rows.
cpu::MatAny as_matrix(const char* op, const char* name, const Tensor& t) {
  require_defined(op, name, t);
  MAMBA_CHECK(t.ndim == 2, "{}: {} must be a matrix, got shape {}", op, name, t.shape_str());
  MAMBA_CHECK(t.shape[1] <= 1 || t.stride[1] == 1, "{}: {} (shape {}) must be contiguous in its last dimension", op,
              name, t.shape_str());
  return {t.data, t.dtype, t.shape[0], t.shape[1], t.shape[0] <= 1 ? t.shape[1] : t.stride[0]};
}

const float* optional_vector(const char* op, const char* name, const Tensor& t, int64_t size) {
  if (!t.defined()) return nullptr;
  require_f32_shape(op, name, t, {size});
  return t.f32();
}

// The address range [first, last) spanned by a row view whose elements are `esize` bytes (2 for a half tensor
// viewed through the rows of an f32 one, shape_of_half).
std::pair<const char*, const char*> span(const cpu::MatF32& m, size_t esize) {
  if (m.rows == 0 || m.cols == 0) return {nullptr, nullptr};
  const auto* first = reinterpret_cast<const char*>(m.p);
  return {first, first + size_t((m.rows - 1) * m.ld + m.cols) * esize};
}

bool overlap(const cpu::MatF32& a, const cpu::MatF32& b, size_t a_esize = sizeof(float),
             size_t b_esize = sizeof(float)) {
  const auto [a0, a1] = span(a, a_esize);
  const auto [b0, b1] = span(b, b_esize);
  return a0 && b0 && a0 < b1 && b0 < a1;
}

// On cuda an activation may be held in a half dtype (`half`: bf16 or f16) where the op allows it: its shape and
// strides are then checked as those of an f32 tensor (the overlap checks take its own element size).
Tensor shape_of_half(const Tensor& t, Device dev, DType half) {
  Tensor c = t;
  if (dev == Device::cuda && half != DType::f32 && t.dtype == half) c.dtype = DType::f32;
  return c;
}

}  // namespace

void linear_forward(Tensor y, Tensor x, Tensor w, Tensor bias, Context& ctx) {
  constexpr const char* op = "linear_forward";
  [[maybe_unused]] const Device dev = common_device(op, {{"y", &y}, {"x", &x}, {"w", &w}, {"bias", &bias}});
  if (is_half(y)) {
    MAMBA_CHECK(dev == Device::cuda, "{}: y is {}: the CPU writes an f32 y (a half y is for cuda products)", op,
                dtype_name(y.dtype));
    MAMBA_CHECK(y.dtype == w.dtype, "{}: y is {} but w is {}: y must be f32 or w's dtype", op, dtype_name(y.dtype),
                dtype_name(w.dtype));
  }
  const cpu::MatF32 xm = as_rows(op, "x", shape_of_half(x, dev, w.dtype));
  const cpu::MatF32 ym = as_rows(op, "y", shape_of_half(y, dev, w.dtype));
  const cpu::MatAny wm = as_matrix(op, "w", w);
  MAMBA_CHECK(wm.cols == xm.cols, "{}: w (shape {}) expects {} input features but x (shape {}) has {}", op,
              w.shape_str(), wm.cols, x.shape_str(), xm.cols);
  MAMBA_CHECK(ym.rows == xm.rows && ym.cols == wm.rows,
              "{}: y must hold {} rows of {} outputs (x {} · wᵀ {}), got shape {}", op, xm.rows, wm.rows,
              x.shape_str(), w.shape_str(), y.shape_str());
  MAMBA_CHECK(!overlap(ym, xm, dtype_size(y.dtype), dtype_size(x.dtype)), "{}: y may not overlap x", op);
  const float* b = optional_vector(op, "bias", bias, wm.rows);
#ifdef MAMBACPP_HAS_CUDA
  if (dev == Device::cuda) {
    std::string why;
    require_cuda_support(op, linear_cuda_supports(y, x, w, bias, &why), why);
    return linear_forward_cuda(y, x, w, bias, ctx);
  }
#endif
  cpu::linear(ym, xm, wm, b, ctx.threads());
}

void embedding_forward(Tensor out, const int32_t* ids, int64_t m, Tensor table, Context& ctx) {
  constexpr const char* op = "embedding_forward";
  [[maybe_unused]] const Device dev = common_device(op, {{"out", &out}, {"table", &table}});
  const cpu::MatF32 om = as_rows(op, "out", out);
  const cpu::MatAny tm = as_matrix(op, "table", table);
  MAMBA_CHECK(m >= 0 && om.rows == m && om.cols == tm.cols,
              "{}: out must hold {} rows of {} features (table {}), got shape {}", op, m, tm.cols,
              table.shape_str(), out.shape_str());
  MAMBA_CHECK(m == 0 || ids != nullptr, "{}: ids is null but {} ids were requested", op, m);
#ifdef MAMBACPP_HAS_CUDA
  if (dev == Device::cuda) {
    std::string why;
    require_cuda_support(op, embedding_cuda_supports(out, m, table, &why), why);
    return embedding_forward_cuda(out, ids, m, table, ctx);
  }
#endif
  for (int64_t r = 0; r < m; ++r)
    MAMBA_CHECK(ids[r] >= 0 && ids[r] < tm.rows, "{}: ids[{}] = {} is out of range [0, {}) of table {}", op, r,
                ids[r], tm.rows, table.shape_str());
  cpu::embedding(om, ids, tm, ctx.threads());
}

namespace {

// The checks of both rmsnorm_forward forms; residual_in undefined is the in-place form.
void check_rmsnorm(const char* op, Device dev, const Tensor& out, const Tensor& residual, const Tensor& residual_in,
                   const Tensor& x, const Tensor& w, float eps) {
  const DType half = out.dtype == DType::bf16 || out.dtype == DType::f16 ? out.dtype : DType::f32;
  const cpu::MatF32 om = as_rows(op, "out", shape_of_half(out, Device::cuda, half)), rm = as_rows(op, "residual", residual);
  MAMBA_CHECK(om.rows == rm.rows && om.cols == rm.cols, "{}: out (shape {}) and residual (shape {}) differ in shape",
              op, out.shape_str(), residual.shape_str());
  if (x.defined()) {
    const cpu::MatF32 xm = as_rows(op, "x", x);
    MAMBA_CHECK(xm.rows == rm.rows && xm.cols == rm.cols, "{}: x (shape {}) and residual (shape {}) differ in shape",
                op, x.shape_str(), residual.shape_str());
    MAMBA_CHECK(!overlap(xm, rm), "{}: x may not overlap residual", op);
  }
  if (residual_in.defined()) {
    const cpu::MatF32 im = as_rows(op, "residual_in", residual_in);
    MAMBA_CHECK(im.rows == rm.rows && im.cols == rm.cols,
                "{}: residual_in (shape {}) and residual_out (shape {}) differ in shape", op, residual_in.shape_str(),
                residual.shape_str());
    MAMBA_CHECK(!overlap(im, rm), "{}: residual_out may not overlap residual_in", op);
  }
  MAMBA_CHECK(!overlap(om, rm, dtype_size(out.dtype)), "{}: out may not overlap residual", op);
  require_f32_shape(op, "w", w, {rm.cols});
  MAMBA_CHECK(eps >= 0.0f && std::isfinite(eps), "{}: eps = {} must be finite and non-negative", op, eps);
}

}  // namespace

void rmsnorm_forward(Tensor out, Tensor residual, Tensor x, Tensor w, float eps, Context& ctx) {
  rmsnorm_forward(out, residual, Tensor{}, x, w, eps, ctx);
}

void rmsnorm_forward(Tensor out, Tensor residual_out, Tensor residual_in, Tensor x, Tensor w, float eps,
                     Context& ctx) {
  constexpr const char* op = "rmsnorm_forward";
  [[maybe_unused]] const Device dev = common_device(
      op, {{"out", &out}, {"residual", &residual_out}, {"residual_in", &residual_in}, {"x", &x}, {"w", &w}});
  check_rmsnorm(op, dev, out, residual_out, residual_in, x, w, eps);
#ifdef MAMBACPP_HAS_CUDA
  if (dev == Device::cuda) {
    std::string why;
    require_cuda_support(op, rmsnorm_cuda_supports(out, residual_out, residual_in, x, w, &why), why);
    return rmsnorm_forward_cuda(out, residual_out, residual_in, x, w, eps, ctx);
  }
#endif
  const cpu::MatF32 rm = as_rows(op, "residual", residual_out);
  if (residual_in.defined()) {
    const cpu::MatF32 im = as_rows(op, "residual_in", residual_in);
    for (int64_t r = 0; r < rm.rows; ++r) std::copy(im.row(r), im.row(r) + rm.cols, rm.row(r));
  }
  const cpu::MatF32 xm = x.defined() ? as_rows(op, "x", x) : cpu::MatF32{};
  if (out.dtype == DType::f32) return cpu::rmsnorm(as_rows(op, "out", out), rm, xm, w.f32(), eps, ctx.threads());
  // A half out: the f32 rows, then each rounded.
  std::vector<float> full(size_t(rm.rows * rm.cols));
  cpu::rmsnorm(cpu::MatF32{full.data(), rm.rows, rm.cols, rm.cols}, rm, xm, w.f32(), eps, ctx.threads());
  const cpu::MatF32 om = as_rows(op, "out", shape_of_half(out, Device::cuda, out.dtype));
  for (int64_t r = 0; r < rm.rows; ++r)
    convert_from_f32(static_cast<char*>(out.data) + size_t(r * om.ld) * dtype_size(out.dtype), out.dtype,
                     full.data() + r * rm.cols, size_t(rm.cols));
}

void conv1d_causal_forward(Tensor out, Tensor state_out, Tensor x, Tensor w, Tensor bias, Tensor state_in,
                           bool apply_silu, Context& ctx) {
  conv1d_causal_forward(out, Tensor{}, state_out, x, w, bias, state_in, apply_silu, ctx);
}

void conv1d_causal_forward(Tensor out, Tensor out_half, Tensor state_out, Tensor x, Tensor w, Tensor bias,
                           Tensor state_in, bool apply_silu, Context& ctx) {
  constexpr const char* op = "conv1d_causal_forward";
  [[maybe_unused]] const Device dev =
      common_device(op, {{"out", &out}, {"out_half", &out_half}, {"state_out", &state_out}, {"x", &x}, {"w", &w},
                         {"bias", &bias}, {"state_in", &state_in}});
  require_defined(op, "x", x);
  require_defined(op, "w", w);
  MAMBA_CHECK(x.ndim == 3, "{}: x must have shape [b, l, e], got {}", op, x.shape_str());
  MAMBA_CHECK(w.ndim == 2, "{}: w must have shape [e, k], got {}", op, w.shape_str());
  cpu::ConvParams p;
  p.b = x.shape[0], p.l = x.shape[1], p.e = x.shape[2], p.k = w.shape[1];
  MAMBA_CHECK(p.k >= 1 && p.k <= cpu::kMaxConvWidth, "{}: conv width k = {} (w shape {}) is outside 1..{}", op, p.k,
              w.shape_str(), cpu::kMaxConvWidth);
  require_f32_shape(op, "w", w, {p.e, p.k});
  // A half x: widened to f32 where it is read (on the CPU into a scratch, below), which is exact.
  const bool x_half = x.dtype != DType::f32;
  p.x = as_seq(op, "x", x_half ? as_f32_shape(x) : x, p.b, p.l, p.e);
  // Only the half output asked for (out undefined): on the CPU path, the f32 one goes to a scratch (below).
  const bool half_only = !out.defined() && out_half.defined();
  if (!half_only) p.out = as_seq(op, "out", out, p.b, p.l, p.e);
  p.w = w.f32();
  p.bias = optional_vector(op, "bias", bias, p.e);
  if (state_in.defined()) {
    require_f32_shape(op, "state_in", state_in, {p.b, p.e, p.k - 1});
    p.state_in = state_in.f32();
  }
  if (state_out.defined()) {
    require_f32_shape(op, "state_out", state_out, {p.b, p.e, p.k - 1});
    p.state_out = state_out.f32();
  }
  p.silu = apply_silu;
  if (out_half.defined()) {
    MAMBA_CHECK(out_half.dtype == DType::bf16 || out_half.dtype == DType::f16, "{}: out_half must be bf16 or f16, got {}",
                op, dtype_name(out_half.dtype));
    (void)as_seq(op, "out_half", as_f32_shape(out_half), p.b, p.l, p.e);
  }
#ifdef MAMBACPP_HAS_CUDA
  if (dev == Device::cuda) {
    std::string why;
    require_cuda_support(op, conv1d_cuda_supports(out, out_half, state_out, x, w, bias, state_in, &why), why);
    return conv1d_causal_forward_cuda(out, out_half, state_out, x, w, bias, state_in, apply_silu, ctx);
  }
#endif
  std::vector<float> out_full, x_wide;
  if (half_only) out_full.resize(size_t(p.b * p.l * p.e)), p.out = {out_full.data(), p.l * p.e, p.e};
  if (x_half) x_wide = widen_rows(x), p.x = {x_wide.data(), p.l * p.e, p.e};
  cpu::conv1d_causal(p, ctx.threads());
  if (out_half.defined()) round_rows(out_half, p.out.p, p.out.sb, p.out.sl);
}

void selective_scan_forward(const ScanArgs& a, Context& ctx) {
  constexpr const char* op = "selective_scan_forward";
  [[maybe_unused]] const Device dev = common_device(op, a.named());
#ifdef MAMBACPP_HAS_CUDA
  // The CUDA scan also takes bf16 and f16 inputs: its own check covers every argument.
  if (dev == Device::cuda) {
    std::string why;
    require_cuda_support(op, selective_scan_cuda_supports(a, &why), why);
    return selective_scan_forward_cuda(a, ctx);
  }
#endif
  require_defined(op, "u", a.u);
  require_defined(op, "A", a.A);
  MAMBA_CHECK(a.u.ndim == 3, "{}: u must have shape [b, l, e], got {}", op, a.u.shape_str());
  MAMBA_CHECK(a.A.ndim == 2, "{}: A must have shape [e, n], got {}", op, a.A.shape_str());
  cpu::ScanParams p;
  p.b = a.u.shape[0], p.l = a.u.shape[1], p.e = a.u.shape[2], p.n = a.A.shape[1];
  MAMBA_CHECK(p.n >= 1, "{}: A (shape {}) must have a state size n ≥ 1", op, a.A.shape_str());
  require_f32_shape(op, "A", a.A, {p.e, p.n});
  // A half u (beside f32 dt, B, C, z): widened to f32, which is exact, so the result is the f32 op's on it.
  std::vector<float> u_wide;
  if (is_half(a.u)) {
    (void)as_seq(op, "u", as_f32_shape(a.u), p.b, p.l, p.e);
    u_wide = widen_rows(a.u);
    p.u = {u_wide.data(), p.l * p.e, p.e};
  } else {
    p.u = as_seq(op, "u", a.u, p.b, p.l, p.e);
  }
  p.dt = as_seq(op, "dt", a.dt, p.b, p.l, p.e);
  // A half y (for a product that reads it so): the f32 result, then each row rounded.
  const bool y_half = is_half(a.y);
  std::vector<float> y_full;
  if (y_half) {
    (void)as_seq(op, "y", as_f32_shape(a.y), p.b, p.l, p.e);
    y_full.resize(size_t(p.b * p.l * p.e));
    p.y = {y_full.data(), p.l * p.e, p.e};
  } else {
    p.y = as_seq(op, "y", a.y, p.b, p.l, p.e);
  }
  if (a.B.ndim == 2) {
    require_f32_shape(op, "B (time-invariant)", a.B, {p.e, p.n});
    p.B_lti = a.B.f32();
  } else {
    p.B = as_seq(op, "B", a.B, p.b, p.l, p.n);
  }
  if (a.C.ndim == 2) {
    require_f32_shape(op, "C (time-invariant)", a.C, {p.e, p.n});
    p.C_lti = a.C.f32();
  } else {
    p.C = as_seq(op, "C", a.C, p.b, p.l, p.n);
  }
  if (a.z.defined()) p.z = as_seq(op, "z", a.z, p.b, p.l, p.e);
  p.A = a.A.f32();
  p.D = optional_vector(op, "D", a.D, p.e);
  p.dt_bias = optional_vector(op, "dt_bias", a.dt_bias, p.e);
  if (a.state_in.defined()) {
    require_f32_shape(op, "state_in", a.state_in, {p.b, p.e, p.n});
    p.state_in = a.state_in.f32();
  }
  if (a.state_out.defined()) {
    require_f32_shape(op, "state_out", a.state_out, {p.b, p.e, p.n});
    p.state_out = a.state_out.f32();
  }
  if (a.chunk_states.defined()) {
    require_f32_shape(op, "chunk_states", a.chunk_states, {p.b, scan_state_count(p.l), p.n, p.e});
    p.chunk_states = a.chunk_states.f32();
  }
  p.dt_softplus = a.dt_softplus;
  cpu::selective_scan(p, ctx.threads());
  if (y_half) round_rows(a.y, p.y.p, p.y.sb, p.y.sl);
}

}  // namespace mambacpp
