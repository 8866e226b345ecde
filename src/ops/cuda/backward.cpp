// The Tensor-level CUDA backward ops of cuda_backward.h: the matrix products through cuBLASLt (gemm.h), the rest
// through the kernels of backward_kernels.cu. Temporary operands (half copies of activations, logits, partial
// sums) are carved from the stream's scratch memory, one request per op.
//
// cuBLASLt is column-major; a row-major (r, c) matrix with row stride ld is read as a column-major (c, r) one
// with the same ld, so every product below is written on those transposed views and no operand is copied:
//   dx (m, i) = dy (m, o) · w (o, i)       is   dxᵀ (i, m) = wᵀ (i, o) · dyᵀ (o, m)
//   dw (o, i) += dyᵀ (o, m) · x (m, i)      is   dwᵀ (i, o) += xᵀ (i, m) · (dyᵀ)ᵀ
//   logits (m, v) = x (m, d) · wᵀ (d, v)    is   logitsᵀ (v, m) = (wᵀ)ᵀ · xᵀ (d, m)
#include <algorithm>
#include <cstdint>
#include <string>
#include <utility>

#include "core/cuda/check.h"
#include "core/cuda/cuda_state.h"
#include "core/error.h"
#include "ops/cuda/backward_kernels.h"
#include "ops/cuda/cuda_backward.h"
#include "ops/cuda/gemm.h"
#include "ops/cuda/infer_kernels.h"
#include "ops/cuda/tensor_rows.h"

