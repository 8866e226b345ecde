// linear_forward on the GPU through cuBLASLt (see cuda_ops.h). cuBLASLt is column-major: the row-major
// y (m, o) = x (m, i) · wᵀ is computed as the column-major yᵀ (o, m) = op(W) · xᵀ with W = w read as a
// column-major (i, o) matrix and op = transpose, so no operand is copied. Accumulation and scaling are f32.
// Products of at most kGemvMaxRows rows (decoding) run the few-row kernel of gemv_kernel.cu instead, which reads
// x in f32 and w in its own dtype with one launch. An x already held in w's half dtype goes to cuBLASLt as it is.
#include <cublasLt.h>

#include <cstdint>
#include <string>

#include "core/cuda/check.h"
#include "core/cuda/cuda_state.h"
#include "core/error.h"
#include "ops/cuda/cuda_ops.h"
#include "ops/cuda/gemv_kernel.h"
#include "ops/cuda/infer_kernels.h"
#include "ops/cuda/tensor_rows.h"

namespace mambacpp {
namespace {

cudaDataType_t blas_type(DType t) {
  if (t == DType::bf16) return CUDA_R_16BF;
  if (t == DType::f16) return CUDA_R_16F;
  return CUDA_R_32F;
}

// The largest of 16, 8, 4, 2 bytes that divides both the address and the row pitch.
uint32_t alignment(const void* p, int64_t ld, size_t elem) {
  const uint64_t bits = uint64_t(reinterpret_cast<uintptr_t>(p)) | uint64_t(ld) * elem;
  for (uint32_t a = 16; a > 2; a /= 2)
    if (bits % a == 0) return a;
  return 2;
}

// Owns the cuBLASLt descriptors of one call.
struct LtCall {
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, d = nullptr;
  cublasLtMatmulPreference_t pref = nullptr;
  ~LtCall() {
    if (pref) (void)cublasLtMatmulPreferenceDestroy(pref);
    if (d) (void)cublasLtMatrixLayoutDestroy(d);
    if (b) (void)cublasLtMatrixLayoutDestroy(b);
    if (a) (void)cublasLtMatrixLayoutDestroy(a);
    if (op) (void)cublasLtMatmulDescDestroy(op);
  }
};

// One column-major matmul D (o, m) = op(A) (o, k) · B (k, m), A read transposed from (k, o) with pitch lda.
struct Gemm {
  const void* w;
  int64_t ldw;
  const void* x;
  int64_t ldx;
  float* y;
  int64_t ldy;
  DType in;
  int64_t m, o, i;
};

void run_gemm(const Gemm& g, CudaState& cs) {
  LtCall c;
  CUBLAS_CHECK(cublasLtMatmulDescCreate(&c.op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  const cublasOperation_t trans = CUBLAS_OP_T, none = CUBLAS_OP_N;
  CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(c.op, CUBLASLT_MATMUL_DESC_TRANSA, &trans, sizeof(trans)));
  CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(c.op, CUBLASLT_MATMUL_DESC_TRANSB, &none, sizeof(none)));
  const cudaDataType_t t = blas_type(g.in);
  CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&c.a, t, uint64_t(g.i), uint64_t(g.o), g.ldw));
  CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&c.b, t, uint64_t(g.i), uint64_t(g.m), g.ldx));
  CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&c.d, CUDA_R_32F, uint64_t(g.o), uint64_t(g.m), g.ldy));
  CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&c.pref));
  const size_t ws = CudaState::kBlasWorkspaceBytes;
  CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(c.pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws,
                                                    sizeof(ws)));
  const size_t es = dtype_size(g.in);
  const uint32_t al_a = alignment(g.w, g.ldw, es), al_b = alignment(g.x, g.ldx, es), al_d = alignment(g.y, g.ldy, 4);
  CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(c.pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &al_a,
                                                    sizeof(al_a)));
  CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(c.pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &al_b,
                                                    sizeof(al_b)));
  CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(c.pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &al_d,
                                                    sizeof(al_d)));
  CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(c.pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &al_d,
                                                    sizeof(al_d)));
  cublasLtMatmulHeuristicResult_t h{};
  int found = 0;
  CUBLAS_CHECK(cublasLtMatmulAlgoGetHeuristic(cs.blas_lt, c.op, c.a, c.b, c.d, c.d, c.pref, 1, &h, &found));
  MAMBA_CHECK(found > 0, "linear_forward (cuda): cuBLASLt has no algorithm for y ({}, {}) = x ({}, {}) · wᵀ in {}",
              g.m, g.o, g.m, g.i, dtype_name(g.in));
  const float one = 1.0f, zero = 0.0f;
  CUBLAS_CHECK(cublasLtMatmul(cs.blas_lt, c.op, &one, g.w, c.a, g.x, c.b, &zero, g.y, c.d, g.y, c.d, &h.algo,
                              cs.blas_workspace, ws, cs.stream));
}

}  // namespace

bool linear_cuda_supports(const Tensor& y, const Tensor& x, const Tensor& w, const Tensor& bias, std::string* why) {
  if (!cuda::on_cuda({{"y", &y}, {"x", &x}, {"w", &w}, {"bias", &bias}}, why)) return false;
  if (x.dtype != DType::f32 && x.dtype != w.dtype) {
    if (why != nullptr) *why = std::string("x is ") + dtype_name(x.dtype) + ": it must be f32 or w's dtype";
    return false;
  }
  const cuda::Rows r = cuda::rows_of(x);
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
  if (i == 0) {
    CUDA_CHECK(cudaMemset2DAsync(y.data, size_t(yr.ld) * 4, 0, size_t(o) * 4, size_t(m), cs.stream));
  } else {
    Gemm g{w.data, ldw, x.data, xr.ld, y.f32(), yr.ld, w.dtype, m, o, i};
    if (w.dtype != DType::f32 && !x_rounded) {
      cuda::ConvertParams cp;
      cp.dst = cs.scratch(size_t(m * i) * dtype_size(w.dtype));
      cp.dst_dtype = w.dtype, cp.src = x.f32(), cp.ld_src = xr.ld, cp.m = m, cp.c = i;
      MAMBA_CHECK(cuda::convert_kernel_supports(cp, &why), "linear_forward (cuda): {}", why);
      cuda::convert_kernel_launch(cp, cs.stream);
      g.x = cp.dst, g.ldx = i;
    }
    run_gemm(g, cs);
  }
  if (bias.defined()) cuda::bias_kernel_launch({y.f32(), bias.f32(), yr.ld, m, o}, cs.stream);
}

}  // namespace mambacpp
