// Benchmark of the CUDA selective-scan backward (ops/cuda/cuda_scan_backward.h) at the shapes of ANCHORS.md §1:
// b = 8, e = 1024, n = 16; u, dt, dy and every gradient in f32; B and C (and dB, dC) views into an x_proj-shaped
// (b, l, 64 + 2n) tensor; A, D, dt_bias in f32, their gradients accumulated; softplus on δ; no z. It first checks
// every gradient against the CPU op at L = 512 (all 1024 channels), then times the op with CUDA events (warm-up,
// at least 20 runs, median) and prints a markdown table beside mamba_ssm's forward + backward time (bf16
// inputs, ANCHORS.md §1). Inputs are at least 48 MiB at every length, near the 50 MiB L2, so no rotation.
//
// A second table times the Mamba-130M training shape (e = 1536, with z) at L = 2048. Each row shows the floor:
// every input read and every output written once at 2.91 TB/s, or the b·e·l·n exponentials at 4.1·10¹²/s.
// Training keeps the forward scan's chunk_states (the state every 16 steps) for the backward pass, which then
// runs no forward pass of its own: each row also times that backward ("from states"), and the f32 forward scan
// without and with writing the states, so that the two ways compare as forward + backward.
//
// Usage: scan_backward_bench [--no-train] [L ...]   (default: 512 1024 … 65536)
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <map>
#include <string>
#include <vector>

#include "core/buffer.h"
#include "core/context.h"
#include "core/cuda/check.h"
#include "core/cuda/cuda_state.h"
#include "core/tensor.h"
#include "ops/cuda/cuda_ops.h"
#include "ops/cuda/cuda_scan_backward.h"
#include "ops/ops.h"
#include "ops/ops_backward.h"

namespace {

using namespace mambacpp;

constexpr int64_t kB = 8, kN = 16, kR = 64, kW = kR + 2 * kN;
constexpr int64_t kMaxL = 65536;
constexpr int64_t kCheckL = 512;

// mamba_ssm 2.3.2.post1 selective_scan_fn forward and forward + backward, bf16 inputs, H100 (ANCHORS.md §1).
const std::map<int64_t, std::pair<double, double>> kAnchorMs = {
    {512, {0.117, 0.559}},  {1024, {0.192, 0.957}}, {2048, {0.360, 1.80}},  {4096, {0.652, 3.31}},
    {8192, {1.21, 6.42}},   {16384, {2.67, 12.9}},  {32768, {5.31, 26.2}},  {65536, {10.55, 53.7}}};

// Deterministic values in [lo, hi).
std::vector<float> pattern(size_t count, uint64_t seed, float lo, float hi) {
  std::vector<float> v(count);
  uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
  for (float& f : v) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    f = lo + (hi - lo) * float(x >> 40) * (1.0f / 16777216.0f);
  }
  return v;
}

// Fills `count` floats at `dst` (device) by repeating a 4 Mi-float pattern.
void fill_device(float* dst, int64_t count, uint64_t seed, float lo, float hi) {
  const std::vector<float> src = pattern(size_t(std::min<int64_t>(count, int64_t(1) << 22)), seed, lo, hi);
  for (int64_t at = 0; at < count; at += int64_t(src.size())) {
    const int64_t k = std::min<int64_t>(int64_t(src.size()), count - at);
    CUDA_CHECK(cudaMemcpy(dst + at, src.data(), size_t(k) * 4, cudaMemcpyHostToDevice));
  }
}

// The channel count and whether the gate z is present: ANCHORS.md §1 (e = 1024, no z) or the Mamba-130M
// training shape (e = 1536, with z).
struct Shape {
  int64_t e;
  bool z;
};

struct Tensors {
  Buffer u, dt, dy, xp, du, ddt, dxp, A, D, bias, dA, dD, dbias, z, dz;
  Buffer states, y;  // the forward's chunk_states and output
};

Tensor seq(const Buffer& buf, Device dev, int64_t l, int64_t k, int64_t width, int64_t col) {
  Tensor t(static_cast<float*>(const_cast<void*>(buf.data())) + col, DType::f32, {kB, l, k}, dev);
  t.stride = {l * width, width, 1};
  return t;
}

