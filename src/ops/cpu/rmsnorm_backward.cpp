// Backward of RMSNorm with the fused residual add, on the CPU (see ops_backward.h and cpu_backward.h).
//
// Rows are independent for dresidual; the weight gradient is a sum over rows, taken in fixed blocks of
// kBlockRows rows (each block's partial sum in row order), the blocks' partials then added in block order, so
// the result does not depend on the thread count.
#include <algorithm>
#include <cmath>

#include "core/buffer.h"
#include "ops/cpu/cpu_backward.h"
#include "ops/cpu/kept_buffer.h"
#include "ops/cpu/simd.h"

namespace mambacpp::cpu {
namespace {

constexpr int64_t kBlockRows = 64;

// One row: dres += s·g − res·s³·Σ(g·res)/d with g = dout·w; partial_dw += dout·res·s (when given).
void row_backward(float* dres, float* partial_dw, const float* dout, const float* res, const float* w, int64_t d,
                  float eps) {
  Vec sq = Vec::zero(), dot = Vec::zero();
  for (int64_t c = 0; c < d; c += kLanes) {
    const int count = int(std::min<int64_t>(kLanes, d - c));
    const Vec r = Vec::load_partial(res + c, count);
    sq = fma(r, r, sq);
    dot = fma(Vec::load_partial(dout + c, count) * Vec::load_partial(w + c, count), r, dot);
  }
  const float s = 1.0f / std::sqrt(reduce_add(sq) / float(d) + eps);
  const Vec vs = Vec::broadcast(s), coef = Vec::broadcast(s * s * s * reduce_add(dot) / float(d));
  for (int64_t c = 0; c < d; c += kLanes) {
    const int count = int(std::min<int64_t>(kLanes, d - c));
    const Vec r = Vec::load_partial(res + c, count), go = Vec::load_partial(dout + c, count);
    const Vec g = go * Vec::load_partial(w + c, count);
    (Vec::load_partial(dres + c, count) + (vs * g - coef * r)).store_partial(dres + c, count);
    if (partial_dw) fma(go, r * vs, Vec::load_partial(partial_dw + c, count)).store_partial(partial_dw + c, count);
  }
}

}  // namespace

void rmsnorm_backward(MatF32 dresidual, float* dw, MatF32 dout, MatF32 residual, const float* w, float eps,
                      int threads) {
  const int64_t m = dout.rows, d = dout.cols, blocks = (m + kBlockRows - 1) / kBlockRows;
  thread_local Buffer partial_mem;  // kept between calls (kept_buffer.h)
  float* partial = dw ? grown(partial_mem, size_t(blocks * d)) : nullptr;
  if (dw) std::fill_n(partial, blocks * d, 0.0f);
  const bool parallel = m * d >= (int64_t(1) << 14);
#pragma omp parallel for num_threads(threads) schedule(static) if (parallel)
  for (int64_t blk = 0; blk < blocks; ++blk) {
    float* pdw = dw ? partial + blk * d : nullptr;
    for (int64_t r = blk * kBlockRows; r < std::min(m, (blk + 1) * kBlockRows); ++r)
      row_backward(dresidual.row(r), pdw, dout.row(r), residual.row(r), w, d, eps);
  }
  if (!dw) return;
  for (int64_t blk = 0; blk < blocks; ++blk)
    for (int64_t c = 0; c < d; ++c) dw[c] += partial[blk * d + c];
}

}  // namespace mambacpp::cpu
