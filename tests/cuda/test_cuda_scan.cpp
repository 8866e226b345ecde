// The CUDA selective scan (ops/cuda/cuda_ops.h) against the float64 reference loop (support/reference_ops.h), over a
// table of shapes that includes the awkward ones: l = 1, l not a multiple of the kernel's chunk, odd n, n = 256, e not
// a multiple of 32, b > 1, each optional argument present and absent, f32, bf16 and f16 inputs, and at n = 16 both of
// the kernel's block shapes (b·e below and above 8,192). The reference is given exactly the values the kernel sees
// (inputs rounded to their dtype), so what remains is the kernel's own error: ex2.approx, the softplus polynomial, f32
// accumulation and the rounding of y to its dtype. Outputs are poisoned with NaN before every run. A call split in two
// with the state passed between gives the bits of one call, so do the kernel's vector and element-wise loads, and
// every unsupported call is an Error naming the limit.
// The variants (time-invariant B/C, chunk_states, half outputs and a half u) are checked in
// test_cuda_scan_variants.cpp. Every test skips where no GPU is present.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "core/context.h"
#include "core/cuda/cuda_state.h"
#include "core/dtype.h"
#include "core/error.h"
#include "core/tensor.h"
#include "cuda/cuda_test_util.h"
#include "cuda/scan_test_util.h"
#include "ops/cuda/cuda_ops.h"
#include "ops/ops.h"
#include "support/reference_ops.h"
#include "support/test_util.h"

namespace mambacpp::test {
namespace {

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
      {"n = 16, b·e = 8,192 (4 states a thread)", 2, 40, 4096, 16, f32, false, true, true, true, true, true, true},
      {"long sequence", 1, 4099, 40, 16, f32, false, false, true, true, false, true, true},
      {"bf16, n = 16", 2, 200, 96, 16, bf16, false, true, true, true, true, true, true},
      {"bf16, n = 16, b·e = 8,192", 4, 33, 2048, 16, bf16, false, true, true, true, true, true, true},
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

// The kernel moves u, dt, z and y in vectors where their strides and addresses allow and element by element where
// they do not; both paths give the same bits. Each tensor is placed once at the start of its buffer and once one
// element in (no vector fits there), for both block shapes at n = 16 (4 and 8 channels a vector in bf16, 8 in f32).
TEST_F(CudaScan, VectorAndElementLoadsGiveTheSameBits) {
  for (DType dtype : {DType::bf16, DType::f32})
    for (int64_t e : {int64_t(64), int64_t(4096)}) {
      const int64_t b = 2, l = 45, n = 16, count = b * l * e;
      SCOPED_TRACE(std::string(dtype_name(dtype)) + ", e = " + std::to_string(e));
      Dev dB = device_tensor(dtype, {b, l, n}), dC = device_tensor(dtype, {b, l, n});
      Dev dA = device_tensor(DType::f32, {e, n}), dD = device_tensor(DType::f32, {e});
      Dev dbias = device_tensor(DType::f32, {e});
      upload(dB, test::random_vector(size_t(b * l * n), 4));
      upload(dC, test::random_vector(size_t(b * l * n), 5));
      std::vector<float> A = test::random_vector(size_t(e * n), 6, 0.1f, 2.8f);
      for (float& a : A) a = -std::exp(a);
      upload(dA, A), upload(dD, test::random_vector(size_t(e), 7));
      upload(dbias, test::random_vector(size_t(e), 8, -4.0f, -1.0f));
      std::vector<std::vector<float>> y(2);
      for (int64_t shift : {0, 1}) {
        // u, dt, z and y at element `shift` of buffers one element longer than they are.
        std::vector<Dev> bufs;
        std::vector<Tensor> views;
        for (int k = 0; k < 4; ++k) {
          bufs.push_back(device_tensor(dtype, {count + 1}));
          std::vector<float> v(size_t(count + 1), 0.0f);
          const std::vector<float> data = test::random_vector(size_t(count), uint64_t(10 + k), k == 1 ? -3.0f : -1.0f,
                                                              1.0f);
          std::copy(data.begin(), data.end(), v.begin() + shift);
          upload(bufs.back(), v);
          if (k == 3) poison(bufs.back());
          Tensor t(static_cast<char*>(bufs.back().buf.data()) + shift * int64_t(dtype_size(dtype)), dtype, {b, l, e},
                   Device::cuda);
          views.push_back(t);
        }
        ScanArgs args;
        args.u = views[0], args.dt = views[1], args.z = views[2], args.y = views[3];
        args.A = dA.t, args.B = dB.t, args.C = dC.t, args.D = dD.t, args.dt_bias = dbias.t;
        Context ctx(1);
        selective_scan_forward_cuda(args, ctx);
        cuda_state(ctx).synchronize();
        const std::vector<float> all = download(bufs[3], size_t(count + 1));
        y[size_t(shift)].assign(all.begin() + shift, all.begin() + shift + count);
      }
      EXPECT_FALSE(test::compare(y[0].data(), y[0].data(), y[0].size()).any_nan) << "y left unwritten";
      EXPECT_EQ(0, std::memcmp(y[0].data(), y[1].data(), y[0].size() * sizeof(float))) << "y differs";
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
