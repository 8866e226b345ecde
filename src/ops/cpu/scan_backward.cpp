// Backward of the selective scan on the CPU (see ops_backward.h for the mathematics, cpu_backward.h for the
// views).
//
// Like the forward, a block of 16 channels of one batch row lives in vector lanes, its state as n vectors.
// The forward states are not stored by the forward pass; the backward recomputes them:
//   1. a forward sweep over all l tokens keeps the state at the start of every chunk of kChunk tokens;
//   2. chunks are visited last to first: the chunk's states are recomputed from its checkpoint (kChunk + 1
//      states of n vectors), then its tokens are walked in reverse, carrying the state gradient g.
// Memory per thread is O((l / kChunk + kChunk) · n) vectors, never (b, l, e, n).
//
// Determinism. Work items are (batch row, group of channel blocks), the groups a fixed split of the channel
// blocks (kGroups of them, whatever the thread count). dB and dC, sums over channels, are summed per item in
// block order into the item's own partial rows, then the groups' partials are added in group order; dA, dD,
// the Δ-bias gradient and the gradients of a time-invariant B or C (e, n), sums over batch rows, get one
// partial per batch row, added in batch-row order.
#include <algorithm>

#include "core/buffer.h"
#include "ops/cpu/channel_block.h"
#include "ops/cpu/cpu_backward.h"
#include "ops/cpu/kept_buffer.h"
#include "ops/cpu/scratch.h"
#include "ops/cpu/simd.h"
#include "ops/cpu/vec_math.h"

