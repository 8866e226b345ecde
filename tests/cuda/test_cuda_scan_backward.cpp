// The CUDA selective-scan backward (ops/cuda/cuda_scan_backward.h) against the CPU op (ops_backward.h), over a
// table of shapes that includes the awkward ones: l = 1, l not a multiple of the kernel's chunk (16 or 8
// steps), many chunks, odd n, n = 16, 64 and 200, e not a multiple of 32, b > 1, each optional argument present
// and absent, softplus on and off. B and C are views into a wider (b, l, r + 2n) tensor, as x_proj's output
// is, and so are dB and dC. The added-to gradients (dA, dD, ddt_bias) start non-zero on both sides; every
// written output is poisoned with NaN before the run. Also: bitwise-identical results run to run, the long-
// sequence paths (checkpoints every K chunks, several tiles per block), softplus over its whole range and the
// refusals. A time-invariant B and/or C ((e, n) per channel, the selection ablations, their gradients (e, n)
// added to from non-zero starting values) goes through the same checks. So does the backward that starts from the
// forward's chunk_states (written by the CUDA forward scan for the same inputs) instead of its own forward pass,
// and a bf16 or f16 u (bit for bit the f32 op on the widened u). Every test skips where no GPU is present.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "core/context.h"
#include "core/cuda/cuda_state.h"
#include "core/error.h"
#include "cuda_test_util.h"
#include "ops/cuda/cuda_scan_backward.h"
#include "ops/cuda/scan_backward_kernel.h"
#include "ops/ops.h"
#include "ops/ops_backward.h"
#include "support/test_util.h"

namespace mambacpp {
namespace {

using test::Pair;

// Relative L2 tolerance against the CPU op (both f32; they differ in exp approximations and summation order;
// measured below 1e-5 on most gradients).
constexpr double kTol = 1e-4;
constexpr int64_t kR = 5;  // columns of the wide tensor before B (as dt_rank before B and C in x_proj's output)

struct Case {
  const char* name;
  int64_t b, l, e, n;
  bool z, D, dt_bias, state_in, dstate_out, softplus;
};

// All tensors of one case, host and device. With B_lti / C_lti, B / C are (e, n) per channel (Bt, Ct) and
// their gradients dBt / dCt (e, n) are added to; the wide tensors' B / C columns are then unused.
struct Problem {
  Case c;
  bool B_lti, C_lti;
  Pair u, dt, xp, z, A, D, bias, s_in, dy, ds_out;       // inputs
  Pair du, ddt, dxp, dz, ds_in, dA, dD, dbias;            // gradients
  Pair Bt, Ct, dBt, dCt;                                  // time-invariant B, C and their gradients
  Pair y, states;                                         // the forward's output and chunk_states
  bool from_states = false;                               // the device backward is given `states`
  std::vector<float> dA0, dD0, dbias0, dBt0, dCt0;        // the added-to gradients' starting values

