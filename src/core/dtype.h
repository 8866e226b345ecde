// Element types and scalar conversions. bf16 and f16 are stored as raw 16-bit patterns; conversion to f32 is
// exact, conversion from f32 rounds to nearest even (NaN stays NaN), as PyTorch does.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

namespace mambacpp {

enum class DType : uint8_t { f32, bf16, f16 };

inline size_t dtype_size(DType t) { return t == DType::f32 ? 4 : 2; }
const char* dtype_name(DType t);
// Parses "f32"/"float32", "bf16"/"bfloat16", "f16"/"float16"; throws Error naming `what` otherwise.
DType parse_dtype(std::string_view s, std::string_view what);

inline float bits_to_f32(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline uint32_t f32_to_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

inline float bf16_to_f32(uint16_t h) { return bits_to_f32(uint32_t(h) << 16); }
inline uint16_t f32_to_bf16(float f) {
  uint32_t u = f32_to_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x40);  // quiet NaN
  u += 0x7fffu + ((u >> 16) & 1u);
  return uint16_t(u >> 16);
}

float f16_to_f32(uint16_t h);
uint16_t f32_to_f16(float f);

// Converts n elements of type `src_t` at src to f32 at dst.
void convert_to_f32(float* dst, const void* src, DType src_t, size_t n);
// Converts n f32 elements to `dst_t` (rounding to nearest even).
void convert_from_f32(void* dst, DType dst_t, const float* src, size_t n);

}  // namespace mambacpp
