// The host side of the selective-scan backward (interface: scan_backward_kernel.h): the work plan and scratch
// layout, the supported shapes, and the launch of the main kernel (scan_backward_kernel.cu) followed by the
// reductions that add its per-group and per-batch-row partial sums, in a fixed order, into dB, dC, dA, dD, the
// Δ-bias gradient and a time-invariant B's or C's gradient.
#include <algorithm>
#include <string>

#include "core/cuda/check.h"
#include "ops/cuda/scan_backward_plan.h"

namespace mambacpp::cuda {
namespace scan_bwd {
namespace {

// Default budgets, in floats, of the state checkpoints and of the dB/dC partial sums: the larger of a fixed
// floor and the size of one (b, l, e) tensor (at n ≤ 16 that keeps K = 1 and one tile per block at every length,
// the scratch then being twice the size of du). Beyond them K grows and the number of groups shrinks.
constexpr int64_t kBudgetFloor = int64_t(1) << 25;

int64_t round_up(int64_t x, int64_t to) { return (x + to - 1) / to * to; }

template <class Tl>
Plan plan_tile(const ScanGradKernelParams& p) {
  Plan q;
  q.tiles = (p.e + Tl::CB - 1) / Tl::CB;
  q.chunks = (p.l + Tl::T - 1) / Tl::T;
  const int64_t default_budget = std::max(kBudgetFloor, p.b * round_up(p.l, 16) * p.e);
  const int64_t ckpt_budget = p.checkpoint_budget > 0 ? p.checkpoint_budget : default_budget;
  const int64_t partial_budget = p.partial_budget > 0 ? p.partial_budget : default_budget;
  const int64_t state_floats = p.b * p.e * Tl::NPAD;  // one checkpoint of every state
  q.from_states = p.chunk_states != nullptr && Tl::FROM_STATES;
  q.per_ckpt = q.from_states ? 1 : std::max<int64_t>(1, (q.chunks * state_floats + ckpt_budget - 1) / ckpt_budget);
  q.ckpts = (q.chunks + q.per_ckpt - 1) / q.per_ckpt;
  const int64_t group_floats = std::max<int64_t>(1, p.b * p.l * 2 * Tl::NPAD);
  q.groups = std::clamp<int64_t>(partial_budget / group_floats, 1, std::max<int64_t>(1, q.tiles));
  const int64_t blocks = p.b * q.groups;
  int64_t at = 0;
  const auto take = [&at](int64_t floats) {
    const int64_t off = at;
    at += round_up(floats, 64);
    return off;
  };
  const bool lti_both = p.B_lti != nullptr && p.C_lti != nullptr;  // then no per-token partial sums
  q.ckpt = take(q.from_states ? 0 : q.ckpts * state_floats);
  q.local = take(q.per_ckpt > 1 ? blocks * q.per_ckpt * Tl::NT * Tl::P : 0);
  q.bc = take(lti_both ? 0 : q.groups * group_floats);
  q.dA = take(p.b * p.e * p.n);
  q.dD = take(p.b * p.e);
  q.dbias = take(p.b * p.e);
  q.dB_lti = take(p.B_lti != nullptr ? p.b * p.e * p.n : 0);
  q.dC_lti = take(p.C_lti != nullptr ? p.b * p.e * p.n : 0);
  q.total = at;
  return q;
}

}  // namespace

Plan plan_for(const ScanGradKernelParams& p) {
  return with_tile(p.n, [&]<class Tl>() { return plan_tile<Tl>(p); });
}

}  // namespace scan_bwd

namespace {

using namespace scan_bwd;

// dB[bi, t, s] and dC[bi, t, s] = the groups' partial sums, added in group order; only those of them that are
// per token (B_OUT, C_OUT).
template <bool B_OUT, bool C_OUT>
__global__ void reduce_bc_kernel(const ScanGradKernelParams p, const float* bc, int64_t groups, int npad) {
  const int64_t rows = p.b * p.l, count = rows * p.n;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < count; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t row = i / p.n, s = i % p.n;
    float dB = 0.0f, dC = 0.0f;
    for (int64_t grp = 0; grp < groups; ++grp) {
      const float* src = bc + (grp * rows + row) * 2 * npad;
      dB += src[s], dC += src[npad + s];
    }
    const int64_t bi = row / p.l, t = row % p.l;
    if (B_OUT) p.dB.p[at_seq(p.dB, bi, t, s)] = dB;
    if (C_OUT) p.dC.p[at_seq(p.dC, bi, t, s)] = dC;
  }
}

// dB_lti and dC_lti (e, n) += the batch rows' sums of a time-invariant B's and C's gradient, in batch-row order.
__global__ void reduce_lti_kernel(const ScanGradKernelParams p, const float* dB, const float* dC) {
  const int64_t en = p.e * p.n;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < en; i += int64_t(gridDim.x) * blockDim.x) {
    if (p.dB_lti != nullptr) {
      float acc = p.dB_lti[i];
      for (int64_t bi = 0; bi < p.b; ++bi) acc += dB[bi * en + i];
      p.dB_lti[i] = acc;
    }
    if (p.dC_lti != nullptr) {
      float acc = p.dC_lti[i];
      for (int64_t bi = 0; bi < p.b; ++bi) acc += dC[bi * en + i];
      p.dC_lti[i] = acc;
    }
  }
}

