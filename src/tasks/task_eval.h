// Scoring a model on a synthetic task (tasks/generators.h) at one sequence length, in memory bounded by the
// chunk whatever the length: each group of sequences is streamed through lm_forward chunk by chunk with the
// recurrent state carried between chunks and no logits kept (LogitsFor::none) up to the first answer
// position; the answer positions (the last 16 or 1 tokens) then run with logits for every position, and each
// answer counts as correct when the argmax of its logits is the expected token.
#pragma once

#include <cstdint>
#include <vector>

#include "core/context.h"
#include "model/weights.h"
#include "tasks/generators.h"

namespace mambacpp {

struct TaskEvalOptions {
  int64_t length = 256;     // tokens per sequence
  int64_t sequences = 64;   // sequences scored
  int64_t batch = 16;       // sequences run at once
  int64_t chunk = 256;      // tokens per sequence per lm_forward call
  uint64_t seed = 0;        // the evaluation stream: sequence i is TaskSequence(task, seed, i, length)
};

struct TaskEvalResult {
  int64_t length = 0;
  int64_t sequences = 0;
  int64_t answers = 0;   // answer positions scored
  int64_t correct = 0;
  double accuracy = 0;   // correct / answers
  double seconds = 0;    // wall time of the evaluation
  int64_t buffer_bytes = 0;  // state + workspace + ids + logits held by the evaluation (on the model's device)
  // Growth of the process's peak resident set during the evaluation (host memory: VmHWM after, less VmRSS
  // before, with the peak reset first); −1 where the system does not allow resetting the peak.
  int64_t rss_growth_bytes = -1;
};

// Scores `w` (on the cpu or cuda device) on opt.sequences sequences of opt.length tokens. When
// `predictions` is non-null it receives the argmax at every answer position, sequence by sequence.
// Throws Error naming the option when a size is out of range or the model's vocabulary is not the task's.
TaskEvalResult evaluate_task(const ModelWeights& w, Task task, const TaskEvalOptions& opt, Context& ctx,
                             std::vector<int32_t>* predictions = nullptr);

// The current and peak resident set of this process in bytes (/proc/self/status VmRSS, VmHWM; 0 if unread),
// and an attempt to reset the peak to the current value (false when not allowed).
int64_t resident_bytes();
int64_t peak_resident_bytes();
bool reset_peak_resident();

}  // namespace mambacpp
