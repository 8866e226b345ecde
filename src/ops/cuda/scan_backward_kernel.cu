// The fused selective-scan backward kernel (interface: scan_backward_kernel.h; mathematics: ops_backward.h).
//
// Work split. A thread owns P state elements of one channel (P = 2 up to n = 32, 4 above), G threads cover a
// channel's n states and a block owns CB channels of one batch row (a "tile"), walking time in chunks of T
// steps. A block may own several tiles of its batch row, one after the other (a "group" of tiles): that bounds
// the partial sums of dB and dC, which exist once per group. At n = 16 a block is 32 channels × 8 threads and
// two blocks (16 warps) fit on an SM at ≤ 128 registers per thread.
//
// Per tile:
//   1. forward: the states are run over the whole sequence and the state at the start of every K-th chunk is
//      kept in global scratch (K = 1 unless the sequence is so long that the checkpoints would exceed their
//      budget). With a gate, y' = Σ_s h·C + D·u is formed on the way and dz written.
//      Where the forward scan left its chunk_states (the state every 16 steps) and the chunks are 16 steps
//      (n ≤ 64), this pass is skipped (Start::states): they are the chunk-start states, and with a gate y' is
//      formed from each chunk's recomputed states in step 2 instead (its per-thread sums in a third shared
//      array: 59 KB of shared memory per block at n = 16, still two blocks per SM).
//   2. backward, chunk groups of K last to first: when K > 1 the K chunk-start states are recomputed into the
//      block's own scratch; then each chunk, last to first: its T + 1 states are recomputed in registers
//      (never written anywhere), and its steps are walked in reverse carrying the state gradient g.
// Each chunk's global inputs (u, dt, dy, z, B, C and the chunk-start state) are loaded into registers while the
// previous chunk is being worked on, so that their latency is hidden (scan_backward_inputs.cuh). A bf16 or f16 u is
// widened to f32 as it is loaded: by kernels of its own for the selective tiles (HalfU<Tile>), by a branch on its
// dtype in the time-invariant variants.
// Per S steps of the reverse walk (S = 4 at P = 2, 2 at P = 4) a thread forms, for its P states, the dB and dC
// terms (g·δu and dy'·h) and reduces them over the CB channels of its warp with shuffles (a halving exchange:
// 2SP values over CB lanes in log2(CB) rounds); per step it forms the per-thread sums Σ g·B and Σ g·A·exp(δA)·h[t-1] that du and dδ
// need; those are added over the G threads of a channel in shared memory after the chunk.
//
// Determinism: no atomics. Every sum runs in an order fixed by the shapes: dB, dC per block in shared memory,
// then over the groups in group order (reduce_bc_kernel); dA, dD and the Δ-bias gradient per thread over
// time, over the G threads of a channel in g order, then over batch rows in order (reduce_param_kernel). The
// reductions, the work plan and the scratch layout are in scan_backward_launch.cu and scan_backward_plan.h.
//
// Steps past the end of the sequence and channels past e run with δ = 0, B = C = 0 and dy' = 0, which leaves
// the state and its gradient unchanged and contributes nothing, so the inner loops have no bounds checks.
//
// A time-invariant B or C (B_lti, C_lti: per channel, the selection ablations) is a variant of the tile
// (Lti<Tile, B, C>): each thread keeps its P values of B[c, ·] or C[c, ·] in registers, and sums its terms of
// dB[c, ·] or dC[c, ·] over time in registers, as it does dA's; they are added over batch rows in order
// (reduce_lti_kernel) to dB_lti / dC_lti. Those terms skip the lane reduction and the per-token partial sums.
// The selective (S6) kernels are the tiles themselves, compiled as before.
#include "core/cuda/check.h"
#include "ops/cuda/scan_backward_inputs.cuh"
#include "ops/cuda/scan_backward_plan.h"
#include "ops/cuda/scan_math.cuh"

