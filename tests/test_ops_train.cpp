// The training bookkeeping ops of ops_train.h on the CPU: each against a plain loop in double (or, for the
// conversions, against core/dtype's scalar conversions bit for bit), adamw_update against the formula written
// out in double and bitwise against the trainer's f32 loop, sum_squares independent of the thread count, and
// every bad argument an Error naming the op and the argument.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <string>
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
    if (n > 0) {
      EXPECT_EQ(0, std::memcmp(full.data(), src.data(), full.size() * sizeof(float))) << "f32";
    }
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
    const double got = sum_squares(as_tensor(t), 1.0f, one);
    EXPECT_NEAR(got, ref, 1e-12 * std::max(ref, 1.0)) << "n=" << n;
    EXPECT_EQ(got, sum_squares(Tensor(t.data(), DType::f32, {1, n}), 1.0f, many)) << "n=" << n;
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
    AdamWStep s{lr, b1, b2, eps, wd, 1 - std::pow(b1, t), 1 - std::pow(b2, t), {}};
    adamw_update(as_tensor(p), as_tensor(g), as_tensor(m), as_tensor(v), Tensor{}, s, ctx);
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
        AdamWStep s{1e-3 * t, 0.9, 0.95, 1e-8, wd, 1 - std::pow(0.9, double(t)), 1 - std::pow(0.95, double(t)), {}};
        adamw_loop_f32(w, g, m, v, s);
        std::vector<float> gc = g;
        adamw_update(as_tensor(w2), as_tensor(gc), as_tensor(m2), as_tensor(v2), Tensor{}, s, ctx);
      }
      EXPECT_EQ(0, std::memcmp(w.data(), w2.data(), w.size() * sizeof(float))) << "param, wd " << wd;
      EXPECT_EQ(0, std::memcmp(m.data(), m2.data(), m.size() * sizeof(float))) << "m, wd " << wd;
      EXPECT_EQ(0, std::memcmp(v.data(), v2.data(), v.size() * sizeof(float))) << "v, wd " << wd;
    }
  }
}

// The norm's accumulation factor: each element scaled in f32 first, as scale_inplace would leave it.
TEST(OpsTrain, SumSquaresScalesLikeScaleInplace) {
  Context ctx(3);
  for (int64_t n : kSizes) {
    std::vector<float> t = random_vector(size_t(n), 40), scaled = t;
    const float s = float(1.0 / 3.0);
    scale_inplace(as_tensor(scaled), s, ctx);
    EXPECT_EQ(sum_squares(as_tensor(t), s, ctx), sum_squares(as_tensor(scaled), 1.0f, ctx)) << "n=" << n;
  }
}

// Three steps of the fused update (the gradient read through the accumulation and clipping factors, the half copy
// written from the updated parameter) against the passes it replaces: scale_inplace twice, the update, then
// copy_convert; bit for bit, the gradient left untouched, for any thread count.
TEST(OpsTrain, FusedAdamWEqualsScaleUpdateConvert) {
  for (int threads : {1, 3}) {
    Context ctx(threads);
    for (DType copy_dtype : {DType::f32, DType::bf16, DType::f16}) {  // f32: no copy
      SCOPED_TRACE(std::string("copy ") + dtype_name(copy_dtype) + ", threads " + std::to_string(threads));
      const size_t n = 70001;
      std::vector<float> w = random_vector(n, 50), w2 = w, m(n, 0), v(n, 0), m2 = m, v2 = v;
      std::vector<uint16_t> copy(n, 0xffff), copy2(n, 0);
      const bool has_copy = copy_dtype != DType::f32;
      const Tensor copy_t = has_copy ? Tensor(copy.data(), copy_dtype, {int64_t(n)}) : Tensor{};
      for (int t = 1; t <= 3; ++t) {
        const std::vector<float> g = random_vector(n, 60 + uint64_t(t), -4.0f, 4.0f);
        AdamWStep s{2e-3 * t, 0.9, 0.95, 1e-8, 0.1, 1 - std::pow(0.9, double(t)), 1 - std::pow(0.95, double(t)), {}};
        std::vector<float> gs = g, gf = g;
        const GradScale scale{float(1.0 / 3.0), t == 2 ? 1.0f : float(0.5 / (7.25 + 1e-6))};
        scale_inplace(as_tensor(gs), scale.accum, ctx);
        scale_inplace(as_tensor(gs), scale.clip, ctx);
        adamw_update(as_tensor(w), as_tensor(gs), as_tensor(m), as_tensor(v), Tensor{}, s, ctx);
        if (has_copy) copy_convert(Tensor(copy2.data(), copy_dtype, {int64_t(n)}), as_tensor(w), ctx);
        s.grad_scale = scale;
        adamw_update(as_tensor(w2), as_tensor(gf), as_tensor(m2), as_tensor(v2), copy_t, s, ctx);
        EXPECT_EQ(0, std::memcmp(g.data(), gf.data(), n * sizeof(float))) << "the gradient was modified";
      }
      EXPECT_EQ(0, std::memcmp(w.data(), w2.data(), n * sizeof(float))) << "param";
      EXPECT_EQ(0, std::memcmp(m.data(), m2.data(), n * sizeof(float))) << "m";
      EXPECT_EQ(0, std::memcmp(v.data(), v2.data(), n * sizeof(float))) << "v";
      if (has_copy) {
        EXPECT_EQ(0, std::memcmp(copy.data(), copy2.data(), n * sizeof(uint16_t))) << "copy";
      }
    }
  }
}