namespace mambacpp::cpu {
namespace {

constexpr int64_t kChunk = 32;  // tokens between state checkpoints
constexpr int64_t kGroups = 8;  // fixed split of the channel blocks
constexpr float kLog2e = 1.4426950408889634f;

struct Block {
  int64_t bi, c0;
  int width;
};

// Per-token terms of one chunk: δ, δ·u, u, and dδ/d(dt) (softplus' or 1).
struct Terms {
  Vec delta, du, u, dsoft;
};

// Per-item scratch and the block's gradient accumulators, all n-vector arrays unless noted.
struct Work {
  Vec *a, *A, *h, *g, *dA;  // A·log2(e), A, running state, state gradient, dA accumulator
  Vec *B, *C, *dB, *dC;     // a time-invariant B and C, and their gradient accumulators (when used)
  Vec *ckpt, *hs;           // chunk-start states ((chunks + 1) · n), one chunk's states ((kChunk + 1) · n)
  Terms* terms;             // kChunk
};

// Partial sums that are reduced after the parallel loop.
struct Partials {
  float* dBC;     // (groups, b, l, 2n): dB in [0, n), dC in [n, 2n)
  float* dA;      // (b, e, n)
  float* dD;      // (b, e)
  float* dbias;   // (b, e)
  float* dB;      // (b, e, n) with a time-invariant B
  float* dC;      // (b, e, n) with a time-invariant C
};

void chunk_terms(const ScanGradParams& p, const Block& k, int64_t t0, int64_t len, Terms* out) {
  const Vec dt_bias = p.dt_bias ? Vec::load_partial(p.dt_bias + k.c0, k.width) : Vec::zero();
  const Vec one = Vec::broadcast(1.0f);
  for (int64_t i = 0; i < len; ++i) {
    const Vec x = Vec::load_partial(p.dt.at(k.bi, t0 + i) + k.c0, k.width) + dt_bias;
    const Vec u = Vec::load_partial(p.u.at(k.bi, t0 + i) + k.c0, k.width);
    Terms& t = out[i];
    t.delta = p.dt_softplus ? softplus(x) : x;
    t.du = t.delta * u;
    t.u = u;
    t.dsoft = p.dt_softplus ? select(greater(x, Vec::broadcast(20.0f)), one, one / (one + exp(Vec::zero() - x)))
                            : one;
  }
}

// h ← exp(δA)·h + δu·B[t] for tokens [t0, t0 + len); when `keep` is given, keep[(i + 1)·n + s] = h after token i.
void advance(const ScanGradParams& p, const Block& k, int64_t t0, int64_t len, const Terms* terms, const Work& w,
             Vec* keep) {
  for (int64_t i = 0; i < len; ++i) {
    const float* Bt = p.B_lti ? nullptr : p.B.at(k.bi, t0 + i);
    for (int64_t s = 0; s < p.n; ++s) {
      const Vec B = Bt ? Vec::broadcast(Bt[s]) : w.B[s];
      w.h[s] = fma(exp2(terms[i].delta * w.a[s]), w.h[s], terms[i].du * B);
      if (keep) keep[(i + 1) * p.n + s] = w.h[s];
    }
  }
}

// Token t = t0 + i, walking backward: consumes g (the gradient of h[t] from later tokens), leaves the gradient
// of h[t-1] in it, writes du, ddt, dz and adds this block's share of dB[t], dC[t] to `bc` (or, for a
// time-invariant B or C, this token's term to w.dB / w.dC).
void token_backward(const ScanGradParams& p, const Block& k, int64_t t, const Terms& tt, const Vec* h_prev,
                    const Vec* h_cur, const Work& w, Vec& dD, Vec& dbias, float* bc) {
  const Vec D = p.D ? Vec::load_partial(p.D + k.c0, k.width) : Vec::zero();
  const float* Bt = p.B_lti ? nullptr : p.B.at(k.bi, t);
  const float* Ct = p.C_lti ? nullptr : p.C.at(k.bi, t);
  const auto coef_C = [&](int64_t s) { return Ct ? Vec::broadcast(Ct[s]) : w.C[s]; };
  Vec dyp = Vec::load_partial(p.dy.at(k.bi, t) + k.c0, k.width);
  if (p.z.p) {
    Vec y = D * tt.u;
    for (int64_t s = 0; s < p.n; ++s) y = fma(h_cur[s], coef_C(s), y);
    const Vec z = Vec::load_partial(p.z.at(k.bi, t) + k.c0, k.width), one = Vec::broadcast(1.0f);
    const Vec sig = one / (one + exp(Vec::zero() - z));
    (dyp * y * sig * fma(z, one - sig, one)).store_partial(p.dz.at(k.bi, t) + k.c0, k.width);
    dyp = dyp * z * sig;
  }
  dD = fma(dyp, tt.u, dD);
  Vec du = dyp * D, ddelta = Vec::zero();
  for (int64_t s = 0; s < p.n; ++s) {
    const Vec B = Bt ? Vec::broadcast(Bt[s]) : w.B[s];
    const Vec g = fma(dyp, coef_C(s), w.g[s]);
    if (Ct)
      bc[p.n + s] += reduce_add(dyp * h_cur[s]);
    else
      w.dC[s] = fma(dyp, h_cur[s], w.dC[s]);
    if (Bt)
      bc[s] += reduce_add(g * tt.du);
    else
      w.dB[s] = fma(g, tt.du, w.dB[s]);
    du = fma(g, tt.delta * B, du);
    const Vec decay = exp2(tt.delta * w.a[s]);
    const Vec dh_prev = decay * h_prev[s];
    ddelta = fma(g, fma(w.A[s], dh_prev, B * tt.u), ddelta);
    w.dA[s] = fma(g, tt.delta * dh_prev, w.dA[s]);
    w.g[s] = decay * g;
  }
  const Vec ddt = ddelta * tt.dsoft;
  dbias = dbias + ddt;
  du.store_partial(p.du.at(k.bi, t) + k.c0, k.width);
  ddt.store_partial(p.ddt.at(k.bi, t) + k.c0, k.width);
}

void block_backward(const ScanGradParams& p, const Block& k, const Work& w, float* bc_rows, const Partials& part) {
  const int64_t n = p.n, chunks = (p.l + kChunk - 1) / kChunk;
  gather_channels(w.A, p.A + k.c0 * n, n, k.width);
  for (int64_t s = 0; s < n; ++s) w.a[s] = w.A[s] * Vec::broadcast(kLog2e);
  if (p.B_lti) gather_channels(w.B, p.B_lti + k.c0 * n, n, k.width);
  if (p.C_lti) gather_channels(w.C, p.C_lti + k.c0 * n, n, k.width);
  std::fill(w.dB, w.dB + n, Vec::zero());
  std::fill(w.dC, w.dC + n, Vec::zero());
  if (p.state_in)
    gather_channels(w.h, p.state_in + (k.bi * p.e + k.c0) * n, n, k.width);
  else
    std::fill(w.h, w.h + n, Vec::zero());
  for (int64_t ci = 0; ci < chunks; ++ci) {
    std::copy(w.h, w.h + n, w.ckpt + ci * n);
    const int64_t len = std::min(kChunk, p.l - ci * kChunk);
    chunk_terms(p, k, ci * kChunk, len, w.terms);
    advance(p, k, ci * kChunk, len, w.terms, w, nullptr);
  }
  if (p.dstate_out)
    gather_channels(w.g, p.dstate_out + (k.bi * p.e + k.c0) * n, n, k.width);
  else
    std::fill(w.g, w.g + n, Vec::zero());
  std::fill(w.dA, w.dA + n, Vec::zero());
  Vec dD = Vec::zero(), dbias = Vec::zero();
  for (int64_t ci = chunks - 1; ci >= 0; --ci) {
    const int64_t t0 = ci * kChunk, len = std::min(kChunk, p.l - t0);
    chunk_terms(p, k, t0, len, w.terms);
    std::copy(w.ckpt + ci * n, w.ckpt + (ci + 1) * n, w.h);
    std::copy(w.h, w.h + n, w.hs);
    advance(p, k, t0, len, w.terms, w, w.hs);
    for (int64_t i = len - 1; i >= 0; --i)
      token_backward(p, k, t0 + i, w.terms[i], w.hs + i * n, w.hs + (i + 1) * n, w, dD, dbias,
                     bc_rows + (t0 + i) * 2 * n);
  }
  if (p.dstate_in) scatter_channels(p.dstate_in + (k.bi * p.e + k.c0) * n, w.g, n, k.width);
  scatter_channels(part.dA + (k.bi * p.e + k.c0) * n, w.dA, n, k.width);
  if (p.B_lti) scatter_channels(part.dB + (k.bi * p.e + k.c0) * n, w.dB, n, k.width);
  if (p.C_lti) scatter_channels(part.dC + (k.bi * p.e + k.c0) * n, w.dC, n, k.width);
  dD.store_partial(part.dD + k.bi * p.e + k.c0, k.width);
  dbias.store_partial(part.dbias + k.bi * p.e + k.c0, k.width);
}

Work carve_scratch(const ScanGradParams& p) {
  const int64_t n = p.n, chunks = (p.l + kChunk - 1) / kChunk;
  const int64_t vecs = 9 * n + (chunks + 1) * n + (kChunk + 1) * n + 4 * kChunk;
  Vec* v = reinterpret_cast<Vec*>(thread_scratch(size_t(vecs) * kLanes));
  Work w;
  w.a = v, w.A = v + n, w.h = v + 2 * n, w.g = v + 3 * n, w.dA = v + 4 * n;
  w.B = v + 5 * n, w.C = v + 6 * n, w.dB = v + 7 * n, w.dC = v + 8 * n;
  w.ckpt = v + 9 * n;
  w.hs = w.ckpt + (chunks + 1) * n;
  w.terms = reinterpret_cast<Terms*>(w.hs + (kChunk + 1) * n);
  return w;
}

// Adds the partials in their fixed order: dB, dC over the groups (time-invariant ones over the batch rows),
// dA, dD, dΔbias over the batch rows.
void reduce_partials(const ScanGradParams& p, const Partials& part, int64_t groups, int threads) {
  const int64_t n = p.n, rows = p.b * p.l;
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t bi = r / p.l, t = r % p.l;
    for (int64_t half = 0; half < 2; ++half) {
      const SeqF32& grad = half == 0 ? p.dB : p.dC;
      if (!grad.p) continue;
      float* dst = grad.at(bi, t);
      for (int64_t s = 0; s < n; ++s) dst[s] = 0.0f;
      for (int64_t g = 0; g < groups; ++g) {
        const float* src = part.dBC + (g * rows + r) * 2 * n + half * n;
        for (int64_t s = 0; s < n; ++s) dst[s] += src[s];
      }
    }
  }
  for (int64_t bi = 0; bi < p.b; ++bi) {
    if (p.dA)
      for (int64_t i = 0; i < p.e * n; ++i) p.dA[i] += part.dA[bi * p.e * n + i];
    if (p.dB_lti)
      for (int64_t i = 0; i < p.e * n; ++i) p.dB_lti[i] += part.dB[bi * p.e * n + i];
    if (p.dC_lti)
      for (int64_t i = 0; i < p.e * n; ++i) p.dC_lti[i] += part.dC[bi * p.e * n + i];
    for (int64_t c = 0; c < p.e; ++c) {
      if (p.dD) p.dD[c] += part.dD[bi * p.e + c];
      if (p.ddt_bias) p.ddt_bias[c] += part.dbias[bi * p.e + c];
    }
  }
}

}  // namespace

