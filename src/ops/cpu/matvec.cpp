// The linear layer for a few rows (decoding: m ≤ kMatvecMaxRows), on the CPU.
//
// y (m, o) = x (m, i) · wᵀ + bias. This is bound by the bandwidth of reading w once, so the kernel streams a
// group of w rows exactly once, converting f32/bf16/f16 to f32 in registers, and multiplies each loaded vector
// with all m rows of x (which stay in cache). Dot products run along i with per-lane partial sums, summed
// across lanes once at the end in a fixed order. Threads take contiguous ranges of output rows.
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

// Output rows [o0, o0 + O) for all R rows of x.
template <DType T, int R, int O>
void dot_group(const MatF32& y, const MatF32& x, const MatAny& w, const float* bias, int64_t o0) {
  const int64_t K = x.cols;
  const size_t row_bytes = size_t(w.ld) * dtype_size(T);
  const char* w0 = static_cast<const char*>(w.p) + size_t(o0) * row_bytes;
  Vec acc[R][O];
  for (auto& row : acc)
    for (auto& a : row) a = Vec::zero();
  for (int64_t k = 0; k < K; k += kLanes) {
    const int count = int(std::min<int64_t>(kLanes, K - k));
    Vec wv[O];
    for (int o = 0; o < O; ++o) wv[o] = load_w<T>(w0 + o * row_bytes, k, count);
    for (int r = 0; r < R; ++r) {
      const Vec xv = count == kLanes ? Vec::load(x.row(r) + k) : Vec::load_partial(x.row(r) + k, count);
      for (int o = 0; o < O; ++o) acc[r][o] = fma(xv, wv[o], acc[r][o]);
    }
  }
  for (int r = 0; r < R; ++r)
    for (int o = 0; o < O; ++o) y.row(r)[o0 + o] = reduce_add(acc[r][o]) + (bias ? bias[o0 + o] : 0.0f);
}

// Output rows processed together: as many as keep R·O accumulators within the register file.
template <int R>
constexpr int group_rows() {
  return std::clamp(24 / R, 2, 8);
}

template <DType T, int R>
void matvec_rows(const MatF32& y, const MatF32& x, const MatAny& w, const float* bias, int threads) {
  constexpr int O = group_rows<R>();
  const int64_t groups = w.rows / O;
  const bool parallel = w.rows * x.cols >= (int64_t(1) << 15);
#pragma omp parallel num_threads(threads) if (parallel)
  {
#pragma omp for schedule(static) nowait
    for (int64_t g = 0; g < groups; ++g) dot_group<T, R, O>(y, x, w, bias, g * O);
#pragma omp for schedule(static)
    for (int64_t o = groups * O; o < w.rows; ++o) dot_group<T, R, 1>(y, x, w, bias, o);
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
