// The CUDA inference ops (linear, embedding, RMSNorm, conv1d, the scan through its dispatcher, greedy argmax)
// against the CPU ops, which are the oracle, over tables of shapes with the awkward ones: one row, counts that
// are not multiples of 32 or 128, batch > 1, row-strided views, every optional argument present and absent;
// linear runs both its few-row kernel (m ≤ 8) and cuBLASLt, with an f32 or half x and y; conv1d with an f32 or
// half x.
// Both run through the dispatchers of ops.h; device outputs are poisoned with NaN before each run.
#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <cstring>
#include <string>
#include <tuple>
#include <vector>

#include "core/context.h"
#include "infer/sampler.h"
#include "ops/cuda/cuda_ops.h"
#include "ops/ops.h"
#include "support/test_util.h"
#include "cuda/cuda_test_util.h"

namespace mambacpp::test {
namespace {

// Relative L2 tolerances against the CPU op. f32: both sides accumulate in f32 in different orders. bf16/f16
// matrices: with more than 8 rows the GPU also rounds the activations to the matrices' dtype (2⁻⁹ relative for
// bf16).
constexpr double kTolF32 = 1e-4;
constexpr double kTolHalf = 3e-2;

double tol_for(DType t) { return t == DType::f32 ? kTolF32 : kTolHalf; }

// A half output against the same f32 values rounded on the host: the two f32 results may fall on either side of
// a rounding boundary, one unit in the last place of the half dtype apart (2⁻⁸ relative for bf16, 2⁻¹¹ for
// f16); as a relative L2 bound over a tensor.
double half_ulp(DType t) { return t == DType::bf16 ? 1.0 / 256 : 1.0 / 2048; }

struct LinearCase {
  int64_t m, i, o;
  bool bias, strided_x;
};

TEST(CudaOps, LinearMatchesCpu) {
  SKIP_WITHOUT_GPU();
  Context ctx(2);
  const LinearCase cases[] = {{1, 64, 48, false, false},   {1, 768, 1536, true, false}, {7, 33, 100, true, true},
                              {130, 96, 257, false, true}, {64, 200, 40, true, false},  {3, 1, 5, false, false},
                              {8, 256, 130, true, true},   {5, 1536, 80, false, false}, {9, 96, 33, true, false}};
  for (DType wt : {DType::f32, DType::bf16, DType::f16})
    for (const LinearCase& c : cases) {
      SCOPED_TRACE(std::string(dtype_name(wt)) + " m=" + std::to_string(c.m) + " i=" + std::to_string(c.i) +
                   " o=" + std::to_string(c.o));
      const int64_t ldx = c.strided_x ? c.i + 7 : c.i;
      Pair x = make_pair(DType::f32, {c.m, ldx}), w = make_pair(wt, {c.o, c.i}), b = make_pair(DType::f32, {c.o});
      Pair y = make_pair(DType::f32, {c.m, c.o});
      fill(x, random_vector(size_t(c.m * ldx), 1));
      fill(w, random_vector(size_t(c.o * c.i), 2, -0.2f, 0.2f));
      fill(b, random_vector(size_t(c.o), 3));
      poison(y);
      const auto [xh, xd] = views(x, 0, {c.m, c.i}, {ldx, 1});
      linear_forward(y.host, xh, w.host, c.bias ? b.host : Tensor{}, ctx);
      linear_forward(y.dev, xd, w.dev, c.bias ? b.dev : Tensor{}, ctx);
      const auto got = download(y), ref = host_values(y);
      EXPECT_CLOSE(got.data(), ref.data(), ref.size(), tol_for(wt));
    }
}

TEST(CudaOps, EmbeddingMatchesCpu) {
  SKIP_WITHOUT_GPU();
  Context ctx(2);
  for (DType t : {DType::f32, DType::bf16, DType::f16})
    for (auto [m, d] : {std::pair<int64_t, int64_t>{1, 33}, {7, 768}, {130, 100}}) {
      SCOPED_TRACE(std::string(dtype_name(t)) + " m=" + std::to_string(m) + " d=" + std::to_string(d));
      const int64_t v = 50;
      Pair table = make_pair(t, {v, d}), out = make_pair(DType::f32, {m, d});
      Pair ids = make_pair(DType::f32, {m});  // int32 ids, stored in a 4-byte buffer
      fill(table, random_vector(size_t(v * d), 4));
      std::vector<int32_t> host_ids(static_cast<size_t>(m));
      for (int64_t r = 0; r < m; ++r) host_ids[size_t(r)] = int32_t((r * 17 + 3) % v);
      ASSERT_EQ(cudaSuccess, cudaMemcpy(ids.dev.data, host_ids.data(), size_t(m) * 4, cudaMemcpyHostToDevice));
      poison(out);
      embedding_forward(out.host, host_ids.data(), m, table.host, ctx);
      embedding_forward(out.dev, ids.dev.ptr<int32_t>(), m, table.dev, ctx);
      const auto got = download(out), ref = host_values(out);
      EXPECT_CLOSE(got.data(), ref.data(), ref.size(), 0.0);
    }
}

TEST(CudaOps, RmsNormMatchesCpu) {
  SKIP_WITHOUT_GPU();
  Context ctx(2);
  for (auto [m, d] : {std::pair<int64_t, int64_t>{1, 33}, {5, 768}, {130, 1000}, {2, 2048}})
    for (bool with_x : {false, true}) {
      SCOPED_TRACE("m=" + std::to_string(m) + " d=" + std::to_string(d) + (with_x ? " +x" : ""));
      Pair res = make_pair(DType::f32, {m, d}), x = make_pair(DType::f32, {m, d}), w = make_pair(DType::f32, {d});
      Pair out = make_pair(DType::f32, {m, d});
      fill(res, random_vector(size_t(m * d), 5, -2.0f, 2.0f));
      fill(x, random_vector(size_t(m * d), 6));
      fill(w, random_vector(size_t(d), 7, 0.5f, 1.5f));
      poison(out);
      rmsnorm_forward(out.host, res.host, with_x ? x.host : Tensor{}, w.host, 1e-5f, ctx);
      rmsnorm_forward(out.dev, res.dev, with_x ? x.dev : Tensor{}, w.dev, 1e-5f, ctx);
      const auto got = download(out), ref = host_values(out);
      EXPECT_CLOSE(got.data(), ref.data(), ref.size(), kTolF32) << "out";
      const auto got_res = download(res), ref_res = host_values(res);
      EXPECT_CLOSE(got_res.data(), ref_res.data(), ref_res.size(), kTolF32) << "residual";
    }
}

// The norm that keeps the stream before its add (residual_in) and writes a half out: the same residual as the
// in-place form, and out the same f32 values rounded to nearest even.
TEST(CudaOps, RmsNormWritesTheNextResidualAndAHalfOut) {
  SKIP_WITHOUT_GPU();
  Context ctx(2);
  for (auto [m, d] : {std::pair<int64_t, int64_t>{1, 33}, {130, 768}, {7, 2048}})
    for (DType ot : {DType::bf16, DType::f16}) {
      SCOPED_TRACE("m=" + std::to_string(m) + " d=" + std::to_string(d) + " " + dtype_name(ot));
      const std::vector<float> r0 = random_vector(size_t(m * d), 5, -2.0f, 2.0f);
      Pair res_a = make_pair(DType::f32, {m, d}), res_in = make_pair(DType::f32, {m, d});
      Pair res_b = make_pair(DType::f32, {m, d}), x = make_pair(DType::f32, {m, d}), w = make_pair(DType::f32, {d});
      Pair out_a = make_pair(DType::f32, {m, d}), out_b = make_pair(ot, {m, d});
      fill(res_a, r0), fill(res_in, r0), fill(x, random_vector(size_t(m * d), 6));
      fill(w, random_vector(size_t(d), 7, 0.5f, 1.5f));
      poison(res_b), poison(out_a), poison(out_b);
      rmsnorm_forward(out_a.dev, res_a.dev, x.dev, w.dev, 1e-5f, ctx);
      rmsnorm_forward(out_b.dev, res_b.dev, res_in.dev, x.dev, w.dev, 1e-5f, ctx);
      const auto ra = download(res_a), rb = download(res_b);
      EXPECT_EQ(0, std::memcmp(ra.data(), rb.data(), ra.size() * sizeof(float))) << "residual_out";
      EXPECT_EQ(0, std::memcmp(r0.data(), download(res_in).data(), r0.size() * sizeof(float))) << "residual_in kept";
      const auto oa = download(out_a), ob = download(out_b);
      std::vector<uint16_t> h(oa.size());
      std::vector<float> want(oa.size());
      convert_from_f32(h.data(), ot, oa.data(), oa.size());
      convert_to_f32(want.data(), h.data(), ot, oa.size());
      EXPECT_EQ(0, std::memcmp(want.data(), ob.data(), want.size() * sizeof(float))) << "half out";
      // and the CPU's two-input form
      rmsnorm_forward(out_a.host, res_b.host, res_in.host, x.host, w.host, 1e-5f, ctx);
      const auto ref = host_values(res_b);
      EXPECT_CLOSE(rb.data(), ref.data(), ref.size(), kTolF32) << "residual_out against the CPU";
    }
}

// linear_forward multiplies an x already held in w's half dtype as it is: the bits of rounding an f32 x.
TEST(CudaOps, LinearTakesAHalfInput) {
  SKIP_WITHOUT_GPU();
  Context ctx(2);
  for (auto [m, i, o] : {std::tuple<int64_t, int64_t, int64_t>{4, 64, 48}, {300, 768, 1536}, {1000, 1536, 80}}) {
    SCOPED_TRACE("m,i,o=" + std::to_string(m) + "," + std::to_string(i) + "," + std::to_string(o));
    const std::vector<float> xv = random_vector(size_t(m * i), 1);
    Pair x = make_pair(DType::f32, {m, i}), x16 = make_pair(DType::bf16, {m, i}), w = make_pair(DType::bf16, {o, i});
    Pair ya = make_pair(DType::f32, {m, o}), yb = make_pair(DType::f32, {m, o});
    fill(x, xv), fill(x16, xv), fill(w, random_vector(size_t(o * i), 2, -0.2f, 0.2f));
    poison(ya), poison(yb);
    // Rows of at most kGemvMaxRows go to the few-row kernel for an f32 x (not rounded) but to cuBLASLt for a half
    // one: there the two differ by the rounding of x; above, bit for bit.
    linear_forward(ya.dev, x.dev, w.dev, Tensor{}, ctx);
    linear_forward(yb.dev, x16.dev, w.dev, Tensor{}, ctx);
    const auto a = download(ya), b = download(yb);
    if (m > 8)
      EXPECT_EQ(0, std::memcmp(a.data(), b.data(), a.size() * sizeof(float)));
    else
      EXPECT_CLOSE(b.data(), a.data(), a.size(), kTolHalf);
  }
}

struct HalfYCase {
  int64_t m, i, o;
  int64_t ldx;  // x's row stride (≥ i)
  bool half_x;  // x held in w's dtype (a view into a wider half matrix, as dt_proj reads x_proj's output)
};

// linear_forward writes y in w's half dtype (more than kLinearFewRows rows, no bias): the CPU op's f32 y rounded
// to that dtype. Where x is already half both sides multiply the same values, so they agree up to one rounding;
// where the GPU rounds an f32 x first, to the tolerance of half products. y is a strided view whose gaps stay
// untouched (NaN).
TEST(CudaOps, LinearWritesAHalfY) {
  SKIP_WITHOUT_GPU();
  Context ctx(2);
  const HalfYCase cases[] = {{9, 33, 100, 33, false}, {130, 96, 257, 103, false}, {64, 200, 40, 200, true},
                             {77, 3, 72, 13, true},   {130, 16, 512, 48, true},   {40, 8, 128, 24, true},
                             {300, 768, 1536, 768, true}};
  for (DType wt : {DType::bf16, DType::f16})
    for (const HalfYCase& c : cases) {
      SCOPED_TRACE(std::string(dtype_name(wt)) + " m=" + std::to_string(c.m) + " i=" + std::to_string(c.i) +
                   " o=" + std::to_string(c.o) + " ldx=" + std::to_string(c.ldx) + (c.half_x ? " half x" : ""));
      const DType xt = c.half_x ? wt : DType::f32;
      const int64_t ldy = c.o + 3;
      std::vector<float> xv = random_vector(size_t(c.m * c.ldx), 1);
      round_to(xt, xv);  // the values both sides multiply
      Pair x = make_pair(xt, {c.m, c.ldx}), xf = make_pair(DType::f32, {c.m, c.ldx}), w = make_pair(wt, {c.o, c.i});
      Pair y = make_pair(wt, {c.m, ldy}), ref = make_pair(DType::f32, {c.m, c.o});
      fill(x, xv), fill(xf, xv), fill(w, random_vector(size_t(c.o * c.i), 2, -0.2f, 0.2f));
      poison(y), poison(ref);
      const auto [xh, xd] = views(x, 0, {c.m, c.i}, {c.ldx, 1});
      const auto [xfh, xfd] = views(xf, 0, {c.m, c.i}, {c.ldx, 1});
      const auto [yh, yd] = views(y, 0, {c.m, c.o}, {ldy, 1});
      linear_forward(ref.host, xfh, w.host, Tensor{}, ctx);
      linear_forward(yd, xd, w.dev, Tensor{}, ctx);
      const std::vector<float> all = download(y);
      std::vector<float> got, want = host_values(ref);
      round_to(wt, want);
      for (int64_t r = 0; r < c.m; ++r) {
        got.insert(got.end(), all.begin() + r * ldy, all.begin() + r * ldy + c.o);
        for (int64_t j = c.o; j < ldy; ++j) ASSERT_TRUE(std::isnan(all[size_t(r * ldy + j)])) << "gap of row " << r;
      }
      EXPECT_CLOSE(got.data(), want.data(), want.size(), c.half_x ? half_ulp(wt) : kTolHalf);
    }
}

// A half y only where cuBLASLt writes it: with a bias, with at most kLinearFewRows rows, in another half dtype
// than w's, or on the CPU, the error names the op, y and its dtype.
TEST(CudaOps, LinearRefusesAHalfYItCannotWrite) {
  SKIP_WITHOUT_GPU();
  Context ctx(2);
  const int64_t m = 16, few = kLinearFewRows, i = 8, o = 4;
  Pair x = make_pair(DType::f32, {m, i}), xs = make_pair(DType::f32, {few, i}), w = make_pair(DType::bf16, {o, i});
  Pair bias = make_pair(DType::f32, {o}), y = make_pair(DType::bf16, {m, o}), ys = make_pair(DType::bf16, {few, o});
  Pair y16 = make_pair(DType::f16, {m, o});
  fill(x, random_vector(size_t(m * i), 1)), fill(xs, random_vector(size_t(few * i), 2));
  fill(w, random_vector(size_t(o * i), 3)), fill(bias, random_vector(size_t(o), 4));
  expect_error([&] { linear_forward(y.dev, x.dev, w.dev, bias.dev, ctx); }, {"linear_forward", "y is bf16", "bias"});
  expect_error([&] { linear_forward(ys.dev, xs.dev, w.dev, Tensor{}, ctx); },
               {"linear_forward", "y is bf16", "more than 8 rows"});
  expect_error([&] { linear_forward(y16.dev, x.dev, w.dev, Tensor{}, ctx); },
               {"linear_forward", "y is f16", "w is bf16"});
  expect_error([&] { linear_forward(y.host, x.host, w.host, Tensor{}, ctx); }, {"linear_forward", "y is bf16", "CPU"});
  EXPECT_NO_THROW(linear_forward(y.dev, x.dev, w.dev, Tensor{}, ctx));
  EXPECT_EQ(cudaSuccess, cudaDeviceSynchronize());
}

struct ConvCase {
  int64_t b, l, e, k;
  bool bias, state_in, state_out, in_place, silu;
};

TEST(CudaOps, Conv1dMatchesCpu) {
  SKIP_WITHOUT_GPU();
  Context ctx(2);
  const ConvCase cases[] = {
      {1, 1, 33, 4, true, true, true, true, true},      {1, 1, 1536, 4, true, true, true, true, true},
      {2, 7, 100, 4, false, false, true, false, true},  {3, 130, 64, 3, true, true, false, false, false},
      {2, 2, 40, 4, true, true, true, true, true},      {1, 5, 31, 1, true, false, false, false, true},
      {4, 257, 96, 4, false, true, true, false, true}};
  for (const ConvCase& c : cases) {
    SCOPED_TRACE("b=" + std::to_string(c.b) + " l=" + std::to_string(c.l) + " e=" + std::to_string(c.e) +
                 " k=" + std::to_string(c.k));
    const int64_t km1 = c.k - 1;
    // x is the first half of a (b, l, 2e) tensor, as in_proj's output is.
    Pair xz = make_pair(DType::f32, {c.b, c.l, 2 * c.e}), w = make_pair(DType::f32, {c.e, c.k});
    Pair bias = make_pair(DType::f32, {c.e}), s_in = make_pair(DType::f32, {c.b, c.e, km1});
    Pair s_out = make_pair(DType::f32, {c.b, c.e, km1}), out = make_pair(DType::f32, {c.b, c.l, c.e});
    fill(xz, random_vector(size_t(c.b * c.l * 2 * c.e), 8));
    fill(w, random_vector(size_t(c.e * c.k), 9));
    fill(bias, random_vector(size_t(c.e), 10));
    fill(s_in, random_vector(size_t(c.b * c.e * km1), 11));
    poison(out);
    if (!c.in_place) poison(s_out);
    const auto [xh, xd] = views(xz, 0, {c.b, c.l, c.e}, {c.l * 2 * c.e, 2 * c.e, 1});
    Pair& so = c.in_place ? s_in : s_out;
    conv1d_causal_forward(out.host, c.state_out ? so.host : Tensor{}, xh, w.host, c.bias ? bias.host : Tensor{},
                          c.state_in ? s_in.host : Tensor{}, c.silu, ctx);
    conv1d_causal_forward(out.dev, c.state_out ? so.dev : Tensor{}, xd, w.dev, c.bias ? bias.dev : Tensor{},
                          c.state_in ? s_in.dev : Tensor{}, c.silu, ctx);
    const auto got = download(out), ref = host_values(out);
    EXPECT_CLOSE(got.data(), ref.data(), ref.size(), kTolF32) << "out";
    if (c.state_out && km1 > 0) {
      const auto gs = download(so), rs = host_values(so);
      EXPECT_CLOSE(gs.data(), rs.data(), rs.size(), 0.0) << "state_out";
    }
  }
}

// The conv's half copy of its output (x_proj's operand in training) holds the f32 output rounded to nearest
// even, through the vector path (e a multiple of 4), the scalar one and a one-token call.
TEST(CudaOps, Conv1dHalfCopyIsTheRoundedOutput) {
  SKIP_WITHOUT_GPU();
  Context ctx(2);
  for (auto [b, l, e] : {std::tuple<int64_t, int64_t, int64_t>{2, 70, 1536}, {1, 5, 31}, {3, 1, 64}})
    for (DType ht : {DType::bf16, DType::f16}) {
      SCOPED_TRACE("b,l,e=" + std::to_string(b) + "," + std::to_string(l) + "," + std::to_string(e) + " " +
                   dtype_name(ht));
      const int64_t k = 4;
      Pair xz = make_pair(DType::f32, {b, l, 2 * e}), w = make_pair(DType::f32, {e, k}), bias = make_pair(DType::f32, {e});
      Pair out = make_pair(DType::f32, {b, l, e}), half = make_pair(ht, {b, l, e + 4});
      fill(xz, random_vector(size_t(b * l * 2 * e), 8)), fill(w, random_vector(size_t(e * k), 9));
      fill(bias, random_vector(size_t(e), 10));
      poison(out), poison(half);
      const auto [xh, xd] = views(xz, 0, {b, l, e}, {l * 2 * e, 2 * e, 1});
      const auto [hh, hd] = views(half, 0, {b, l, e}, {l * (e + 4), e + 4, 1});
      conv1d_causal_forward(out.dev, hd, Tensor{}, xd, w.dev, bias.dev, Tensor{}, true, ctx);
      const auto o = download(out);
      std::vector<uint16_t> want(o.size());
      convert_from_f32(want.data(), ht, o.data(), o.size());
      EXPECT_EQ(cudaSuccess, cudaDeviceSynchronize());
      std::vector<uint16_t> got(size_t(b * l * (e + 4)));
      ASSERT_EQ(cudaSuccess, cudaMemcpy(got.data(), half.dev.data, got.size() * 2, cudaMemcpyDeviceToHost));
      for (int64_t r = 0; r < b * l; ++r)
        ASSERT_EQ(0, std::memcmp(&got[size_t(r * (e + 4))], &want[size_t(r * e)], size_t(e) * 2)) << "row " << r;
    }
}

// conv1d with a half x (the x half of a half (b, l, 2e) in_proj output) against the CPU op on the same x, which
// widens it: the same arithmetic after widening, so the f32 tolerance on out, agreement up to one rounding on
// the half output, and the state exactly. Shapes with l = 1 (the step kernel for an f32 out alone), l not a
// multiple of the kernel's 32 tokens, e a multiple of 4 but not of 8 or 32 (8-byte vector loads) and e odd or
// even but not a multiple of 4 (element loads); each with out alone, out_half alone and both.
TEST(CudaOps, Conv1dTakesAHalfInput) {
  SKIP_WITHOUT_GPU();
  Context ctx(2);
  const ConvCase cases[] = {
      {1, 1, 33, 4, true, true, true, true, true},     {2, 1, 64, 4, true, true, true, false, true},
      {2, 7, 100, 4, false, false, true, false, true}, {3, 130, 36, 3, true, true, false, false, false},
      {1, 5, 31, 1, true, false, false, false, true},  {4, 257, 96, 4, false, true, true, false, true},
      {2, 70, 1536, 4, true, true, true, true, true},  {2, 9, 34, 4, true, true, true, false, true}};
  enum class Outs { f32, half, both };
  for (const ConvCase& c : cases)
    for (DType xt : {DType::bf16, DType::f16})
      for (Outs outs : {Outs::f32, Outs::half, Outs::both}) {
        SCOPED_TRACE("b=" + std::to_string(c.b) + " l=" + std::to_string(c.l) + " e=" + std::to_string(c.e) +
                     " k=" + std::to_string(c.k) + " " + dtype_name(xt) + " outs " + std::to_string(int(outs)));
        const int64_t km1 = c.k - 1, ldh = c.e + 4;
        Pair xz = make_pair(xt, {c.b, c.l, 2 * c.e}), w = make_pair(DType::f32, {c.e, c.k});
        Pair bias = make_pair(DType::f32, {c.e}), s_in = make_pair(DType::f32, {c.b, c.e, km1});
        Pair s_out = make_pair(DType::f32, {c.b, c.e, km1}), out = make_pair(DType::f32, {c.b, c.l, c.e});
        Pair half = make_pair(xt, {c.b, c.l, ldh});
        fill(xz, random_vector(size_t(c.b * c.l * 2 * c.e), 8, -3.0f, 3.0f));
        fill(w, random_vector(size_t(c.e * c.k), 9));
        fill(bias, random_vector(size_t(c.e), 10));
        fill(s_in, random_vector(size_t(c.b * c.e * km1), 11));
        poison(out), poison(half);
        if (!c.in_place) poison(s_out);
        const auto [xh, xd] = views(xz, 0, {c.b, c.l, c.e}, {c.l * 2 * c.e, 2 * c.e, 1});
        const auto [hh, hd] = views(half, 0, {c.b, c.l, c.e}, {c.l * ldh, ldh, 1});
        Pair& so = c.in_place ? s_in : s_out;
        const bool f32_out = outs != Outs::half, half_out = outs != Outs::f32;
        for (bool dev : {false, true}) {
          const auto pick = [dev](const Pair& p) { return dev ? p.dev : p.host; };
          conv1d_causal_forward(f32_out ? pick(out) : Tensor{}, half_out ? (dev ? hd : hh) : Tensor{},
                                c.state_out ? pick(so) : Tensor{}, dev ? xd : xh, pick(w),
                                c.bias ? pick(bias) : Tensor{}, c.state_in ? pick(s_in) : Tensor{}, c.silu, ctx);
        }
        if (f32_out) {
          const auto got = download(out), ref = host_values(out);
          EXPECT_CLOSE(got.data(), ref.data(), ref.size(), kTolF32) << "out";
        }
        if (half_out) {
          const auto all = download(half), all_ref = host_values(half);
          std::vector<float> got, ref;
          for (int64_t r = 0; r < c.b * c.l; ++r) {
            got.insert(got.end(), all.begin() + r * ldh, all.begin() + r * ldh + c.e);
            ref.insert(ref.end(), all_ref.begin() + r * ldh, all_ref.begin() + r * ldh + c.e);
            for (int64_t j = c.e; j < ldh; ++j) ASSERT_TRUE(std::isnan(all[size_t(r * ldh + j)])) << "gap of row " << r;
          }
          EXPECT_CLOSE(got.data(), ref.data(), ref.size(), half_ulp(xt)) << "out_half";
        }
        if (c.state_out && km1 > 0) {
          const auto gs = download(so), rs = host_values(so);
          EXPECT_CLOSE(gs.data(), rs.data(), rs.size(), 0.0) << "state_out";
        }
      }
}

// The dispatcher routes cuda tensors to the fused scan kernel; one decoding-step shape and one prefill shape.
TEST(CudaOps, ScanThroughDispatcherMatchesCpu) {
  SKIP_WITHOUT_GPU();
  Context ctx(2);
  for (auto [b, l, e, n] : {std::array<int64_t, 4>{2, 1, 100, 16}, {1, 77, 64, 5}}) {
    SCOPED_TRACE("b=" + std::to_string(b) + " l=" + std::to_string(l));
    Pair u = make_pair(DType::f32, {b, l, e}), dt = make_pair(DType::f32, {b, l, e});
    Pair z = make_pair(DType::f32, {b, l, e}), B = make_pair(DType::f32, {b, l, n}), C = make_pair(DType::f32, {b, l, n});
    Pair A = make_pair(DType::f32, {e, n}), D = make_pair(DType::f32, {e}), bias = make_pair(DType::f32, {e});
    Pair st = make_pair(DType::f32, {b, e, n}), y = make_pair(DType::f32, {b, l, e});
    fill(u, random_vector(size_t(b * l * e), 12)), fill(dt, random_vector(size_t(b * l * e), 13, -3.0f, 1.0f));
    fill(z, random_vector(size_t(b * l * e), 14)), fill(B, random_vector(size_t(b * l * n), 15));
    fill(C, random_vector(size_t(b * l * n), 16)), fill(A, random_vector(size_t(e * n), 17, -8.0f, -1.0f));
    fill(D, random_vector(size_t(e), 18)), fill(bias, random_vector(size_t(e), 19, -4.0f, -1.0f));
    fill(st, random_vector(size_t(b * e * n), 20));
    poison(y);
    for (bool dev : {false, true}) {
      const auto pick = [dev](const Pair& p) { return dev ? p.dev : p.host; };
      ScanArgs a;
      a.y = pick(y), a.state_out = pick(st), a.state_in = pick(st), a.u = pick(u), a.dt = pick(dt), a.A = pick(A);
      a.B = pick(B), a.C = pick(C), a.D = pick(D), a.z = pick(z), a.dt_bias = pick(bias);
      selective_scan_forward(a, ctx);
    }
    const auto got = download(y), ref = host_values(y);
    EXPECT_CLOSE(got.data(), ref.data(), ref.size(), kTolF32) << "y";
    const auto gs = download(st), rs = host_values(st);
    EXPECT_CLOSE(gs.data(), rs.data(), rs.size(), kTolF32) << "state";
  }
}

TEST(CudaOps, ArgmaxMatchesCpu) {
  SKIP_WITHOUT_GPU();
  Context ctx(2);
  for (auto [m, v] : {std::pair<int64_t, int64_t>{1, 50280}, {3, 1000}, {64, 50277}}) {
    Pair logits = make_pair(DType::f32, {m, v}), ids = make_pair(DType::f32, {m});
    std::vector<float> x = random_vector(size_t(m * v), 21, -5.0f, 5.0f);
    x[size_t(v / 2)] = x[size_t(v / 3)] = 9.0f;  // a tie in row 0: the lower index wins
    fill(logits, x);
    poison(ids);
    argmax_rows_cuda(ids.dev.ptr<int32_t>(), logits.dev, ctx);
    std::vector<int32_t> got(static_cast<size_t>(m));
    ASSERT_EQ(cudaSuccess, cudaDeviceSynchronize());
    ASSERT_EQ(cudaSuccess, cudaMemcpy(got.data(), ids.dev.data, size_t(m) * 4, cudaMemcpyDeviceToHost));
    for (int64_t r = 0; r < m; ++r) EXPECT_EQ(got[size_t(r)], argmax(x.data() + r * v, v)) << "row " << r;
  }
}

TEST(CudaOps, MixedDevicesAreAnError) {
  SKIP_WITHOUT_GPU();
  Context ctx(2);
  Pair x = make_pair(DType::f32, {2, 8}), w = make_pair(DType::f32, {4, 8}), y = make_pair(DType::f32, {2, 4});
  expect_error([&] { linear_forward(y.dev, x.host, w.dev, Tensor{}, ctx); }, {"linear_forward", "x is on cpu"});
}

}  // namespace
}  // namespace mambacpp::test
