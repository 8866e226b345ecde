// A 16-lane f32 vector for the CPU kernels: the one place where the instruction set is chosen.
//
// With AVX-512 (built with -march=native on a machine that has it) a Vec is one zmm register; otherwise it is
// an array of 16 floats handled lane by lane, which the compiler vectorises as far as the target allows.
// Kernels are written once against this interface and never test the instruction set themselves.
//
// Lane masks are 16-bit integers (bit j = lane j). "Partial" loads read the first `count` lanes (1..16) and
// zero the others; partial stores write only the first `count` lanes, so tails never touch memory past the end.
// Every operation is deterministic: reduce_add sums the lanes in one fixed order.
#pragma once

#include <cmath>
#include <cstdint>
#include <utility>

#include "core/dtype.h"

#if defined(__AVX512F__)
// GCC 12 reports its own intrinsics' deliberately undefined pass-through operands as uninitialized.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#pragma GCC diagnostic pop
#endif

namespace mambacpp::cpu {

constexpr int kLanes = 16;
using Mask = uint16_t;

// Mask of the first `count` lanes, count in [0, 16].
inline Mask first_lanes(int count) { return Mask((1u << count) - 1u); }

#if defined(__AVX512F__)

struct Vec {
  __m512 v;

  static Vec zero() { return {_mm512_setzero_ps()}; }
  static Vec broadcast(float x) { return {_mm512_set1_ps(x)}; }
  static Vec load(const float* p) { return {_mm512_loadu_ps(p)}; }
  static Vec load_partial(const float* p, int count) { return {_mm512_maskz_loadu_ps(first_lanes(count), p)}; }
  static Vec load_bf16(const uint16_t* p) { return widen_bf16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))); }
  static Vec load_bf16_partial(const uint16_t* p, int count) {
    return widen_bf16(_mm256_maskz_loadu_epi16(first_lanes(count), p));
  }
  static Vec load_f16(const uint16_t* p) { return {_mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)))}; }
  static Vec load_f16_partial(const uint16_t* p, int count) {
    return {_mm512_cvtph_ps(_mm256_maskz_loadu_epi16(first_lanes(count), p))};
  }
  void store(float* p) const { _mm512_storeu_ps(p, v); }
  void store_partial(float* p, int count) const { _mm512_mask_storeu_ps(p, first_lanes(count), v); }

  friend Vec operator+(Vec a, Vec b) { return {_mm512_add_ps(a.v, b.v)}; }
  friend Vec operator-(Vec a, Vec b) { return {_mm512_sub_ps(a.v, b.v)}; }
  friend Vec operator*(Vec a, Vec b) { return {_mm512_mul_ps(a.v, b.v)}; }
  friend Vec operator/(Vec a, Vec b) { return {_mm512_div_ps(a.v, b.v)}; }

 private:
  static Vec widen_bf16(__m256i h) { return {_mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16))}; }
};

