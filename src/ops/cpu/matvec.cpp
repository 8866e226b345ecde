// The linear layer for a few rows (decoding: m ≤ kMatvecMaxRows), on the CPU.
//
// y (m, o) = x (m, i) · wᵀ + bias. This is bound by the bandwidth of reading w, so the kernel reads w exactly
// once, converting f32/bf16/f16 to f32 in registers, and multiplies each loaded vector with all m rows of x
// (which stay in cache). Dot products run along i with per-lane partial sums, summed across lanes once at the
// end in a fixed order. Threads take contiguous ranges of output rows.
#include <omp.h>

#include <algorithm>

#include "ops/cpu/linear_kernels.h"
#include "ops/cpu/simd.h"

namespace mambacpp::cpu {
namespace {

template <DType T>
inline Vec load_w(const void* row, int64_t k, int count) {
  if constexpr (T == DType::f32) {
    const float* f = static_cast<const float*>(row) + k;
    return count == kLanes ? Vec::load(f) : Vec::load_partial(f, count);
  } else if constexpr (T == DType::bf16) {
    const auto* h = static_cast<const uint16_t*>(row) + k;
    return count == kLanes ? Vec::load_bf16(h) : Vec::load_bf16_partial(h, count);
  } else {
    const auto* h = static_cast<const uint16_t*>(row) + k;
    return count == kLanes ? Vec::load_f16(h) : Vec::load_f16_partial(h, count);
  }
}

// Output rows [o0, o1) for all R rows of x, one w row at a time: each thread reads its part of w as a single
// sequential stream, which the hardware prefetchers follow best. Two accumulators per row of x (even and odd
// vectors along i) hide the FMA latency; their number does not depend on R, so a row's result does not depend
// on how many rows are computed with it.
template <DType T, int R>
void dot_rows(const MatF32& y, const MatF32& x, const MatAny& w, const float* bias, int64_t o0, int64_t o1) {
  const int64_t K = x.cols;
  const size_t row_bytes = size_t(w.ld) * dtype_size(T);
  for (int64_t o = o0; o < o1; ++o) {
    const void* wr = static_cast<const char*>(w.p) + size_t(o) * row_bytes;
    Vec acc[R][2];
    for (auto& a : acc) a[0] = a[1] = Vec::zero();
    int64_t k = 0;
    for (; k + 2 * kLanes <= K; k += 2 * kLanes) {
      const Vec w0 = load_w<T>(wr, k, kLanes), w1 = load_w<T>(wr, k + kLanes, kLanes);
      for (int r = 0; r < R; ++r) {
        acc[r][0] = fma(Vec::load(x.row(r) + k), w0, acc[r][0]);
        acc[r][1] = fma(Vec::load(x.row(r) + k + kLanes), w1, acc[r][1]);
      }
    }
    if (k < K) {  // fewer than 32 left: a full or partial vector into the even sums, the rest into the odd
      const int n0 = int(std::min<int64_t>(kLanes, K - k)), n1 = int(K - k) - n0;
      const Vec w0 = load_w<T>(wr, k, n0);
      for (int r = 0; r < R; ++r) acc[r][0] = fma(Vec::load_partial(x.row(r) + k, n0), w0, acc[r][0]);
      if (n1 > 0) {
        const Vec w1 = load_w<T>(wr, k + kLanes, n1);
        for (int r = 0; r < R; ++r) acc[r][1] = fma(Vec::load_partial(x.row(r) + k + kLanes, n1), w1, acc[r][1]);
      }
    }
    for (int r = 0; r < R; ++r) y.row(r)[o] = reduce_add(acc[r][0] + acc[r][1]) + (bias ? bias[o] : 0.0f);
  }
}

template <DType T, int R>
void matvec_rows(const MatF32& y, const MatF32& x, const MatAny& w, const float* bias, int threads) {
  const int64_t o = w.rows;
  const bool parallel = o * x.cols >= (int64_t(1) << 15);
#pragma omp parallel num_threads(threads) if (parallel)
  {
    const int64_t nt = omp_get_num_threads(), t = omp_get_thread_num();
    dot_rows<T, R>(y, x, w, bias, o * t / nt, o * (t + 1) / nt);
  }
}

template <DType T>
void matvec_typed(const MatF32& y, const MatF32& x, const MatAny& w, const float* bias, int threads) {
  switch (x.rows) {
    case 1: return matvec_rows<T, 1>(y, x, w, bias, threads);
    case 2: return matvec_rows<T, 2>(y, x, w, bias, threads);
    case 3: return matvec_rows<T, 3>(y, x, w, bias, threads);
    case 4: return matvec_rows<T, 4>(y, x, w, bias, threads);
    case 5: return matvec_rows<T, 5>(y, x, w, bias, threads);
    case 6: return matvec_rows<T, 6>(y, x, w, bias, threads);
    case 7: return matvec_rows<T, 7>(y, x, w, bias, threads);
    default: return matvec_rows<T, 8>(y, x, w, bias, threads);
  }
}

}  // namespace

void matvec(MatF32 y, MatF32 x, MatAny w, const float* bias, int threads) {
  static_assert(kMatvecMaxRows == 8, "matvec_typed instantiates one kernel per row count up to 8");
  switch (w.dtype) {
    case DType::f32: return matvec_typed<DType::f32>(y, x, w, bias, threads);
    case DType::bf16: return matvec_typed<DType::bf16>(y, x, w, bias, threads);
    case DType::f16: return matvec_typed<DType::f16>(y, x, w, bias, threads);
  }
}

}  // namespace mambacpp::cpu