namespace mambacpp::cuda {
namespace {

using namespace scan_math;
using namespace scan_bwd;

// A thread's constants and accumulators for one tile.
template <class Tl>
struct TileRegs {
  float a2[Tl::P], A[Tl::P];  // A·log2 e, A
  float g[Tl::P], dA[Tl::P];  // state gradient, Σ_t g·δ·exp(δA)·h[t-1]
  float bias, D;
  float dD, dbias;            // this thread's items' Σ dy'·u, Σ ddt
  // A time-invariant B / C at the thread's channel and states, and Σ_t g·δ·u / Σ_t dy'·h[t] there.
  float B[Tl::B_LTI ? Tl::P : 1], dB[Tl::B_LTI ? Tl::P : 1];
  float C[Tl::C_LTI ? Tl::P : 1], dC[Tl::C_LTI ? Tl::P : 1];
};

template <class Tl>
__device__ __forceinline__ float* global_ckpt(const Scratch& w, const Pos& at, int64_t e, int64_t k) {
  return w.ckpt + (((at.bi * w.ckpts + k) * Tl::G + at.g) * e + at.c) * Tl::P;
}

template <class Tl>
__device__ __forceinline__ float* local_ckpt(const Scratch& w, const Pos& at, int64_t j) {
  return w.local + ((int64_t(blockIdx.x) * w.per_ckpt + j) * Tl::NT + at.tid) * Tl::P;
}

// δ and dδ/d(dt) for the raw dt + dt_bias value x: softplus (linear above 20, as the reference) or identity.
__device__ __forceinline__ void delta_of(bool softplus, float x, float* delta, float* dsoft) {
  if (!softplus) {
    *delta = x, *dsoft = 1.0f;
  } else if (x > 20.0f) {
    *delta = x, *dsoft = 1.0f;
  } else {
    // With w = e^−|x|: softplus(x) = max(x, 0) + log1p(w), σ(x) = 1/(1 + w) for x ≥ 0, w/(1 + w) below.
    const float w = ex2(-fabsf(x) * kLog2e), r = __frcp_rn(1.0f + w);
    *delta = softplus_of(x, w), *dsoft = x >= 0.0f ? r : w * r;
  }
}

// The forward recurrence over chunks [ci_begin, ci_end) starting from h. LOCAL: the state at the start of every
// chunk goes to the block's scratch; otherwise at the start of every K-th chunk to the global checkpoints, and
// with Z (a gate) y' is formed and dz written.
template <class Tl, bool LOCAL, bool Z>
__device__ void forward_pass(const ScanGradKernelParams& p, const Scratch& w, const Pos& at, const TileRegs<Tl>& r,
                             float (&h)[Tl::P], int64_t ci_begin, int64_t ci_end, float* smem) {
  constexpr int T = Tl::T, G = Tl::G, CB = Tl::CB, P = Tl::P;
  float2* tc = reinterpret_cast<float2*>(smem + Tl::TC_OFF);  // (δ, δ·u) [T][CB]
  float* part = smem + Tl::PART_OFF;
  Fetch<Tl> next;
  if (ci_begin < ci_end) fetch_chunk<Tl>(p, at, ci_begin, Z, Z, next);
  for (int64_t ci = ci_begin; ci < ci_end; ++ci) {
    const Fetch<Tl> cur = next;
    if (ci + 1 < ci_end) fetch_chunk<Tl>(p, at, ci + 1, Z, Z, next);
    const int64_t t0 = ci * T;
    const int tl = int(min(p.l - t0, int64_t(T)));
    if (at.c_ok) {
      if (LOCAL)
        store4<P>(local_ckpt<Tl>(w, at, ci - ci_begin), h);
      else if (ci % w.per_ckpt == 0)
        store4<P>(global_ckpt<Tl>(w, at, p.e, ci / w.per_ckpt), h);
    }
#pragma unroll
    for (int k = 0; k < Tl::ITEMS; ++k) {
      const int t = at.g + k * G;
      if (T % G != 0 && t >= T) continue;
      float delta = 0.0f, dsoft;
      if (at.c_ok && t < tl) delta_of(p.dt_softplus, cur.dt[k] + r.bias, &delta, &dsoft);
      tc[t * CB + at.cl] = make_float2(delta, delta * fetched_u<Tl>(cur, k, p));
    }
    stage_bc<Tl>(p, at, ci, cur, Z, smem);
    __syncthreads();
    const float* sB = smem + Tl::B_OFF + at.g * P;
    const float* sC = smem + Tl::C_OFF + at.g * P;
    float ys[T];  // this thread's share of Σ_s h·C per step, stored after the steps
#pragma unroll
    for (int t = 0; t < T; ++t) {
      const float2 d = tc[t * CB + at.cl];
      float bv[P];
      bc_row<Tl::B_LTI, P>(bv, r.B, sB + t * Tl::NPAD);
#pragma unroll
      for (int j = 0; j < P; ++j) h[j] = fmaf(ex2(d.x * r.a2[j]), h[j], d.y * bv[j]);
      if (Z) {
        float cv[P];
        bc_row<Tl::C_LTI, P>(cv, r.C, sC + t * Tl::NPAD);
        ys[t] = 0.0f;
#pragma unroll
        for (int j = 0; j < P; ++j) ys[t] = fmaf(h[j], cv[j], ys[t]);
      }
    }
    if (Z)
#pragma unroll
      for (int t = 0; t < T; ++t) part[(t * G + at.g) * CB + at.cl] = ys[t];
    __syncthreads();
    if (Z) {
#pragma unroll
      for (int k = 0; k < Tl::ITEMS; ++k) {
        const int t = at.g + k * G;
        if ((T % G != 0 && t >= T) || !at.c_ok || t >= tl) continue;
        float y = r.D * fetched_u<Tl>(cur, k, p);
#pragma unroll 8
        for (int gg = 0; gg < G; ++gg) y += part[(t * G + gg) * CB + at.cl];
        const float zv = cur.z[k], sig = sigmoid(zv);
        store_grad(p.dz.p, p.dz_dtype, at_seq(p.dz, at.bi, t0 + t, at.c),
                   cur.dy[k] * y * sig * fmaf(zv, 1.0f - sig, 1.0f));
      }
    }
  }
}

// Sums 2P values over the CB lanes of a channel group by halving exchanges: after log2(CB) rounds the lane
// holds V values (V = max(1, 2P/CB)), the totals of the original indices base … base + V − 1.
template <int V, int O>
__device__ __forceinline__ void reduce_lanes(float* v, int cl, int& base) {
  if constexpr (O >= 1) {
    if constexpr (V > 1) {
      constexpr int H = V / 2;
      const bool upper = (cl & O) != 0;
#pragma unroll
      for (int i = 0; i < H; ++i) {
        const float keep = upper ? v[i + H] : v[i], send = upper ? v[i] : v[i + H];
        v[i] = keep + __shfl_xor_sync(0xffffffffu, send, O);
      }
      if (upper) base += H;
      reduce_lanes<H, O / 2>(v, cl, base);
    } else {
      v[0] += __shfl_xor_sync(0xffffffffu, v[0], O);
      reduce_lanes<1, O / 2>(v, cl, base);
    }
  }
}

__host__ __device__ constexpr int ilog2(int x) { return x <= 1 ? 0 : 1 + ilog2(x / 2); }

// One chunk of the backward: recompute its states from h0, walk its steps in reverse, write du and ddt, and
// leave the block's dB and dC of the chunk in the partial sums of its group. `next` holds chunk ci's inputs on
// entry and, when ci > ci_first, chunk ci − 1's on return (its start state read from h0_prev). states_dz: there
// was no forward pass (the start states came from the forward's chunk_states), so y' = Σ_s h·C + D·u is formed
// from the recomputed states and dz written here.
template <class Tl, Start F>
__device__ void chunk_backward(const ScanGradKernelParams& p, const Scratch& w, const Pos& at, TileRegs<Tl>& r,
                               const float* h0_prev, int64_t ci, int64_t ci_first, bool first_tile,
                               Fetch<Tl>& next, float* smem) {
  constexpr bool DZ = F == Start::states_dz;
  constexpr int T = Tl::T, G = Tl::G, CB = Tl::CB, P = Tl::P, NPAD = Tl::NPAD;
  constexpr int S = P == 2 ? 4 : 2;                                    // steps per lane reduction
  constexpr int V = 2 * S * P > CB ? 2 * S * P / CB : 1;               // values per lane after the reduction
  constexpr int WRITER_MASK = (CB >> ilog2(2 * S * P > CB ? CB : 2 * S * P)) - 1;  // lanes holding a copy
  static_assert(T % S == 0, "steps are walked in groups of S");
  float2* tc = reinterpret_cast<float2*>(smem + Tl::TC_OFF);  // (δ, δ·u) [T][CB]
  float* dys = smem + Tl::DY_OFF;                              // dy' [T][CB]
  float* part = smem + Tl::PART_OFF;
  float* bc = smem + Tl::BC_OFF;
  const int64_t t0 = ci * T;
  const int tl = int(min(p.l - t0, int64_t(T)));

  const Fetch<Tl> cur = next;
  if (ci > ci_first) {
    fetch_chunk<Tl>(p, at, ci - 1, true, true, next);
    fetch_state<Tl, F>(p, at, h0_prev, next);
  }
  float hist[T + 1][P];
#pragma unroll
  for (int j = 0; j < P; ++j) hist[0][j] = cur.h0[j];
  float keep_delta[Tl::ITEMS], keep_u[Tl::ITEMS], keep_dyp[Tl::ITEMS], keep_dsoft[Tl::ITEMS];
  float keep_dy[DZ ? Tl::ITEMS : 1], keep_z[DZ ? Tl::ITEMS : 1];
#pragma unroll
  for (int k = 0; k < Tl::ITEMS; ++k) {
    const int t = at.g + k * G;
    if (T % G != 0 && t >= T) continue;
    float delta = 0.0f, dsoft = 0.0f, dyp = 0.0f;
    if (at.c_ok && t < tl) {
      delta_of(p.dt_softplus, cur.dt[k] + r.bias, &delta, &dsoft);
      dyp = cur.dy[k];
      if (p.z.p != nullptr) dyp *= cur.z[k] * sigmoid(cur.z[k]);
    }
    tc[t * CB + at.cl] = make_float2(delta, delta * fetched_u<Tl>(cur, k, p));
    dys[t * CB + at.cl] = dyp;
    keep_delta[k] = delta, keep_u[k] = fetched_u<Tl>(cur, k, p), keep_dyp[k] = dyp, keep_dsoft[k] = dsoft;
    if constexpr (DZ) keep_dy[k] = cur.dy[k], keep_z[k] = cur.z[k];
  }
  stage_bc<Tl>(p, at, ci, cur, true, smem);
  __syncthreads();

  const float* sB = smem + Tl::B_OFF + at.g * P;
  const float* sC = smem + Tl::C_OFF + at.g * P;
#pragma unroll
  for (int t = 0; t < T; ++t) {
    const float2 d = tc[t * CB + at.cl];
    float bv[P];
    bc_row<Tl::B_LTI, P>(bv, r.B, sB + t * NPAD);
#pragma unroll
    for (int j = 0; j < P; ++j) hist[t + 1][j] = fmaf(ex2(d.x * r.a2[j]), hist[t][j], d.y * bv[j]);
    if constexpr (DZ) {  // this thread's share of Σ_s h·C, as the forward pass forms it
      float cv[P];
      bc_row<Tl::C_LTI, P>(cv, r.C, sC + t * NPAD);
      float ys = 0.0f;
#pragma unroll
      for (int j = 0; j < P; ++j) ys = fmaf(hist[t + 1][j], cv[j], ys);
      smem[Tl::YP_OFF + (t * G + at.g) * CB + at.cl] = ys;
    }
  }
  // Steps in groups of S (t2, t2 − 1, …): the dB and dC terms of all go through one lane reduction, v[2P·i,
  // 2P·(i + 1)) for step t2 − i, which takes fewer exchanges than S reductions.
#pragma unroll
  for (int t2 = T - 1; t2 >= 0; t2 -= S) {
    float v[2 * S * P];
#pragma unroll
    for (int half = 0; half < S; ++half) {
      const int t = t2 - half;
      const float2 d = tc[t * CB + at.cl];  // δ, δ·u
      const float dyp = dys[t * CB + at.cl];
      float bv[P], cv[P];
      bc_row<Tl::B_LTI, P>(bv, r.B, sB + t * NPAD);
      bc_row<Tl::C_LTI, P>(cv, r.C, sC + t * NPAD);
      float sgb = 0.0f, sdd = 0.0f;
#pragma unroll
      for (int j = 0; j < P; ++j) {
        const float g = fmaf(dyp, cv[j], r.g[j]);
        // The dC and dB terms: into the lane reduction, or summed over time for a time-invariant C / B.
        if constexpr (Tl::C_LTI)
          r.dC[j] = fmaf(dyp, hist[t + 1][j], r.dC[j]), v[half * 2 * P + P + j] = 0.0f;
        else
          v[half * 2 * P + P + j] = dyp * hist[t + 1][j];
        if constexpr (Tl::B_LTI)
          r.dB[j] = fmaf(g, d.y, r.dB[j]), v[half * 2 * P + j] = 0.0f;
        else
          v[half * 2 * P + j] = g * d.y;
        sgb = fmaf(g, bv[j], sgb);
        const float decay = ex2(d.x * r.a2[j]);
        const float gd = g * (decay * hist[t][j]);
        sdd = fmaf(gd, r.A[j], sdd);
        r.dA[j] = fmaf(gd, d.x, r.dA[j]);
        r.g[j] = decay * g;
      }
      part[(t * G + at.g) * CB + at.cl] = sgb;
      part[T * G * CB + (t * G + at.g) * CB + at.cl] = sdd;
    }
    if constexpr (!(Tl::B_LTI && Tl::C_LTI)) {
      int base = 0;
      reduce_lanes<2 * S * P, CB / 2>(v, at.cl, base);
      if ((at.cl & WRITER_MASK) == 0) {
#pragma unroll
        for (int i = 0; i < V; ++i) {
          const int t = t2 - (base + i) / (2 * P), j = (base + i) % (2 * P);
          bc[t * 2 * NPAD + (j < P ? at.g * P + j : NPAD + at.g * P + j - P)] = v[i];
        }
      }
    }
  }
  __syncthreads();

#pragma unroll
  for (int k = 0; k < Tl::ITEMS; ++k) {
    const int t = at.g + k * G;
    if ((T % G != 0 && t >= T) || !at.c_ok || t >= tl) continue;
    float sgb = 0.0f, sdd = 0.0f;
#pragma unroll 8
    for (int gg = 0; gg < G; ++gg) {
      sgb += part[(t * G + gg) * CB + at.cl];
      sdd += part[T * G * CB + (t * G + gg) * CB + at.cl];
    }
    const float du = fmaf(keep_delta[k], sgb, keep_dyp[k] * r.D);
    const float ddt = fmaf(keep_u[k], sgb, sdd) * keep_dsoft[k];
    p.du.p[at_seq(p.du, at.bi, t0 + t, at.c)] = du;
    store_grad(p.ddt.p, p.ddt_dtype, at_seq(p.ddt, at.bi, t0 + t, at.c), ddt);
    if constexpr (DZ) {
      float y = r.D * keep_u[k];
#pragma unroll 8
      for (int gg = 0; gg < G; ++gg) y += smem[Tl::YP_OFF + (t * G + gg) * CB + at.cl];
      const float zv = keep_z[k], sig = sigmoid(zv);
      store_grad(p.dz.p, p.dz_dtype, at_seq(p.dz, at.bi, t0 + t, at.c),
                 keep_dy[k] * y * sig * fmaf(zv, 1.0f - sig, 1.0f));
    }
    r.dD = fmaf(keep_dyp[k], keep_u[k], r.dD);
    r.dbias += ddt;
  }
  if constexpr (Tl::B_LTI && Tl::C_LTI) return;
  const int64_t grp = int64_t(blockIdx.x) % w.groups;
  float* out = w.bc + ((grp * p.b + at.bi) * p.l + t0) * 2 * NPAD;
  for (int i = at.tid; i < tl * 2 * NPAD; i += Tl::NT) out[i] = first_tile ? bc[i] : out[i] + bc[i];
}

// The backward's walk over the chunks, last to first, from the chunk-start states: the checkpoints of its forward
// pass (recomputed per group of K chunks when K > 1), or the forward's chunk_states (K = 1). h: the state after
// its forward pass (used as scratch when K > 1).
template <class Tl, Start F>
__device__ void backward_chunks(const ScanGradKernelParams& p, const Scratch& w, const Pos& at, TileRegs<Tl>& r,
                                float (&h)[Tl::P], bool first_tile, float* smem) {
  constexpr int P = Tl::P;
  Fetch<Tl> next;  // the inputs of the next chunk to walk, fetched one chunk ahead
  for (int64_t k = w.ckpts - 1; k >= 0; --k) {
    const int64_t ci_begin = k * w.per_ckpt, ci_end = min(w.chunks, ci_begin + w.per_ckpt);
    if (w.per_ckpt > 1) {
      if (at.c_ok) load4<P>(h, global_ckpt<Tl>(w, at, p.e, k));
      forward_pass<Tl, true, false>(p, w, at, r, h, ci_begin, ci_end, smem);
    }
    // The state at the start of chunk ci: in the block's scratch when K > 1, else its global checkpoint.
    const auto start_state = [&](int64_t ci) -> const float* {
      if constexpr (F != Start::forward_pass) return w.states + ((at.bi * w.chunks + ci) * p.n + at.g * P) * p.e + at.c;
      return w.per_ckpt > 1 ? local_ckpt<Tl>(w, at, ci - ci_begin) : global_ckpt<Tl>(w, at, p.e, ci);
    };
    // With K = 1 every chunk's start state is a global checkpoint and the fetches run across checkpoint
    // groups; with K > 1 the next group's start states are not yet recomputed, so they stop at the group.
    const int64_t ci_first = w.per_ckpt > 1 ? ci_begin : 0;
    if (w.per_ckpt > 1 || k == w.ckpts - 1) {
      fetch_chunk<Tl>(p, at, ci_end - 1, true, true, next);
      fetch_state<Tl, F>(p, at, start_state(ci_end - 1), next);
    }
    for (int64_t ci = ci_end - 1; ci >= ci_begin; --ci)
      chunk_backward<Tl, F>(p, w, at, r, start_state(max(ci - 1, ci_first)), ci, ci_first, first_tile, next, smem);
  }
}

// The whole backward of one tile (CB channels of batch row at.bi).
template <class Tl, Start F>
__device__ void tile_backward(const ScanGradKernelParams& p, const Scratch& w, const Pos& at, bool first_tile,
                              float* smem) {
  constexpr int P = Tl::P, G = Tl::G, CB = Tl::CB;
  TileRegs<Tl> r;
  float h[P];
#pragma unroll
  for (int j = 0; j < P; ++j) {
    const int s = at.g * P + j;
    const bool ok = at.c_ok && s < p.n;
    const int64_t is = (at.bi * p.e + at.c) * p.n + s;
    r.A[j] = ok ? p.A[at.c * p.n + s] : 0.0f;
    r.a2[j] = r.A[j] * kLog2e;
    r.g[j] = ok && p.dstate_out != nullptr ? p.dstate_out[is] : 0.0f;
    r.dA[j] = 0.0f;
    h[j] = ok && p.state_in != nullptr ? p.state_in[is] : 0.0f;
    if constexpr (Tl::B_LTI) r.B[j] = ok ? p.B_lti[at.c * p.n + s] : 0.0f, r.dB[j] = 0.0f;
    if constexpr (Tl::C_LTI) r.C[j] = ok ? p.C_lti[at.c * p.n + s] : 0.0f, r.dC[j] = 0.0f;
  }
  r.bias = at.c_ok && p.dt_bias != nullptr ? p.dt_bias[at.c] : 0.0f;
  r.D = at.c_ok && p.D != nullptr ? p.D[at.c] : 0.0f;
  r.dD = 0.0f, r.dbias = 0.0f;

  if constexpr (F == Start::forward_pass) {
    if (p.z.p != nullptr)
      forward_pass<Tl, false, true>(p, w, at, r, h, 0, w.chunks, smem);
    else
      forward_pass<Tl, false, false>(p, w, at, r, h, 0, w.chunks, smem);
  }
  backward_chunks<Tl, F>(p, w, at, r, h, first_tile, smem);

#pragma unroll
  for (int j = 0; j < P; ++j) {
    const int s = at.g * P + j;
    if (!at.c_ok || s >= p.n) continue;
    const int64_t is = (at.bi * p.e + at.c) * p.n + s;
    if (p.dstate_in != nullptr) p.dstate_in[is] = r.g[j];
    w.dA[is] = r.dA[j];
    if constexpr (Tl::B_LTI) w.dB_lti[is] = r.dB[j];
    if constexpr (Tl::C_LTI) w.dC_lti[is] = r.dC[j];
  }
  float* part = smem + Tl::PART_OFF;
  __syncthreads();
  part[at.g * CB + at.cl] = r.dD;
  part[G * CB + at.g * CB + at.cl] = r.dbias;
  __syncthreads();
  if (at.g == 0 && at.c_ok) {
    float dD = 0.0f, dbias = 0.0f;
    for (int gg = 0; gg < G; ++gg) dD += part[gg * CB + at.cl], dbias += part[G * CB + gg * CB + at.cl];
    w.dD[at.bi * p.e + at.c] = dD;
    w.dbias[at.bi * p.e + at.c] = dbias;
  }
}

template <class Tl, Start F>
__global__ void __launch_bounds__(Tl::NT, Tl::MIN_BLOCKS) scan_bwd_kernel(const ScanGradKernelParams p, const Scratch w) {
  extern __shared__ float4 smem_f4[];
  float* smem = reinterpret_cast<float*>(smem_f4);
  const int64_t tiles = (p.e + Tl::CB - 1) / Tl::CB;
  const int64_t grp = int64_t(blockIdx.x) % w.groups;
  const int64_t first = grp * tiles / w.groups, last = (grp + 1) * tiles / w.groups;
  Pos at;
  at.tid = int(threadIdx.x);
  at.cl = at.tid % Tl::CB;
  at.g = at.tid / Tl::CB;
  at.bi = int64_t(blockIdx.x) / w.groups;
  for (int64_t tile = first; tile < last; ++tile) {
    at.c = tile * Tl::CB + at.cl;
    at.c_ok = at.c < p.e;
    __syncthreads();  // the previous tile's last reads of shared memory are done
    tile_backward<Tl, F>(p, w, at, tile == first, smem);
  }
}

// Launches the kernel of tile variant Tl for the start F (above 48 KB of shared memory only with y' formed in the
// chunks, which that kernel is allowed once).
template <class Tl, Start F>
void launch_start(const ScanGradKernelParams& p, const Scratch& w, cudaStream_t stream) {
  const auto kernel = scan_bwd_kernel<Tl, F>;
  constexpr size_t bytes = F == Start::states_dz ? Tl::smem_bytes_dz : Tl::smem_bytes;
  if constexpr (bytes > 48 * 1024) {
    static const cudaError_t allowed =
        cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes));
    CUDA_CHECK(allowed);
  }
  kernel<<<unsigned(p.b * w.groups), Tl::NT, bytes, stream>>>(p, w);
}

