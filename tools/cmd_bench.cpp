// `mambacpp bench`: prefill and decode throughput of named model shapes with random weights, as a
// llama-bench-style markdown table (or JSON), with the fraction of the measured hardware limits.
#include <cstdio>

#include "cli_util.h"
#include "commands.h"
#include "core/error.h"
#include "model_bench.h"

namespace mambacpp::cli {

namespace {

struct BenchCmdOptions {
  std::vector<std::string> models = {"130m", "1.4b"};
  std::vector<std::string> dtypes = {"f32", "bf16"};
  std::vector<int64_t> prompts = {512, 2048};
  int64_t decode = 128;
  int reps = 3;
  int threads = 0;
  bool json = false;
};

void run_bench(const BenchCmdOptions& o) {
  bench::ModelBenchOptions opt;
  opt.models = o.models;
  opt.dtypes.clear();
  for (const auto& d : o.dtypes) opt.dtypes.push_back(parse_dtype(d, "--dtypes"));
  opt.prompts = o.prompts;
  opt.decode = o.decode;
  opt.reps = o.reps;
  opt.threads = o.threads;
  const Context probe(o.threads);
  const bench::HardwareCeilings hw = bench::measure_ceilings(probe.threads());
  const auto rows = bench::run_model_bench(opt, hw);
  const std::string out = o.json ? bench::format_json(rows, hw) + "\n" : bench::format_markdown(rows, hw);
  std::fwrite(out.data(), 1, out.size(), stdout);
}

}  // namespace

void add_bench_command(CLI::App& app) {
  auto o = std::make_shared<BenchCmdOptions>();
  CLI::App* cmd = app.add_subcommand("bench", "Benchmark prefill and decode speed on the CPU (random weights)");
  cmd->add_option("--models", o->models, "model shapes (tiny, 130m, 370m, 790m, 1.4b, 2.8b)")
      ->delimiter(',')->capture_default_str();
  cmd->add_option("--dtypes", o->dtypes, "weight storage types (f32, bf16, f16)")->delimiter(',')->capture_default_str();
  cmd->add_option("-p,--prompts", o->prompts, "prompt lengths for prefill")->delimiter(',')->capture_default_str();
  cmd->add_option("-n,--decode", o->decode, "tokens decoded for the decode test (0 = skip)")->capture_default_str();
  cmd->add_option("-r,--reps", o->reps, "timed repetitions per case (the median is reported)")->capture_default_str();
  cmd->add_option("-t,--threads", o->threads, "CPU threads (0 = all available)")->capture_default_str();
  cmd->add_flag("--json", o->json, "print JSON instead of a markdown table");
  cmd->callback([o] { run_bench(*o); });
}

}  // namespace mambacpp::cli
