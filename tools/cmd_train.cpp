// `mambacpp train`: trains a Mamba-1 LM on a text file, folder or token file (src/train/trainer.h), with
// checkpoints, validation, a loss log and a loss chart in the output folder.
#include <cstdio>

#include "commands.h"
#include "core/context.h"
#include "core/error.h"
#include "train/trainer.h"

namespace mambacpp::cli {

namespace {

struct TrainCmdOptions {
  TrainOptions t;
  bool bytes = false;
  std::string device = "cpu";
  std::string dtype = "f32";
  int threads = 0;
  bool recompute_scan_states = false;
};

void run_train(const TrainCmdOptions& o) {
  MAMBA_CHECK(!(o.bytes && !o.t.tokenizer.empty()), "train: give --tokenizer or --bytes, not both");
  MAMBA_CHECK(o.device == "cpu" || o.device == "cuda", "--device must be cpu or cuda, got {}", o.device);
  MAMBA_CHECK(o.dtype == "f32" || o.dtype == "bf16" || o.dtype == "f16", "--dtype must be f32, bf16 or f16, got {}",
              o.dtype);
  MAMBA_CHECK(o.threads >= 0, "--threads must be ≥ 0, got {}", o.threads);
  TrainOptions t = o.t;
  t.device = o.device == "cuda" ? Device::cuda : Device::cpu;
  t.dtype = o.dtype == "bf16" ? DType::bf16 : o.dtype == "f16" ? DType::f16 : DType::f32;
  t.keep_scan_states = !o.recompute_scan_states;
  Context ctx(o.threads);
  const TrainSummary s = train(t, ctx, stdout);
  std::printf("trained steps %lld..%lld, last loss %.4f", (long long)s.first_step, (long long)s.step, s.last_loss);
  if (s.best_step >= 0)
    std::printf(", best validation loss %.4f at step %lld", s.best_val_loss, (long long)s.best_step);
  std::printf("\ncheckpoints, loss_log.jsonl and loss.png in %s\n", o.t.out.c_str());
}

}  // namespace

void add_train_command(CLI::App& app) {
  auto o = std::make_shared<TrainCmdOptions>();
  TrainOptions& t = o->t;
  CLI::App* cmd = app.add_subcommand("train", "Train a Mamba language model (AdamW, warm-up + cosine schedule)");
  cmd->add_option("--data", t.data, "text file, folder of text files, or token file")->required();
  cmd->add_option("--tokenizer", t.tokenizer, "tokenizer.json to encode text with");
  cmd->add_flag("--bytes", o->bytes, "encode text as bytes (vocabulary 256; the default)");
  cmd->add_option("--config", t.config, "model shape: a preset (tiny, 130m, 370m, 1.4b, ...) or config.json")
      ->capture_default_str();
  cmd->add_option("--init", t.init, "model folder to start from instead of random weights");
  cmd->add_option("-o,--out", t.out, "output folder: checkpoints, loss_log.jsonl, loss.png")->required();
  cmd->add_option("--steps", t.steps, "optimizer steps (the schedule's length)")->capture_default_str();
  cmd->add_option("--batch", t.batch, "sequences per micro-batch")->capture_default_str();
  cmd->add_option("--seq-len", t.seq_len, "predicted tokens per sequence")->capture_default_str();
  cmd->add_option("--grad-accum", t.grad_accum, "micro-batches per optimizer step")->capture_default_str();
  cmd->add_option("--lr", t.lr, "peak learning rate")->capture_default_str();
  cmd->add_option("--warmup", t.warmup, "linear warm-up steps (default: min(100, --steps))");
  cmd->add_option("--min-lr-ratio", t.min_lr_ratio, "learning rate at the last step, as a fraction of --lr")
      ->capture_default_str();
  cmd->add_option("--weight-decay", t.adam.weight_decay, "AdamW weight decay (matrices only)")->capture_default_str();
  cmd->add_option("--beta1", t.adam.beta1, "AdamW beta1")->capture_default_str();
  cmd->add_option("--beta2", t.adam.beta2, "AdamW beta2")->capture_default_str();
  cmd->add_option("--eps", t.adam.eps, "AdamW epsilon")->capture_default_str();
  cmd->add_option("--clip", t.clip, "global gradient-norm limit (0: none)")->capture_default_str();
  cmd->add_option("--eval-every", t.eval_every, "steps between validations (0: none)")->capture_default_str();
  cmd->add_option("--eval-windows", t.eval_windows, "validation windows per evaluation (0: all)")
      ->capture_default_str();
  cmd->add_option("--save-every", t.save_every, "steps between checkpoints (0: only at the end)")
      ->capture_default_str();
  cmd->add_option("--stop-after", t.stop_after, "end this run after N steps, with a checkpoint (0: run to --steps)")
      ->capture_default_str();
  cmd->add_option("--log-every", t.log_every, "steps between progress lines")->capture_default_str();
  cmd->add_flag("--resume", t.resume, "continue from the latest checkpoint in --out");
  cmd->add_option("--device", o->device, "cpu or cuda")->capture_default_str();
  cmd->add_option("--dtype", o->dtype,
                  "matrices in the forward and backward passes: f32, or bf16/f16 on cuda (f32 master weights)")
      ->capture_default_str();
  cmd->add_flag("--recompute-scan-states", o->recompute_scan_states,
                "cuda: recompute the scan's states in the backward pass instead of keeping them from the forward pass "
                "(less memory, slower)");
  cmd->add_option("--seed", t.seed, "seed of the initial weights and of the batches")->capture_default_str();
  cmd->add_option("-t,--threads", o->threads, "CPU threads (0 = all available)")->capture_default_str();
  cmd->callback([o] { run_train(*o); });
}

}  // namespace mambacpp::cli
