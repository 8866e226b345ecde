// Per-thread scratch memory (see scratch.h).
#include "ops/cpu/scratch.h"

#include "core/buffer.h"

namespace mambacpp::cpu {

float* thread_scratch(size_t floats) {
  thread_local Buffer region;
  const size_t bytes = floats * sizeof(float);
  if (region.bytes() < bytes) {
    region = Buffer();
    region = Buffer(bytes + bytes / 2);
  }
  return region.as<float>();
}

}  // namespace mambacpp::cpu