namespace mambacpp {
namespace {

bool refuse(std::string* why, const std::string& msg) {
  if (why != nullptr) *why = msg;
  return false;
}

// Grid dimension y (blocks of rows of a column sum) is limited to 65535.
constexpr int64_t kMaxGridY = 65535;

// Offsets of the pieces of one scratch request, each rounded up to 256 bytes.
struct Arena {
  size_t bytes = 0;
  size_t add(size_t n) {
    const size_t at = bytes;
    bytes += (n + 255) / 256 * 256;
    return at;
  }
};
template <typename T>
T* at(void* base, size_t offset) {
  return reinterpret_cast<T*>(static_cast<char*>(base) + offset);
}

// dst (rows, cols) contiguous in `dtype` = src rows rounded; src has row stride ld.
void to_half(const char* op, void* dst, DType dtype, const float* src, int64_t ld, int64_t rows, int64_t cols,
             CudaState& cs) {
  cuda::ConvertParams cp;
  cp.dst = dst, cp.dst_dtype = dtype, cp.src = src, cp.ld_src = ld, cp.m = rows, cp.c = cols;
  std::string why;
  MAMBA_CHECK(cuda::convert_kernel_supports(cp, &why), "{} (cuda): {}", op, why);
  if (rows * cols > 0) cuda::convert_kernel_launch(cp, cs.stream);
}

int64_t ld_of(const Tensor& w) { return w.shape[0] <= 1 ? w.shape[1] : w.stride[0]; }

bool small_enough(std::initializer_list<int64_t> dims, std::string* why) {
  for (int64_t d : dims)
    if (d > INT32_MAX) return refuse(why, "a dimension exceeds 2^31 - 1");
  return true;
}

}  // namespace

bool linear_backward_cuda_supports(const Tensor& dx, const Tensor& dw, const Tensor& dbias, const Tensor& dy,
                                   const Tensor& x, const Tensor& w, std::string* why) {
  if (!cuda::on_cuda({{"dx", &dx}, {"dw", &dw}, {"dbias", &dbias}, {"dy", &dy}, {"x", &x}, {"w", &w}}, why))
    return false;
  for (const auto& [name, t] : {std::pair{"dy", &dy}, std::pair{"x", &x}})
    if (t->defined() && t->dtype != DType::f32 && t->dtype != w.dtype)
      return refuse(why, std::string(name) + " is " + dtype_name(t->dtype) + ": it must be f32 or w's dtype");
  if (dbias.defined() && dy.dtype != DType::f32) return refuse(why, "the bias gradient needs an f32 dy");
  const cuda::Rows r = cuda::rows_of(dy);
  if (dbias.defined() && (r.rows + 127) / 128 > kMaxGridY) return refuse(why, "too many rows for the bias gradient");
  return small_enough({r.rows, r.cols, w.shape[1]}, why);
}

void linear_backward_cuda(Tensor dx, Tensor dw, Tensor dbias, Tensor dy, Tensor x, Tensor w, bool accumulate_dx,
                          Context& ctx) {
  constexpr const char* op = "linear_backward";
  std::string why;
  MAMBA_CHECK(linear_backward_cuda_supports(dx, dw, dbias, dy, x, w, &why), "{} (cuda): {}", op, why);
  CudaState& cs = cuda_state(ctx);
  const cuda::Rows dyr = cuda::rows_of(dy);
  const int64_t m = dyr.rows, o = dyr.cols, i = w.shape[1];
  const bool half = w.dtype != DType::f32;
  const bool want_dw = dw.defined() && m > 0;
  // Operands not yet in w's half dtype are rounded into scratch memory.
  const bool round_dy = half && dy.dtype == DType::f32, round_x = half && want_dw && x.dtype == DType::f32;
  Arena arena;
  const size_t partials = dbias.defined() ? arena.add(size_t(cuda::column_sum_partials(m, o)) * 4) : 0;
  const size_t dy16 = round_dy ? arena.add(size_t(m * o) * 2) : 0;
  const size_t x16 = round_x ? arena.add(size_t(m * i) * 2) : 0;
  void* base = arena.bytes > 0 ? cs.scratch(arena.bytes) : nullptr;
  if (dbias.defined()) {
    cuda::ColumnSumParams p;
    p.out = dbias.f32(), p.a = dy.f32(), p.ld_a = dyr.ld, p.rows = m, p.cols = o;
    p.partials = at<float>(base, partials);
    cuda::column_sum_launch(p, cs.stream);
  }
  if (!dx.defined() && !want_dw) return;
  const void* dy_in = dy.data;
  int64_t ld_dy = dyr.ld;
  if (round_dy) {
    to_half(op, at<void>(base, dy16), w.dtype, dy.f32(), dyr.ld, m, o, cs);
    dy_in = at<void>(base, dy16), ld_dy = o;
  }
  if (dx.defined()) {
    cuda::Gemm g;
    g.a = w.data, g.lda = ld_of(w), g.b = dy_in, g.ldb = ld_dy, g.d = dx.f32(), g.ldd = cuda::rows_of(dx).ld;
    g.in = w.dtype, g.rows = i, g.cols = m, g.inner = o, g.beta = accumulate_dx ? 1.0f : 0.0f;
    cuda::gemm_run(op, g, cs);
  }
  if (want_dw) {
    const cuda::Rows xr = cuda::rows_of(x);
    cuda::Gemm g;
    g.a = x.data, g.lda = xr.ld, g.b = dy_in, g.ldb = ld_dy, g.trans_b = true, g.d = dw.f32(), g.ldd = i;
    g.in = w.dtype, g.rows = i, g.cols = o, g.inner = m, g.beta = 1.0f;
    if (round_x) {
      to_half(op, at<void>(base, x16), w.dtype, x.f32(), xr.ld, m, i, cs);
      g.a = at<void>(base, x16), g.lda = i;
    }
    cuda::gemm_run(op, g, cs);
  }
}

bool embedding_backward_cuda_supports(const Tensor& dtable, const Tensor& dout, std::string* why) {
  if (!cuda::on_cuda({{"dtable", &dtable}, {"dout", &dout}}, why)) return false;
  if (dtable.shape[0] > 1 && dtable.stride[0] != dtable.shape[1]) return refuse(why, "dtable must be contiguous");
  return small_enough({dtable.shape[0], dtable.shape[1]}, why);
}

void embedding_backward_cuda(Tensor dtable, Tensor dout, const int32_t* ids, int64_t m, Context& ctx) {
  std::string why;
  MAMBA_CHECK(embedding_backward_cuda_supports(dtable, dout, &why), "embedding_backward (cuda): {}", why);
  cuda::EmbeddingGradParams p;
  p.dtable = dtable.f32(), p.dout = dout.f32(), p.ld_dout = cuda::rows_of(dout).ld, p.ids = ids;
  p.m = m, p.d = dtable.shape[1], p.v = dtable.shape[0];
  CudaState& cs = cuda_state(ctx);
  if (m > 0) p.sorted = static_cast<uint32_t*>(cs.scratch(size_t(m) * 4));
  cuda::embedding_grad_launch(p, cs.stream);
}

bool rmsnorm_backward_cuda_supports(const Tensor& dresidual, const Tensor& dw, const Tensor& dout,
                                    const Tensor& residual, const Tensor& w, std::string* why) {
  if (!cuda::on_cuda({{"dresidual", &dresidual}, {"dw", &dw}, {"dout", &dout}, {"residual", &residual}, {"w", &w}},
                     why))
    return false;
  const cuda::Rows r = cuda::rows_of(residual);
  if (dw.defined() && (r.rows + 127) / 128 > kMaxGridY) return refuse(why, "too many rows for the weight gradient");
  return small_enough({r.rows}, why);
}

void rmsnorm_backward_cuda(Tensor dresidual, Tensor dresidual_half, Tensor dw, Tensor dout, Tensor residual,
                           Tensor w, float eps, Context& ctx) {
  std::string why;
  MAMBA_CHECK(rmsnorm_backward_cuda_supports(dresidual, dw, dout, residual, w, &why), "rmsnorm_backward (cuda): {}",
              why);
  CudaState& cs = cuda_state(ctx);
  const cuda::Rows r = cuda::rows_of(residual), o = cuda::rows_of(dout);
  Arena arena;
  const size_t scale = arena.add(size_t(r.rows) * 4);
  const size_t partials = arena.add(size_t(cuda::column_sum_partials(r.rows, r.cols)) * 4);
  void* base = dw.defined() ? cs.scratch(arena.bytes) : nullptr;
  cuda::RmsNormGradParams p;
  p.dresidual = dresidual.f32(), p.ld_dresidual = cuda::rows_of(dresidual).ld;
  MAMBA_CHECK(!dresidual_half.defined() || dresidual_half.device == Device::cuda,
              "rmsnorm_backward (cuda): dresidual_half is on {}, not cuda", device_name(dresidual_half.device));
  if (dresidual_half.defined())
    p.dresidual_half = dresidual_half.data, p.half_dtype = dresidual_half.dtype,
    p.ld_dresidual_half = cuda::rows_of(dresidual_half).ld;
  p.dout = dout.f32(), p.ld_dout = o.ld, p.residual = residual.f32(), p.ld_residual = r.ld, p.w = w.f32();
  p.row_scale = dw.defined() ? at<float>(base, scale) : nullptr;
  p.m = r.rows, p.d = r.cols, p.eps = eps;
  cuda::rmsnorm_grad_launch(p, cs.stream);
  if (!dw.defined()) return;
  cuda::ColumnSumParams c;
  c.out = dw.f32(), c.a = dout.f32(), c.ld_a = o.ld, c.b = residual.f32(), c.ld_b = r.ld;
  c.row_scale = p.row_scale, c.rows = r.rows, c.cols = r.cols, c.partials = at<float>(base, partials);
  cuda::column_sum_launch(c, cs.stream);
}

bool conv1d_backward_cuda_supports(const Tensor& dx, const Tensor& dw, const Tensor& dbias, const Tensor& dstate_in,
                                   const Tensor& dout, const Tensor& x, const Tensor& w, const Tensor& bias,
                                   const Tensor& state_in, std::string* why) {
  if (!cuda::on_cuda({{"dx", &dx}, {"dw", &dw}, {"dbias", &dbias}, {"dstate_in", &dstate_in}, {"dout", &dout},
                      {"x", &x}, {"w", &w}, {"bias", &bias}, {"state_in", &state_in}},
                     why))
    return false;
  if (dx.dtype != DType::f32 && dx.dtype != DType::bf16 && dx.dtype != DType::f16)
    return refuse(why, std::string("dx must be f32, bf16 or f16, got ") + dtype_name(dx.dtype));
  if (w.shape[1] < 1 || w.shape[1] > cuda::kConvGradMaxWidth)
    return refuse(why, "conv width k = " + std::to_string(w.shape[1]) + " is outside 1..8");
  if ((x.shape[0] * x.shape[1] + 63) / 64 > kMaxGridY) return refuse(why, "too many positions (b·l) for dw");
  return true;
}

void conv1d_causal_backward_cuda(Tensor dx, Tensor dw, Tensor dbias, Tensor dstate_in, Tensor dout, Tensor x,
                                 Tensor w, Tensor bias, Tensor state_in, bool apply_silu, Context& ctx) {
  std::string why;
  MAMBA_CHECK(conv1d_backward_cuda_supports(dx, dw, dbias, dstate_in, dout, x, w, bias, state_in, &why),
              "conv1d_causal_backward (cuda): {}", why);
  CudaState& cs = cuda_state(ctx);
  cuda::ConvGradParams p;
  p.b = x.shape[0], p.l = x.shape[1], p.e = x.shape[2], p.k = w.shape[1];
  p.dx_sb = dx.stride[0], p.dx_sl = dx.stride[1];
  if (dx.dtype == DType::f32)
    p.dx = dx.f32();
  else
    p.dx_half = dx.data, p.half_dtype = dx.dtype;
  p.dout = dout.f32(), p.dout_sb = dout.stride[0], p.dout_sl = dout.stride[1];
  p.x = x.f32(), p.x_sb = x.stride[0], p.x_sl = x.stride[1];
  p.w = w.f32();
  p.dw = dw.defined() ? dw.f32() : nullptr;
  p.dbias = dbias.defined() ? dbias.f32() : nullptr;
  p.dstate_in = dstate_in.defined() ? dstate_in.f32() : nullptr;
  p.bias = bias.defined() ? bias.f32() : nullptr;
  p.state_in = state_in.defined() ? state_in.f32() : nullptr;
  p.silu = apply_silu;
  if (p.dw != nullptr || p.dbias != nullptr)
    p.partials = static_cast<float*>(cs.scratch(size_t(cuda::conv_grad_partials(p.b, p.l, p.e, p.k)) * 4));
  cuda::conv_grad_launch(p, cs.stream);
}

bool linear_cross_entropy_cuda_supports(const Tensor& dx, const Tensor& dw, const Tensor& x, const Tensor& w,
                                        std::string* why) {
  if (!cuda::on_cuda({{"dx", &dx}, {"dw", &dw}, {"x", &x}, {"w", &w}}, why)) return false;
  if (x.dtype != DType::f32 && x.dtype != w.dtype)
    return refuse(why, std::string("x is ") + dtype_name(x.dtype) + ": it must be f32 or w's dtype");
  if (w.shape[0] < 1) return refuse(why, "w has no rows (an empty vocabulary)");
  return small_enough({cuda::rows_of(x).rows, w.shape[0], w.shape[1]}, why);
}

double linear_cross_entropy_cuda(Tensor dx, Tensor dw, Tensor x, Tensor w, const int32_t* targets, float scale,
                                 Context& ctx) {
  constexpr const char* op = "linear_cross_entropy";
  std::string why;
  MAMBA_CHECK(linear_cross_entropy_cuda_supports(dx, dw, x, w, &why), "{} (cuda): {}", op, why);
  CudaState& cs = cuda_state(ctx);
  const cuda::Rows xr = cuda::rows_of(x);
  const int64_t m = xr.rows, d = xr.cols, v = w.shape[0];
  if (m == 0) return 0.0;
  const bool half = w.dtype != DType::f32;
  const bool round_x = half && x.dtype == DType::f32;  // else x is used as it is
  const size_t xs = dtype_size(x.dtype);
  const int64_t block = std::clamp<int64_t>(kXentLogitBytes / (v * 4), 1, m);
  Arena arena;
  const size_t logits = arena.add(size_t(block * v) * 4);
  const size_t grad16 = half ? arena.add(size_t(block * v) * 2) : 0;
  const size_t x16 = round_x ? arena.add(size_t(block * d) * 2) : 0;
  const size_t losses = arena.add(size_t(m + 1) * 8);
  void* base = cs.scratch(arena.bytes);
  const int64_t ld_dx = dx.defined() ? cuda::rows_of(dx).ld : 0;
  for (int64_t r0 = 0; r0 < m; r0 += block) {
    const int64_t rows = std::min(block, m - r0);
    const void* xb = static_cast<const char*>(x.data) + size_t(r0 * xr.ld) * xs;
    int64_t ld_xb = xr.ld;
    if (round_x) {
      to_half(op, at<void>(base, x16), w.dtype, x.f32() + r0 * xr.ld, xr.ld, rows, d, cs);
      xb = at<void>(base, x16), ld_xb = d;
    }
    cuda::Gemm lg;  // logitsᵀ (v, rows) = (wᵀ)ᵀ · xbᵀ
    lg.trans_a = true, lg.a = w.data, lg.lda = ld_of(w), lg.b = xb, lg.ldb = ld_xb;
    lg.d = at<float>(base, logits), lg.ldd = v, lg.in = w.dtype, lg.rows = v, lg.cols = rows, lg.inner = d;
    cuda::gemm_run(op, lg, cs);
    cuda::SoftmaxXentParams sp;
    sp.logits = at<float>(base, logits), sp.grad_half = half ? at<void>(base, grad16) : nullptr;
    sp.half_dtype = w.dtype, sp.targets = targets + r0, sp.loss = at<double>(base, losses) + 1 + r0;
    sp.m = rows, sp.v = v, sp.scale = scale;
    cuda::softmax_xent_launch(sp, cs.stream);
    const void* g = half ? at<void>(base, grad16) : static_cast<const void*>(at<float>(base, logits));
    if (dx.defined()) {
      cuda::Gemm gx;  // dxᵀ (d, rows) = wᵀ (d, v) · gᵀ (v, rows)
      gx.a = w.data, gx.lda = ld_of(w), gx.b = g, gx.ldb = v, gx.d = dx.f32() + r0 * ld_dx, gx.ldd = ld_dx;
      gx.in = w.dtype, gx.rows = d, gx.cols = rows, gx.inner = v;
      cuda::gemm_run(op, gx, cs);
    }
    if (dw.defined()) {
      cuda::Gemm gw;  // dwᵀ (d, v) += xbᵀ (d, rows) · g (rows, v)
      gw.a = xb, gw.lda = ld_xb, gw.b = g, gw.ldb = v, gw.trans_b = true, gw.d = dw.f32(), gw.ldd = d;
      gw.in = w.dtype, gw.rows = d, gw.cols = v, gw.inner = rows, gw.beta = 1.0f;
      cuda::gemm_run(op, gw, cs);
    }
  }
  double* sum = at<double>(base, losses);
  cuda::sum_doubles_launch(sum, sum + 1, m, cs.stream);
  double total = 0;
  CUDA_CHECK(cudaMemcpyAsync(&total, sum, sizeof(double), cudaMemcpyDeviceToHost, cs.stream));
  cs.synchronize();
  return total;
}

}  // namespace mambacpp
