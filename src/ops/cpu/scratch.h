// Per-thread scratch memory for the CPU kernels (packed panels, a block's state and per-token terms): each
// thread owns one region that grows on demand and is reused by later calls, so hot loops never allocate.
#pragma once

#include <cstddef>

namespace mambacpp::cpu {

// At least `floats` floats of 64-byte-aligned memory owned by the calling thread, valid until that thread next
// calls thread_scratch. The contents are unspecified.
float* thread_scratch(size_t floats);

}  // namespace mambacpp::cpu
