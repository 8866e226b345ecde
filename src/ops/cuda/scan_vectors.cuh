// The sequence tensors' elements as the forward scan (scan_kernel.cu) moves them: V consecutive elements of one
// tensor loaded as one vector and held in 32-bit words until widened, and V results stored as one vector. Included by
// .cu files only.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <type_traits>

#include "ops/cuda/scan_math.cuh"

namespace mambacpp::cuda::scan_vectors {

using scan_math::from_f32;

// The zero of each storage type, and one element stored (rounded to nearest even).
template <class T>
__device__ __forceinline__ T zero();
template <>
__device__ __forceinline__ float zero() { return 0.0f; }
template <>
__device__ __forceinline__ __nv_bfloat16 zero() { return __ushort_as_bfloat16(0); }
template <>
__device__ __forceinline__ __half zero() { return __ushort_as_half(0); }

template <class T>
__device__ __forceinline__ void store(T* p, float v) {
  *p = from_f32<T>(v);
}

// V elements of one sequence tensor as loaded: their bytes in 32-bit words (a lone 16-bit element in the low half
// of one), widened only when staged. Held as words, a vector load leaves its registers alone until then; as an
// array of 16-bit values, the compiler split it right after the load, which waited for the load there and took
// away its overlap with the chunk before.
template <class T, int V>
struct Raw {
  static constexpr int BYTES = V * int(sizeof(T));
  static constexpr int WORDS = BYTES >= 4 ? BYTES / 4 : 1;
  uint32_t w[WORDS];
};

__device__ __forceinline__ uint32_t bits(float v) { return __float_as_uint(v); }
__device__ __forceinline__ uint32_t bits(__nv_bfloat16 v) { return __bfloat16_as_ushort(v); }
__device__ __forceinline__ uint32_t bits(__half v) { return __half_as_ushort(v); }

// The V elements at src (aligned to their size, up to 16 bytes), in as few loads as there are 16-byte pieces.
template <class T, int V>
__device__ __forceinline__ void load_raw(Raw<T, V>& r, const T* src) {
  constexpr int BYTES = Raw<T, V>::BYTES;
  if constexpr (BYTES % 16 == 0) {
#pragma unroll
    for (int i = 0; i < BYTES / 16; ++i) {
      const uint4 q = reinterpret_cast<const uint4*>(src)[i];
      r.w[4 * i] = q.x, r.w[4 * i + 1] = q.y, r.w[4 * i + 2] = q.z, r.w[4 * i + 3] = q.w;
    }
  } else if constexpr (BYTES == 8) {
    const uint2 q = *reinterpret_cast<const uint2*>(src);
    r.w[0] = q.x, r.w[1] = q.y;
  } else if constexpr (BYTES == 4) {
    r.w[0] = *reinterpret_cast<const uint32_t*>(src);
  } else {
    r.w[0] = bits(*src);
  }
}

// Element v of r set to x (the element-wise loads); the words start zeroed (clear).
template <class T, int V>
__device__ __forceinline__ void clear(Raw<T, V>& r) {
#pragma unroll
  for (int i = 0; i < Raw<T, V>::WORDS; ++i) r.w[i] = 0;
}
template <class T, int V>
__device__ __forceinline__ void set(Raw<T, V>& r, int v, T x) {
  if constexpr (sizeof(T) == 4)
    r.w[v] = bits(x);
  else
    r.w[v / 2] |= bits(x) << (16 * (v % 2));
}

// Element v of r, widened to f32.
template <class T, int V>
__device__ __forceinline__ float element_f32(const Raw<T, V>& r, int v) {
  if constexpr (std::is_same_v<T, float>) {
    return __uint_as_float(r.w[v]);
  } else {
    const uint32_t w = r.w[v / 2];
    if constexpr (std::is_same_v<T, __nv_bfloat16>)
      return __uint_as_float(v % 2 == 0 ? w << 16 : w & 0xffff0000u);
    else
      return __half2float(__ushort_as_half(static_cast<unsigned short>(v % 2 == 0 ? w : w >> 16)));
  }
}

// V values to y (aligned to their size, up to 16 bytes) in as few stores as there are 16-byte pieces: half
// types packed two to a word first. (__stwb is an ordinary store; through it the vector store is not split into
// words, as an assignment through a cast pointer was.)
template <class Out, int V>
__device__ __forceinline__ void store_vector(Out* y, const float (&acc)[V]) {
  if constexpr (V == 1) {
    store(y, acc[0]);
  } else if constexpr (std::is_same_v<Out, float>) {
    if constexpr (V == 2) {
      __stwb(reinterpret_cast<float2*>(y), make_float2(acc[0], acc[1]));
    } else {
#pragma unroll
      for (int v = 0; v < V; v += 4)
        __stwb(reinterpret_cast<float4*>(y + v), make_float4(acc[v], acc[v + 1], acc[v + 2], acc[v + 3]));
    }
  } else {
    uint32_t w[V / 2];
#pragma unroll
    for (int v = 0; v < V; v += 2) {
      if constexpr (std::is_same_v<Out, __nv_bfloat16>) {
        const __nv_bfloat162 q = __floats2bfloat162_rn(acc[v], acc[v + 1]);
        w[v / 2] = *reinterpret_cast<const uint32_t*>(&q);
      } else {
        const __half2 q = __floats2half2_rn(acc[v], acc[v + 1]);
        w[v / 2] = *reinterpret_cast<const uint32_t*>(&q);
      }
    }
    if constexpr (V == 2) {
      *reinterpret_cast<uint32_t*>(y) = w[0];
    } else if constexpr (V == 4) {
      __stwb(reinterpret_cast<uint2*>(y), make_uint2(w[0], w[1]));
    } else {
#pragma unroll
      for (int v = 0; v < V / 2; v += 4)
        __stwb(reinterpret_cast<uint4*>(y + 2 * v), make_uint4(w[v], w[v + 1], w[v + 2], w[v + 3]));
    }
  }
}

}  // namespace mambacpp::cuda::scan_vectors
