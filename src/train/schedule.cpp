// Linear warm-up then cosine decay (schedule.h).
#include "train/schedule.h"

#include <algorithm>
#include <cmath>
#include <numbers>

#include "core/error.h"

namespace mambacpp {

double LrSchedule::at(int64_t step) const {
  if (step < warmup) return peak * double(step + 1) / double(warmup);
  const double floor = peak * floor_ratio;
  const int64_t span = total - 1 - warmup;
  const double p = span <= 0 ? 1.0 : std::clamp(double(step - warmup) / double(span), 0.0, 1.0);
  return floor + (peak - floor) * 0.5 * (1.0 + std::cos(std::numbers::pi * p));
}

void LrSchedule::validate() const {
  MAMBA_CHECK(std::isfinite(peak) && peak > 0, "--lr must be a positive number, got {}", peak);
  MAMBA_CHECK(total >= 1, "--steps must be at least 1, got {}", total);
  MAMBA_CHECK(warmup >= 0 && warmup <= total, "--warmup must be between 0 and --steps ({}), got {}", total, warmup);
  MAMBA_CHECK(floor_ratio >= 0 && floor_ratio <= 1, "the learning-rate floor must be in [0, 1], got {}",
              floor_ratio);
}

}  // namespace mambacpp
