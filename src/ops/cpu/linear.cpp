// The linear layer on the CPU (see cpu_ops.h): routes by row count to the weight-streaming kernel (decoding)
// or the blocked matrix-matrix kernel (linear_kernels.h).
#include "ops/cpu/linear_kernels.h"

namespace mambacpp::cpu {

void linear(MatF32 y, MatF32 x, MatAny w, const float* bias, int threads) {
  if (x.rows == 0 || w.rows == 0) return;
  if (x.cols == 0) {  // empty sums: y = bias
    for (int64_t r = 0; r < y.rows; ++r)
      for (int64_t c = 0; c < y.cols; ++c) y.row(r)[c] = bias ? bias[c] : 0.0f;
    return;
  }
  if (x.rows <= kMatvecMaxRows)
    matvec(y, x, w, bias, threads);
  else
    gemm(y, x, w, bias, threads);
}

}  // namespace mambacpp::cpu
