// Memory a CPU backward kernel keeps between calls: a Buffer owned by the calling thread (a thread_local in the
// kernel's file), grown on demand and never shrunk, so that the repeated calls of a training step do not
// allocate, and fault in fresh pages for, their temporary operands and partial sums every time.
#pragma once

#include <algorithm>
#include <cstddef>

#include "core/buffer.h"

namespace mambacpp::cpu {

// At least `floats` floats (at least one) of `buf`, reallocated only when it is too small. Contents unspecified.
inline float* grown(Buffer& buf, size_t floats) {
  const size_t bytes = std::max<size_t>(floats, 1) * sizeof(float);
  if (buf.bytes() < bytes) {
    buf = Buffer();
    buf = Buffer(bytes);
  }
  return buf.as<float>();
}

}  // namespace mambacpp::cpu
