// Tests of the optimiser pieces of training: AdamW against a step computed by hand in double, the weight-decay
// grouping, global gradient-norm clipping, and the warm-up + cosine learning-rate schedule.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "core/context.h"
#include "core/error.h"
#include "model/presets.h"
#include "model/weights.h"
#include "support/test_util.h"
#include "train/adamw.h"
#include "train/schedule.h"

namespace mambacpp {
namespace {

using test::expect_error;

// Two steps of AdamW on a decayed matrix and an undecayed vector, against the update written out in double.
TEST(TrainAdamW, MatchesHandComputedStepsInDouble) {
  Context ctx(1);
  std::vector<float> w = {0.5f, -1.0f, 2.0f, 0.25f}, d = {1.0f, -0.5f};
  const std::vector<std::vector<float>> gw = {{0.1f, -0.2f, 0.3f, 0.0f}, {-0.05f, 0.4f, 0.1f, 1.0f}};
  const std::vector<std::vector<float>> gd = {{0.2f, -0.3f}, {0.01f, 0.02f}};
  AdamWOptions opt;
  opt.beta1 = 0.9, opt.beta2 = 0.95, opt.eps = 1e-8, opt.weight_decay = 0.1;
  AdamW adam({{"backbone.layers.0.mixer.in_proj.weight", Tensor(w.data(), DType::f32, {2, 2})},
              {"backbone.layers.0.mixer.D", Tensor(d.data(), DType::f32, {2})}},
             opt);
  std::vector<double> rw(w.begin(), w.end()), rd(d.begin(), d.end());
  std::vector<double> mw(4, 0), vw(4, 0), md(2, 0), vd(2, 0);
  const double lrs[2] = {1e-2, 3e-3};
  for (int t = 1; t <= 2; ++t) {
    const double lr = lrs[t - 1];
    std::vector<float> g0 = gw[t - 1], g1 = gd[t - 1];
    adam.step({Tensor(g0.data(), DType::f32, {2, 2}), Tensor(g1.data(), DType::f32, {2})}, lr, ctx);
    const auto update = [&](std::vector<double>& p, std::vector<double>& m, std::vector<double>& v,
                            const std::vector<float>& g, double wd) {
      for (size_t i = 0; i < p.size(); ++i) {
        p[i] *= 1 - lr * wd;
        m[i] = 0.9 * m[i] + 0.1 * g[i];
        v[i] = 0.95 * v[i] + 0.05 * double(g[i]) * g[i];
        const double mhat = m[i] / (1 - std::pow(0.9, t)), vhat = v[i] / (1 - std::pow(0.95, t));
        p[i] -= lr * mhat / (std::sqrt(vhat) + 1e-8);
      }
    };
    update(rw, mw, vw, gw[t - 1], 0.1);
    update(rd, md, vd, gd[t - 1], 0.0);
  }
  EXPECT_EQ(adam.steps(), 2);
  for (size_t i = 0; i < 4; ++i) EXPECT_NEAR(w[i], rw[i], 1e-6) << "matrix element " << i;
  for (size_t i = 0; i < 2; ++i) EXPECT_NEAR(d[i], rd[i], 1e-6) << "D element " << i;
}

TEST(TrainAdamW, DecaysMatricesOnlyAsTheReference) {
  const ModelWeights w = ModelWeights::random(preset_config("tiny"), DType::f32, 1);
  std::vector<std::string> decayed;
  for (const auto& [name, t] : w.named_parameters())
    if (decays(name, t)) decayed.push_back(name);
  // Per layer: in_proj, conv1d, x_proj, dt_proj and out_proj weights; never A_log, D, biases, norms, embedding.
  EXPECT_EQ(decayed.size(), size_t(5 * 4));
  for (const std::string& n : decayed) {
    EXPECT_EQ(n.find("A_log"), std::string::npos);
    EXPECT_EQ(n.find("bias"), std::string::npos);
    EXPECT_EQ(n.find("norm"), std::string::npos);
    EXPECT_EQ(n.find("embedding"), std::string::npos);
  }
  // A time-invariant SSM's B and C (e, n) are SSM parameters: not decayed, like A_log.
  MambaConfig lti = preset_config("tiny");
  lti.set_ssm_variant("lti");
  size_t count = 0;
  for (const auto& [name, t] : ModelWeights::random(lti, DType::f32, 1).named_parameters()) {
    count += decays(name, t);
    if (name.ends_with("mixer.B") || name.ends_with("mixer.C")) {
      EXPECT_FALSE(decays(name, t)) << name;
    }
  }
  EXPECT_EQ(count, size_t(3 * 4));  // in_proj, conv1d, out_proj
}

TEST(TrainAdamW, StateRoundTripsAndIsChecked) {
  Context ctx(1);
  std::vector<float> w = {1, 2, 3}, g = {0.5f, -0.5f, 1};
  AdamW a({{"x.weight", Tensor(w.data(), DType::f32, {3})}}, AdamWOptions{});
  a.step({Tensor(g.data(), DType::f32, {3})}, 0.1, ctx);
  std::vector<float> w2 = {1, 2, 3};
  AdamW b({{"x.weight", Tensor(w2.data(), DType::f32, {3})}}, AdamWOptions{});
  b.load_state(a.state(), a.steps(), "state.safetensors");
  w2 = w;
  a.step({Tensor(g.data(), DType::f32, {3})}, 0.1, ctx);
  b.step({Tensor(g.data(), DType::f32, {3})}, 0.1, ctx);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(w[i], w2[i]);
  expect_error([&] { b.load_state({}, 1, "state.safetensors"); }, {"state.safetensors", "exp_avg.x.weight"});
  AdamWOptions bad;
  bad.beta2 = 1.0;
  expect_error([&] { AdamW({{"x.weight", Tensor(w.data(), DType::f32, {3})}}, bad); }, {"--beta2"});
}

TEST(TrainClip, ScalesToTheGlobalNorm) {
  Context ctx(1);
  std::vector<float> g = {3, 0, 0, 4};  // two gradients of two elements, held in one block as ParamGrads does
  const Tensor all(g.data(), DType::f32, {4});
  EXPECT_DOUBLE_EQ(clip_grad_norm(all, 10.0, ctx), 5.0);
  EXPECT_EQ(g[0], 3.0f);  // under the limit: untouched
  EXPECT_DOUBLE_EQ(clip_grad_norm(all, 1.0, ctx), 5.0);
  EXPECT_NEAR(std::hypot(g[0], g[3]), 1.0, 1e-6);
  EXPECT_NEAR(g[0] / g[3], 0.75, 1e-6);
  g[0] = NAN;
  EXPECT_TRUE(std::isnan(clip_grad_norm(all, 1.0, ctx)));
}

TEST(TrainSchedule, WarmupThenCosineToTheFloor) {
  const LrSchedule s{2e-3, 100, 2000, 0.1};
  EXPECT_DOUBLE_EQ(s.at(0), 2e-5);
  EXPECT_DOUBLE_EQ(s.at(49), 1e-3);
  EXPECT_DOUBLE_EQ(s.at(99), 2e-3);
  EXPECT_DOUBLE_EQ(s.at(100), 2e-3);
  EXPECT_NEAR(s.at(100 + 1899 / 2), 0.5 * (2e-3 + 2e-4), 2e-6);
  EXPECT_NEAR(s.at(1999), 2e-4, 1e-15);
  for (int64_t i = 100; i < 1999; ++i) EXPECT_GE(s.at(i), s.at(i + 1)) << i;
  const LrSchedule flat{1e-3, 0, 1, 0.1};
  EXPECT_DOUBLE_EQ(flat.at(0), 1e-4);
  expect_error([] { LrSchedule{1e-3, 20, 10, 0.1}.validate(); }, {"--warmup"});
  expect_error([] { LrSchedule{-1, 0, 10, 0.1}.validate(); }, {"--lr"});
  expect_error([] { LrSchedule{1e-3, 0, 0, 0.1}.validate(); }, {"--steps"});
}

}  // namespace
}  // namespace mambacpp