  explicit Problem(const Case& k, uint64_t seed, bool B_lti_ = false, bool C_lti_ = false)
      : c(k), B_lti(B_lti_), C_lti(C_lti_) {
    const int64_t b = c.b, l = c.l, e = c.e, n = c.n, w = kR + 2 * n;
    u = test::make_pair(DType::f32, {b, l, e}), dt = test::make_pair(DType::f32, {b, l, e});
    xp = test::make_pair(DType::f32, {b, l, w}), z = test::make_pair(DType::f32, {b, l, e});
    A = test::make_pair(DType::f32, {e, n}), D = test::make_pair(DType::f32, {e});
    bias = test::make_pair(DType::f32, {e}), s_in = test::make_pair(DType::f32, {b, e, n});
    dy = test::make_pair(DType::f32, {b, l, e}), ds_out = test::make_pair(DType::f32, {b, e, n});
    du = test::make_pair(DType::f32, {b, l, e}), ddt = test::make_pair(DType::f32, {b, l, e});
    dxp = test::make_pair(DType::f32, {b, l, w}), dz = test::make_pair(DType::f32, {b, l, e});
    ds_in = test::make_pair(DType::f32, {b, e, n}), dA = test::make_pair(DType::f32, {e, n});
    dD = test::make_pair(DType::f32, {e}), dbias = test::make_pair(DType::f32, {e});
    Bt = test::make_pair(DType::f32, {e, n}), Ct = test::make_pair(DType::f32, {e, n});
    dBt = test::make_pair(DType::f32, {e, n}), dCt = test::make_pair(DType::f32, {e, n});
    y = test::make_pair(DType::f32, {b, l, e}), states = test::make_pair(DType::f32, {b, scan_state_count(l), n, e});
    const auto sz = [](int64_t x) { return size_t(x); };
    test::fill(u, test::random_vector(sz(b * l * e), seed + 1));
    test::fill(dt, c.softplus ? test::random_vector(sz(b * l * e), seed + 2, -3.0f, 1.0f)
                              : test::random_vector(sz(b * l * e), seed + 2, 0.0f, 0.5f));
    test::fill(xp, test::random_vector(sz(b * l * w), seed + 3));
    test::fill(z, test::random_vector(sz(b * l * e), seed + 4, -2.0f, 2.0f));
    std::vector<float> a = test::random_vector(sz(e * n), seed + 5, 0.1f, 2.8f);
    for (float& x : a) x = -std::exp(x);  // A = −exp(A_log), in [−16, −1.1]
    test::fill(A, a);
    test::fill(D, test::random_vector(sz(e), seed + 6));
    test::fill(bias, c.softplus ? test::random_vector(sz(e), seed + 7, -4.0f, -1.0f)
                                : test::random_vector(sz(e), seed + 7, 0.0f, 0.1f));
    test::fill(s_in, test::random_vector(sz(b * e * n), seed + 8));
    test::fill(dy, test::random_vector(sz(b * l * e), seed + 9));
    test::fill(ds_out, test::random_vector(sz(b * e * n), seed + 10));
    dA0 = test::random_vector(sz(e * n), seed + 11);
    dD0 = test::random_vector(sz(e), seed + 12);
    dbias0 = test::random_vector(sz(e), seed + 13);
    test::fill(Bt, test::random_vector(sz(e * n), seed + 14));
    test::fill(Ct, test::random_vector(sz(e * n), seed + 15));
    dBt0 = test::random_vector(sz(e * n), seed + 16);
    dCt0 = test::random_vector(sz(e * n), seed + 17);
  }

  // Resets the gradients on both sides: written ones to NaN, added-to ones to their starting values.
  void reset() {
    for (Pair* p : {&du, &ddt, &dxp, &dz, &ds_in}) test::poison(*p);
    test::fill(dA, dA0), test::fill(dD, dD0), test::fill(dbias, dbias0), test::fill(dBt, dBt0);
    test::fill(dCt, dCt0);
  }

  // The arguments on the host (first) or the device (second) side.
  ScanGradArgs args(bool device) const {
    const auto pick = [device](const Pair& p) { return device ? p.dev : p.host; };
    const auto view = [&](const Pair& p, int64_t col, int64_t k) {
      const auto v = test::views(p, col, {c.b, c.l, k}, {c.l * (kR + 2 * c.n), kR + 2 * c.n, 1});
      return device ? v.second : v.first;
    };
    ScanGradArgs a;
    a.du = pick(du), a.ddt = pick(ddt), a.dB = view(dxp, kR, c.n), a.dC = view(dxp, kR + c.n, c.n);
    a.dA = pick(dA), a.dy = pick(dy), a.u = pick(u), a.dt = pick(dt), a.A = pick(A);
    a.B = view(xp, kR, c.n), a.C = view(xp, kR + c.n, c.n);
    if (B_lti) a.B = pick(Bt), a.dB = pick(dBt);
    if (C_lti) a.C = pick(Ct), a.dC = pick(dCt);
    a.dstate_in = pick(ds_in);
    if (c.z) a.z = pick(z), a.dz = pick(dz);
    if (c.D) a.D = pick(D), a.dD = pick(dD);
    if (c.dt_bias) a.dt_bias = pick(bias), a.ddt_bias = pick(dbias);
    if (c.state_in) a.state_in = pick(s_in);
    if (c.dstate_out) a.dstate_out = pick(ds_out);
    a.dt_softplus = c.softplus;
    if (device && from_states) a.chunk_states = states.dev;
    return a;
  }

