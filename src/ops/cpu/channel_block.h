// Helpers for kernels that hold a block of 16 channels in vector lanes (scan, conv1d): moving a channel-major
// (channels, n) slice, such as A (e, n) or a recurrent state (b, e, n), to and from n vectors. A full block
// of 16 channels with n a multiple of 16 is a contiguous 16 × n matrix, moved with 16 × 16 register
// transposes; other blocks go element by element.
#pragma once

#include <cstdint>

#include "ops/cpu/simd.h"

namespace mambacpp::cpu {

// dst[s] lane j = src[j·n + s] for j < width (the rows of `width` consecutive channels); other lanes are zero.
inline void gather_channels(Vec* dst, const float* src, int64_t n, int width) {
  if (width == kLanes && n % kLanes == 0) {
    for (int64_t s0 = 0; s0 < n; s0 += kLanes) {
      for (int j = 0; j < kLanes; ++j) dst[s0 + j] = Vec::load(src + j * n + s0);
      transpose16(dst + s0);
    }
    return;
  }
  float lanes[kLanes] = {};
  for (int64_t s = 0; s < n; ++s) {
    for (int j = 0; j < width; ++j) lanes[j] = src[j * n + s];
    dst[s] = Vec::load(lanes);
  }
}

// The inverse of gather_channels for the first `width` lanes: dst[j·n + s] = src[s] lane j.
inline void scatter_channels(float* dst, const Vec* src, int64_t n, int width) {
  if (width == kLanes && n % kLanes == 0) {
    for (int64_t s0 = 0; s0 < n; s0 += kLanes) {
      Vec block[kLanes];
      for (int j = 0; j < kLanes; ++j) block[j] = src[s0 + j];
      transpose16(block);
      for (int j = 0; j < kLanes; ++j) block[j].store(dst + j * n + s0);
    }
    return;
  }
  float lanes[kLanes];
  for (int64_t s = 0; s < n; ++s) {
    src[s].store(lanes);
    for (int j = 0; j < width; ++j) dst[j * n + s] = lanes[j];
  }
}

}  // namespace mambacpp::cpu
