// Whole-model gradients against transformers: on each golden checkpoint, the loss and the gradient of every
// parameter recorded by scripts/make_golden.py (float64, MambaForCausalLM with labels = input_ids) must match
// lm_loss in f32 to a relative error of 1e-4 (relative L2 per tensor). Also: gradients are added to what
// ParamGrads holds, results are bitwise equal across thread counts, packed documents with state resets equal
// the documents run apart, and bad inputs are refused.
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

TEST_P(LmGradTest, GradientsAccumulateAreBitwiseEqualForAnyThreadCountAndAgreeInGroups) {
  TrainWorkspace ws;
  Context one(1), two(2);
  ParamGrads once(w), twice(w), threaded(w);
  const double a = lm_loss(&once, w, ids.data(), b, l, ws, one);
  lm_loss(&twice, w, ids.data(), b, l, ws, one);
  lm_loss(&twice, w, ids.data(), b, l, ws, one);
  const double c = lm_loss(&threaded, w, ids.data(), b, l, ws, two);
  EXPECT_EQ(a, c);
  EXPECT_EQ(std::memcmp(once.storage.data(), threaded.storage.data(), once.storage.bytes()), 0);
  twice.scale(0.5f, one);  // (g + g) / 2 = g up to the rounding of sums that one call adds in several parts
  EXPECT_CLOSE(twice.storage.as<float>(), once.storage.as<float>(), once.storage.bytes() / sizeof(float), 1e-6);
  EXPECT_EQ(lm_loss(nullptr, w, ids.data(), b, l, ws, two), a);
  EXPECT_GT(once.norm(one), 0.0);

  TrainWorkspace one_by_one;  // each sequence forward and backward on its own
  one_by_one.rows_per_pass = l;
  ParamGrads grouped(w);
  EXPECT_NEAR(lm_loss(&grouped, w, ids.data(), b, l, one_by_one, two), a, 1e-6 * a);
  EXPECT_CLOSE(grouped.storage.as<float>(), once.storage.as<float>(), once.storage.bytes() / sizeof(float), 1e-6);
}

// Two documents packed into one sequence (with resets) give the loss and gradients of the two run apart,
// weighted by their numbers of predicted tokens; a second batch row holds three documents, one of a single token.
TEST_P(LmGradTest, PackedDocumentsNeverSeeEachOther) {
  Context ctx(2);
  TrainWorkspace ws;
  const std::vector<std::vector<int64_t>> docs = {{5, 7}, {3, 1, 8}};  // lengths per batch row
  const int64_t lp = 12;
  std::vector<int32_t> packed;
  std::vector<uint8_t> starts;
  ParamGrads want(w), part(w);
  double want_sum = 0;
  int64_t count = 0, offset = 0;
  for (const auto& row : docs)
    for (size_t j = 0; j < row.size(); ++j) {
      const int64_t len = row[j];
      const std::vector<int32_t> doc(ids.begin() + offset, ids.begin() + offset + len);
      offset += len;
      packed.insert(packed.end(), doc.begin(), doc.end());
      starts.push_back(1);
      starts.insert(starts.end(), size_t(len - 1), 0);
      if (len < 2) continue;
      part.zero(ctx);
      want_sum += double(len - 1) * lm_loss(&part, w, doc.data(), 1, len, ws, ctx);
      part.scale(float(len - 1), ctx);
      for (size_t i = 0; i < part.storage.bytes() / sizeof(float); ++i)
        want.storage.as<float>()[i] += part.storage.as<float>()[i];
      count += len - 1;
    }
  want.scale(1.0f / float(count), ctx);
  ParamGrads got(w);
  const double loss = lm_loss_packed(&got, w, packed.data(), starts.data(), 2, lp, ws, ctx);
  EXPECT_NEAR(loss, want_sum / double(count), 1e-6 * loss);
  for (size_t i = 0; i < got.names.size(); ++i)
    EXPECT_CLOSE(got.grads[i].f32(), want.grads[i].f32(), size_t(got.grads[i].numel()), 1e-5) << got.names[i];

  std::vector<uint8_t> only_first(size_t(b * l), 0);
  only_first[0] = 1;
  ParamGrads plain(w), flagged(w);
  EXPECT_EQ(lm_loss(&plain, w, ids.data(), b, l, ws, ctx),
            lm_loss_packed(&flagged, w, ids.data(), only_first.data(), b, l, ws, ctx));
  EXPECT_EQ(std::memcmp(plain.storage.data(), flagged.storage.data(), plain.storage.bytes()), 0);
}

// Explicit targets: the next ids give lm_loss bit for bit; a subset of positions gives the mean over that subset
// (each position's loss read from a one-position target set), with the matching gradient.
TEST_P(LmGradTest, ExplicitTargetsSelectThePredictedPositions) {
  Context ctx(2);
  TrainWorkspace ws;
  std::vector<int32_t> next(size_t(b * l), -1);
  for (int64_t i = 0; i < b * l; ++i)
    if (i % l != l - 1) next[size_t(i)] = ids[size_t(i + 1)];
  ParamGrads plain(w), explicit_next(w);
  EXPECT_EQ(lm_loss(&plain, w, ids.data(), b, l, ws, ctx),
            lm_loss_targets(&explicit_next, w, ids.data(), next.data(), b, l, ws, ctx));
  EXPECT_EQ(std::memcmp(plain.storage.data(), explicit_next.storage.data(), plain.storage.bytes()), 0);

  // Two scored positions with arbitrary targets: the mean of the two one-position losses and gradients.
  const int64_t p0 = 1, p1 = b * l - 1;
  std::vector<int32_t> some(size_t(b * l), -1), only0(size_t(b * l), -1), only1(size_t(b * l), -1);
  some[p0] = only0[p0] = 3;
  some[p1] = only1[p1] = 0;
  ParamGrads both(w), g0(w), g1(w);
  const double loss = lm_loss_targets(&both, w, ids.data(), some.data(), b, l, ws, ctx);
  const double l0 = lm_loss_targets(&g0, w, ids.data(), only0.data(), b, l, ws, ctx);
  const double l1 = lm_loss_targets(&g1, w, ids.data(), only1.data(), b, l, ws, ctx);
  EXPECT_NEAR(loss, 0.5 * (l0 + l1), 1e-6 * loss);
  for (size_t i = 0; i < both.storage.bytes() / sizeof(float); ++i)
    g0.storage.as<float>()[i] = 0.5f * (g0.storage.as<float>()[i] + g1.storage.as<float>()[i]);
  EXPECT_CLOSE(both.storage.as<float>(), g0.storage.as<float>(), both.storage.bytes() / sizeof(float), 1e-5);

  const std::vector<int32_t> none(size_t(b * l), -1);
  expect_error([&] { lm_loss_targets(nullptr, w, ids.data(), none.data(), b, l, ws, ctx); }, {"no token to predict"});
  std::vector<int32_t> bad = none;
  bad[2] = int32_t(w.config.vocab_size);
  expect_error([&] { lm_loss_targets(nullptr, w, ids.data(), bad.data(), b, l, ws, ctx); },
               {"target", "position 2", "out of range"});
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
  const std::vector<uint8_t> all_starts = {1, 1, 1};
  expect_error([&] { lm_loss_packed(nullptr, w, ids.data(), all_starts.data(), 1, 3, ws, ctx); }, {"no token to predict"});
  const ModelWeights half = load_model(g.dir, DType::bf16);
  expect_error([&] { lm_loss(nullptr, half, ids.data(), 1, 3, ws, ctx); }, {"f32 weights", "bf16"});
}

}  // namespace
}  // namespace mambacpp::test
