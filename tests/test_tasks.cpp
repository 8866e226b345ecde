// Synthetic tasks (src/tasks): the generators' determinism and structure, chunked scoring against an unchunked
// forward, a short training run that learns induction heads on short sequences, and the `task` command's
// bad options.
#include <gtest/gtest.h>

#include <algorithm>
#include <set>
#include <vector>

#include "core/context.h"
#include "core/error.h"
#include "model/lm.h"
#include "model/weights.h"
#include "support/test_util.h"
#include "tasks/generators.h"
#include "tasks/task_eval.h"
#include "tasks/task_train.h"

namespace mambacpp {
namespace {

std::vector<int32_t> whole(const TaskSequence& s) {
  std::vector<int32_t> ids(size_t(s.length()));
  s.fill(0, s.length(), ids.data());
  return ids;
}

TEST(TaskGenerators, SameSeedSameSequenceOtherSeedOrIndexAnother) {
  for (const Task task : {Task::selective_copying, Task::induction_heads}) {
    const auto a = whole(TaskSequence(task, 7, 3, 512));
    EXPECT_EQ(a, whole(TaskSequence(task, 7, 3, 512)));
    EXPECT_NE(a, whole(TaskSequence(task, 8, 3, 512)));
    EXPECT_NE(a, whole(TaskSequence(task, 7, 4, 512)));
  }
}

TEST(TaskGenerators, SlicesMatchTheWholeSequence) {
  for (const Task task : {Task::selective_copying, Task::induction_heads}) {
    const TaskSequence s(task, 1, 0, 1000);
    const auto all = whole(s);
    std::vector<int32_t> pieces;
    for (int64_t t0 = 0; t0 < 1000; t0 += 37) {
      std::vector<int32_t> part(size_t(std::min<int64_t>(37, 1000 - t0)));
      s.fill(t0, int64_t(part.size()), part.data());
      pieces.insert(pieces.end(), part.begin(), part.end());
    }
    EXPECT_EQ(pieces, all);
  }
}

TEST(TaskGenerators, SelectiveCopyingStructure) {
  EXPECT_EQ(task_vocab(Task::selective_copying), 18);
  for (int64_t index = 0; index < 20; ++index) {
    const int64_t l = 4096;
    const TaskSequence s(Task::selective_copying, 5, index, l);
    const auto ids = whole(s);
    std::vector<int32_t> data;
    for (int64_t t = 0; t < l - kCopyCount; ++t) {
      ASSERT_TRUE(ids[size_t(t)] == kCopyNoise || (ids[size_t(t)] >= 0 && ids[size_t(t)] < kTaskDataTokens))
          << "position " << t;
      if (ids[size_t(t)] != kCopyNoise) data.push_back(ids[size_t(t)]);
    }
    ASSERT_EQ(data.size(), size_t(kCopyCount));
    for (int64_t t = l - kCopyCount; t < l; ++t) EXPECT_EQ(ids[size_t(t)], kCopyMarker);
    EXPECT_EQ(s.answers(), data);  // the data tokens in order
    EXPECT_EQ(s.first_answer(), l - kCopyCount);
    std::vector<int32_t> targets(static_cast<size_t>(l));
    s.fill_targets(targets.data());
    EXPECT_EQ(std::count(targets.begin(), targets.end(), -1), l - kCopyCount);
    EXPECT_TRUE(std::equal(data.begin(), data.end(), targets.end() - kCopyCount));
  }
  // The shortest sequence is all data, then the markers.
  const auto shortest = whole(TaskSequence(Task::selective_copying, 0, 0, 32));
  EXPECT_EQ(std::count(shortest.begin(), shortest.end(), kCopyNoise), 0);
}

TEST(TaskGenerators, InductionHeadsStructure) {
  EXPECT_EQ(task_vocab(Task::induction_heads), 17);
  std::set<int64_t> positions;
  std::set<int32_t> keys;
  for (int64_t index = 0; index < 200; ++index) {
    const int64_t l = 256;
    const TaskSequence s(Task::induction_heads, 9, index, l);
    const auto ids = whole(s);
    EXPECT_EQ(std::count(ids.begin(), ids.end(), kInductionSpecial), 2);
    EXPECT_EQ(ids.back(), kInductionSpecial);
    const int64_t p = int64_t(std::find(ids.begin(), ids.end(), kInductionSpecial) - ids.begin());
    ASSERT_LE(p, l - 3);
    EXPECT_EQ(s.key_positions(), (std::vector<int64_t>{p, p + 1}));
    ASSERT_EQ(s.answers().size(), 1u);
    EXPECT_EQ(s.answers()[0], ids[size_t(p + 1)]);
    EXPECT_EQ(s.first_answer(), l - 1);
    for (const int32_t id : ids) EXPECT_TRUE(id >= 0 && id <= kInductionSpecial);
    positions.insert(p);
    keys.insert(s.answers()[0]);
  }
  EXPECT_GT(positions.size(), 100u);  // spread over the sequence
  EXPECT_EQ(keys.size(), size_t(kTaskDataTokens));
}

TEST(TaskGenerators, BadArguments) {
  test::expect_error([] { TaskSequence(Task::selective_copying, 0, 0, 31); }, {"at least 32", "31"});
  test::expect_error([] { TaskSequence(Task::induction_heads, 0, 0, 3); }, {"at least 4"});
  test::expect_error([] { parse_task("copying"); }, {"copying", "induction-heads"});
  const TaskSequence s(Task::induction_heads, 0, 0, 64);
  int32_t out[8];
  test::expect_error([&] { s.fill(60, 8, out); }, {"outside"});
}

// Scoring streamed in chunks (state carried, no logits kept) predicts what one unchunked forward pass over
// the whole sequences predicts.
TEST(TaskEval, ChunkedScoringMatchesUnchunkedForward) {
  Context ctx(0);
  for (const Task task : {Task::induction_heads, Task::selective_copying}) {
    const ModelWeights w = ModelWeights::random(task_model_config(task, "s6"), DType::f32, 3);
    TaskEvalOptions o;
    o.length = 2048;
    o.sequences = 3;
    o.batch = 2;
    o.chunk = 256;
    o.seed = 11;
    std::vector<int32_t> predicted;
    const TaskEvalResult r = evaluate_task(w, task, o, ctx, &predicted);
    const int64_t v = w.config.vocab_size, tail = task_answers(task);
    ASSERT_EQ(int64_t(predicted.size()), o.sequences * tail);
    int64_t correct = 0;
    for (int64_t i = 0; i < o.sequences; ++i) {
      const TaskSequence s(task, o.seed, i, o.length);
      const auto ids = whole(s);
      RecurrentState state(w.config, 1);
      Workspace ws;
      std::vector<float> logits(size_t(o.length * v));
      ForwardOptions fo;
      fo.logits_for = LogitsFor::all_positions;
      fo.chunk = o.length;
      lm_forward(Tensor(logits.data(), DType::f32, {1, o.length, v}), state, w, ids.data(), o.length, fo, ws, ctx);
      for (int64_t j = 0; j < tail; ++j) {
        const float* row = logits.data() + (s.first_answer() + j) * v;
        const int32_t best = int32_t(std::max_element(row, row + v) - row);
        EXPECT_EQ(predicted[size_t(i * tail + j)], best) << task_name(task) << " sequence " << i << " answer " << j;
        correct += best == s.answers()[size_t(j)];
      }
    }
    EXPECT_EQ(r.correct, correct);
    EXPECT_EQ(r.answers, o.sequences * tail);
    EXPECT_GT(r.buffer_bytes, 0);
  }
}

TEST(TaskEval, RefusesAModelOfAnotherVocabulary) {
  Context ctx(1);
  const ModelWeights w = ModelWeights::random(task_model_config(Task::induction_heads, "s6"), DType::f32, 0);
  TaskEvalOptions o;
  test::expect_error([&] { evaluate_task(w, Task::selective_copying, o, ctx); }, {"vocabulary of 18", "17"});
  o.length = 2;
  test::expect_error([&] { evaluate_task(w, Task::induction_heads, o, ctx); }, {"at least 4", "2"});
}

TEST(TaskTrain, TheCurriculumDoublesTheLengthOverEqualShares) {
  TaskTrainOptions t;
  t.steps = 8;
  t.start_length = 32;
  t.length = 256;
  const std::vector<int64_t> want = {32, 32, 64, 64, 128, 128, 256, 256};
  for (int64_t s = 0; s < 8; ++s) EXPECT_EQ(t.length_at(s), want[size_t(s)]) << "step " << s;
  t.length = 200;  // the last phase is the training length
  EXPECT_EQ(t.length_at(7), 200);
  EXPECT_EQ(t.length_at(5), 128);
  t.start_length = 0;
  EXPECT_EQ(t.length_at(0), 200);
  t.start_length = 512;
  EXPECT_EQ(t.length_at(0), 200);
}

// A short run on short sequences learns the induction-heads task (fixed seed; a few seconds).
TEST(TaskTrain, LearnsInductionHeadsOnShortSequences) {
  Context ctx(1);
  ModelWeights w = ModelWeights::random(task_model_config(Task::induction_heads, "s6"), DType::f32, 0);
  TaskTrainOptions t;
  t.steps = 250;
  t.batch = 32;
  t.length = 32;
  t.lr = 1e-2;
  t.warmup = 20;
  double last_loss = 0;
  train_task(w, Task::induction_heads, t, ctx, [&](const TaskTrainStep& s) { last_loss = s.loss; });
  TaskEvalOptions o;
  o.length = 32;
  o.sequences = 128;
  o.batch = 64;
  o.seed = 99;
  const TaskEvalResult r = evaluate_task(w, Task::induction_heads, o, ctx);
  EXPECT_GE(r.accuracy, 0.95) << "loss at the last step " << last_loss;
}

TEST(TaskCli, BadOptionsExitWithAMessage) {
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"task", "copying"}, "unknown task"},
      {{"task", "induction-heads", "--steps", "0"}, "--steps"},
      {{"task", "induction-heads", "--batch", "0"}, "--batch"},
      {{"task", "induction-heads", "--lr", "-1"}, "lr"},
      {{"task", "induction-heads", "--lengths", "64,2"}, "at least 4"},
      {{"task", "selective-copying", "--train-length", "16"}, "--train-length"},
      {{"task", "induction-heads", "--device", "tpu"}, "--device"},
      {{"task", "induction-heads", "--device", "cuda"}, "cuda"},
      {{"task", "induction-heads", "--ssm", "s7"}, "s7"},
      {{"task", "induction-heads", "--eval-samples", "0"}, "--eval-samples"},
      {{"task", "induction-heads", "--chunk", "0"}, "--chunk"},
      {{"task", "induction-heads", "--start-length", "2"}, "--start-length"},
  };
  for (const auto& [args, message] : cases) {
    const test::RunResult r = test::run_cli(args);
    EXPECT_EQ(r.code, 1) << args[1] << " " << (args.size() > 2 ? args[2] : "");
    EXPECT_NE(r.err.find(message), std::string::npos) << r.err;
  }
}