ScanGradArgs args_for(const Tensors& m, Device dev, int64_t l, Shape sh) {
  const int64_t e = sh.e;
  ScanGradArgs a;
  a.u = seq(m.u, dev, l, e, e, 0), a.dt = seq(m.dt, dev, l, e, e, 0), a.dy = seq(m.dy, dev, l, e, e, 0);
  a.B = seq(m.xp, dev, l, kN, kW, kR), a.C = seq(m.xp, dev, l, kN, kW, kR + kN);
  a.du = seq(m.du, dev, l, e, e, 0), a.ddt = seq(m.ddt, dev, l, e, e, 0);
  a.dB = seq(m.dxp, dev, l, kN, kW, kR), a.dC = seq(m.dxp, dev, l, kN, kW, kR + kN);
  const auto vec = [dev](const Buffer& b, std::initializer_list<int64_t> dims) {
    return Tensor(const_cast<void*>(b.data()), DType::f32, dims, dev);
  };
  a.A = vec(m.A, {e, kN}), a.D = vec(m.D, {e}), a.dt_bias = vec(m.bias, {e});
  a.dA = vec(m.dA, {e, kN}), a.dD = vec(m.dD, {e}), a.ddt_bias = vec(m.dbias, {e});
  if (sh.z) a.z = seq(m.z, dev, l, e, e, 0), a.dz = seq(m.dz, dev, l, e, e, 0);
  a.dt_softplus = true;
  return a;
}

Tensors allocate(Device dev, int64_t l, Shape sh) {
  const int64_t e = sh.e;
  const size_t seq = size_t(kB * l * e) * 4, wide = size_t(kB * l * kW) * 4;
  return Tensors{Buffer(seq, dev),        Buffer(seq, dev),        Buffer(seq, dev),    Buffer(wide, dev),
                 Buffer(seq, dev),        Buffer(seq, dev),        Buffer(wide, dev),   Buffer(e * kN * 4, dev),
                 Buffer(e * 4, dev),     Buffer(e * 4, dev),     Buffer(e * kN * 4, dev), Buffer(e * 4, dev),
                 Buffer(e * 4, dev),     Buffer(sh.z ? seq : 4, dev), Buffer(sh.z ? seq : 4, dev),
                 Buffer(size_t(kB * scan_state_count(l) * kN * e) * 4, dev), Buffer(seq, dev)};
}

// The forward scan over the same inputs, writing y and (when `states`) the chunk_states.
ScanArgs forward_args(const Tensors& m, Device dev, int64_t l, Shape sh, bool states) {
  const ScanGradArgs g = args_for(m, dev, l, sh);
  ScanArgs f;
  f.y = seq(m.y, dev, l, sh.e, sh.e, 0), f.u = g.u, f.dt = g.dt, f.A = g.A, f.B = g.B, f.C = g.C, f.D = g.D;
  f.z = g.z, f.dt_bias = g.dt_bias, f.dt_softplus = g.dt_softplus;
  if (states)
    f.chunk_states = Tensor(const_cast<void*>(m.states.data()), DType::f32, {kB, scan_state_count(l), kN, sh.e}, dev);
  return f;
}

// The parameters: A as the S4D-real initialisation perturbed, D around 1, dt_bias putting δ in [1e-3, 1e-1].
void fill_inputs(Tensors& m, int64_t l, bool device, Shape sh) {
  const int64_t e = sh.e;
  std::vector<float> A = pattern(e * kN, 21, 0.75f, 1.25f), D = pattern(e, 22, 0.5f, 1.5f);
  std::vector<float> bias = pattern(e, 23, std::log(1e-3f), std::log(1e-1f));
  for (int64_t i = 0; i < e * kN; ++i) A[size_t(i)] *= -float(i % kN + 1);
  for (float& x : bias) x = std::log(std::expm1(std::exp(x)));
  const std::pair<Buffer*, std::vector<float>*> params[] = {{&m.A, &A}, {&m.D, &D}, {&m.bias, &bias}};
  struct Fill {
    Buffer* buf;
    int64_t count;
    uint64_t seed;
    float lo, hi;
  };
  const Fill fills[] = {{&m.u, kB * l * e, 11, -1, 1},  {&m.dt, kB * l * e, 12, -1, 1},
                        {&m.dy, kB * l * e, 13, -1, 1}, {&m.xp, kB * l * kW, 14, -1, 1},
                        {&m.dA, e * kN, 15, -1, 1},     {&m.dD, e, 16, -1, 1},
                        {&m.dbias, e, 17, -1, 1},       {&m.z, sh.z ? kB * l * e : 1, 18, -2, 2}};
  for (const Fill& f : fills) {
    if (device) {
      fill_device(static_cast<float*>(f.buf->data()), f.count, f.seed, f.lo, f.hi);
    } else {
      const std::vector<float> one = pattern(size_t(std::min<int64_t>(f.count, int64_t(1) << 22)), f.seed, f.lo, f.hi);
      float* dst = static_cast<float*>(f.buf->data());
      for (int64_t i = 0; i < f.count; ++i) dst[i] = one[size_t(i % int64_t(one.size()))];
    }
  }
  for (const auto& [buf, v] : params) {
    if (device)
      CUDA_CHECK(cudaMemcpy(buf->data(), v->data(), v->size() * 4, cudaMemcpyHostToDevice));
    else
      std::copy(v->begin(), v->end(), static_cast<float*>(buf->data()));
  }
}

