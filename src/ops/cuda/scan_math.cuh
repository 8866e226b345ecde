// Device arithmetic shared by the selective-scan kernels (scan_kernel.cu, scan_step_kernel.cu,
// scan_backward_kernel.cu): the special-function-unit exponential, the polynomial log1p behind softplus, SiLU and
// the logistic function built on it, and conversions between f32 and the half-precision storage types (also used
// by the conv kernel of infer_kernels.cu to widen a half x).
// Included by .cu files only.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

namespace mambacpp::cuda::scan_math {

constexpr float kLog2e = 1.4426950408889634f;

// 2^x on the special function unit (ex2.approx, relative error about 2⁻²²); subnormal results flush to zero.
__device__ __forceinline__ float ex2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}

// log1p(w)/w for w in [0, 1]: a degree-8 Chebyshev fit, so that log1p(w) = w · p(w) with relative error below
// 2e-7 (measured in f32 over [0, 1]), on the FMA pipe.
__device__ __forceinline__ float log1p_ratio(float w) {
  float p = 5.126102168e-03f;
  p = fmaf(p, w, -2.907406478e-02f);
  p = fmaf(p, w, 7.751608690e-02f);
  p = fmaf(p, w, -1.360224764e-01f);
  p = fmaf(p, w, 1.907688074e-01f);
  p = fmaf(p, w, -2.483539899e-01f);
  p = fmaf(p, w, 3.331812171e-01f);
  p = fmaf(p, w, -4.999944498e-01f);
  p = fmaf(p, w, 9.999999659e-01f);
  return p;
}

// softplus(x) = max(x, 0) + log1p(w) with w = e^−|x| (given): one explicit FMA, so that every kernel that computes
// δ (the forward scan on any code path, the backward's recomputation) rounds it the same way.
__device__ __forceinline__ float softplus_of(float x, float w) { return fmaf(w, log1p_ratio(w), fmaxf(x, 0.0f)); }

// softplus(x). Above 20 the log1p term is below half an ulp of x, so this returns x itself there, as the
// reference definition does.
__device__ __forceinline__ float softplus(float x) { return softplus_of(x, ex2(-fabsf(x) * kLog2e)); }

// x · σ(x) with one ex2 and a fast division.
__device__ __forceinline__ float silu(float x) { return __fdividef(x, 1.0f + ex2(-x * kLog2e)); }

// 1 / (1 + e^−x): ex2 and a correctly rounded reciprocal (0 for x below about −88, 1 far above 0).
__device__ __forceinline__ float sigmoid(float x) { return __frcp_rn(1.0f + ex2(-x * kLog2e)); }

__device__ __forceinline__ float to_f32(float v) { return v; }
__device__ __forceinline__ float to_f32(__nv_bfloat16 v) { return __bfloat162float(v); }
__device__ __forceinline__ float to_f32(__half v) { return __half2float(v); }

// f32 to the storage type T (float, __nv_bfloat16 or __half), rounding to nearest even.
template <class T>
__device__ __forceinline__ T from_f32(float v);
template <>
__device__ __forceinline__ float from_f32<float>(float v) { return v; }
template <>
__device__ __forceinline__ __nv_bfloat16 from_f32<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }
template <>
__device__ __forceinline__ __half from_f32<__half>(float v) { return __float2half_rn(v); }

}  // namespace mambacpp::cuda::scan_math
