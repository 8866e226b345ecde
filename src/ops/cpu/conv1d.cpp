// Causal depthwise conv1d on the CPU (see ops.h for the mathematics and cpu_ops.h for the views).
//
// Independent (batch row, block of 16 channels) items are spread over the threads. An item keeps the last k-1
// inputs of its channels as k-1 vectors (seeded from state_in), walks its tokens in order, and finally writes
// that window to state_out, so a sequence processed in chunks or one token at a time gives the same result as
// one call. Each output reads x[t] before out[t] is written, and only later rows of x afterwards.
#include <algorithm>

#include "ops/cpu/channel_block.h"
#include "ops/cpu/cpu_ops.h"
#include "ops/cpu/simd.h"
#include "ops/cpu/vec_math.h"

namespace mambacpp::cpu {
namespace {

void conv_block(const ConvParams& p, int64_t bi, int64_t c0, int width) {
  const int64_t k = p.k, hk = p.k - 1;
  Vec w[kMaxConvWidth];
  gather_channels(w, p.w + c0 * k, k, width);
  Vec window[kMaxConvWidth];  // window[j] = the input j + 1 steps before the newest, oldest first
  if (p.state_in)
    gather_channels(window, p.state_in + (bi * p.e + c0) * hk, hk, width);
  else
    std::fill(window, window + hk, Vec::zero());
  const Vec bias = p.bias ? Vec::load_partial(p.bias + c0, width) : Vec::zero();
  for (int64_t t = 0; t < p.l; ++t) {
    const Vec xt = Vec::load_partial(p.x.at(bi, t) + c0, width);
    Vec acc = bias;
    for (int64_t j = 0; j < hk; ++j) acc = fma(w[j], window[j], acc);
    acc = fma(w[hk], xt, acc);
    if (p.silu) acc = silu(acc);
    for (int64_t j = 0; j + 1 < hk; ++j) window[j] = window[j + 1];
    if (hk > 0) window[hk - 1] = xt;
    acc.store_partial(p.out.at(bi, t) + c0, width);
  }
  if (p.state_out) scatter_channels(p.state_out + (bi * p.e + c0) * hk, window, hk, width);
}

}  // namespace

void conv1d_causal(const ConvParams& p, int threads) {
  const int64_t blocks = (p.e + kLanes - 1) / kLanes;
  const int64_t items = p.b * blocks;
  const bool parallel = p.b * p.l * p.e >= (int64_t(1) << 10);
#pragma omp parallel for num_threads(threads) schedule(static) if (parallel)
  for (int64_t it = 0; it < items; ++it) {
    const int64_t c0 = (it % blocks) * kLanes;
    conv_block(p, it / blocks, c0, int(std::min<int64_t>(kLanes, p.e - c0)));
  }
}

}  // namespace mambacpp::cpu
