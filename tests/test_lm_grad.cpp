// Whole-model gradients against transformers: on each golden checkpoint, the loss and the gradient of every
// parameter recorded by scripts/make_golden.py (float64, MambaForCausalLM with labels = input_ids) must match
// lm_loss in f32 to a relative error of 1e-4 (relative L2 per tensor). Also: gradients are added to what
// ParamGrads holds, results are bitwise equal across thread counts, and bad inputs are refused.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "core/context.h"
#include "core/error.h"
#include "model/lm_train.h"
#include "model/loader.h"
#include "support/golden_model.h"
#include "support/test_util.h"

namespace mambacpp::test {
namespace {

constexpr double kTolModel = 1e-4;

class LmGradTest : public ::testing::TestWithParam<std::string> {
 protected:
  GoldenModel g{GetParam()};
  ModelWeights w = load_model(g.dir, DType::f32);
  std::vector<int32_t> ids;
  int64_t b = 0, l = 0;

  void SetUp() override {
    const auto rows = g.expected["loss"]["input_ids"].get<std::vector<std::vector<int32_t>>>();
    b = int64_t(rows.size()), l = int64_t(rows[0].size());
    for (const auto& r : rows) ids.insert(ids.end(), r.begin(), r.end());
  }
};

TEST_P(LmGradTest, LossAndEveryGradientMatchTransformers) {
  Context ctx(2);
  ParamGrads grads(w);
  TrainWorkspace ws;
  const double loss = lm_loss(&grads, w, ids.data(), b, l, ws, ctx);
  const double want = g.expected["loss"]["value"].get<double>();
  EXPECT_LE(std::fabs(loss - want) / std::fabs(want), kTolModel) << "loss " << loss << " vs " << want;
  double worst = 0;
  std::string worst_name;
  for (size_t i = 0; i < grads.names.size(); ++i) {
    const Tensor ref = g.tensors.get("grad." + grads.names[i]);
    ASSERT_EQ(ref.numel(), grads.grads[i].numel()) << grads.names[i];
    const Closeness cl = compare(grads.grads[i].f32(), ref.f32(), size_t(ref.numel()));
    EXPECT_LE(cl.rel_l2, kTolModel) << grads.names[i] << ": " << cl.describe();
    if (cl.rel_l2 > worst) worst = cl.rel_l2, worst_name = grads.names[i];
  }
  std::printf("%s: loss %.9f (transformers %.9f), worst gradient %s rel_l2 %.3g\n", GetParam().c_str(), loss, want,
              worst_name.c_str(), worst);
}

TEST_P(LmGradTest, GradientsAccumulateAndAreBitwiseEqualForAnyThreadCount) {
  TrainWorkspace ws;
  Context one(1), two(2);
  ParamGrads once(w), twice(w), threaded(w);
  const double a = lm_loss(&once, w, ids.data(), b, l, ws, one);
  lm_loss(&twice, w, ids.data(), b, l, ws, one);
  lm_loss(&twice, w, ids.data(), b, l, ws, one);
  const double c = lm_loss(&threaded, w, ids.data(), b, l, ws, two);
  EXPECT_EQ(a, c);
  EXPECT_EQ(std::memcmp(once.storage.data(), threaded.storage.data(), once.storage.bytes()), 0);
  twice.scale(0.5f);  // (g + g) / 2 = g up to the rounding of sums that one call adds in several parts
  EXPECT_CLOSE(twice.storage.as<float>(), once.storage.as<float>(), once.storage.bytes() / sizeof(float), 1e-6);
  EXPECT_EQ(lm_loss(nullptr, w, ids.data(), b, l, ws, two), a);
  EXPECT_GT(once.norm(), 0.0);
}

INSTANTIATE_TEST_SUITE_P(Golden, LmGradTest, ::testing::ValuesIn(golden_model_names()));

TEST(LmLoss, RefusesBadInputs) {
  GoldenModel g("tied");
  const ModelWeights w = load_model(g.dir, DType::f32);
  Context ctx(1);
  TrainWorkspace ws;
  std::vector<int32_t> ids = {1, 2, 3, 5000};
  expect_error([&] { lm_loss(nullptr, w, ids.data(), 1, 4, ws, ctx); }, {"token id 5000", "position 3"});
  expect_error([&] { lm_loss(nullptr, w, ids.data(), 1, 1, ws, ctx); }, {"at least 2 tokens"});
  const ModelWeights half = load_model(g.dir, DType::bf16);
  expect_error([&] { lm_loss(nullptr, half, ids.data(), 1, 3, ws, ctx); }, {"f32 weights", "bf16"});
}

}  // namespace
}  // namespace mambacpp::test
