// Training the paper's small model on a synthetic task (tasks/generators.h): fresh sequences every step from
// the training stream (sequence i of step s is TaskSequence(task, seed, s·batch + i, length)), the loss on the
// answer positions only (lm_loss_targets), AdamW with global gradient clipping and a warm-up + cosine
// schedule; A = −exp(A_log) is refreshed after each update.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "core/context.h"
#include "model/config.h"
#include "model/weights.h"
#include "tasks/generators.h"
#include "train/adamw.h"

namespace mambacpp {

// The paper's small model for the synthetic tasks (Appendix E.1): 2 layers, d_model 64 (e = 128, n = 16,
// conv width 4, dt_rank 4), tied head, the task's vocabulary; `ssm` names the selectivity variant
// (s6, lti, dt, b, c; see MambaConfig).
MambaConfig task_model_config(Task task, const std::string& ssm);

struct TaskTrainOptions {
  // The defaults are sized for a CPU (a few minutes on 2 cores for induction heads).
  int64_t steps = 16000;    // many small steps: what lets the CPU-sized run extrapolate to 2^20
  int64_t batch = 8;        // sequences per step
  int64_t length = 256;     // tokens per training sequence (the last phase of the curriculum)
  // A length curriculum when 0 < start_length < length: the training length starts here and doubles up to
  // `length` over equal shares of the steps (short sequences cross the task's initial loss plateau in far
  // fewer steps than long ones). 0: every step at `length`.
  int64_t start_length = 32;
  double lr = 1e-2;         // peak learning rate
  int64_t warmup = 20;      // linear warm-up steps
  double min_lr_ratio = 0.1;
  double clip = 1.0;        // global gradient-norm limit (0: none)
  AdamWOptions adam{0.9, 0.98, 1e-8, 0.0};
  uint64_t seed = 0;        // initial weights and the training stream
  Device device = Device::cpu;  // where the model trains (f32 throughout)
  // Throws Error naming the option when a value is out of range.
  void validate(Task task) const;
  // The training length at step `step` (0-based).
  int64_t length_at(int64_t step) const;
};

struct TaskTrainStep {
  int64_t step = 0;         // steps done
  int64_t steps = 0;
  int64_t length = 0;       // this step's training length
  double loss = 0;          // this step's mean loss over its answer positions (nats)
  double lr = 0;
  double tokens_per_s = 0;  // training tokens per second so far
  double seconds = 0;       // time so far
  double seconds_left = 0;  // estimated from the tokens still to train on at this rate
};

// Trains `w` (f32, on the CPU) on opt.device and leaves the result in `w` (on the CPU); `on_step` (optional) is
// called after every step. Throws Error on a non-finite loss or gradient, naming the step.
void train_task(ModelWeights& w, Task task, const TaskTrainOptions& opt, Context& ctx,
                const std::function<void(const TaskTrainStep&)>& on_step);

}  // namespace mambacpp