// dA, dD and the Δ-bias gradient += the batch rows' partial sums, added in batch-row order.
__global__ void reduce_param_kernel(const ScanGradKernelParams p, const float* dA, const float* dD,
                                    const float* dbias) {
  const int64_t en = p.e * p.n, count = en + p.e;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < count; i += int64_t(gridDim.x) * blockDim.x) {
    if (i < en) {
      if (p.dA == nullptr) continue;
      float acc = p.dA[i];
      for (int64_t bi = 0; bi < p.b; ++bi) acc += dA[bi * en + i];
      p.dA[i] = acc;
    } else {
      const int64_t c = i - en;
      if (p.dD != nullptr) {
        float acc = p.dD[c];
        for (int64_t bi = 0; bi < p.b; ++bi) acc += dD[bi * p.e + c];
        p.dD[c] = acc;
      }
      if (p.ddt_bias != nullptr) {
        float acc = p.ddt_bias[c];
        for (int64_t bi = 0; bi < p.b; ++bi) acc += dbias[bi * p.e + c];
        p.ddt_bias[c] = acc;
      }
    }
  }
}

unsigned grid_for(int64_t count, int threads) {
  return unsigned(std::clamp<int64_t>((count + threads - 1) / threads, 1, 65536));
}

bool refuse(std::string* why, const std::string& msg) {
  if (why != nullptr) *why = msg;
  return false;
}

}  // namespace

bool scan_backward_kernel_supports(const ScanGradKernelParams& p, std::string* why) {
  if (p.n < 1 || p.n > kScanBackwardMaxState)
    return refuse(why, "state size n = " + std::to_string(p.n) + " is outside the supported range 1.." +
                           std::to_string(kScanBackwardMaxState));
  if (p.b < 0 || p.l < 0 || p.e < 0) return refuse(why, "negative size");
  const Plan q = plan_for(p);
  if (p.b * q.groups > int64_t(INT32_MAX))
    return refuse(why, "b = " + std::to_string(p.b) + " batch rows is more than one launch covers");
  return true;
}

size_t scan_backward_scratch_bytes(const ScanGradKernelParams& p) {
  return size_t(plan_for(p).total) * sizeof(float);
}

void scan_backward_kernel_launch(const ScanGradKernelParams& p, void* scratch, cudaStream_t stream) {
  if (p.b == 0 || p.e == 0) return;
  const Plan q = plan_for(p);
  float* base = static_cast<float*>(scratch);
  const Scratch w{base + q.ckpt,  base + q.local,  base + q.bc,       base + q.dA,
                  base + q.dD,    base + q.dbias,  q.groups,          q.chunks,
                  q.per_ckpt,     q.ckpts,         base + q.dB_lti,   base + q.dC_lti,
                  q.from_states ? p.chunk_states : nullptr};
  launch_main(p, w, stream);
  const int npad = with_tile(p.n, [&]<class Tl>() { return Tl::NPAD; });
  const bool B_seq = p.B_lti == nullptr, C_seq = p.C_lti == nullptr;
  if (p.l > 0 && (B_seq || C_seq)) {
    const unsigned grid = grid_for(p.b * p.l * p.n, 256);
    if (B_seq && C_seq)
      reduce_bc_kernel<true, true><<<grid, 256, 0, stream>>>(p, w.bc, q.groups, npad);
    else if (B_seq)
      reduce_bc_kernel<true, false><<<grid, 256, 0, stream>>>(p, w.bc, q.groups, npad);
    else
      reduce_bc_kernel<false, true><<<grid, 256, 0, stream>>>(p, w.bc, q.groups, npad);
    CUDA_CHECK_LAUNCH("selective_scan_backward (dB, dC)", stream);
  }
  if (!B_seq || !C_seq) {
    reduce_lti_kernel<<<grid_for(p.e * p.n, 256), 256, 0, stream>>>(p, w.dB_lti, w.dC_lti);
    CUDA_CHECK_LAUNCH("selective_scan_backward (time-invariant dB, dC)", stream);
  }
  reduce_param_kernel<<<grid_for(p.e * (p.n + 1), 256), 256, 0, stream>>>(p, w.dA, w.dD, w.dbias);
  CUDA_CHECK_LAUNCH("selective_scan_backward (dA, dD, dt_bias)", stream);
}

}  // namespace mambacpp::cuda
