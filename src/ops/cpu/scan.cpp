// Selective scan on the CPU (see ops.h for the mathematics and cpu_ops.h for the views).
//
// The work is split into independent (batch row, block of 16 channels) items, spread over the threads. An
// item walks its l tokens in order, holding its 16 × n slice of the state as n vectors: one lane per channel,
// so u, δ, z and y are plain vector loads and stores along the contiguous channels of the token-major layout,
// B[t, s] and C[t, s] are broadcasts, and the sum over s needs no horizontal reduction. Channel tails use
// partial loads and stores. A time-invariant B or C (e, n) is gathered into n vectors like A, one value per
// lane. Memory beyond the inputs and outputs is, per thread, one 16 × n state, 16 × n copies of A (and of a
// time-invariant B, C) and the per-token terms of kPass tokens, whatever l is.
#include <algorithm>

#include "ops/cpu/channel_block.h"
#include "ops/cpu/cpu_ops.h"
#include "ops/cpu/scratch.h"
#include "ops/cpu/simd.h"
#include "ops/cpu/vec_math.h"
#include "ops/ops.h"

namespace mambacpp::cpu {
namespace {

// A block of up to 16 channels [c0, c0 + width) of one batch row.
struct Block {
  int64_t bi, c0;
  int width;
};

// Tokens per pass: the per-token terms of a pass are computed first, all tokens at once (independent work,
// so the latencies of exp, log and division overlap), then the recurrence runs over them.
constexpr int64_t kPass = 64;

// What one token contributes besides the state: δ, δ·u, D·u and the gate silu(z).
struct TokenTerms {
  Vec delta, du, skip, gate;
};

void token_terms(const ScanParams& p, const Block& k, int64_t t0, int64_t len, TokenTerms* out) {
  const Vec dt_bias = p.dt_bias ? Vec::load_partial(p.dt_bias + k.c0, k.width) : Vec::zero();
  const Vec D = p.D ? Vec::load_partial(p.D + k.c0, k.width) : Vec::zero();
  for (int64_t i = 0; i < len; ++i) {
    const int64_t t = t0 + i;
    const Vec dt = Vec::load_partial(p.dt.at(k.bi, t) + k.c0, k.width) + dt_bias;
    const Vec delta = p.dt_softplus ? softplus(dt) : dt;
    const Vec u = Vec::load_partial(p.u.at(k.bi, t) + k.c0, k.width);
    out[i].delta = delta;
    out[i].du = delta * u;
    out[i].skip = D * u;
    if (p.z.p) out[i].gate = silu(Vec::load_partial(p.z.at(k.bi, t) + k.c0, k.width));
  }
}

// One step of the recurrence for state element s: h ← 2^(δ·a)·h + δu·B[s]; y += h·C[s].
inline void update(Vec& h, Vec& y, Vec a, const TokenTerms& tt, Vec B, Vec C) {
  h = fma(exp2(tt.delta * a), h, tt.du * B);
  y = fma(h, C, y);
}

// The block's per-channel vectors: A·log2(e), so that exp(δ·A) = 2^(δ·a), and a time-invariant B and C.
struct BlockVecs {
  const Vec *a, *B, *C;
};

// B[s] (or C[s]) of token row `row`: a broadcast of the token's value, or the block's time-invariant vector.
template <bool LTI>
inline Vec coef(const float* row, const Vec* lti, int64_t s) {
  if constexpr (LTI)
    return lti[s];
  else
    return Vec::broadcast(row[s]);
}

// Runs tokens [t0, t0 + len) of one block. NS > 0 fixes the state size at compile time (the loop over s
// unrolls and the state lives in registers); NS == 0 takes it from p.n. h holds the state as n vectors.
// LB / LC: B / C is time-invariant.
template <int NS, bool LB, bool LC>
void scan_pass(const ScanParams& p, const Block& k, int64_t t0, int64_t len, const TokenTerms* terms, Vec* h,
               const BlockVecs& v) {
  Vec hr[NS > 0 ? NS : 1];
  if constexpr (NS > 0)
    for (int s = 0; s < NS; ++s) hr[s] = h[s];
  for (int64_t i = 0; i < len; ++i) {
    if (p.chunk_states != nullptr && (t0 + i) % kScanStateInterval == 0) {
      // The state before this step, for the backward pass: (bi, k, s, c), the block's channels contiguous.
      float* dst = p.chunk_states + ((k.bi * scan_state_count(p.l) + (t0 + i) / kScanStateInterval) * p.n) * p.e + k.c0;
      for (int64_t s = 0; s < p.n; ++s) {
        if constexpr (NS > 0)
          hr[s].store_partial(dst + s * p.e, k.width);
        else
          h[s].store_partial(dst + s * p.e, k.width);
      }
    }
    const TokenTerms& tt = terms[i];
    const float* Bt = LB ? nullptr : p.B.at(k.bi, t0 + i);
    const float* Ct = LC ? nullptr : p.C.at(k.bi, t0 + i);
    Vec y = tt.skip;
    if constexpr (NS > 0) {
#pragma GCC unroll 32
      for (int s = 0; s < NS; ++s) update(hr[s], y, v.a[s], tt, coef<LB>(Bt, v.B, s), coef<LC>(Ct, v.C, s));
    } else {
      for (int64_t s = 0; s < p.n; ++s) update(h[s], y, v.a[s], tt, coef<LB>(Bt, v.B, s), coef<LC>(Ct, v.C, s));
    }
    if (p.z.p) y = y * tt.gate;
    y.store_partial(p.y.at(k.bi, t0 + i) + k.c0, k.width);
  }
  if constexpr (NS > 0)
    for (int s = 0; s < NS; ++s) h[s] = hr[s];
}

template <int NS>
void scan_pass_any(const ScanParams& p, const Block& k, int64_t t0, int64_t len, const TokenTerms* terms, Vec* h,
                   const BlockVecs& v) {
  if (!p.B_lti && !p.C_lti)
    scan_pass<NS, false, false>(p, k, t0, len, terms, h, v);
  else if (!p.C_lti)
    scan_pass<NS, true, false>(p, k, t0, len, terms, h, v);
  else if (!p.B_lti)
    scan_pass<NS, false, true>(p, k, t0, len, terms, h, v);
  else
    scan_pass<NS, true, true>(p, k, t0, len, terms, h, v);
}

void run_block(const ScanParams& p, const Block& k) {
  // Scratch: the state, A·log2(e), time-invariant B and C (n vectors each), the token terms of one pass.
  auto* h = reinterpret_cast<Vec*>(thread_scratch(size_t(4 * p.n + 4 * kPass) * kLanes));
  Vec* a = h + p.n;
  Vec* B = a + p.n;
  Vec* C = B + p.n;
  auto* terms = reinterpret_cast<TokenTerms*>(C + p.n);
  gather_channels(a, p.A + k.c0 * p.n, p.n, k.width);
  for (int64_t s = 0; s < p.n; ++s) a[s] = a[s] * Vec::broadcast(1.4426950408889634f);
  if (p.B_lti) gather_channels(B, p.B_lti + k.c0 * p.n, p.n, k.width);
  if (p.C_lti) gather_channels(C, p.C_lti + k.c0 * p.n, p.n, k.width);
  const BlockVecs v{a, B, C};
  if (p.state_in)
    gather_channels(h, p.state_in + (k.bi * p.e + k.c0) * p.n, p.n, k.width);
  else
    std::fill(h, h + p.n, Vec::zero());
  for (int64_t t0 = 0; t0 < p.l; t0 += kPass) {
    const int64_t len = std::min(kPass, p.l - t0);
    token_terms(p, k, t0, len, terms);
    if (p.n == 16)
      scan_pass_any<16>(p, k, t0, len, terms, h, v);
    else
      scan_pass_any<0>(p, k, t0, len, terms, h, v);
  }
  if (p.state_out) scatter_channels(p.state_out + (k.bi * p.e + k.c0) * p.n, h, p.n, k.width);
}

}  // namespace

void selective_scan(const ScanParams& p, int threads) {
  const int64_t blocks = (p.e + kLanes - 1) / kLanes;
  const int64_t items = p.b * blocks;
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t it = 0; it < items; ++it) {
    const int64_t c0 = (it % blocks) * kLanes;
    const Block k{it / blocks, c0, int(std::min<int64_t>(kLanes, p.e - c0))};
    run_block(p, k);
  }
}

}  // namespace mambacpp::cpu
