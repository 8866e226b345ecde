// The selection ablations (config.h: s6, lti, dt, b, c) as whole models, on a tiny random configuration: the
// forward pass against a double-precision forward written out here from the reference ops (support/), recurrent
// steps and chunks against the parallel forward, and lm_loss's gradient of every parameter against central
// finite differences of the double-precision loss.
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <string>
#include <vector>

#include "core/context.h"
#include "model/lm.h"
#include "model/lm_train.h"
#include "support/reference_backward.h"
#include "support/test_util.h"

namespace mambacpp::test {
namespace {

using ref::Vd;

MambaConfig tiny_config(const std::string& variant) {
  MambaConfig c;
  c.d_model = 8;
  c.n_layer = 2;
  c.vocab_size = 11;
  c.d_state = 3;
  c.d_conv = 4;
  c.expand = 2;
  c.d_inner = 16;
  c.dt_rank = 2;
  c.set_ssm_variant(variant);
  return c;
}

// Every parameter in double, by checkpoint name.
using Params = std::map<std::string, Vd>;

Params to_double(const ModelWeights& w) {
  Params p;
  for (const auto& [name, t] : w.named_parameters())
    p[name] = Vd(t.f32(), t.f32() + t.numel());
  return p;
}

// Columns [c0, c0 + width) of an (m, cols) matrix.
Vd columns(const Vd& x, int64_t m, int64_t cols, int64_t c0, int64_t width) {
  Vd out(size_t(m * width));
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < width; ++j) out[size_t(i * width + j)] = x[size_t(i * cols + c0 + j)];
  return out;
}

// The mixer of layer `i` on hidden (m, d) rows of b sequences of l tokens, in double.
Vd mixer_d(const MambaConfig& c, Params& p, int i, const Vd& hidden, int64_t b, int64_t l) {
  const int64_t m = b * l, d = c.d_model, e = c.d_inner, n = c.d_state, r = c.dt_rank, x = c.x_proj_rows();
  const std::string pre = "backbone.layers." + std::to_string(i) + ".mixer.";
  const Vd xz = ref::linear_d(hidden, p[pre + "in_proj.weight"], {}, m, d, 2 * e);
  const Vd xc = ref::conv1d_d(columns(xz, m, 2 * e, 0, e), p[pre + "conv1d.weight"], p[pre + "conv1d.bias"], {}, b,
                              l, e, c.d_conv, true);
  const Vd xdbl = x > 0 ? ref::linear_d(xc, p[pre + "x_proj.weight"], {}, m, e, x) : Vd{};
  ref::ScanD s;
  s.b = b, s.l = l, s.e = e, s.n = n;
  s.u = xc;
  s.z = columns(xz, m, 2 * e, e, e);
  s.dt = c.selective_dt ? ref::linear_d(columns(xdbl, m, x, 0, r), p[pre + "dt_proj.weight"], {}, m, r, e)
                        : Vd(size_t(m * e), 0.0);
  s.dt_bias = p[pre + "dt_proj.bias"];
  int64_t col = c.selective_dt ? r : 0;
  s.B_lti = !c.selective_B, s.C_lti = !c.selective_C;
  s.B = c.selective_B ? columns(xdbl, m, x, col, n) : p[pre + "B"];
  col += c.selective_B ? n : 0;
  s.C = c.selective_C ? columns(xdbl, m, x, col, n) : p[pre + "C"];
  s.A = p[pre + "A_log"];
  for (double& a : s.A) a = -std::exp(a);
  s.D = p[pre + "D"];
  Vd y = ref::scan_d(s);
  y.resize(size_t(m * e));
  return ref::linear_d(y, p[pre + "out_proj.weight"], {}, m, e, d);
}

// The final hidden rows (m, d), normalised, in double.
Vd hidden_d(const MambaConfig& c, Params& p, const std::vector<int32_t>& ids, int64_t b, int64_t l) {
  const int64_t m = b * l, d = c.d_model;
  const Vd& emb = p["backbone.embeddings.weight"];
  Vd residual(size_t(m * d));
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < d; ++j) residual[size_t(i * d + j)] = emb[size_t(ids[size_t(i)] * d + j)];
  for (int i = 0; i < int(c.n_layer); ++i) {
    const Vd hidden =
        ref::rmsnorm_d(residual, {}, p["backbone.layers." + std::to_string(i) + ".norm.weight"], m, d, c.norm_eps);
    const Vd out = mixer_d(c, p, i, hidden, b, l);
    for (size_t j = 0; j < residual.size(); ++j) residual[j] += out[j];
  }
  return ref::rmsnorm_d(residual, {}, p["backbone.norm_f.weight"], m, d, c.norm_eps);
}

