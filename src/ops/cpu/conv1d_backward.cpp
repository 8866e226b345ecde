// Backward of the causal depthwise conv1d on the CPU (see ops_backward.h and cpu_backward.h).
//
// Work items are blocks of 16 channels, each holding its channels in vector lanes; an item walks the batch
// rows in order, so the weight and bias gradients (sums over batch rows and tokens) are summed in a fixed
// order. Per batch row, a forward pass over the tokens recomputes the pre-activation, forms dpre, accumulates
// dw and dbias and parks dpre in dx; a second pass turns dpre into dx in place (dx[t] needs dpre[t .. t+k-1],
// which are still unread when dx[t] is written) and into dstate_in.
#include <algorithm>

#include "ops/cpu/channel_block.h"
#include "ops/cpu/cpu_backward.h"
#include "ops/cpu/simd.h"
#include "ops/cpu/vec_math.h"

namespace mambacpp::cpu {
namespace {

// silu'(p) = σ(p)·(1 + p·(1 − σ(p))).
inline Vec silu_grad(Vec p) {
  const Vec one = Vec::broadcast(1.0f);
  const Vec sig = one / (one + exp(Vec::zero() - p));
  return sig * fma(p, one - sig, one);
}

struct Acc {
  Vec dw[kMaxConvWidth];
  Vec dbias;
};

// Pass 1 for batch row bi: dx[t] = dpre[t]; acc += dpre · inputs.
void dpre_pass(const ConvGradParams& p, int64_t bi, int64_t c0, int width, const Vec* w, Acc& acc) {
  const int64_t hk = p.k - 1;
  Vec window[kMaxConvWidth];
  if (p.state_in)
    gather_channels(window, p.state_in + (bi * p.e + c0) * hk, hk, width);
  else
    std::fill(window, window + hk, Vec::zero());
  const Vec bias = p.bias ? Vec::load_partial(p.bias + c0, width) : Vec::zero();
  for (int64_t t = 0; t < p.l; ++t) {
    const Vec xt = Vec::load_partial(p.x.at(bi, t) + c0, width);
    Vec pre = bias;
    for (int64_t j = 0; j < hk; ++j) pre = fma(w[j], window[j], pre);
    pre = fma(w[hk], xt, pre);
    Vec dpre = Vec::load_partial(p.dout.at(bi, t) + c0, width);
    if (p.silu) dpre = dpre * silu_grad(pre);
    for (int64_t j = 0; j < hk; ++j) acc.dw[j] = fma(dpre, window[j], acc.dw[j]);
    acc.dw[hk] = fma(dpre, xt, acc.dw[hk]);
    acc.dbias = acc.dbias + dpre;
    for (int64_t j = 0; j + 1 < hk; ++j) window[j] = window[j + 1];
    if (hk > 0) window[hk - 1] = xt;
    dpre.store_partial(p.dx.at(bi, t) + c0, width);
  }
}

// Pass 2 for batch row bi: dxx[q] = Σ_j w[j]·dpre[q − j] over q = 0 .. k-2+l; the first k-1 go to dstate_in,
// the rest overwrite dx in place.
void dx_pass(const ConvGradParams& p, int64_t bi, int64_t c0, int width, const Vec* w) {
  const int64_t hk = p.k - 1;
  Vec dstate[kMaxConvWidth];
  for (int64_t q = 0; q < hk + p.l; ++q) {
    Vec acc = Vec::zero();
    for (int64_t j = 0; j < p.k; ++j) {
      const int64_t t = q - j;
      if (t >= 0 && t < p.l) acc = fma(w[j], Vec::load_partial(p.dx.at(bi, t) + c0, width), acc);
    }
    if (q < hk)
      dstate[q] = acc;
    else
      acc.store_partial(p.dx.at(bi, q - hk) + c0, width);
  }
  if (p.dstate_in) scatter_channels(p.dstate_in + (bi * p.e + c0) * hk, dstate, hk, width);
}

void conv_block_backward(const ConvGradParams& p, int64_t c0, int width) {
  Vec w[kMaxConvWidth];
  gather_channels(w, p.w + c0 * p.k, p.k, width);
  Acc acc;
  std::fill(acc.dw, acc.dw + p.k, Vec::zero());
  acc.dbias = Vec::zero();
  for (int64_t bi = 0; bi < p.b; ++bi) {
    dpre_pass(p, bi, c0, width, w, acc);
    dx_pass(p, bi, c0, width, w);
  }
  if (p.dw) {
    Vec old[kMaxConvWidth];
    gather_channels(old, p.dw + c0 * p.k, p.k, width);
    for (int64_t j = 0; j < p.k; ++j) old[j] = old[j] + acc.dw[j];
    scatter_channels(p.dw + c0 * p.k, old, p.k, width);
  }
  if (p.dbias) (Vec::load_partial(p.dbias + c0, width) + acc.dbias).store_partial(p.dbias + c0, width);
}

}  // namespace

void conv1d_causal_backward(const ConvGradParams& p, int threads) {
  const int64_t blocks = (p.e + kLanes - 1) / kLanes;
  const bool parallel = p.b * p.l * p.e >= (int64_t(1) << 10);
#pragma omp parallel for num_threads(threads) schedule(static) if (parallel)
  for (int64_t blk = 0; blk < blocks; ++blk) {
    const int64_t c0 = blk * kLanes;
    conv_block_backward(p, c0, int(std::min<int64_t>(kLanes, p.e - c0)));
  }
}

}  // namespace mambacpp::cpu
