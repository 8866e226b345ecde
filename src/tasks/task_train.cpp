// Training on a synthetic task (task_train.h).
#include "tasks/task_train.h"

#include <chrono>
#include <cmath>
#include <utility>
#include <vector>

#include "core/error.h"
#include "model/lm_train.h"
#include "train/schedule.h"
#include "train/trainable.h"

namespace mambacpp {

MambaConfig task_model_config(Task task, const std::string& ssm) {
  MambaConfig c;
  c.d_model = 64;
  c.n_layer = 2;
  c.vocab_size = task_vocab(task);
  c.d_state = 16;
  c.d_conv = 4;
  c.expand = 2;
  c.set_ssm_variant(ssm);
  c.fill_derived();
  c.validate(std::string(task_name(task)) + " model");
  return c;
}

void TaskTrainOptions::validate(Task task) const {
  MAMBA_CHECK(steps >= 1, "--steps must be at least 1, got {}", steps);
  MAMBA_CHECK(batch >= 1, "--batch must be at least 1, got {}", batch);
  MAMBA_CHECK(length >= task_min_length(task), "--train-length must be at least {} for {}, got {}",
              task_min_length(task), task_name(task), length);
  MAMBA_CHECK(start_length == 0 || start_length >= task_min_length(task),
              "--start-length must be 0 or at least {} for {}, got {}", task_min_length(task), task_name(task),
              start_length);
  MAMBA_CHECK(std::isfinite(clip) && clip >= 0, "--clip must be ≥ 0, got {}", clip);
  LrSchedule{lr, std::min(warmup, steps), steps, min_lr_ratio}.validate();
  adam.validate();
}

int64_t TaskTrainOptions::length_at(int64_t step) const {
  if (start_length <= 0 || start_length >= length) return length;
  std::vector<int64_t> phases;
  for (int64_t l = start_length; l < length; l *= 2) phases.push_back(l);
  phases.push_back(length);
  return phases[size_t(step * int64_t(phases.size()) / steps)];
}

void train_task(ModelWeights& w, Task task, const TaskTrainOptions& o, Context& ctx,
                const std::function<void(const TaskTrainStep&)>& on_step) {
  o.validate(task);
  MAMBA_CHECK(w.config.vocab_size == task_vocab(task), "{} needs a model with a vocabulary of {}, this one has {}",
              task_name(task), task_vocab(task), w.config.vocab_size);
  const LrSchedule sched{o.lr, std::min(o.warmup, o.steps), o.steps, o.min_lr_ratio};
  TrainableModel model(std::move(w), o.device, DType::f32, o.adam, ctx);
  TrainWorkspace ws(o.device);
  std::vector<int32_t> ids(static_cast<size_t>(o.batch * o.length)), targets(ids.size());
  const auto start = std::chrono::steady_clock::now();
  double tokens = 0, total_tokens = 0;
  for (int64_t s = 0; s < o.steps; ++s) total_tokens += double(o.batch * o.length_at(s));
  for (int64_t s = 0; s < o.steps; ++s) {
    const int64_t l = o.length_at(s);
    tokens += double(o.batch * l);
    for (int64_t i = 0; i < o.batch; ++i) {
      const TaskSequence seq(task, o.seed, s * o.batch + i, l);
      seq.fill(0, l, ids.data() + i * l);
      seq.fill_targets(targets.data() + i * l);
    }
    model.grads().zero(ctx);
    const double loss = lm_loss_targets(&model.grads(), model.compute(), ids.data(), targets.data(), o.batch, l, ws,
                                        ctx);
    const ClippedGrads clipped = model.clip_gradients(o.clip, 1.0f, ctx);
    const double norm = clipped.norm;
    MAMBA_CHECK(std::isfinite(loss) && std::isfinite(norm),
                "step {}: the training loss is {} and the gradient norm {}; try a lower --lr", s + 1, loss, norm);
    const double lr = sched.at(s);
    model.step(lr, clipped.scale, ctx);
    if (on_step) {
      const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      on_step({s + 1, o.steps, l, loss, lr, tokens / secs, secs, secs / tokens * (total_tokens - tokens)});
    }
  }
  w = model.host_copy();
}

}  // namespace mambacpp