// adamw_update_all over tensors with and without decay and copies equals adamw_update tensor by tensor.
TEST(OpsTrain, AdamWUpdateAllEqualsOneByOne) {
  Context ctx(2);
  const std::vector<size_t> sizes = {1, 37, 70001, 4096, 0, 5};
  std::vector<std::vector<float>> w, g, m, v;
  std::vector<std::vector<uint16_t>> copies;
  for (size_t i = 0; i < sizes.size(); ++i) {
    w.push_back(random_vector(sizes[i], 70 + i)), g.push_back(random_vector(sizes[i], 80 + i));
    m.push_back(random_vector(sizes[i], 90 + i, -0.1f, 0.1f)), v.push_back(random_vector(sizes[i], 100 + i, 0, 0.01f));
    copies.emplace_back(sizes[i], 0);
  }
  auto w2 = w, m2 = m, v2 = v;
  auto copies2 = copies;
  AdamWStep s{1e-3, 0.9, 0.95, 1e-8, 0.1, 1 - 0.9 * 0.9, 1 - 0.95 * 0.95, {}};
  s.grad_scale = {0.5f, 0.3f};
  std::vector<AdamWTensor> all;
  for (size_t i = 0; i < sizes.size(); ++i) {
    const DType ct = i % 3 == 0 ? DType::f32 : i % 3 == 1 ? DType::bf16 : DType::f16;
    const auto copy_of = [&](std::vector<uint16_t>& c) {
      return ct == DType::f32 ? Tensor{} : Tensor(c.data(), ct, {int64_t(c.size())});
    };
    const bool decay = i % 2 == 0;
    all.push_back({as_tensor(w[i]), as_tensor(g[i]), as_tensor(m[i]), as_tensor(v[i]), copy_of(copies[i]), decay});
    AdamWStep one = s;
    one.weight_decay = decay ? s.weight_decay : 0.0;
    adamw_update(as_tensor(w2[i]), as_tensor(g[i]), as_tensor(m2[i]), as_tensor(v2[i]), copy_of(copies2[i]), one, ctx);
  }
  adamw_update_all(all, s, ctx);
  EXPECT_TRUE(w == w2 && m == m2 && v == v2 && copies == copies2);
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
  expect_error([&] { (void)sum_squares(half, 1.0f, ctx); }, {"sum_squares", "t must be f32"});
  AdamWStep s{1e-3, 0.9, 0.95, 1e-8, 0.0, 0.0, 0.5, {}};
  expect_error([&] { adamw_update(ta, tc, ta, tc, Tensor{}, s, ctx); }, {"adamw_update", "bias corrections"});
  s.bias_correction1 = 0.1;
  expect_error([&] { adamw_update(ta, tb, ta, tc, Tensor{}, s, ctx); }, {"adamw_update", "grad"});
  expect_error([&] { adamw_update(ta, tc, ta, tc, tc, s, ctx); }, {"adamw_update", "copy must be bf16 or f16", "f32"});
  const Tensor short_half(h.data(), DType::bf16, {5});
  const AdamWTensor one{ta, tc, ta, tc, short_half, true};
  expect_error([&] { adamw_update_all({&one, 1}, s, ctx); }, {"adamw_update_all", "copy", "as many elements"});
  Tensor on_gpu = tc;
  on_gpu.device = Device::cuda;
  expect_error([&] { add_into(on_gpu, tc, ctx); }, {"add_into", "src is on cpu but dst is on cuda"});
}

}  // namespace
}  // namespace mambacpp
