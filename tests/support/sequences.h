// Host-side sequence helpers shared by the CPU op tests (test_ops.cpp, test_scan.cpp, test_backward.cpp):
// row-strided (b, l, c) tensors whose gaps must stay untouched, half copies of a sequence, views of token ranges,
// zero-stride views, the chunks of a sequence split into calls, and bitwise comparison.
#pragma once

#include <algorithm>
#include <cstring>
#include <initializer_list>
#include <limits>
#include <utility>
#include <vector>

#include "core/dtype.h"
#include "core/tensor.h"

namespace mambacpp::test {

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr float kPad = 12345.0f;  // value of the gaps between strided rows; ops must leave it alone

// An f32 (b, l, c) tensor stored with a row stride ld ≥ c (the gap filled with kPad), as a view would be.
struct Strided {
  int64_t b, l, c, ld;
  std::vector<float> mem;
  Strided(int64_t b_, int64_t l_, int64_t c_, int64_t ld_) : b(b_), l(l_), c(c_), ld(ld_), mem(size_t(b * l * ld), kPad) {}
  Strided(int64_t b_, int64_t l_, int64_t c_, int64_t ld_, const std::vector<float>& values) : Strided(b_, l_, c_, ld_) {
    for (int64_t r = 0; r < b * l; ++r)
      for (int64_t j = 0; j < c; ++j) mem[r * ld + j] = values[r * c + j];
  }
  Tensor seq() {
    Tensor t(mem.data(), DType::f32, {b, l, c});
    t.stride[1] = ld;
    t.stride[0] = l * ld;
    return t;
  }
  Tensor rows() {
    Tensor t(mem.data(), DType::f32, {b * l, c});
    t.stride[0] = ld;
    return t;
  }
  void poison() {
    for (int64_t r = 0; r < b * l; ++r)
      for (int64_t j = 0; j < c; ++j) mem[r * ld + j] = kNaN;
  }
  std::vector<float> packed() const {
    std::vector<float> v(size_t(b * l * c));
    for (int64_t r = 0; r < b * l; ++r)
      for (int64_t j = 0; j < c; ++j) v[r * c + j] = mem[r * ld + j];
    return v;
  }
  bool gaps_intact() const {
    for (int64_t r = 0; r < b * l; ++r)
      for (int64_t j = c; j < ld; ++j)
        if (mem[r * ld + j] != kPad) return false;
    return true;
  }
};

// A bf16 or f16 (b, l, c) sequence stored with a row stride ld ≥ c (the gap poisoned), made from f32 values, which
// are rounded in place: afterwards `values` holds the half values widened (what an f32 op given them would read).
struct HalfStrided {
  int64_t b, l, c, ld;
  DType dtype;
  std::vector<uint16_t> mem;
  HalfStrided(std::vector<float>& values, DType dt, int64_t b_, int64_t l_, int64_t c_, int64_t ld_)
      : b(b_), l(l_), c(c_), ld(ld_), dtype(dt), mem(size_t(b_ * l_ * ld_), 0x7fff) {
    std::vector<uint16_t> packed(values.size());
    convert_from_f32(packed.data(), dt, values.data(), values.size());
    convert_to_f32(values.data(), packed.data(), dt, values.size());
    for (int64_t r = 0; r < b * l; ++r) std::memcpy(&mem[size_t(r * ld)], &packed[size_t(r * c)], size_t(c) * 2);
  }
  Tensor seq() {
    Tensor t(mem.data(), dtype, {b, l, c});
    t.stride = {l * ld, ld, 1};
    return t;
  }
};

inline Tensor vec_tensor(std::vector<float>& v) { return v.empty() ? Tensor() : Tensor(v.data(), DType::f32, {int64_t(v.size())}); }

inline bool bitwise_equal(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
}

// Tokens [t0, t0 + len) of a (b, l, c) sequence stored with row stride ld (batch stride l·ld).
inline Tensor seq_slice(float* base, int64_t b, int64_t l, int64_t c, int64_t ld, int64_t t0, int64_t len) {
  Tensor t(base + t0 * ld, DType::f32, {b, len, c});
  t.stride[1] = ld;
  t.stride[0] = l * ld;
  return t;
}

// A (b, l, e) view of zeros (e) with zero batch and token strides: a time-invariant Δ's dt.
inline Tensor zero_seq(const std::vector<float>& zeros, int64_t b, int64_t l, int64_t e) {
  Tensor t(const_cast<float*>(zeros.data()), DType::f32, {b, l, e});
  t.stride[0] = t.stride[1] = 0;
  return t;
}

// Splits l tokens into consecutive chunks of the given sizes (cycled); sizes {l} is one call, and l = 0 is one
// empty call.
inline std::vector<std::pair<int64_t, int64_t>> chunks_of(int64_t l, std::initializer_list<int64_t> sizes) {
  if (l == 0) return {{0, 0}};
  std::vector<std::pair<int64_t, int64_t>> out;
  auto it = sizes.begin();
  for (int64_t t0 = 0; t0 < l;) {
    const int64_t len = std::min(*it, l - t0);
    out.emplace_back(t0, len);
    t0 += len;
    if (++it == sizes.end()) it = sizes.begin();
  }
  return out;
}

// The output and the final state of a sequence op run in chunks.
struct SeqResult {
  std::vector<float> y, state;
};

}  // namespace mambacpp::test
