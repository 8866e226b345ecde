// The scan backward's per-chunk inputs (scan_backward_kernel.cu describes the kernel): where a thread sits, the
// loads of a chunk's u, dt, dy, z, B, C and start state into registers one chunk ahead of their use, their
// staging into shared memory, and the element helpers they share with the kernel (dtype-converting loads and
// stores, float2/float4 moves). Included by scan_backward_kernel.cu only.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <type_traits>

#include "ops/cuda/scan_backward_plan.h"
#include "ops/cuda/scan_math.cuh"

namespace mambacpp::cuda::scan_bwd {

// Where the backward's chunk-start states come from: its own forward pass over the sequence (which also writes
// dz), or the forward's chunk_states, with dz formed in the chunks where there is a gate (states_dz).
enum class Start { forward_pass, states, states_dz };

// Element i of a written gradient held in f32, bf16 or f16 (`p` points to that type), rounded to nearest even.
__device__ __forceinline__ void store_grad(float* p, DType dtype, int64_t i, float v) {
  if (dtype == DType::f32)
    p[i] = v;
  else if (dtype == DType::bf16)
    reinterpret_cast<__nv_bfloat16*>(p)[i] = scan_math::from_f32<__nv_bfloat16>(v);
  else
    reinterpret_cast<__half*>(p)[i] = scan_math::from_f32<__half>(v);
}

// A 16-bit bf16 or f16 value (bits) widened to f32, which is exact.
__device__ __forceinline__ float widen(unsigned bits, bool bf16) {
  return bf16 ? __uint_as_float(bits << 16) : __half2float(__ushort_as_half((unsigned short)bits));
}

// Element i of an input held in f32, bf16 or f16 (`p` points to that type), widened to f32: one address for the
// three, only the width of the load and the conversion depending on the dtype.
__device__ __forceinline__ float load_any(const float* p, DType dtype, int64_t i) {
  const char* at = reinterpret_cast<const char*>(p) + (i << (dtype == DType::f32 ? 2 : 1));
  if (dtype == DType::f32) return *reinterpret_cast<const float*>(at);
  return widen(*reinterpret_cast<const unsigned short*>(at), dtype == DType::bf16);
}

// P consecutive floats (P = 2 or 4, aligned to P floats) in one access.
template <int P>
__device__ __forceinline__ void load4(float (&v)[P], const float* src) {
  if constexpr (P == 4) {
    const float4 q = *reinterpret_cast<const float4*>(src);
    v[0] = q.x, v[1] = q.y, v[2] = q.z, v[3] = q.w;
  } else {
    const float2 q = *reinterpret_cast<const float2*>(src);
    v[0] = q.x, v[1] = q.y;
  }
}

template <int P>
__device__ __forceinline__ void store4(float* dst, const float (&v)[P]) {
  if constexpr (P == 4)
    *reinterpret_cast<float4*>(dst) = make_float4(v[0], v[1], v[2], v[3]);
  else
    *reinterpret_cast<float2*>(dst) = make_float2(v[0], v[1]);
}

// Where a thread sits: batch row bi, channel c = c0 + cl, state group g (states g·P … g·P + P − 1).
struct Pos {
  int64_t bi, c;
  int tid, cl, g;
  bool c_ok;  // c < e
};

// One chunk's global inputs, loaded into registers one chunk ahead of their use so that the loads' latency
// overlaps the previous chunk's work: u, dt, dy, z of the thread's (t, c) items and its share of B and C.
// Items past the sequence or past e, and state slots past n, hold 0.
template <class Tl>
struct Fetch {
  static constexpr int SB = (Tl::T * Tl::NPAD + Tl::NT - 1) / Tl::NT;  // B (and C) elements per thread
  static constexpr bool BC_AHEAD = SB <= 2;  // else (large n) B and C are loaded when staged
  // u as loaded: f32, or in the HalfU tiles the bf16 / f16 bits, widened where they are used (fetched_u): a
  // conversion at the load would wait for it, which is meant to overlap the chunk before.
  // The 16 bits are held zero-extended in a 32-bit register: in 16-bit elements the compiler packs two per
  // register right after the loads, and the packing waits for them (long-scoreboard stalls in a profile).
  std::conditional_t<Tl::HALF_U, unsigned, float> u[Tl::ITEMS];
  float dt[Tl::ITEMS], dy[Tl::ITEMS], z[Tl::ITEMS], B[BC_AHEAD ? SB : 1], C[BC_AHEAD ? SB : 1];
  float h0[Tl::P];  // the backward's chunk-start state (from its checkpoint)
};

// Loads chunk ci's inputs: dy and z when `with_dy` (z only where there is a gate), C when `with_c`.
template <class Tl>
__device__ __forceinline__ void fetch_chunk(const ScanGradKernelParams& p, const Pos& at, int64_t ci, bool with_dy,
                                            bool with_c, Fetch<Tl>& f) {
  const int64_t t0 = ci * Tl::T;
  const int tl = int(min(p.l - t0, int64_t(Tl::T)));
#pragma unroll
  for (int k = 0; k < Tl::ITEMS; ++k) {
    const int t = at.g + k * Tl::G;
    const bool ok = at.c_ok && t < tl;
    // u: f32, or bf16 / f16 in the HalfU tiles and (known at run time) possibly in the time-invariant variants.
    if constexpr (Tl::HALF_U)
      f.u[k] = ok ? unsigned(reinterpret_cast<const unsigned short*>(p.u.p)[at_seq(p.u, at.bi, t0 + t, at.c)]) : 0u;
    else if constexpr (Tl::B_LTI || Tl::C_LTI)
      f.u[k] = ok ? load_any(p.u.p, p.u_dtype, at_seq(p.u, at.bi, t0 + t, at.c)) : 0.0f;
    else
      f.u[k] = ok ? p.u.p[at_seq(p.u, at.bi, t0 + t, at.c)] : 0.0f;
    f.dt[k] = ok ? p.dt.p[at_seq(p.dt, at.bi, t0 + t, at.c)] : 0.0f;
    f.dy[k] = ok && with_dy ? p.dy.p[at_seq(p.dy, at.bi, t0 + t, at.c)] : 0.0f;
    f.z[k] = ok && with_dy && p.z.p != nullptr ? p.z.p[at_seq(p.z, at.bi, t0 + t, at.c)] : 0.0f;
  }
  if constexpr (Fetch<Tl>::BC_AHEAD) {
#pragma unroll
    for (int k = 0; k < Fetch<Tl>::SB; ++k) {
      const int i = at.tid + k * Tl::NT, t = i / Tl::NPAD, s = i % Tl::NPAD;
      const bool ok = t < tl && s < p.n;  // t < tl implies i < T·NPAD
      if constexpr (!Tl::B_LTI) f.B[k] = ok ? p.B.p[at_seq(p.B, at.bi, t0 + t, s)] : 0.0f;
      if constexpr (!Tl::C_LTI) f.C[k] = ok && with_c ? p.C.p[at_seq(p.C, at.bi, t0 + t, s)] : 0.0f;
    }
  }
}

// Item k's u of a fetch, as f32.
template <class Tl>
__device__ __forceinline__ float fetched_u(const Fetch<Tl>& f, int k, const ScanGradKernelParams& p) {
  if constexpr (Tl::HALF_U)
    return widen(f.u[k], p.u_dtype == DType::bf16);
  else
    return f.u[k];
}

// The chunk-start state at `h0` (zero for channels past e): the thread's P values, consecutive in the checkpoint
// scratch, or (F ≠ forward_pass) at h0, h0 + e, … in the forward's chunk_states (states past n absent there).
template <class Tl, Start F>
__device__ __forceinline__ void fetch_state(const ScanGradKernelParams& p, const Pos& at, const float* h0,
                                            Fetch<Tl>& f) {
  if constexpr (F == Start::forward_pass) {
    if (at.c_ok) {
      load4<Tl::P>(f.h0, h0);
      return;
    }
  }
#pragma unroll
  for (int j = 0; j < Tl::P; ++j) f.h0[j] = at.c_ok && at.g * Tl::P + j < p.n ? h0[j * p.e] : 0.0f;
}

// Chunk ci's B (and C when `with_c`) into shared memory, [T][NPAD] each: from the fetch, or for large n from
// global memory. A time-invariant B or C is not staged (it sits in registers).
template <class Tl>
__device__ __forceinline__ void stage_bc(const ScanGradKernelParams& p, const Pos& at, int64_t ci, const Fetch<Tl>& f,
                                         bool with_c, float* smem) {
  if constexpr (Tl::B_LTI && Tl::C_LTI) return;
  if constexpr (Fetch<Tl>::BC_AHEAD) {
#pragma unroll
    for (int k = 0; k < Fetch<Tl>::SB; ++k) {
      const int i = at.tid + k * Tl::NT;
      if (Tl::T * Tl::NPAD % Tl::NT != 0 && i >= Tl::T * Tl::NPAD) continue;
      if constexpr (!Tl::B_LTI) smem[Tl::B_OFF + i] = f.B[k];
      if constexpr (!Tl::C_LTI)
        if (with_c) smem[Tl::C_OFF + i] = f.C[k];
    }
  } else {
    const int64_t t0 = ci * Tl::T;
    const int tl = int(min(p.l - t0, int64_t(Tl::T)));
    for (int i = at.tid; i < Tl::T * Tl::NPAD; i += Tl::NT) {
      const int t = i / Tl::NPAD, s = i % Tl::NPAD;
      const bool ok = t < tl && s < p.n;
      if constexpr (!Tl::B_LTI) smem[Tl::B_OFF + i] = ok ? p.B.p[at_seq(p.B, at.bi, t0 + t, s)] : 0.0f;
      if constexpr (!Tl::C_LTI)
        if (with_c) smem[Tl::C_OFF + i] = ok ? p.C.p[at_seq(p.C, at.bi, t0 + t, s)] : 0.0f;
    }
  }
}

// A row of P values of B or C for step t: the time-invariant one in the thread's registers (LTI), or the staged
// row in shared memory.
template <bool LTI, int P>
__device__ __forceinline__ void bc_row(float (&v)[P], const float (&lti)[LTI ? P : 1], const float* row) {
  if constexpr (LTI) {
#pragma unroll
    for (int j = 0; j < P; ++j) v[j] = lti[j];
  } else {
    load4<P>(v, row);
  }
}

}  // namespace mambacpp::cuda::scan_bwd
