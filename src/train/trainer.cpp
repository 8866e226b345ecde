// The training loop (trainer.h).
#include "train/trainer.h"

#include <fmt/format.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <memory>
#include <numbers>
#include <optional>
#include <vector>

#include "core/cuda/device_info.h"
#include "core/error.h"
#include "io/tokenizer.h"
#include "model/lm_train.h"
#include "model/loader.h"
#include "model/presets.h"
#include "train/batcher.h"
#include "train/checkpoint.h"
#include "train/evaluate.h"
#include "train/loss_log.h"
#include "train/png_plot.h"
#include "train/token_file.h"
#include "train/trainable.h"

namespace mambacpp {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// The options with defaults that depend on others resolved (warm-up: min(100, steps)).
TrainOptions resolved(TrainOptions o) {
  if (o.warmup == -1) o.warmup = std::min<int64_t>(100, std::max<int64_t>(o.steps, 0));
  return o;
}

void validate(const TrainOptions& o) {
  MAMBA_CHECK(!o.data.empty(), "--data is required");
  MAMBA_CHECK(!o.out.empty(), "--out is required");
  MAMBA_CHECK(o.batch >= 1, "--batch must be at least 1, got {}", o.batch);
  MAMBA_CHECK(o.seq_len >= 1, "--seq-len must be at least 1, got {}", o.seq_len);
  MAMBA_CHECK(o.grad_accum >= 1, "--grad-accum must be at least 1, got {}", o.grad_accum);
  MAMBA_CHECK(o.eval_every >= 0, "--eval-every must be ≥ 0, got {}", o.eval_every);
  MAMBA_CHECK(o.eval_windows >= 0, "--eval-windows must be ≥ 0, got {}", o.eval_windows);
  MAMBA_CHECK(o.save_every >= 0, "--save-every must be ≥ 0, got {}", o.save_every);
  MAMBA_CHECK(o.stop_after >= 0, "--stop-after must be ≥ 0, got {}", o.stop_after);
  MAMBA_CHECK(o.log_every >= 1, "--log-every must be at least 1, got {}", o.log_every);
  MAMBA_CHECK(std::isfinite(o.clip) && o.clip >= 0, "--clip must be ≥ 0, got {}", o.clip);
  LrSchedule{o.lr, o.warmup, o.steps, o.min_lr_ratio}.validate();
  o.adam.validate();
  MAMBA_CHECK(o.dtype == DType::f32 || o.device == Device::cuda,
              "--dtype {}: training on the CPU computes in f32; mixed precision (bf16, f16) needs --device cuda",
              dtype_name(o.dtype));
  if (o.device == Device::cuda) require_cuda_device();
}

// What a resumed run must share with the run that wrote the checkpoint.
json settings(const TrainOptions& o, const TokenData& data) {
  return {{"steps", o.steps},         {"batch", o.batch},   {"seq_len", o.seq_len},
          {"grad_accum", o.grad_accum}, {"lr", o.lr},       {"warmup", o.warmup},
          {"min_lr_ratio", o.min_lr_ratio}, {"beta1", o.adam.beta1}, {"beta2", o.adam.beta2},
          {"eps", o.adam.eps},         {"weight_decay", o.adam.weight_decay}, {"clip", o.clip},
          {"seed", o.seed},            {"data_tokens", data.size()}};
}

void check_same_settings(const json& now, const json& saved, const std::string& ckpt) {
  for (const auto& [key, value] : now.items()) {
    const auto it = saved.find(key);
    MAMBA_CHECK(it != saved.end() && *it == value,
                "--resume: {} is {} in this run but {} in the checkpoint {}; resume with the same options",
                key == "data_tokens" ? "the data's token count" : "--" + key, value.dump(),
                it == saved.end() ? "absent" : it->dump(), ckpt);
  }
}

MambaConfig config_for(const TrainOptions& o) {
  const bool is_file = o.config.ends_with(".json") || o.config.find('/') != std::string::npos;
  MambaConfig cfg = is_file ? MambaConfig::from_json_file(o.config) : preset_config(o.config);
  cfg.fill_derived();
  cfg.validate(o.config);
  return cfg;
}

std::string duration(double seconds) {
  const int64_t s = int64_t(std::max(0.0, seconds));
  if (s >= 3600) return fmt::format("{}h{:02d}m", s / 3600, s / 60 % 60);
  return fmt::format("{}m{:02d}s", s / 60, s % 60);
}

// Everything one run works with, set up from the options (and the checkpoint being resumed).
struct Run {
  std::optional<Tokenizer> tok;
  TokenData data;
  TokenRange train_range, val_range;
  ModelWeights w;
  std::string model_source;
  TrainerState state;
  std::string resumed_from;
};

void setup(const TrainOptions& o, Run& r, std::FILE* progress) {
  if (!o.tokenizer.empty()) r.tok = Tokenizer::from_file(o.tokenizer);
  r.data = TokenData::load(o.data, r.tok ? &*r.tok : nullptr);
  split_tokens(r.data.size(), 0.9, r.train_range, r.val_range);
  const std::string latest = latest_checkpoint(o.out);
  MAMBA_CHECK(o.resume || latest.empty(),
              "--out {} already holds a checkpoint; pass --resume to continue it or choose another folder", o.out);
  r.state.seed = o.seed;
  r.state.settings = settings(o, r.data);
  if (!latest.empty()) {
    r.resumed_from = fs::canonical(latest).string();
    const TrainerState saved = load_trainer_state(r.resumed_from);
    check_same_settings(r.state.settings, saved.settings, r.resumed_from);
    r.state = saved;
    r.w = load_model(r.resumed_from, DType::f32);
    r.model_source = r.resumed_from;
  } else if (!o.init.empty()) {
    r.w = load_model(o.init, DType::f32);
    r.model_source = o.init;
  } else {
    r.w = ModelWeights::random(config_for(o), DType::f32, o.seed);
    r.model_source = "--config " + o.config;
  }
  if (o.resume && latest.empty() && progress != nullptr)
    std::fprintf(progress, "no checkpoint in %s to resume; starting at step 0\n", o.out.c_str());
  check_vocabulary(r.data, r.tok ? &*r.tok : nullptr, r.w.config, r.model_source);
  BatchSampler(r.data, r.train_range, o.batch, o.seq_len, o.seed);  // throws when the data is too short
  if (o.eval_every > 0) eval_windows(r.data, r.val_range, o.seq_len);
  std::error_code ec;
  fs::create_directories(o.out, ec);
  MAMBA_CHECK(fs::is_directory(o.out), "--out {}: cannot create the folder: {}", o.out, ec.message());
}

void print_validation(std::FILE* progress, int64_t step, const EvalResult& e, const TrainerState& s) {
  if (progress == nullptr) return;
  std::fprintf(progress,
               "step %lld | val loss %.4f nats/token | %.4f bits/token | %.4f bits/byte | best %.4f (step %lld)\n",
               (long long)step, e.loss, e.bits_per_token, e.bits_per_byte, s.best_val_loss, (long long)s.best_step);
  std::fflush(progress);
}

// The state of the loop over steps, with one function per phase of a step.
class Loop {
 public:
  Loop(const TrainOptions& o, Run& r, Context& ctx, std::FILE* progress)
      : o_(o), r_(r), st_(r.state), ctx_(ctx), progress_(progress),
        sampler_(r.data, r.train_range, o.batch, o.seq_len, r.state.seed),
        sched_{o.lr, o.warmup, o.steps, o.min_lr_ratio}, model_(std::move(r.w), o.device, o.dtype, o.adam, ctx),
        ws_(o.device), log_((fs::path(o.out) / "loss_log.jsonl").string(), r.resumed_from.empty() ? -1 : r.state.step),
        ids_(size_t(o.batch * (o.seq_len + 1))), doc_start_(ids_.size()), first_step_(r.state.step) {
    if (!r.resumed_from.empty()) load_optimizer_state(r.resumed_from, model_.optimizer());
    ws_.keep_scan_states = o.keep_scan_states;
  }

