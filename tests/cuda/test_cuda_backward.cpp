// The CUDA backward ops (linear, embedding, RMSNorm, conv1d, the head fused with cross-entropy) and the training
// bookkeeping ops of ops_train.h against the CPU ops, which are the oracle, through the dispatchers. Shape
// tables hold the awkward cases: one row, sizes that are not multiples of 32 or 128, row-strided views, every
// optional argument present and absent, bf16/f16 weights. Written outputs are poisoned with NaN first; added-to
// gradients start from the same non-zero values on both sides. Every op also runs twice on the GPU from the
// same inputs, and the two results must agree bit for bit.
#include <gtest/gtest.h>

#include <cstring>
#include <functional>
#include <string>
#include <tuple>
#include <vector>

#include "core/context.h"
#include "ops/ops_backward.h"
#include "ops/ops_train.h"
#include "support/test_util.h"
#include "cuda/cuda_test_util.h"

namespace mambacpp::test {
namespace {

// Relative L2 tolerances against the CPU op: f32 sums in another order; bf16/f16 matrices round the
// activations and gradients to the matrix dtype before the products.
constexpr double kTolF32 = 1e-4;
constexpr double kTolHalf = 1e-2;
double tol_for(DType t) { return t == DType::f32 ? kTolF32 : kTolHalf; }

std::string shape_name(std::initializer_list<int64_t> dims) {
  std::string s;
  for (int64_t d : dims) {
    if (!s.empty()) s += 'x';
    s += std::to_string(d);
  }
  return s;
}

std::vector<char> device_bytes(const Pair& p) {
  EXPECT_EQ(cudaSuccess, cudaDeviceSynchronize());
  std::vector<char> b(p.dev_buf.bytes());
  EXPECT_EQ(cudaSuccess, cudaMemcpy(b.data(), p.dev_buf.data(), b.size(), cudaMemcpyDeviceToHost));
  return b;
}

// Runs `run` twice (after `reset` each time) and expects the outputs bitwise equal.
void expect_deterministic(const std::function<void()>& reset, const std::function<void()>& run,
                          const std::vector<const Pair*>& outputs) {
  std::vector<std::vector<char>> first;
  reset(), run();
  for (const Pair* p : outputs) first.push_back(device_bytes(*p));
  reset(), run();
  for (size_t i = 0; i < outputs.size(); ++i)
    EXPECT_EQ(0, std::memcmp(first[i].data(), device_bytes(*outputs[i]).data(), first[i].size()))
        << "output " << i << " differs between two runs";
}

void expect_pair_close(const Pair& p, double tol, const char* what) {
  const auto got = download(p), ref = host_values(p);
  EXPECT_CLOSE(got.data(), ref.data(), ref.size(), tol) << what;
}

struct LinearCase {
  int64_t m, i, o;
  bool bias, strided;
};

TEST(CudaBackward, LinearMatchesCpu) {
  SKIP_WITHOUT_GPU();
  Context ctx(4);
  const LinearCase cases[] = {{1, 64, 48, true, false},   {7, 33, 100, true, true},  {130, 96, 257, false, true},
                              {300, 200, 130, true, false}, {64, 1, 5, true, true},   {9, 768, 1536, true, true}};
  for (DType wt : {DType::f32, DType::bf16, DType::f16})
    for (const LinearCase& c : cases) {
      SCOPED_TRACE(std::string(dtype_name(wt)) + " m,i,o=" + shape_name({c.m, c.i, c.o}));
      const int64_t ldx = c.strided ? c.i + 7 : c.i, ldy = c.strided ? c.o + 3 : c.o;
      Pair x = make_pair(DType::f32, {c.m, ldx}), dy = make_pair(DType::f32, {c.m, ldy});
      Pair w = make_pair(wt, {c.o, c.i}), w_ref = make_pair(DType::f32, {c.o, c.i});
      Pair dx = make_pair(DType::f32, {c.m, c.i}), dw = make_pair(DType::f32, {c.o, c.i});
      Pair db = make_pair(DType::f32, {c.o});
      fill(x, random_vector(size_t(c.m * ldx), 1)), fill(dy, random_vector(size_t(c.m * ldy), 2));
      std::vector<float> wv = random_vector(size_t(c.o * c.i), 3, -0.2f, 0.2f);
      round_to(wt, wv);  // the values a bf16/f16 matrix holds
      fill(w, wv), fill(w_ref, wv);
      const std::vector<float> dw0 = random_vector(size_t(c.o * c.i), 4), db0 = random_vector(size_t(c.o), 5);
      const auto reset = [&] { poison(dx), fill(dw, dw0), fill(db, db0); };
      reset();
      const auto [xh, xd] = views(x, 0, {c.m, c.i}, {ldx, 1});
      const auto [yh, yd] = views(dy, 0, {c.m, c.o}, {ldy, 1});
      linear_backward(dx.host, dw.host, c.bias ? db.host : Tensor{}, yh, xh, w_ref.host, ctx);
      const auto run = [&] { linear_backward(dx.dev, dw.dev, c.bias ? db.dev : Tensor{}, yd, xd, w.dev, ctx); };
      run();
      expect_pair_close(dx, tol_for(wt), "dx");
      expect_pair_close(dw, tol_for(wt), "dw");
      if (c.bias) expect_pair_close(db, kTolF32, "dbias");
      expect_deterministic(reset, run, {&dx, &dw, &db});
    }
}

TEST(CudaBackward, LinearWithoutInputGradientOrWeightGradient) {
  SKIP_WITHOUT_GPU();
  Context ctx(4);
  const int64_t m = 40, i = 70, o = 33;
  Pair x = make_pair(DType::f32, {m, i}), dy = make_pair(DType::f32, {m, o}), w = make_pair(DType::f32, {o, i});
  Pair dx = make_pair(DType::f32, {m, i}), dw = make_pair(DType::f32, {o, i});
  fill(x, random_vector(size_t(m * i), 6)), fill(dy, random_vector(size_t(m * o), 7));
  fill(w, random_vector(size_t(o * i), 8)), fill(dw, random_vector(size_t(o * i), 9));
  poison(dx);
  for (bool dev : {false, true}) {
    const auto pick = [dev](const Pair& p) { return dev ? p.dev : p.host; };
    linear_backward(pick(dx), Tensor{}, Tensor{}, pick(dy), Tensor{}, pick(w), ctx);
    linear_backward(Tensor{}, pick(dw), Tensor{}, pick(dy), pick(x), pick(w), ctx);
  }
  expect_pair_close(dx, kTolF32, "dx");
  expect_pair_close(dw, kTolF32, "dw");
}

// Activations and gradients already held in the matrices' half dtype are multiplied as they are: the same bits
// as rounding f32 ones inside the op. accumulate_dx adds the product to dx (beta = 1 in the product itself).
TEST(CudaBackward, LinearTakesHalfOperandsAndAccumulates) {
  SKIP_WITHOUT_GPU();
  Context ctx(4);
  const LinearCase cases[] = {{130, 96, 257, false, false}, {9, 768, 1536, false, false}, {1000, 1536, 80, false, false}};
  for (DType wt : {DType::bf16, DType::f16})
    for (const LinearCase& c : cases) {
      SCOPED_TRACE(std::string(dtype_name(wt)) + " m,i,o=" + shape_name({c.m, c.i, c.o}));
      const std::vector<float> xv = random_vector(size_t(c.m * c.i), 1), dyv = random_vector(size_t(c.m * c.o), 2);
      Pair x = make_pair(DType::f32, {c.m, c.i}), dy = make_pair(DType::f32, {c.m, c.o});
      Pair x16 = make_pair(wt, {c.m, c.i}), dy16 = make_pair(wt, {c.m, c.o}), w = make_pair(wt, {c.o, c.i});
      fill(x, xv), fill(dy, dyv), fill(x16, xv), fill(dy16, dyv);  // fill rounds to nearest even, as the op does
      fill(w, random_vector(size_t(c.o * c.i), 3, -0.2f, 0.2f));
      Pair dx_a = make_pair(DType::f32, {c.m, c.i}), dx_b = make_pair(DType::f32, {c.m, c.i});
      Pair dw_a = make_pair(DType::f32, {c.o, c.i}), dw_b = make_pair(DType::f32, {c.o, c.i});
      const std::vector<float> dw0 = random_vector(size_t(c.o * c.i), 4);
      poison(dx_a), poison(dx_b), fill(dw_a, dw0), fill(dw_b, dw0);
      linear_backward(dx_a.dev, dw_a.dev, Tensor{}, dy.dev, x.dev, w.dev, ctx);
      linear_backward(dx_b.dev, dw_b.dev, Tensor{}, dy16.dev, x16.dev, w.dev, ctx);
      const auto bytes_a = device_bytes(dx_a), wbytes_a = device_bytes(dw_a);
      EXPECT_EQ(0, std::memcmp(bytes_a.data(), device_bytes(dx_b).data(), bytes_a.size())) << "dx from half dy";
      EXPECT_EQ(0, std::memcmp(wbytes_a.data(), device_bytes(dw_b).data(), wbytes_a.size())) << "dw from half x";

      Pair dx_c = make_pair(DType::f32, {c.m, c.i});
      const std::vector<float> dx0 = random_vector(size_t(c.m * c.i), 5);
      const auto reset = [&] { fill(dx_c, dx0); };
      const auto run = [&] { linear_backward(dx_c.dev, Tensor{}, Tensor{}, dy16.dev, Tensor{}, w.dev, true, ctx); };
      reset(), run();
      const std::vector<float> prod = download(dx_a), got = download(dx_c);
      std::vector<float> want(prod.size());
      for (size_t k = 0; k < want.size(); ++k) want[k] = dx0[k] + prod[k];
      // The same product, possibly by another cuBLASLt algorithm (beta = 1): f32 sums in another order at most.
      EXPECT_CLOSE(got.data(), want.data(), want.size(), 1e-5) << "dx accumulated";
      expect_deterministic(reset, run, {&dx_c});
    }
  // The head reads a half x as it is, too.
  const int64_t m = 70, d = 64, v = 1000;
  const std::vector<float> xv = random_vector(size_t(m * d), 6, -2.0f, 2.0f);
  Pair x = make_pair(DType::f32, {m, d}), x16 = make_pair(DType::bf16, {m, d}), w = make_pair(DType::bf16, {v, d});
  fill(x, xv), fill(x16, xv), fill(w, random_vector(size_t(v * d), 7, -0.5f, 0.5f));
  Pair dx_a = make_pair(DType::f32, {m, d}), dx_b = make_pair(DType::f32, {m, d});
  Pair dw_a = make_pair(DType::f32, {v, d}), dw_b = make_pair(DType::f32, {v, d}), tg = make_pair(DType::f32, {m});
  std::vector<int32_t> targets(static_cast<size_t>(m));
  for (int64_t r = 0; r < m; ++r) targets[size_t(r)] = int32_t((r * 7919) % v);
  ASSERT_EQ(cudaSuccess, cudaMemcpy(tg.dev.data, targets.data(), size_t(m) * 4, cudaMemcpyHostToDevice));
  fill(dw_a, std::vector<float>(size_t(v * d), 0.0f)), fill(dw_b, std::vector<float>(size_t(v * d), 0.0f));
  const double la = linear_cross_entropy(dx_a.dev, dw_a.dev, x.dev, w.dev, tg.dev.ptr<int32_t>(), 0.1f, ctx);
  const double lb = linear_cross_entropy(dx_b.dev, dw_b.dev, x16.dev, w.dev, tg.dev.ptr<int32_t>(), 0.1f, ctx);
  EXPECT_EQ(la, lb) << "loss from a half x";
  const auto xa = device_bytes(dx_a), wa = device_bytes(dw_a);
  EXPECT_EQ(0, std::memcmp(xa.data(), device_bytes(dx_b).data(), xa.size())) << "head dx from a half x";
  EXPECT_EQ(0, std::memcmp(wa.data(), device_bytes(dw_b).data(), wa.size())) << "head dw from a half x";
  // A half dy cannot give an f32 bias gradient; an f16 x does not go with a bf16 w.
  Pair db = make_pair(DType::f32, {v}), dy16 = make_pair(DType::bf16, {m, v});
  expect_error([&] { linear_backward(Tensor{}, Tensor{}, db.dev, dy16.dev, Tensor{}, w.dev, ctx); },
               {"linear_backward", "bias gradient needs an f32 dy"});
  Pair xh = make_pair(DType::f16, {m, d});
  expect_error([&] { linear_cross_entropy(Tensor{}, Tensor{}, xh.dev, w.dev, tg.dev.ptr<int32_t>(), 1.0f, ctx); },
               {"linear_cross_entropy", "x", "f16"});
}

TEST(CudaBackward, EmbeddingMatchesCpu) {
  SKIP_WITHOUT_GPU();
  Context ctx(4);
  // Up to 32768 rows the rows are sorted by id; {5000, 64, 3} gives long runs of one id, {33000, 8, 10} takes the
  // unsorted path.
  for (auto [m, d, v] : {std::array<int64_t, 3>{1, 33, 5}, {130, 100, 7}, {3000, 768, 300}, {257, 129, 1000},
                         {5000, 64, 3}, {33000, 8, 10}}) {
    SCOPED_TRACE("m,d,v=" + shape_name({m, d, v}));
    Pair table = make_pair(DType::f32, {v, d}), dout = make_pair(DType::f32, {m, d}), ids = make_pair(DType::f32, {m});
    fill(dout, random_vector(size_t(m * d), 10));
    const std::vector<float> t0 = random_vector(size_t(v * d), 11);
    std::vector<int32_t> host_ids(static_cast<size_t>(m));
    for (int64_t r = 0; r < m; ++r) host_ids[size_t(r)] = int32_t((r * r * 7 + 3) % v);  // many repeats
    ASSERT_EQ(cudaSuccess, cudaMemcpy(ids.dev.data, host_ids.data(), size_t(m) * 4, cudaMemcpyHostToDevice));
    const auto reset = [&] { fill(table, t0); };
    reset();
    embedding_backward(table.host, dout.host, host_ids.data(), m, ctx);
    const auto run = [&] { embedding_backward(table.dev, dout.dev, ids.dev.ptr<int32_t>(), m, ctx); };
    run();
    expect_pair_close(table, 1e-6, "dtable");
    expect_deterministic(reset, run, {&table});
  }
}

TEST(CudaBackward, RmsNormMatchesCpu) {
  SKIP_WITHOUT_GPU();
  Context ctx(4);
  for (auto [m, d] : {std::pair<int64_t, int64_t>{1, 33}, {5, 768}, {130, 1000}, {300, 2048}})
    for (bool with_dw : {false, true}) {
      SCOPED_TRACE("m,d=" + shape_name({m, d}) + (with_dw ? " +dw" : ""));
      const int64_t ld = d + 5;  // dout is a row-strided view
      Pair res = make_pair(DType::f32, {m, d}), dout = make_pair(DType::f32, {m, ld}), w = make_pair(DType::f32, {d});
      Pair dres = make_pair(DType::f32, {m, d}), dw = make_pair(DType::f32, {d});
      fill(res, random_vector(size_t(m * d), 12, -2.0f, 2.0f)), fill(dout, random_vector(size_t(m * ld), 13));
      fill(w, random_vector(size_t(d), 14, 0.5f, 1.5f));
      const std::vector<float> dres0 = random_vector(size_t(m * d), 15), dw0 = random_vector(size_t(d), 16);
      const auto reset = [&] { fill(dres, dres0), fill(dw, dw0); };
      reset();
      const auto [oh, od] = views(dout, 0, {m, d}, {ld, 1});
      rmsnorm_backward(dres.host, with_dw ? dw.host : Tensor{}, oh, res.host, w.host, 1e-5f, ctx);
      const auto run = [&] { rmsnorm_backward(dres.dev, with_dw ? dw.dev : Tensor{}, od, res.dev, w.dev, 1e-5f, ctx); };
      run();
      expect_pair_close(dres, kTolF32, "dresidual");
      if (with_dw) expect_pair_close(dw, kTolF32, "dw");
      expect_deterministic(reset, run, {&dres, &dw});
    }
}

struct ConvCase {
  int64_t b, l, e, k;
  bool bias, state_in, dstate_in, silu, wants_dw;
};

TEST(CudaBackward, Conv1dMatchesCpu) {
  SKIP_WITHOUT_GPU();
  Context ctx(4);
  const ConvCase cases[] = {{1, 1, 33, 4, true, true, true, true, true},     {2, 7, 100, 4, false, false, false, true, true},
                            {3, 130, 64, 3, true, true, true, false, true},  {1, 5, 31, 1, true, false, false, true, true},
                            {4, 257, 96, 4, false, true, true, true, false}, {2, 70, 1536, 8, true, true, true, true, true},
                            {1, 2, 40, 6, true, false, true, true, true}};
  for (const ConvCase& c : cases) {
    SCOPED_TRACE("b,l,e,k=" + shape_name({c.b, c.l, c.e, c.k}));
    const int64_t km1 = c.k - 1, n = c.b * c.l * c.e;
    // x and dx are the first half of (b, l, 2e) tensors, as in_proj's output and its gradient are.
    Pair xz = make_pair(DType::f32, {c.b, c.l, 2 * c.e}), dxz = make_pair(DType::f32, {c.b, c.l, 2 * c.e});
    Pair dout = make_pair(DType::f32, {c.b, c.l, c.e}), w = make_pair(DType::f32, {c.e, c.k});
    Pair bias = make_pair(DType::f32, {c.e}), s_in = make_pair(DType::f32, {c.b, c.e, std::max<int64_t>(km1, 1)});
    Pair ds_in = make_pair(DType::f32, {c.b, c.e, std::max<int64_t>(km1, 1)});
    Pair dw = make_pair(DType::f32, {c.e, c.k}), db = make_pair(DType::f32, {c.e});
    fill(xz, random_vector(size_t(2 * n), 17)), fill(dout, random_vector(size_t(n), 18));
    fill(w, random_vector(size_t(c.e * c.k), 19)), fill(bias, random_vector(size_t(c.e), 20));
    fill(s_in, random_vector(size_t(c.b * c.e * std::max<int64_t>(km1, 1)), 21));
    const std::vector<float> dw0 = random_vector(size_t(c.e * c.k), 22), db0 = random_vector(size_t(c.e), 23);
    const auto reset = [&] { poison(dxz), poison(ds_in), fill(dw, dw0), fill(db, db0); };
    reset();
    const std::initializer_list<int64_t> half_strides = {c.l * 2 * c.e, 2 * c.e, 1};
    const auto [xh, xd] = views(xz, 0, {c.b, c.l, c.e}, half_strides);
    const auto [dxh, dxd] = views(dxz, 0, {c.b, c.l, c.e}, half_strides);
    const auto [sh, sd] = views(s_in, 0, {c.b, c.e, km1}, {c.e * km1, km1, 1});
    const auto [dsh, dsd] = views(ds_in, 0, {c.b, c.e, km1}, {c.e * km1, km1, 1});
    const auto args = [&](bool dev, auto&& f) {
      const auto pick = [dev](const Pair& p) { return dev ? p.dev : p.host; };
      f(dev ? dxd : dxh, c.wants_dw ? pick(dw) : Tensor{}, c.wants_dw && c.bias ? pick(db) : Tensor{},
        c.dstate_in ? (dev ? dsd : dsh) : Tensor{}, pick(dout), dev ? xd : xh, pick(w), c.bias ? pick(bias) : Tensor{},
        c.state_in ? (dev ? sd : sh) : Tensor{});
    };
    const auto call = [&](bool dev) {
      args(dev, [&](Tensor a, Tensor b2, Tensor c2, Tensor d, Tensor e, Tensor f, Tensor g, Tensor h, Tensor i) {
        conv1d_causal_backward(a, b2, c2, d, e, f, g, h, i, c.silu, ctx);
      });
    };
    call(false);
    call(true);
    // Compare dx inside the view only (the other half of dxz stays poisoned on both sides).
    const auto got = download(dxz), ref = host_values(dxz);
    std::vector<float> g_dx, r_dx;
    for (int64_t r = 0; r < c.b * c.l; ++r)
      for (int64_t ch = 0; ch < c.e; ++ch)
        g_dx.push_back(got[size_t(r * 2 * c.e + ch)]), r_dx.push_back(ref[size_t(r * 2 * c.e + ch)]);
    EXPECT_CLOSE(g_dx.data(), r_dx.data(), r_dx.size(), kTolF32) << "dx";
    if (c.dstate_in && km1 > 0) expect_pair_close(ds_in, kTolF32, "dstate_in");
    if (c.wants_dw) expect_pair_close(dw, kTolF32, "dw");
    if (c.wants_dw && c.bias) expect_pair_close(db, kTolF32, "dbias");
    expect_deterministic(reset, [&] { call(true); }, {&dxz, &ds_in, &dw, &db});
  }
}

// v rounded to dtype t, as the halves of the raw device bytes hold it.
std::vector<uint16_t> half_bits(const std::vector<float>& v, DType t) {
  std::vector<uint16_t> h(v.size());
  convert_from_f32(h.data(), t, v.data(), v.size());
  return h;
}

std::vector<uint16_t> device_halves(const Pair& p) {
  const std::vector<char> b = device_bytes(p);
  std::vector<uint16_t> h(b.size() / 2);
  std::memcpy(h.data(), b.data(), b.size());
  return h;
}

// The half copies the training step multiplies: the norm's backward rounds its dresidual, the conv's backward
// writes dx rounded (into the first half of a (b, l, 2e) matrix), copy_convert_rows rounds a strided view beside
// it; each holds the bits of the op's f32 result rounded to nearest even.
TEST(CudaBackward, HalfCopiesAreTheRoundedResults) {
  SKIP_WITHOUT_GPU();
  Context ctx(4);
  for (DType ht : {DType::bf16, DType::f16}) {
    SCOPED_TRACE(dtype_name(ht));
    const int64_t m = 130, d = 768;
    Pair res = make_pair(DType::f32, {m, d}), dout = make_pair(DType::f32, {m, d}), w = make_pair(DType::f32, {d});
    Pair dres = make_pair(DType::f32, {m, d}), dres16 = make_pair(ht, {m, d + 8});
    fill(res, random_vector(size_t(m * d), 30, -2.0f, 2.0f)), fill(dout, random_vector(size_t(m * d), 31));
    fill(w, random_vector(size_t(d), 32, 0.5f, 1.5f)), fill(dres, random_vector(size_t(m * d), 33));
    poison(dres16);
    const auto [h16, d16] = views(dres16, 0, {m, d}, {d + 8, 1});
    rmsnorm_backward(dres.dev, d16, Tensor{}, dout.dev, res.dev, w.dev, 1e-5f, ctx);
    const std::vector<uint16_t> want = half_bits(download(dres), ht), got = device_halves(dres16);
    for (int64_t r = 0; r < m; ++r)
      ASSERT_EQ(0, std::memcmp(&got[size_t(r * (d + 8))], &want[size_t(r * d)], size_t(d) * 2)) << "dresidual row " << r;

    for (auto [b, l, e] : {std::tuple<int64_t, int64_t, int64_t>{2, 70, 1536}, {1, 5, 31}}) {
      SCOPED_TRACE("b,l,e=" + shape_name({b, l, e}));
      const int64_t k = 4, n = b * l * e;
      Pair xz = make_pair(DType::f32, {b, l, 2 * e}), dx = make_pair(DType::f32, {b, l, e});
      Pair dxz16 = make_pair(ht, {b, l, 2 * e}), dc = make_pair(DType::f32, {b, l, e}), cw = make_pair(DType::f32, {e, k});
      fill(xz, random_vector(size_t(2 * n), 34)), fill(dc, random_vector(size_t(n), 35));
      fill(cw, random_vector(size_t(e * k), 36));
      poison(dx), poison(dxz16);
      const auto [xh, xd] = views(xz, 0, {b, l, e}, {l * 2 * e, 2 * e, 1});
      const auto [dh, dd] = views(dxz16, 0, {b, l, e}, {l * 2 * e, 2 * e, 1});
      conv1d_causal_backward(dx.dev, Tensor{}, Tensor{}, Tensor{}, dc.dev, xd, cw.dev, Tensor{}, Tensor{}, true, ctx);
      conv1d_causal_backward(dd, Tensor{}, Tensor{}, Tensor{}, dc.dev, xd, cw.dev, Tensor{}, Tensor{}, true, ctx);
      // The second half: the f32 x rounded beside it by copy_convert_rows.
      Tensor src(static_cast<float*>(xz.dev.data) + e, DType::f32, {b * l, e}, Device::cuda);
      Tensor dst(static_cast<char*>(dxz16.dev.data) + size_t(e) * 2, ht, {b * l, e}, Device::cuda);
      src.stride[0] = 2 * e, dst.stride[0] = 2 * e;
      copy_convert_rows(dst, src, ctx);
      const std::vector<uint16_t> want_dx = half_bits(download(dx), ht), want_x = half_bits(host_values(xz), ht);
      const std::vector<uint16_t> all = device_halves(dxz16);
      for (int64_t r = 0; r < b * l; ++r) {
        ASSERT_EQ(0, std::memcmp(&all[size_t(r * 2 * e)], &want_dx[size_t(r * e)], size_t(e) * 2)) << "dx row " << r;
        ASSERT_EQ(0, std::memcmp(&all[size_t(r * 2 * e + e)], &want_x[size_t(r * 2 * e + e)], size_t(e) * 2))
            << "converted row " << r;
      }
    }
  }
}

TEST(CudaBackward, Conv1dWiderThanEightIsAnError) {
  SKIP_WITHOUT_GPU();
  Context ctx(1);
  Pair x = make_pair(DType::f32, {1, 3, 4}), w = make_pair(DType::f32, {4, 9}), dx = make_pair(DType::f32, {1, 3, 4});
  expect_error([&] { conv1d_causal_backward(dx.dev, {}, {}, {}, x.dev, x.dev, w.dev, {}, {}, true, ctx); },
               {"conv1d_causal_backward", "CUDA implementation does not handle", "k = 9"});
}

struct XentCase {
  int64_t m, d, v;
  bool strided, want_dx, want_dw;
};

TEST(CudaBackward, LinearCrossEntropyMatchesCpu) {
  SKIP_WITHOUT_GPU();
  Context ctx(16);
  const XentCase cases[] = {{1, 64, 1000, false, true, true},   {7, 33, 257, true, true, true},
                            {130, 96, 50280, true, true, true}, {40, 64, 300, false, false, true},
                            {50, 32, 300, false, true, false},  {1400, 24, 50280, false, true, true}};
  for (DType wt : {DType::f32, DType::bf16})
    for (const XentCase& c : cases) {
      SCOPED_TRACE(std::string(dtype_name(wt)) + " m,d,v=" + shape_name({c.m, c.d, c.v}));
      const int64_t ldx = c.strided ? c.d + 3 : c.d;
      Pair x = make_pair(DType::f32, {c.m, ldx}), w = make_pair(wt, {c.v, c.d}), w_ref = make_pair(DType::f32, {c.v, c.d});
      Pair dx = make_pair(DType::f32, {c.m, c.d}), dw = make_pair(DType::f32, {c.v, c.d});
      Pair tg = make_pair(DType::f32, {c.m});
      fill(x, random_vector(size_t(c.m * ldx), 24, -2.0f, 2.0f));
      std::vector<float> wv = random_vector(size_t(c.v * c.d), 25, -0.5f, 0.5f);
      round_to(wt, wv);
      fill(w, wv), fill(w_ref, wv);
      std::vector<int32_t> targets(static_cast<size_t>(c.m));
      for (int64_t r = 0; r < c.m; ++r) targets[size_t(r)] = r % 5 == 3 ? -1 : int32_t((r * 7919) % c.v);
      ASSERT_EQ(cudaSuccess, cudaMemcpy(tg.dev.data, targets.data(), size_t(c.m) * 4, cudaMemcpyHostToDevice));
      const std::vector<float> dw0 = random_vector(size_t(c.v * c.d), 26, -0.01f, 0.01f);
      const auto reset = [&] { poison(dx), fill(dw, dw0); };
      reset();
      const float scale = 1.0f / float(c.m);
      const auto [xh, xd] = views(x, 0, {c.m, c.d}, {ldx, 1});
      const double ref = linear_cross_entropy(c.want_dx ? dx.host : Tensor{}, c.want_dw ? dw.host : Tensor{}, xh,
                                              w_ref.host, targets.data(), scale, ctx);
      double got = 0;
      const auto run = [&] {
        got = linear_cross_entropy(c.want_dx ? dx.dev : Tensor{}, c.want_dw ? dw.dev : Tensor{}, xd, w.dev,
                                   tg.dev.ptr<int32_t>(), scale, ctx);
      };
      run();
      EXPECT_NEAR(got, ref, (wt == DType::f32 ? 1e-5 : 1e-2) * std::abs(ref)) << "loss";
      if (c.want_dx) expect_pair_close(dx, tol_for(wt), "dx");
      if (c.want_dw) expect_pair_close(dw, tol_for(wt), "dw");
      const double first = got;
      expect_deterministic(reset, run, {&dx, &dw});
      EXPECT_EQ(first, got) << "loss differs between two runs";
    }
}

TEST(CudaBackward, MixedDevicesAreAnError) {
  SKIP_WITHOUT_GPU();
  Context ctx(1);
  Pair x = make_pair(DType::f32, {2, 8}), w = make_pair(DType::f32, {4, 8}), dy = make_pair(DType::f32, {2, 4});
  expect_error([&] { linear_backward(x.dev, w.host, Tensor{}, dy.dev, x.dev, w.dev, ctx); },
               {"linear_backward", "dw is on cpu"});
}

// The training bookkeeping ops on the GPU against the CPU: elementwise ops and conversions bit for bit
// (-exp to within a few ulps), the sum of squares and AdamW closely, each deterministic from run to run.
TEST(CudaTrainOps, MatchCpu) {
  SKIP_WITHOUT_GPU();
  Context ctx(4);
  for (int64_t n : {int64_t(1), int64_t(37), int64_t(70001), int64_t(3) << 20}) {
    SCOPED_TRACE("n=" + std::to_string(n));
    const std::vector<float> a0 = random_vector(size_t(n), 30), b0 = random_vector(size_t(n), 31, -3.0f, 3.0f);
    Pair a = make_pair(DType::f32, {n}), b = make_pair(DType::f32, {n}), dst = make_pair(DType::f32, {n});
    fill(a, a0), fill(b, b0);
    const auto both = [&](const std::function<void(const std::function<Tensor(const Pair&)>&)>& f) {
      f([](const Pair& p) { return p.host; });
      f([](const Pair& p) { return p.dev; });
    };
    fill(dst, b0);
    both([&](auto pick) { add_into(pick(dst), pick(a), ctx); });
    both([&](auto pick) { add_product_into(pick(dst), pick(a), pick(b), ctx); });
    both([&](auto pick) { scale_inplace(pick(dst), 0.3f, ctx); });
    expect_pair_close(dst, 1e-6, "add_into, add_product_into, scale_inplace");
    both([&](auto pick) { neg_exp(pick(dst), pick(b), ctx); });
    expect_pair_close(dst, 1e-6, "neg_exp");
    both([&](auto pick) { fill_zero(pick(dst), ctx); });
    EXPECT_EQ(0.0, sum_squares(dst.dev, 1.0f, ctx)) << "fill_zero";
    for (DType t : {DType::bf16, DType::f16}) {
      Pair h = make_pair(t, {n});
      both([&](auto pick) { copy_convert(pick(h), pick(b), ctx); });
      const std::vector<char> got = device_bytes(h);
      EXPECT_EQ(0, std::memcmp(got.data(), h.host_buf.data(), got.size())) << "copy_convert to " << dtype_name(t);
    }
    const double ss_cpu = sum_squares(b.host, 1.0f, ctx), ss_gpu = sum_squares(b.dev, 1.0f, ctx);
    EXPECT_NEAR(ss_gpu, ss_cpu, 1e-12 * ss_cpu) << "sum_squares";
    EXPECT_EQ(ss_gpu, sum_squares(b.dev, 1.0f, ctx)) << "sum_squares differs between two runs";

    Pair p = make_pair(DType::f32, {n}), m = make_pair(DType::f32, {n}), v = make_pair(DType::f32, {n});
    const std::vector<float> p0 = random_vector(size_t(n), 32), m0 = random_vector(size_t(n), 33, -0.1f, 0.1f);
    const std::vector<float> v0 = random_vector(size_t(n), 34, 0.0f, 0.01f);
    const AdamWStep s{3e-4, 0.9, 0.95, 1e-8, 0.1, 1 - 0.9 * 0.9 * 0.9, 1 - 0.95 * 0.95 * 0.95, {}};
    const auto reset = [&] { fill(p, p0), fill(m, m0), fill(v, v0); };
    reset();
    both([&](auto pick) { adamw_update(pick(p), pick(a), pick(m), pick(v), Tensor{}, s, ctx); });
    expect_pair_close(p, 1e-6, "adamw param");
    expect_pair_close(m, 1e-6, "adamw m");
    expect_pair_close(v, 1e-6, "adamw v");
    expect_deterministic(reset, [&] { adamw_update(p.dev, a.dev, m.dev, v.dev, Tensor{}, s, ctx); }, {&p, &m, &v});
  }
}

}  // namespace
}  // namespace mambacpp::test
