// RMSNorm with the fused residual add, on the CPU (see ops.h and cpu_ops.h). One row at a time, rows spread
// over the threads; the sum of squares of a row is accumulated in a fixed order, so results do not depend on
// the thread count.
#include <algorithm>
#include <cmath>

#include "ops/cpu/cpu_ops.h"
#include "ops/cpu/simd.h"

namespace mambacpp::cpu {
namespace {

// residual_row += x_row (when given); returns Σ residual_row².
float add_and_square_sum(float* res, const float* x, int64_t d) {
  Vec sq = Vec::zero();
  for (int64_t c = 0; c < d; c += kLanes) {
    const int count = int(std::min<int64_t>(kLanes, d - c));
    Vec r = Vec::load_partial(res + c, count);
    if (x) {
      r = r + Vec::load_partial(x + c, count);
      r.store_partial(res + c, count);
    }
    sq = fma(r, r, sq);
  }
  return reduce_add(sq);
}

void norm_row(float* out, float* res, const float* x, const float* w, int64_t d, float eps) {
  const float mean_sq = add_and_square_sum(res, x, d) / float(d);
  const Vec scale = Vec::broadcast(1.0f / std::sqrt(mean_sq + eps));
  for (int64_t c = 0; c < d; c += kLanes) {
    const int count = int(std::min<int64_t>(kLanes, d - c));
    const Vec r = Vec::load_partial(res + c, count);
    ((r * scale) * Vec::load_partial(w + c, count)).store_partial(out + c, count);
  }
}

}  // namespace

void rmsnorm(MatF32 out, MatF32 residual, MatF32 x, const float* w, float eps, int threads) {
  const bool parallel = out.rows * out.cols >= (int64_t(1) << 15);
#pragma omp parallel for num_threads(threads) schedule(static) if (parallel)
  for (int64_t r = 0; r < out.rows; ++r)
    norm_row(out.row(r), residual.row(r), x.p ? x.row(r) : nullptr, w, out.cols, eps);
}

}  // namespace mambacpp::cpu
