// Tests of the training loop on a small model: gradient accumulation averages the micro-batches, resuming gives
// bit-identical losses and weights to an uninterrupted run, checkpoints and outputs appear, every bad input ends in an Error naming its cause and
// leaves the last good checkpoint, and (with ../shared present) the loss on Tiny Shakespeare falls steeply.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <string>

#include "core/error.h"
#include "model/loader.h"
#include "model/presets.h"
#include "support/test_util.h"
#include "model/lm_train.h"
#include "train/batcher.h"
#include "train/checkpoint.h"
#include "train/loss_log.h"
#include "train/trainer.h"

namespace mambacpp {
namespace {

namespace fs = std::filesystem;
using test::expect_error;
using test::TempDir;

// A small byte-level model and a text of a few thousand bytes, in `dir`.
TrainOptions small_run(const TempDir& dir) {
  MambaConfig c = preset_config("tiny");
  c.d_model = 32;
  c.n_layer = 2;
  c.d_inner = 0;
  c.dt_rank = 0;
  c.fill_derived();
  test::write_file(dir.file("config.json"), c.to_hf_json());
  std::string text;
  for (int i = 0; text.size() < 6000; ++i) text += "the quick brown fox " + std::to_string(i % 17) + " jumps\n";
  test::write_file(dir.file("text.txt"), text);
  TrainOptions o;
  o.data = dir.file("text.txt");
  o.config = dir.file("config.json");
  o.out = dir.file("out");
  o.steps = 6;
  o.batch = 2;
  o.seq_len = 32;
  o.warmup = 2;
  o.eval_every = 3;
  o.eval_windows = 4;
  o.save_every = 0;
  o.seed = 5;
  return o;
}

std::vector<std::pair<double, double>> train_losses(const std::string& out) {
  return read_loss_curves(out + "/loss_log.jsonl").train;
}

std::string weights_bytes(const std::string& dir) { return test::read_file(dir + "/model.safetensors"); }

TEST(TrainLoop, ResumingIsBitIdenticalToAnUninterruptedRun) {
  TempDir dir;
  TrainOptions o = small_run(dir);
  o.grad_accum = 2;
  Context ctx(2);
  const TrainSummary whole = train(o, ctx, nullptr);
  EXPECT_EQ(whole.step, 6);
  const auto ref = train_losses(o.out);
  ASSERT_EQ(ref.size(), 6u);
  EXPECT_LT(ref.back().second, ref.front().second);
  const std::string ref_weights = weights_bytes(o.out + "/latest");
  EXPECT_TRUE(fs::exists(o.out + "/best/model.safetensors"));
  EXPECT_TRUE(fs::exists(o.out + "/loss.png"));

  o.out = dir.file("out2");
  o.stop_after = 4;
  EXPECT_EQ(train(o, ctx, nullptr).step, 4);
  o.resume = true;
  o.stop_after = 0;
  const TrainSummary rest = train(o, ctx, nullptr);
  EXPECT_EQ(rest.first_step, 4);
  EXPECT_EQ(train_losses(o.out), ref);  // exact: the same doubles
  EXPECT_EQ(weights_bytes(o.out + "/latest"), ref_weights);
  EXPECT_EQ(rest.best_val_loss, whole.best_val_loss);
  EXPECT_EQ(load_model(o.out + "/latest", DType::f32).config.d_model, 32);
}

// One step with two micro-batches equals AdamW on the mean of their gradients, computed here step by step.
TEST(TrainLoop, GradientAccumulationAveragesTheMicroBatches) {
  TempDir dir;
  TrainOptions o = small_run(dir);
  o.steps = 1;
  o.grad_accum = 2;
  o.eval_every = 0;
  o.warmup = 0;
  o.clip = 0;
  o.adam.eps = 1.0;  // makes the update depend on the gradients' scale, which Adam otherwise divides out
  Context ctx(2);
  train(o, ctx, nullptr);
  const ModelWeights trained = load_model(o.out + "/latest", DType::f32);

  MambaConfig cfg = MambaConfig::from_json_file(o.config);
  cfg.fill_derived();
  ModelWeights w = ModelWeights::random(cfg, DType::f32, o.seed);
  const TokenData data = TokenData::load(o.data, nullptr);
  TokenRange tr, va;
  split_tokens(data.size(), 0.9, tr, va);
  const BatchSampler sampler(data, tr, o.batch, o.seq_len, o.seed);
  ParamGrads grads(w), g2(w);
  TrainWorkspace ws;
  std::vector<int32_t> ids(size_t(o.batch * (o.seq_len + 1)));
  double loss = 0;
  for (int j = 0; j < 2; ++j) {
    sampler.fill(j, ids.data());
    g2.zero(ctx);
    loss += 0.5 * lm_loss(&g2, w, ids.data(), o.batch, o.seq_len + 1, ws, ctx);
    for (size_t p = 0; p < grads.grads.size(); ++p)
      for (int64_t i = 0; i < grads.grads[p].numel(); ++i) grads.grads[p].f32()[i] += 0.5f * g2.grads[p].f32()[i];
  }
  EXPECT_NEAR(train_losses(o.out).at(0).second, loss, 1e-12);
  AdamW adam(w.named_parameters(), o.adam);
  adam.step(grads.grads, o.lr * o.min_lr_ratio, ctx);  // one step: the last, at the floor
  const auto a = w.named_parameters(), b = trained.named_parameters();
  for (size_t p = 0; p < a.size(); ++p)
    EXPECT_CLOSE(b[p].second.f32(), a[p].second.f32(), size_t(a[p].second.numel()), 1e-6) << a[p].first;
}

TEST(TrainLoop, TrainsOnAFolderOfDocuments) {
  TempDir dir;
  TrainOptions o = small_run(dir);
  fs::create_directories(dir.path() / "docs");
  for (int i = 0; i < 3; ++i)
    test::write_file(dir.file("docs/" + std::to_string(i) + ".txt"), std::string(900, char('a' + i)));
  o.data = dir.file("docs");
  o.steps = 3;
  o.eval_every = 3;
  Context ctx(2);
  const TrainSummary s = train(o, ctx, nullptr);
  EXPECT_TRUE(std::isfinite(s.last_loss));
  EXPECT_TRUE(std::isfinite(s.best_val_loss));
}

TEST(TrainLoop, ResumeKeepsTheSchedule) {
  TempDir dir;
  TrainOptions o = small_run(dir);
  o.steps = 2;
  o.eval_every = 0;
  Context ctx(2);
  train(o, ctx, nullptr);
  expect_error([&] { train(o, ctx, nullptr); }, {"already holds a checkpoint", "--resume"});
  o.resume = true;
  o.lr = 1e-3;
  expect_error([&] { train(o, ctx, nullptr); }, {"--resume", "--lr", "0.001", "0.002"});
}

TEST(TrainLoop, NonFiniteLossStopsAndKeepsTheLastCheckpoint) {
  TempDir dir;
  TrainOptions o = small_run(dir);
  o.lr = 1e30;
  o.warmup = 0;
  o.clip = 0;
  o.save_every = 1;
  o.eval_every = 0;
  Context ctx(2);
  expect_error([&] { train(o, ctx, nullptr); }, {"the training loss is", "stopping", "step-0000001"});
  const std::string latest = latest_checkpoint(o.out);
  ASSERT_NE(latest, "");
  EXPECT_EQ(load_trainer_state(latest).step, 1);
  const ModelWeights w = load_model(latest, DType::f32);
  EXPECT_TRUE(std::isfinite(w.norm_f.f32()[0]));
}

TEST(TrainLoop, BadInputIsAnErrorNamingTheCause) {
  TempDir dir;
  const TrainOptions base = small_run(dir);
  Context ctx(1);
  const auto fails = [&](auto edit, const std::vector<std::string>& parts) {
    TrainOptions o = base;
    o.out = dir.file("bad-out");
    edit(o);
    expect_error([&] { train(o, ctx, nullptr); }, parts);
    EXPECT_FALSE(fs::exists(o.out)) << parts[0];
  };
  fails([&](TrainOptions& o) { o.data = dir.file("missing.txt"); }, {"missing.txt", "no such file"});
  test::write_file(dir.file("empty.txt"), "");
  fails([&](TrainOptions& o) { o.data = dir.file("empty.txt"); }, {"empty.txt", "no text"});
  test::write_file(dir.file("short.txt"), "too short for a window");
  fails([&](TrainOptions& o) { o.data = dir.file("short.txt"); }, {"short.txt", "fewer than one window"});
  fails([&](TrainOptions& o) { o.tokenizer = test::golden("tokenizer/tokenizer.json"); },
        {"tokenizer has", "vocabulary of 256"});
  fails([&](TrainOptions& o) { o.batch = 0; }, {"--batch"});
  fails([&](TrainOptions& o) { o.seq_len = -3; }, {"--seq-len"});
  fails([&](TrainOptions& o) { o.lr = std::nan(""); }, {"--lr"});
  fails([&](TrainOptions& o) { o.warmup = 100; }, {"--warmup"});
  fails([&](TrainOptions& o) { o.steps = 0; }, {"--steps"});
  fails([&](TrainOptions& o) { o.config = "huge"; }, {"huge"});
  fails([&](TrainOptions& o) { o.adam.beta1 = 1.5; }, {"--beta1"});
}

TEST(TrainLoop, TinyShakespeareLossFallsSteeply) {
  const std::string data = test::shared_file("data/tinyshakespeare.txt");
  if (data.empty()) GTEST_SKIP() << "../shared/data/tinyshakespeare.txt is absent";
  TempDir dir;
  TrainOptions o;
  o.data = data;
  o.config = "tiny";
  o.out = dir.file("out");
  o.steps = 25;
  o.batch = 4;
  o.seq_len = 64;
  o.warmup = 5;
  o.eval_every = 25;
  o.eval_windows = 16;
  o.lr = 4e-3;
  Context ctx(2);
  const TrainSummary s = train(o, ctx, nullptr);
  const auto losses = train_losses(o.out);
  ASSERT_EQ(losses.size(), 25u);
  EXPECT_GT(losses.front().second, 5.0);  // about ln 256 = 5.55 at the start
  EXPECT_LT(s.last_loss, 3.0);            // 2.45 when written
  EXPECT_LT(s.best_val_loss, 3.0);        // 2.50 when written
}

}  // namespace
}  // namespace mambacpp