  TrainSummary run() {
    const int64_t end = o_.stop_after > 0 ? std::min(o_.steps, st_.step + o_.stop_after) : o_.steps;
    TrainSummary sum{first_step_, st_.step, std::numeric_limits<double>::quiet_NaN(), 0, 0};
    while (st_.step < end) {
      sum.last_loss = step(end);
      bool saved = false;
      if (o_.eval_every > 0 && (st_.step % o_.eval_every == 0 || st_.step == o_.steps)) saved = validate_now();
      const bool due = (o_.save_every > 0 && st_.step % o_.save_every == 0) || st_.step == end;
      if (due && !saved) save_checkpoint(o_.out, model_.master(), model_.optimizer(), st_, false);
    }
    sum.step = st_.step;
    sum.best_val_loss = st_.best_val_loss;
    sum.best_step = st_.best_step;
    write_loss_plot((fs::path(o_.out) / "loss.png").string(), read_loss_curves(log_.path()));
    return sum;
  }

 private:
  // One optimizer step over grad_accum micro-batches; returns the mean loss.
  double step(int64_t end) {
    const auto t0 = std::chrono::steady_clock::now();
    ParamGrads& grads = model_.grads();
    grads.zero(ctx_);
    double loss = 0;
    for (int64_t j = 0; j < o_.grad_accum; ++j) {
      sampler_.fill(st_.next_batch++, ids_.data(), doc_start_.data());
      loss += lm_loss_packed(&grads, model_.compute(), ids_.data(), doc_start_.data(), o_.batch, o_.seq_len + 1,
                             ws_, ctx_);
    }
    loss /= double(o_.grad_accum);
    // The mean over the micro-batches and the clipping are applied by the update as it reads the gradients.
    const ClippedGrads clipped = model_.clip_gradients(o_.clip, float(1.0 / double(o_.grad_accum)), ctx_);
    const double norm = clipped.norm;
    if (!std::isfinite(loss) || !std::isfinite(norm)) {
      const std::string ckpt = latest_checkpoint(o_.out);
      fail("step {}: the training loss is {} and the gradient norm {}; stopping (try a lower --lr). The last good "
           "checkpoint is {}", st_.step + 1, loss, norm,
           ckpt.empty() ? "none (nothing was saved yet)" : fs::canonical(ckpt).string());
    }
    const double lr = sched_.at(st_.step);
    model_.step(lr, clipped.scale, ctx_);
    ++st_.step;
    seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const double done = double(st_.step - first_step_);
    const double tps = double(o_.batch * o_.seq_len * o_.grad_accum) * done / seconds_;
    log_.write({{"step", st_.step}, {"loss", loss}, {"lr", lr}, {"grad_norm", norm}, {"tokens_per_s", tps},
                {"time_s", seconds_}});
    if (progress_ != nullptr && (st_.step % o_.log_every == 0 || st_.step == end)) {
      std::fprintf(progress_, "step %lld/%lld | loss %.4f | lr %.2e | %.0f tok/s | %s left\n", (long long)st_.step,
                   (long long)o_.steps, loss, lr, tps, duration(seconds_ / done * double(end - st_.step)).c_str());
      std::fflush(progress_);
    }
    return loss;
  }

