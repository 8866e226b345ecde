// linear_forward on the GPU through the cuBLASLt product of gemm.h (see cuda_ops.h). cuBLASLt is column-major:
// the row-major y (m, o) = x (m, i) · wᵀ is computed as the column-major yᵀ (o, m) = op(W) · xᵀ with W = w read
// as a column-major (i, o) matrix and op = transpose, so no operand is copied. Accumulation and scaling are f32.
// Products of at most kGemvMaxRows rows (decoding) run the few-row kernel of gemv_kernel.cu instead, which reads
// x in f32 and w in its own dtype with one launch. An x already held in w's half dtype goes to cuBLASLt as it is
// (its row stride as ldb: a view into a wider matrix is read in place); a y in w's half dtype is cuBLASLt's D,
// the f32 sums rounded once.
#include <cstdint>
#include <string>

#include "core/cuda/check.h"
#include "core/cuda/cuda_state.h"
#include "core/error.h"
#include "ops/cuda/cuda_ops.h"
#include "ops/cuda/gemm.h"
#include "ops/cuda/gemv_kernel.h"
#include "ops/cuda/infer_kernels.h"
#include "ops/cuda/tensor_rows.h"

namespace mambacpp {

static_assert(cuda::kGemvMaxRows == kLinearFewRows, "ops.h names the few-row kernel's bound");

bool linear_cuda_supports(const Tensor& y, const Tensor& x, const Tensor& w, const Tensor& bias, std::string* why) {
  if (!cuda::on_cuda({{"y", &y}, {"x", &x}, {"w", &w}, {"bias", &bias}}, why)) return false;
  if (x.dtype != DType::f32 && x.dtype != w.dtype) {
    if (why != nullptr) *why = std::string("x is ") + dtype_name(x.dtype) + ": it must be f32 or w's dtype";
    return false;
  }
  const cuda::Rows r = cuda::rows_of(x);
  if (y.dtype != DType::f32) {
    std::string no;
    if (y.dtype != w.dtype)
      no = std::string("it must be f32 or w's dtype (") + dtype_name(w.dtype) + ")";
    else if (r.rows <= cuda::kGemvMaxRows)
      no = "a half y needs more than " + std::to_string(cuda::kGemvMaxRows) + " rows (the few-row kernel writes f32)";
    else if (bias.defined())
      no = "a half y is written without a bias (the bias is added to an f32 y)";
    if (!no.empty()) {
      if (why != nullptr) *why = std::string("y is ") + dtype_name(y.dtype) + ": " + no;
      return false;
    }
  }
  if (r.rows > INT32_MAX || r.cols > INT32_MAX || w.shape[0] > INT32_MAX) {
    if (why != nullptr) *why = "a dimension exceeds 2^31 - 1";
    return false;
  }
  return true;
}

void linear_forward_cuda(Tensor y, Tensor x, Tensor w, Tensor bias, Context& ctx) {
  std::string why;
  MAMBA_CHECK(linear_cuda_supports(y, x, w, bias, &why), "linear_forward (cuda): {}", why);
  CudaState& cs = cuda_state(ctx);
  const cuda::Rows xr = cuda::rows_of(x), yr = cuda::rows_of(y);
  const int64_t m = xr.rows, i = xr.cols, o = w.shape[0];
  if (m == 0 || o == 0) return;
  const int64_t ldw = w.shape[0] <= 1 ? i : w.stride[0];
  const bool x_rounded = x.dtype != DType::f32;  // already in w's half dtype
  if (m <= cuda::kGemvMaxRows && i > 0 && !x_rounded) {
    cuda::GemvParams gp;
    gp.y = y.f32(), gp.ld_y = yr.ld, gp.x = x.f32(), gp.ld_x = xr.ld, gp.w = w.data, gp.w_dtype = w.dtype;
    gp.ld_w = ldw, gp.bias = bias.defined() ? bias.f32() : nullptr, gp.m = m, gp.i = i, gp.o = o;
    MAMBA_CHECK(cuda::gemv_kernel_supports(gp, &why), "linear_forward (cuda): {}", why);
    return cuda::gemv_kernel_launch(gp, cs.stream);
  }
  // yᵀ (o, m) = op(W) · xᵀ, W = w read as a column-major (i, o) matrix, op = transpose.
  cuda::Gemm g;
  g.trans_a = true, g.a = w.data, g.lda = ldw, g.b = x.data, g.ldb = xr.ld, g.d = y.data, g.ldd = yr.ld;
  g.in = w.dtype, g.out = y.dtype, g.rows = o, g.cols = m, g.inner = i;
  if (i > 0 && w.dtype != DType::f32 && !x_rounded) {  // x rounded to w's dtype first
    cuda::ConvertParams cp;
    cp.dst = cs.scratch(size_t(m * i) * dtype_size(w.dtype));
    cp.dst_dtype = w.dtype, cp.src = x.f32(), cp.ld_src = xr.ld, cp.m = m, cp.c = i;
    MAMBA_CHECK(cuda::convert_kernel_supports(cp, &why), "linear_forward (cuda): {}", why);
    cuda::convert_kernel_launch(cp, cs.stream);
    g.b = cp.dst, g.ldb = i;
  }
  cuda::gemm_run("linear_forward", g, cs);
  if (bias.defined()) cuda::bias_kernel_launch({y.f32(), bias.f32(), yr.ld, m, o}, cs.stream);
}

}  // namespace mambacpp
