// Selective scan on the CPU (see ops.h for the mathematics and cpu_ops.h for the views).
//
// The work is split into independent (batch row, block of 16 channels) items, spread over the threads. An
// item walks its l tokens in order, holding its 16 × n slice of the state as n vectors: one lane per channel,
// so u, δ, z and y are plain vector loads and stores along the contiguous channels of the token-major layout,
// B[t, s] and C[t, s] are broadcasts, and the sum over s needs no horizontal reduction. Channel tails use
// partial loads and stores. Memory beyond the inputs and outputs is one 16 × n state and one 16 × n copy of A
// per thread, whatever l is.
#include <omp.h>

#include <algorithm>

#include "ops/cpu/channel_block.h"
#include "ops/cpu/cpu_ops.h"
#include "ops/cpu/scratch.h"
#include "ops/cpu/simd.h"
#include "ops/cpu/vec_math.h"

namespace mambacpp::cpu {
namespace {

// A block of up to 16 channels [c0, c0 + width) of one batch row.
struct Block {
  int64_t bi, c0;
  int width;
};

// The discretisation step δ = softplus(dt + dt_bias) (or without softplus) for one token of a block.
inline Vec delta_at(const ScanParams& p, const Block& k, int64_t t, Vec dt_bias) {
  const Vec dt = Vec::load_partial(p.dt.at(k.bi, t) + k.c0, k.width) + dt_bias;
  return p.dt_softplus ? softplus(dt) : dt;
}

// Runs one block through all tokens. NS > 0 fixes the state size at compile time (the state then lives in
// registers); NS == 0 takes it from p.n. h and a hold the state and A as n vectors each.
template <int NS>
void scan_block(const ScanParams& p, const Block& k, Vec* h, const Vec* a) {
  const int64_t n = NS > 0 ? NS : p.n;
  const Vec dt_bias = p.dt_bias ? Vec::load_partial(p.dt_bias + k.c0, k.width) : Vec::zero();
  const Vec D = p.D ? Vec::load_partial(p.D + k.c0, k.width) : Vec::zero();
  Vec hr[NS > 0 ? NS : 1];
  if constexpr (NS > 0)
    for (int s = 0; s < NS; ++s) hr[s] = h[s];
  for (int64_t t = 0; t < p.l; ++t) {
    const Vec delta = delta_at(p, k, t, dt_bias);
    const Vec u = Vec::load_partial(p.u.at(k.bi, t) + k.c0, k.width);
    const Vec du = delta * u;
    const float* Bt = p.B.at(k.bi, t);
    const float* Ct = p.C.at(k.bi, t);
    Vec y = D * u;
    if constexpr (NS > 0) {
      for (int s = 0; s < NS; ++s) {
        hr[s] = fma(exp(delta * a[s]), hr[s], du * Vec::broadcast(Bt[s]));
        y = fma(hr[s], Vec::broadcast(Ct[s]), y);
      }
    } else {
      for (int64_t s = 0; s < n; ++s) {
        h[s] = fma(exp(delta * a[s]), h[s], du * Vec::broadcast(Bt[s]));
        y = fma(h[s], Vec::broadcast(Ct[s]), y);
      }
    }
    if (p.z.p) y = y * silu(Vec::load_partial(p.z.at(k.bi, t) + k.c0, k.width));
    y.store_partial(p.y.at(k.bi, t) + k.c0, k.width);
  }
  if constexpr (NS > 0)
    for (int s = 0; s < NS; ++s) h[s] = hr[s];
}

void run_block(const ScanParams& p, const Block& k) {
  auto* h = reinterpret_cast<Vec*>(thread_scratch(0, size_t(p.n) * kLanes));
  auto* a = reinterpret_cast<Vec*>(thread_scratch(1, size_t(p.n) * kLanes));
  gather_channels(a, p.A + k.c0 * p.n, p.n, k.width);
  if (p.state_in)
    gather_channels(h, p.state_in + (k.bi * p.e + k.c0) * p.n, p.n, k.width);
  else
    std::fill(h, h + p.n, Vec::zero());
  if (p.n == 16)
    scan_block<16>(p, k, h, a);
  else
    scan_block<0>(p, k, h, a);
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
