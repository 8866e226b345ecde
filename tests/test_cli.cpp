// End-to-end tests of the `mambacpp` command: forward and generate against the golden checkpoints, tokenize
// against the golden tokenizer cases, and every bad-input path ending in a clear message and exit code 1.
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "core/cuda/device_info.h"
#include "io/safetensors.h"
#include "support/golden_model.h"
#include "support/test_util.h"

namespace mambacpp::test {
namespace {

namespace fs = std::filesystem;

std::string ids_arg(const std::vector<int32_t>& ids) {
  std::string s;
  for (size_t i = 0; i < ids.size(); ++i) {
    if (i) s += ',';
    s += std::to_string(ids[i]);
  }
  return s;
}

// A writable copy of a golden model folder.
fs::path copy_model(const TempDir& dir, const std::string& name) {
  const fs::path dst = dir.path() / name;
  fs::copy(golden("models/" + name), dst, fs::copy_options::recursive);
  return dst;
}

void expect_failure(const RunResult& r, const std::string& needle) {
  EXPECT_EQ(r.code, 1) << "stderr: " << r.err;
  EXPECT_NE(r.err.find(needle), std::string::npos) << "stderr lacks '" << needle << "': " << r.err;
  EXPECT_EQ(r.err.find("terminate"), std::string::npos) << r.err;
}

// --f32-activations changes only the GPU's half-matrix prefill: on the CPU the logits are the same.
TEST(Cli, ForwardPrintsTheGoldenLogits) {
  GoldenModel g("untied");
  const auto ids = g.input_ids(1)[0];
  for (bool f32_activations : {false, true}) {
    std::vector<std::string> args = {"forward", "-m", g.dir, "--ids", ids_arg(ids), "--threads", "2"};
    if (f32_activations) args.push_back("--f32-activations");
    const RunResult r = run_cli(args);
    ASSERT_EQ(r.code, 0) << r.err;
    const auto j = nlohmann::json::parse(r.out);
    std::vector<float> got;
    for (const auto& row : j["logits"])
      for (const auto& x : row) got.push_back(x.get<float>());
    const auto ref = g.logits(1);
    ASSERT_EQ(got.size(), ref.size());
    EXPECT_CLOSE(got.data(), ref.data(), ref.size(), 1e-4) << (f32_activations ? "--f32-activations" : "");
  }
}

TEST(Cli, GreedyPrintIdsMatchesTransformers) {
  GoldenModel g("untied");
  const auto& c = g.expected["greedy"][0];
  const auto want = c["new_ids"].get<std::vector<int32_t>>();
  const RunResult r = run_cli({"generate", "-m", g.dir, "--prompt-ids", ids_arg(c["prompt_ids"].get<std::vector<int32_t>>()),
                               "-n", std::to_string(want.size()), "--temperature", "0", "--print-ids", "--ignore-eos"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, ids_arg(want) + "\n");
  EXPECT_NE(r.err.find("tokens/s"), std::string::npos) << r.err;
}

TEST(Cli, GenerateStreamsTextAndReportsSpeed) {
  GoldenModel g("tied");
  const RunResult r = run_cli({"generate", "-m", g.dir, "-p", "First Citizen:", "-n", "16", "--seed", "3"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out.rfind("First Citizen:", 0), 0u) << r.out;
  EXPECT_NE(r.err.find("prompt: "), std::string::npos);
  EXPECT_NE(r.err.find("generation: "), std::string::npos);
  const RunResult again = run_cli({"generate", "-m", g.dir, "-p", "First Citizen:", "-n", "16", "--seed", "3"});
  EXPECT_EQ(again.out, r.out) << "same seed, different text";
}

TEST(Cli, TokenizeMatchesGoldenIdsAndDecodes) {
  const auto cases = nlohmann::json::parse(read_file(golden("tokenizer/cases.json")))["cases"];
  const std::string tok = golden("tokenizer/tokenizer.json");
  const auto& c = cases[1];
  const RunResult r = run_cli({"tokenize", "--tokenizer", tok, "--text", c["text"].get<std::string>()});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, ids_arg(c["ids"].get<std::vector<int32_t>>()) + "\n");
  const RunResult d = run_cli({"tokenize", "--tokenizer", tok, "--decode", ids_arg(c["ids"].get<std::vector<int32_t>>())});
  ASSERT_EQ(d.code, 0) << d.err;
  EXPECT_EQ(d.out, c["decoded"].get<std::string>() + "\n");
}

TEST(Cli, InfoAndVersion) {
  const RunResult info = run_cli({"info"});
  ASSERT_EQ(info.code, 0);
  EXPECT_NE(info.out.find("blas"), std::string::npos);
  EXPECT_NE(info.out.find("simd"), std::string::npos);
  const RunResult v = run_cli({"--version"});
  ASSERT_EQ(v.code, 0);
  EXPECT_NE(v.out.find("mambacpp"), std::string::npos);
  const RunResult h = run_cli({"generate", "--help"});
  ASSERT_EQ(h.code, 0);
  EXPECT_NE(h.out.find("--top-p"), std::string::npos);
}

TEST(CliBadInput, MissingModelFolder) {
  expect_failure(run_cli({"generate", "-m", "/nonexistent/model", "--prompt-ids", "1,2"}), "/nonexistent/model");
}

TEST(CliBadInput, TruncatedWeights) {
  TempDir dir;
  const fs::path m = copy_model(dir, "tied");
  fs::resize_file(m / "model.safetensors", fs::file_size(m / "model.safetensors") / 2);
  expect_failure(run_cli({"forward", "-m", m.string(), "--ids", "1,2"}), "model.safetensors");
}

TEST(CliBadInput, ShapeDisagreesWithConfig) {
  TempDir dir;
  const fs::path m = copy_model(dir, "tied");
  auto cfg = nlohmann::json::parse(read_file((m / "config.json").string()));
  cfg["state_size"] = cfg["state_size"].get<int>() + 1;
  write_file((m / "config.json").string(), cfg.dump());
  expect_failure(run_cli({"forward", "-m", m.string(), "--ids", "1,2"}), "x_proj.weight' has shape");
}

TEST(CliBadInput, MissingTensor) {
  TempDir dir;
  const fs::path m = copy_model(dir, "tied");
  std::map<std::string, Tensor> kept;
  {
    const SafetensorsFile f((m / "model.safetensors").string());
    for (const auto& n : f.names())
      if (n != "backbone.layers.1.mixer.D") kept[n] = f.get(n);
    save_safetensors((dir.path() / "tmp.safetensors").string(), kept);
  }
  fs::rename(dir.path() / "tmp.safetensors", m / "model.safetensors");
  expect_failure(run_cli({"forward", "-m", m.string(), "--ids", "1,2"}), "backbone.layers.1.mixer.D");
}

TEST(CliBadInput, MalformedConfigAndTokenizer) {
  TempDir dir;
  const fs::path m = copy_model(dir, "tied");
  write_file((m / "config.json").string(), "{\"hidden_size\": 64,");
  expect_failure(run_cli({"forward", "-m", m.string(), "--ids", "1"}), "config.json");
  const fs::path m2 = copy_model(dir, "untied");
  write_file((m2 / "tokenizer.json").string(), "[1, 2");
  expect_failure(run_cli({"generate", "-m", m2.string(), "-p", "hi"}), "tokenizer.json");
}

TEST(CliBadInput, TokenIdsOutOfRangeOrMalformed) {
  GoldenModel g("tied");
  expect_failure(run_cli({"forward", "-m", g.dir, "--ids", "1,5000"}), "out of range");
  expect_failure(run_cli({"forward", "-m", g.dir, "--ids", "1,x"}), "--ids");
  expect_failure(run_cli({"forward", "-m", g.dir, "--ids", "1,,2"}), "--ids");
  expect_failure(run_cli({"generate", "-m", g.dir, "--prompt-ids", "-3"}), "");
}

TEST(CliBadInput, InvalidUtf8Prompt) {
  GoldenModel g("tied");
  expect_failure(run_cli({"generate", "-m", g.dir, "-p", "ok \xff\xfe bad"}), "UTF-8");
}

TEST(CliBadInput, NonsensicalOptions) {
  GoldenModel g("tied");
  expect_failure(run_cli({"generate", "-m", g.dir, "-p", "hi", "-n", "-5"}), "");
  expect_failure(run_cli({"generate", "-m", g.dir, "-p", "hi", "--top-p", "1.5"}), "--top-p");
  expect_failure(run_cli({"generate", "-m", g.dir, "-p", "hi", "--temperature", "-1"}), "--temperature");
  expect_failure(run_cli({"generate", "-m", g.dir, "-p", "hi", "--threads", "-2"}), "");
  expect_failure(run_cli({"generate", "-m", g.dir, "-p", "hi", "--dtype", "int3"}), "--dtype");
  expect_failure(run_cli({"generate", "-m", g.dir, "-p", "hi", "--prompt-ids", "1"}), "exactly one");
  expect_failure(run_cli({"tokenize", "--tokenizer", "/nonexistent.json", "--text", "a"}), "/nonexistent.json");
  expect_failure(run_cli({"frobnicate"}), "");
}

// Without a usable GPU (or in a build without CUDA), --device cuda stops before the model is loaded, naming the
// option and the reason.
TEST(CliBadInput, DeviceCudaWithoutAGpu) {
  if (!cuda_runtime_info().devices.empty()) GTEST_SKIP() << "a CUDA device is present";
  GoldenModel g("tied");
  expect_failure(run_cli({"forward", "-m", g.dir, "--ids", "1,2", "--device", "cuda"}), "--device cuda");
  expect_failure(run_cli({"generate", "-m", g.dir, "-p", "hi", "--device", "cuda"}), "--device cuda");
}

}  // namespace
}  // namespace mambacpp::test
