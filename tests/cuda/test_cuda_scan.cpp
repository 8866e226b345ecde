// The CUDA selective scan (ops/cuda/cuda_ops.h) against the float64 reference loop (support/reference_ops.h),
// over a table of shapes that includes the awkward ones: l = 1, l not a multiple of the kernel's chunk, odd n,
// n = 256, e not a multiple of 32, b > 1, each optional argument present and absent, and f32, bf16 and f16
// inputs. The reference is given exactly the values the kernel sees (inputs rounded to their dtype), so what
// remains is the kernel's own error: ex2.approx, the softplus polynomial, f32 accumulation and the rounding of
// y to its dtype. Outputs are poisoned with NaN before every run. A time-invariant B and/or C ((e, n) per
// channel, the selection ablations) is checked against the CPU op over its own table, twice for the same bits; a
// bf16 or f16 u beside f32 dt, B, C, z bit for bit against the f32 u it widens to. Every test skips where no GPU
// is present.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "core/context.h"
#include "core/cuda/cuda_state.h"
#include "core/dtype.h"
#include "core/error.h"
#include "core/tensor.h"
#include "cuda/cuda_test_util.h"
#include "ops/cuda/cuda_ops.h"
#include "ops/ops.h"
#include "support/reference_ops.h"
#include "support/test_util.h"

