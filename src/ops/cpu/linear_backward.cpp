// Backward of the linear layer on the CPU (see ops_backward.h and cpu_backward.h).
//
// Both products reuse the forward's packed matrix-matrix kernel, which computes a · bᵀ: dx = dy · w is
// dy · (wᵀ)ᵀ, and dw = dyᵀ · x is dyᵀ · (xᵀ)ᵀ, so the operands are transposed first (16 × 16 blocks at a
// time). That kernel sums in an order fixed by the shapes, and so do the transposes and the bias gradient
// (each column summed over the rows in order), so the results do not depend on the thread count.
#include <algorithm>

#include "core/buffer.h"
#include "ops/cpu/cpu_backward.h"
#include "ops/cpu/kept_buffer.h"
#include "ops/cpu/simd.h"

namespace mambacpp::cpu {
namespace {

// dbias[c] += Σ_r dy[r, c], each column's rows summed in order; column blocks spread over the threads.
void bias_grad(float* dbias, const MatF32& dy, int threads) {
  const int64_t blocks = (dy.cols + kLanes - 1) / kLanes;
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t blk = 0; blk < blocks; ++blk) {
    const int64_t c0 = blk * kLanes;
    const int count = int(std::min<int64_t>(kLanes, dy.cols - c0));
    Vec acc = Vec::zero();
    for (int64_t r = 0; r < dy.rows; ++r) acc = acc + Vec::load_partial(dy.row(r) + c0, count);
    (Vec::load_partial(dbias + c0, count) + acc).store_partial(dbias + c0, count);
  }
}

MatAny as_any(const float* p, int64_t rows, int64_t cols) { return {p, DType::f32, rows, cols, cols}; }

// The transposed operands and the product, kept between calls (kept_buffer.h).
struct Operands {
  Buffer wt, dyt, xt, prod;
};
thread_local Operands operands;

}  // namespace

void transpose(float* dst, MatF32 src, int threads) {
  const int64_t rb = (src.rows + kLanes - 1) / kLanes, cb = (src.cols + kLanes - 1) / kLanes;
  const bool parallel = src.rows * src.cols >= (int64_t(1) << 15);
#pragma omp parallel for num_threads(threads) schedule(static) if (parallel)
  for (int64_t it = 0; it < rb * cb; ++it) {
    const int64_t r0 = (it / cb) * kLanes, c0 = (it % cb) * kLanes;
    const int rows = int(std::min<int64_t>(kLanes, src.rows - r0));
    const int cols = int(std::min<int64_t>(kLanes, src.cols - c0));
    Vec block[kLanes];
    for (int i = 0; i < kLanes; ++i) block[i] = i < rows ? Vec::load_partial(src.row(r0 + i) + c0, cols) : Vec::zero();
    transpose16(block);
    for (int j = 0; j < cols; ++j) block[j].store_partial(dst + (c0 + j) * src.rows + r0, rows);
  }
}

void linear_backward(MatF32 dx, MatF32 dw, float* dbias, MatF32 dy, MatF32 x, MatF32 w, bool accumulate_dx,
                     int threads) {
  const int64_t m = dy.rows, o = dy.cols, i = w.cols;
  if (dbias) bias_grad(dbias, dy, threads);
  if (dx.p) {
    float* wt = grown(operands.wt, size_t(i * o));  // (i, o)
    transpose(wt, w, threads);
    // With accumulate_dx the product goes to a temporary first, then is added: dx + (dy · w) rounded as such.
    const MatF32 out = accumulate_dx ? MatF32{grown(operands.prod, size_t(m * i)), m, i, i} : dx;
    linear(out, dy, as_any(wt, i, o), nullptr, threads);
    if (o == 0)
      for (int64_t r = 0; r < m; ++r) std::fill(out.row(r), out.row(r) + i, 0.0f);
    if (accumulate_dx) {
#pragma omp parallel for num_threads(threads) schedule(static)
      for (int64_t r = 0; r < m; ++r)
        for (int64_t c = 0; c < i; ++c) dx.row(r)[c] += out.row(r)[c];
    }
  }
  if (dw.p && m > 0) {
    float* dyt = grown(operands.dyt, size_t(o * m));
    float* xt = grown(operands.xt, size_t(i * m));
    const MatF32 p{grown(operands.prod, size_t(o * i)), o, i, i};
    transpose(dyt, dy, threads);
    transpose(xt, x, threads);
    linear(p, MatF32{dyt, o, m, m}, as_any(xt, i, m), nullptr, threads);
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t r = 0; r < o; ++r)
      for (int64_t c = 0; c < i; ++c) dw.row(r)[c] += p.row(r)[c];
  }
}

}  // namespace mambacpp::cpu
