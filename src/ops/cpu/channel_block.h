// Helpers for kernels that hold a block of 16 channels in vector lanes (scan, conv1d): moving a channel-major
// (channels, n) slice, such as A (e, n) or a recurrent state (b, e, n), to and from n vectors. The slice is
// read and written 16 states at a time as up to 16 row pieces, turned around with a 16 × 16 register
// transpose.
#pragma once

#include <algorithm>
#include <cstdint>

#include "ops/cpu/simd.h"

namespace mambacpp::cpu {

// dst[s] lane j = src[j·n + s] for j < width (the rows of `width` consecutive channels); other lanes are zero.
inline void gather_channels(Vec* dst, const float* src, int64_t n, int width) {
  for (int64_t s0 = 0; s0 < n; s0 += kLanes) {
    const int count = int(std::min<int64_t>(kLanes, n - s0));
    Vec block[kLanes];
    for (int j = 0; j < kLanes; ++j) block[j] = j < width ? Vec::load_partial(src + j * n + s0, count) : Vec::zero();
    transpose16(block);
    for (int k = 0; k < count; ++k) dst[s0 + k] = block[k];
  }
}

// The inverse of gather_channels for the first `width` lanes: dst[j·n + s] = src[s] lane j.
inline void scatter_channels(float* dst, const Vec* src, int64_t n, int width) {
  for (int64_t s0 = 0; s0 < n; s0 += kLanes) {
    const int count = int(std::min<int64_t>(kLanes, n - s0));
    Vec block[kLanes];
    for (int k = 0; k < kLanes; ++k) block[k] = k < count ? src[s0 + k] : Vec::zero();
    transpose16(block);
    for (int j = 0; j < width; ++j) block[j].store_partial(dst + j * n + s0, count);
  }
}

}  // namespace mambacpp::cpu
