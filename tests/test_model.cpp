// Whole-model tests on the golden checkpoints: logits equal to transformers' (float64 reference), greedy
// continuations identical, L recurrent steps equal to the parallel forward, chunked equal to unchunked,
// batched equal to one-by-one, the original mamba_ssm layout equal to the Hugging Face one.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "core/context.h"
#include "core/error.h"
#include "infer/generate.h"
#include "io/safetensors.h"
#include "model/lm.h"
#include "model/loader.h"
#include "support/golden_model.h"
#include "support/test_util.h"

namespace mambacpp::test {
namespace {

// Logits (b, l, v) of `ids` (b sequences of one length) from a zero state.
std::vector<float> forward_all(const ModelWeights& w, const std::vector<std::vector<int32_t>>& ids, int64_t chunk,
                               Context& ctx) {
  const int64_t b = int64_t(ids.size()), l = int64_t(ids[0].size()), v = w.config.vocab_size;
  std::vector<int32_t> flat;
  for (const auto& row : ids) flat.insert(flat.end(), row.begin(), row.end());
  std::vector<float> logits(size_t(b * l * v), std::nanf(""));
  RecurrentState state(w.config, b);
  Workspace ws;
  ForwardOptions fo;
  fo.logits_for = LogitsFor::all_positions;
  fo.chunk = chunk;
  lm_forward(Tensor(logits.data(), DType::f32, {b, l, v}), state, w, flat.data(), l, fo, ws, ctx);
  return logits;
}

class GoldenModelTest : public ::testing::TestWithParam<std::string> {
 protected:
  GoldenModel g{GetParam()};
  Context ctx{2};
  ModelWeights w = load_model(g.dir, DType::f32);
};

TEST_P(GoldenModelTest, LogitsMatchTransformers) {
  for (size_t i = 0; i < g.expected["logits"].size(); ++i) {
    const auto ref = g.logits(i);
    const auto got = forward_all(w, g.input_ids(i), 256, ctx);
    ASSERT_EQ(got.size(), ref.size());
    EXPECT_CLOSE(got.data(), ref.data(), ref.size(), 1e-4) << "case " << i;
  }
}

TEST_P(GoldenModelTest, ChunkedEqualsUnchunked) {
  const auto ids = g.input_ids(0);
  const auto whole = forward_all(w, ids, 1 << 20, ctx);
  for (int64_t chunk : {1, 2, 5, 16, 36}) {
    const auto chunked = forward_all(w, ids, chunk, ctx);
    EXPECT_CLOSE(chunked.data(), whole.data(), whole.size(), 1e-6) << "chunk " << chunk;
  }
}

TEST_P(GoldenModelTest, RecurrentStepsEqualParallelForward) {
  const auto ids = g.input_ids(0);
  const int64_t b = int64_t(ids.size()), l = int64_t(ids[0].size()), v = w.config.vocab_size;
  const auto parallel = forward_all(w, ids, 1 << 20, ctx);
  RecurrentState state(w.config, b);
  Workspace ws;
  std::vector<float> step_logits(size_t(b * v)), stepped(size_t(b * l * v));
  for (int64_t t = 0; t < l; ++t) {
    std::vector<int32_t> tok(static_cast<size_t>(b));
    for (int64_t bi = 0; bi < b; ++bi) tok[size_t(bi)] = ids[size_t(bi)][size_t(t)];
    lm_forward(Tensor(step_logits.data(), DType::f32, {b, v}), state, w, tok.data(), 1, ForwardOptions{}, ws, ctx);
    for (int64_t bi = 0; bi < b; ++bi)
      std::copy_n(step_logits.begin() + bi * v, v, stepped.begin() + (bi * l + t) * v);
  }
  EXPECT_CLOSE(stepped.data(), parallel.data(), parallel.size(), 1e-5);
}

TEST_P(GoldenModelTest, BatchedEqualsOneByOne) {
  const auto ids = g.input_ids(0);
  ASSERT_GE(ids.size(), 2u);
  const auto batched = forward_all(w, ids, 7, ctx);
  const size_t per = batched.size() / ids.size();
  for (size_t i = 0; i < ids.size(); ++i) {
    const auto alone = forward_all(w, {ids[i]}, 7, ctx);
    EXPECT_CLOSE(alone.data(), batched.data() + i * per, per, 1e-6) << "sequence " << i;
  }
}

TEST_P(GoldenModelTest, GreedyContinuationsMatchTransformers) {
  for (const auto& c : g.expected["greedy"]) {
    const auto prompt = c["prompt_ids"].get<std::vector<int32_t>>();
    const auto want = c["new_ids"].get<std::vector<int32_t>>();
    GenerateOptions opt;
    opt.max_new_tokens = int64_t(want.size());
    opt.sampling.temperature = 0;
    const auto got = generate(w, {prompt}, opt, nullptr, nullptr, ctx);
    EXPECT_EQ(got[0], want) << "prompt of " << prompt.size() << " tokens (smallest recorded margin "
                            << c["min_margin"].get<double>() << ")";
  }
}

TEST_P(GoldenModelTest, GreedyBatchOfDifferentLengthsMatchesEachAlone) {
  std::vector<std::vector<int32_t>> prompts;
  std::vector<std::vector<int32_t>> want;
  for (const auto& c : g.expected["greedy"]) {
    prompts.push_back(c["prompt_ids"].get<std::vector<int32_t>>());
    want.push_back(c["new_ids"].get<std::vector<int32_t>>());
  }
  GenerateOptions opt;
  opt.max_new_tokens = int64_t(want[0].size());
  opt.sampling.temperature = 0;
  EXPECT_EQ(generate(w, prompts, opt, nullptr, nullptr, ctx), want);
}

TEST_P(GoldenModelTest, Bf16WeightsStayClose) {
  const ModelWeights wb = load_model(g.dir, DType::bf16);
  const auto ref = g.logits(0);
  const auto got = forward_all(wb, g.input_ids(0), 256, ctx);
  EXPECT_CLOSE(got.data(), ref.data(), ref.size(), 3e-2);
}

INSTANTIATE_TEST_SUITE_P(Golden, GoldenModelTest, ::testing::ValuesIn(golden_model_names()));

// The same weights under the original mamba_ssm names and config.json load to the same logits.
TEST(OriginalLayout, MatchesHuggingFaceLayout) {
  GoldenModel g("tied");
  TempDir dir;
  const SafetensorsFile hf(g.dir + "/model.safetensors");
  std::map<std::string, Tensor> renamed;
  for (const auto& name : hf.names()) {
    std::string n = name;
    const std::string from = "backbone.embeddings.";
    if (n.rfind(from, 0) == 0) n = "backbone.embedding." + n.substr(from.size());
    renamed[n] = hf.get(name);
  }
  save_safetensors(dir.file("model.safetensors"), renamed);
  const auto hf_cfg = nlohmann::json::parse(read_file(g.dir + "/config.json"));
  nlohmann::json cfg = {
      {"d_model", hf_cfg["hidden_size"]},
      {"n_layer", hf_cfg["num_hidden_layers"]},
      {"vocab_size", hf_cfg["vocab_size"]},
      {"ssm_cfg", {{"d_state", hf_cfg["state_size"]}, {"d_conv", hf_cfg["conv_kernel"]},
                   {"expand", hf_cfg["expand"]}, {"dt_rank", hf_cfg["time_step_rank"]}}},
      {"rms_norm", true},
      {"residual_in_fp32", true},
      {"pad_vocab_size_multiple", 8},
      {"tie_embeddings", true},
  };
  write_file(dir.file("config.json"), cfg.dump());
  Context ctx(2);
  const ModelWeights w = load_model(dir.path().string(), DType::f32);
  const auto ref = g.logits(0);
  const auto got = forward_all(w, g.input_ids(0), 256, ctx);
  EXPECT_CLOSE(got.data(), ref.data(), ref.size(), 1e-4);
}

// A prompt far longer than the chunk runs in memory bounded by the chunk and matches a single pass.
TEST(LongPrompt, ChunkedPrefillMatchesSinglePass) {
  GoldenModel g("untied");
  Context ctx(2);
  const ModelWeights w = load_model(g.dir, DType::f32);
  const int64_t l = 3000, v = w.config.vocab_size;
  std::vector<int32_t> ids(static_cast<size_t>(l));
  for (int64_t i = 0; i < l; ++i) ids[size_t(i)] = int32_t((i * 7919) % v);
  std::vector<float> a(static_cast<size_t>(v)), b(static_cast<size_t>(v));
  for (auto [chunk, out] : {std::pair<int64_t, float*>{l, a.data()}, {97, b.data()}}) {
    RecurrentState state(w.config, 1);
    Workspace ws;
    ForwardOptions fo;
    fo.chunk = chunk;
    lm_forward(Tensor(out, DType::f32, {1, v}), state, w, ids.data(), l, fo, ws, ctx);
    if (chunk == 97) {
      EXPECT_EQ(ws.rows(), 97);
    }
  }
  EXPECT_CLOSE(b.data(), a.data(), size_t(v), 1e-5);
}

// A prompt of 2^17 tokens: the workspace never grows past one chunk, and two chunk sizes agree. (The same
// holds at 2^20 tokens; that run takes too long for the suite.)
TEST(LongPrompt, LongPromptInBoundedMemory) {
  GoldenModel g("untied");
  Context ctx(2);
  const ModelWeights w = load_model(g.dir, DType::f32);
  const int64_t l = 1 << 17, v = w.config.vocab_size;
  std::vector<int32_t> ids(static_cast<size_t>(l));
  for (int64_t i = 0; i < l; ++i) ids[size_t(i)] = int32_t((i * 2654435761u) % uint64_t(v));
  std::vector<std::vector<float>> logits;
  for (int64_t chunk : {256, 1000}) {
    RecurrentState state(w.config, 1);
    Workspace ws;
    ForwardOptions fo;
    fo.chunk = chunk;
    logits.emplace_back(static_cast<size_t>(v));
    lm_forward(Tensor(logits.back().data(), DType::f32, {1, v}), state, w, ids.data(), l, fo, ws, ctx);
    EXPECT_EQ(ws.rows(), chunk);
  }
  EXPECT_CLOSE(logits[1].data(), logits[0].data(), size_t(v), 1e-5);
}

TEST(LmForward, RejectsOutOfRangeIds) {
  GoldenModel g("tied");
  Context ctx(1);
  const ModelWeights w = load_model(g.dir, DType::f32);
  RecurrentState state(w.config, 1);
  Workspace ws;
  const int32_t ids[] = {1, 2, int32_t(w.config.vocab_size)};
  std::vector<float> logits(size_t(w.config.vocab_size));
  try {
    lm_forward(Tensor(logits.data(), DType::f32, {1, w.config.vocab_size}), state, w, ids, 3, ForwardOptions{}, ws, ctx);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("position 2"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace mambacpp::test