// a·b + c with a single rounding.
inline Vec fma(Vec a, Vec b, Vec c) { return {_mm512_fmadd_ps(a.v, b.v, c.v)}; }
// Lanes where a > b (false where either is NaN).
inline Mask greater(Vec a, Vec b) { return _mm512_cmp_ps_mask(a.v, b.v, _CMP_GT_OQ); }
inline Mask less(Vec a, Vec b) { return _mm512_cmp_ps_mask(a.v, b.v, _CMP_LT_OQ); }
// Lanes of `a` where the mask is set, of `b` elsewhere.
inline Vec select(Mask m, Vec a, Vec b) { return {_mm512_mask_blend_ps(m, b.v, a.v)}; }
// Clamps to [lo, hi]; a NaN lane stays NaN.
inline Vec clamp(Vec x, Vec lo, Vec hi) { return {_mm512_min_ps(hi.v, _mm512_max_ps(lo.v, x.v))}; }
// Rounds to the nearest integer (ties to even).
inline Vec round_nearest(Vec x) { return {_mm512_roundscale_ps(x.v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)}; }
// x · 2^k for integral-valued k, with correct overflow to ±inf and gradual underflow.
inline Vec scale_pow2(Vec x, Vec k) { return {_mm512_scalef_ps(x.v, k.v)}; }
// For finite x > 0: x = mant · 2^expo with mant in [0.75, 1.5) and integral expo.
inline void split_exponent(Vec x, Vec& mant, Vec& expo) {
  mant.v = _mm512_getmant_ps(x.v, _MM_MANT_NORM_p75_1p5, _MM_MANT_SIGN_src);
  const __m512 e = _mm512_getexp_ps(x.v);
  const Mask below_one = _mm512_cmp_ps_mask(mant.v, _mm512_set1_ps(1.0f), _CMP_LT_OQ);
  expo.v = _mm512_mask_add_ps(e, below_one, e, _mm512_set1_ps(1.0f));
}
// Transposes a 16 × 16 block held as 16 row vectors: afterwards r[i] lane j is the former r[j] lane i.
inline void transpose16(Vec* r) {
  __m512 t[16], u[16];
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_ps(r[i].v, r[i + 1].v);
    t[i + 1] = _mm512_unpackhi_ps(r[i].v, r[i + 1].v);
  }
  for (int i = 0; i < 16; i += 4) {
    const __m512d a = _mm512_castps_pd(t[i]), b = _mm512_castps_pd(t[i + 1]);
    const __m512d c = _mm512_castps_pd(t[i + 2]), d = _mm512_castps_pd(t[i + 3]);
    u[i] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, c));
    u[i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, c));
    u[i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(b, d));
    u[i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(b, d));
  }
  // u[4q + c] holds, in its 128-bit lane L, column 4L + c of rows 4q..4q+3.
  for (int h = 0; h < 16; h += 8)
    for (int c = 0; c < 4; ++c) {
      t[h + c] = _mm512_shuffle_f32x4(u[h + c], u[h + 4 + c], 0x88);
      t[h + 4 + c] = _mm512_shuffle_f32x4(u[h + c], u[h + 4 + c], 0xdd);
    }
  for (int c = 0; c < 8; ++c) {
    r[c].v = _mm512_shuffle_f32x4(t[c], t[8 + c], 0x88);
    r[8 + c].v = _mm512_shuffle_f32x4(t[c], t[8 + c], 0xdd);
  }
}
// Sum of the 16 lanes.
inline float reduce_add(Vec a) {
  const __m256 h = _mm256_add_ps(_mm512_castps512_ps256(a.v),
                                 _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(a.v), 1)));
  const __m128 q = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
  const __m128 p = _mm_add_ps(q, _mm_movehl_ps(q, q));
  return _mm_cvtss_f32(_mm_add_ss(p, _mm_movehdup_ps(p)));
}

#else

struct Vec {
  float v[kLanes];

  static Vec zero() { return broadcast(0.0f); }
  static Vec broadcast(float x) {
    Vec r;
    for (int j = 0; j < kLanes; ++j) r.v[j] = x;
    return r;
  }
  static Vec load(const float* p) { return load_partial(p, kLanes); }
  static Vec load_partial(const float* p, int count) {
    Vec r = zero();
    for (int j = 0; j < count; ++j) r.v[j] = p[j];
    return r;
  }
  static Vec load_bf16(const uint16_t* p) { return load_bf16_partial(p, kLanes); }
  static Vec load_bf16_partial(const uint16_t* p, int count) {
    Vec r = zero();
    for (int j = 0; j < count; ++j) r.v[j] = bf16_to_f32(p[j]);
    return r;
  }
  static Vec load_f16(const uint16_t* p) { return load_f16_partial(p, kLanes); }
  static Vec load_f16_partial(const uint16_t* p, int count) {
    Vec r = zero();
    for (int j = 0; j < count; ++j) r.v[j] = f16_to_f32(p[j]);
    return r;
  }
  void store(float* p) const { store_partial(p, kLanes); }
  void store_partial(float* p, int count) const {
    for (int j = 0; j < count; ++j) p[j] = v[j];
  }

