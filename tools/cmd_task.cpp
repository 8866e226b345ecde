// `mambacpp task selective-copying|induction-heads`: one command per synthetic experiment of the Mamba paper
// (src/tasks/): trains the paper's small model (2 layers, d_model 64) with a progress bar, then scores it at
// each test length in constant memory (chunked prefill carrying the state) and prints a markdown table of
// accuracy, sequences, time and memory per length; --out saves the model, results.json and accuracy.png.
// `mambacpp task plot RESULTS.json... -o chart.png` charts the accuracy of one or more runs together.
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "core/context.h"
#include "core/cuda/device_info.h"
#include "core/error.h"
#include "io/atomic_file.h"
#include "io/safetensors.h"
#include "model/weights.h"
#include "tasks/accuracy_plot.h"
#include "tasks/task_eval.h"
#include "tasks/task_train.h"

namespace mambacpp::cli {

namespace {

namespace fs = std::filesystem;

struct TaskCmdOptions {
  std::string task;
  std::string ssm = "s6";
  std::string device = "cpu";
  TaskTrainOptions train;
  bool train_length_given = false, steps_given = false, batch_given = false;
  std::vector<int64_t> lengths;    // empty: the task's default
  int64_t max_length = 0;          // 0: the task's default
  int64_t eval_samples = 64;       // sequences per length at most
  int64_t eval_tokens = 1 << 20;   // tokens per length: fewer sequences at long lengths (at least 4)
  int64_t eval_batch = 16;
  int64_t chunk = 1024;
  int64_t log_every = 0;           // 0: a bar redrawn in place on a terminal, else ~20 lines
  int threads = 0;
  std::string out;
};

// The test lengths: --lengths, else powers of two from 2^6 (induction heads) or the training length
// (selective copying) up to --max-length (default 2^20, and the training length for selective copying).
std::vector<int64_t> test_lengths(Task task, const TaskCmdOptions& o) {
  if (!o.lengths.empty()) return o.lengths;
  const bool copying = task == Task::selective_copying;
  const int64_t max = o.max_length > 0 ? o.max_length : copying ? o.train.length : int64_t(1) << 20;
  std::vector<int64_t> out;
  for (int64_t l = copying ? o.train.length : 64; l <= max; l *= 2) out.push_back(l);
  if (out.empty() || out.back() != max) out.push_back(max);
  return out;
}

int64_t sequences_at(const TaskCmdOptions& o, int64_t length) {
  return std::min(o.eval_samples, std::max<int64_t>(o.eval_tokens / length, 4));
}

void validate(Task task, const TaskCmdOptions& o, const std::vector<int64_t>& lengths) {
  MAMBA_CHECK(o.device == "cpu" || o.device == "cuda", "--device must be cpu or cuda, got '{}'", o.device);
  if (o.device == "cuda") require_cuda_device();
  MAMBA_CHECK(o.threads >= 0, "--threads must be ≥ 0, got {}", o.threads);
  MAMBA_CHECK(o.max_length >= 0, "--max-length must be ≥ 0, got {}", o.max_length);
  MAMBA_CHECK(o.eval_samples >= 1, "--eval-samples must be at least 1, got {}", o.eval_samples);
  MAMBA_CHECK(o.eval_tokens >= 1, "--eval-tokens must be at least 1, got {}", o.eval_tokens);
  MAMBA_CHECK(o.eval_batch >= 1, "--eval-batch must be at least 1, got {}", o.eval_batch);
  MAMBA_CHECK(o.chunk >= 1, "--chunk must be at least 1, got {}", o.chunk);
  MAMBA_CHECK(o.log_every >= 0, "--log-every must be ≥ 0, got {}", o.log_every);
  o.train.validate(task);
  for (const int64_t l : lengths)
    MAMBA_CHECK(l >= task_min_length(task), "--lengths/--max-length: {} needs sequences of at least {} tokens, got {}",
                task_name(task), task_min_length(task), l);
  MAMBA_CHECK(o.out.empty() || !fs::exists(fs::path(o.out) / "results.json"),
              "--out {} already holds results.json; choose another folder", o.out);
}

std::string duration(double seconds) {
  const int64_t s = int64_t(std::max(0.0, seconds));
  if (s >= 60) return fmt::format("{}m{:02d}s", s / 60, s % 60);
  return fmt::format("{:.1f}s", seconds);
}

std::string mib(int64_t bytes) {
  if (bytes < 0) return "n/a";
  return fmt::format("{:.1f} MiB", double(bytes) / double(1 << 20));
}

// Prints the training progress: a bar redrawn in place on a terminal, else a line every `every` steps.
class Progress {
 public:
  Progress(int64_t steps, int64_t every)
      : tty_(every == 0 && isatty(fileno(stdout)) != 0), every_(every > 0 ? every : std::max<int64_t>(1, steps / 20)) {}
  void operator()(const TaskTrainStep& s) {
    if (!tty_ && s.step % every_ != 0 && s.step != s.steps) return;
    const int width = 30, filled = int(width * s.step / s.steps);
    std::printf("%s[%s%s] step %lld/%lld | length %lld | loss %.4f | lr %.2e | %.0f tok/s | %s left%s",
                tty_ ? "\r" : "", std::string(size_t(filled), '#').c_str(),
                std::string(size_t(width - filled), '.').c_str(), (long long)s.step, (long long)s.steps,
                (long long)s.length, s.loss, s.lr, s.tokens_per_s, duration(s.seconds_left).c_str(),
                tty_ && s.step != s.steps ? "   " : "\n");
    std::fflush(stdout);
  }

