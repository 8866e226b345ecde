// The fused selective-scan forward kernel (interface: scan_kernel.h; mathematics: ops.h).
//
// The op is bound by its exponentials: one exp(δ·A) per state element and step, b·e·l·n in all, against a few
// bytes per (token, channel). The design spends as little else as it can around them:
//  - One block owns CB channels of one batch row for the whole sequence and walks it in chunks of T steps,
//    carrying the state in registers from chunk to chunk. The state reaches global memory only through the
//    optional state_in / state_out.
//  - A thread owns P state elements (s = g·P … g·P + P − 1) of one channel; G threads cover a channel's n
//    states (NT = CB·G threads per block). Each thread runs its P recurrences sequentially over time: no scan
//    across threads, and b·e·G threads give enough parallelism at the shapes that matter (b·e ≥ 4096).
//  - Per chunk, in three stages separated by block barriers:
//    (1) the chunk's u, dt, z, B, C — loaded into registers while the previous chunk ran — are converted to
//        f32 (with f32 inputs, a bf16 or f16 u too: kernels of their own for the selective tiles, which keep it
//        as loaded until here; a branch on u's dtype at the load in the time-invariant variants);
//        δ = softplus(dt + dt_bias) and δ·u are computed once per (t, c) (not once per thread) and put in
//        shared memory with B and C;
//    (2) the recurrences; each thread stores its partial Σ_s h·C for every step in shared memory;
//    (3) the partial sums of a (t, c) are added, the D skip and the SiLU(z) gate applied and y stored.
//    In stages (1) and (3) a thread owns V consecutive channels of one step (the "items"; V = T·CB / NT, 8 for
//    the n = 16 tile), so u, dt and z are loaded and y stored as vectors of up to 16 bytes, held as loaded
//    (32-bit words) until stage (1) widens them. Each stage is a few passes over all of a thread's items, with
//    the run-time choices (softplus, gate, y's dtype) made once around a pass, so that the items' dependency
//    chains interleave.
//  - exp(δ·A) = ex2(δ · A·log2 e): log2 e is folded into A once per thread, so each state element and step costs
//    one multiply and one MUFU.EX2 (ex2.approx, relative error about 2⁻²²). softplus uses one more ex2 per
//    (t, c) and a polynomial log1p on the FMA pipe.
//  - chunk_states (for the backward pass, when asked for): stage (2) stores the state before every 16th step,
//    element (bi, k, s, c), so that a warp's 32 channels of one state element are one coalesced store.
//  - Steps past the end of the sequence and channels past e run with δ = 0 and B = 0, which leaves the state
//    exactly unchanged, so the recurrence loop has no bounds checks.
//  - A time-invariant B or C (B_lti, C_lti: per channel, the selection ablations) is a variant of the tile
//    (Lti<Tile, B, C>): each thread keeps its P values of B[c, ·] or C[c, ·] in registers for the whole sequence,
//    and stages (1) and (2) neither load nor stage the per-token form. The selective (S6) kernels are the tiles
//    themselves, compiled as before.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <tuple>
#include <type_traits>

#include "core/cuda/check.h"
#include "ops/cuda/scan_kernel.h"
#include "ops/cuda/scan_math.cuh"
#include "ops/cuda/scan_vectors.cuh"