TEST(TaskCli, ATinyExperimentPrintsItsTable) {
  test::TempDir dir;
  const test::RunResult r = test::run_cli({"task", "induction-heads", "--steps", "2", "--batch", "2",
                                           "--train-length", "16", "--lengths", "16,64", "--eval-samples", "2",
                                           "-t", "1", "--out", dir.file("run")});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("| 16 | 2 |"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("| 64 | 2 |"), std::string::npos) << r.out;
  const std::string results = test::read_file(dir.file("run/results.json"));
  EXPECT_NE(results.find("\"accuracy\""), std::string::npos);
  EXPECT_NE(test::read_file(dir.file("run/config.json")).find("\"vocab_size\": 17"), std::string::npos);
}

TEST(TaskCli, TheSelectionAblationsTrain) {
  for (const std::string ssm : {"lti", "dt", "b", "c"}) {
    const test::RunResult r = test::run_cli({"task", "selective-copying", "--ssm", ssm, "--steps", "2", "--batch",
                                             "2", "--train-length", "40", "--eval-samples", "2", "-t", "1"});
    ASSERT_EQ(r.code, 0) << ssm << ": " << r.err;
    EXPECT_NE(r.out.find(ssm + " model"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("| 40 | 2 |"), std::string::npos) << r.out;
  }
}

}  // namespace
}  // namespace mambacpp