 private:
  bool tty_;
  int64_t every_;
};

void save_outputs(const TaskCmdOptions& o, Task task, const ModelWeights& w, const nlohmann::json& results) {
  fs::create_directories(o.out);
  write_file_atomic((fs::path(o.out) / "config.json").string(), w.config.to_hf_json());
  std::map<std::string, Tensor> params;
  for (const auto& [name, t] : w.named_parameters()) params.emplace(name, t);
  save_safetensors((fs::path(o.out) / "model.safetensors").string(), params, {{"task", task_name(task)}});
  write_file_atomic((fs::path(o.out) / "results.json").string(), results.dump(2) + "\n");
  AccuracySeries s{fmt::format("{} ({})", o.ssm, o.device), {}};
  for (const nlohmann::json& row : results["results"])
    s.points.emplace_back(row["length"].get<int64_t>(), row["accuracy"].get<double>());
  write_accuracy_plot((fs::path(o.out) / "accuracy.png").string(), task_name(task), {s});
  std::printf("model, results.json and accuracy.png saved in %s\n", o.out.c_str());
}

// `task plot`: one series per results.json, labelled by its variant and device (and its folder when two
// files would share a label); every file is read and checked before the chart is written.
void run_plot(const std::vector<std::string>& files, const std::string& output) {
  std::vector<TaskResults> runs;
  for (const std::string& f : files) {
    runs.push_back(read_task_results(f));
    MAMBA_CHECK(runs.back().task == runs.front().task, "{}: task {} differs from {} in {}; chart one task at a time",
                f, runs.back().task, runs.front().task, files.front());
  }
  MAMBA_CHECK(runs.size() <= kMaxAccuracySeries, "task plot: {} files, at most {} series fit one chart", runs.size(),
              kMaxAccuracySeries);
  std::vector<std::string> labels;
  for (const TaskResults& r : runs) labels.push_back(fmt::format("{} ({})", r.ssm, r.device));
  std::vector<AccuracySeries> series;
  for (size_t i = 0; i < runs.size(); ++i) {
    const bool shared = std::count(labels.begin(), labels.end(), labels[i]) > 1;
    const std::string folder = fs::absolute(files[i]).parent_path().filename().string();
    series.push_back({shared ? fmt::format("{} {}", labels[i], folder) : labels[i], runs[i].points});
  }
  write_accuracy_plot(output, runs.front().task, series);
  std::printf("%s: %zu series\n", output.c_str(), series.size());
}

void run_task(TaskCmdOptions o) {
  const Task task = parse_task(o.task);
  if (task == Task::selective_copying) {  // the paper's length, and the schedule measured to reach 99.6 % there
    if (!o.train_length_given) o.train.length = 4096;
    if (!o.steps_given) o.train.steps = 4000;
    if (!o.batch_given) o.train.batch = 32;
  }
  const std::vector<int64_t> lengths = test_lengths(task, o);
  validate(task, o, lengths);
  Context ctx(o.threads);
  ModelWeights w = ModelWeights::random(task_model_config(task, o.ssm), DType::f32, o.train.seed);
  std::printf("%s: %s model, 2 layers, d_model 64, vocabulary %lld, %lld parameters; %s, %d threads\n",
              task_name(task), o.ssm.c_str(), (long long)w.config.vocab_size, (long long)w.parameter_count(),
              o.device.c_str(), ctx.threads());
  const std::string from = o.train.start_length > 0 ? fmt::format("{} doubling to ", o.train.start_length) : "";
  std::printf("training: %lld steps of %lld sequences of %s%lld tokens, lr %.1e\n", (long long)o.train.steps,
              (long long)o.train.batch, from.c_str(), (long long)o.train.length, o.train.lr);
  std::fflush(stdout);
  Progress progress(o.train.steps, o.log_every);
  TaskTrainOptions train = o.train;
  train.device = o.device == "cuda" ? Device::cuda : Device::cpu;
  train_task(w, task, train, ctx, [&](const TaskTrainStep& s) { progress(s); });
  // The evaluation runs where the training did.
  const ModelWeights eval_w = train.device == Device::cpu ? ModelWeights{} : w.to_device(train.device, DType::f32);
  const ModelWeights& ew = train.device == Device::cpu ? w : eval_w;

  std::printf("\n| length | sequences | accuracy | time | eval buffers | peak RSS growth |\n");
  std::printf("|---:|---:|---:|---:|---:|---:|\n");
  std::fflush(stdout);
  nlohmann::json rows = nlohmann::json::array();
  for (const int64_t l : lengths) {
    TaskEvalOptions eo;
    eo.length = l;
    eo.sequences = sequences_at(o, l);
    eo.batch = o.eval_batch;
    eo.chunk = o.chunk;
    eo.seed = o.train.seed ^ 0x5eed0f7e57ull;  // a stream apart from the training sequences
    const TaskEvalResult r = evaluate_task(ew, task, eo, ctx);
    std::printf("| %lld | %lld | %.2f %% | %s | %s | %s |\n", (long long)l, (long long)r.sequences,
                100.0 * r.accuracy, duration(r.seconds).c_str(), mib(r.buffer_bytes).c_str(),
                mib(r.rss_growth_bytes).c_str());
    std::fflush(stdout);
    rows.push_back({{"length", l}, {"sequences", r.sequences}, {"answers", r.answers}, {"correct", r.correct},
                    {"accuracy", r.accuracy}, {"seconds", r.seconds}, {"buffer_bytes", r.buffer_bytes},
                    {"rss_growth_bytes", r.rss_growth_bytes}});
  }
  std::printf("eval buffers: recurrent state, workspace, ids and logits; peak RSS growth: the process's peak "
              "resident memory during the evaluation, above what it held before.\n");
  if (!o.out.empty()) {
    const nlohmann::json results = {
        {"task", task_name(task)}, {"ssm", o.ssm}, {"device", o.device}, {"seed", o.train.seed},
        {"steps", o.train.steps}, {"batch", o.train.batch}, {"train_length", o.train.length},
        {"start_length", o.train.start_length}, {"lr", o.train.lr},
        {"parameters", w.parameter_count()}, {"results", rows}};
    save_outputs(o, task, w, results);
  }
}

}  // namespace

void add_task_command(CLI::App& app) {
  auto o = std::make_shared<TaskCmdOptions>();
  TaskTrainOptions& t = o->train;
  CLI::App* cmd = app.add_subcommand(
      "task", "Train the paper's small model on a synthetic task, then score it at each test length");
  cmd->add_option("task", o->task, "selective-copying or induction-heads");
  cmd->add_option("--ssm", o->ssm, "selectivity: s6, lti, dt, b or c")->capture_default_str();
  cmd->add_option("--device", o->device, "cpu or cuda")->capture_default_str();
  cmd->add_option("--steps", t.steps, "training steps (selective copying: 4000)")
      ->capture_default_str()
      ->each([o](const std::string&) { o->steps_given = true; });
  cmd->add_option("--batch", t.batch, "training sequences per step (selective copying: 32)")
      ->capture_default_str()
      ->each([o](const std::string&) { o->batch_given = true; });
  cmd->add_option("--train-length", t.length, "tokens per training sequence (selective copying: 4096)")
      ->capture_default_str()
      ->each([o](const std::string&) { o->train_length_given = true; });
  cmd->add_option("--start-length", t.start_length,
                  "length curriculum: start at this length, doubling up to --train-length (0: none)")
      ->capture_default_str();
  cmd->add_option("--lr", t.lr, "peak learning rate")->capture_default_str();
  cmd->add_option("--warmup", t.warmup, "linear warm-up steps")->capture_default_str();
  cmd->add_option("--seed", t.seed, "seed of the weights and the sequences")->capture_default_str();
  cmd->add_option("--lengths", o->lengths, "test lengths, comma-separated (default: powers of two)")->delimiter(',');
  cmd->add_option("--max-length", o->max_length, "longest test length (default 2^20; selective copying: 4096)");
  cmd->add_option("--eval-samples", o->eval_samples, "sequences scored per length, at most")->capture_default_str();
  cmd->add_option("--eval-tokens", o->eval_tokens,
                  "tokens scored per length (fewer sequences at long lengths, at least 4)")
      ->capture_default_str();
  cmd->add_option("--eval-batch", o->eval_batch, "sequences run at once when scoring")->capture_default_str();
  cmd->add_option("--chunk", o->chunk, "tokens per sequence per forward call when scoring")->capture_default_str();
  cmd->add_option("--log-every", o->log_every, "steps between progress lines (0: a bar on a terminal)")
      ->capture_default_str();
  cmd->add_option("-t,--threads", o->threads, "CPU threads (0 = all available)")->capture_default_str();
  cmd->add_option("-o,--out", o->out, "folder to save the model, results.json and accuracy.png in");
  auto files = std::make_shared<std::vector<std::string>>();
  auto output = std::make_shared<std::string>();
  CLI::App* plot = cmd->add_subcommand(
      "plot", "Chart accuracy against test length from results.json files of task --out (one series each)");
  plot->add_option("results", *files, "results.json files")->required();
  plot->add_option("-o,--output", *output, "the PNG chart to write")->required();
  plot->callback([files, output] { run_plot(*files, *output); });
  cmd->callback([o, plot] {
    if (plot->parsed()) return;
    MAMBA_CHECK(!o->task.empty(), "task: name a task (selective-copying or induction-heads), or `task plot`");
    run_task(*o);
  });
}

}  // namespace mambacpp::cli
