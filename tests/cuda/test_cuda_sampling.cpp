// Sampling on the GPU (sample_rows_cuda) against the CPU Sampler: for every filter setting, on random logits,
// the kernel chooses the Sampler's id when given the Sampler's own uniform draw, over many rows and steps (the
// repetition penalty's history kept on the device); the empirical frequencies of a small distribution match its
// probabilities; and generation on the golden checkpoints with sampling settings gives the CPU's tokens for the
// same seed, with and without the recorded graph.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <utility>
#include <string>
#include <vector>

#include "core/context.h"
#include "core/cuda/device_memory.h"
#include "core/rng.h"
#include "cuda/cuda_test_util.h"
#include "infer/generate.h"
#include "infer/sampler.h"
#include "model/loader.h"
#include "ops/cuda/cuda_ops.h"
#include "support/golden_model.h"

namespace mambacpp::test {
namespace {

struct Setting {
  std::string name;
  SamplingParams p;
};

SamplingParams params(float temperature, int64_t top_k, float top_p, float min_p, float penalty) {
  SamplingParams p;
  p.temperature = temperature, p.top_k = top_k, p.top_p = top_p, p.min_p = min_p, p.repetition_penalty = penalty;
  return p;
}

const std::vector<Setting>& settings() {
  static const std::vector<Setting> s = {
      {"temperature_only", params(1.0f, 0, 1.0f, 0.0f, 1.0f)},
      {"hot", params(2.5f, 0, 1.0f, 0.0f, 1.0f)},
      {"cold", params(0.05f, 0, 1.0f, 0.0f, 1.0f)},
      {"top_k_40", params(1.0f, 40, 1.0f, 0.0f, 1.0f)},
      {"top_k_1", params(1.0f, 1, 1.0f, 0.0f, 1.0f)},
      {"top_k_1000", params(1.5f, 1000, 1.0f, 0.0f, 1.0f)},
      {"top_p_0.9", params(1.0f, 0, 0.9f, 0.0f, 1.0f)},
      {"top_p_to_0", params(1.0f, 0, 1e-6f, 0.0f, 1.0f)},
      {"top_p_1", params(0.7f, 0, 1.0f, 0.0f, 1.0f)},
      {"min_p_0.05", params(1.0f, 0, 1.0f, 0.05f, 1.0f)},
      {"min_p_1", params(1.0f, 0, 1.0f, 1.0f, 1.0f)},
      {"penalty_greedy", params(0.0f, 0, 1.0f, 0.0f, 1.3f)},
      {"penalty", params(1.0f, 0, 1.0f, 0.0f, 1.3f)},
      {"defaults", SamplingParams{}},
      {"all_filters", params(0.7f, 100, 0.8f, 0.02f, 1.2f)},
      {"top_k_and_top_p", params(1.2f, 500, 0.95f, 0.0f, 1.0f)},
  };
  return s;
}

// Logits (m, v): normal with standard deviation `scale`.
std::vector<float> random_logits(int64_t m, int64_t v, float scale, Rng& rng) {
  std::vector<float> x(size_t(m * v));
  for (auto& a : x) a = float(rng.normal()) * scale;
  return x;
}

// Device buffers of one sampling call: logits (m, v), seen (m, v), uniforms (m), ids (m).
struct DeviceRows {
  int64_t m, v;
  Buffer logits, seen, uniforms, ids;
  DeviceRows(int64_t m_, int64_t v_)
      : m(m_), v(v_), logits(size_t(m * v) * 4, Device::cuda), seen(size_t(m * v), Device::cuda),
        uniforms(size_t(m) * 8, Device::cuda), ids(size_t(m) * 4, Device::cuda) {}

