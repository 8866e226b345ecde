// Tests of the CPU backward ops (ops_backward.h) against central finite differences of the double-precision
// forwards (support/reference_backward.h): the loss is a random projection of the op's outputs, its gradient
// with respect to every input is measured numerically in double and compared with the op's f32 gradient.
// Shape tables include the awkward cases (one token, odd state sizes, channels not a multiple of the vector
// width, several batch rows, several scan chunks, optional arguments on and off). Parameter gradients are
// checked to be added to what the tensor held; results are checked bitwise equal across thread counts.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "ops/ops_backward.h"
#include "support/reference_backward.h"
#include "support/sequences.h"
#include "support/test_util.h"

namespace mambacpp {
namespace {

using ref::Vd;
using test::random_vector;

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

// Relative L2 error allowed between an f32 gradient and its finite-difference value in double. Cases are sized
// so that no gradient is the cancellation of much larger terms (an RMSNorm over d = 1 with a tiny eps, a
// three-element scan gradient): there, a correct f32 result differs from the exact one by ulps of the terms.
constexpr double kTolGrad = 1e-5;

Tensor t1(std::vector<float>& v) { return v.empty() ? Tensor() : Tensor(v.data(), DType::f32, {int64_t(v.size())}); }
Tensor t2(std::vector<float>& v, int64_t r, int64_t c) { return Tensor(v.data(), DType::f32, {r, c}); }
Tensor t3(std::vector<float>& v, int64_t a, int64_t b, int64_t c) { return Tensor(v.data(), DType::f32, {a, b, c}); }

std::vector<float> maybe(bool on, size_t n, uint64_t seed, float lo = -1.0f, float hi = 1.0f) {
  return on ? random_vector(n, seed, lo, hi) : std::vector<float>{};
}

// What a gradient that is added to `prior` contributed.
std::vector<float> added(const std::vector<float>& now, const std::vector<float>& prior) {
  std::vector<float> d(now.size());
  for (size_t i = 0; i < now.size(); ++i) d[i] = now[i] - prior[i];
  return d;
}

::testing::AssertionResult grad_close(const std::vector<float>& got, const Vd& ref) {
  if (got.size() != ref.size()) return ::testing::AssertionFailure() << "size " << got.size() << " vs " << ref.size();
  return test::is_close(got.data(), ref.data(), ref.size(), kTolGrad);
}

bool bitwise_equal(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
}

// ---------------------------------------------------------------------------------------------------------
// linear

struct LinearCase {
  int64_t m, i, o;
  bool bias;
};

class LinearBackward : public ::testing::TestWithParam<LinearCase> {};

TEST_P(LinearBackward, MatchesFiniteDifferences) {
  const auto [m, i, o, has_bias] = GetParam();
  Context ctx(2);
  auto x = random_vector(size_t(m * i), 1), w = random_vector(size_t(o * i), 2), dy = random_vector(size_t(m * o), 3);
  auto bias = maybe(has_bias, size_t(o), 4);
  std::vector<float> dx(size_t(m * i), kNaN), dw = random_vector(size_t(o * i), 5), dw0 = dw;
  auto db = maybe(has_bias, size_t(o), 6), db0 = db;
  linear_backward(t2(dx, m, i), t2(dw, o, i), t1(db), t2(dy, m, o), t2(x, m, i), t2(w, o, i), ctx);

  Vd xd = ref::to_double(x), wd = ref::to_double(w), bd = ref::to_double(bias), proj = ref::to_double(dy);
  auto f = [&] { return ref::linear_d(xd, wd, bd, m, i, o); };
  EXPECT_TRUE(grad_close(dx, ref::numeric_grad(f, xd, proj))) << "dx";
  EXPECT_TRUE(grad_close(added(dw, dw0), ref::numeric_grad(f, wd, proj))) << "dw";
  if (has_bias) {
    EXPECT_TRUE(grad_close(added(db, db0), ref::numeric_grad(f, bd, proj))) << "dbias";
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, LinearBackward,
                         ::testing::Values(LinearCase{1, 5, 3, false}, LinearCase{7, 20, 17, true},
                                           LinearCase{37, 33, 40, true}, LinearCase{300, 9, 35, false},
                                           LinearCase{5, 1, 1, true}));

TEST(LinearBackward, StridedViewsAndThreadCounts) {
  const int64_t m = 70, i = 24, o = 40, ld = 50;  // dx written into a row-strided view
  auto x = random_vector(size_t(m * i), 1), w = random_vector(size_t(o * i), 2), dy = random_vector(size_t(m * o), 3);
  std::vector<float> first_dx, first_dw;
  for (int threads : {1, 2, 3}) {
    Context ctx(threads);
    std::vector<float> dx(size_t(m * ld), 7.0f), dw(size_t(o * i), 0.0f);
    Tensor dxv(dx.data(), DType::f32, {m, i});
    dxv.stride[0] = ld;
    linear_backward(dxv, t2(dw, o, i), Tensor{}, t2(dy, m, o), t2(x, m, i), t2(w, o, i), ctx);
    for (int64_t r = 0; r < m; ++r) EXPECT_EQ(dx[size_t(r * ld + i)], 7.0f) << "gap of row " << r;
    if (first_dx.empty()) {
      first_dx = dx, first_dw = dw;
      continue;
    }
    EXPECT_TRUE(bitwise_equal(dx, first_dx)) << threads << " threads";
    EXPECT_TRUE(bitwise_equal(dw, first_dw)) << threads << " threads";
  }
}

// accumulate_dx adds the product to dx: bitwise dx + (the product written alone), for any thread count.
TEST(LinearBackward, AccumulateDxAddsTheProduct) {
  const int64_t m = 70, i = 24, o = 40, ld = 30;
  auto x = random_vector(size_t(m * i), 1), w = random_vector(size_t(o * i), 2), dy = random_vector(size_t(m * o), 3);
  const auto dx0 = random_vector(size_t(m * ld), 4);
  for (int threads : {1, 2, 3}) {
    Context ctx(threads);
    std::vector<float> prod(size_t(m * i), kNaN), dx = dx0, dw_a(size_t(o * i), 0.0f), dw_b(size_t(o * i), 0.0f);
    linear_backward(t2(prod, m, i), t2(dw_a, o, i), Tensor{}, t2(dy, m, o), t2(x, m, i), t2(w, o, i), ctx);
    Tensor dxv(dx.data(), DType::f32, {m, i});
    dxv.stride[0] = ld;
    linear_backward(dxv, t2(dw_b, o, i), Tensor{}, t2(dy, m, o), t2(x, m, i), t2(w, o, i), true, ctx);
    std::vector<float> want = dx0;
    for (int64_t r = 0; r < m; ++r)
      for (int64_t c = 0; c < i; ++c) want[size_t(r * ld + c)] += prod[size_t(r * i + c)];
    EXPECT_TRUE(bitwise_equal(dx, want)) << threads << " threads";
    EXPECT_TRUE(bitwise_equal(dw_a, dw_b)) << threads << " threads";
  }
}

// ---------------------------------------------------------------------------------------------------------
// embedding

TEST(EmbeddingBackward, ScatterAddsRowsIncludingRepeats) {
  Context ctx(2);
  const int64_t v = 11, d = 37, m = 9;
  const std::vector<int32_t> ids = {3, 0, 3, 10, 5, 3, 0, 7, 10};
  auto dout = random_vector(size_t(m * d), 1), dtable = random_vector(size_t(v * d), 2);
  Vd want(dtable.begin(), dtable.end());
  for (int64_t r = 0; r < m; ++r)
    for (int64_t c = 0; c < d; ++c) want[size_t(ids[r] * d + c)] += double(dout[size_t(r * d + c)]);
  embedding_backward(t2(dtable, v, d), t2(dout, m, d), ids.data(), m, ctx);
  EXPECT_CLOSE(dtable.data(), want.data(), want.size(), 1e-7);
  std::vector<int32_t> bad = {0, 11};
  test::expect_error([&] { embedding_backward(t2(dtable, v, d), t2(dout, 2, d), bad.data(), 2, ctx); },
                     {"embedding_backward", "ids[1] = 11"});
}

// ---------------------------------------------------------------------------------------------------------
// RMSNorm

struct NormCase {
  int64_t m, d;
  float eps;
};

class RmsNormBackward : public ::testing::TestWithParam<NormCase> {};

TEST_P(RmsNormBackward, MatchesFiniteDifferences) {
  const auto [m, d, eps] = GetParam();
  Context ctx(2);
  auto res = random_vector(size_t(m * d), 1), w = random_vector(size_t(d), 2, 0.5f, 1.5f);
  auto dout = random_vector(size_t(m * d), 3);
  auto dres = random_vector(size_t(m * d), 4), dres0 = dres, dw = random_vector(size_t(d), 5), dw0 = dw;
  rmsnorm_backward(t2(dres, m, d), t1(dw), t2(dout, m, d), t2(res, m, d), t1(w), eps, ctx);

  Vd rd = ref::to_double(res), wd = ref::to_double(w), proj = ref::to_double(dout);
  auto f = [&] { return ref::rmsnorm_d(rd, {}, wd, m, d, eps); };
  EXPECT_TRUE(grad_close(added(dres, dres0), ref::numeric_grad(f, rd, proj))) << "dresidual";
  EXPECT_TRUE(grad_close(added(dw, dw0), ref::numeric_grad(f, wd, proj))) << "dw";
}

INSTANTIATE_TEST_SUITE_P(Shapes, RmsNormBackward,
                         ::testing::Values(NormCase{1, 1, 0.5f}, NormCase{1, 2, 1e-5f}, NormCase{3, 17, 1e-5f}, NormCase{130, 40, 1e-6f},
                                           NormCase{2, 64, 0.5f}));

// ---------------------------------------------------------------------------------------------------------
// conv1d

struct ConvCase {
  int64_t b, l, e, k;
  bool bias, state, silu;
};

class ConvBackward : public ::testing::TestWithParam<ConvCase> {};

TEST_P(ConvBackward, MatchesFiniteDifferences) {
  const ConvCase c = GetParam();
  Context ctx(2);
  const int64_t hk = c.k - 1;
  auto x = random_vector(size_t(c.b * c.l * c.e), 1), w = random_vector(size_t(c.e * c.k), 2);
  auto bias = maybe(c.bias, size_t(c.e), 3), st = maybe(c.state, size_t(c.b * c.e * hk), 4);
  auto dout = random_vector(size_t(c.b * c.l * c.e), 5);
  std::vector<float> dx(x.size(), kNaN), dst(st.size(), kNaN);
  auto dw = random_vector(w.size(), 6), dw0 = dw, db = maybe(c.bias, size_t(c.e), 7), db0 = db;
  conv1d_causal_backward(t3(dx, c.b, c.l, c.e), t2(dw, c.e, c.k), t1(db),
                         c.state ? t3(dst, c.b, c.e, hk) : Tensor{}, t3(dout, c.b, c.l, c.e), t3(x, c.b, c.l, c.e),
                         t2(w, c.e, c.k), t1(bias), c.state ? t3(st, c.b, c.e, hk) : Tensor{}, c.silu, ctx);

  Vd xd = ref::to_double(x), wd = ref::to_double(w), bd = ref::to_double(bias), sd = ref::to_double(st);
  const Vd proj = ref::to_double(dout);
  auto f = [&] { return ref::conv1d_d(xd, wd, bd, sd, c.b, c.l, c.e, c.k, c.silu); };
  EXPECT_TRUE(grad_close(dx, ref::numeric_grad(f, xd, proj))) << "dx";
  EXPECT_TRUE(grad_close(added(dw, dw0), ref::numeric_grad(f, wd, proj))) << "dw";
  if (c.bias) {
    EXPECT_TRUE(grad_close(added(db, db0), ref::numeric_grad(f, bd, proj))) << "dbias";
  }
  if (c.state && hk > 0) {
    EXPECT_TRUE(grad_close(dst, ref::numeric_grad(f, sd, proj))) << "dstate_in";
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, ConvBackward,
                         ::testing::Values(ConvCase{1, 1, 3, 4, true, false, true}, ConvCase{2, 9, 20, 4, true, true, true},
                                           ConvCase{3, 5, 33, 3, false, true, false},
                                           ConvCase{1, 2, 16, 5, false, true, true}, ConvCase{2, 6, 7, 1, true, false, true}));

// The half copies: the norm's backward writes dresidual rounded beside it, the conv's backward a dx of half dtype
// rounded (through a strided view); each the bits of the f32 result rounded to nearest even.
TEST(HalfGradients, AreTheRoundedF32Results) {
  Context ctx(2);
  const int64_t m = 9, d = 40, b = 2, l = 7, e = 12, k = 4;
  auto res = random_vector(size_t(m * d), 1), w = random_vector(size_t(d), 2, 0.5f, 1.5f);
  auto dout = random_vector(size_t(m * d), 3), dres0 = random_vector(size_t(m * d), 4);
  auto x = random_vector(size_t(b * l * e), 5), cw = random_vector(size_t(e * k), 6), dc = random_vector(size_t(b * l * e), 7);
  std::vector<float> dx(x.size(), kNaN);
  conv1d_causal_backward(t3(dx, b, l, e), Tensor{}, Tensor{}, Tensor{}, t3(dc, b, l, e), t3(x, b, l, e), t2(cw, e, k),
                         Tensor{}, Tensor{}, true, ctx);
  for (DType ht : {DType::bf16, DType::f16}) {
    SCOPED_TRACE(dtype_name(ht));
    std::vector<float> dres = dres0;
    std::vector<uint16_t> h(size_t(m * (d + 3)), 0x7fff), want(size_t(m * d));
    Tensor hv(h.data(), ht, {m, d});
    hv.stride[0] = d + 3;
    rmsnorm_backward(t2(dres, m, d), hv, Tensor{}, t2(dout, m, d), t2(res, m, d), t1(w), 1e-5f, ctx);
    std::vector<float> plain = dres0;
    rmsnorm_backward(t2(plain, m, d), Tensor{}, t2(dout, m, d), t2(res, m, d), t1(w), 1e-5f, ctx);
    EXPECT_TRUE(bitwise_equal(dres, plain)) << "dresidual";
    convert_from_f32(want.data(), ht, dres.data(), dres.size());
    for (int64_t r = 0; r < m; ++r) {
      EXPECT_EQ(0, std::memcmp(&h[size_t(r * (d + 3))], &want[size_t(r * d)], size_t(d) * 2)) << "row " << r;
      EXPECT_EQ(h[size_t(r * (d + 3) + d)], 0x7fff) << "gap of row " << r;
    }
    std::vector<uint16_t> dxh(size_t(b * l * 2 * e), 0x7fff), dxw(dx.size());
    Tensor dv(dxh.data(), ht, {b, l, e});
    dv.stride[1] = 2 * e, dv.stride[0] = l * 2 * e;
    conv1d_causal_backward(dv, Tensor{}, Tensor{}, Tensor{}, t3(dc, b, l, e), t3(x, b, l, e), t2(cw, e, k), Tensor{},
                           Tensor{}, true, ctx);
    convert_from_f32(dxw.data(), ht, dx.data(), dx.size());
    for (int64_t r = 0; r < b * l; ++r) {
      EXPECT_EQ(0, std::memcmp(&dxh[size_t(r * 2 * e)], &dxw[size_t(r * e)], size_t(e) * 2)) << "dx row " << r;
      EXPECT_EQ(dxh[size_t(r * 2 * e + e)], 0x7fff) << "other half of row " << r;
    }
  }
}

// ---------------------------------------------------------------------------------------------------------
// selective scan

struct ScanCase {
  int64_t b, l, e, n;
  bool z, D, dt_bias, softplus, state_in, dstate_out;
  bool B_lti = false, C_lti = false;  // B / C time-invariant (e, n), their gradients added to
  bool dt_zero = false;               // dt a zero-stride view of zeros (a time-invariant Δ in dt_bias)
};

struct ScanData {
  ScanCase c;
  std::vector<float> u, dt, z, B, C, A, D, dt_bias, state_in, dy, dstate_out;
  explicit ScanData(const ScanCase& k) : c(k) {
    const size_t ble = size_t(k.b * k.l * k.e), bln = size_t(k.b * k.l * k.n), ben = size_t(k.b * k.e * k.n);
    u = random_vector(ble, 1);
    dt = random_vector(ble, 2, k.softplus ? -3.0f : 0.01f, k.softplus ? 1.0f : 0.3f);
    if (k.dt_zero) dt.assign(ble, 0.0f);
    z = maybe(k.z, ble, 3, -2.0f, 2.0f);
    B = random_vector(k.B_lti ? size_t(k.e * k.n) : bln, 4);
    C = random_vector(k.C_lti ? size_t(k.e * k.n) : bln, 5);
    A = random_vector(size_t(k.e * k.n), 6, -2.0f, -0.1f);
    D = maybe(k.D, size_t(k.e), 7);
    // Without softplus, δ = dt + dt_bias itself: kept positive, so that exp(δA) decays as it does in a model.
    dt_bias = maybe(k.dt_bias, size_t(k.e), 8, k.softplus ? -2.0f : 0.0f, k.softplus ? 0.0f : 0.2f);
    state_in = maybe(k.state_in, ben, 9);
    dy = random_vector(ble, 10);
    dstate_out = maybe(k.dstate_out, ben, 11);
  }
};

struct ScanGrads {
  std::vector<float> du, ddt, dz, dB, dC, dA, dD, ddt_bias, dstate_in;
};

// With ddt_half (dz_half), ddt (dz) is written there in half_dtype (bf16 or f16) instead of into the result's f32.
// With u_half, u is read from that (half) view instead of s.u.
ScanGrads run_scan_backward(ScanData& s, const ScanGrads& prior, Context& ctx, std::vector<uint16_t>* ddt_half = nullptr,
                            std::vector<uint16_t>* dz_half = nullptr, DType half_dtype = DType::bf16,
                            const Tensor* u_half = nullptr) {
  const auto& c = s.c;
  ScanGrads g = prior;
  const size_t ble = size_t(c.b * c.l * c.e), bln = size_t(c.b * c.l * c.n);
  g.du.assign(ble, kNaN);
  g.ddt.assign(ble, kNaN);
  g.dz.assign(c.z ? ble : 0, kNaN);
  if (!c.B_lti) g.dB.assign(bln, kNaN);
  if (!c.C_lti) g.dC.assign(bln, kNaN);
  g.dstate_in.assign(size_t(c.b * c.e * c.n), kNaN);
  ScanGradArgs a;
  a.du = t3(g.du, c.b, c.l, c.e), a.ddt = t3(g.ddt, c.b, c.l, c.e), a.dstate_in = t3(g.dstate_in, c.b, c.e, c.n);
  a.dB = c.B_lti ? t2(g.dB, c.e, c.n) : t3(g.dB, c.b, c.l, c.n);
  a.dC = c.C_lti ? t2(g.dC, c.e, c.n) : t3(g.dC, c.b, c.l, c.n);
  if (c.z) a.dz = t3(g.dz, c.b, c.l, c.e), a.z = t3(s.z, c.b, c.l, c.e);
  a.dA = t2(g.dA, c.e, c.n), a.dD = t1(g.dD), a.ddt_bias = t1(g.ddt_bias);
  a.dy = t3(s.dy, c.b, c.l, c.e);
  if (c.dstate_out) a.dstate_out = t3(s.dstate_out, c.b, c.e, c.n);
  a.u = t3(s.u, c.b, c.l, c.e), a.dt = t3(s.dt, c.b, c.l, c.e), a.A = t2(s.A, c.e, c.n);
  a.B = c.B_lti ? t2(s.B, c.e, c.n) : t3(s.B, c.b, c.l, c.n);
  a.C = c.C_lti ? t2(s.C, c.e, c.n) : t3(s.C, c.b, c.l, c.n);
  a.D = t1(s.D), a.dt_bias = t1(s.dt_bias);
  if (c.dt_zero) a.dt.stride[0] = a.dt.stride[1] = 0;  // s.dt is all zeros
  if (c.state_in) a.state_in = t3(s.state_in, c.b, c.e, c.n);
  a.dt_softplus = c.softplus;
  if (ddt_half != nullptr) ddt_half->assign(ble, 0xffff), a.ddt = Tensor(ddt_half->data(), half_dtype, {c.b, c.l, c.e});
  if (dz_half != nullptr) dz_half->assign(ble, 0xffff), a.dz = Tensor(dz_half->data(), half_dtype, {c.b, c.l, c.e});
  if (u_half != nullptr) a.u = *u_half;
  selective_scan_backward(a, ctx);
  return g;
}

ScanGrads scan_prior(const ScanCase& c) {
  ScanGrads p;
  p.dA = random_vector(size_t(c.e * c.n), 20);
  p.dD = maybe(c.D, size_t(c.e), 21);
  p.ddt_bias = maybe(c.dt_bias, size_t(c.e), 22);
  p.dB = maybe(c.B_lti, size_t(c.e * c.n), 23);
  p.dC = maybe(c.C_lti, size_t(c.e * c.n), 24);
  return p;
}

class ScanBackward : public ::testing::TestWithParam<ScanCase> {};

TEST_P(ScanBackward, MatchesFiniteDifferences) {
  const ScanCase c = GetParam();
  Context ctx(2);
  ScanData s(c);
  const ScanGrads prior = scan_prior(c);
  const ScanGrads g = run_scan_backward(s, prior, ctx);

  ref::ScanD in;
  in.b = c.b, in.l = c.l, in.e = c.e, in.n = c.n;
  in.u = ref::to_double(s.u), in.dt = ref::to_double(s.dt), in.z = ref::to_double(s.z);
  in.B = ref::to_double(s.B), in.C = ref::to_double(s.C), in.A = ref::to_double(s.A), in.D = ref::to_double(s.D);
  in.dt_bias = ref::to_double(s.dt_bias), in.state_in = ref::to_double(s.state_in), in.dt_softplus = c.softplus;
  in.B_lti = c.B_lti, in.C_lti = c.C_lti;
  Vd proj = ref::to_double(s.dy);
  const Vd zeros(size_t(c.b * c.e * c.n), 0.0);
  const Vd state_proj = c.dstate_out ? ref::to_double(s.dstate_out) : zeros;
  proj.insert(proj.end(), state_proj.begin(), state_proj.end());
  auto f = [&] { return ref::scan_d(in); };
  EXPECT_TRUE(grad_close(g.du, ref::numeric_grad(f, in.u, proj))) << "du";
  EXPECT_TRUE(grad_close(g.ddt, ref::numeric_grad(f, in.dt, proj))) << "ddt";
  EXPECT_TRUE(grad_close(c.B_lti ? added(g.dB, prior.dB) : g.dB, ref::numeric_grad(f, in.B, proj))) << "dB";
  EXPECT_TRUE(grad_close(c.C_lti ? added(g.dC, prior.dC) : g.dC, ref::numeric_grad(f, in.C, proj))) << "dC";
  EXPECT_TRUE(grad_close(added(g.dA, prior.dA), ref::numeric_grad(f, in.A, proj))) << "dA";
  if (c.z) {
    EXPECT_TRUE(grad_close(g.dz, ref::numeric_grad(f, in.z, proj))) << "dz";
  }
  if (c.D) {
    EXPECT_TRUE(grad_close(added(g.dD, prior.dD), ref::numeric_grad(f, in.D, proj))) << "dD";
  }
  if (c.dt_bias) {
    EXPECT_TRUE(grad_close(added(g.ddt_bias, prior.ddt_bias), ref::numeric_grad(f, in.dt_bias, proj))) << "ddt_bias";
  }
  Vd sd = c.state_in ? in.state_in : zeros;
  in.state_in = sd;
  auto fs = [&] {
    in.state_in = sd;
    return ref::scan_d(in);
  };
  EXPECT_TRUE(grad_close(g.dstate_in, ref::numeric_grad(fs, sd, proj))) << "dstate_in";
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, ScanBackward,
    ::testing::Values(ScanCase{1, 1, 21, 1, true, true, true, true, false, false},
                      ScanCase{2, 7, 20, 5, true, true, true, true, true, true},
                      ScanCase{1, 45, 16, 16, true, true, true, true, false, false},
                      ScanCase{2, 33, 18, 3, false, false, false, true, true, false},
                      ScanCase{1, 12, 9, 4, true, false, true, false, false, true},
                      ScanCase{3, 4, 17, 7, false, true, false, true, true, true}));

// The ablations: B and/or C time-invariant (e, n), Δ time-invariant (zero dt, Δ from dt_bias).
INSTANTIATE_TEST_SUITE_P(
    TimeInvariant, ScanBackward,
    ::testing::Values(ScanCase{2, 7, 20, 5, true, true, true, true, true, true, true, false, false},
                      ScanCase{1, 45, 16, 16, true, true, true, true, false, false, false, true, false},
                      ScanCase{2, 33, 18, 3, false, false, true, true, true, false, true, true, false},
                      ScanCase{1, 12, 9, 4, true, true, true, true, false, true, false, false, true},
                      ScanCase{3, 4, 17, 7, true, true, true, true, true, true, true, true, true},
                      ScanCase{2, 40, 21, 6, true, true, true, false, false, true, false, true, true}));

TEST(ScanBackward, BitwiseEqualForAnyThreadCount) {
  for (const ScanCase c : {ScanCase{3, 75, 150, 16, true, true, true, true, true, true},
                           ScanCase{3, 75, 150, 16, true, true, true, true, true, true, true, true, true}}) {
    ScanData s(c);
    const ScanGrads prior = scan_prior(c);
    Context one(1);
    const ScanGrads ref = run_scan_backward(s, prior, one);
    for (int threads : {2, 3}) {
      Context ctx(threads);
      const ScanGrads g = run_scan_backward(s, prior, ctx);
      EXPECT_TRUE(bitwise_equal(g.du, ref.du) && bitwise_equal(g.ddt, ref.ddt) && bitwise_equal(g.dz, ref.dz) &&
                  bitwise_equal(g.dB, ref.dB) && bitwise_equal(g.dC, ref.dC) && bitwise_equal(g.dA, ref.dA) &&
                  bitwise_equal(g.dD, ref.dD) && bitwise_equal(g.ddt_bias, ref.ddt_bias) &&
                  bitwise_equal(g.dstate_in, ref.dstate_in))
          << threads << " threads";
    }
  }
}

// A half ddt and dz hold the f32 ones rounded to nearest even; every other gradient is unchanged.
TEST(ScanBackward, HalfDdtAndDzAreTheF32OnesRounded) {
  const ScanCase c{2, 37, 20, 16, true, true, true, true, true, true};
  ScanData s(c);
  const ScanGrads prior = scan_prior(c);
  Context ctx(2);
  const ScanGrads ref = run_scan_backward(s, prior, ctx);
  for (DType ht : {DType::bf16, DType::f16}) {
    std::vector<uint16_t> half_ddt, half_dz, want(ref.ddt.size());
    const ScanGrads g = run_scan_backward(s, prior, ctx, &half_ddt, &half_dz, ht);
    convert_from_f32(want.data(), ht, ref.ddt.data(), ref.ddt.size());
    EXPECT_EQ(half_ddt, want) << dtype_name(ht) << " ddt";
    convert_from_f32(want.data(), ht, ref.dz.data(), ref.dz.size());
    EXPECT_EQ(half_dz, want) << dtype_name(ht) << " dz";
    EXPECT_TRUE(bitwise_equal(g.du, ref.du) && bitwise_equal(g.dB, ref.dB) && bitwise_equal(g.dA, ref.dA) &&
                bitwise_equal(g.ddt_bias, ref.ddt_bias));
  }
}

// A bf16 or f16 u (read through a row-strided view, as training holds it) gives every gradient of the f32 op on
// u widened to f32, bit for bit: each half value is exact in f32. du stays f32.
TEST(ScanBackward, HalfUIsTheF32OpOnTheWidenedU) {
  for (const ScanCase c : {ScanCase{2, 37, 20, 5, true, true, true, true, true, true},
                           ScanCase{1, 45, 33, 16, false, true, true, true, false, false},
                           ScanCase{2, 33, 18, 3, true, true, true, true, true, false, true, false, false}}) {
    for (DType ht : {DType::bf16, DType::f16}) {
      SCOPED_TRACE(testing::Message() << dtype_name(ht) << " b=" << c.b << " l=" << c.l << " e=" << c.e
                                      << " n=" << c.n << " B_lti=" << c.B_lti);
      ScanData s(c);
      test::HalfStrided half_u(s.u, ht, c.b, c.l, c.e, c.e + 3);  // s.u: the half values widened, the f32 op's u
      const Tensor uh = half_u.seq();
      const ScanGrads prior = scan_prior(c);
      Context ctx(2);
      const ScanGrads want = run_scan_backward(s, prior, ctx);
      const ScanGrads g = run_scan_backward(s, prior, ctx, nullptr, nullptr, DType::bf16, &uh);
      EXPECT_TRUE(bitwise_equal(g.du, want.du) && bitwise_equal(g.ddt, want.ddt) && bitwise_equal(g.dz, want.dz) &&
                  bitwise_equal(g.dB, want.dB) && bitwise_equal(g.dC, want.dC) && bitwise_equal(g.dA, want.dA) &&
                  bitwise_equal(g.dD, want.dD) && bitwise_equal(g.ddt_bias, want.ddt_bias) &&
                  bitwise_equal(g.dstate_in, want.dstate_in));
    }
  }
}

// ---------------------------------------------------------------------------------------------------------
// head + cross-entropy

struct CeCase {
  int64_t m, d, v;
};

class CrossEntropyBackward : public ::testing::TestWithParam<CeCase> {};

TEST_P(CrossEntropyBackward, MatchesFiniteDifferences) {
  const auto [m, d, v] = GetParam();
  Context ctx(2);
  auto x = random_vector(size_t(m * d), 1, -2.0f, 2.0f), w = random_vector(size_t(v * d), 2);
  std::vector<int32_t> targets(static_cast<size_t>(m));
  for (int64_t r = 0; r < m; ++r) targets[size_t(r)] = r % 5 == 3 ? -1 : int32_t((r * 7919) % v);
  const float scale = 0.37f;
  std::vector<float> dx(x.size(), kNaN), dw = random_vector(w.size(), 3), dw0 = dw;
  const double loss = linear_cross_entropy(t2(dx, m, d), t2(dw, v, d), t2(x, m, d), t2(w, v, d), targets.data(),
                                           scale, ctx);
  Vd xd = ref::to_double(x), wd = ref::to_double(w);
  auto f = [&] { return Vd{scale * ref::cross_entropy_d(xd, wd, targets, m, d, v)}; };
  EXPECT_NEAR(loss, ref::cross_entropy_d(xd, wd, targets, m, d, v), 1e-5 * std::max(1.0, std::fabs(loss)));
  EXPECT_TRUE(grad_close(dx, ref::numeric_grad(f, xd, {1.0}))) << "dx";
  EXPECT_TRUE(grad_close(added(dw, dw0), ref::numeric_grad(f, wd, {1.0}))) << "dw";
}

// A vocabulary large enough that the op takes its rows in several blocks (16 rows each at v = 2^19): the same
// as two calls over the first 16 rows and the rest.
TEST(CrossEntropyBackward, RowBlocksEqualSeparateCalls) {
  Context ctx(2);
  const int64_t m = 20, d = 3, v = (int64_t(1) << 19) + 5, split = 16;
  auto x = random_vector(size_t(m * d), 1, -2.0f, 2.0f), w = random_vector(size_t(v * d), 2);
  std::vector<int32_t> targets(static_cast<size_t>(m));
  for (int64_t r = 0; r < m; ++r) targets[size_t(r)] = int32_t((r * 104729) % v);
  std::vector<float> dx(x.size()), dw(w.size(), 0.0f), dx2(x.size()), dw2(w.size(), 0.0f);
  const double all = linear_cross_entropy(t2(dx, m, d), t2(dw, v, d), t2(x, m, d), t2(w, v, d), targets.data(),
                                          0.5f, ctx);
  double parts = 0;
  for (int64_t r0 : {int64_t(0), split}) {
    const int64_t rows = r0 == 0 ? split : m - split;
    parts += linear_cross_entropy(Tensor(dx2.data() + r0 * d, DType::f32, {rows, d}), t2(dw2, v, d),
                                  Tensor(x.data() + r0 * d, DType::f32, {rows, d}), t2(w, v, d),
                                  targets.data() + r0, 0.5f, ctx);
  }
  EXPECT_EQ(all, parts);
  EXPECT_TRUE(bitwise_equal(dx, dx2));
  EXPECT_TRUE(bitwise_equal(dw, dw2));
}

INSTANTIATE_TEST_SUITE_P(Shapes, CrossEntropyBackward,
                         ::testing::Values(CeCase{1, 3, 2}, CeCase{9, 17, 40}, CeCase{40, 8, 300}));

// ---------------------------------------------------------------------------------------------------------
// bad arguments

TEST(BackwardOps, RefuseBadArgumentsNamingThem) {
  Context ctx(1);
  std::vector<float> a(64, 0.0f), b(64, 0.0f), c(64, 0.0f), d(64, 0.0f);
  test::expect_error([&] { linear_backward(t2(a, 2, 3), Tensor{}, Tensor{}, t2(b, 2, 5), Tensor{}, t2(c, 4, 3), ctx); },
                     {"linear_backward", "dy must have shape [any, 4], got [2, 5]"});
  test::expect_error([&] { linear_backward(Tensor{}, t2(a, 4, 3), Tensor{}, t2(b, 2, 4), Tensor{}, t2(c, 4, 3), ctx); },
                     {"linear_backward", "x is required"});
  test::expect_error([&] { rmsnorm_backward(t2(a, 2, 3), Tensor{}, t2(b, 2, 3), t2(c, 2, 3), t1(d), 1e-5f, ctx); },
                     {"rmsnorm_backward", "w must be", "[3]"});
  test::expect_error(
      [&] {
        conv1d_causal_backward(t3(a, 1, 2, 3), Tensor{}, Tensor{}, Tensor{}, t3(b, 1, 2, 3), t3(c, 1, 2, 3),
                               t2(d, 3, 17), Tensor{}, Tensor{}, true, ctx);
      },
      {"conv1d_causal_backward", "k = 17"});
  ScanGradArgs s;
  s.u = t3(a, 1, 2, 3), s.dt = t3(a, 1, 2, 3), s.dy = t3(a, 1, 2, 3), s.du = t3(b, 1, 2, 3), s.ddt = t3(c, 1, 2, 3);
  s.A = t2(d, 3, 2), s.B = t3(a, 1, 2, 2), s.C = t3(a, 1, 2, 2), s.dB = t3(b, 1, 2, 2), s.dC = t3(c, 1, 2, 2);
  s.z = t3(a, 1, 2, 3);
  test::expect_error([&] { selective_scan_backward(s, ctx); }, {"selective_scan_backward", "dz"});
  s.z = Tensor{};
  s.dD = t1(d);
  test::expect_error([&] { selective_scan_backward(s, ctx); }, {"selective_scan_backward", "dD"});
  s.dD = Tensor{};
  s.chunk_states = Tensor(d.data(), DType::f32, {1, 1, 3, 2});  // (b, ceil(l/16), n, e) is [1, 1, 2, 3]
  test::expect_error([&] { selective_scan_backward(s, ctx); }, {"selective_scan_backward", "chunk_states", "[1, 1, 2, 3]"});
  s.chunk_states = Tensor{};
  std::vector<uint16_t> half(64);  // a half u goes with f32 dt (and every other input) only
  s.u = Tensor(half.data(), DType::bf16, {1, 2, 3}), s.dt = Tensor(half.data(), DType::bf16, {1, 2, 3});
  test::expect_error([&] { selective_scan_backward(s, ctx); }, {"selective_scan_backward", "dt must be f32, got bf16"});
  s.dt = t3(a, 1, 2, 3);
  EXPECT_NO_THROW(selective_scan_backward(s, ctx));
  const std::vector<int32_t> targets = {0, 9};
  test::expect_error([&] { linear_cross_entropy(Tensor{}, Tensor{}, t2(a, 2, 3), t2(b, 4, 3), targets.data(), 1.0f, ctx); },
                     {"linear_cross_entropy", "targets[1] = 9"});
}

}  // namespace
}  // namespace mambacpp