double rel_l2(const float* got, const float* want, size_t count) {
  double num = 0, den = 0;
  for (size_t i = 0; i < count; ++i) {
    const double d = double(got[i]) - want[i];
    if (std::isnan(d)) return INFINITY;
    num += d * d, den += double(want[i]) * want[i];
  }
  return std::sqrt(num / std::max(den, 1e-300));
}

// The worst relative L2 error over every gradient at L = kCheckL, against the CPU op: the backward with its own
// forward pass, then from the forward's chunk_states (the added-to gradients restored in between).
double check(int threads, Shape sh) {
  const int64_t l = kCheckL;
  Tensors host = allocate(Device::cpu, l, sh), dev = allocate(Device::cuda, l, sh);
  fill_inputs(host, l, false, sh), fill_inputs(dev, l, true, sh);
  // The columns of the wide gradient before dB and dC are written by neither side: zero on both.
  std::fill_n(static_cast<float*>(host.dxp.data()), host.dxp.bytes() / 4, 0.0f);
  CUDA_CHECK(cudaMemset(dev.dxp.data(), 0, dev.dxp.bytes()));
  Context cpu(threads), gpu(1);
  selective_scan_backward(args_for(host, Device::cpu, l, sh), cpu);
  Buffer* const added[] = {&dev.dA, &dev.dD, &dev.dbias};
  std::vector<std::vector<float>> start;
  for (Buffer* b : added) {
    start.emplace_back(b->bytes() / 4);
    CUDA_CHECK(cudaMemcpy(start.back().data(), b->data(), b->bytes(), cudaMemcpyDeviceToHost));
  }
  double worst = 0;
  for (const bool from_states : {false, true}) {
    ScanGradArgs a = args_for(dev, Device::cuda, l, sh);
    if (from_states) {
      for (size_t i = 0; i < start.size(); ++i)
        CUDA_CHECK(cudaMemcpy(added[i]->data(), start[i].data(), added[i]->bytes(), cudaMemcpyHostToDevice));
      const ScanArgs f = forward_args(dev, Device::cuda, l, sh, true);
      selective_scan_forward_cuda(f, gpu);
      a.chunk_states = f.chunk_states;
    }
    selective_scan_backward_cuda(a, gpu);
    cuda_state(gpu).synchronize();
    for (const auto& [h, d] : {std::pair{&host.du, &dev.du}, std::pair{&host.ddt, &dev.ddt},
                               std::pair{&host.dxp, &dev.dxp}, std::pair{&host.dA, &dev.dA},
                               std::pair{&host.dD, &dev.dD}, std::pair{&host.dbias, &dev.dbias},
                               std::pair{&host.dz, &dev.dz}}) {
      if (h == &host.dz && !sh.z) continue;
      std::vector<float> got(h->bytes() / 4);
      CUDA_CHECK(cudaMemcpy(got.data(), d->data(), h->bytes(), cudaMemcpyDeviceToHost));
      worst = std::max(worst, rel_l2(got.data(), static_cast<const float*>(h->data()), got.size()));
    }
  }
  return worst;
}

// What is timed: the backward (with its own forward pass, or from the forward's chunk_states), or the forward
// (without or with writing the chunk_states).
enum class Op { backward, backward_from_states, forward, forward_with_states };