  std::vector<int32_t> sample(const std::vector<float>& x, const std::vector<double>& u, const SamplingParams& p,
                              Context& ctx) {
    copy_memory(logits.data(), Device::cuda, x.data(), Device::cpu, logits.bytes());
    copy_memory(uniforms.data(), Device::cuda, u.data(), Device::cpu, uniforms.bytes());
    EXPECT_EQ(cudaSuccess, cudaMemset(ids.data(), 0xff, ids.bytes()));
    EXPECT_EQ(cudaSuccess, cudaDeviceSynchronize());  // the ops' non-blocking stream does not wait for the memset
    SampleFilters f;
    f.temperature = p.temperature, f.top_k = p.top_k, f.top_p = p.top_p, f.min_p = p.min_p;
    f.repetition_penalty = p.repetition_penalty;
    sample_rows_cuda(ids.as<int32_t>(), Tensor(logits.data(), DType::f32, {m, v}, Device::cuda),
                     seen.as<unsigned char>(), uniforms.as<double>(), f, ctx);
    std::vector<int32_t> out(static_cast<size_t>(m));
    copy_memory(out.data(), Device::cpu, ids.data(), Device::cuda, ids.bytes());
    return out;
  }
};

class CudaSamplingTest : public ::testing::TestWithParam<Setting> {
 protected:
  void SetUp() override { SKIP_WITHOUT_GPU(); }
  Context ctx{2};
};

// Rows × steps of fresh logits; each row has its own Sampler (seed 100 + row) and the kernel gets the draws of
// an Rng with the same seed. The history starts with 30 random ids and grows by the chosen ones.
void expect_same_choices(const SamplingParams& p, int64_t m, int64_t v, float scale, int64_t steps, Context& ctx) {
  Rng data(v * 7 + m);
  std::vector<Sampler> samplers;
  std::vector<Rng> draws;
  std::vector<std::vector<int32_t>> history(static_cast<size_t>(m));
  std::vector<unsigned char> seen(size_t(m * v), 0);
  for (int64_t r = 0; r < m; ++r) {
    samplers.emplace_back(p, 100 + uint64_t(r));
    draws.emplace_back(100 + uint64_t(r));
    for (int j = 0; j < 30; ++j) {
      const auto id = int32_t(data.below(uint64_t(v)));
      history[size_t(r)].push_back(id);
      seen[size_t(r * v + id)] = 1;
    }
  }
  DeviceRows dev(m, v);
  copy_memory(dev.seen.data(), Device::cuda, seen.data(), Device::cpu, seen.size());
  int64_t differ = 0;
  for (int64_t t = 0; t < steps; ++t) {
    const auto x = random_logits(m, v, scale, data);
    std::vector<double> u(size_t(m), 0.0);
    if (p.temperature > 0)
      for (int64_t r = 0; r < m; ++r) u[size_t(r)] = draws[size_t(r)].uniform();
    const auto got = dev.sample(x, u, p, ctx);
    for (int64_t r = 0; r < m; ++r) {
      const int32_t want = samplers[size_t(r)].sample(x.data() + r * v, v, history[size_t(r)]);
      if (got[size_t(r)] != want && differ++ < 5)
        ADD_FAILURE() << "step " << t << " row " << r << ": gpu " << got[size_t(r)] << ", cpu " << want;
      history[size_t(r)].push_back(want);
    }
  }
  EXPECT_EQ(differ, 0) << "of " << m * steps << " choices (v " << v << ")";
}

TEST_P(CudaSamplingTest, SameChoiceAsCpuSampler) {
  const SamplingParams& p = GetParam().p;
  expect_same_choices(p, 64, 50280, 3.0f, 4, ctx);  // the Mamba vocabulary, batch 64
  expect_same_choices(p, 16, 1000, 1.0f, 12, ctx);  // flat logits: long top-p prefixes, many repeated ids
  expect_same_choices(p, 5, 3, 0.5f, 20, ctx);      // fewer ids than top-k
}

INSTANTIATE_TEST_SUITE_P(Settings, CudaSamplingTest, ::testing::ValuesIn(settings()),
                         [](const auto& info) {
                           std::string n = info.param.name;
                           for (char& c : n)
                             if (c == '.') c = '_';
                           return n;
                         });

// Equal logits: the lowest ids come first, as on the CPU.
TEST(CudaSampling, TiesGoToTheLowestId) {
  SKIP_WITHOUT_GPU();
  Context ctx{2};
  DeviceRows dev(3, 10);
  const std::vector<float> x(30, 0.5f);
  EXPECT_EQ(dev.sample(x, {0.0, 0.0, 0.0}, params(0.0f, 0, 1.0f, 0.0f, 1.0f), ctx), (std::vector<int32_t>{0, 0, 0}));
  EXPECT_EQ(dev.sample(x, {0.0, 0.45, 0.999}, params(1.0f, 4, 1.0f, 0.0f, 1.0f), ctx),
            (std::vector<int32_t>{0, 1, 3}));
}

// Pearson's statistic of observed counts against expected probabilities.
double chi_square(const std::vector<int64_t>& count, const std::vector<double>& prob, int64_t n) {
  double chi = 0;
  for (size_t i = 0; i < count.size(); ++i) {
    if (prob[i] == 0) {
      EXPECT_EQ(count[i], 0) << "id " << i << " has probability 0";
      continue;
    }
    const double e = prob[i] * double(n);
    chi += (double(count[i]) - e) * (double(count[i]) - e) / e;
  }
  return chi;
}

// 204,800 draws from an 8-id distribution: the frequencies match softmax(x / T) restricted to the kept ids.
TEST(CudaSampling, FrequenciesMatchProbabilities) {
  SKIP_WITHOUT_GPU();
  Context ctx{2};
  const std::vector<float> logits = {1.0f, 2.0f, 0.5f, 1.5f, -1.0f, 0.0f, -3.0f, -0.5f};
  const int64_t v = 8, m = 4096, launches = 50;
  struct Case {
    SamplingParams p;
    std::vector<double> prob;
    double bound;  // chi-square bound: p-value about 1e-6 at the case's degrees of freedom
  };
  std::vector<Case> cases;
  const std::vector<std::pair<SamplingParams, int>> filters = {{params(1.0f, 0, 1.0f, 0.0f, 1.0f), 8},
                                                               {params(0.5f, 3, 1.0f, 0.0f, 1.0f), 3}};
  for (const auto& [p, kept] : filters) {
    std::vector<int> order = {0, 1, 2, 3, 4, 5, 6, 7};
    std::sort(order.begin(), order.end(), [&](int a, int b) { return logits[size_t(a)] > logits[size_t(b)]; });
    std::vector<double> prob(8, 0.0);
    double sum = 0;
    for (int j = 0; j < kept; ++j) {
      const auto i = size_t(order[size_t(j)]);
      sum += prob[i] = std::exp(double(logits[i]) / p.temperature);
    }
    for (auto& q : prob) q /= sum;
    cases.push_back({p, prob, kept == 8 ? 40.0 : 28.0});
  }
  DeviceRows dev(m, v);
  std::vector<float> x;
  for (int64_t r = 0; r < m; ++r) x.insert(x.end(), logits.begin(), logits.end());
  Rng rng(2026);
  for (const auto& c : cases) {
    std::vector<int64_t> count(8, 0);
    for (int64_t l = 0; l < launches; ++l) {
      std::vector<double> u(static_cast<size_t>(m));
      for (auto& a : u) a = rng.uniform();
      for (int32_t id : dev.sample(x, u, c.p, ctx)) {
        ASSERT_TRUE(id >= 0 && id < 8) << "id " << id;
        ++count[size_t(id)];
      }
    }
    EXPECT_LT(chi_square(count, c.prob, m * launches), c.bound) << "top-k " << c.p.top_k;
  }
}

// Generation on the golden checkpoints with sampling settings: the GPU's tokens are the CPU's for the same seed.
class CudaSampledGenerationTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override { SKIP_WITHOUT_GPU(); }
  GoldenModel g{GetParam()};
  Context ctx{2};
  ModelWeights cpu = load_model(g.dir, DType::f32);
};

TEST_P(CudaSampledGenerationTest, SameTokensAsCpu) {
  const ModelWeights gpu = cpu.to_device(Device::cuda, DType::f32);
  const std::vector<std::vector<int32_t>> prompts = {{1, 2, 3, 4, 5}, {7, 8}, {11, 12, 13, 14, 15, 16, 17, 18, 19}};
  const std::vector<SamplingParams> settings = {SamplingParams{}, params(1.0f, 0, 1.0f, 0.0f, 1.0f),
                                                params(1.0f, 0, 0.9f, 0.0f, 1.3f), params(0.0f, 0, 1.0f, 0.0f, 1.3f),
                                                params(1.5f, 5, 1.0f, 0.1f, 1.1f)};
  for (const auto& s : settings)
    for (uint64_t seed : {0u, 7u}) {
      GenerateOptions o;
      o.max_new_tokens = 24;
      o.sampling = s;
      o.seed = seed;
      o.eos_id = 3;  // rows that stop early stop drawing, on both sides
      const auto ref = generate(cpu, prompts, o, nullptr, nullptr, ctx);
      for (bool graph : {true, false}) {
        o.cuda_graph = graph;
        EXPECT_EQ(generate(gpu, prompts, o, nullptr, nullptr, ctx), ref)
            << "temperature " << s.temperature << " top-k " << s.top_k << " top-p " << s.top_p << " min-p "
            << s.min_p << " penalty " << s.repetition_penalty << " seed " << seed << (graph ? " graph" : "");
      }
    }
}

INSTANTIATE_TEST_SUITE_P(Golden, CudaSampledGenerationTest, ::testing::ValuesIn(golden_model_names()));

}  // namespace
}  // namespace mambacpp::test
