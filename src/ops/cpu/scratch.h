// Per-thread scratch memory for the CPU kernels (packed panels, transposed blocks): each thread owns a few
// numbered slots that grow on demand and are reused by later calls, so hot loops never allocate.
#pragma once

#include <cstddef>

namespace mambacpp::cpu {

// Number of independent slots per thread: a kernel may use slots 0..kScratchSlots-1 at the same time.
constexpr int kScratchSlots = 2;

// At least `floats` floats of 64-byte-aligned memory owned by the calling thread, valid until that thread next
// asks for the same slot. The contents are unspecified.
float* thread_scratch(int slot, size_t floats);

}  // namespace mambacpp::cpu
