// Learning-rate schedule for training: linear warm-up to the peak, then cosine decay to a floor reached at the
// last step (ANCHORS §6: warm-up 100 steps, cosine to 10 % of the peak at step 2,000). Steps count from 0.
#pragma once

#include <cstdint>

namespace mambacpp {

struct LrSchedule {
  double peak = 2e-3;
  int64_t warmup = 100;       // steps of linear warm-up (0: start at the peak)
  int64_t total = 2000;       // number of steps; the last one (total - 1) gets peak · floor_ratio
  double floor_ratio = 0.1;

  // Step s (0-based): peak · (s + 1) / warmup while s < warmup, then
  // floor + (peak − floor) · (1 + cos(π · p)) / 2 with p = (s − warmup) / (total − 1 − warmup), clamped to [0, 1].
  double at(int64_t step) const;
  // Throws Error naming the option when a value is out of range (peak ≤ 0 or not finite, total < 1,
  // warmup < 0 or > total, floor_ratio outside [0, 1]).
  void validate() const;
};

}  // namespace mambacpp
