// Per-thread scratch memory (see scratch.h).
#include "ops/cpu/scratch.h"

#include "core/buffer.h"

namespace mambacpp::cpu {

float* thread_scratch(int slot, size_t floats) {
  thread_local Buffer slots[kScratchSlots];
  Buffer& buf = slots[slot];
  const size_t bytes = floats * sizeof(float);
  if (buf.bytes() < bytes) {
    buf = Buffer();
    buf = Buffer(bytes + bytes / 2);
  }
  return buf.as<float>();
}

}  // namespace mambacpp::cpu
