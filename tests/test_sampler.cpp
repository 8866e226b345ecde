// Sampler tests: greedy, the filters (top-k, top-p, min-p, repetition penalty), the distribution drawn at
// temperature 1 against the softmax, determinism for a seed, and option validation.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "core/error.h"
#include "infer/sampler.h"

namespace mambacpp {
namespace {

SamplingParams plain(float temperature) {
  SamplingParams p;
  p.temperature = temperature;
  p.top_k = 0;
  p.top_p = 1;
  p.min_p = 0;
  return p;
}

std::vector<double> frequencies(const SamplingParams& p, const std::vector<float>& logits, int draws) {
  Sampler s(p, 7);
  std::vector<double> f(logits.size(), 0);
  for (int i = 0; i < draws; ++i) f[size_t(s.sample(logits.data(), int64_t(logits.size()), {}))] += 1.0 / draws;
  return f;
}

const std::vector<float> kLogits = {std::log(0.5f), std::log(0.3f), std::log(0.2f)};

TEST(Sampler, GreedyTakesArgmaxAndLowestIdOnTies) {
  Sampler s(plain(0), 1);
  const std::vector<float> x = {0.1f, 3.0f, -2.0f, 3.0f};
  EXPECT_EQ(s.sample(x.data(), 4, {}), 1);
  EXPECT_EQ(argmax(x.data(), 4), 1);
}

TEST(Sampler, TopKOneIsGreedy) {
  SamplingParams p = plain(1.5f);
  p.top_k = 1;
  Sampler s(p, 3);
  for (int i = 0; i < 50; ++i) EXPECT_EQ(s.sample(kLogits.data(), 3, {}), 0);
}

TEST(Sampler, DrawsFollowTheSoftmax) {
  const auto f = frequencies(plain(1), kLogits, 40000);
  EXPECT_NEAR(f[0], 0.5, 0.01);
  EXPECT_NEAR(f[1], 0.3, 0.01);
  EXPECT_NEAR(f[2], 0.2, 0.01);
}

TEST(Sampler, TemperatureSharpens) {
  // At T = 0.5 the probabilities are proportional to p², i.e. 25 : 9 : 4.
  const auto f = frequencies(plain(0.5f), kLogits, 40000);
  EXPECT_NEAR(f[0], 25.0 / 38, 0.01);
  EXPECT_NEAR(f[2], 4.0 / 38, 0.01);
}

TEST(Sampler, TopPKeepsSmallestPrefixReachingTheMass) {
  SamplingParams p = plain(1);
  p.top_p = 0.7f;  // 0.5 < 0.7 <= 0.8: ids 0 and 1, renormalised 5 : 3
  const auto f = frequencies(p, kLogits, 40000);
  EXPECT_EQ(f[2], 0.0);
  EXPECT_NEAR(f[0], 0.625, 0.01);
}

TEST(Sampler, MinPIsRelativeToTheMostLikelyToken) {
  SamplingParams p = plain(1);
  p.min_p = 0.5f;  // floor 0.25: keeps 0.5 and 0.3, drops 0.2
  const auto f = frequencies(p, kLogits, 20000);
  EXPECT_EQ(f[2], 0.0);
  EXPECT_GT(f[1], 0.3);
}

TEST(Sampler, RepetitionPenaltyDividesPositiveAndMultipliesNegativeLogits) {
  SamplingParams p = plain(0);
  p.repetition_penalty = 1.2f;
  Sampler s(p, 1);
  const std::vector<float> pos = {2.0f, 1.9f};  // 2.0 / 1.2 < 1.9
  const std::vector<int32_t> hist0 = {0, 0};
  EXPECT_EQ(s.sample(pos.data(), 2, hist0), 1);
  const std::vector<float> neg = {-1.0f, -1.1f};  // -1.0 * 1.2 < -1.1
  EXPECT_EQ(s.sample(neg.data(), 2, hist0), 1);
}

TEST(Sampler, SameSeedSameDraws) {
  const std::vector<float> x = {0.1f, 0.2f, 0.3f, 0.4f, 0.5f, 0.0f, -0.3f};
  SamplingParams p = plain(1);
  Sampler a(p, 42), b(p, 42), c(p, 43);
  std::vector<int32_t> ra, rb, rc;
  for (int i = 0; i < 64; ++i) {
    ra.push_back(a.sample(x.data(), 7, {}));
    rb.push_back(b.sample(x.data(), 7, {}));
    rc.push_back(c.sample(x.data(), 7, {}));
  }
  EXPECT_EQ(ra, rb);
  EXPECT_NE(ra, rc);
}

TEST(Sampler, RejectsNonsensicalOptions) {
  SamplingParams p;
  p.top_p = 1.5f;
  EXPECT_THROW(p.validate(), Error);
  p = SamplingParams{};
  p.temperature = -1;
  EXPECT_THROW(p.validate(), Error);
  p = SamplingParams{};
  p.top_k = -3;
  EXPECT_THROW(p.validate(), Error);
  p = SamplingParams{};
  p.min_p = 2;
  EXPECT_THROW(p.validate(), Error);
  p = SamplingParams{};
  p.repetition_penalty = 0;
  EXPECT_THROW(p.validate(), Error);
}

}  // namespace
}  // namespace mambacpp