template <class Tl>
void launch_variant(const ScanGradKernelParams& p, const Scratch& w, cudaStream_t stream) {
  if constexpr (Tl::FROM_STATES) {
    if (w.states != nullptr && p.z.p != nullptr) return launch_start<Tl, Start::states_dz>(p, w, stream);
    if (w.states != nullptr) return launch_start<Tl, Start::states>(p, w, stream);
  }
  launch_start<Tl, Start::forward_pass>(p, w, stream);
}

template <class Tl>
void launch_tile(const ScanGradKernelParams& p, const Scratch& w, cudaStream_t stream) {
  if (p.B_lti == nullptr && p.C_lti == nullptr && p.u_dtype != DType::f32)
    launch_variant<HalfU<Tl>>(p, w, stream);
  else if (p.B_lti == nullptr && p.C_lti == nullptr)
    launch_variant<Tl>(p, w, stream);
  else if (p.C_lti == nullptr)
    launch_variant<Lti<Tl, true, false>>(p, w, stream);
  else if (p.B_lti == nullptr)
    launch_variant<Lti<Tl, false, true>>(p, w, stream);
  else
    launch_variant<Lti<Tl, true, true>>(p, w, stream);
  CUDA_CHECK_LAUNCH("selective_scan_backward", stream);
}

}  // namespace

void scan_bwd::launch_main(const ScanGradKernelParams& p, const Scratch& w, cudaStream_t stream) {
  with_tile(p.n, [&]<class Tl>() { launch_tile<Tl>(p, w, stream); });
}

}  // namespace mambacpp::cuda