  // Runs the CUDA forward scan on the device inputs, writing its chunk_states into `states` (poisoned first),
  // and has the device backward start from them.
  void forward_states(Context& ctx) {
    const ScanGradArgs g = args(true);
    ScanArgs f;
    f.y = y.dev, f.chunk_states = states.dev, f.u = g.u, f.dt = g.dt, f.A = g.A, f.B = g.B, f.C = g.C, f.D = g.D;
    f.z = g.z, f.dt_bias = g.dt_bias, f.state_in = g.state_in, f.dt_softplus = g.dt_softplus;
    test::poison(states);
    selective_scan_forward(f, ctx);
    cuda_state(ctx).synchronize();
    from_states = true;
  }
};

// The columns [first, first + n) of a (b, l, kR + 2n) tensor's values, every row: dB at kR, dC at kR + n.
std::vector<float> columns(const std::vector<float>& wide, int64_t rows, int64_t n, int64_t first) {
  std::vector<float> out;
  const int64_t w = kR + 2 * n;
  for (int64_t r = 0; r < rows; ++r)
    out.insert(out.end(), wide.begin() + r * w + first, wide.begin() + r * w + first + n);
  return out;
}

const char* variant_name(bool B_lti, bool C_lti) {
  if (B_lti && C_lti) return " (B, C time-invariant)";
  return B_lti ? " (B time-invariant)" : C_lti ? " (C time-invariant)" : "";
}

// Which of B and C are time-invariant: B only, C only, both.
constexpr std::pair<bool, bool> kLtiVariants[] = {{true, false}, {false, true}, {true, true}};

// Runs the CPU op and the CUDA op (`cuda` runs the device side) and compares every gradient.
template <class RunCuda>
void check_against_cpu(Problem& pr, RunCuda&& cuda) {
  const Case& c = pr.c;
  SCOPED_TRACE(std::string(c.name) + variant_name(pr.B_lti, pr.C_lti));
  pr.reset();
  Context ctx(1);
  selective_scan_backward(pr.args(false), ctx);
  cuda(pr, ctx);
  struct Out {
    const char* name;
    std::vector<float> got, want;
  };
  std::vector<Out> outs;
  const auto add = [&](const char* name, const Pair& p) { outs.push_back({name, test::download(p), test::host_values(p)}); };
  add("du", pr.du), add("ddt", pr.ddt), add("dstate_in", pr.ds_in), add("dA", pr.dA);
  if (c.z) add("dz", pr.dz);
  if (c.D) add("dD", pr.dD);
  if (c.dt_bias) add("ddt_bias", pr.dbias);
  for (const auto& [lti, name, col, t] : {std::tuple{pr.B_lti, "dB", kR, &pr.dBt},
                                        std::tuple{pr.C_lti, "dC", kR + c.n, &pr.dCt}}) {
    if (lti)
      add(name, *t);
    else
      outs.push_back({name, columns(test::download(pr.dxp), c.b * c.l, c.n, col),
                      columns(test::host_values(pr.dxp), c.b * c.l, c.n, col)});
  }
  std::printf("[ scan bwd ] %-30s%s", c.name, variant_name(pr.B_lti, pr.C_lti));
  for (const Out& o : outs) {
    const test::Closeness cl = test::compare(o.got.data(), o.want.data(), o.got.size());
    std::printf(" %s %.1e", o.name, cl.rel_l2);
    EXPECT_CLOSE(o.got.data(), o.want.data(), o.got.size(), kTol) << o.name;
  }
  std::printf("\n");
  // Nothing outside the per-token dB and dC columns of the wide gradient tensor is written: it stays NaN.
  const std::vector<float> wide = test::download(pr.dxp);
  for (int64_t r = 0; r < c.b * c.l; ++r)
    for (int64_t k = 0; k < kR + 2 * c.n; ++k) {
      const bool written = (k >= kR && k < kR + c.n && !pr.B_lti) || (k >= kR + c.n && !pr.C_lti);
      if (!written) {
        ASSERT_TRUE(std::isnan(wide[size_t(r * (kR + 2 * c.n) + k)])) << "row " << r << ", column " << k;
      }
    }
}

void run_tensor_op(Problem& pr, Context& ctx) {
  selective_scan_backward_cuda(pr.args(true), ctx);
  cuda_state(ctx).synchronize();
}

class CudaScanBackward : public ::testing::Test {
 protected:
  void SetUp() override { SKIP_WITHOUT_GPU(); }
};

const Case kCases[] = {
    // name                           b    l     e    n    z      D      bias   s_in   ds_out softplus
    {"l = 1, all arguments", 2, 1, 64, 16, true, true, true, true, true, true},
    {"l = 1, bare", 1, 1, 33, 5, false, false, false, false, false, false},
    {"odd l and e, n = 3", 1, 77, 37, 3, true, true, false, true, true, true},
    {"n = 1, no softplus", 3, 100, 100, 1, false, false, true, false, false, false},
    {"n = 5, e = 40", 2, 50, 40, 5, true, false, true, false, true, true},
    {"n = 16, l = 17", 2, 17, 48, 16, true, true, true, true, true, true},
    {"n = 16, many chunks", 2, 1000, 96, 16, true, true, true, true, true, true},
    {"n = 16, no z, no softplus", 3, 130, 70, 16, false, true, true, true, false, false},
    {"n = 17, e = 50", 2, 70, 50, 17, true, true, true, true, true, true},
    {"n = 64, e = 33", 2, 129, 33, 64, false, true, true, true, true, true},
    {"n = 200, e = 19", 1, 45, 19, 200, true, true, true, false, true, true},
    {"n = 256", 1, 40, 20, 256, true, true, true, true, true, true},
    {"long sequence", 1, 4099, 40, 16, true, true, true, false, true, true},
};

TEST_F(CudaScanBackward, MatchesCpuOverShapeTable) {
  uint64_t seed = 500;
  for (const Case& c : kCases) {
    Problem pr(c, seed += 20);
    check_against_cpu(pr, run_tensor_op);
  }
}

// A time-invariant B, C or both, over the same table: du, ddt, dz, dstate_in, dA, dD, ddt_bias and the per-token
// gradient of the other one as for S6; dB / dC (e, n) added to their starting values.
TEST_F(CudaScanBackward, TimeInvariantBAndCMatchCpuOverShapeTable) {
  uint64_t seed = 2500;
  for (const Case& c : kCases)
    for (const auto& [B_lti, C_lti] : kLtiVariants) {
      Problem pr(c, seed += 20, B_lti, C_lti);
      check_against_cpu(pr, run_tensor_op);
    }
}

// The backward started from the forward's chunk_states (no forward pass of its own where n ≤ 64; dz then formed
// in the chunks), over the same table, for S6 and the time-invariant variants.
TEST_F(CudaScanBackward, FromForwardChunkStatesMatchesCpuOverShapeTable) {
  uint64_t seed = 4500;
  for (const Case& c : kCases)
    for (const auto& [B_lti, C_lti] : {std::pair{false, false}, kLtiVariants[0], kLtiVariants[1], kLtiVariants[2]}) {
      Problem pr(c, seed += 20, B_lti, C_lti);
      Context ctx(1);
      pr.forward_states(ctx);
      check_against_cpu(pr, run_tensor_op);
    }
}

// Softplus over its whole range: dt + dt_bias below 0, between 0 and 20, and above 20 (where δ = dt + dt_bias), so
// every branch of δ and of its derivative is compared with the CPU op.
TEST_F(CudaScanBackward, SoftplusOverItsWholeRangeMatchesCpu) {
  const Case c{"softplus over [-6, 26]", 2, 300, 64, 16, true, true, true, true, true, true};
  Problem pr(c, 1300);
  test::fill(pr.dt, test::random_vector(size_t(c.b * c.l * c.e), 1301, -5.0f, 25.0f));
  test::fill(pr.bias, test::random_vector(size_t(c.e), 1302, -1.0f, 1.0f));
  check_against_cpu(pr, run_tensor_op);
}

// Small budgets force the paths that only very long sequences take otherwise: checkpoints every K chunks
// (recomputed into the block's scratch) and several channel tiles per block adding to one partial sum.
TEST_F(CudaScanBackward, LongSequencePathsMatchCpu) {
  const Case cases[] = {{"K > 1, tiles per block > 1", 2, 700, 200, 16, true, true, true, true, true, true},
                        {"K > 1, n = 5, l odd", 3, 333, 70, 5, false, true, true, true, false, true},
                        {"K > 1, n = 64", 1, 250, 20, 64, true, false, true, false, true, false}};
  uint64_t seed = 900;
  for (const Case& c : cases) {
    for (const auto& [B_lti, C_lti] : {std::pair{false, false}, kLtiVariants[0], kLtiVariants[1], kLtiVariants[2]}) {
      Problem pr(c, seed += 20, B_lti, C_lti);
      check_against_cpu(pr, [](Problem& p, Context& ctx) {
        const ScanGradArgs a = p.args(true);
        cuda::ScanGradKernelParams k;
        k.b = p.c.b, k.l = p.c.l, k.e = p.c.e, k.n = p.c.n;
        const auto seq = [](const Tensor& t) {
          return cuda::GradSeq{t.defined() ? t.f32() : nullptr, t.stride[0], t.stride[1]};
        };
        const auto ptr = [](const Tensor& t) { return t.defined() ? t.f32() : nullptr; };
        k.du = seq(a.du), k.ddt = seq(a.ddt), k.dz = seq(a.dz), k.dB = seq(a.dB), k.dC = seq(a.dC);
        k.dy = seq(a.dy), k.u = seq(a.u), k.dt = seq(a.dt), k.z = seq(a.z), k.B = seq(a.B), k.C = seq(a.C);
        k.dA = ptr(a.dA), k.dD = ptr(a.dD), k.ddt_bias = ptr(a.ddt_bias), k.dstate_in = ptr(a.dstate_in);
        k.dstate_out = ptr(a.dstate_out), k.A = ptr(a.A), k.D = ptr(a.D), k.dt_bias = ptr(a.dt_bias);
        k.state_in = ptr(a.state_in), k.dt_softplus = a.dt_softplus;
        if (p.B_lti) k.B = {}, k.dB = {}, k.B_lti = a.B.f32(), k.dB_lti = a.dB.f32();
        if (p.C_lti) k.C = {}, k.dC = {}, k.C_lti = a.C.f32(), k.dC_lti = a.dC.f32();
        const int64_t chunks = (k.l + 15) / 16;
        k.checkpoint_budget = k.b * k.e * k.n * (chunks / 3);  // a checkpoint every 3 to 5 chunks
        k.partial_budget = k.b * k.l * 2 * k.n * 2;            // 1 or 2 groups of tiles
        std::string why;
        ASSERT_TRUE(cuda::scan_backward_kernel_supports(k, &why)) << why;
        CudaState& cs = cuda_state(ctx);
        cuda::scan_backward_kernel_launch(k, cs.scratch(cuda::scan_backward_scratch_bytes(k)), cs.stream);
        cs.synchronize();
      });
    }
  }
}

// The same inputs give the same bits, twice in a row (and with a larger problem run in between, so that the
// scratch memory is reallocated and holds other values).
TEST_F(CudaScanBackward, BitwiseIdenticalRunToRun) {
  for (const bool from_states : {false, true}) {
    SCOPED_TRACE(from_states ? "from the forward's chunk_states" : "with its own forward pass");
    const Case c{"determinism", 4, 517, 160, 16, true, true, true, true, true, true};
    Problem pr(c, 77);
    std::vector<std::vector<float>> runs[2];
    for (int run = 0; run < 2; ++run) {
      pr.reset();
      Context ctx(1);
      if (from_states && run == 0) pr.forward_states(ctx);
      if (run == 1) {
        Problem other(Case{"other", 2, 900, 200, 16, true, true, true, true, true, true}, 78);
        other.reset();
        selective_scan_backward_cuda(other.args(true), ctx);
      }
      selective_scan_backward_cuda(pr.args(true), ctx);
      cuda_state(ctx).synchronize();
      for (const Pair* p : {&pr.du, &pr.ddt, &pr.dxp, &pr.dz, &pr.ds_in, &pr.dA, &pr.dD, &pr.dbias})
        runs[run].push_back(test::download(*p));
    }
    const char* names[] = {"du", "ddt", "dB/dC", "dz", "dstate_in", "dA", "dD", "ddt_bias"};
    for (size_t i = 0; i < runs[0].size(); ++i)
      EXPECT_EQ(0, std::memcmp(runs[0][i].data(), runs[1][i].data(), runs[0][i].size() * sizeof(float)))
          << names[i] << " differs between runs";
  }
}

// The same with a time-invariant B, C or both: every output, the (e, n) dB / dC sums over batch rows and steps
// included (from the same starting values), has the same bits twice in a row.
TEST_F(CudaScanBackward, TimeInvariantBitwiseIdenticalRunToRun) {
  const Case c{"determinism", 4, 517, 160, 16, true, true, true, true, true, true};
  for (const auto& [B_lti, C_lti] : kLtiVariants) {
    SCOPED_TRACE(variant_name(B_lti, C_lti));
    Problem pr(c, 79, B_lti, C_lti);
    std::vector<std::vector<float>> runs[2];
    for (int run = 0; run < 2; ++run) {
      pr.reset();
      Context ctx(1);
      selective_scan_backward_cuda(pr.args(true), ctx);
      cuda_state(ctx).synchronize();
      for (const Pair* p : {&pr.du, &pr.ddt, &pr.dxp, &pr.dz, &pr.ds_in, &pr.dA, &pr.dD, &pr.dbias, &pr.dBt, &pr.dCt})
        runs[run].push_back(test::download(*p));
    }
    const char* names[] = {"du", "ddt", "dB/dC (per token)", "dz", "dstate_in", "dA", "dD", "ddt_bias", "dB (e, n)",
                           "dC (e, n)"};
    for (size_t i = 0; i < runs[0].size(); ++i)
      EXPECT_EQ(0, std::memcmp(runs[0][i].data(), runs[1][i].data(), runs[0][i].size() * sizeof(float)))
          << names[i] << " differs between runs";
  }
}

// A bf16 or f16 ddt and dz hold the f32 ones rounded to nearest even, bit for bit, and every other gradient is
// the same; with and without the forward's chunk_states.
TEST_F(CudaScanBackward, HalfDdtAndDzAreTheF32OnesRounded) {
  const Case c{"half ddt", 2, 300, 96, 16, true, true, true, true, true, true};
  for (const bool from_states : {false, true}) {
    SCOPED_TRACE(from_states ? "from the forward's chunk_states" : "with its own forward pass");
    Problem pr(c, 91);
    Context ctx(1);
    if (from_states) pr.forward_states(ctx);
    pr.reset();
    selective_scan_backward_cuda(pr.args(true), ctx);
    cuda_state(ctx).synchronize();
    const std::vector<float> ddt = test::download(pr.ddt), du = test::download(pr.du), dz = test::download(pr.dz);
    const std::vector<float> dA = test::download(pr.dA);
    for (DType ht : {DType::bf16, DType::f16}) {
      Pair half_ddt = test::make_pair(ht, {c.b, c.l, c.e}), half_dz = test::make_pair(ht, {c.b, c.l, c.e});
      pr.reset();
      test::poison(half_ddt), test::poison(half_dz);
      ScanGradArgs a = pr.args(true);
      a.ddt = half_ddt.dev, a.dz = half_dz.dev;
      selective_scan_backward_cuda(a, ctx);
      cuda_state(ctx).synchronize();
      for (const auto& [name, half, full] : {std::tuple{"ddt", &half_ddt, &ddt}, std::tuple{"dz", &half_dz, &dz}}) {
        std::vector<uint16_t> got(full->size()), want(full->size());
        ASSERT_EQ(cudaSuccess, cudaMemcpy(got.data(), half->dev.data, got.size() * 2, cudaMemcpyDeviceToHost));
        convert_from_f32(want.data(), ht, full->data(), full->size());
        EXPECT_EQ(got, want) << dtype_name(ht) << " " << name;
      }
      EXPECT_EQ(0, std::memcmp(du.data(), test::download(pr.du).data(), du.size() * 4)) << "du";
      EXPECT_EQ(0, std::memcmp(dA.data(), test::download(pr.dA).data(), dA.size() * 4)) << "dA";
    }
  }
}

// A bf16 or f16 u (every other tensor f32) gives every gradient of the f32 op on u widened to f32, bit for bit
// (each half value is exact in f32), and the CPU op's within kTol: with the backward's own forward pass and from
// the forward's chunk_states, for S6 and a time-invariant B.
TEST_F(CudaScanBackward, HalfUIsTheF32OpOnTheWidenedU) {
  const Case cases[] = {{"l = 1", 2, 1, 64, 16, true, true, true, true, true, true},
                        {"odd l and e, n = 3", 1, 77, 37, 3, true, true, false, true, true, true},
                        {"n = 16, b = 3, no z", 3, 130, 70, 16, false, true, true, true, false, true},
                        {"n = 17, e = 50", 2, 70, 50, 17, true, true, true, true, true, true},
                        {"n = 200, e = 19", 1, 45, 19, 200, true, true, true, false, true, true}};
  uint64_t seed = 6500;
  for (const Case& c : cases)
    for (const bool B_lti : {false, true})
      for (const bool from_states : {false, true})
        for (DType ht : {DType::bf16, DType::f16}) {
          SCOPED_TRACE(testing::Message() << dtype_name(ht) << (from_states ? ", from chunk_states" : ""));
          Problem pr(c, seed += 20, B_lti, false);
          std::vector<float> u = test::host_values(pr.u);
          test::round_to(ht, u);
          test::fill(pr.u, u);  // the f32 op's u: the half values widened
          Pair uh = test::make_pair(ht, {c.b, c.l, c.e});
          test::fill(uh, u);
          Context ctx(1);
          if (from_states) pr.forward_states(ctx);
          std::vector<std::vector<float>> runs[2];
          for (int half = 0; half < 2; ++half) {
            pr.reset();
            ScanGradArgs a = pr.args(true);
            if (half) a.u = uh.dev;
            selective_scan_backward_cuda(a, ctx);
            cuda_state(ctx).synchronize();
            for (const Pair* p : {&pr.du, &pr.ddt, &pr.dxp, &pr.dz, &pr.ds_in, &pr.dA, &pr.dD, &pr.dbias, &pr.dBt})
              runs[half].push_back(test::download(*p));
          }
          const char* names[] = {"du", "ddt", "dB/dC", "dz", "dstate_in", "dA", "dD", "ddt_bias", "dB (e, n)"};
          for (size_t i = 0; i < runs[0].size(); ++i)
            EXPECT_EQ(0, std::memcmp(runs[0][i].data(), runs[1][i].data(), runs[0][i].size() * sizeof(float)))
                << names[i] << " differs from the f32 u's";
          check_against_cpu(pr, [&](Problem& p, Context& cx) {
            ScanGradArgs a = p.args(true);
            a.u = uh.dev;
            selective_scan_backward_cuda(a, cx);
            cuda_state(cx).synchronize();
          });
        }
}

// Unsupported calls are refused naming the reason, and the op throws it.
TEST_F(CudaScanBackward, RefusesNamingTheLimit) {
  Problem pr(Case{"refusals", 1, 8, 32, 16, true, true, true, true, true, true}, 5);
  std::string why;
  ASSERT_TRUE(selective_scan_backward_cuda_supports(pr.args(true), &why)) << why;
  const auto expect_refused = [](const ScanGradArgs& a, const std::string& needle) {
    std::string reason;
    EXPECT_FALSE(selective_scan_backward_cuda_supports(a, &reason)) << needle;
    EXPECT_NE(reason.find(needle), std::string::npos) << "reason: " << reason;
    Context ctx(1);
    test::expect_error([&] { selective_scan_backward_cuda(a, ctx); }, {"selective_scan_backward", needle});
  };
  ScanGradArgs a = pr.args(true);
  a.u = pr.u.host;
  expect_refused(a, "u is on cpu");
  Pair bf = test::make_pair(DType::bf16, {1, 8, 32});
  a = pr.args(true), a.dy = bf.dev;
  expect_refused(a, "dy is bf16");
  Pair bf_dt = test::make_pair(DType::bf16, {1, 8, 32});  // a half u goes with f32 dt and the rest only
  a = pr.args(true), a.u = bf.dev;
  ASSERT_TRUE(selective_scan_backward_cuda_supports(a, &why)) << why;
  a.dt = bf_dt.dev;
  expect_refused(a, "dt is bf16");
  Pair A257 = test::make_pair(DType::f32, {32, 257}), B257 = test::make_pair(DType::f32, {1, 8, 257});
  a = pr.args(true), a.A = A257.dev, a.B = a.C = a.dB = a.dC = B257.dev, a.state_in = a.dstate_out = Tensor{};
  a.dstate_in = Tensor{}, a.dA = Tensor{};
  expect_refused(a, "1..256");
  Pair short_states = test::make_pair(DType::f32, {1, 1, 16, 32});  // l = 8 needs [1, 1, 16, 32]: this is one
  Pair wrong_states = test::make_pair(DType::f32, {1, 1, 32, 16});  // (n, e) swapped
  a = pr.args(true), a.chunk_states = short_states.dev;
  ASSERT_TRUE(selective_scan_backward_cuda_supports(a, &why)) << why;
  a.chunk_states = wrong_states.dev;
  expect_refused(a, "chunk_states must be a contiguous [1, 1, 16, 32]");
}

}  // namespace
}  // namespace mambacpp