double time_ms(const Tensors& m, int64_t l, Shape sh, Op op, Context& ctx) {
  ScanGradArgs a = args_for(m, Device::cuda, l, sh);
  const ScanArgs f = forward_args(m, Device::cuda, l, sh, op != Op::forward);
  if (op == Op::backward_from_states) {
    selective_scan_forward_cuda(f, ctx);
    a.chunk_states = f.chunk_states;
  }
  cudaStream_t stream = cuda_state(ctx).stream;
  cudaEvent_t start, stop;
  CUDA_CHECK(cudaEventCreate(&start));
  CUDA_CHECK(cudaEventCreate(&stop));
  std::vector<float> ms;
  float total = 0;
  for (int rep = 0; rep < 3 + 20 || (total < 300.0f && rep < 2000); ++rep) {
    CUDA_CHECK(cudaEventRecord(start, stream));
    if (op == Op::backward || op == Op::backward_from_states)
      selective_scan_backward_cuda(a, ctx);
    else
      selective_scan_forward_cuda(f, ctx);
    CUDA_CHECK(cudaEventRecord(stop, stream));
    CUDA_CHECK(cudaEventSynchronize(stop));
    float t = 0;
    CUDA_CHECK(cudaEventElapsedTime(&t, start, stop));
    if (rep >= 3) ms.push_back(t), total += t;  // the first three are warm-up
  }
  CUDA_CHECK(cudaEventDestroy(start));
  CUDA_CHECK(cudaEventDestroy(stop));
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

// The floor of one backward: every input read once and every output written once (bytes / 2.91 TB/s), or
// the b·e·l·n exponentials at 4.1·10¹² per second (ANCHORS.md, device ceilings), whichever is larger.
double floor_ms(int64_t l, Shape sh) {
  const double seqs = sh.z ? 7 : 5;  // u, dt, dy (, z) read; du, ddt (, dz) written
  const double bytes = 4.0 * kB * l * (seqs * sh.e + 4 * kN);  // + B, C read, dB, dC written
  const double exps = double(kB) * sh.e * l * kN;
  return std::max(bytes / 2.91e12, exps / 4.1e12) * 1e3;
}

// Checks, then times every length; one markdown table. Returns whether the check passed.
bool run_shape(const std::vector<int64_t>& lengths, Shape sh, const cudaDeviceProp& prop) {
  const double err = check(16, sh);
  std::printf("\nselective scan backward, b = %lld, e = %lld, n = %lld, f32, softplus, %s, D and dt_bias; %s "
              "(%d SMs)\nchecked against the CPU op at L = %lld: worst relative L2 error over the gradients %.2e\n\n",
              (long long)kB, (long long)sh.e, (long long)kN, sh.z ? "with z" : "no z", prop.name,
              prop.multiProcessorCount, (long long)kCheckL, err);
  std::printf("| L | mambacpp bwd (f32) | floor | of floor | bwd from states | fwd (f32) | fwd writing states | "
              "fwd + bwd: own / from states | mamba_ssm fwd (bf16) | mamba_ssm fwd+bwd (bf16) | "
              "mamba_ssm bwd (difference) |\n");
  std::printf("|---|---|---|---|---|---|---|---|---|---|---|\n");
  const int64_t max_l = *std::max_element(lengths.begin(), lengths.end());
  Tensors dev = allocate(Device::cuda, max_l, sh);
  Context ctx(1);
  for (int64_t l : lengths) {
    fill_inputs(dev, l, true, sh);
    const double ms = time_ms(dev, l, sh, Op::backward, ctx), floor = floor_ms(l, sh);
    const double ms_states = time_ms(dev, l, sh, Op::backward_from_states, ctx);
    const double fwd_ms = time_ms(dev, l, sh, Op::forward, ctx);
    const double fwd_states_ms = time_ms(dev, l, sh, Op::forward_with_states, ctx);
    const auto anchor = kAnchorMs.find(l);
    char fwd[32] = "–", both[32] = "–", bwd[32] = "–";
    if (anchor != kAnchorMs.end() && sh.e == 1024 && !sh.z) {
      std::snprintf(fwd, sizeof(fwd), "%.3f ms", anchor->second.first);
      std::snprintf(both, sizeof(both), "%.3f ms", anchor->second.second);
      std::snprintf(bwd, sizeof(bwd), "%.3f ms", anchor->second.second - anchor->second.first);
    }
    std::printf("| %lld | %.3f ms | %.3f ms | %.0f %% | %.3f ms | %.3f ms | %.3f ms | %.3f / %.3f ms | %s | %s | %s |\n",
                (long long)l, ms, floor, 100.0 * floor / ms, ms_states, fwd_ms, fwd_states_ms, fwd_ms + ms,
                fwd_states_ms + ms_states, fwd, both, bwd);
  }
  if (err > 1e-4) std::printf("\nFAILED: a gradient differs from the CPU op by more than 1e-4 (relative L2)\n");
  return err <= 1e-4;
}

int run(const std::vector<int64_t>& lengths, bool train) {
  cudaDeviceProp prop{};
  CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
  bool ok = run_shape(lengths, Shape{1024, false}, prop);
  if (train) ok = run_shape({2048}, Shape{1536, true}, prop) && ok;
  return ok ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<int64_t> lengths;
  bool train = true;
  for (int i = 1; i < argc; ++i) {
    if (std::string(argv[i]) == "--no-train") {
      train = false;
      continue;
    }
    const long long l = std::atoll(argv[i]);
    if (l < 1 || l > kMaxL) {
      std::fprintf(stderr, "error: length %s is outside 1..%lld\n", argv[i], (long long)kMaxL);
      return 1;
    }
    lengths.push_back(l);
  }
  if (lengths.empty()) lengths = {512, 1024, 2048, 4096, 8192, 16384, 32768, 65536};
  try {
    return run(lengths, train);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
