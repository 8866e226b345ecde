// Tests of the CPU selective scan (ops.h, selective_scan_forward) against the double-precision reference loop
// (support/reference_ops.h): a table of shapes including the awkward ones (one token, odd state sizes, channels
// not a multiple of the vector width, several batch rows), inputs laid out as the model makes them (row-strided
// views), outputs poisoned beforehand; chunked and token-by-token runs against one call, bitwise equality across
// thread counts, the states every 16 steps for the backward pass, a half output, a half u (bit for bit the f32 op
// on the widened u), and the ablations' time-invariant B, C and Δ.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "ops/ops.h"
#include "support/reference_ops.h"
#include "support/sequences.h"
#include "support/test_util.h"

namespace mambacpp {
namespace {

using test::bitwise_equal;
using test::chunks_of;
using test::kNaN;
using test::kPad;
using test::random_vector;
using test::seq_slice;
using test::SeqResult;
using test::Strided;
using test::vec_tensor;
using test::zero_seq;

// Relative L2 tolerances against the double reference.
constexpr double kTolScan = 1e-6;
constexpr double kTolChunked = 1e-6;  // chunked or stepwise runs against one call

struct ScanCase {
  int64_t b, l, e, n;
  bool z, D, dt_bias, softplus, state_in;
  bool B_lti = false, C_lti = false;  // B / C time-invariant (e, n)
  bool dt_zero = false;               // dt a zero-stride view of zeros (a time-invariant Δ in dt_bias)
};

// Inputs laid out as the model produces them: u and z the halves of a (b, l, 2e) buffer, B and C slices of
// a (b, l, r + 2n) buffer (r = 3), dt a (b, l, e) buffer with one column of padding.
struct ScanData {
  static constexpr int64_t r = 3;
  ScanCase c;
  std::vector<float> u, z, dt, B, C, A, D, dt_bias, state0;
  explicit ScanData(const ScanCase& cc) : c(cc) {
    const size_t ble = size_t(c.b * c.l * c.e), bln = size_t(c.b * c.l * c.n);
    u = random_vector(ble, 21);
    if (c.z) z = random_vector(ble, 22, -3.0f, 3.0f);
    dt = c.softplus ? random_vector(ble, 23, -5.0f, 0.5f) : random_vector(ble, 23, 0.001f, 0.2f);
    if (c.dt_zero) dt.assign(ble, 0.0f);
    B = random_vector(c.B_lti ? size_t(c.e * c.n) : bln, 24);
    C = random_vector(c.C_lti ? size_t(c.e * c.n) : bln, 25);
    A = random_vector(size_t(c.e * c.n), 26, -0.7f, 2.8f);
    for (float& a : A) a = -std::exp(a);
    if (c.D) D = random_vector(size_t(c.e), 27);
    if (c.dt_bias) dt_bias = c.softplus ? random_vector(size_t(c.e), 28, -2.0f, 0.0f) : random_vector(size_t(c.e), 28, 0.0f, 0.05f);
    if (c.state_in) state0 = random_vector(size_t(c.b * c.e * c.n), 29, -2.0f, 2.0f);
  }
  ref::ScanResult reference() const {
    ref::ScanInputs in;
    in.b = c.b, in.l = c.l, in.e = c.e, in.n = c.n;
    in.u = u, in.dt = dt, in.z = z, in.B = B, in.C = C, in.A = A, in.D = D, in.dt_bias = dt_bias;
    in.state_in = state0;
    in.dt_softplus = c.softplus;
    in.B_lti = c.B_lti, in.C_lti = c.C_lti;
    return ref::selective_scan(in);
  }
};

// Runs the scan in the given chunks, carrying the state in one buffer (aliased in and out after the first). With
// chunk_states (one call over the whole sequence only), the call also writes the states every 16 steps there.
SeqResult run_scan(ScanData& d, int threads, std::initializer_list<int64_t> sizes, float* chunk_states = nullptr) {
  const ScanCase& c = d.c;
  const int64_t xw = ScanData::r + 2 * c.n;
  std::vector<float> uz(size_t(c.b * c.l * 2 * c.e), kPad), bc(size_t(c.b * c.l * xw), kPad);
  for (int64_t t = 0; t < c.b * c.l; ++t) {
    for (int64_t j = 0; j < c.e; ++j) {
      uz[t * 2 * c.e + j] = d.u[t * c.e + j];
      if (c.z) uz[t * 2 * c.e + c.e + j] = d.z[t * c.e + j];
    }
    for (int64_t s = 0; s < c.n; ++s) {
      if (!c.B_lti) bc[t * xw + ScanData::r + s] = d.B[t * c.n + s];
      if (!c.C_lti) bc[t * xw + ScanData::r + c.n + s] = d.C[t * c.n + s];
    }
  }
  const std::vector<float> zeros(size_t(c.e), 0.0f);
  Strided dt(c.b, c.l, c.e, c.e + 1, d.dt), y(c.b, c.l, c.e, c.e);
  y.poison();
  std::vector<float> state(size_t(c.b * c.e * c.n), kNaN);
  Tensor st(state.data(), DType::f32, {c.b, c.e, c.n});
  Context ctx(threads);
  bool first = true;
  for (auto [t0, len] : chunks_of(c.l, sizes)) {
    ScanArgs a;
    a.y = seq_slice(y.mem.data(), c.b, c.l, c.e, c.e, t0, len);
    a.state_out = st;
    a.u = seq_slice(uz.data(), c.b, c.l, c.e, 2 * c.e, t0, len);
    if (c.z) a.z = seq_slice(uz.data() + c.e, c.b, c.l, c.e, 2 * c.e, t0, len);
    a.dt = seq_slice(dt.mem.data(), c.b, c.l, c.e, c.e + 1, t0, len);
    if (c.dt_zero) a.dt = zero_seq(zeros, c.b, len, c.e);
    a.B = c.B_lti ? Tensor(d.B.data(), DType::f32, {c.e, c.n})
                  : seq_slice(bc.data() + ScanData::r, c.b, c.l, c.n, xw, t0, len);
    a.C = c.C_lti ? Tensor(d.C.data(), DType::f32, {c.e, c.n})
                  : seq_slice(bc.data() + ScanData::r + c.n, c.b, c.l, c.n, xw, t0, len);
    a.A = Tensor(d.A.data(), DType::f32, {c.e, c.n});
    a.D = vec_tensor(d.D);
    a.dt_bias = vec_tensor(d.dt_bias);
    a.state_in = !first ? st : c.state_in ? Tensor(d.state0.data(), DType::f32, {c.b, c.e, c.n}) : Tensor();
    a.dt_softplus = c.softplus;
    if (chunk_states != nullptr)
      a.chunk_states = Tensor(chunk_states, DType::f32, {c.b, scan_state_count(c.l), c.n, c.e});
    selective_scan_forward(a, ctx);
    first = false;
  }
  EXPECT_TRUE(dt.gaps_intact());
  return {y.packed(), state};
}

// One call over the sequence against the double reference (y and the final state), and the same bits on one
// thread as on two; returns the two-thread result.
SeqResult expect_matches_reference(ScanData& d) {
  const auto ref = d.reference();
  const SeqResult got = run_scan(d, 2, {d.c.l});
  EXPECT_CLOSE(got.y.data(), ref.y.data(), got.y.size(), kTolScan);
  EXPECT_CLOSE(got.state.data(), ref.state.data(), got.state.size(), kTolScan);
  const SeqResult one = run_scan(d, 1, {d.c.l});
  EXPECT_TRUE(bitwise_equal(got.y, one.y) && bitwise_equal(got.state, one.state)) << "1 vs 2 threads";
  return got;
}

TEST(SelectiveScan, MatchesReference) {
  const ScanCase cases[] = {
      {1, 1, 16, 16, true, true, true, true, true},     {1, 1, 37, 16, true, true, true, true, false},
      {2, 7, 37, 1, true, true, true, true, true},      {1, 13, 20, 3, false, true, false, true, false},
      {3, 5, 16, 17, true, false, true, false, true},   {1, 64, 48, 16, true, true, true, true, false},
      {2, 9, 5, 64, false, false, false, true, true},   {1, 4, 33, 256, true, true, true, true, true},
      {1, 300, 17, 16, true, true, true, true, false},  {2, 40, 1, 8, true, true, false, false, false},
      {1, 128, 1536, 16, true, true, true, true, false}, {2, 3, 100, 130, true, false, true, true, true},
      {2, 0, 20, 5, true, true, true, true, true},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(testing::Message() << "b=" << c.b << " l=" << c.l << " e=" << c.e << " n=" << c.n << " z=" << c.z
                                    << " D=" << c.D << " dt_bias=" << c.dt_bias << " softplus=" << c.softplus
                                    << " state_in=" << c.state_in);
    ScanData d(c);
    expect_matches_reference(d);
  }
}

// chunk_states[bi, k, s, c] is the state before step 16k: the reference's final state over the first 16k steps
// (state_in, or zeros, at k = 0); y is the same bits as without them.
TEST(SelectiveScan, ChunkStatesAreTheStatesEvery16Steps) {
  for (const ScanCase c : {ScanCase{2, 37, 37, 16, true, true, true, true, true},
                           ScanCase{1, 50, 19, 5, false, true, false, true, false},
                           ScanCase{3, 16, 20, 3, true, false, true, false, true},
                           ScanCase{2, 1, 17, 64, true, true, true, true, true}}) {
    SCOPED_TRACE(testing::Message() << "b=" << c.b << " l=" << c.l << " e=" << c.e << " n=" << c.n);
    ScanData d(c);
    const int64_t K = scan_state_count(c.l);
    std::vector<float> states(size_t(c.b * K * c.n * c.e), kNaN);
    const SeqResult with = run_scan(d, 2, {c.l}, states.data()), without = run_scan(d, 2, {c.l});
    EXPECT_TRUE(bitwise_equal(with.y, without.y) && bitwise_equal(with.state, without.state));
    for (int64_t k = 0; k < K; ++k) {
      const int64_t len = 16 * k;
      // The inputs' first len steps of every batch row.
      const auto prefix = [&](const std::vector<float>& v, int64_t width) {
        std::vector<float> out;
        for (int64_t bi = 0; bi < c.b; ++bi)
          out.insert(out.end(), v.begin() + bi * c.l * width, v.begin() + (bi * c.l + len) * width);
        return out;
      };
      const std::vector<float> u = prefix(d.u, c.e), dt = prefix(d.dt, c.e), B = prefix(d.B, c.n),
                               C = prefix(d.C, c.n), z = c.z ? prefix(d.z, c.e) : std::vector<float>{};
      ref::ScanInputs in;
      in.b = c.b, in.l = len, in.e = c.e, in.n = c.n;
      in.u = u, in.dt = dt, in.z = z, in.B = B, in.C = C, in.A = d.A, in.D = d.D, in.dt_bias = d.dt_bias;
      in.state_in = d.state0, in.dt_softplus = c.softplus;
      const ref::ScanResult want = ref::selective_scan(in);
      std::vector<float> got;  // (b, e, n) from (b, k, n, e)
      for (int64_t bi = 0; bi < c.b; ++bi)
        for (int64_t ch = 0; ch < c.e; ++ch)
          for (int64_t s = 0; s < c.n; ++s) got.push_back(states[size_t(((bi * K + k) * c.n + s) * c.e + ch)]);
      SCOPED_TRACE(testing::Message() << "k=" << k);
      EXPECT_CLOSE(got.data(), want.state.data(), got.size(), kTolScan);
    }
  }
}

// A half y (bf16 or f16) holds the f32 y rounded to nearest even, with a row-strided view.
TEST(SelectiveScan, HalfOutputIsTheF32OutputRounded) {
  const ScanCase c{2, 37, 20, 16, true, true, true, true, true};
  ScanData d(c);
  const SeqResult full = run_scan(d, 2, {c.l});
  const int64_t ld = c.e + 3;
  for (DType ht : {DType::bf16, DType::f16}) {
    std::vector<uint16_t> half(size_t(c.b * c.l * ld), 0xffff), want(size_t(c.b * c.l * c.e));
    ScanArgs a;
    a.y = Tensor(half.data(), ht, {c.b, c.l, c.e});
    a.y.stride = {c.l * ld, ld, 1};
    a.u = Tensor(d.u.data(), DType::f32, {c.b, c.l, c.e}), a.dt = Tensor(d.dt.data(), DType::f32, {c.b, c.l, c.e});
    a.z = Tensor(d.z.data(), DType::f32, {c.b, c.l, c.e});
    a.B = Tensor(d.B.data(), DType::f32, {c.b, c.l, c.n}), a.C = Tensor(d.C.data(), DType::f32, {c.b, c.l, c.n});
    a.A = Tensor(d.A.data(), DType::f32, {c.e, c.n}), a.D = vec_tensor(d.D), a.dt_bias = vec_tensor(d.dt_bias);
    a.state_in = Tensor(d.state0.data(), DType::f32, {c.b, c.e, c.n});
    Context ctx(2);
    selective_scan_forward(a, ctx);
    convert_from_f32(want.data(), ht, full.y.data(), full.y.size());
    std::vector<uint16_t> got;
    for (int64_t r = 0; r < c.b * c.l; ++r)
      for (int64_t j = 0; j < ld; ++j) {
        if (j < c.e) got.push_back(half[size_t(r * ld + j)]);
        else EXPECT_EQ(half[size_t(r * ld + j)], 0xffff) << "gap written";
      }
    EXPECT_EQ(got, want) << dtype_name(ht);
  }
}

// A bf16 or f16 u beside f32 dt, B, C and z (through a row-strided view, as training holds it) gives the bits of
// the f32 op on u widened to f32 (each half value is exact in f32): y, the final state and chunk_states.
TEST(SelectiveScan, HalfUIsTheF32ScanOfTheWidenedU) {
  for (const ScanCase c : {ScanCase{2, 37, 20, 16, true, true, true, true, true},
                           ScanCase{1, 50, 19, 5, false, true, false, true, false},
                           ScanCase{3, 16, 33, 3, true, false, true, false, true, true, false}})
    for (DType ht : {DType::bf16, DType::f16}) {
      SCOPED_TRACE(testing::Message() << dtype_name(ht) << " b=" << c.b << " l=" << c.l << " e=" << c.e
                                      << " n=" << c.n << " B_lti=" << c.B_lti);
      ScanData d(c);
      const int64_t K = scan_state_count(c.l);
      test::HalfStrided half_u(d.u, ht, c.b, c.l, c.e, c.e + 5);  // d.u: the half values widened, the f32 op's u
      const Tensor uh = half_u.seq();
      // y, the final state and chunk_states of the op with the given u.
      const auto run = [&](Tensor u) {
        std::vector<float> y(size_t(c.b * c.l * c.e), kNaN), st(size_t(c.b * c.e * c.n), kNaN),
            states(size_t(c.b * K * c.n * c.e), kNaN);
        ScanArgs a;
        a.y = Tensor(y.data(), DType::f32, {c.b, c.l, c.e}), a.state_out = Tensor(st.data(), DType::f32, {c.b, c.e, c.n});
        a.chunk_states = Tensor(states.data(), DType::f32, {c.b, K, c.n, c.e});
        a.u = u, a.dt = Tensor(d.dt.data(), DType::f32, {c.b, c.l, c.e});
        if (c.z) a.z = Tensor(d.z.data(), DType::f32, {c.b, c.l, c.e});
        a.B = c.B_lti ? Tensor(d.B.data(), DType::f32, {c.e, c.n}) : Tensor(d.B.data(), DType::f32, {c.b, c.l, c.n});
        a.C = Tensor(d.C.data(), DType::f32, {c.b, c.l, c.n});
        a.A = Tensor(d.A.data(), DType::f32, {c.e, c.n}), a.D = vec_tensor(d.D), a.dt_bias = vec_tensor(d.dt_bias);
        if (c.state_in) a.state_in = Tensor(d.state0.data(), DType::f32, {c.b, c.e, c.n});
        a.dt_softplus = c.softplus;
        Context ctx(2);
        selective_scan_forward(a, ctx);
        y.insert(y.end(), st.begin(), st.end());
        y.insert(y.end(), states.begin(), states.end());
        return y;
      };
      const std::vector<float> want = run(Tensor(d.u.data(), DType::f32, {c.b, c.l, c.e})), got = run(uh);
      EXPECT_TRUE(bitwise_equal(got, want)) << "y, state_out or chunk_states differ";
    }
}

TEST(SelectiveScan, ChunkedAndStepwiseEqualOneCall) {
  for (const ScanCase c : {ScanCase{2, 37, 37, 16, true, true, true, true, true},
                           ScanCase{1, 20, 19, 5, false, true, false, true, false}}) {
    ScanData d(c);
    const SeqResult whole = run_scan(d, 2, {c.l});
    for (auto sizes : {std::initializer_list<int64_t>{1}, {16}, {5, 2, 9}}) {
      const SeqResult parts = run_scan(d, 2, sizes);
      EXPECT_CLOSE(parts.y.data(), whole.y.data(), whole.y.size(), kTolChunked);
      EXPECT_CLOSE(parts.state.data(), whole.state.data(), whole.state.size(), kTolChunked);
    }
  }
}

// The ablations' scans: B and/or C time-invariant (e, n), Δ time-invariant (dt zero, Δ from dt_bias).
TEST(SelectiveScan, TimeInvariantPartsMatchReference) {
  const ScanCase shapes[] = {
      {1, 1, 16, 16, true, true, true, true, true},  {2, 7, 37, 16, true, true, true, true, false},
      {1, 13, 20, 3, false, true, true, true, true}, {2, 70, 33, 5, true, false, true, false, false},
  };
  for (ScanCase c : shapes)
    for (int variant = 1; variant < 8; ++variant) {
      c.B_lti = variant & 1, c.C_lti = variant & 2, c.dt_zero = variant & 4;
      if (c.dt_zero) c.dt_bias = true;
      SCOPED_TRACE(testing::Message() << "b=" << c.b << " l=" << c.l << " e=" << c.e << " n=" << c.n
                                      << " B_lti=" << c.B_lti << " C_lti=" << c.C_lti << " dt_zero=" << c.dt_zero);
      ScanData d(c);
      const SeqResult got = expect_matches_reference(d);
      const SeqResult parts = run_scan(d, 2, {5, 1, 9});
      EXPECT_CLOSE(parts.y.data(), got.y.data(), got.y.size(), kTolChunked);
      EXPECT_CLOSE(parts.state.data(), got.state.data(), got.state.size(), kTolChunked);
    }
}


}  // namespace
}  // namespace mambacpp
