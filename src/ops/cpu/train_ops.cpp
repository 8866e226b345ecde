// The training bookkeeping ops on the CPU (cpu_train.h): plain loops over contiguous arrays, spread over the
// threads with OpenMP when the array is large enough to pay for it.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "ops/cpu/cpu_train.h"

namespace mambacpp::cpu {
namespace {

// Below this many elements a loop runs on one thread.
constexpr int64_t kParallelFrom = int64_t(1) << 16;
// sum_squares adds blocks of this many elements, each in order, then the block sums in order.
constexpr int64_t kSumBlock = int64_t(1) << 14;

}  // namespace

void fill_zero(float* t, int64_t n, int threads) {
  if (n > 0) std::memset(t, 0, size_t(n) * sizeof(float));
}

void add_into(float* dst, const float* src, int64_t n, int threads) {
#pragma omp parallel for num_threads(threads) schedule(static) if (n > kParallelFrom)
  for (int64_t i = 0; i < n; ++i) dst[i] += src[i];
}

void add_product_into(float* dst, const float* a, const float* b, int64_t n, int threads) {
#pragma omp parallel for num_threads(threads) schedule(static) if (n > kParallelFrom)
  for (int64_t i = 0; i < n; ++i) dst[i] += a[i] * b[i];
}

void scale_inplace(float* t, float s, int64_t n, int threads) {
#pragma omp parallel for num_threads(threads) schedule(static) if (n > kParallelFrom)
  for (int64_t i = 0; i < n; ++i) t[i] *= s;
}

void neg_exp(float* dst, const float* src, int64_t n, int threads) {
#pragma omp parallel for num_threads(threads) schedule(static) if (n > kParallelFrom)
  for (int64_t i = 0; i < n; ++i) dst[i] = -std::exp(src[i]);
}

void copy_convert(void* dst, DType dst_dtype, const float* src, int64_t n, int threads) {
  const int64_t chunk = kSumBlock;
  const int64_t chunks = (n + chunk - 1) / chunk;
  const size_t es = dtype_size(dst_dtype);
#pragma omp parallel for num_threads(threads) schedule(static) if (n > kParallelFrom)
  for (int64_t c = 0; c < chunks; ++c) {
    const int64_t i0 = c * chunk, count = std::min(chunk, n - i0);
    convert_from_f32(static_cast<char*>(dst) + size_t(i0) * es, dst_dtype, src + i0, size_t(count));
  }
}

double sum_squares(const float* t, float s, int64_t n, int threads) {
  const int64_t blocks = (n + kSumBlock - 1) / kSumBlock;
  std::vector<double> partial(size_t(std::max<int64_t>(blocks, 1)), 0.0);
#pragma omp parallel for num_threads(threads) schedule(static) if (n > kParallelFrom)
  for (int64_t blk = 0; blk < blocks; ++blk) {
    const int64_t end = std::min(n, (blk + 1) * kSumBlock);
    double acc = 0;
    for (int64_t i = blk * kSumBlock; i < end; ++i) {
      const float x = t[i] * s;
      acc += double(x) * double(x);
    }
    partial[size_t(blk)] = acc;
  }
  double sum = 0;
  for (double p : partial) sum += p;
  return sum;
}

// The reference form of the update (ops_train.h): one statement per rounding, in the order the CUDA kernel
// follows. This file is compiled with -ffp-contract=off, so that no multiply and add are fused into one rounding
// (that would depend on the instruction set and differ from the GPU). Blocks of kSumBlock elements are updated,
// then their copy written, each block by one thread.
void adamw_update(float* w, const float* grad, float* m, float* v, void* copy, DType copy_dtype, int64_t n,
                  const AdamWStep& s, int threads) {
  const float keep = float(1.0 - s.lr * s.weight_decay);
  const float step_size = float(s.lr / s.bias_correction1);
  const float sqrt_bc2 = float(std::sqrt(s.bias_correction2));
  const float b1 = float(s.beta1), b2 = float(s.beta2), eps = float(s.eps);
  const float one_minus_b1 = 1.0f - b1, one_minus_b2 = 1.0f - b2;
  const float accum = s.grad_scale.accum, clip = s.grad_scale.clip;
  const int64_t blocks = (n + kSumBlock - 1) / kSumBlock;
  const size_t es = dtype_size(copy_dtype);
#pragma omp parallel for num_threads(threads) schedule(static) if (n > kParallelFrom)
  for (int64_t blk = 0; blk < blocks; ++blk) {
    const int64_t begin = blk * kSumBlock, end = std::min(n, begin + kSumBlock);
    for (int64_t j = begin; j < end; ++j) {
      const float g = grad[j] * accum * clip;
      const float p = w[j] * keep;
      m[j] = b1 * m[j] + one_minus_b1 * g;
      v[j] = b2 * v[j] + one_minus_b2 * g * g;
      w[j] = p - step_size * m[j] / (std::sqrt(v[j]) / sqrt_bc2 + eps);
    }
    if (copy != nullptr)
      convert_from_f32(static_cast<char*>(copy) + size_t(begin) * es, copy_dtype, w + begin, size_t(end - begin));
  }
}

}  // namespace mambacpp::cpu