namespace mambacpp::cuda {
namespace {

using namespace scan_math;
using namespace scan_vectors;

// The block shape: P states per thread, G threads per channel, CB channels per block, T steps per chunk.
template <int P_, int G_, int CB_, int T_>
struct Tile {
  static constexpr int P = P_, G = G_, CB = CB_, T = T_;
  static constexpr int NT = CB * G;                            // threads per block
  static constexpr int NPAD = P * G;                           // state slots: n rounded up
  // (t, c) items: each thread owns V consecutive channels of one step of the chunk (TPR threads per step), so that
  // the sequence tensors move in vectors of V elements. Every tile has T·CB ≥ NT but the largest-n one, where
  // V = 1 and the threads past T steps have no item.
  static constexpr int V = T * CB >= NT ? T * CB / NT : 1;
  static constexpr int TPR = CB / V;
  static_assert(CB % V == 0 && (V == 1 || NT / TPR == T), "one item row per thread");
  static constexpr int BC_ITEMS = (T * NPAD + NT - 1) / NT;    // B and C elements per thread and chunk
  // Shared memory, in floats: (δ, δ·u) [T][CB], B [T][NPAD], C [T][NPAD], partial y [T][Y_ROW] (the partial
  // sums of step t at t·Y_ROW + g·CB + c; 4 floats of padding per step keep stage (3)'s vector reads of two
  // steps in different banks).
  static constexpr int Y_ROW = G * CB + 4;
  // (δ, δ·u) pairs: stage (1) writes a thread's V channels of a step as U pieces of 16 bytes. Where U ≥ 2 and a
  // step's row is a multiple of 128 bytes, piece j of the thread in lane q of an 8-lane phase of the store goes to
  // slot j ^ (q·U/8) of the thread's U, so that the 8 lanes of a phase hit 8 different bank groups (without it,
  // 2.4-way conflicts on every store of stage (1)).
  static constexpr int U = V / 2;
  static constexpr bool DD_SWIZZLE = U >= 2 && (2 * CB * 4) % 128 == 0;
  static_assert(!DD_SWIZZLE || ((U & (U - 1)) == 0 && (TPR * U) % 8 == 0 && (8 % TPR == 0 || TPR % 8 == 0)),
                "the swizzle's lanes: U a power of two, 8 | units per row, a period of at most 2 steps");
  static constexpr int DD_OFF = 0, B_OFF = 2 * T * CB, C_OFF = B_OFF + T * NPAD, Y_OFF = C_OFF + T * NPAD;
  static constexpr size_t smem_bytes = size_t(Y_OFF + T * Y_ROW) * sizeof(float);
  static_assert((P % 4 == 0 || P == 2) && (2 * T * CB) % 4 == 0, "B and C rows are read as float4 (or float2)");
  static constexpr bool B_LTI = false, C_LTI = false;          // B and C per token
};

// The tile with a time-invariant B and/or C: (e, n) per channel, held in registers (B_lti, C_lti).
template <class Tl, bool B, bool C>
struct Lti : Tl {
  static constexpr bool B_LTI = B, C_LTI = C;
};

// Reads P consecutive floats (1, 2 or a multiple of 4, aligned to 4 · P bytes or 16) of shared memory.
template <int P>
__device__ __forceinline__ void load_row(float (&v)[P], const float* src) {
  if constexpr (P == 1) {
    v[0] = *src;
  } else if constexpr (P == 2) {
    const float2 q = *reinterpret_cast<const float2*>(src);
    v[0] = q.x, v[1] = q.y;
  } else {
#pragma unroll
    for (int j = 0; j < P; j += 4) {
      const float4 q = *reinterpret_cast<const float4*>(src + j);
      v[j] = q.x, v[j + 1] = q.y, v[j + 2] = q.z, v[j + 3] = q.w;
    }
  }
}

// Where a thread sits: batch row bi, channel c = c0 + cl and state group g for the recurrence. Its (t, c) items
// are the channels ic … ic + V − 1 (ic = c0 + iv) of step `row` of each chunk. Its B and C elements are
// (bc_t + k·NT/NPAD, bc_s) when NT is a multiple of NPAD (every tile but the largest-n one, which computes them
// per element).
struct Pos {
  int64_t bi, c, ic;
  int64_t u_at, dt_at, z_at, y_at;  // element (bi, row, ic) of u, dt, z and y: the items of the first chunk
  int tid, cl, g;
  int row, iv;
  bool c_ok;       // c < e
  bool cols_full;  // all CB channels of the block are < e
  bool row_ok;     // row < T (false only for the threads without items of the largest-n tile)
  int bc_t, bc_s;
};

// A thread's registers: the state, A·log2 e, the raw inputs of the next chunk (loaded while the current one
// runs), and the u and z of the current chunk's items, which stage (3) needs again. With a time-invariant B or
// C, its P values for the thread's channel and states (B_lti[c, g·P + j]).
template <class Tl, class In, class U = In>
struct Regs {
  float h[Tl::P], a2[Tl::P];
  Raw<U, Tl::V> u;  // as loaded (a half u beside f32 inputs too): widened when staged, not at the load
  Raw<In, Tl::V> dt, z;
  In B[Tl::BC_ITEMS], C[Tl::BC_ITEMS];
  float u_keep[Tl::V], z_keep[Tl::V];
  float B_lti[Tl::B_LTI ? Tl::P : 1], C_lti[Tl::C_LTI ? Tl::P : 1];
};

// The float2 slot of channel c (of the block) in the (δ, δ·u) row of step t (see Tile::DD_SWIZZLE): the writer is
// the thread t·TPR + c / V, in lane (t·TPR + c / V) % 8 of its phase.
template <class Tl>
__device__ __forceinline__ int dd_slot(int c, int t) {
  if constexpr (!Tl::DD_SWIZZLE) {
    return c;
  } else {
    constexpr int U = Tl::U;
    const int piece = c / 2, cg = piece / U, j = piece % U;
    const int s = ((t * Tl::TPR + cg) % 8) * U / 8;
    return (cg * U + (j ^ s)) * 2 + (c & 1);
  }
}

// Element (bi, t, c) of a (b, l, ·) tensor.
template <class T, class S>
__device__ __forceinline__ T* element(const S& s, int64_t bi, int64_t t, int64_t c) {
  return static_cast<T*>(const_cast<void*>(static_cast<const void*>(s.p))) + bi * s.sb + t * s.sl + c;
}

// Element `at` + `off` of u in the time-invariant variants (f32 kernels only), which take any u dtype and widen it
// at run time rather than be compiled once more for each.
__device__ __forceinline__ float u_any(const ScanKernelParams& p, int64_t at, int off) {
  if (p.u_dtype == DType::bf16) return to_f32((static_cast<const __nv_bfloat16*>(p.u.p) + at)[off]);
  if (p.u_dtype == DType::f16) return to_f32((static_cast<const __half*>(p.u.p) + at)[off]);
  return (static_cast<const float*>(p.u.p) + at)[off];
}

// B/C element k of this thread within a chunk: its step t and state slot s.
template <class Tl>
__device__ __forceinline__ void bc_index(const Pos& at, int k, int* t, int* s) {
  if constexpr (Tl::NT % Tl::NPAD == 0) {
    *t = at.bc_t + k * (Tl::NT / Tl::NPAD), *s = at.bc_s;
  } else {
    const int i = at.tid + k * Tl::NT;
    *t = i / Tl::NPAD, *s = i % Tl::NPAD;
  }
}

// Loads the raw inputs of chunk [t0, t0 + tl), u as U (In, or a bf16 or f16 u beside f32 inputs, kept so until
// staged: a conversion here would wait for the load, which is meant to overlap the chunk before; see u_any for the
// time-invariant variants). Vec: tl == T, every channel of the block exists and the sequence tensors are aligned
// for vectors of V elements (scan_fwd_kernel's `vec`), so each of u, dt and z is one vector load with no bounds
// check; otherwise element by element, and elements outside the sequence or the channels read as 0. In-chunk
// offsets are 32-bit (scan_kernel_supports bounds the row strides).
template <class Tl, class In, class U, bool Vec>
__device__ __forceinline__ void load_chunk(Regs<Tl, In, U>& r, const ScanKernelParams& p, const Pos& at, int64_t t0,
                                           int tl) {
  constexpr int V = Tl::V;
  constexpr bool LTI = Tl::B_LTI || Tl::C_LTI;
  constexpr bool IDLE = Tl::T * Tl::CB < Tl::NT;  // threads past T steps have no item
  const int64_t u_at = at.u_at + t0 * p.u.sl;    // element (bi, t0 + row, ic) of u
  const U* u = static_cast<const U*>(p.u.p) + u_at;  // not in the time-invariant variants (u_any)
  const In* dt = static_cast<const In*>(p.dt.p) + (at.dt_at + t0 * p.dt.sl);
  const In* z = p.z.p != nullptr ? static_cast<const In*>(p.z.p) + (at.z_at + t0 * p.z.sl) : nullptr;
  if constexpr (Vec && !LTI) {
    if (!IDLE || at.row_ok) {
      load_raw(r.u, u);
      load_raw(r.dt, dt);
      if (z != nullptr) load_raw(r.z, z);
    } else {
      clear(r.u), clear(r.dt), clear(r.z);
    }
  } else {
    const bool row_ok = at.row_ok && at.row < tl;
    clear(r.u), clear(r.dt), clear(r.z);
#pragma unroll
    for (int v = 0; v < V; ++v) {
      if (!(row_ok && at.ic + v < p.e)) continue;
      if constexpr (LTI)
        set(r.u, v, u_any(p, u_at, v));
      else
        set(r.u, v, u[v]);
      set(r.dt, v, dt[v]);
      if (z != nullptr) set(r.z, v, z[v]);
    }
  }
  if constexpr (Tl::B_LTI && Tl::C_LTI) return;
  const In* B = Tl::B_LTI ? nullptr : element<const In>(p.B, at.bi, t0, 0);
  const In* C = Tl::C_LTI ? nullptr : element<const In>(p.C, at.bi, t0, 0);
#pragma unroll
  for (int k = 0; k < Tl::BC_ITEMS; ++k) {
    int t, s;
    bc_index<Tl>(at, k, &t, &s);
    const bool ok = t < Tl::T && s < int(p.n) && (Vec || t < tl);
    if constexpr (!Tl::B_LTI) r.B[k] = ok ? B[t * int(p.B.sl) + s] : zero<In>();
    if constexpr (!Tl::C_LTI) r.C[k] = ok ? C[t * int(p.C.sl) + s] : zero<In>();
  }
}

template <class Tl, class In, class U>
__device__ __forceinline__ void load_chunk_at(Regs<Tl, In, U>& r, const ScanKernelParams& p, const Pos& at,
                                              int64_t t0, bool vec) {
  const int tl = int(min(p.l - t0, int64_t(Tl::T)));
  if (vec && at.cols_full && tl == Tl::T)
    load_chunk<Tl, In, U, true>(r, p, at, t0, tl);
  else
    load_chunk<Tl, In, U, false>(r, p, at, t0, tl);
}

// Stage (1): δ, δ·u, B and C of the chunk into shared memory, as f32. Steps past tl and channels past e get
// δ = 0 (their raw inputs are 0, so δ·u, B and C are 0 too). Each pass covers all of the thread's items, with the
// run-time choices (softplus, z) made once around it: the items' chains are then independent work in one basic
// block, which the scheduler interleaves (a branch per item serialises them).
template <class Tl, class In, class U>
__device__ __forceinline__ void stage_inputs(Regs<Tl, In, U>& r, const ScanKernelParams& p, const Pos& at, int tl,
                                             const float (&bias)[Tl::V], float* smem) {
  constexpr int V = Tl::V;
  float dv[V];
#pragma unroll
  for (int v = 0; v < V; ++v) {
    r.u_keep[v] = element_f32(r.u, v);
    dv[v] = element_f32(r.dt, v) + bias[v];
  }
  if (p.z.p != nullptr) {
#pragma unroll
    for (int v = 0; v < V; ++v) r.z_keep[v] = element_f32(r.z, v);
  }
  if (p.dt_softplus) {
#pragma unroll
    for (int v = 0; v < V; ++v) dv[v] = softplus(dv[v]);
  }
  if (!(at.cols_full && tl == Tl::T)) {
    const bool row_ok = at.row < tl;
#pragma unroll
    for (int v = 0; v < V; ++v)
      if (!(row_ok && at.ic + v < p.e)) dv[v] = 0.0f;
  }
  if (Tl::T * Tl::CB >= Tl::NT || at.row_ok) {
    float* dd = smem + Tl::DD_OFF + 2 * at.row * Tl::CB;  // the row of V (δ, δ·u) pairs
#pragma unroll
    for (int v = 0; v < V; v += 2) {
      if (v + 1 < V)
        *reinterpret_cast<float4*>(dd + 2 * dd_slot<Tl>(at.iv + v, at.row)) =
            make_float4(dv[v], dv[v] * r.u_keep[v], dv[v + 1], dv[v + 1] * r.u_keep[v + 1]);
      else
        *reinterpret_cast<float2*>(dd + 2 * dd_slot<Tl>(at.iv + v, at.row)) = make_float2(dv[v], dv[v] * r.u_keep[v]);
    }
  }
#pragma unroll
  for (int k = 0; k < Tl::BC_ITEMS; ++k) {
    int t, s;
    bc_index<Tl>(at, k, &t, &s);
    if (t < Tl::T) {
      if constexpr (!Tl::B_LTI) smem[Tl::B_OFF + t * Tl::NPAD + s] = to_f32(r.B[k]);
      if constexpr (!Tl::C_LTI) smem[Tl::C_OFF + t * Tl::NPAD + s] = to_f32(r.C[k]);
    }
  }
}

// Stage (2): the P recurrences over the chunk's T steps; the partial sums Σ_s h·C stay in registers until the
// end, so that no shared-memory store sits between the loads of successive steps. A time-invariant B or C comes
// from the thread's registers instead of the chunk's rows.
// The state before step t0 + t into chunk_states (when asked for and t0 + t is a multiple of 16, inside the
// sequence): element (bi, k, s, c), so a warp's 32 channels of one state are one coalesced store.
template <class Tl>
__device__ __forceinline__ void store_chunk_state(const ScanKernelParams& p, const Pos& at, const float (&h)[Tl::P],
                                                  int64_t t0, int t, int tl) {
  static_assert(Tl::T % 16 == 0 || 16 % Tl::T == 0, "chunks and state intervals nest");
  if (p.chunk_states == nullptr || t % 16 != 0 || (Tl::T < 16 && t0 % 16 != 0) || t >= tl || !at.c_ok) return;
  const int64_t k = (t0 + t) / 16, K = (p.l + 15) / 16;
  float* dst = p.chunk_states + ((at.bi * K + k) * p.n + at.g * Tl::P) * p.e + at.c;
#pragma unroll
  for (int j = 0; j < Tl::P; ++j)
    if (at.g * Tl::P + j < p.n) dst[j * p.e] = h[j];
}

template <class Tl, class In, class U>
__device__ __forceinline__ void stage_recurrence(Regs<Tl, In, U>& r, const ScanKernelParams& p, const Pos& at,
                                                 int64_t t0, int tl, float* smem) {
  constexpr int P = Tl::P, T = Tl::T, NPAD = Tl::NPAD, CB = Tl::CB;
  const float2* s_dd = reinterpret_cast<const float2*>(smem + Tl::DD_OFF);
  const int dd_even = dd_slot<Tl>(at.cl, 0), dd_odd = dd_slot<Tl>(at.cl, 1);  // the swizzle's period is 2 steps
  const float* sB = smem + Tl::B_OFF + at.g * P;
  const float* sC = smem + Tl::C_OFF + at.g * P;
  float yv[T];
#pragma unroll
  for (int t = 0; t < T; ++t) {
    const float2 d = s_dd[t * CB + (t % 2 == 0 ? dd_even : dd_odd)];
    float bv[P], cv[P];
    if constexpr (Tl::B_LTI) {
#pragma unroll
      for (int j = 0; j < P; ++j) bv[j] = r.B_lti[j];
    } else {
      load_row<P>(bv, sB + t * NPAD);
    }
    if constexpr (Tl::C_LTI) {
#pragma unroll
      for (int j = 0; j < P; ++j) cv[j] = r.C_lti[j];
    } else {
      load_row<P>(cv, sC + t * NPAD);
    }
    if (t % 16 == 0) store_chunk_state<Tl>(p, at, r.h, t0, t, tl);
    float y = 0.0f;
#pragma unroll
    for (int j = 0; j < P; ++j) {
      r.h[j] = fmaf(ex2(d.x * r.a2[j]), r.h[j], d.y * bv[j]);
      y = fmaf(r.h[j], cv[j], y);
    }
    yv[t] = y;
  }
  float* s_y = smem + Tl::Y_OFF;
#pragma unroll
  for (int t = 0; t < T; ++t) s_y[t * Tl::Y_ROW + at.g * CB + at.cl] = yv[t];
}

// Stage (3): y = (Σ_g partial sums + D·u) · silu(z) for the thread's items; as in stage (1), one pass per
// operation over all items, the gate and y's dtype chosen once around a pass. Vec: the items are stored as one
// vector (a full chunk, y aligned); otherwise element by element, inside the sequence and the channels only.
template <class Out, class Tl>
__device__ __forceinline__ void store_items(const ScanKernelParams& p, const Pos& at, int64_t t0, int tl, bool vec,
                                            const float (&acc)[Tl::V]) {
  constexpr int V = Tl::V;
  if (Tl::T * Tl::CB < Tl::NT && !at.row_ok) return;
  Out* y = static_cast<Out*>(p.y.p) + (at.y_at + t0 * p.y.sl);
  if (vec && at.cols_full && tl == Tl::T) {
    store_vector<Out, V>(y, acc);
  } else if (at.row < tl) {
#pragma unroll
    for (int v = 0; v < V; ++v)
      if (at.ic + v < p.e) store(y + v, acc[v]);
  }
}

template <class Tl, class In, class U>
__device__ __forceinline__ void stage_output(const Regs<Tl, In, U>& r, const ScanKernelParams& p, const Pos& at,
                                             int64_t t0, int tl, bool vec, const float (&Dv)[Tl::V],
                                             const float* smem) {
  constexpr int V = Tl::V;
  // The partial sums of the thread's items: G rows of V floats. Items of threads past T (the largest-n tile)
  // read step T − 1 and are not stored.
  const float* s_y = smem + Tl::Y_OFF + min(at.row, Tl::T - 1) * Tl::Y_ROW + at.iv;
  float acc[V], part[V];
  load_row<V>(part, s_y);
  // D·u enters by an explicit FMA: a contraction left to the compiler differed between code paths, and a
  // sequence scanned in pieces must give the bits of one call.
#pragma unroll
  for (int v = 0; v < V; ++v) acc[v] = fmaf(Dv[v], r.u_keep[v], part[v]);
#pragma unroll
  for (int gg = 1; gg < Tl::G; ++gg) {
    load_row<V>(part, s_y + gg * Tl::CB);
#pragma unroll
    for (int v = 0; v < V; ++v) acc[v] += part[v];
  }
  if (p.z.p != nullptr) {
#pragma unroll
    for (int v = 0; v < V; ++v) acc[v] *= silu(r.z_keep[v]);
  }
  if (p.y_dtype == DType::f32)
    store_items<float, Tl>(p, at, t0, tl, vec, acc);
  else if (p.y_dtype == DType::bf16)
    store_items<__nv_bfloat16, Tl>(p, at, t0, tl, vec, acc);
  else
    store_items<__half, Tl>(p, at, t0, tl, vec, acc);
}

// vec: u, dt, z and y are aligned for vectors of Tl::V elements (launch).
template <class Tl, class In, class U>
__global__ void __launch_bounds__(Tl::NT) scan_fwd_kernel(const ScanKernelParams p, const bool vec) {
  constexpr int P = Tl::P, CB = Tl::CB, T = Tl::T, V = Tl::V;
  extern __shared__ float4 smem_f4[];
  float* smem = reinterpret_cast<float*>(smem_f4);

  const int64_t tiles = (p.e + CB - 1) / CB;
  const int64_t c0 = (int64_t(blockIdx.x) % tiles) * CB;
  Pos at;
  at.tid = int(threadIdx.x);
  at.cl = at.tid % CB;
  at.g = at.tid / CB;
  at.bi = int64_t(blockIdx.x) / tiles;
  at.c = c0 + at.cl;
  at.c_ok = at.c < p.e;
  at.cols_full = c0 + CB <= p.e;
  at.bc_t = at.tid / Tl::NPAD;
  at.bc_s = at.tid % Tl::NPAD;
  at.row = at.tid / Tl::TPR;
  at.iv = (at.tid % Tl::TPR) * V;
  at.ic = c0 + at.iv;
  at.row_ok = at.row < T;
  at.u_at = at.bi * p.u.sb + at.row * p.u.sl + at.ic;
  at.dt_at = at.bi * p.dt.sb + at.row * p.dt.sl + at.ic;
  at.z_at = at.bi * p.z.sb + at.row * p.z.sl + at.ic;
  at.y_at = at.bi * p.y.sb + at.row * p.y.sl + at.ic;
  float bias[V], Dv[V];  // of the item channels
#pragma unroll
  for (int v = 0; v < V; ++v) {
    const bool ok = at.ic + v < p.e;
    bias[v] = ok && p.dt_bias != nullptr ? p.dt_bias[at.ic + v] : 0.0f;
    Dv[v] = ok && p.D != nullptr ? p.D[at.ic + v] : 0.0f;
  }

  Regs<Tl, In, U> r;
#pragma unroll
  for (int j = 0; j < P; ++j) {
    const int s = at.g * P + j;
    const bool ok = at.c_ok && s < p.n;
    r.a2[j] = ok ? p.A[at.c * p.n + s] * kLog2e : 0.0f;
    r.h[j] = ok && p.state_in != nullptr ? p.state_in[(at.bi * p.e + at.c) * p.n + s] : 0.0f;
    if constexpr (Tl::B_LTI) r.B_lti[j] = ok ? p.B_lti[at.c * p.n + s] : 0.0f;
    if constexpr (Tl::C_LTI) r.C_lti[j] = ok ? p.C_lti[at.c * p.n + s] : 0.0f;
  }

  load_chunk_at<Tl, In, U>(r, p, at, 0, vec);
  for (int64_t t0 = 0; t0 < p.l; t0 += T) {
    const int tl = int(min(p.l - t0, int64_t(T)));  // valid steps in this chunk
    stage_inputs<Tl, In>(r, p, at, tl, bias, smem);
    __syncthreads();
    if (t0 + T < p.l) load_chunk_at<Tl, In, U>(r, p, at, t0 + T, vec);
    stage_recurrence<Tl, In>(r, p, at, t0, tl, smem);
    __syncthreads();
    stage_output<Tl, In>(r, p, at, t0, tl, vec, Dv, smem);
  }

  if (p.state_out != nullptr) {
#pragma unroll
    for (int j = 0; j < P; ++j) {
      const int s = at.g * P + j;
      if (at.c_ok && s < p.n) p.state_out[(at.bi * p.e + at.c) * p.n + s] = r.h[j];
    }
  }
}

// Whether the sequence tensors of `p` (u, dt, z, y) can move in vectors of V elements: every item vector starts
// at a multiple of V elements (strides and the block's first channel), and each base pointer is aligned to the
// vector's size (V elements, at most 16 bytes).
template <class Tl, class In, class U>
bool vectors_fit(const ScanKernelParams& p) {
  constexpr int V = Tl::V;
  if constexpr (Tl::B_LTI || Tl::C_LTI) return false;  // u is read element by element there (u_any)
  const auto fits = [&](const void* ptr, const auto& s, size_t size) {
    const size_t width = V * size >= 16 ? 16 : V * size;
    return ptr == nullptr || (reinterpret_cast<uintptr_t>(ptr) % width == 0 && s.sb % V == 0 && s.sl % V == 0);
  };
  const size_t y_size = dtype_size(p.y_dtype);
  return fits(p.u.p, p.u, sizeof(U)) && fits(p.dt.p, p.dt, sizeof(In)) && fits(p.z.p, p.z, sizeof(In)) &&
         fits(p.y.p, p.y, y_size);
}

template <class Tl, class In, class U>
void launch(const ScanKernelParams& p, cudaStream_t stream) {
  const int64_t blocks = p.b * ((p.e + Tl::CB - 1) / Tl::CB);
  const auto kernel = scan_fwd_kernel<Tl, In, U>;
  if constexpr (Tl::smem_bytes > 48 * 1024)
    CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(Tl::smem_bytes)));
  kernel<<<unsigned(blocks), Tl::NT, Tl::smem_bytes, stream>>>(p, vectors_fit<Tl, In, U>(p));
  CUDA_CHECK_LAUNCH("selective_scan_forward", stream);
}

