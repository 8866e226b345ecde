// Tests of `mambacpp train` and `mambacpp eval` through the built CLI: a short run writes its checkpoints,
// loss log and chart and prints progress and validation lines; eval reads the checkpoint back; a preempted
// run resumes; bad options and data end in exit code 1 with a message and leave no checkpoint behind; a disk
// that fills up while saving (the file-size limit standing in for it) leaves the previous checkpoint intact.
#include <gtest/gtest.h>
#include <sys/resource.h>

#include <csignal>
#include <algorithm>
#include <filesystem>
#include <string>
#include <vector>

#include "model/presets.h"
#include "support/test_util.h"

namespace mambacpp {
namespace {

namespace fs = std::filesystem;
using test::run_cli;
using test::TempDir;

// A small model config and a text file in `dir`; the common arguments of a short run.
std::vector<std::string> small_args(const TempDir& dir) {
  MambaConfig c = preset_config("tiny");
  c.d_model = 32;
  c.n_layer = 2;
  c.d_inner = 0;
  c.dt_rank = 0;
  c.fill_derived();
  test::write_file(dir.file("config.json"), c.to_hf_json());
  std::string text;
  for (int i = 0; text.size() < 5000; ++i) text += "to be or not to be, " + std::to_string(i % 11) + "\n";
  test::write_file(dir.file("text.txt"), text);
  return {"train", "--data", dir.file("text.txt"), "--bytes", "--config", dir.file("config.json"), "--out",
          dir.file("out"), "--steps", "4", "--batch", "2", "--seq-len", "32", "--warmup", "1", "--eval-every", "2",
          "--eval-windows", "3", "--log-every", "1", "--threads", "1"};
}

// `args` with each option of `more` (flags, or option-value pairs) set: a value replaces the option's value
// when the option is already there, anything else is appended.
std::vector<std::string> with(std::vector<std::string> args, const std::vector<std::string>& more) {
  for (size_t i = 0; i < more.size(); ++i) {
    const bool has_value = i + 1 < more.size() && more[i + 1].rfind("--", 0) != 0;
    const auto at = std::find(args.begin(), args.end(), more[i]);
    if (has_value && at != args.end()) {
      *(at + 1) = more[++i];
      continue;
    }
    args.push_back(more[i]);
    if (has_value) args.push_back(more[++i]);
  }
  return args;
}

TEST(TrainCli, TrainsEvaluatesAndResumes) {
  TempDir dir;
  const std::vector<std::string> args = small_args(dir);
  const test::RunResult r = run_cli(with(args, {"--stop-after", "2"}));
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("step 1/4 | loss "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("tok/s"), std::string::npos);
  EXPECT_NE(r.out.find("left"), std::string::npos);
  EXPECT_NE(r.out.find("val loss"), std::string::npos);
  EXPECT_NE(r.out.find("bits/byte"), std::string::npos);
  const test::RunResult again = run_cli(args);
  EXPECT_EQ(again.code, 1);
  EXPECT_NE(again.err.find("--resume"), std::string::npos) << again.err;
  // The resumed run recomputes the scan's states (a cuda option; on the CPU it changes nothing).
  const test::RunResult rest = run_cli(with(args, {"--resume", "--recompute-scan-states"}));
  ASSERT_EQ(rest.code, 0) << rest.err;
  EXPECT_NE(rest.out.find("resuming"), std::string::npos);
  EXPECT_NE(rest.out.find("step 4/4"), std::string::npos);
  for (const char* f : {"latest/config.json", "latest/model.safetensors", "latest/optimizer.safetensors",
                        "latest/trainer_state.json", "best/model.safetensors", "loss_log.jsonl", "loss.png"})
    EXPECT_TRUE(fs::exists(dir.file("out") + "/" + f)) << f;

  const test::RunResult e = run_cli({"eval", "-m", dir.file("out/best"), "--data", dir.file("text.txt"),
                                     "--seq-len", "32", "--max-windows", "4", "--threads", "1"});
  ASSERT_EQ(e.code, 0) << e.err;
  for (const char* s : {"loss ", "perplexity ", "bits per byte "}) EXPECT_NE(e.out.find(s), std::string::npos) << e.out;
}

TEST(TrainCli, BadInputExitsWithAMessage) {
  TempDir dir;
  const std::vector<std::string> args = small_args(dir);
  const auto fails = [&](const std::vector<std::string>& a, const std::string& expect) {
    const test::RunResult r = run_cli(a);
    EXPECT_EQ(r.code, 1) << r.out;
    EXPECT_NE(r.err.find(expect), std::string::npos) << r.err;
    EXPECT_FALSE(fs::exists(dir.file("out")));
  };
  fails(with(args, {"--device", "cuda"}), "--device cuda");
  fails(with(args, {"--device", "tpu"}), "--device must be cpu or cuda");
  fails(with(args, {"--dtype", "bf16"}), "--dtype bf16");
  fails(with(args, {"--steps", "-5"}), "--steps");
  fails(with(args, {"--batch", "0"}), "--batch");
  fails(with(args, {"--lr", "0"}), "--lr");
  fails(with(args, {"--tokenizer", test::golden("tokenizer/tokenizer.json")}), "not both");
  fails(with(args, {"--seq-len", "banana"}), "seq-len");
  test::write_file(dir.file("empty.txt"), "");
  std::vector<std::string> a = args;
  a[2] = dir.file("empty.txt");
  fails(a, "no text");
  a[2] = dir.file("nope.txt");
  fails(a, "nope.txt");
  fails({"eval", "-m", dir.file("missing-model"), "--data", dir.file("text.txt")}, "missing-model");
}

TEST(TrainCli, AFullDiskKeepsThePreviousCheckpoint) {
  TempDir dir;
  const std::vector<std::string> args = small_args(dir);
  ASSERT_EQ(run_cli(with(args, {"--stop-after", "1", "--eval-every", "0"})).code, 0);
  const std::string before = test::read_file(dir.file("out/latest/model.safetensors"));
  rlimit old{};
  ASSERT_EQ(getrlimit(RLIMIT_FSIZE, &old), 0);
  rlimit lim = old;
  lim.rlim_cur = 32 * 1024;  // the optimizer state of this model is larger
  const auto old_handler = signal(SIGXFSZ, SIG_IGN);  // inherited by the CLI: writes fail with EFBIG instead
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &lim), 0);
  const test::RunResult r = run_cli(with(args, {"--resume", "--eval-every", "0"}));
  setrlimit(RLIMIT_FSIZE, &old);
  signal(SIGXFSZ, old_handler);
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("write failed"), std::string::npos) << r.err;
  EXPECT_EQ(fs::read_symlink(dir.file("out/latest")).string(), "step-0000001");
  EXPECT_EQ(test::read_file(dir.file("out/latest/model.safetensors")), before);
  for (const auto& e : fs::directory_iterator(dir.file("out")))
    EXPECT_EQ(e.path().filename().string().find(".tmp"), std::string::npos) << e.path();
}

}  // namespace
}  // namespace mambacpp
