// Chunked, constant-memory scoring of a model on a synthetic task (task_eval.h).
#include "tasks/task_eval.h"

#include <algorithm>
#include <chrono>
#include <fstream>
#include <string>

#include "core/buffer.h"
#include "core/cuda/device_memory.h"
#include "core/error.h"
#include "model/lm.h"

namespace mambacpp {

namespace {

int64_t status_field_bytes(const std::string& field) {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(field + ":", 0) == 0) return std::stoll(line.substr(field.size() + 1)) * 1024;  // in kB
  }
  return 0;
}

void validate(const ModelWeights& w, Task task, const TaskEvalOptions& o) {
  MAMBA_CHECK(o.length >= task_min_length(task), "{}: the test length must be at least {}, got {}", task_name(task),
              task_min_length(task), o.length);
  MAMBA_CHECK(o.sequences >= 1, "the number of evaluation sequences must be at least 1, got {}", o.sequences);
  MAMBA_CHECK(o.batch >= 1, "the evaluation batch must be at least 1, got {}", o.batch);
  MAMBA_CHECK(o.chunk >= 1, "the evaluation chunk must be at least 1, got {}", o.chunk);
  MAMBA_CHECK(w.config.vocab_size == task_vocab(task), "{} needs a model with a vocabulary of {}, this one has {}",
              task_name(task), task_vocab(task), w.config.vocab_size);
}

// Scores sequences first .. first + b − 1; adds to `r` and appends the argmaxes to `predictions`.
void score_group(const ModelWeights& w, Task task, const TaskEvalOptions& o, int64_t first, int64_t b,
                 RecurrentState& state, Workspace& ws, Buffer& logits, std::vector<int32_t>& ids,
                 std::vector<float>& host_logits, TaskEvalResult& r, Context& ctx, std::vector<int32_t>* predictions) {
  const Device dev = state.device();
  const int64_t v = w.config.vocab_size, tail = task_answers(task), answer0 = o.length - tail;
  std::vector<TaskSequence> seqs;
  for (int64_t i = 0; i < b; ++i) seqs.emplace_back(task, o.seed, first + i, o.length);
  state.reset();
  ForwardOptions fo;
  fo.chunk = o.chunk;
  fo.logits_for = LogitsFor::none;
  for (int64_t t0 = 0; t0 < answer0; t0 += o.chunk) {
    const int64_t lc = std::min(o.chunk, answer0 - t0);
    for (int64_t i = 0; i < b; ++i) seqs[size_t(i)].fill(t0, lc, ids.data() + i * lc);
    lm_forward(Tensor{}, state, w, ids.data(), lc, fo, ws, ctx);
  }
  for (int64_t i = 0; i < b; ++i) seqs[size_t(i)].fill(answer0, tail, ids.data() + i * tail);
  fo.logits_for = LogitsFor::all_positions;
  lm_forward(Tensor(logits.data(), DType::f32, {b, tail, v}, dev), state, w, ids.data(), tail, fo, ws, ctx);
  const float* lg = logits.as<float>();
  if (dev != Device::cpu) {
    copy_memory_async(host_logits.data(), Device::cpu, logits.data(), dev, size_t(b * tail * v) * sizeof(float), ctx);
    synchronize(ctx);
    lg = host_logits.data();
  }
  for (int64_t i = 0; i < b; ++i) {
    for (int64_t j = 0; j < tail; ++j) {
      const float* row = lg + (i * tail + j) * v;
      const int32_t best = int32_t(std::max_element(row, row + v) - row);
      r.correct += best == seqs[size_t(i)].answers()[size_t(j)];
      if (predictions != nullptr) predictions->push_back(best);
    }
  }
  r.answers += b * tail;
}

}  // namespace

int64_t resident_bytes() { return status_field_bytes("VmRSS"); }
int64_t peak_resident_bytes() { return status_field_bytes("VmHWM"); }

bool reset_peak_resident() {
  std::ofstream out("/proc/self/clear_refs");
  out << "5";
  out.flush();
  return bool(out) && peak_resident_bytes() <= resident_bytes() + 64 * 1024;
}

TaskEvalResult evaluate_task(const ModelWeights& w, Task task, const TaskEvalOptions& o, Context& ctx,
                             std::vector<int32_t>* predictions) {
  validate(w, task, o);
  const bool peak_reset = reset_peak_resident();
  const int64_t rss0 = resident_bytes();
  const auto t0 = std::chrono::steady_clock::now();
  const Device dev = w.embedding.device;
  const int64_t batch = std::min(o.batch, o.sequences), v = w.config.vocab_size, tail = task_answers(task);
  const int64_t chunk = std::min(o.chunk, o.length);
  TaskEvalResult r;
  r.length = o.length;
  r.sequences = o.sequences;
  {
    RecurrentState state(w.config, batch, dev);
    Workspace ws(dev);
    Buffer logits(size_t(batch * tail * v) * sizeof(float), dev);
    std::vector<int32_t> ids(size_t(batch * std::max(chunk, tail)));
    std::vector<float> host_logits(dev == Device::cpu ? 0 : size_t(batch * tail * v));
    TaskEvalOptions oc = o;
    oc.chunk = chunk;
    for (int64_t first = 0; first < o.sequences; first += batch) {
      const int64_t b = std::min(batch, o.sequences - first);
      if (b != state.batch()) state = RecurrentState(w.config, b, dev);
      score_group(w, task, oc, first, b, state, ws, logits, ids, host_logits, r, ctx, predictions);
    }
    const int64_t layers = w.config.n_layer, e = w.config.d_inner;
    const int64_t state_bytes = layers * batch * e * (w.config.d_conv - 1 + w.config.d_state) * int64_t(sizeof(float));
    r.buffer_bytes = state_bytes + ws.bytes() + int64_t(logits.bytes()) +
                     int64_t(ids.size() * sizeof(int32_t) + host_logits.size() * sizeof(float));
  }
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (peak_reset) r.rss_growth_bytes = std::max<int64_t>(0, peak_resident_bytes() - rss0);
  r.accuracy = double(r.correct) / double(r.answers);
  return r;
}

}  // namespace mambacpp