// The tile as is (B and C per token), or its variant with a time-invariant B and/or C.
template <class Tl, bool B_LTI, bool C_LTI>
using Variant = std::conditional_t<B_LTI || C_LTI, Lti<Tl, B_LTI, C_LTI>, Tl>;

// The block shape for each range of n. n ≤ 16 (every Mamba-1 model) is the one tuned for speed: 4 states per
// thread, or 2 where b·e < kNarrowGrid. The kernel is latency-bound (docs/PERFORMANCE.md): at 4 threads per
// channel, b·e = 4,096 (Mamba-1.4B's prefill at batch 1) gives the 132 SMs of an H100 fewer than 4 warps each,
// and 8 threads per channel ran its scan ~1.8× faster, although each state element then costs more instructions
// (more partial sums, narrower shared-memory loads). At b·e = 8,192 (ANCHORS.md §1) 4 states per thread were the
// faster.
constexpr int64_t kNarrowGrid = 8192;

template <class In, class U = In, bool B_LTI = false, bool C_LTI = false>
void launch_for_dtype(const ScanKernelParams& p, cudaStream_t stream) {
  if (p.n <= 4)
    launch<Variant<Tile<4, 1, 128, 8>, B_LTI, C_LTI>, In, U>(p, stream);
  else if (p.n <= 8)
    launch<Variant<Tile<4, 2, 64, 16>, B_LTI, C_LTI>, In, U>(p, stream);
  else if (p.n <= 16 && p.b * p.e < kNarrowGrid)
    launch<Variant<Tile<2, 8, 16, 32>, B_LTI, C_LTI>, In, U>(p, stream);
  else if (p.n <= 16)
    launch<Variant<Tile<4, 4, 32, 32>, B_LTI, C_LTI>, In, U>(p, stream);
  else if (p.n <= 32)
    launch<Variant<Tile<4, 8, 16, 32>, B_LTI, C_LTI>, In, U>(p, stream);
  else if (p.n <= 64)
    launch<Variant<Tile<4, 16, 8, 32>, B_LTI, C_LTI>, In, U>(p, stream);
  else
    launch<Variant<Tile<8, 32, 4, 16>, B_LTI, C_LTI>, In, U>(p, stream);
}

