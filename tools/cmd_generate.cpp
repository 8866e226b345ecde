// `mambacpp generate`: prefill a prompt and sample a continuation, streaming text as it is produced (or,
// with --print-ids, printing only the new ids on one line), then the prompt and generation speed on stderr.
// --device cuda runs the model on the GPU with its matrices in --dtype.
#include <cstdio>
#include <optional>

#include "cli_util.h"
#include "commands.h"
#include "core/cuda/device_info.h"
#include "core/error.h"
#include "infer/generate.h"
#include "model/loader.h"

namespace mambacpp::cli {

namespace {

struct GenerateCmdOptions {
  std::string model, prompt, prompt_ids, tokenizer;
  std::string device = "cpu";
  int64_t n_predict = 128;
  SamplingParams sampling;
  uint64_t seed = 0;
  int64_t batch = 1;
  bool print_ids = false, ignore_eos = false;
  RunOptions run;
};

void print_stats(const GenerateStats& s) {
  const auto rate = [](int64_t n, double sec) { return sec > 0 ? double(n) / sec : 0.0; };
  std::fprintf(stderr, "\nprompt: %lld tokens in %.3f s (%.1f tokens/s)\n", (long long)s.prompt_tokens,
               s.prompt_seconds, rate(s.prompt_tokens, s.prompt_seconds));
  std::fprintf(stderr, "generation: %lld tokens in %.3f s (%.1f tokens/s)\n", (long long)s.generated_tokens,
               s.generate_seconds, rate(s.generated_tokens, s.generate_seconds));
}

void run_generate(const GenerateCmdOptions& o) {
  MAMBA_CHECK(o.device == "cpu" || o.device == "cuda", "--device must be cpu or cuda, got {}", o.device);
  const Device dev = o.device == "cuda" ? Device::cuda : Device::cpu;
  if (dev == Device::cuda) require_cuda_device();
  MAMBA_CHECK(o.prompt.empty() != o.prompt_ids.empty(), "generate: give exactly one of -p/--prompt or --prompt-ids");
  MAMBA_CHECK(o.n_predict >= 0, "-n/--n-predict must be >= 0, got {}", o.n_predict);
  MAMBA_CHECK(o.batch >= 1 && o.batch <= 4096, "--batch must be in [1, 4096], got {}", o.batch);
  o.sampling.validate();
  Context ctx(o.run.threads);
  const DType dtype = o.run.matrix_dtype();

  std::optional<Tokenizer> tok;
  if (!o.print_ids || !o.prompt.empty()) tok.emplace(load_tokenizer(o.tokenizer, o.model));
  const std::vector<int32_t> prompt = o.prompt.empty() ? parse_ids(o.prompt_ids, "--prompt-ids") : tok->encode(o.prompt);
  MAMBA_CHECK(!prompt.empty(), "generate: the prompt encodes to no tokens");
  ModelWeights w = load_model(o.model, dtype);
  if (dev != Device::cpu) w = w.to_device(dev, dtype);

  GenerateOptions g;
  g.max_new_tokens = o.n_predict;
  g.sampling = o.sampling;
  g.seed = o.seed;
  g.eos_id = o.ignore_eos ? -1 : w.config.eos_token_id;
  g.half_activations = !o.run.f32_activations;
  std::optional<StreamDecoder> stream;
  if (!o.print_ids) {
    stream.emplace(*tok);
    const std::string text = tok->decode(prompt);
    std::fwrite(text.data(), 1, text.size(), stdout);
    std::fflush(stdout);
  }
  const auto on_token = [&](int64_t row, int32_t id) {
    // Ids of the embedding's padding rows (past the tokenizer's vocabulary) have no text, as in the reference.
    if (!stream || row != 0 || id >= tok->vocab_size()) return;
    const std::string piece = stream->push(id);
    std::fwrite(piece.data(), 1, piece.size(), stdout);
    std::fflush(stdout);
  };
  GenerateStats stats;
  const auto out = generate(w, std::vector<std::vector<int32_t>>(size_t(o.batch), prompt), g, on_token, &stats, ctx);
  if (o.print_ids) {
    std::printf("%s\n", join_ids(out[0]).c_str());
  } else {
    const std::string tail = stream->flush();
    std::fwrite(tail.data(), 1, tail.size(), stdout);
    std::fputc('\n', stdout);
  }
  std::fflush(stdout);
  print_stats(stats);
}

}  // namespace

void add_generate_command(CLI::App& app) {
  auto o = std::make_shared<GenerateCmdOptions>();
  CLI::App* cmd = app.add_subcommand("generate", "Generate text from a prompt");
  cmd->add_option("-m,--model", o->model, "model folder (config.json, model.safetensors, tokenizer.json)")->required();
  cmd->add_option("-p,--prompt", o->prompt, "prompt text");
  cmd->add_option("--prompt-ids", o->prompt_ids, "prompt as comma-separated token ids (instead of -p)");
  cmd->add_option("--tokenizer", o->tokenizer, "tokenizer.json (default: the model folder's)");
  cmd->add_option("-n,--n-predict", o->n_predict, "number of tokens to generate")->capture_default_str();
  cmd->add_option("--temperature", o->sampling.temperature, "sampling temperature (0 = greedy)")->capture_default_str();
  cmd->add_option("--top-k", o->sampling.top_k, "keep the k most likely tokens (0 = off)")->capture_default_str();
  cmd->add_option("--top-p", o->sampling.top_p, "nucleus sampling mass (1 = off)")->capture_default_str();
  cmd->add_option("--min-p", o->sampling.min_p, "drop tokens below this fraction of the top probability (0 = off)")
      ->capture_default_str();
  cmd->add_option("--repeat-penalty", o->sampling.repetition_penalty, "repetition penalty (1 = off)")
      ->capture_default_str();
  cmd->add_option("-s,--seed", o->seed, "random seed")->capture_default_str();
  cmd->add_option("--batch", o->batch, "number of sequences generated together from the prompt")->capture_default_str();
  cmd->add_flag("--print-ids", o->print_ids, "print only the generated token ids, comma-separated, on one line");
  cmd->add_flag("--ignore-eos", o->ignore_eos, "do not stop at the end-of-sequence token");
  cmd->add_option("--device", o->device, "cpu or cuda")->capture_default_str();
  o->run.add_to(*cmd);
  cmd->callback([o] { run_generate(*o); });
}

}  // namespace mambacpp::cli
