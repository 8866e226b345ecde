// The scan backward's work split and scratch layout (src/ops/cuda/scan_backward_kernel.cu describes the work
// split), shared by its main kernel (scan_backward_kernel.cu) and its host side and reductions
// (scan_backward_launch.cu). Included by .cu files only.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "ops/cuda/scan_backward_kernel.h"

namespace mambacpp::cuda::scan_bwd {

// The block shape: P states per thread, G threads per channel, CB channels per block, T steps per chunk.
template <int P_, int G_, int CB_, int T_>
struct Tile {
  static constexpr int P = P_, G = G_, CB = CB_, T = T_;
  static constexpr int MIN_BLOCKS = (P == 2 ? 512 : 384) / (CB * G);  // resident blocks per SM asked of the compiler
  static constexpr int NT = CB * G;                  // threads per block
  static constexpr int NPAD = P * G;                 // state slots: n rounded up
  static constexpr int ITEMS = (T + G - 1) / G;      // (t, c) items per thread: t = g + k·G
  // Shared memory, in floats: (δ, δ·u) [T][CB], dy' [T][CB], B [T][NPAD], C [T][NPAD], per-thread sums
  // [2][T][G][CB], the block's dB and dC [T][2·NPAD]; then, only where the chunks' states come from the forward
  // pass and there is a gate, the per-thread sums Σ h·C of y' [T][G][CB] (smem_bytes_dz).
  static constexpr int TC_OFF = 0, DY_OFF = 2 * T * CB, B_OFF = 3 * T * CB, C_OFF = B_OFF + T * NPAD;
  static constexpr int PART_OFF = C_OFF + T * NPAD;
  static constexpr int BC_OFF = PART_OFF + 2 * T * G * CB;
  static constexpr int YP_OFF = BC_OFF + 2 * T * NPAD;
  static constexpr size_t smem_bytes = size_t(YP_OFF) * sizeof(float);
  static constexpr size_t smem_bytes_dz = size_t(YP_OFF + T * G * CB) * sizeof(float);
  // Whether the forward's chunk_states (one per 16 steps) can stand for this tile's chunk-start states.
  static constexpr bool FROM_STATES = T == 16;
  static_assert(P == 2 || P == 4, "states are moved as float2 or float4");
  static_assert(CB <= 32 && 32 % CB == 0 && NT % 32 == 0, "a channel group must sit inside one warp");
  static_assert(smem_bytes <= 48 * 1024, "no opt-in to large shared memory");
  static constexpr bool B_LTI = false, C_LTI = false;  // B and C per token
  static constexpr bool HALF_U = false;                 // u in f32 (or, in the Lti variants, any dtype)
};

// The tile with a time-invariant B and/or C: (e, n) per channel, held in registers (B_lti, C_lti).
template <class Tl, bool B, bool C>
struct Lti : Tl {
  static constexpr bool B_LTI = B, C_LTI = C;
};

// The selective tile reading a bf16 or f16 u (p.u_dtype), widened to f32 as it is loaded. The time-invariant
// variants, f32 kernels of the ablations, take any u dtype at run time instead of another instantiation.
template <class Tl>
struct HalfU : Tl {
  static constexpr bool HALF_U = true;
};

using TileN8 = Tile<2, 4, 32, 16>;
using TileN16 = Tile<2, 8, 32, 16>;
using TileN32 = Tile<2, 16, 16, 16>;
using TileN64 = Tile<4, 16, 8, 16>;
using TileN256 = Tile<4, 64, 2, 8>;

// Calls f.template operator()<Tile>() with the tile for state size n (1 ≤ n ≤ 256).
template <class F>
decltype(auto) with_tile(int64_t n, F&& f) {
  if (n <= 8) return f.template operator()<TileN8>();
  if (n <= 16) return f.template operator()<TileN16>();
  if (n <= 32) return f.template operator()<TileN32>();
  if (n <= 64) return f.template operator()<TileN64>();
  return f.template operator()<TileN256>();
}

// How the work and the scratch memory are laid out; offsets in floats from the scratch base.
struct Plan {
  int64_t tiles = 0, groups = 0, chunks = 0;
  int64_t per_ckpt = 1, ckpts = 0;  // K chunks between global checkpoints; their number
  int64_t ckpt = 0, local = 0, bc = 0, dA = 0, dD = 0, dbias = 0, total = 0;
  int64_t dB_lti = 0, dC_lti = 0;  // the batch rows' sums of a time-invariant B's / C's gradient (b, e, n)
  bool from_states = false;         // the chunk-start states are p.chunk_states (no forward pass, no checkpoints)
};

struct Scratch {
  float *ckpt, *local, *bc, *dA, *dD, *dbias;
  int64_t groups, chunks, per_ckpt, ckpts;
  float *dB_lti, *dC_lti;
  const float* states;  // p.chunk_states where the plan uses them, else nullptr
};

// Element (bi, t, k) of a sequence tensor.
__device__ __forceinline__ int64_t at_seq(const GradSeq& s, int64_t bi, int64_t t, int64_t k) {
  return bi * s.sb + t * s.sl + k;
}

// How the work and the scratch memory are laid out for `p`.
Plan plan_for(const ScanGradKernelParams& p);

// Queues the main kernel (scan_backward_kernel.cu) for `p` with the scratch `w`.
void launch_main(const ScanGradKernelParams& p, const Scratch& w, cudaStream_t stream);

}  // namespace mambacpp::cuda::scan_bwd