  template <typename F>
  static Vec map2(Vec a, Vec b, F f) {
    Vec r;
    for (int j = 0; j < kLanes; ++j) r.v[j] = f(a.v[j], b.v[j]);
    return r;
  }
  friend Vec operator+(Vec a, Vec b) { return map2(a, b, [](float x, float y) { return x + y; }); }
  friend Vec operator-(Vec a, Vec b) { return map2(a, b, [](float x, float y) { return x - y; }); }
  friend Vec operator*(Vec a, Vec b) { return map2(a, b, [](float x, float y) { return x * y; }); }
  friend Vec operator/(Vec a, Vec b) { return map2(a, b, [](float x, float y) { return x / y; }); }
};

inline Vec fma(Vec a, Vec b, Vec c) {
  Vec r;
  for (int j = 0; j < kLanes; ++j) r.v[j] = std::fma(a.v[j], b.v[j], c.v[j]);
  return r;
}
inline Mask greater(Vec a, Vec b) {
  Mask m = 0;
  for (int j = 0; j < kLanes; ++j) m = Mask(m | (a.v[j] > b.v[j] ? 1u << j : 0u));
  return m;
}
inline Mask less(Vec a, Vec b) { return greater(b, a); }
inline Vec select(Mask m, Vec a, Vec b) {
  Vec r;
  for (int j = 0; j < kLanes; ++j) r.v[j] = (m >> j) & 1u ? a.v[j] : b.v[j];
  return r;
}
inline Vec clamp(Vec x, Vec lo, Vec hi) {
  Vec r;
  for (int j = 0; j < kLanes; ++j) {
    const float a = x.v[j] < lo.v[j] ? lo.v[j] : x.v[j];
    r.v[j] = a > hi.v[j] ? hi.v[j] : a;
  }
  return r;
}
inline Vec round_nearest(Vec x) {
  Vec r;
  for (int j = 0; j < kLanes; ++j) r.v[j] = std::nearbyint(x.v[j]);
  return r;
}
inline Vec scale_pow2(Vec x, Vec k) {
  Vec r;
  for (int j = 0; j < kLanes; ++j) r.v[j] = std::ldexp(x.v[j], int(k.v[j]));
  return r;
}
inline void split_exponent(Vec x, Vec& mant, Vec& expo) {
  for (int j = 0; j < kLanes; ++j) {
    int e = 0;
    float m = std::frexp(x.v[j], &e);  // m in [0.5, 1)
    if (m < 0.75f) {
      m *= 2.0f;
      e -= 1;
    }
    mant.v[j] = m;
    expo.v[j] = float(e);
  }
}
inline void transpose16(Vec* r) {
  for (int i = 0; i < kLanes; ++i)
    for (int j = i + 1; j < kLanes; ++j) std::swap(r[i].v[j], r[j].v[i]);
}
inline float reduce_add(Vec a) {
  for (int w = kLanes / 2; w >= 1; w /= 2)
    for (int j = 0; j < w; ++j) a.v[j] += a.v[j + w];
  return a.v[0];
}

#endif

// The first `count` elements (1..16) at element offset `i` of an f32, bf16 or f16 array, as f32.
inline Vec load_as_f32(const void* p, DType t, int64_t i, int count) {
  if (t == DType::f32) {
    const float* f = static_cast<const float*>(p) + i;
    return count == kLanes ? Vec::load(f) : Vec::load_partial(f, count);
  }
  const uint16_t* h = static_cast<const uint16_t*>(p) + i;
  if (t == DType::bf16) return count == kLanes ? Vec::load_bf16(h) : Vec::load_bf16_partial(h, count);
  return count == kLanes ? Vec::load_f16(h) : Vec::load_f16_partial(h, count);
}

}  // namespace mambacpp::cpu
