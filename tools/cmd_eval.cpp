// `mambacpp eval`: a model folder's loss on a text file, folder or token file, in non-overlapping windows
// each from a zero state: loss (nats per token), perplexity, bits per token and per byte.
#include <cstdio>
#include <filesystem>
#include <optional>

#include "commands.h"
#include "core/context.h"
#include "core/error.h"
#include "io/tokenizer.h"
#include "model/lm_train.h"
#include "model/loader.h"
#include "train/batcher.h"
#include "train/evaluate.h"
#include "train/token_file.h"

namespace mambacpp::cli {

namespace {

struct EvalCmdOptions {
  std::string model, data, tokenizer, split = "all";
  bool bytes = false;
  int64_t seq_len = 256, batch = 8, max_windows = 0;
  int threads = 0;
};

void run_eval(const EvalCmdOptions& o) {
  MAMBA_CHECK(!(o.bytes && !o.tokenizer.empty()), "eval: give --tokenizer or --bytes, not both");
  MAMBA_CHECK(o.seq_len >= 1 && o.batch >= 1 && o.max_windows >= 0 && o.threads >= 0,
              "eval: --seq-len and --batch must be at least 1, --max-windows and --threads at least 0");
  std::optional<Tokenizer> tok;
  if (!o.tokenizer.empty()) tok = Tokenizer::from_file(o.tokenizer);
  const TokenData data = TokenData::load(o.data, tok ? &*tok : nullptr);
  const ModelWeights w = load_model(o.model, DType::f32);
  check_vocabulary(data, tok ? &*tok : nullptr, w.config, o.model);
  TokenRange range{0, data.size()}, train_part;
  if (o.split == "val") split_tokens(data.size(), 0.9, train_part, range);
  Context ctx(o.threads);
  TrainWorkspace ws;
  const EvalResult e = evaluate(w, data, range, o.seq_len, o.batch, o.max_windows, ws, ctx);
  std::printf("windows %lld x %lld tokens (%lld predictions)\n", (long long)e.windows, (long long)o.seq_len,
              (long long)e.predictions);
  std::printf("loss %.4f nats/token\nperplexity %.4f\nbits per token %.4f\nbits per byte %.4f\n", e.loss,
              e.perplexity, e.bits_per_token, e.bits_per_byte);
}

}  // namespace

void add_eval_command(CLI::App& app) {
  auto o = std::make_shared<EvalCmdOptions>();
  CLI::App* cmd = app.add_subcommand("eval", "Evaluate a model's loss, perplexity and bits per byte on data");
  cmd->add_option("-m,--model", o->model, "model folder (config.json + model.safetensors)")->required();
  cmd->add_option("--data", o->data, "text file, folder of text files, or token file")->required();
  cmd->add_option("--tokenizer", o->tokenizer, "tokenizer.json to encode text with (default: bytes)");
  cmd->add_flag("--bytes", o->bytes, "encode text as bytes (vocabulary 256)");
  cmd->add_option("--split", o->split, "all, or val (the last 10 %, as train validates)")
      ->check(CLI::IsMember({"all", "val"}))
      ->capture_default_str();
  cmd->add_option("--seq-len", o->seq_len, "predicted tokens per window")->capture_default_str();
  cmd->add_option("--batch", o->batch, "windows per forward pass")->capture_default_str();
  cmd->add_option("--max-windows", o->max_windows, "evaluate only the first N windows (0: all)")
      ->capture_default_str();
  cmd->add_option("-t,--threads", o->threads, "CPU threads (0 = all available)")->capture_default_str();
  cmd->callback([o] { run_eval(*o); });
}

}  // namespace mambacpp::cli
