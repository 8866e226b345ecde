// The training loop: a Mamba-1 LM trained on token data with AdamW, the warm-up + cosine schedule, global
// gradient clipping and gradient accumulation; documents packed into one window are kept apart (the state is
// reset at each document start, lm_loss_packed); periodic validation; checkpoints (latest and best) that a
// later run resumes bit-identically; a JSON-lines loss log and, at the end, a PNG loss chart.
#pragma once

#include <cstdint>
#include <cstdio>
#include <limits>
#include <string>

#include "core/context.h"
#include "model/weights.h"
#include "train/adamw.h"
#include "train/schedule.h"
#include "train/trainable.h"

namespace mambacpp {

struct TrainOptions {
  std::string data;        // text file, folder of text files, or token file
  std::string tokenizer;   // tokenizer.json; empty: bytes (vocabulary 256)
  std::string config = "tiny";  // preset name or config.json path (ignored with init)
  std::string init;        // model folder to start from instead of random weights
  std::string out;         // output folder (checkpoints, loss log, plot)
  int64_t steps = 2000;
  int64_t batch = 32;       // sequences per micro-batch
  int64_t seq_len = 256;    // predicted tokens per sequence
  int64_t grad_accum = 1;   // micro-batches per optimizer step
  double lr = 2e-3;
  int64_t warmup = -1;      // linear warm-up steps; -1: min(100, steps)
  double min_lr_ratio = 0.1;
  AdamWOptions adam;
  double clip = 1.0;        // global gradient-norm limit (0: none)
  int64_t eval_every = 250; // 0: no validation
  int64_t eval_windows = 0; // validation windows per evaluation (0: all)
  int64_t save_every = 250; // 0: only at the end
  int64_t stop_after = 0;   // end this run after this many steps, with a checkpoint (0: run to `steps`)
  int64_t log_every = 10;   // progress line every this many steps
  uint64_t seed = 0;
  bool resume = false;
  Device device = Device::cpu;  // where the model trains
  DType dtype = DType::f32;     // the matrices' dtype in the passes (bf16/f16: mixed precision, cuda only)
  // On cuda, the forward pass keeps the scan's state every 16 tokens for the backward pass (faster; per layer the
  // size of one f32 activation at d_state 16); false recomputes them there instead (TrainWorkspace).
  bool keep_scan_states = true;
};

struct TrainSummary {
  int64_t first_step = 0;  // the step this run started from
  int64_t step = 0;        // steps done when it ended
  double last_loss = std::numeric_limits<double>::quiet_NaN();
  double best_val_loss = std::numeric_limits<double>::infinity();
  int64_t best_step = -1;
};

// Runs training; progress and validation lines go to `progress` (none when null). Throws Error naming the
// option, file or step at fault: bad options, unusable data or model, a non-finite loss or gradient (the last
// checkpoint written stays as it was), a failed write.
TrainSummary train(const TrainOptions& opt, Context& ctx, std::FILE* progress);


}  // namespace mambacpp
