// Every bad argument of the CPU ops (ops.h) ends in an Error naming the op, the tensor or option and the
// shapes, dtypes or devices involved; a few good calls beside them show the checks refuse only what is wrong.
#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

#include "core/error.h"
#include "ops/ops.h"
#include "support/test_util.h"

namespace mambacpp {
namespace {

using test::expect_error;

Tensor vec_tensor(std::vector<float>& v) { return Tensor(v.data(), DType::f32, {int64_t(v.size())}); }

TEST(OpErrors, LinearNamesTheBadArgument) {
  std::vector<float> x(6 * 4, 1.0f), w(5 * 4, 1.0f), y(6 * 5), bias(5);
  std::vector<uint16_t> wh(5 * 4);
  Context ctx(1);
  Tensor tx(x.data(), DType::f32, {6, 4}), tw(w.data(), DType::f32, {5, 4}), ty(y.data(), DType::f32, {6, 5});
  expect_error([&] { linear_forward(ty, tx, Tensor(w.data(), DType::f32, {4, 5}), Tensor(), ctx); },
               {"linear_forward", "w", "[4, 5]", "x"});
  expect_error([&] { linear_forward(Tensor(y.data(), DType::f32, {6, 4}), tx, tw, Tensor(), ctx); },
               {"linear_forward", "y", "[6, 4]"});
  expect_error([&] { linear_forward(ty, tx, tw, Tensor(bias.data(), DType::f32, {4}), ctx); },
               {"linear_forward", "bias", "[5]", "[4]"});
  expect_error([&] { linear_forward(ty, Tensor(wh.data(), DType::bf16, {5, 4}), tw, Tensor(), ctx); },
               {"linear_forward", "x", "f32", "bf16"});
  expect_error([&] { linear_forward(ty, tx, Tensor(), Tensor(), ctx); }, {"linear_forward", "w", "undefined"});
  expect_error([&] { linear_forward(Tensor(x.data(), DType::f32, {6, 5}), tx, tw, Tensor(), ctx); },
               {"linear_forward", "overlap"});
  Tensor strided_w = tw;
  strided_w.stride[1] = 2;
  expect_error([&] { linear_forward(ty, tx, strided_w, Tensor(), ctx); }, {"linear_forward", "w", "contiguous"});
  Tensor cuda_x(x.data(), DType::f32, {6, 4}, Device::cuda);
  expect_error([&] { linear_forward(ty, cuda_x, tw, Tensor(), ctx); }, {"linear_forward", "cuda"});
  // A half y is a cuda product's: the CPU writes f32.
  std::vector<uint16_t> yh(6 * 5);
  expect_error([&] { linear_forward(Tensor(yh.data(), DType::bf16, {6, 5}), tx, Tensor(wh.data(), DType::bf16, {5, 4}),
                                    Tensor(), ctx); },
               {"linear_forward", "y is bf16", "f32"});
}

TEST(OpErrors, EmbeddingNamesTheBadId) {
  std::vector<float> table(10 * 3), out(3 * 3);
  const int32_t ids[] = {1, 10, 2};
  const int32_t negative[] = {-1};
  Context ctx(1);
  Tensor tt(table.data(), DType::f32, {10, 3});
  expect_error([&] { embedding_forward(Tensor(out.data(), DType::f32, {3, 3}), ids, 3, tt, ctx); },
               {"embedding_forward", "ids[1] = 10", "[0, 10)"});
  expect_error([&] { embedding_forward(Tensor(out.data(), DType::f32, {1, 3}), negative, 1, tt, ctx); },
               {"ids[0] = -1"});
  expect_error([&] { embedding_forward(Tensor(out.data(), DType::f32, {3, 2}), ids, 3, tt, ctx); },
               {"embedding_forward", "out", "[3, 2]"});
}

TEST(OpErrors, RmsNormRejectsAliasingAndShapes) {
  std::vector<float> a(4 * 8, 1.0f), b(4 * 8, 1.0f), w(8, 1.0f);
  Context ctx(1);
  Tensor ta(a.data(), DType::f32, {4, 8}), tb(b.data(), DType::f32, {4, 8});
  expect_error([&] { rmsnorm_forward(ta, ta, Tensor(), vec_tensor(w), 1e-5f, ctx); },
               {"rmsnorm_forward", "out may not overlap residual"});
  expect_error([&] { rmsnorm_forward(ta, tb, Tensor(), Tensor(w.data(), DType::f32, {7}), 1e-5f, ctx); },
               {"rmsnorm_forward", "w", "[8]", "[7]"});
  expect_error([&] { rmsnorm_forward(ta, tb, Tensor(b.data(), DType::f32, {8, 4}), vec_tensor(w), 1e-5f, ctx); },
               {"rmsnorm_forward", "x", "[8, 4]"});
  expect_error([&] { rmsnorm_forward(ta, tb, Tensor(), vec_tensor(w), -1.0f, ctx); }, {"rmsnorm_forward", "eps"});
  std::vector<float> c(4 * 8, 1.0f);
  expect_error([&] { rmsnorm_forward(ta, tb, tb, Tensor(), vec_tensor(w), 1e-5f, ctx); },
               {"rmsnorm_forward", "residual_out may not overlap residual_in"});
  expect_error([&] { rmsnorm_forward(ta, tb, Tensor(c.data(), DType::f32, {4, 7}), Tensor(), vec_tensor(w), 1e-5f, ctx); },
               {"rmsnorm_forward", "residual_in", "[4, 7]"});
}

TEST(OpErrors, Conv1dChecksStateAndWidth) {
  std::vector<float> x(2 * 3 * 5), out(2 * 3 * 5), w(5 * 20), st(2 * 5 * 3);
  Context ctx(1);
  Tensor tx(x.data(), DType::f32, {2, 3, 5}), to(out.data(), DType::f32, {2, 3, 5});
  Tensor tw(w.data(), DType::f32, {5, 4});
  expect_error([&] { conv1d_causal_forward(to, Tensor(), tx, tw, Tensor(), Tensor(st.data(), DType::f32, {2, 5, 4}), true, ctx); },
               {"conv1d_causal_forward", "state_in", "[2, 5, 3]", "[2, 5, 4]"});
  expect_error([&] { conv1d_causal_forward(to, Tensor(), tx, Tensor(w.data(), DType::f32, {5, 20}), Tensor(), Tensor(), true, ctx); },
               {"conv1d_causal_forward", "k = 20"});
  expect_error([&] { conv1d_causal_forward(Tensor(out.data(), DType::f32, {2, 5, 3}), Tensor(), tx, tw, Tensor(), Tensor(), true, ctx); },
               {"conv1d_causal_forward", "out", "[2, 3, 5]"});
  // out may be left out only where out_half takes the output.
  expect_error([&] { conv1d_causal_forward(Tensor(), Tensor(), Tensor(), tx, tw, Tensor(), Tensor(), true, ctx); },
               {"conv1d_causal_forward", "out", "undefined"});
  std::vector<uint16_t> half(x.size());
  EXPECT_NO_THROW(conv1d_causal_forward(Tensor(), Tensor(half.data(), DType::bf16, {2, 3, 5}), Tensor(), tx, tw,
                                        Tensor(), Tensor(), true, ctx));
  // x may be half too (widened as it is read).
  std::vector<uint16_t> xh(x.size());
  EXPECT_NO_THROW(conv1d_causal_forward(to, Tensor(), Tensor(xh.data(), DType::f16, {2, 3, 5}), tw, Tensor(),
                                        Tensor(), true, ctx));
  expect_error([&] { conv1d_causal_forward(to, Tensor(), Tensor(xh.data(), DType::f16, {2, 5, 3}), tw, Tensor(),
                                           Tensor(), true, ctx); },
               {"conv1d_causal_forward", "w", "[3, 4]"});
}

TEST(OpErrors, ScanNamesTheBadArgument) {
  const int64_t b = 1, l = 2, e = 3, n = 4;
  std::vector<float> u(b * l * e), dt(b * l * e), y(b * l * e), B(b * l * n), C(b * l * n), A(e * n), st(b * e * n);
  Context ctx(1);
  ScanArgs a;
  a.y = Tensor(y.data(), DType::f32, {b, l, e});
  a.u = Tensor(u.data(), DType::f32, {b, l, e});
  a.dt = Tensor(dt.data(), DType::f32, {b, l, e});
  a.B = Tensor(B.data(), DType::f32, {b, l, n});
  a.C = Tensor(C.data(), DType::f32, {b, l, n});
  a.A = Tensor(A.data(), DType::f32, {e, n});
  ScanArgs bad = a;
  bad.C = Tensor(C.data(), DType::f32, {b, l, n - 1});
  expect_error([&] { selective_scan_forward(bad, ctx); }, {"selective_scan_forward", "C", "[1, 2, 4]", "[1, 2, 3]"});
  bad = a;
  bad.state_in = Tensor(st.data(), DType::f32, {b, n, e});
  expect_error([&] { selective_scan_forward(bad, ctx); }, {"selective_scan_forward", "state_in", "[1, 3, 4]"});
  bad = a;
  bad.chunk_states = Tensor(st.data(), DType::f32, {b, 1, e, n});  // (n, e) swapped
  expect_error([&] { selective_scan_forward(bad, ctx); }, {"selective_scan_forward", "chunk_states", "[1, 1, 4, 3]"});
  bad = a;
  bad.D = Tensor(st.data(), DType::bf16, {e});
  expect_error([&] { selective_scan_forward(bad, ctx); }, {"selective_scan_forward", "D", "f32", "bf16"});
  bad = a;
  bad.dt = Tensor();
  expect_error([&] { selective_scan_forward(bad, ctx); }, {"selective_scan_forward", "dt", "undefined"});
  bad = a;
  bad.u.device = Device::cuda;
  expect_error([&] { selective_scan_forward(bad, ctx); }, {"selective_scan_forward", "u is on cuda", "y is on cpu"});
  bad = a;
  bad.B = Tensor(A.data(), DType::f32, {e, n - 1});
  expect_error([&] { selective_scan_forward(bad, ctx); }, {"selective_scan_forward", "B (time-invariant)", "[3, 4]"});
  // A half u goes with f32 dt, B, C and z only.
  std::vector<uint16_t> uh(b * l * e), dth(b * l * e);
  bad = a;
  bad.u = Tensor(uh.data(), DType::bf16, {b, l, e}), bad.dt = Tensor(dth.data(), DType::bf16, {b, l, e});
  expect_error([&] { selective_scan_forward(bad, ctx); }, {"selective_scan_forward", "dt", "f32", "bf16"});
  bad.dt = a.dt;
  EXPECT_NO_THROW(selective_scan_forward(bad, ctx));
  bad = a;
  bad.C = Tensor(A.data(), DType::f32, {e, n});
  EXPECT_NO_THROW(selective_scan_forward(bad, ctx));
  EXPECT_NO_THROW(selective_scan_forward(a, ctx));
}

}  // namespace
}  // namespace mambacpp
