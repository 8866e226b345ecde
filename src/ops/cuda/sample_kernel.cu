// The sampling kernel of sample_kernel.h: one block of 1,024 threads per row, nothing sorted.
//
// Every id gets a 64-bit key, the order-preserving bits of its (penalised) logit above the complement of the id:
// keys are distinct, and descending keys are the CPU Sampler's order (logit descending, id ascending). Each filter
// and the final draw is a "running-mass selection" over that order — the first id at which the mass accumulated
// from the top reaches (top-k: count ≥ k; top-p: mass ≥ p) or exceeds (draw: mass > u · total) a target —
// found by a radix descent on the keys: a 256-bin histogram of counts and masses per 8-bit digit, the bin where
// the running mass crosses, then the next digit inside it, until one id is left. The descent starts at the
// highest bit in which the candidates' keys differ, so a pass is rarely spent on a digit they all share; a row
// typically takes three to four passes per selection. Masses are exp(x / T − max / T) in double, as in
// sampler.cpp, summed in another order: the choice differs from the CPU's only when u lands within rounding
// (about 1e-15 relative) of a boundary between two ids.
#include <cstdint>

#include "core/cuda/check.h"
#include "ops/cuda/sample_kernel.h"

namespace mambacpp::cuda {
namespace {

constexpr int kThreads = 1024;
constexpr int kWarps = kThreads / 32;
constexpr int kBins = 256;
constexpr int kBinsPerLane = kBins / 32;
constexpr int64_t kMaxGrid = int64_t(1) << 30;

bool refuse(std::string* why, const std::string& msg) {
  if (why != nullptr) *why = msg;
  return false;
}

// Shared memory of one block: the histogram of one radix pass, the digit it chose, and the reduction scratch.
struct Shared {
  double mass[kBins];
  int count[kBins];
  uint64_t some_key[kBins];  // a key that fell in the bin (the only one when its count is 1)
  double chosen_acc;
  int chosen_digit, chosen_count;
  alignas(8) unsigned char reduce[kWarps * 8];
};

// One row's penalised logits and their keys.
struct Row {
  const float* logits;
  const unsigned char* seen;  // nullptr: no penalty
  float penalty;
  int64_t v;