void selective_scan_backward(const ScanGradParams& p, int threads) {
  const int64_t blocks = (p.e + kLanes - 1) / kLanes, groups = std::max<int64_t>(1, std::min(kGroups, blocks));
  const int64_t rows = p.b * p.l;
  thread_local Buffer bc_mem, per_row_mem;  // kept between calls (kept_buffer.h)
  float* bc = grown(bc_mem, size_t(groups * rows * 2 * p.n));
  const int64_t lti_parts = (p.B_lti ? 1 : 0) + (p.C_lti ? 1 : 0);
  float* per_row = grown(per_row_mem, size_t(p.b * p.e * ((1 + lti_parts) * p.n + 2)));
  std::fill_n(bc, groups * rows * 2 * p.n, 0.0f);
  float* lti = per_row + p.b * p.e * (p.n + 2);
  const Partials part{bc, per_row, per_row + p.b * p.e * p.n, per_row + p.b * p.e * (p.n + 1), lti,
                      lti + (p.B_lti ? p.b * p.e * p.n : 0)};
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t it = 0; it < p.b * groups; ++it) {
    const int64_t bi = it / groups, g = it % groups;
    const Work w = carve_scratch(p);
    float* bc_rows = part.dBC + (g * rows + bi * p.l) * 2 * p.n;
    for (int64_t blk = g * blocks / groups; blk < (g + 1) * blocks / groups; ++blk) {
      const int64_t c0 = blk * kLanes;
      block_backward(p, Block{bi, c0, int(std::min<int64_t>(kLanes, p.e - c0))}, w, bc_rows, part);
    }
  }
  reduce_partials(p, part, groups, threads);
}

}  // namespace mambacpp::cpu