// A time-invariant B and/or C: f32 dt and z only (scan_kernel_supports); u of any dtype, widened at run time.
void launch_lti(const ScanKernelParams& p, cudaStream_t stream) {
  if (p.B_lti != nullptr && p.C_lti != nullptr)
    launch_for_dtype<float, float, true, true>(p, stream);
  else if (p.B_lti != nullptr)
    launch_for_dtype<float, float, true, false>(p, stream);
  else
    launch_for_dtype<float, float, false, true>(p, stream);
}

// The smallest number of channels per block among the tiles above, which bounds the grid size.
constexpr int64_t kMinChannelsPerBlock = 4;
// Offsets within a chunk are 32-bit: T · (row stride) + n must stay below 2³¹ for every tile (T ≤ 32).
constexpr int64_t kMaxRowStride = int64_t(1) << 25;

bool refuse(std::string* why, const std::string& msg) {
  if (why != nullptr) *why = msg;
  return false;
}

bool aligned(const void* p, size_t bytes) { return reinterpret_cast<uintptr_t>(p) % bytes == 0; }

}  // namespace

bool scan_kernel_supports(const ScanKernelParams& p, std::string* why) {
  if (p.n < 1 || p.n > kScanMaxState)
    return refuse(why, "state size n = " + std::to_string(p.n) + " is outside the supported range 1.." +
                           std::to_string(kScanMaxState));
  if (p.b < 0 || p.l < 0 || p.e < 0) return refuse(why, "negative size");
  const int64_t blocks = p.b * ((p.e + kMinChannelsPerBlock - 1) / kMinChannelsPerBlock);
  if (blocks > int64_t(INT32_MAX))
    return refuse(why, "b·e = " + std::to_string(p.b * p.e) + " channels is more than one launch covers (at most " +
                           std::to_string(int64_t(INT32_MAX) * kMinChannelsPerBlock) + ")");
  const bool seq = p.b * p.l * p.e > 0, bc = p.b * p.l > 0;
  if ((seq && (p.u.p == nullptr || p.dt.p == nullptr || p.y.p == nullptr)) ||
      (bc && p.B_lti == nullptr && p.B.p == nullptr) || (bc && p.C_lti == nullptr && p.C.p == nullptr) ||
      (p.e > 0 && p.A == nullptr))
    return refuse(why, "u, dt, B, C, A and y must have data when they have elements");
  if (p.u_dtype != p.in_dtype && p.in_dtype != DType::f32)
    return refuse(why, std::string("u is ") + dtype_name(p.u_dtype) + "; with " + dtype_name(p.in_dtype) +
                           " dt, B, C and z it must be " + dtype_name(p.in_dtype) +
                           " (a half u goes with f32 dt, B, C and z)");
  if ((p.B_lti != nullptr || p.C_lti != nullptr) && p.in_dtype != DType::f32)
    return refuse(why, std::string("a time-invariant B/C (shape [e, n]) needs f32 dt and z, got ") +
                           dtype_name(p.in_dtype));
  for (const auto& [name, sb, sl] : {std::tuple{"u", p.u.sb, p.u.sl}, std::tuple{"dt", p.dt.sb, p.dt.sl},
                                     std::tuple{"z", p.z.sb, p.z.sl}, std::tuple{"y", p.y.sb, p.y.sl},
                                     std::tuple{"B", p.B.sb, p.B.sl}, std::tuple{"C", p.C.sb, p.C.sl}}) {
    if (sb < 0 || sl < 0) return refuse(why, std::string(name) + " has a negative stride");
    if (sl > kMaxRowStride)
      return refuse(why, std::string(name) + " has a row stride of " + std::to_string(sl) +
                             " elements; at most " + std::to_string(kMaxRowStride) + " are supported");
  }
  if (p.y_dtype != p.in_dtype && p.y_dtype != DType::f32 && p.in_dtype != DType::f32)
    return refuse(why, std::string("y is ") + dtype_name(p.y_dtype) + "; with " + dtype_name(p.in_dtype) +
                           " inputs it must be " + dtype_name(p.in_dtype) + " or f32");
  const size_t in_size = dtype_size(p.in_dtype), y_size = dtype_size(p.y_dtype);
  if (!aligned(p.u.p, dtype_size(p.u_dtype)) || !aligned(p.dt.p, in_size) || !aligned(p.B.p, in_size) ||
      !aligned(p.C.p, in_size) || (p.z.p != nullptr && !aligned(p.z.p, in_size)) || !aligned(p.y.p, y_size))
    return refuse(why, "a sequence tensor is not aligned to its element size");
  return true;
}

void scan_kernel_launch(const ScanKernelParams& p, cudaStream_t stream) {
  if (p.b == 0 || p.e == 0) return;
  if (p.l == 1 && p.chunk_states == nullptr) return scan_step_kernel_launch(p, stream);
  if (p.B_lti != nullptr || p.C_lti != nullptr) return launch_lti(p, stream);
  switch (p.in_dtype) {
    case DType::f32:  // a half u beside f32 inputs: kernels of their own (the selective tiles only)
      if (p.u_dtype == DType::bf16)
        launch_for_dtype<float, __nv_bfloat16>(p, stream);
      else if (p.u_dtype == DType::f16)
        launch_for_dtype<float, __half>(p, stream);
      else
        launch_for_dtype<float>(p, stream);
      break;
    case DType::bf16: launch_for_dtype<__nv_bfloat16>(p, stream); break;
    case DType::f16: launch_for_dtype<__half>(p, stream); break;
  }
}

}  // namespace mambacpp::cuda
