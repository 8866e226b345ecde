// Tests of training checkpoints: the Hugging Face folder loads back as a model with the same weights, the
// optimizer and trainer state round-trip, `latest`/`best` links and pruning, and a save that fails part-way
// (the file-size limit standing in for a full disk) leaves the previous checkpoint as it was.
#include <gtest/gtest.h>
#include <sys/resource.h>

#include <csignal>
#include <cstring>
#include <filesystem>

#include "core/context.h"
#include "core/error.h"
#include "model/loader.h"
#include "model/presets.h"
#include "support/test_util.h"
#include "train/checkpoint.h"

namespace mambacpp {
namespace {

namespace fs = std::filesystem;
using test::TempDir;

MambaConfig small_config() {
  MambaConfig c = preset_config("tiny");
  c.d_model = 16;
  c.n_layer = 2;
  c.d_inner = 0;
  c.dt_rank = 0;
  c.fill_derived();
  return c;
}

std::vector<Tensor> grads_like(const ModelWeights& w, std::vector<std::vector<float>>& store, float value) {
  std::vector<Tensor> g;
  for (const auto& [name, t] : w.named_parameters()) {
    store.emplace_back(size_t(t.numel()), value);
    Tensor v = t;
    v.data = store.back().data();
    g.push_back(v);
  }
  return g;
}

std::vector<std::string> entries(const fs::path& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

bool same_weights(const ModelWeights& a, const ModelWeights& b) {
  const auto pa = a.named_parameters(), pb = b.named_parameters();
  if (pa.size() != pb.size()) return false;
  for (size_t i = 0; i < pa.size(); ++i)
    if (pa[i].first != pb[i].first || std::memcmp(pa[i].second.data, pb[i].second.data, pa[i].second.nbytes()) != 0)
      return false;
  return true;
}

TEST(TrainCheckpoint, SavesLoadableFoldersAndKeepsLatestAndBest) {
  Context ctx(1);
  TempDir out;
  ModelWeights w = ModelWeights::random(small_config(), DType::f32, 3);
  AdamW opt(w.named_parameters(), AdamWOptions{});
  std::vector<std::vector<float>> store;
  const std::vector<Tensor> g = grads_like(w, store, 0.01f);
  TrainerState st;
  st.seed = 42;
  st.settings = {{"lr", 0.002}};
  EXPECT_EQ(latest_checkpoint(out.path().string()), "");
  for (int step = 1; step <= 3; ++step) {
    opt.step(g, 1e-3, ctx);
    st.step = step;
    st.next_batch = 2 * step;
    save_checkpoint(out.path().string(), w, opt, st, step != 2);
    if (step == 2) {
      EXPECT_EQ(entries(out.path()), (std::vector<std::string>{"best", "latest", "step-0000001", "step-0000002"}));
      EXPECT_EQ(fs::read_symlink(out.path() / "best").string(), "step-0000001");
    }
  }
  EXPECT_EQ(entries(out.path()), (std::vector<std::string>{"best", "latest", "step-0000003"}));
  const std::string latest = latest_checkpoint(out.path().string());
  ASSERT_NE(latest, "");
  const ModelWeights back = load_model(latest, DType::f32);
  EXPECT_TRUE(same_weights(w, back));
  const TrainerState s2 = load_trainer_state(latest);
  EXPECT_EQ(s2.step, 3);
  EXPECT_EQ(s2.next_batch, 6);
  EXPECT_EQ(s2.seed, 42u);
  EXPECT_EQ(s2.settings, st.settings);

  // A restored optimizer takes the same next step as the original.
  ModelWeights w2 = load_model(latest, DType::f32);
  AdamW opt2(w2.named_parameters(), AdamWOptions{});
  load_optimizer_state(latest, opt2);
  EXPECT_EQ(opt2.steps(), 3);
  opt.step(g, 1e-3, ctx);
  opt2.step(g, 1e-3, ctx);
  EXPECT_TRUE(same_weights(w, w2));
}

TEST(TrainCheckpoint, AFailedSaveLeavesThePreviousCheckpoint) {
  TempDir out;
  ModelWeights w = ModelWeights::random(small_config(), DType::f32, 3);
  AdamW opt(w.named_parameters(), AdamWOptions{});
  TrainerState st;
  st.step = 1;
  save_checkpoint(out.path().string(), w, opt, st, true);
  const std::string before = test::read_file(out.file("latest/model.safetensors"));
  w.named_parameters()[0].second.f32()[0] += 1.0f;
  st.step = 2;
  rlimit old{};
  ASSERT_EQ(getrlimit(RLIMIT_FSIZE, &old), 0);
  rlimit lim = old;
  lim.rlim_cur = 16 * 1024;
  const auto old_handler = signal(SIGXFSZ, SIG_IGN);
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &lim), 0);
  test::expect_error([&] { save_checkpoint(out.path().string(), w, opt, st, true); }, {"write failed"});
  setrlimit(RLIMIT_FSIZE, &old);
  signal(SIGXFSZ, old_handler);
  EXPECT_EQ(entries(out.path()), (std::vector<std::string>{"best", "latest", "step-0000001"}));
  EXPECT_EQ(test::read_file(out.file("latest/model.safetensors")), before);
  EXPECT_EQ(load_trainer_state(latest_checkpoint(out.path().string())).step, 1);
}

TEST(TrainCheckpoint, DamagedStateNamesTheFile) {
  TempDir out;
  ModelWeights w = ModelWeights::random(small_config(), DType::f32, 3);
  AdamW opt(w.named_parameters(), AdamWOptions{});
  save_checkpoint(out.path().string(), w, opt, TrainerState{}, false);
  const std::string dir = latest_checkpoint(out.path().string());
  test::write_file(dir + "/trainer_state.json", "{\"step\": 1}");
  test::expect_error([&] { load_trainer_state(dir); }, {"trainer_state.json", "next_batch"});
  fs::remove(dir + "/optimizer.safetensors");
  test::expect_error([&] { load_optimizer_state(dir, opt); }, {"optimizer.safetensors"});
}

}  // namespace
}  // namespace mambacpp