  // Validation loss; a new best is saved as a checkpoint (returns whether one was saved).
  bool validate_now() {
    const EvalResult e = evaluate(model_.compute(), r_.data, r_.val_range, o_.seq_len, o_.batch, o_.eval_windows, ws_, ctx_);
    const bool best = e.loss < st_.best_val_loss;
    if (best) st_.best_val_loss = e.loss, st_.best_step = st_.step;
    log_.write({{"step", st_.step}, {"val_loss", e.loss}, {"val_bits_per_token", e.bits_per_token},
                {"val_bits_per_byte", e.bits_per_byte}});
    print_validation(progress_, st_.step, e, st_);
    if (best) save_checkpoint(o_.out, model_.master(), model_.optimizer(), st_, true);
    return best;
  }

  const TrainOptions& o_;
  Run& r_;
  TrainerState& st_;
  Context& ctx_;
  std::FILE* progress_;
  BatchSampler sampler_;
  LrSchedule sched_;
  TrainableModel model_;
  TrainWorkspace ws_;
  LossLog log_;
  std::vector<int32_t> ids_;
  std::vector<uint8_t> doc_start_;  // documents packed in a window: the state is reset at each start
  int64_t first_step_;
  double seconds_ = 0;
};

}  // namespace

TrainSummary train(const TrainOptions& options, Context& ctx, std::FILE* progress) {
  const TrainOptions o = resolved(options);
  validate(o);
  Run r;
  setup(o, r, progress);
  if (!r.resumed_from.empty() && progress != nullptr)
    std::fprintf(progress, "resuming %s at step %lld\n", r.resumed_from.c_str(), (long long)r.state.step);
  Loop loop(o, r, ctx, progress);
  return loop.run();
}

}  // namespace mambacpp
