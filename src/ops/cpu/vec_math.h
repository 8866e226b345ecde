// Vectorised elementary functions on Vec (simd.h): exp, log1p, and the activations built on them (softplus
// and SiLU with the reference definitions of ops.h). Accurate to a few ulp over the whole f32 range; NaN in,
// NaN out.
#pragma once

#include "ops/cpu/simd.h"

namespace mambacpp::cpu {

// The polynomials below are degree-6 interpolants of e^r at the Chebyshev nodes of their interval (nearly
// minimax); with coefficients rounded to f32 their relative error stays below 2.1e-8 (0.35 ulp).

// e^x. Range reduction x = k·ln2 + r with |r| ≤ ln2/2 (ln2 split in two parts so that x − k·ln2 is
// accurate far beyond f32), e^r by its polynomial, and the result scaled by 2^k. Inputs are clamped first to
// [-104, 89], beyond which e^x is 0 or +inf in f32.
inline Vec exp(Vec x) {
  const Vec ln2_hi = Vec::broadcast(0.693145751953125f);      // 15 significant bits
  const Vec ln2_lo = Vec::broadcast(1.428606765330187e-06f);  // ln2 − ln2_hi
  x = clamp(x, Vec::broadcast(-104.0f), Vec::broadcast(89.0f));
  const Vec k = round_nearest(x * Vec::broadcast(1.4426950408889634f));
  Vec r = x - k * ln2_hi;  // exact: |k| ≤ 151 needs 8 bits, ln2_hi has 15
  r = r - k * ln2_lo;
  Vec p = Vec::broadcast(0.00139411085f);
  p = fma(p, r, Vec::broadcast(0.00837512594f));
  p = fma(p, r, Vec::broadcast(0.0416663513f));
  p = fma(p, r, Vec::broadcast(0.166664153f));
  p = fma(p, r, Vec::broadcast(0.5f));
  p = fma(p, r, Vec::broadcast(1.0f));
  p = fma(p, r, Vec::broadcast(1.0f));
  return scale_pow2(p, k);
}

// 2^t, for callers that fold the factor log2(e) of e^x = 2^(x·log2 e) into an operand computed once (the
// scan folds it into A), saving the range reduction's multiplications: t = k + f with k = round(t) and
// |f| ≤ 1/2 exact, 2^f by its polynomial, scaled by 2^k. Inputs are clamped to [-151, 128] first.
inline Vec exp2(Vec t) {
  t = clamp(t, Vec::broadcast(-151.0f), Vec::broadcast(128.0f));
  const Vec k = round_nearest(t);
  const Vec f = t - k;
  Vec p = Vec::broadcast(0.000154614449f);
  p = fma(p, f, Vec::broadcast(0.0013400428f));
  p = fma(p, f, Vec::broadcast(0.00961805694f));
  p = fma(p, f, Vec::broadcast(0.0555032715f));
  p = fma(p, f, Vec::broadcast(0.240226507f));
  p = fma(p, f, Vec::broadcast(0.693147182f));
  p = fma(p, f, Vec::broadcast(1.0f));
  return scale_pow2(p, k);
}

// log(1 + y) for y ≥ 0. With u = 1 + y rounded, log1p(y) = log(u) + (y − (u − 1))/u, the second term
// restoring what the rounding of u lost. log(u) = expo·ln2 + log(1 + f) with u = (1 + f)·2^expo,
// f in [-0.25, 0.5) exact. With s = f/(2 + f), log(1 + f) = 2·atanh(s) = f − s·(f − R),
// R = 2s²/3 + 2s⁴/5 + … + 2s¹⁰/11 (|s| ≤ 0.2, truncation below 2^-30): the leading f is exact and the
// rounding errors only touch the small correction s·(f − R).
inline Vec log1p_nonneg(Vec y) {
  const Vec one = Vec::broadcast(1.0f);
  const Vec u = y + one;
  Vec mant, expo;
  split_exponent(u, mant, expo);
  const Vec f = mant - one;
  const Vec s = f / (f + Vec::broadcast(2.0f));
  const Vec s2 = s * s;
  Vec q = Vec::broadcast(2.0f / 11.0f);
  q = fma(q, s2, Vec::broadcast(2.0f / 9.0f));
  q = fma(q, s2, Vec::broadcast(2.0f / 7.0f));
  q = fma(q, s2, Vec::broadcast(2.0f / 5.0f));
  q = fma(q, s2, Vec::broadcast(2.0f / 3.0f));
  const Vec log_mant = f - s * (f - q * s2);
  const Vec ln2_hi = Vec::broadcast(0.693145751953125f), ln2_lo = Vec::broadcast(1.428606765330187e-06f);
  const Vec log_u = fma(expo, ln2_hi, fma(expo, ln2_lo, log_mant));
  return log_u + (y - (u - one)) / u;
}

// softplus as ops.h defines it: log(1 + e^x), and x itself above 20.
inline Vec softplus(Vec x) {
  const Vec sp = log1p_nonneg(exp(x));
  return select(greater(x, Vec::broadcast(20.0f)), x, sp);
}

// silu(x) = x / (1 + e^−x).
inline Vec silu(Vec x) { return x / (Vec::broadcast(1.0f) + exp(Vec::zero() - x)); }

}  // namespace mambacpp::cpu