// Mean next-token cross-entropy over b sequences of l ids (tied head), in double.
double loss_d(const MambaConfig& c, Params& p, const std::vector<int32_t>& ids, int64_t b, int64_t l) {
  std::vector<int32_t> targets(ids.size(), -1);
  for (int64_t i = 0; i < b * l; ++i)
    if (i % l != l - 1) targets[size_t(i)] = ids[size_t(i + 1)];
  const Vd hidden = hidden_d(c, p, ids, b, l);
  return ref::cross_entropy_d(hidden, p["backbone.embeddings.weight"], targets, b * l, c.d_model, c.vocab_size) /
         double(b * (l - 1));
}

// Logits (b, l, v) of lm_forward over all positions, in chunks of `chunk` tokens.
std::vector<float> forward_all(const ModelWeights& w, const std::vector<int32_t>& ids, int64_t b, int64_t l,
                               int64_t chunk, Context& ctx) {
  std::vector<float> logits(size_t(b * l * w.config.vocab_size), std::nanf(""));
  RecurrentState state(w.config, b);
  Workspace ws;
  ForwardOptions fo;
  fo.logits_for = LogitsFor::all_positions;
  fo.chunk = chunk;
  lm_forward(Tensor(logits.data(), DType::f32, {b, l, w.config.vocab_size}), state, w, ids.data(), l, fo, ws, ctx);
  return logits;
}

class Selectivity : public ::testing::TestWithParam<std::string> {
 protected:
  MambaConfig c = tiny_config(GetParam());
  ModelWeights w = ModelWeights::random(c, DType::f32, 17);
  const int64_t b = 2, l = 9;
  std::vector<int32_t> ids = {1, 4, 7, 2, 9, 0, 3, 3, 10, 5, 6, 8, 1, 2, 0, 7, 4, 9};
  Context ctx{2};
};

TEST_P(Selectivity, ForwardMatchesDoublePrecisionModel) {
  EXPECT_EQ(w.config.ssm_variant(), GetParam());
  Params p = to_double(w);
  const Vd logits = ref::linear_d(hidden_d(c, p, ids, b, l), p["backbone.embeddings.weight"], {}, b * l, c.d_model,
                                  c.vocab_size);
  const std::vector<float> got = forward_all(w, ids, b, l, 256, ctx);
  EXPECT_CLOSE(got.data(), logits.data(), logits.size(), 1e-5);
}

TEST_P(Selectivity, RecurrentStepsAndChunksEqualParallelForward) {
  const int64_t v = c.vocab_size;
  const std::vector<float> parallel = forward_all(w, ids, b, l, 256, ctx);
  const std::vector<float> chunked = forward_all(w, ids, b, l, 4, ctx);
  EXPECT_CLOSE(chunked.data(), parallel.data(), parallel.size(), 1e-6);
  RecurrentState state(c, b);
  Workspace ws;
  std::vector<float> step(size_t(b * v)), stepped(size_t(b * l * v));
  for (int64_t t = 0; t < l; ++t) {
    const int32_t tok[2] = {ids[size_t(t)], ids[size_t(l + t)]};
    lm_forward(Tensor(step.data(), DType::f32, {b, v}), state, w, tok, 1, ForwardOptions{}, ws, ctx);
    for (int64_t bi = 0; bi < b; ++bi) std::copy_n(step.begin() + bi * v, v, stepped.begin() + (bi * l + t) * v);
  }
  EXPECT_CLOSE(stepped.data(), parallel.data(), parallel.size(), 1e-5);
}

TEST_P(Selectivity, LossGradientsMatchFiniteDifferences) {
  TrainWorkspace ws;
  ParamGrads grads(w);
  const double loss = lm_loss(&grads, w, ids.data(), b, l, ws, ctx);
  Params p = to_double(w);
  EXPECT_NEAR(loss, loss_d(c, p, ids, b, l), 1e-5 * loss);
  const auto f = [&] { return Vd{loss_d(c, p, ids, b, l)}; };
  for (size_t i = 0; i < grads.names.size(); ++i) {
    const std::string& name = grads.names[i];
    const Vd want = ref::numeric_grad(f, p[name], {1.0});
    // Relative error, except for gradients as small as the central difference's own rounding (~1e-10 here:
    // A_log's, scaled by the small initial Δ).
    const Closeness cl = compare(grads.grads[i].f32(), want.data(), want.size());
    EXPECT_TRUE(!cl.any_nan && (cl.rel_l2 <= 2e-4 || cl.max_abs <= 2e-9)) << name << ": " << cl.describe();
  }
}

INSTANTIATE_TEST_SUITE_P(Variants, Selectivity, ::testing::Values("s6", "lti", "dt", "b", "c"));

}  // namespace
}  // namespace mambacpp::test