namespace mambacpp::test {
namespace {

// Relative L2 tolerances. f32 results carry only ex2.approx (relative error ~2⁻²² per exponential, compounded
// along the state's memory), the softplus polynomial (2e-7) and f32 rounding: about 1e-7 to 7e-7 measured on an
// H100 over this table. bf16 and f16 outputs add their own rounding, 2⁻⁹ and 2⁻¹¹ relative (1.6e-3 to 1.9e-3
// and 2e-4 measured).
constexpr double kTolF32 = 1e-5;
constexpr double kTolBf16Out = 3e-3;
constexpr double kTolF16Out = 5e-4;

struct Case {
  const char* name;
  int64_t b, l, e, n;
  DType dtype;       // u, dt, B, C, z
  bool y_f32;        // y in f32 rather than in dtype
  bool z, D, dt_bias, state_in, state_out, softplus;
};

// Runs one case against the reference: y and the final state within tolerance, nothing left unwritten.
void check_case(const Case& c, uint64_t seed) {
  SCOPED_TRACE(c.name);
  const int64_t b = c.b, l = c.l, e = c.e, n = c.n;
  const int64_t r = 5, width = r + 2 * n;  // B and C are columns [r, r + n) and [r + n, r + 2n) of x_proj's output
  std::vector<float> u = test::random_vector(size_t(b * l * e), seed + 1);
  std::vector<float> dt = c.softplus ? test::random_vector(size_t(b * l * e), seed + 2, -3.0f, 1.0f)
                                     : test::random_vector(size_t(b * l * e), seed + 2, 0.0f, 0.5f);
  std::vector<float> xp = test::random_vector(size_t(b * l * width), seed + 3);
  std::vector<float> z = test::random_vector(size_t(b * l * e), seed + 4, -2.0f, 2.0f);
  std::vector<float> A = test::random_vector(size_t(e * n), seed + 5, 0.1f, 2.8f);
  for (float& a : A) a = -std::exp(a);  // A = −exp(A_log), in [−16, −1.1]
  std::vector<float> D = test::random_vector(size_t(e), seed + 6);
  std::vector<float> bias = c.softplus ? test::random_vector(size_t(e), seed + 7, -4.0f, -1.0f)
                                       : test::random_vector(size_t(e), seed + 7, 0.0f, 0.1f);
  std::vector<float> s_in = test::random_vector(size_t(b * e * n), seed + 8);
  for (auto* v : {&u, &dt, &xp, &z}) round_to(c.dtype, *v);

  Dev du = device_tensor(c.dtype, {b, l, e}), ddt = device_tensor(c.dtype, {b, l, e});
  Dev dxp = device_tensor(c.dtype, {b, l, width}), dz = device_tensor(c.dtype, {b, l, e});
  Dev dA = device_tensor(DType::f32, {e, n}), dD = device_tensor(DType::f32, {e});
  Dev dbias = device_tensor(DType::f32, {e}), dsin = device_tensor(DType::f32, {b, e, n});
  Dev dsout = device_tensor(DType::f32, {b, e, n});
  Dev dy = device_tensor(c.y_f32 ? DType::f32 : c.dtype, {b, l, e});
  upload(du, u), upload(ddt, dt), upload(dxp, xp), upload(dz, z), upload(dA, A), upload(dD, D);
  upload(dbias, bias), upload(dsin, s_in);
  poison(dy), poison(dsout);

  Tensor Bv(static_cast<char*>(dxp.buf.data()) + r * dtype_size(c.dtype), c.dtype, {b, l, n}, Device::cuda);
  Bv.stride = {l * width, width, 1};
  Tensor Cv = Bv;
  Cv.data = static_cast<char*>(Bv.data) + n * dtype_size(c.dtype);

  ScanArgs args;
  args.y = dy.t, args.u = du.t, args.dt = ddt.t, args.A = dA.t, args.B = Bv, args.C = Cv;
  if (c.z) args.z = dz.t;
  if (c.D) args.D = dD.t;
  if (c.dt_bias) args.dt_bias = dbias.t;
  if (c.state_in) args.state_in = dsin.t;
  if (c.state_out) args.state_out = dsout.t;
  args.dt_softplus = c.softplus;
  Context ctx(1);
  selective_scan_forward_cuda(args, ctx);
  cuda_state(ctx).synchronize();

  std::vector<float> Bh(size_t(b * l * n)), Ch(size_t(b * l * n));
  for (int64_t row = 0; row < b * l; ++row)
    for (int64_t s = 0; s < n; ++s) {
      Bh[size_t(row * n + s)] = xp[size_t(row * width + r + s)];
      Ch[size_t(row * n + s)] = xp[size_t(row * width + r + n + s)];
    }
  ref::ScanInputs in;
  in.b = b, in.l = l, in.e = e, in.n = n;
  in.u = u, in.dt = dt, in.B = Bh, in.C = Ch, in.A = A;
  if (c.z) in.z = z;
  if (c.D) in.D = D;
  if (c.dt_bias) in.dt_bias = bias;
  if (c.state_in) in.state_in = s_in;
  in.dt_softplus = c.softplus;
  const ref::ScanResult want = ref::selective_scan(in);

  const double tol_y = c.y_f32 || c.dtype == DType::f32 ? kTolF32
                       : c.dtype == DType::bf16         ? kTolBf16Out
                                                        : kTolF16Out;
  const std::vector<float> y = download(dy, size_t(b * l * e));
  const test::Closeness cy = test::compare(y.data(), want.y.data(), y.size());
  std::printf("[ scan     ] %-34s y rel L2 %.2e (tolerance %.0e)", c.name, cy.rel_l2, tol_y);
  EXPECT_CLOSE(y.data(), want.y.data(), y.size(), tol_y) << "y";
  if (c.state_out) {
    const std::vector<float> s = download(dsout, size_t(b * e * n));
    const test::Closeness cs = test::compare(s.data(), want.state.data(), s.size());
    std::printf(", state rel L2 %.2e", cs.rel_l2);
    EXPECT_CLOSE(s.data(), want.state.data(), s.size(), kTolF32) << "state_out";
  }
  std::printf("\n");
}

class CudaScan : public ::testing::Test {
 protected:
  void SetUp() override { SKIP_WITHOUT_GPU(); }
};

TEST_F(CudaScan, MatchesReferenceOverShapeTable) {
  using enum DType;
  const Case cases[] = {
      // name                               b    l     e    n   dtype y_f32  z     D      bias   s_in   s_out  softplus
      {"single step, all arguments", 2, 1, 64, 16, f32, false, true, true, true, true, true, true},
      {"odd l and e, n = 3", 1, 77, 37, 3, f32, false, true, true, false, true, true, true},
      {"n = 1, no softplus, bare", 3, 100, 100, 1, f32, false, false, false, true, false, false, false},
      {"n = 5", 1, 50, 40, 5, f32, false, true, false, true, false, true, true},
      {"n = 17", 2, 70, 48, 17, f32, false, true, true, true, true, true, true},
      {"n = 64, e = 33", 2, 129, 33, 64, f32, false, false, true, true, true, true, true},
      {"n = 100", 1, 45, 19, 100, f32, false, true, true, true, false, true, true},
      {"n = 256", 1, 40, 20, 256, f32, false, true, true, true, true, true, true},
      {"n = 16, many chunks", 2, 1000, 96, 16, f32, false, true, true, true, true, true, true},
      {"long sequence", 1, 4099, 40, 16, f32, false, false, true, true, false, true, true},
      {"bf16, n = 16", 2, 200, 96, 16, bf16, false, true, true, true, true, true, true},
      {"bf16 in, f32 out", 2, 200, 96, 16, bf16, true, true, true, true, true, true, true},
      {"bf16, no z, e = 100", 3, 33, 100, 16, bf16, false, false, true, true, false, false, true},
      {"bf16, n = 256", 1, 20, 8, 256, bf16, false, true, true, true, true, true, true},
      {"f16, n = 16", 2, 150, 64, 16, f16, false, true, true, true, true, true, true},
      {"f16 in, f32 out, n = 7", 1, 90, 70, 7, f16, true, true, false, true, true, true, true},
  };
  uint64_t seed = 100;
  for (const Case& c : cases) check_case(c, seed += 10);
}

// Running [0, l1) then [l1, l) with the state passed between the calls gives the same bits as one call over
// [0, l); the second call updates its state in place (state_in and state_out the same tensor). The halves are
// strided views into the full tensors.
TEST_F(CudaScan, ChunkedWithStatePassingEqualsUnchunked) {
  const int64_t b = 2, l = 100, l1 = 37, e = 40, n = 16;
  Dev du = device_tensor(DType::f32, {b, l, e}), ddt = device_tensor(DType::f32, {b, l, e});
  Dev dz = device_tensor(DType::f32, {b, l, e}), dB = device_tensor(DType::f32, {b, l, n});
  Dev dC = device_tensor(DType::f32, {b, l, n}), dA = device_tensor(DType::f32, {e, n});
  Dev dD = device_tensor(DType::f32, {e}), dbias = device_tensor(DType::f32, {e});
  Dev y_full = device_tensor(DType::f32, {b, l, e}), y_split = device_tensor(DType::f32, {b, l, e});
  Dev s_full = device_tensor(DType::f32, {b, e, n}), s_split = device_tensor(DType::f32, {b, e, n});
  upload(du, test::random_vector(size_t(b * l * e), 1));
  upload(ddt, test::random_vector(size_t(b * l * e), 2, -3.0f, 1.0f));
  upload(dz, test::random_vector(size_t(b * l * e), 3));
  upload(dB, test::random_vector(size_t(b * l * n), 4));
  upload(dC, test::random_vector(size_t(b * l * n), 5));
  upload(dA, test::random_vector(size_t(e * n), 6, -8.0f, -0.5f));
  upload(dD, test::random_vector(size_t(e), 7));
  upload(dbias, test::random_vector(size_t(e), 8, -4.0f, -1.0f));
  poison(y_full), poison(y_split), poison(s_full), poison(s_split);

  ScanArgs full;
  full.y = y_full.t, full.state_out = s_full.t, full.u = du.t, full.dt = ddt.t, full.A = dA.t, full.B = dB.t;
  full.C = dC.t, full.D = dD.t, full.z = dz.t, full.dt_bias = dbias.t;
  Context ctx(1);
  selective_scan_forward_cuda(full, ctx);

  // Rows [t_begin, t_begin + len) of a (b, l, k) tensor.
  const auto rows = [&](const Tensor& t, int64_t t_begin, int64_t len) {
    Tensor v = t;
    v.data = static_cast<char*>(t.data) + t_begin * t.stride[1] * int64_t(dtype_size(t.dtype));
    v.shape[1] = len;
    return v;
  };
  ScanArgs part = full;
  for (auto [first, len] : {std::pair{int64_t(0), l1}, std::pair{l1, l - l1}}) {
    part.y = rows(y_split.t, first, len), part.u = rows(du.t, first, len), part.dt = rows(ddt.t, first, len);
    part.z = rows(dz.t, first, len), part.B = rows(dB.t, first, len), part.C = rows(dC.t, first, len);
    part.state_in = first == 0 ? Tensor{} : s_split.t;
    part.state_out = s_split.t;
    selective_scan_forward_cuda(part, ctx);
  }
  cuda_state(ctx).synchronize();

  const std::vector<float> a = download(y_full, size_t(b * l * e)), c = download(y_split, size_t(b * l * e));
  const std::vector<float> sa = download(s_full, size_t(b * e * n)), sc = download(s_split, size_t(b * e * n));
  EXPECT_FALSE(test::compare(a.data(), a.data(), a.size()).any_nan) << "y left unwritten";
  EXPECT_EQ(0, std::memcmp(a.data(), c.data(), a.size() * sizeof(float))) << "y differs";
  EXPECT_EQ(0, std::memcmp(sa.data(), sc.data(), sa.size() * sizeof(float))) << "final state differs";
}

// A time-invariant B and/or C: (e, n) f32 per channel in place of the (b, l, n) sequence.
struct LtiCase {
  const char* name;
  int64_t b, l, e, n;
  bool z, D, dt_bias, state_in;
  bool zero_dt;  // dt a view of zeros with zero strides, Δ = softplus(dt_bias) per channel (the model's `lti`)
};

// The CUDA op against the CPU op for one case with B (B_lti) and/or C (C_lti) time-invariant: y and the final
// state within kTolF32, outputs poisoned first; a second run gives the same bits.
void check_lti_case(const LtiCase& c, bool B_lti, bool C_lti, uint64_t seed) {
  const std::string name = std::string(c.name) + (B_lti && C_lti ? ", B and C" : B_lti ? ", B" : ", C");
  SCOPED_TRACE(name);
  const int64_t b = c.b, l = c.l, e = c.e, n = c.n;
  const auto sz = [](int64_t x) { return size_t(x); };
  std::vector<float> u = test::random_vector(sz(b * l * e), seed + 1);
  std::vector<float> dt = test::random_vector(sz(b * l * e), seed + 2, -3.0f, 1.0f);
  std::vector<float> zeros(sz(e), 0.0f);
  std::vector<float> Bs = test::random_vector(sz(b * l * n), seed + 3);
  std::vector<float> Cs = test::random_vector(sz(b * l * n), seed + 4);
  std::vector<float> Bt = test::random_vector(sz(e * n), seed + 5), Ct = test::random_vector(sz(e * n), seed + 6);
  std::vector<float> z = test::random_vector(sz(b * l * e), seed + 7, -2.0f, 2.0f);
  std::vector<float> A = test::random_vector(sz(e * n), seed + 8, 0.1f, 2.8f);
  for (float& a : A) a = -std::exp(a);
  std::vector<float> D = test::random_vector(sz(e), seed + 9);
  std::vector<float> bias = test::random_vector(sz(e), seed + 10, -4.0f, -1.0f);
  std::vector<float> s_in = test::random_vector(sz(b * e * n), seed + 11);
  std::vector<float> y_cpu(sz(b * l * e)), s_cpu(sz(b * e * n));

  const auto host = [](std::vector<float>& v, std::initializer_list<int64_t> dims) {
    return Tensor(v.data(), DType::f32, dims, Device::cpu);
  };
  // The arguments over host tensors or device ones (t maps a host vector to its tensor on that side).
  const auto make_args = [&](auto&& t, Tensor y, Tensor s_out) {
    ScanArgs a;
    a.y = y, a.state_out = s_out, a.u = t(u, {b, l, e}), a.A = t(A, {e, n});
    if (c.zero_dt) {
      a.dt = t(zeros, {e});
      a.dt.ndim = 3, a.dt.shape = {b, l, e}, a.dt.stride = {0, 0, 1};
    } else {
      a.dt = t(dt, {b, l, e});
    }
    a.B = B_lti ? t(Bt, {e, n}) : t(Bs, {b, l, n});
    a.C = C_lti ? t(Ct, {e, n}) : t(Cs, {b, l, n});
    if (c.z) a.z = t(z, {b, l, e});
    if (c.D) a.D = t(D, {e});
    if (c.dt_bias || c.zero_dt) a.dt_bias = t(bias, {e});
    if (c.state_in) a.state_in = t(s_in, {b, e, n});
    return a;
  };
  Context ctx(1);
  selective_scan_forward(make_args(host, host(y_cpu, {b, l, e}), host(s_cpu, {b, e, n})), ctx);

  std::vector<Dev> held;  // the device copies of the inputs
  const auto dev = [&](std::vector<float>& v, std::initializer_list<int64_t> dims) {
    held.push_back(device_tensor(DType::f32, dims));
    upload(held.back(), v);
    return held.back().t;
  };
  held.reserve(16);
  Dev dy = device_tensor(DType::f32, {b, l, e}), ds = device_tensor(DType::f32, {b, e, n});
  const ScanArgs args = make_args(dev, dy.t, ds.t);
  std::vector<float> first_y, first_s;
  for (int run = 0; run < 2; ++run) {
    poison(dy), poison(ds);
    selective_scan_forward_cuda(args, ctx);
    cuda_state(ctx).synchronize();
    const std::vector<float> y = download(dy, y_cpu.size()), st = download(ds, s_cpu.size());
    if (run == 0) {
      const test::Closeness cy = test::compare(y.data(), y_cpu.data(), y.size());
      const test::Closeness cs = test::compare(st.data(), s_cpu.data(), st.size());
      std::printf("[ scan lti ] %-44s y rel L2 %.2e, state rel L2 %.2e\n", name.c_str(), cy.rel_l2, cs.rel_l2);
      EXPECT_CLOSE(y.data(), y_cpu.data(), y.size(), kTolF32) << "y";
      EXPECT_CLOSE(st.data(), s_cpu.data(), st.size(), kTolF32) << "state_out";
      first_y = y, first_s = st;
    } else {
      EXPECT_EQ(0, std::memcmp(y.data(), first_y.data(), y.size() * sizeof(float))) << "y differs between runs";
      EXPECT_EQ(0, std::memcmp(st.data(), first_s.data(), st.size() * sizeof(float))) << "state differs between runs";
    }
  }
}

TEST_F(CudaScan, TimeInvariantBAndCMatchCpuOp) {
  const LtiCase cases[] = {
      // name                                  b    l     e    n   z      D      bias   s_in   zero_dt
      {"l = 1 (single-step kernel), all", 2, 1, 40, 16, true, true, true, true, false},
      {"l = 1, zero dt, bare", 3, 1, 33, 5, false, false, false, false, true},
      {"odd l and e, n = 3", 1, 77, 37, 3, true, true, false, true, false},
      {"n = 5, b = 3, bare", 3, 50, 40, 5, false, false, false, false, false},
      {"n = 16, e = 100, l = 100, zero dt", 2, 100, 100, 16, true, true, true, false, true},
      {"n = 17, e = 48", 2, 70, 48, 17, true, true, true, true, false},
      {"n = 64, e = 33", 2, 129, 33, 64, false, true, true, true, false},
      {"n = 200, e = 19", 1, 45, 19, 200, true, true, true, false, false},
      {"task shape: e = 128, n = 16, l = 300", 4, 300, 128, 16, true, true, true, true, true},
  };
  uint64_t seed = 3000;
  for (const LtiCase& c : cases)
    for (const auto& [B_lti, C_lti] : {std::pair{true, false}, std::pair{false, true}, std::pair{true, true}})
      check_lti_case(c, B_lti, C_lti, seed += 20);
}

// chunk_states (the state before every 16th step, for the backward pass) against the CPU op's, given the same
// input values (rounded to the dtype): within kTolF32, poisoned first, nothing left unwritten; and y and the final
// state have the same bits as without chunk_states (the same kernel, except at l = 1, where the single-step
// kernel runs without them and the chunked one with them: there y is compared with the CPU op).
struct StatesCase {
  const char* name;
  int64_t b, l, e, n;
  DType dtype;
  bool z, state_in, B_lti, C_lti;
};

void check_chunk_states(const StatesCase& c, uint64_t seed) {
  SCOPED_TRACE(c.name);
  const int64_t b = c.b, l = c.l, e = c.e, n = c.n, K = scan_state_count(l);
  const auto sz = [](int64_t x) { return size_t(x); };
  std::vector<float> u = test::random_vector(sz(b * l * e), seed + 1);
  std::vector<float> dt = test::random_vector(sz(b * l * e), seed + 2, -3.0f, 1.0f);
  std::vector<float> Bs = test::random_vector(sz(c.B_lti ? e * n : b * l * n), seed + 3);
  std::vector<float> Cs = test::random_vector(sz(c.C_lti ? e * n : b * l * n), seed + 4);
  std::vector<float> z = test::random_vector(sz(b * l * e), seed + 5, -2.0f, 2.0f);
  std::vector<float> A = test::random_vector(sz(e * n), seed + 6, 0.1f, 2.8f);
  for (float& a : A) a = -std::exp(a);
  std::vector<float> D = test::random_vector(sz(e), seed + 7);
  std::vector<float> bias = test::random_vector(sz(e), seed + 8, -4.0f, -1.0f);
  std::vector<float> s_in = test::random_vector(sz(b * e * n), seed + 9);
  for (auto* v : {&u, &dt, &z}) round_to(c.dtype, *v);
  if (!c.B_lti) round_to(c.dtype, Bs);
  if (!c.C_lti) round_to(c.dtype, Cs);
  std::vector<float> y_cpu(sz(b * l * e)), st_cpu(sz(b * K * n * e));

  // The arguments over host or device tensors: t(vector, dims, sequence?) gives the tensor on that side.
  const auto make_args = [&](auto&& t) {
    ScanArgs a;
    a.u = t(u, {b, l, e}, true), a.dt = t(dt, {b, l, e}, true), a.A = t(A, {e, n}, false);
    a.B = c.B_lti ? t(Bs, {e, n}, false) : t(Bs, {b, l, n}, true);
    a.C = c.C_lti ? t(Cs, {e, n}, false) : t(Cs, {b, l, n}, true);
    if (c.z) a.z = t(z, {b, l, e}, true);
    a.D = t(D, {e}, false), a.dt_bias = t(bias, {e}, false);
    if (c.state_in) a.state_in = t(s_in, {b, e, n}, false);
    return a;
  };
  ScanArgs host = make_args([](std::vector<float>& v, std::initializer_list<int64_t> dims, bool) {
    return Tensor(v.data(), DType::f32, dims, Device::cpu);
  });
  host.y = Tensor(y_cpu.data(), DType::f32, {b, l, e}), host.chunk_states = Tensor(st_cpu.data(), DType::f32, {b, K, n, e});
  Context ctx(1);
  selective_scan_forward(host, ctx);

  std::vector<Dev> held;
  held.reserve(16);
  ScanArgs dev = make_args([&](std::vector<float>& v, std::initializer_list<int64_t> dims, bool seq) {
    held.push_back(device_tensor(seq ? c.dtype : DType::f32, dims));
    upload(held.back(), v);
    return held.back().t;
  });
  Dev y1 = device_tensor(c.dtype, {b, l, e}), y2 = device_tensor(c.dtype, {b, l, e});
  Dev s1 = device_tensor(DType::f32, {b, e, n}), s2 = device_tensor(DType::f32, {b, e, n});
  Dev states = device_tensor(DType::f32, {b, K, n, e});
  poison(y1), poison(y2), poison(s1), poison(s2), poison(states);
  dev.y = y1.t, dev.state_out = s1.t, dev.chunk_states = states.t;
  selective_scan_forward_cuda(dev, ctx);
  dev.y = y2.t, dev.state_out = s2.t, dev.chunk_states = Tensor{};
  selective_scan_forward_cuda(dev, ctx);
  cuda_state(ctx).synchronize();

  const std::vector<float> got = download(states, st_cpu.size());
  const test::Closeness cs = test::compare(got.data(), st_cpu.data(), got.size());
  std::printf("[ scan states ] %-40s chunk_states rel L2 %.2e\n", c.name, cs.rel_l2);
  EXPECT_CLOSE(got.data(), st_cpu.data(), got.size(), kTolF32) << "chunk_states";
  const std::vector<float> a = download(y1, y_cpu.size()), bb = download(y2, y_cpu.size());
  const std::vector<float> sa = download(s1, sz(b * e * n)), sb = download(s2, sz(b * e * n));
  if (l > 1) {
    EXPECT_EQ(0, std::memcmp(a.data(), bb.data(), a.size() * sizeof(float))) << "y differs with chunk_states";
    EXPECT_EQ(0, std::memcmp(sa.data(), sb.data(), sa.size() * sizeof(float))) << "state differs with chunk_states";
  } else {
    const double tol = c.dtype == DType::f32 ? kTolF32 : c.dtype == DType::bf16 ? kTolBf16Out : kTolF16Out;
    EXPECT_CLOSE(a.data(), y_cpu.data(), a.size(), tol) << "y (l = 1, chunked kernel)";
  }
}

TEST_F(CudaScan, ChunkStatesMatchCpuOp) {
  using enum DType;
  const StatesCase cases[] = {
      // name                              b    l     e    n    dtype z      s_in   B_lti  C_lti
      {"l = 1", 2, 1, 40, 16, f32, true, true, false, false},
      {"l = 16, n = 3", 1, 16, 37, 3, f32, false, false, false, false},
      {"l = 17, n = 4 (8-step chunks)", 2, 17, 50, 4, f32, true, true, false, false},
      {"odd l and e, n = 5", 3, 77, 37, 5, f32, true, true, false, false},
      {"n = 16, many chunks", 2, 1000, 96, 16, f32, true, true, false, false},
      {"n = 16, bf16", 2, 200, 96, 16, bf16, true, true, false, false},
      {"n = 16, f16, no z", 1, 150, 64, 16, f16, false, false, false, false},
      {"n = 17, e = 48", 2, 70, 48, 17, f32, true, true, false, false},
      {"n = 64, e = 33", 2, 129, 33, 64, f32, false, true, false, false},
      {"n = 100", 1, 45, 19, 100, f32, true, false, false, false},
      {"n = 256", 1, 40, 20, 256, f32, true, true, false, false},
      {"B time-invariant", 2, 100, 64, 16, f32, true, true, true, false},
      {"B and C time-invariant", 1, 70, 48, 16, f32, true, false, true, true},
  };
  uint64_t seed = 7000;
  for (const StatesCase& c : cases) check_chunk_states(c, seed += 20);
}

// With f32 inputs, a bf16 or f16 y holds the f32 y rounded to nearest even, bit for bit: the chunked kernel
// (l > 1), the single-step one (l = 1), and with a time-invariant B.
TEST_F(CudaScan, HalfOutputOfF32InputsIsTheF32OutputRounded) {
  for (const int64_t l : {int64_t(1), int64_t(100)})
    for (const bool B_lti : {false, true}) {
      SCOPED_TRACE(testing::Message() << "l = " << l << (B_lti ? ", B time-invariant" : ""));
      const int64_t b = 2, e = 72, n = 16;
      Dev u = device_tensor(DType::f32, {b, l, e}), dt = device_tensor(DType::f32, {b, l, e});
      Dev z = device_tensor(DType::f32, {b, l, e}), A = device_tensor(DType::f32, {e, n});
      Dev Bs = device_tensor(DType::f32, {b, l, n}), Cs = device_tensor(DType::f32, {b, l, n});
      Dev Bt = device_tensor(DType::f32, {e, n}), D = device_tensor(DType::f32, {e});
      Dev bias = device_tensor(DType::f32, {e}), y32 = device_tensor(DType::f32, {b, l, e});
      upload(u, test::random_vector(size_t(b * l * e), 1)), upload(dt, test::random_vector(size_t(b * l * e), 2, -3.0f, 1.0f));
      upload(z, test::random_vector(size_t(b * l * e), 3)), upload(A, test::random_vector(size_t(e * n), 4, -8.0f, -0.5f));
      upload(Bs, test::random_vector(size_t(b * l * n), 5)), upload(Cs, test::random_vector(size_t(b * l * n), 6));
      upload(Bt, test::random_vector(size_t(e * n), 7)), upload(D, test::random_vector(size_t(e), 8));
      upload(bias, test::random_vector(size_t(e), 9, -4.0f, -1.0f));
      ScanArgs a;
      a.u = u.t, a.dt = dt.t, a.z = z.t, a.A = A.t, a.B = B_lti ? Bt.t : Bs.t, a.C = Cs.t, a.D = D.t, a.dt_bias = bias.t;
      a.y = y32.t;
      Context ctx(1);
      poison(y32);
      selective_scan_forward_cuda(a, ctx);
      cuda_state(ctx).synchronize();
      const std::vector<float> full = download(y32, size_t(b * l * e));
      for (DType ht : {DType::bf16, DType::f16}) {
        Dev yh = device_tensor(ht, {b, l, e});
        poison(yh);
        a.y = yh.t;
        selective_scan_forward_cuda(a, ctx);
        cuda_state(ctx).synchronize();
        std::vector<uint16_t> got(full.size()), want(full.size());
        ASSERT_CUDA(cudaMemcpy(got.data(), yh.buf.data(), got.size() * 2, cudaMemcpyDeviceToHost));
        convert_from_f32(want.data(), ht, full.data(), full.size());
        EXPECT_EQ(got, want) << dtype_name(ht);
      }
    }
}

// With f32 dt, B, C and z, a bf16 or f16 u gives the bits of the f32 scan on u widened to f32 (each half value is
// exact in f32): y, the final state and chunk_states, from the chunked kernel over a few shapes, the single-step
// one (l = 1) and with a time-invariant B; and the CPU op's (on the same half u) within kTolF32.
TEST_F(CudaScan, HalfUIsTheF32ScanOfTheWidenedU) {
  struct HalfCase {
    const char* name;
    int64_t b, l, e, n;
    bool z, B_lti;
  };
  const HalfCase cases[] = {{"l = 1 (single-step kernel)", 2, 1, 72, 16, true, false},
                            {"odd l and e, n = 3", 1, 77, 37, 3, true, false},
                            {"n = 16, b = 3, no z", 3, 100, 100, 16, false, false},
                            {"n = 64, e = 33", 2, 129, 33, 64, true, false},
                            {"n = 100", 1, 45, 19, 100, true, false},
                            {"n = 17, B time-invariant", 2, 70, 48, 17, true, true}};
  uint64_t seed = 9000;
  for (const HalfCase& c : cases)
    for (DType ht : {DType::bf16, DType::f16}) {
      SCOPED_TRACE(testing::Message() << c.name << ", " << dtype_name(ht));
      const int64_t b = c.b, l = c.l, e = c.e, n = c.n, K = scan_state_count(l);
      const auto sz = [](int64_t x) { return size_t(x); };
      std::vector<float> u = test::random_vector(sz(b * l * e), seed += 10);
      round_to(ht, u);
      std::vector<float> dt = test::random_vector(sz(b * l * e), seed + 1, -3.0f, 1.0f);
      std::vector<float> Bs = test::random_vector(sz(c.B_lti ? e * n : b * l * n), seed + 2);
      std::vector<float> Cs = test::random_vector(sz(b * l * n), seed + 3), z = test::random_vector(sz(b * l * e), seed + 4);
      std::vector<float> A = test::random_vector(sz(e * n), seed + 5, 0.1f, 2.8f);
      for (float& a : A) a = -std::exp(a);
      std::vector<float> D = test::random_vector(sz(e), seed + 6), bias = test::random_vector(sz(e), seed + 7, -4.0f, -1.0f);
      std::vector<float> s_in = test::random_vector(sz(b * e * n), seed + 8);
      std::vector<Dev> held;
      held.reserve(16);
      const auto dev = [&](std::vector<float>& v, DType dt_, std::initializer_list<int64_t> dims) {
        held.push_back(device_tensor(dt_, dims));
        upload(held.back(), v);
        return held.back().t;
      };
      ScanArgs a;
      a.dt = dev(dt, DType::f32, {b, l, e}), a.A = dev(A, DType::f32, {e, n});
      a.B = c.B_lti ? dev(Bs, DType::f32, {e, n}) : dev(Bs, DType::f32, {b, l, n}), a.C = dev(Cs, DType::f32, {b, l, n});
      if (c.z) a.z = dev(z, DType::f32, {b, l, e});
      a.D = dev(D, DType::f32, {e}), a.dt_bias = dev(bias, DType::f32, {e}), a.state_in = dev(s_in, DType::f32, {b, e, n});
      const Tensor u32 = dev(u, DType::f32, {b, l, e}), u16 = dev(u, ht, {b, l, e});
      Context ctx(1);
      // y, the final state and (l > 1) chunk_states with the given u, outputs poisoned first.
      const auto run = [&](const Tensor& uu) {
        Dev y = device_tensor(DType::f32, {b, l, e}), st = device_tensor(DType::f32, {b, e, n});
        Dev states = device_tensor(DType::f32, {b, K, n, e});
        poison(y), poison(st), poison(states);
        ScanArgs r = a;
        r.u = uu, r.y = y.t, r.state_out = st.t;
        if (l > 1) r.chunk_states = states.t;
        selective_scan_forward_cuda(r, ctx);
        cuda_state(ctx).synchronize();
        std::vector<float> out = download(y, sz(b * l * e)), s = download(st, sz(b * e * n));
        out.insert(out.end(), s.begin(), s.end());
        if (l > 1) s = download(states, sz(b * K * n * e)), out.insert(out.end(), s.begin(), s.end());
        return out;
      };
      const std::vector<float> want = run(u32), got = run(u16);
      EXPECT_EQ(0, std::memcmp(got.data(), want.data(), got.size() * sizeof(float))) << "differs from the f32 u";
      // The CPU op on the same half u.
      std::vector<uint16_t> uh(u.size());
      convert_from_f32(uh.data(), ht, u.data(), u.size());
      std::vector<float> y_cpu(sz(b * l * e));
      ScanArgs h;
      h.y = Tensor(y_cpu.data(), DType::f32, {b, l, e}), h.u = Tensor(uh.data(), ht, {b, l, e});
      h.dt = Tensor(dt.data(), DType::f32, {b, l, e}), h.A = Tensor(A.data(), DType::f32, {e, n});
      h.B = c.B_lti ? Tensor(Bs.data(), DType::f32, {e, n}) : Tensor(Bs.data(), DType::f32, {b, l, n});
      h.C = Tensor(Cs.data(), DType::f32, {b, l, n});
      if (c.z) h.z = Tensor(z.data(), DType::f32, {b, l, e});
      h.D = Tensor(D.data(), DType::f32, {e}), h.dt_bias = Tensor(bias.data(), DType::f32, {e});
      h.state_in = Tensor(s_in.data(), DType::f32, {b, e, n});
      selective_scan_forward(h, ctx);
      EXPECT_CLOSE(got.data(), y_cpu.data(), y_cpu.size(), kTolF32) << "y against the CPU op";
    }
}

// Each unsupported call throws an Error that names what is wrong.
TEST_F(CudaScan, UnsupportedCallsThrowNamingTheLimit) {
  const int64_t b = 1, l = 8, e = 32, n = 16;
  Dev du = device_tensor(DType::bf16, {b, l, e}), ddt = device_tensor(DType::bf16, {b, l, e});
  Dev dt32 = device_tensor(DType::f32, {b, l, e}), dB = device_tensor(DType::bf16, {b, l, n});
  Dev dA = device_tensor(DType::f32, {e, n}), dA257 = device_tensor(DType::f32, {e, 257});
  Dev dB257 = device_tensor(DType::bf16, {b, l, 257}), dAbf = device_tensor(DType::bf16, {e, n});
  Dev dy = device_tensor(DType::bf16, {b, l, e}), dy16 = device_tensor(DType::f16, {b, l, e});
  Dev dBt = device_tensor(DType::f32, {e, n}), dBt_odd = device_tensor(DType::f32, {e + 1, n});
  std::vector<uint16_t> host_u(size_t(b * l * e));
  ScanArgs ok;
  ok.y = dy.t, ok.u = du.t, ok.dt = ddt.t, ok.A = dA.t, ok.B = dB.t, ok.C = dB.t;
  std::string why;
  ASSERT_TRUE(selective_scan_cuda_supports(ok, &why)) << why;

  const auto expect_refused = [&](ScanArgs a, const std::string& needle) {
    std::string reason;
    EXPECT_FALSE(selective_scan_cuda_supports(a, &reason)) << needle;
    EXPECT_NE(reason.find(needle), std::string::npos) << "reason: " << reason;
    Context ctx(1);
    try {
      selective_scan_forward_cuda(a, ctx);
      ADD_FAILURE() << "no error for: " << needle;
    } catch (const Error& err) {
      EXPECT_NE(std::string(err.what()).find(needle), std::string::npos) << err.what();
    }
  };
  ScanArgs a = ok;
  a.A = dA257.t, a.B = dB257.t, a.C = dB257.t;
  expect_refused(a, "1..256");
  a = ok, a.dt = dt32.t;
  expect_refused(a, "share one dtype");
  a = ok, a.u = dy16.t;  // a half u of another dtype than dt, B, C
  expect_refused(a, "u is f16 and dt is bf16");
  a = ok, a.y = dy16.t;
  expect_refused(a, "y is f16");
  a = ok, a.A = dAbf.t;
  expect_refused(a, "A must be f32");
  a = ok, a.u = Tensor(host_u.data(), DType::bf16, {b, l, e}, Device::cpu);
  expect_refused(a, "u is on cpu");
  a = ok, a.B.shape[2] = n / 2, a.B.stride[2] = 2;
  a.C = a.B, a.A = Tensor(dA.t.data, DType::f32, {e, n / 2}, Device::cuda);
  expect_refused(a, "contiguous last dimension");
  a = ok, a.B = dBt.t;
  expect_refused(a, "time-invariant B/C (shape [e, n]) needs f32 dt and z, got bf16");
  a = ok, a.C = dBt_odd.t;
  expect_refused(a, "C (time-invariant) must have shape [32, 16]");
}

}  // namespace
}  // namespace mambacpp::test
