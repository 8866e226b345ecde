// The cuBLASLt matrix product of gemm.h: descriptors built per call, alignment preferences from the actual
// addresses and pitches, the first algorithm of cuBLASLt's heuristic. The compute and scale types are f32 for
// every dtype; a half D is C's dtype too (C is D, read only when beta is not 0).
#include "ops/cuda/gemm.h"

#include <cublasLt.h>

#include <cstdint>

#include "core/cuda/check.h"
#include "core/error.h"

namespace mambacpp::cuda {
namespace {

cudaDataType_t blas_type(DType t) {
  if (t == DType::bf16) return CUDA_R_16BF;
  if (t == DType::f16) return CUDA_R_16F;
  return CUDA_R_32F;
}

// The largest of 16, 8, 4, 2 bytes that divides both the address and the column pitch.
uint32_t alignment(const void* p, int64_t ld, size_t elem) {
  const uint64_t bits = uint64_t(reinterpret_cast<uintptr_t>(p)) | uint64_t(ld) * elem;
  for (uint32_t a = 16; a > 2; a /= 2)
    if (bits % a == 0) return a;
  return 2;
}

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

void set_pref(cublasLtMatmulPreference_t pref, cublasLtMatmulPreferenceAttributes_t attr, uint32_t value) {
  CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, attr, &value, sizeof(value)));
}

}  // namespace

void gemm_run(const char* opname, const Gemm& g, CudaState& cs) {
  MAMBA_CHECK(g.out == DType::f32 || g.out == g.in, "{} (cuda): a {} product cannot write a {} result", opname,
              dtype_name(g.in), dtype_name(g.out));
  if (g.rows == 0 || g.cols == 0) return;
  const size_t es_d = dtype_size(g.out);
  if (g.inner == 0) {  // zero bytes are zeros in f32, bf16 and f16
    if (g.beta == 0.0f)
      CUDA_CHECK(cudaMemset2DAsync(g.d, size_t(g.ldd) * es_d, 0, size_t(g.rows) * es_d, size_t(g.cols), cs.stream));
    return;
  }
  LtCall c;
  CUBLAS_CHECK(cublasLtMatmulDescCreate(&c.op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  const cublasOperation_t ta = g.trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, tb = g.trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
  CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(c.op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof(ta)));
  CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(c.op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof(tb)));
  const cudaDataType_t t = blas_type(g.in);
  CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&c.a, t, uint64_t(g.trans_a ? g.inner : g.rows),
                                          uint64_t(g.trans_a ? g.rows : g.inner), g.lda));
  CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&c.b, t, uint64_t(g.trans_b ? g.cols : g.inner),
                                          uint64_t(g.trans_b ? g.inner : g.cols), g.ldb));
  CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&c.d, blas_type(g.out), uint64_t(g.rows), uint64_t(g.cols), g.ldd));
  CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&c.pref));
  const size_t ws = CudaState::kBlasWorkspaceBytes;
  CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(c.pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws,
                                                    sizeof(ws)));
  const size_t es = dtype_size(g.in);
  const uint32_t al_d = alignment(g.d, g.ldd, es_d);
  set_pref(c.pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, alignment(g.a, g.lda, es));
  set_pref(c.pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, alignment(g.b, g.ldb, es));
  set_pref(c.pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, al_d);
  set_pref(c.pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, al_d);
  cublasLtMatmulHeuristicResult_t h{};
  int found = 0;
  CUBLAS_CHECK(cublasLtMatmulAlgoGetHeuristic(cs.blas_lt, c.op, c.a, c.b, c.d, c.d, c.pref, 1, &h, &found));
  MAMBA_CHECK(found > 0, "{} (cuda): cuBLASLt has no algorithm for a ({}, {}) · ({}, {}) product in {} to {}", opname,
              g.rows, g.inner, g.inner, g.cols, dtype_name(g.in), dtype_name(g.out));
  const float one = 1.0f;
  CUBLAS_CHECK(cublasLtMatmul(cs.blas_lt, c.op, &one, g.a, c.a, g.b, c.b, &g.beta, g.d, c.d, g.d, c.d, &h.algo,
                              cs.blas_workspace, ws, cs.stream));
}

}  // namespace mambacpp::cuda
