// The head fused with cross-entropy on the CPU (see ops_backward.h): rows are taken kBlockRows at a time, so
// that at most a (kBlockRows, v) block of logits exists. Per block: logits = x · wᵀ; per row the log-sum-exp,
// the loss, and the logits turned in place into scale · (softmax − onehot); then dx = that · w (wᵀ prepared once)
// and dw += thatᵀ · x (through linear_backward). Row losses are summed in row order, in double.
#include <algorithm>
#include <cmath>
#include <vector>

#include "core/buffer.h"
#include "ops/cpu/cpu_backward.h"
#include "ops/cpu/kept_buffer.h"
#include "ops/cpu/simd.h"
#include "ops/cpu/vec_math.h"

namespace mambacpp::cpu {
namespace {

// Rows per block: about 32 MiB of logits, at least 16 rows. A function of v alone.
int64_t block_rows(int64_t v) { return std::max<int64_t>(16, (int64_t(1) << 23) / std::max<int64_t>(v, 1)); }

// Turns row (v) of logits into scale · (softmax − onehot(target)) and returns −log softmax[target].
double softmax_row(float* row, int64_t v, int32_t target, float scale) {
  Vec mx = Vec::broadcast(-INFINITY);
  for (int64_t c = 0; c < v; c += kLanes) {
    const int count = int(std::min<int64_t>(kLanes, v - c));
    const Vec x = Vec::load_partial(row + c, count);
    mx = select(Mask(greater(x, mx) & first_lanes(count)), x, mx);
  }
  float mxs[kLanes];
  mx.store(mxs);
  const float m = *std::max_element(mxs, mxs + kLanes);
  const float shifted_target = row[target] - m;
  Vec sum = Vec::zero();
  for (int64_t c = 0; c < v; c += kLanes) {
    const int count = int(std::min<int64_t>(kLanes, v - c));
    const Vec p = exp(Vec::load_partial(row + c, count) - Vec::broadcast(m));
    p.store_partial(row + c, count);
    sum = sum + select(first_lanes(count), p, Vec::zero());
  }
  const float total = reduce_add(sum);
  const double loss = std::log(double(total)) - double(shifted_target);
  const Vec factor = Vec::broadcast(scale / total);
  for (int64_t c = 0; c < v; c += kLanes) {
    const int count = int(std::min<int64_t>(kLanes, v - c));
    (Vec::load_partial(row + c, count) * factor).store_partial(row + c, count);
  }
  row[target] -= scale;
  return loss;
}

}  // namespace

double linear_cross_entropy(MatF32 dx, MatF32 dw, MatF32 x, MatF32 w, const int32_t* targets, float scale,
                            int threads) {
  const int64_t m = x.rows, v = w.rows, d = x.cols, rows = std::min(block_rows(v), std::max<int64_t>(m, 1));
  thread_local Buffer logits_mem, wt_mem;  // kept between calls (kept_buffer.h)
  float* logits = grown(logits_mem, size_t(rows * v));
  std::vector<double> losses(static_cast<size_t>(rows));
  const MatAny wa{w.p, DType::f32, v, d, w.ld};
  float* wt = nullptr;  // wᵀ (d, v), for dx = block · w through the a · bᵀ kernel
  if (dx.p) {
    wt = grown(wt_mem, size_t(d * v));
    transpose(wt, w, threads);
  }
  double total = 0;
  for (int64_t r0 = 0; r0 < m; r0 += rows) {
    const int64_t rc = std::min(rows, m - r0);
    const MatF32 xb{x.row(r0), rc, d, x.ld}, lb{logits, rc, v, v};
    linear(lb, xb, wa, nullptr, threads);
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t r = 0; r < rc; ++r) {
      const int32_t t = targets[r0 + r];
      if (t >= 0) {
        losses[size_t(r)] = softmax_row(lb.row(r), v, t, scale);
      } else {
        losses[size_t(r)] = 0;
        std::fill(lb.row(r), lb.row(r) + v, 0.0f);
      }
    }
    for (int64_t r = 0; r < rc; ++r) total += losses[size_t(r)];
    if (dx.p) linear(MatF32{dx.row(r0), rc, d, dx.ld}, lb, MatAny{wt, DType::f32, d, v, v}, nullptr, threads);
    if (dw.p) linear_backward(MatF32{}, dw, nullptr, lb, xb, w, false, threads);
  }
  return total;
}

}  // namespace mambacpp::cpu
