// Tests of the CPU ops (ops.h) against the double-precision reference loops (support/reference_ops.h): a
// table of shapes per op including the awkward ones (one token, odd state sizes, channels not a multiple of
// the vector width, several batch rows, row-strided views), outputs poisoned with NaN beforehand, chunked and
// token-by-token runs against one call, and bitwise equality across thread counts. The scan: test_scan.cpp; bad
// arguments: test_op_errors.cpp.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "core/error.h"
#include "ops/cpu/vec_math.h"
#include "ops/ops.h"
#include "support/reference_ops.h"
#include "support/sequences.h"
#include "support/test_util.h"

namespace mambacpp {
namespace {

using test::bitwise_equal;
using test::chunks_of;
using test::expect_error;
using test::HalfStrided;
using test::kNaN;
using test::random_vector;
using test::seq_slice;
using test::SeqResult;
using test::Strided;
using test::vec_tensor;

// Relative L2 tolerances against the double reference.
constexpr double kTolElementwise = 1e-6;  // embedding, rmsnorm, conv1d
constexpr double kTolLinear = 1e-6;
constexpr double kTolChunked = 1e-6;  // chunked or stepwise runs against one call

// ---------------------------------------------------------------------------------------------------------
// Vectorised elementary functions

// Error of `got` in units in the last place of the f32 nearest to `ref`.
double ulp_error(float got, double ref) {
  const float r = float(ref);
  const double ulp = double(std::nextafter(std::fabs(r), INFINITY) - std::fabs(r));
  return std::fabs(double(got) - ref) / ulp;
}

template <typename F, typename R>
double max_ulp_error(F vec_fn, R ref_fn, float lo, float hi, int count) {
  double worst = 0;
  for (int i = 0; i < count; i += cpu::kLanes) {
    float in[cpu::kLanes], out[cpu::kLanes];
    for (int j = 0; j < cpu::kLanes; ++j) in[j] = lo + (hi - lo) * float(i + j) / float(count);
    vec_fn(cpu::Vec::load(in)).store(out);
    for (int j = 0; j < cpu::kLanes; ++j) worst = std::max(worst, ulp_error(out[j], ref_fn(double(in[j]))));
  }
  return worst;
}

TEST(VecMath, ExpIsAccurateToOneAndAHalfUlp) {
  auto vexp = [](cpu::Vec x) { return cpu::exp(x); };
  auto dexp = [](double x) { return std::exp(x); };
  EXPECT_LE(max_ulp_error(vexp, dexp, -87.0f, 88.7f, 1 << 20), 1.5);
  EXPECT_LE(max_ulp_error(vexp, dexp, -1.0f, 1.0f, 1 << 18), 1.5);
}

TEST(VecMath, ExpSpecialValues) {
  float in[cpu::kLanes] = {-INFINITY, INFINITY, kNaN, -200.0f, 200.0f, 0.0f, -0.0f, -103.0f, 89.0f, 88.7f};
  float out[cpu::kLanes];
  cpu::exp(cpu::Vec::load(in)).store(out);
  EXPECT_EQ(out[0], 0.0f);
  EXPECT_EQ(out[1], INFINITY);
  EXPECT_TRUE(std::isnan(out[2]));
  EXPECT_EQ(out[3], 0.0f);
  EXPECT_EQ(out[4], INFINITY);
  EXPECT_EQ(out[5], 1.0f);
  EXPECT_EQ(out[6], 1.0f);
  EXPECT_GE(out[7], 0.0f);
  EXPECT_LT(out[7], 1e-44f);
  EXPECT_EQ(out[8], INFINITY);
  EXPECT_LE(ulp_error(out[9], std::exp(double(in[9]))), 1.5);
}

TEST(VecMath, SoftplusAndSiluAreAccurate) {
  auto vsp = [](cpu::Vec x) { return cpu::softplus(x); };
  EXPECT_LE(max_ulp_error(vsp, ref::softplus, -80.0f, 30.0f, 1 << 18), 2.5);
  EXPECT_LE(max_ulp_error(vsp, ref::softplus, -5.0f, 5.0f, 1 << 18), 2.5);
  auto vsilu = [](cpu::Vec x) { return cpu::silu(x); };
  EXPECT_LE(max_ulp_error(vsilu, ref::silu, 0.01f, 80.0f, 1 << 18), 3.0);
  EXPECT_LE(max_ulp_error(vsilu, ref::silu, -80.0f, -0.01f, 1 << 18), 3.0);
}

// ---------------------------------------------------------------------------------------------------------
// linear_forward

struct LinearCase {
  int64_t m, i, o;
  DType wt;
  bool bias;
  int64_t pad;  // extra row stride of x and y
};

std::vector<float> round_to(DType t, std::vector<float> v, std::vector<uint16_t>& bits) {
  if (t == DType::f32) return v;
  bits.resize(v.size());
  convert_from_f32(bits.data(), t, v.data(), v.size());
  convert_to_f32(v.data(), bits.data(), t, v.size());
  return v;
}

// Runs linear_forward with `threads` threads; returns y packed.
std::vector<float> run_linear(const LinearCase& c, int threads, std::vector<float>* ref_out = nullptr) {
  std::vector<uint16_t> bits;
  std::vector<float> wf = round_to(c.wt, random_vector(size_t(c.o * c.i), 2, -0.5f, 0.5f), bits);
  std::vector<float> bias = c.bias ? random_vector(size_t(c.o), 3) : std::vector<float>();
  const std::vector<float> xv = random_vector(size_t(c.m * c.i), 1);
  Strided x(1, c.m, c.i, c.i + c.pad, xv), y(1, c.m, c.o, c.o + c.pad);
  y.poison();
  void* wdata = c.wt == DType::f32 ? static_cast<void*>(wf.data()) : static_cast<void*>(bits.data());
  Context ctx(threads);
  linear_forward(y.rows(), x.rows(), Tensor(wdata, c.wt, {c.o, c.i}), vec_tensor(bias), ctx);
  EXPECT_TRUE(y.gaps_intact());
  if (ref_out) {
    const auto ref = ref::linear(xv, wf, bias, c.m, c.i, c.o);
    ref_out->assign(ref.begin(), ref.end());
  }
  return y.packed();
}

TEST(Linear, MatchesReference) {
  const LinearCase cases[] = {
      {1, 768, 1000, DType::f32, false, 0},  {1, 37, 5, DType::f32, true, 3},   {2, 300, 33, DType::bf16, true, 0},
      {3, 16, 80, DType::f16, false, 5},     {5, 1, 7, DType::f32, true, 0},    {8, 129, 65, DType::bf16, false, 2},
      {9, 64, 96, DType::f32, true, 0},      {13, 300, 33, DType::f32, true, 7}, {37, 48, 100, DType::bf16, true, 1},
      {200, 520, 70, DType::f32, false, 16}, {64, 1536, 80, DType::f16, true, 0}, {30, 7, 3, DType::f32, true, 0},
      {2, 52, 9, DType::f16, true, 1},       {7, 1000, 40, DType::bf16, false, 0},
      {0, 16, 5, DType::f32, true, 0},       {3, 0, 5, DType::f32, true, 0},     {20, 0, 5, DType::bf16, false, 0},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(testing::Message() << "m=" << c.m << " i=" << c.i << " o=" << c.o << " w=" << dtype_name(c.wt)
                                    << " bias=" << c.bias << " pad=" << c.pad);
    std::vector<float> ref;
    const auto got = run_linear(c, 2, &ref);
    EXPECT_CLOSE(got.data(), ref.data(), got.size(), kTolLinear);
    EXPECT_TRUE(bitwise_equal(got, run_linear(c, 1))) << "results differ between 1 and 2 threads";
  }
}

TEST(Linear, RowsAreIndependentOfBatchSize) {
  // Row r of y is the same whether computed alone (decoding) or among a few rows.
  const LinearCase one{1, 200, 50, DType::bf16, true, 0}, four{4, 200, 50, DType::bf16, true, 0};
  const auto y1 = run_linear(one, 2), y4 = run_linear(four, 2);
  EXPECT_TRUE(std::equal(y1.begin(), y1.end(), y4.begin()));
}

// ---------------------------------------------------------------------------------------------------------
// embedding_forward

TEST(Embedding, MatchesReferenceForEachDtype) {
  const int64_t v = 50, d = 37, m = 6;
  const std::vector<int32_t> ids = {0, 49, 7, 7, 23, 1};
  for (DType t : {DType::f32, DType::bf16, DType::f16}) {
    SCOPED_TRACE(dtype_name(t));
    std::vector<uint16_t> bits;
    std::vector<float> table = round_to(t, random_vector(size_t(v * d), 4), bits);
    void* data = t == DType::f32 ? static_cast<void*>(table.data()) : static_cast<void*>(bits.data());
    Strided out(1, m, d, d + 3);
    out.poison();
    Context ctx(2);
    embedding_forward(out.rows(), ids.data(), m, Tensor(data, t, {v, d}), ctx);
    const auto got = out.packed();
    const auto ref = ref::embedding(ids, table, d);
    EXPECT_CLOSE(got.data(), ref.data(), got.size(), 0.0);
    EXPECT_TRUE(out.gaps_intact());
  }
}

// ---------------------------------------------------------------------------------------------------------
// rmsnorm_forward

TEST(RmsNorm, MatchesReference) {
  struct Case {
    int64_t m, d;
    bool with_x;
    int64_t pad;
  };
  for (const Case c : {Case{1, 768, true, 0}, Case{5, 37, true, 3}, Case{3, 1, false, 0}, Case{64, 100, false, 5},
                       Case{2, 16, true, 0}}) {
    SCOPED_TRACE(testing::Message() << "m=" << c.m << " d=" << c.d << " x=" << c.with_x);
    const auto res0 = random_vector(size_t(c.m * c.d), 5, -2.0f, 2.0f);
    const auto xv = c.with_x ? random_vector(size_t(c.m * c.d), 6) : std::vector<float>();
    auto w = random_vector(size_t(c.d), 7, 0.5f, 1.5f);
    const auto ref = ref::rmsnorm(res0, xv, w, c.m, c.d, 1e-5);
    std::vector<float> last;
    for (int threads : {1, 2}) {
      Strided res(1, c.m, c.d, c.d + c.pad, res0), out(1, c.m, c.d, c.d + c.pad);
      Strided x = c.with_x ? Strided(1, c.m, c.d, c.d + c.pad, xv) : Strided(1, c.m, c.d, c.d);
      out.poison();
      Context ctx(threads);
      rmsnorm_forward(out.rows(), res.rows(), c.with_x ? x.rows() : Tensor(), vec_tensor(w), 1e-5f, ctx);
      const auto got = out.packed(), got_res = res.packed();
      EXPECT_CLOSE(got.data(), ref.out.data(), got.size(), kTolElementwise);
      EXPECT_CLOSE(got_res.data(), ref.residual.data(), got_res.size(), kTolElementwise);
      EXPECT_TRUE(out.gaps_intact() && res.gaps_intact());
      if (!last.empty()) {
        EXPECT_TRUE(bitwise_equal(got, last)) << "results differ between 1 and 2 threads";
      }
      last = got;
    }
  }
}

TEST(RmsNorm, OutMayAliasX) {
  const int64_t m = 3, d = 40;
  const auto res0 = random_vector(size_t(m * d), 8), xv = random_vector(size_t(m * d), 9);
  auto w = random_vector(size_t(d), 10);
  const auto ref = ref::rmsnorm(res0, xv, w, m, d, 1e-6);
  std::vector<float> res = res0, x = xv;
  Context ctx(2);
  rmsnorm_forward(Tensor(x.data(), DType::f32, {m, d}), Tensor(res.data(), DType::f32, {m, d}),
                  Tensor(x.data(), DType::f32, {m, d}), vec_tensor(w), 1e-6f, ctx);
  EXPECT_CLOSE(x.data(), ref.out.data(), x.size(), kTolElementwise);
}

// The form that keeps the stream before the add: bitwise a copy followed by the in-place form, residual_in
// untouched, with strided views and any thread count.
TEST(RmsNorm, SeparateResidualEqualsCopyThenInPlace) {
  const int64_t m = 37, d = 100, pad = 3;
  const auto res0 = random_vector(size_t(m * d), 11, -2.0f, 2.0f), xv = random_vector(size_t(m * d), 12);
  auto w = random_vector(size_t(d), 13, 0.5f, 1.5f);
  for (bool with_x : {false, true})
    for (int threads : {1, 2}) {
      SCOPED_TRACE(testing::Message() << "x=" << with_x << " threads=" << threads);
      Context ctx(threads);
      Strided res_a(1, m, d, d + pad, res0), out_a(1, m, d, d + pad);
      Strided res_in(1, m, d, d + pad, res0), res_b(1, m, d, d + pad), out_b(1, m, d, d + pad);
      Strided x(1, m, d, d + pad, xv);
      out_a.poison(), out_b.poison(), res_b.poison();
      rmsnorm_forward(out_a.rows(), res_a.rows(), with_x ? x.rows() : Tensor(), vec_tensor(w), 1e-5f, ctx);
      rmsnorm_forward(out_b.rows(), res_b.rows(), res_in.rows(), with_x ? x.rows() : Tensor(), vec_tensor(w), 1e-5f,
                      ctx);
      EXPECT_TRUE(bitwise_equal(out_a.packed(), out_b.packed())) << "out";
      EXPECT_TRUE(bitwise_equal(res_a.packed(), res_b.packed())) << "residual_out";
      EXPECT_TRUE(bitwise_equal(res_in.packed(), res0)) << "residual_in changed";
      EXPECT_TRUE(res_b.gaps_intact() && out_b.gaps_intact());
      // A half out holds the f32 out rounded to nearest even.
      for (DType ht : {DType::bf16, DType::f16}) {
        std::vector<uint16_t> half(size_t(m * d)), want(size_t(m * d));
        Strided res_c(1, m, d, d + pad);
        rmsnorm_forward(Tensor(half.data(), ht, {m, d}), res_c.rows(), res_in.rows(), with_x ? x.rows() : Tensor(),
                        vec_tensor(w), 1e-5f, ctx);
        const auto full = out_a.packed();
        convert_from_f32(want.data(), ht, full.data(), full.size());
        EXPECT_EQ(half, want) << dtype_name(ht) << " out";
      }
    }
}

// ---------------------------------------------------------------------------------------------------------
// conv1d_causal_forward

struct ConvCase {
  int64_t b, l, e, k;
  bool bias, silu, state_in;
};

struct ConvData {
  ConvCase c;
  int64_t ld;  // row stride of x: x is the first half of a (b, l, 2e) buffer
  std::vector<float> x, w, bias, state0;
  explicit ConvData(const ConvCase& cc)
      : c(cc),
        ld(2 * cc.e),
        x(random_vector(size_t(cc.b * cc.l * cc.e), 11)),
        w(random_vector(size_t(cc.e * cc.k), 12, -0.6f, 0.6f)),
        bias(cc.bias ? random_vector(size_t(cc.e), 13) : std::vector<float>()),
        state0(cc.state_in ? random_vector(size_t(cc.b * cc.e * (cc.k - 1)), 14) : std::vector<float>()) {}
};

// Runs the conv over the sequence in the given chunks, carrying the state in one buffer (state_out aliasing
// state_in from the second chunk on).
SeqResult run_conv(ConvData& d, int threads, std::initializer_list<int64_t> sizes) {
  const ConvCase& c = d.c;
  Strided x(c.b, c.l, c.e, d.ld, d.x), out(c.b, c.l, c.e, c.e + 1);
  out.poison();
  std::vector<float> state(size_t(c.b * c.e * (c.k - 1)), kNaN);
  Tensor st(state.data(), DType::f32, {c.b, c.e, c.k - 1});
  Tensor st0 = c.state_in ? Tensor(d.state0.data(), DType::f32, {c.b, c.e, c.k - 1}) : Tensor();
  Context ctx(threads);
  bool first = true;
  for (auto [t0, len] : chunks_of(c.l, sizes)) {
    conv1d_causal_forward(seq_slice(out.mem.data(), c.b, c.l, c.e, c.e + 1, t0, len), st,
                          seq_slice(x.mem.data(), c.b, c.l, c.e, d.ld, t0, len),
                          Tensor(d.w.data(), DType::f32, {c.e, c.k}), vec_tensor(d.bias), first ? st0 : st, c.silu,
                          ctx);
    first = false;
  }
  EXPECT_TRUE(out.gaps_intact() && x.gaps_intact());
  return {out.packed(), state};
}

TEST(Conv1d, MatchesReference) {
  const ConvCase cases[] = {{1, 1, 16, 4, true, true, true},    {2, 5, 37, 4, true, false, true},
                            {1, 33, 1, 4, false, true, false},  {3, 7, 20, 2, true, true, true},
                            {1, 9, 48, 1, true, false, false},  {2, 2, 37, 4, false, true, true},
                            {1, 64, 1536, 4, true, true, false}, {2, 12, 5, 16, true, true, true},
                            {2, 0, 20, 4, true, true, true}};
  for (const auto& c : cases) {
    SCOPED_TRACE(testing::Message() << "b=" << c.b << " l=" << c.l << " e=" << c.e << " k=" << c.k
                                    << " bias=" << c.bias << " silu=" << c.silu << " state_in=" << c.state_in);
    ConvData d(c);
    const auto ref = ref::conv1d_causal(d.x, d.w, d.bias, d.state0, c.b, c.l, c.e, c.k, c.silu);
    const SeqResult got = run_conv(d, 2, {c.l});
    EXPECT_CLOSE(got.y.data(), ref.out.data(), got.y.size(), kTolElementwise);
    EXPECT_CLOSE(got.state.data(), ref.state.data(), got.state.size(), 0.0);
    const SeqResult one = run_conv(d, 1, {c.l});
    EXPECT_TRUE(bitwise_equal(got.y, one.y) && bitwise_equal(got.state, one.state)) << "1 vs 2 threads";
  }
}

// out_half receives out rounded to nearest even, through a strided view like out's.
TEST(Conv1d, HalfCopyIsTheRoundedOutput) {
  ConvData d({2, 23, 37, 4, true, true, true});
  const ConvCase& c = d.c;
  Strided x(c.b, c.l, c.e, d.ld, d.x), out(c.b, c.l, c.e, c.e);
  Tensor st0(d.state0.data(), DType::f32, {c.b, c.e, c.k - 1});
  for (DType ht : {DType::bf16, DType::f16}) {
    const int64_t ldh = c.e + 3;
    std::vector<uint16_t> half(size_t(c.b * c.l * ldh), 0x7fff);
    Tensor hv(half.data(), ht, {c.b, c.l, c.e});
    hv.stride[1] = ldh, hv.stride[0] = c.l * ldh;
    Context ctx(2);
    conv1d_causal_forward(out.seq(), hv, Tensor{}, x.seq(), Tensor(d.w.data(), DType::f32, {c.e, c.k}),
                          vec_tensor(d.bias), st0, c.silu, ctx);
    const auto full = out.packed();
    std::vector<uint16_t> want(full.size());
    convert_from_f32(want.data(), ht, full.data(), full.size());
    for (int64_t r = 0; r < c.b * c.l; ++r) {
      EXPECT_EQ(0, std::memcmp(&half[size_t(r * ldh)], &want[size_t(r * c.e)], size_t(c.e) * 2)) << "row " << r;
      EXPECT_EQ(half[size_t(r * ldh + c.e)], 0x7fff) << "gap of row " << r;
    }
  }
}

// A half x (the x half of a half (b, l, 2e) in_proj output): bit for bit the result of the f32 op on its
// widened values, output and state, in one call and in one-token calls.
TEST(Conv1d, HalfInputGivesTheResultOfItsWidenedValues) {
  for (const ConvCase& cc : {ConvCase{2, 23, 37, 4, true, true, true}, ConvCase{1, 1, 16, 3, false, false, true}})
    for (DType xt : {DType::bf16, DType::f16}) {
      SCOPED_TRACE(testing::Message() << "l=" << cc.l << " e=" << cc.e << " " << dtype_name(xt));
      ConvData d(cc);
      const ConvCase& c = d.c;
      HalfStrided xh(d.x, xt, c.b, c.l, c.e, d.ld);  // d.x now holds the widened values
      for (auto sizes : {std::initializer_list<int64_t>{c.l}, {1}}) {
        const SeqResult want = run_conv(d, 2, sizes);
        Strided out(c.b, c.l, c.e, c.e + 1);
        out.poison();
        std::vector<float> state(size_t(c.b * c.e * (c.k - 1)), kNaN);
        Tensor st(state.data(), DType::f32, {c.b, c.e, c.k - 1});
        Tensor st0 = c.state_in ? Tensor(d.state0.data(), DType::f32, {c.b, c.e, c.k - 1}) : Tensor();
        Context ctx(2);
        bool first = true;
        for (auto [t0, len] : chunks_of(c.l, sizes)) {
          Tensor xv = xh.seq();
          xv.data = xh.mem.data() + t0 * d.ld, xv.shape[1] = len;
          conv1d_causal_forward(seq_slice(out.mem.data(), c.b, c.l, c.e, c.e + 1, t0, len), st, xv,
                                Tensor(d.w.data(), DType::f32, {c.e, c.k}), vec_tensor(d.bias), first ? st0 : st,
                                c.silu, ctx);
          first = false;
        }
        EXPECT_TRUE(bitwise_equal(out.packed(), want.y)) << "out";
        EXPECT_TRUE(bitwise_equal(state, want.state)) << "state";
        EXPECT_TRUE(out.gaps_intact());
      }
    }
}

TEST(Conv1d, ChunkedAndStepwiseEqualOneCall) {
  ConvData d({2, 23, 37, 4, true, true, true});
  const SeqResult whole = run_conv(d, 2, {23});
  for (auto sizes : {std::initializer_list<int64_t>{1}, {2, 5}, {3}, {10, 1}}) {
    const SeqResult parts = run_conv(d, 2, sizes);
    EXPECT_CLOSE(parts.y.data(), whole.y.data(), whole.y.size(), kTolChunked);
    EXPECT_CLOSE(parts.state.data(), whole.state.data(), whole.state.size(), kTolChunked);
  }
}

}  // namespace
}  // namespace mambacpp
