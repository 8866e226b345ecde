// The variants of the CUDA selective scan (ops/cuda/cuda_ops.h), against the CPU op and against the f32 scan. A
// time-invariant B and/or C ((e, n) per channel, the selection ablations) is checked against the CPU op over its
// own table, twice for the same bits; chunk_states (the states kept for the backward pass) against the CPU op's;
// a bf16 or f16 y of f32 inputs bit for bit against the f32 y rounded; a bf16 or f16 u beside f32 dt, B, C, z bit
// for bit against the f32 u it widens to. Outputs are poisoned with NaN before every run. The shape table against
// the float64 loop is in test_cuda_scan.cpp. Every test skips where no GPU is present.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "core/context.h"
#include "core/cuda/cuda_state.h"
#include "core/dtype.h"
#include "core/tensor.h"
#include "cuda/cuda_test_util.h"
#include "cuda/scan_test_util.h"
#include "ops/cuda/cuda_ops.h"
#include "ops/ops.h"
#include "support/test_util.h"

namespace mambacpp::test {
namespace {

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
      {"n = 16, b·e = 8,192 (4 states a thread)", 2, 40, 4096, 16, f32, true, true, false, false},
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
                            {"n = 16, b·e = 8,192 (4 states a thread)", 2, 33, 4096, 16, true, false},
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

}  // namespace
}  // namespace mambacpp::test
