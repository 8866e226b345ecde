// The training bookkeeping ops of ops_train.h on the CPU: each against a plain loop in double (or, for the
// conversions, against core/dtype's scalar conversions bit for bit), adamw_update against the formula written
// out in double and bitwise against the trainer's f32 loop, sum_squares independent of the thread count, and
// every bad argument an Error naming the op and the argument.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "core/context.h"
#include "core/dtype.h"
#include "core/tensor.h"
#include "ops/ops_train.h"
#include "support/test_util.h"

namespace mambacpp {
namespace {

using test::expect_error;
using test::random_vector;

// Sizes around the CPU's thresholds: empty, tiny, odd, more than one parallel block.
const int64_t kSizes[] = {0, 1, 37, 16385, 200003};

Tensor as_tensor(std::vector<float>& v) { return Tensor(v.data(), DType::f32, {int64_t(v.size())}); }

TEST(OpsTrain, ElementwiseOpsMatchLoopsInDouble) {
  Context ctx(3);
  for (int64_t n : kSizes) {
    SCOPED_TRACE("n=" + std::to_string(n));
    const std::vector<float> a = random_vector(size_t(n), 1), b = random_vector(size_t(n), 2, -3.0f, 3.0f);
    std::vector<float> src = random_vector(size_t(n), 3), dst = a, x = a, y = b;
    std::vector<double> ref(static_cast<size_t>(n));

    add_into(as_tensor(dst), as_tensor(src), ctx);
    for (size_t i = 0; i < ref.size(); ++i) ref[i] = double(a[i]) + src[i];
    EXPECT_CLOSE(dst.data(), ref.data(), ref.size(), 1e-7) << "add_into";

    dst = a;
    add_product_into(as_tensor(dst), as_tensor(x), as_tensor(y), ctx);
    for (size_t i = 0; i < ref.size(); ++i) ref[i] = double(a[i]) + double(a[i]) * b[i];
    EXPECT_CLOSE(dst.data(), ref.data(), ref.size(), 1e-7) << "add_product_into";

    dst = a;
    scale_inplace(as_tensor(dst), 0.37f, ctx);
    for (size_t i = 0; i < ref.size(); ++i) ref[i] = double(a[i]) * double(0.37f);
    EXPECT_CLOSE(dst.data(), ref.data(), ref.size(), 1e-7) << "scale_inplace";

    neg_exp(as_tensor(dst), as_tensor(y), ctx);
    for (size_t i = 0; i < ref.size(); ++i) ref[i] = -std::exp(double(b[i]));
    EXPECT_CLOSE(dst.data(), ref.data(), ref.size(), 1e-6) << "neg_exp";

    fill_zero(as_tensor(dst), ctx);
    for (float f : dst) ASSERT_EQ(f32_to_bits(f), 0u) << "fill_zero";
  }
}

TEST(OpsTrain, CopyConvertRoundsAsCoreDtype) {
  Context ctx(3);
  for (int64_t n : kSizes) {
    std::vector<float> src = random_vector(size_t(n), 4, -70000.0f, 70000.0f);
    if (n > 3) src[0] = 1e-7f, src[1] = -3e-5f, src[2] = 1.00390625f;  // an f16 subnormal, a tie for bf16
    std::vector<uint16_t> half(static_cast<size_t>(n));
    std::vector<float> full(size_t(n), -1.0f);
    for (DType t : {DType::bf16, DType::f16}) {
      copy_convert(Tensor(half.data(), t, {n}), as_tensor(src), ctx);
      for (size_t i = 0; i < half.size(); ++i)
        ASSERT_EQ(half[i], t == DType::bf16 ? f32_to_bf16(src[i]) : f32_to_f16(src[i]))
            << dtype_name(t) << " element " << i;
    }
    copy_convert(as_tensor(full), as_tensor(src), ctx);
    if (n > 0) EXPECT_EQ(0, std::memcmp(full.data(), src.data(), full.size() * sizeof(float))) << "f32";
  }
}

// copy_convert_rows: strided rows on both sides, the gaps untouched.
TEST(OpsTrain, CopyConvertRowsRoundsEachRow) {
  Context ctx(2);
  const int64_t rows = 5, cols = 13, ld_src = 20, ld_dst = 17;
  const std::vector<float> src = random_vector(size_t(rows * ld_src), 8, -100.0f, 100.0f);
  for (DType t : {DType::bf16, DType::f16}) {
    std::vector<uint16_t> dst(size_t(rows * ld_dst), 0x7fff);
    Tensor s(const_cast<float*>(src.data()), DType::f32, {rows, cols}), d(dst.data(), t, {rows, cols});
    s.stride[0] = ld_src, d.stride[0] = ld_dst;
    copy_convert_rows(d, s, ctx);
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < ld_dst; ++c) {
        const float v = src[size_t(r * ld_src + c)];
        const uint16_t want = c >= cols ? 0x7fff : t == DType::bf16 ? f32_to_bf16(v) : f32_to_f16(v);
        ASSERT_EQ(dst[size_t(r * ld_dst + c)], want) << dtype_name(t) << " row " << r << " column " << c;
      }
  }
}

TEST(OpsTrain, SumSquaresMatchesDoubleAndIgnoresThreadCount) {
  for (int64_t n : kSizes) {
    std::vector<float> t = random_vector(size_t(n), 5, -2.0f, 2.0f);
    double ref = 0;
    for (float f : t) ref += double(f) * double(f);
    Context one(1), many(4);
    const double got = sum_squares(as_tensor(t), one);
    EXPECT_NEAR(got, ref, 1e-12 * std::max(ref, 1.0)) << "n=" << n;
    EXPECT_EQ(got, sum_squares(Tensor(t.data(), DType::f32, {1, n}), many)) << "n=" << n;
  }
}

// Two steps against p ← p·(1 − lr·wd); m ← β1·m + (1−β1)·g; v ← β2·v + (1−β2)·g²; p ← p − lr·m̂ / (√v̂ + ε),
// written out in double.
TEST(OpsTrain, AdamWUpdateMatchesFormulaInDouble) {
  Context ctx(2);
  const int64_t n = 1001;
  std::vector<float> p = random_vector(size_t(n), 6), m(size_t(n), 0.0f), v(size_t(n), 0.0f);
  std::vector<double> rp(p.begin(), p.end()), rm(size_t(n), 0.0), rv(size_t(n), 0.0);
  const double b1 = 0.9, b2 = 0.95, eps = 1e-8, wd = 0.1;
  for (int t = 1; t <= 2; ++t) {
    std::vector<float> g = random_vector(size_t(n), 10 + uint64_t(t), -0.5f, 0.5f);
    const double lr = t == 1 ? 1e-2 : 3e-3;
    AdamWStep s{lr, b1, b2, eps, wd, 1 - std::pow(b1, t), 1 - std::pow(b2, t)};
    adamw_update(as_tensor(p), as_tensor(g), as_tensor(m), as_tensor(v), s, ctx);
    for (int64_t i = 0; i < n; ++i) {
      rp[size_t(i)] *= 1 - lr * wd;
      rm[size_t(i)] = b1 * rm[size_t(i)] + (1 - b1) * g[size_t(i)];
      rv[size_t(i)] = b2 * rv[size_t(i)] + (1 - b2) * double(g[size_t(i)]) * g[size_t(i)];
      const double mhat = rm[size_t(i)] / (1 - std::pow(b1, t)), vhat = rv[size_t(i)] / (1 - std::pow(b2, t));
      rp[size_t(i)] -= lr * mhat / (std::sqrt(vhat) + eps);
    }
  }
  EXPECT_CLOSE(p.data(), rp.data(), rp.size(), 1e-6) << "param";
  EXPECT_CLOSE(m.data(), rm.data(), rm.size(), 1e-6) << "m";
  EXPECT_CLOSE(v.data(), rv.data(), rv.size(), 1e-6) << "v";
}

// The f32 loop the trainer ran before it called this op, with its scalars rounded from double.
void adamw_loop_f32(std::vector<float>& w, const std::vector<float>& g, std::vector<float>& m, std::vector<float>& v,
                    const AdamWStep& s) {
  const float keep = float(1.0 - s.lr * s.weight_decay);
  const float step_size = float(s.lr / s.bias_correction1);
  const float sqrt_bc2 = float(std::sqrt(s.bias_correction2));
  const float b1 = float(s.beta1), b2 = float(s.beta2), eps = float(s.eps);
  for (size_t j = 0; j < w.size(); ++j) {
    w[j] *= keep;
    m[j] = b1 * m[j] + (1 - b1) * g[j];
    v[j] = b2 * v[j] + (1 - b2) * g[j] * g[j];
    w[j] -= step_size * m[j] / (std::sqrt(v[j]) / sqrt_bc2 + eps);
  }
}

// Three steps, with and without weight decay, agree bit for bit with that loop, whatever the thread count.
TEST(OpsTrain, AdamWUpdateIsBitwiseTheF32Loop) {
  for (int threads : {1, 3}) {
    Context ctx(threads);
    const int64_t n = 300 * 257;
    for (double wd : {0.1, 0.0}) {
      std::vector<float> w = random_vector(size_t(n), 20), w2 = w;
      std::vector<float> m(w.size(), 0), v(w.size(), 0), m2 = m, v2 = v;
      for (int t = 1; t <= 3; ++t) {
        const std::vector<float> g = random_vector(w.size(), 30 + uint64_t(t));
        AdamWStep s{1e-3 * t, 0.9, 0.95, 1e-8, wd, 1 - std::pow(0.9, double(t)), 1 - std::pow(0.95, double(t))};
        adamw_loop_f32(w, g, m, v, s);
        std::vector<float> gc = g;
        adamw_update(as_tensor(w2), as_tensor(gc), as_tensor(m2), as_tensor(v2), s, ctx);
      }
      EXPECT_EQ(0, std::memcmp(w.data(), w2.data(), w.size() * sizeof(float))) << "param, wd " << wd;
      EXPECT_EQ(0, std::memcmp(m.data(), m2.data(), m.size() * sizeof(float))) << "m, wd " << wd;
      EXPECT_EQ(0, std::memcmp(v.data(), v2.data(), v.size() * sizeof(float))) << "v, wd " << wd;
    }
  }
}

TEST(OpsTrain, BadArgumentsAreErrors) {
  Context ctx(1);
  std::vector<float> a(6), b(5), c(6);
  std::vector<uint16_t> h(6);
  const Tensor ta(a.data(), DType::f32, {2, 3}), tb = as_tensor(b), tc(c.data(), DType::f32, {6});
  const Tensor half(h.data(), DType::bf16, {6});
  Tensor strided = ta;
  strided.shape[1] = 2;
  expect_error([&] { add_into(ta, tb, ctx); }, {"add_into", "src", "as many elements as dst"});
  expect_error([&] { add_product_into(ta, tc, tb, ctx); }, {"add_product_into", "b"});
  expect_error([&] { add_into(half, tc, ctx); }, {"add_into", "dst must be f32", "bf16"});
  expect_error([&] { copy_convert(tc, half, ctx); }, {"copy_convert", "src must be f32"});
  expect_error([&] { neg_exp(Tensor{}, tc, ctx); }, {"neg_exp", "dst is required"});
  expect_error([&] { scale_inplace(strided, 2.0f, ctx); }, {"scale_inplace", "t", "contiguous"});
  expect_error([&] { (void)sum_squares(half, ctx); }, {"sum_squares", "t must be f32"});
  AdamWStep s{1e-3, 0.9, 0.95, 1e-8, 0.0, 0.0, 0.5};
  expect_error([&] { adamw_update(ta, tc, ta, tc, s, ctx); }, {"adamw_update", "bias corrections"});
  s.bias_correction1 = 0.1;
  expect_error([&] { adamw_update(ta, tb, ta, tc, s, ctx); }, {"adamw_update", "grad"});
  Tensor on_gpu = tc;
  on_gpu.device = Device::cuda;
  expect_error([&] { add_into(on_gpu, tc, ctx); }, {"add_into", "src is on cpu but dst is on cuda"});
}

}  // namespace
}  // namespace mambacpp
