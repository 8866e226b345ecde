// The training loss log: one JSON object per line in `loss_log.jsonl` of the output folder —
// {"step", "loss", "lr", "grad_norm", "tokens_per_s", "time_s"} after each training step and
// {"step", "val_loss", "val_bits_per_token", "val_bits_per_byte"} after each validation — and the loss curves
// read back from it for the plot.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace mambacpp {

class LossLog {
 public:
  // Opens `path` for appending. Lines of steps after `keep_through` (left by a run that went on past its
  // last checkpoint) are dropped first, so a resumed run's log reads as one uninterrupted run; keep_through
  // < 0 starts a new log.
  LossLog(const std::string& path, int64_t keep_through);
  ~LossLog();
  LossLog(const LossLog&) = delete;
  LossLog& operator=(const LossLog&) = delete;

  // Appends one line and flushes it; throws Error naming the file when the write fails.
  void write(const nlohmann::json& entry);
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  std::FILE* file_ = nullptr;
};

struct LossCurves {
  std::vector<std::pair<double, double>> train, val;  // (step, loss)
};
// The curves of a loss log; malformed lines are an Error naming the file and line.
LossCurves read_loss_curves(const std::string& path);

}  // namespace mambacpp