  __device__ float x(int64_t i) const {
    float a = logits[i];
    if (seen != nullptr && seen[i] != 0) a = a > 0 ? a / penalty : a * penalty;
    return a == 0.0f ? 0.0f : a;  // -0 orders as +0, as the CPU's comparisons do
  }
  static __device__ uint64_t key(float x, int64_t i) {
    const uint32_t u = __float_as_uint(x);
    const uint32_t ordered = (u & 0x80000000u) ? ~u : (u | 0x80000000u);
    return (uint64_t(ordered) << 32) | uint64_t(0xffffffffu - uint32_t(i));
  }
  static __device__ float logit_of(uint64_t k) {
    const uint32_t ordered = uint32_t(k >> 32);
    return __uint_as_float((ordered & 0x80000000u) ? (ordered & 0x7fffffffu) : ~ordered);
  }
  static __device__ int32_t id_of(uint64_t k) { return int32_t(0xffffffffu - uint32_t(k)); }
};

// The reduction of v over the block with op; every thread receives the result.
template <class T, class Op>
__device__ T block_reduce(T v, Op op, Shared& sh) {
  for (int o = 16; o > 0; o >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, o));
  T* part = reinterpret_cast<T*>(sh.reduce);
  if (threadIdx.x % 32 == 0) part[threadIdx.x / 32] = v;
  __syncthreads();
  v = part[0];
  for (int w = 1; w < kWarps; ++w) v = op(v, part[w]);
  __syncthreads();
  return v;
}

struct Sum {
  __device__ double operator()(double a, double b) const { return a + b; }
};
struct Max {
  __device__ uint64_t operator()(uint64_t a, uint64_t b) const { return a > b ? a : b; }
};
struct Min {
  __device__ uint64_t operator()(uint64_t a, uint64_t b) const { return a < b ? a : b; }
};

// What a selection accumulates: counts (weight 1 each) or masses, and whether the target must be reached (≥) or
// exceeded (>).
struct Target {
  double value;
  bool by_count, strict;
  __device__ bool crossed(double acc) const { return strict ? acc > value : acc >= value; }
};

// Warp 0: among the bins in descending digit order, starting from running mass acc, the first bin whose mass
// makes the running mass cross the target (the last non-empty bin when rounding leaves none); its digit, its
// count and the running mass before it go to sh.chosen_*.
__device__ void choose_bin(Shared& sh, double acc, const Target& t) {
  const int lane = threadIdx.x;
  double lane_mass = 0;
  int lane_count = 0;
  for (int j = 0; j < kBinsPerLane; ++j) {
    const int bin = kBins - 1 - lane * kBinsPerLane - j;
    lane_mass += t.by_count ? double(sh.count[bin]) : sh.mass[bin];
    lane_count += sh.count[bin];
  }
  double before = lane_mass;  // inclusive scan over lanes, then made exclusive
  for (int o = 1; o < 32; o <<= 1) {
    const double up = __shfl_up_sync(0xffffffffu, before, o);
    if (lane >= o) before += up;
  }
  before -= lane_mass;
  const unsigned crossing = __ballot_sync(0xffffffffu, lane_count > 0 && t.crossed(acc + before + lane_mass));
  const unsigned nonempty = __ballot_sync(0xffffffffu, lane_count > 0);
  const int pick = crossing != 0 ? __ffs(crossing) - 1 : 31 - __clz(nonempty);
  if (lane != pick) return;
  double a = acc + before, a_last = a;
  int last = -1;
  for (int j = 0; j < kBinsPerLane; ++j) {
    const int bin = kBins - 1 - lane * kBinsPerLane - j;
    if (sh.count[bin] == 0) continue;
    const double m = t.by_count ? double(sh.count[bin]) : sh.mass[bin];
    last = bin, a_last = a;
    if (t.crossed(a + m)) break;
    a += m;
  }
  sh.chosen_digit = last, sh.chosen_count = sh.count[last], sh.chosen_acc = a_last;
}

// The key of the id at which the running mass over the members (descending keys) crosses the target.
// member(key, x) says whether an id takes part; mass(x) is its weight when t.by_count is false.
template <class Member, class Mass>
__device__ uint64_t select_key(const Row& row, Member member, Mass mass, const Target& t, Shared& sh) {
  uint64_t hi_key = 0, lo_key = ~uint64_t(0);
  for (int64_t i = threadIdx.x; i < row.v; i += kThreads) {
    const float x = row.x(i);
    const uint64_t k = Row::key(x, i);
    if (member(k, x)) hi_key = k > hi_key ? k : hi_key, lo_key = k < lo_key ? k : lo_key;
  }
  hi_key = block_reduce(hi_key, Max{}, sh);
  lo_key = block_reduce(lo_key, Min{}, sh);
  if (hi_key <= lo_key) return hi_key;  // one member (or none)
  uint64_t prefix = hi_key;
  double acc = 0;
  for (int hi = 63 - __clzll(hi_key ^ lo_key);; ) {
    const int lo = hi >= 7 ? hi - 7 : 0;
    const uint64_t above = hi >= 63 ? 0 : ~uint64_t(0) << (hi + 1);
    const uint64_t digit_mask = (uint64_t(1) << (hi - lo + 1)) - 1;
    for (int j = threadIdx.x; j < kBins; j += kThreads) sh.mass[j] = 0, sh.count[j] = 0;
    __syncthreads();
    for (int64_t i = threadIdx.x; i < row.v; i += kThreads) {
      const float x = row.x(i);
      const uint64_t k = Row::key(x, i);
      if ((k & above) != (prefix & above) || !member(k, x)) continue;
      const int d = int((k >> lo) & digit_mask);
      atomicAdd(&sh.count[d], 1);
      sh.some_key[d] = k;
      if (!t.by_count) {
        const double w = mass(x);
        if (w != 0) atomicAdd(&sh.mass[d], w);
      }
    }
    __syncthreads();
    if (threadIdx.x < 32) choose_bin(sh, acc, t);
    __syncthreads();
    const int d = sh.chosen_digit, n = sh.chosen_count;
    acc = sh.chosen_acc;
    prefix = (prefix & ~(digit_mask << lo)) | (uint64_t(d) << lo);
    const uint64_t found = n == 1 ? sh.some_key[d] : prefix;
    __syncthreads();
    if (n == 1 || lo == 0) return found;
    hi = lo - 1;
  }
}

// The sum of mass(x) over the members.
template <class Member, class Mass>
__device__ double member_mass(const Row& row, Member member, Mass mass, Shared& sh) {
  double s = 0;
  for (int64_t i = threadIdx.x; i < row.v; i += kThreads) {
    const float x = row.x(i);
    if (member(Row::key(x, i), x)) s += mass(x);
  }
  return block_reduce(s, Sum{}, sh);
}

// The key of the id drawn from the row (temperature > 0); see sample_kernel.h.
__device__ uint64_t draw(const Row& row, const SampleParams& p, uint64_t top_key, double u, Shared& sh) {
  const double temp = p.temperature, top = double(Row::logit_of(top_key)) / temp;
  const auto weight = [=](float x) { return exp(double(x) / temp - top); };
  const auto all = [](uint64_t, float) { return true; };
  uint64_t first_out = 0;  // members of top-k have keys ≥ this
  if (p.top_k > 0 && p.top_k < row.v)
    first_out = select_key(row, all, weight, Target{double(p.top_k), true, false}, sh);
  const auto in_k = [=](uint64_t k, float) { return k >= first_out; };
  const double sum = member_mass(row, in_k, weight, sh);
  const auto prob = [=](float x) { return weight(x) / sum; };
  uint64_t last_in = first_out;
  if (p.top_p < 1.0f) last_in = select_key(row, in_k, prob, Target{double(p.top_p), false, false}, sh);
  const double floor = p.min_p > 0.0f ? double(p.min_p) * (1.0 / sum) : -1.0;
  const auto kept = [=](uint64_t k, float x) { return k >= last_in && prob(x) >= floor; };
  const double mass = member_mass(row, kept, prob, sh);
  return select_key(row, kept, prob, Target{u * mass, false, true}, sh);
}

__global__ void __launch_bounds__(kThreads) sample_kernel(SampleParams p) {
  __shared__ Shared sh;
  const int64_t r = blockIdx.x;
  const Row row{p.logits + r * p.ld, p.seen != nullptr ? p.seen + r * p.v : nullptr, p.penalty, p.v};
  uint64_t top_key = 0;
  for (int64_t i = threadIdx.x; i < p.v; i += kThreads) {
    const uint64_t k = Row::key(row.x(i), i);
    top_key = k > top_key ? k : top_key;
  }
  top_key = block_reduce(top_key, Max{}, sh);
  const uint64_t k = p.temperature == 0.0f ? top_key : draw(row, p, top_key, p.uniforms[r], sh);
  if (threadIdx.x == 0) {
    int32_t id = Row::id_of(k);
    if (id < 0 || id >= p.v) id = 0;  // only when every logit is NaN
    p.ids[r] = id;
    if (p.seen != nullptr) p.seen[r * p.v + id] = 1;
  }
}

}  // namespace

bool sample_kernel_supports(const SampleParams& p, std::string* why) {
  if (p.v < 1) return refuse(why, "sample: empty rows");
  if (p.v > int64_t(1) << 31) return refuse(why, "sample: more than 2^31 ids per row");
  if (p.m > kMaxGrid) return refuse(why, "sample: more than 2^30 rows");
  if (p.temperature > 0.0f && p.uniforms == nullptr) return refuse(why, "sample: no uniform numbers given");
  return true;
}

void sample_kernel_launch(const SampleParams& p, cudaStream_t stream) {
  if (p.m == 0) return;
  sample_kernel<<<unsigned(p.m), kThreads, 0, stream>>>(p);
  CUDA_CHECK_LAUNCH("sample_kernel", stream);
}

}  // namespace mambacpp::cuda
