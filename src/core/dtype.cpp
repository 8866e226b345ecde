// Element type names and bulk conversions (see dtype.h).
#include "core/dtype.h"

#include "core/error.h"

namespace mambacpp {

const char* dtype_name(DType t) {
  switch (t) {
    case DType::f32: return "f32";
    case DType::bf16: return "bf16";
    case DType::f16: return "f16";
  }
  return "?";
}

DType parse_dtype(std::string_view s, std::string_view what) {
  if (s == "f32" || s == "float32" || s == "fp32") return DType::f32;
  if (s == "bf16" || s == "bfloat16") return DType::bf16;
  if (s == "f16" || s == "float16" || s == "fp16") return DType::f16;
  fail("{}: unknown dtype '{}' (expected f32, bf16 or f16)", what, s);
}

float f16_to_f32(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu;
  const uint32_t man = h & 0x3ffu;
  if (exp == 0x1f) return bits_to_f32(sign | 0x7f800000u | (man << 13));  // inf / nan
  if (exp != 0) return bits_to_f32(sign | ((exp + 112) << 23) | (man << 13));
  if (man == 0) return bits_to_f32(sign);
  // subnormal: value = man * 2^-24
  float v = float(man) * 5.9604644775390625e-8f;
  return sign ? -v : v;
}

uint16_t f32_to_f16(float f) {
  const uint32_t u = f32_to_bits(f);
  const uint16_t sign = uint16_t((u >> 16) & 0x8000u);
  const uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return uint16_t(sign | 0x7e00u);  // nan
  if (a >= 0x477ff000u) return uint16_t(sign | 0x7c00u);  // rounds to inf
  if (a < 0x38800000u) {
    // result is subnormal or zero: round(a_value / 2^-24) to nearest even
    const float v = bits_to_f32(a) * 16777216.0f;  // exact scaling by 2^24
    // round half to even: adding and removing 2^23 leaves an integer rounded in the FPU's default mode
    const float r = (v + 8388608.0f) - 8388608.0f;
    return uint16_t(sign | uint16_t(r));
  }
  uint32_t mant_exp = a - 0x38000000u;  // rebias exponent 127 -> 15
  mant_exp += 0xfffu + ((mant_exp >> 13) & 1u);
  return uint16_t(sign | uint16_t(mant_exp >> 13));
}

void convert_to_f32(float* dst, const void* src, DType src_t, size_t n) {
  switch (src_t) {
    case DType::f32: std::memcpy(dst, src, n * 4); return;
    case DType::bf16: {
      const auto* s = static_cast<const uint16_t*>(src);
      for (size_t i = 0; i < n; ++i) dst[i] = bf16_to_f32(s[i]);
      return;
    }
    case DType::f16: {
      const auto* s = static_cast<const uint16_t*>(src);
      for (size_t i = 0; i < n; ++i) dst[i] = f16_to_f32(s[i]);
      return;
    }
  }
}

void convert_from_f32(void* dst, DType dst_t, const float* src, size_t n) {
  switch (dst_t) {
    case DType::f32: std::memcpy(dst, src, n * 4); return;
    case DType::bf16: {
      auto* d = static_cast<uint16_t*>(dst);
      for (size_t i = 0; i < n; ++i) d[i] = f32_to_bf16(src[i]);
      return;
    }
    case DType::f16: {
      auto* d = static_cast<uint16_t*>(dst);
      for (size_t i = 0; i < n; ++i) d[i] = f32_to_f16(src[i]);
      return;
    }
  }
}

}  // namespace mambacpp
