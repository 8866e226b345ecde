// The linear layer for many rows, on the CPU: y (m, o) = x (m, i) · wᵀ (o, i) + bias, cache-blocked.
//
// w is cut into panels of 32 output columns. A panel is packed (converted to f32 from f32/bf16/f16 and
// transposed with 16 × 16 register transposes) into i × 32 floats, so that for each k the 32 weights w[o, k]
// are two contiguous vectors. A micro-kernel then keeps a tile of up to 12 rows × 32 columns of y in 24
// vector accumulators, and for each k broadcasts x[r, k] and issues two FMAs per row. The k loop is cut into
// blocks of kKc (the packed sub-panel stays in L1), rows into blocks of about kMc (the x block stays in L2).
//
// Work items are (panel, row block) pairs spread over the threads in contiguous runs, so that a thread packs
// each of its panels once. Each element of y is summed in the same order (blocks of kKc in k order, each
// accumulated from zero and then added to y, the first one to the bias) whatever the thread count.
#include <algorithm>
#include <array>
#include <utility>

#include "ops/cpu/linear_kernels.h"
#include "ops/cpu/scratch.h"
#include "ops/cpu/simd.h"

namespace mambacpp::cpu {
namespace {

constexpr int kNr = 2 * kLanes;  // columns of a panel
constexpr int kMr = 12;          // rows of a micro-tile
constexpr int64_t kKc = 256;     // k block
constexpr int64_t kMc = 256;     // target rows per block

// dst (K, 32) = w[o0 .. o0 + cols, 0 .. K)ᵀ as f32; columns past `cols` are zero.
void pack_panel(float* dst, const MatAny& w, int64_t o0, int cols) {
  const int64_t K = w.cols;
  const size_t elem = dtype_size(w.dtype);
  for (int j0 = 0; j0 < kNr; j0 += kLanes) {
    const int rows = std::clamp(cols - j0, 0, kLanes);
    for (int64_t k = 0; k < K; k += kLanes) {
      const int count = int(std::min<int64_t>(kLanes, K - k));
      Vec block[kLanes];
      for (int i = 0; i < kLanes; ++i) {
        if (i >= rows) {
          block[i] = Vec::zero();
          continue;
        }
        const void* row = static_cast<const char*>(w.p) + size_t(o0 + j0 + i) * size_t(w.ld) * elem;
        block[i] = load_as_f32(row, w.dtype, k, count);
      }
      transpose16(block);
      for (int kk = 0; kk < count; ++kk) block[kk].store(dst + (k + kk) * kNr + j0);
    }
  }
}

struct Tile {
  const float* x;      // row 0, column k0 of the tile's x rows
  int64_t ldx;
  const float* panel;  // row k0 of the packed panel
  int64_t kc;
  float* y;            // row 0, first column of the panel in y
  int64_t ldy;
  int cols;            // valid columns of the panel
  const float* bias;   // at the panel's first column, or null
  bool first;          // first k block: y = bias + sum, otherwise y += sum
};

template <int R>
void micro_tile(const Tile& t) {
  Vec acc0[R], acc1[R];
  for (int r = 0; r < R; ++r) acc0[r] = acc1[r] = Vec::zero();
  const float* b = t.panel;
  for (int64_t k = 0; k < t.kc; ++k, b += kNr) {
    const Vec b0 = Vec::load(b), b1 = Vec::load(b + kLanes);
    for (int r = 0; r < R; ++r) {
      const Vec a = Vec::broadcast(t.x[r * t.ldx + k]);
      acc0[r] = fma(a, b0, acc0[r]);
      acc1[r] = fma(a, b1, acc1[r]);
    }
  }
  const int n0 = std::min(t.cols, kLanes), n1 = t.cols - n0;
  for (int r = 0; r < R; ++r) {
    float* y = t.y + r * t.ldy;
    Vec base0 = Vec::zero(), base1 = Vec::zero();
    if (!t.first) {
      base0 = Vec::load_partial(y, n0);
      if (n1 > 0) base1 = Vec::load_partial(y + kLanes, n1);
    } else if (t.bias) {
      base0 = Vec::load_partial(t.bias, n0);
      if (n1 > 0) base1 = Vec::load_partial(t.bias + kLanes, n1);
    }
    (base0 + acc0[r]).store_partial(y, n0);
    if (n1 > 0) (base1 + acc1[r]).store_partial(y + kLanes, n1);
  }
}

using TileFn = void (*)(const Tile&);

template <size_t... R>
constexpr std::array<TileFn, sizeof...(R)> tile_kernels(std::index_sequence<R...>) {
  return {micro_tile<int(R) + 1>...};
}
// kTiles[R - 1] handles R rows.
constexpr auto kTiles = tile_kernels(std::make_index_sequence<kMr>());

// Rows [r0, r1) of y, columns of one panel.
void row_block(const MatF32& y, const MatF32& x, const float* panel, int64_t o0, int cols, const float* bias,
               int64_t r0, int64_t r1) {
  const int64_t K = x.cols;
  for (int64_t k0 = 0; k0 < K; k0 += kKc) {
    Tile t{nullptr, x.ld, panel + k0 * kNr, std::min(kKc, K - k0), nullptr, y.ld, cols,
           bias ? bias + o0 : nullptr, k0 == 0};
    for (int64_t r = r0; r < r1; r += kMr) {
      t.x = x.row(r) + k0;
      t.y = y.row(r) + o0;
      kTiles[std::min<int64_t>(kMr, r1 - r) - 1](t);
    }
  }
}

}  // namespace

void gemm(MatF32 y, MatF32 x, MatAny w, const float* bias, int threads) {
  const int64_t m = x.rows, o = w.rows, K = x.cols;
  const int64_t panels = (o + kNr - 1) / kNr;
  // Row blocks of about kMc rows, or more of them when there are few panels, so that each thread gets at
  // least 8 items to balance.
  const int64_t row_blocks = std::clamp(std::max((m + kMc - 1) / kMc, (8 * threads + panels - 1) / panels),
                                        int64_t(1), (m + kMr - 1) / kMr);
  const int64_t block_rows = ((m + row_blocks - 1) / row_blocks + kMr - 1) / kMr * kMr;
  const int64_t items = panels * row_blocks;
#pragma omp parallel num_threads(threads)
  {
    float* panel = thread_scratch(size_t(K) * kNr);
    int64_t packed = -1;  // the panel this thread holds packed: items are panel-major, so it is often reused
#pragma omp for schedule(static)
    for (int64_t it = 0; it < items; ++it) {
      const int64_t p = it / row_blocks, rb = it % row_blocks, o0 = p * kNr;
      const int cols = int(std::min<int64_t>(kNr, o - o0));
      if (p != packed) pack_panel(panel, w, o0, cols);
      packed = p;
      row_block(y, x, panel, o0, cols, bias, rb * block_rows, std::min(m, (rb + 1) * block_rows));
    }
  }
}

}  // namespace mambacpp::cpu
