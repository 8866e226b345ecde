// Kernel microbenchmark of the CPU ops at the Mamba-130M shapes (d = 768, e = 1536, n = 16, r = 48, k = 4,
// v = 50280): prompt processing (m = b·l = 512) and decoding (m = 1). Each case is checked against a
// double-precision dot product or recurrence on a sample of outputs first, then timed (warm-up, then at least
// 20 runs and 1 s, median and best reported), and printed as one markdown row with its arithmetic rate and
// memory traffic, and the fraction of this machine's limit: the FMA peak for the compute-bound cases, the
// read bandwidth (both measured at start-up) for the bandwidth-bound ones. The decoding cases rotate over a
// gibibyte of weight copies, so that they stream from memory as a real decoding step does.
//
// Usage: bench_ops [threads]   (default: all hardware threads)
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <omp.h>
#include <string>
#include <vector>

#include "core/buffer.h"
#include "core/context.h"
#include "core/rng.h"
#include "core/tensor.h"
#include "ops/cpu/simd.h"
#include "hw_probe.h"
#include "ops/ops.h"

using namespace mambacpp;

namespace {

constexpr int64_t kD = 768, kE = 1536, kN = 16, kR = 48, kK = 4, kV = 50280, kL = 512;

// The hardware limits the rows are compared with.
struct Limits {
  double flops = 0;  // f32 FLOP/s of FMAs in registers
  double bytes = 0;  // bytes/s read from a buffer far larger than the caches
};
Limits g_limits;

struct Timing {
  double median_s, best_s;
};

Timing time_it(const std::function<void()>& f) {
  f();
  std::vector<double> runs;
  const auto start = std::chrono::steady_clock::now();
  while (runs.size() < 20 || std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() < 1.0) {
    const auto t0 = std::chrono::steady_clock::now();
    f();
    runs.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(runs.begin(), runs.end());
  return {runs[runs.size() / 2], runs.front()};
}

void fill(Buffer& b, DType t, size_t count, uint64_t seed, float scale) {
  Rng rng(seed);
  std::vector<float> v(count);
  for (auto& x : v) x = float(rng.uniform() * 2 - 1) * scale;
  convert_from_f32(b.data(), t, v.data(), count);
}

Buffer random_buffer(DType t, size_t count, uint64_t seed, float scale = 1.0f) {
  Buffer b(count * dtype_size(t));
  fill(b, t, count, seed, scale);
  return b;
}

float element(const Tensor& t, int64_t i) {
  float f;
  convert_to_f32(&f, static_cast<const char*>(t.data) + i * int64_t(dtype_size(t.dtype)), t.dtype, 1);
  return f;
}

// One table row; the limit column is the larger of the two fractions (whichever resource binds).
void row(const std::string& op, const std::string& shape, const std::string& dtype, Timing t, double flops,
         double bytes, bool ok) {
  const double rate = flops / t.median_s, traffic = bytes / t.median_s;
  const double limit = std::max(rate / g_limits.flops, traffic / g_limits.bytes);
  fmt::print("| {:<18} | {:<24} | {:<5} | {:>9.3f} | {:>9.3f} | {:>8.1f} | {:>7.1f} | {:>5.0f} % | {:<5} |\n", op,
             shape, dtype, t.median_s * 1e3, t.best_s * 1e3, rate * 1e-9, traffic * 1e-9, limit * 100,
             ok ? "ok" : "WRONG");
}

// y (m, o) = x (m, i) · wᵀ. With `stream` set, copies of w totalling at least 1 GiB are used in turn, so that
// w comes from memory rather than from any cache, as in a decoding step.
void bench_linear(Context& ctx, const std::string& name, int64_t m, int64_t i, int64_t o, DType t, bool stream) {
  const size_t w_bytes = size_t(o * i) * dtype_size(t);
  const int copies = stream ? int(((size_t(1) << 30) + w_bytes - 1) / w_bytes) : 1;
  std::vector<Buffer> ws;
  ws.push_back(random_buffer(t, size_t(o * i), 10, 0.05f));
  for (int c = 1; c < copies; ++c) {
    ws.emplace_back(w_bytes);
    std::memcpy(ws.back().data(), ws.front().data(), w_bytes);
  }
  Buffer xb = random_buffer(DType::f32, size_t(m * i), 1), yb(size_t(m * o) * 4);
  Tensor x = view(xb, DType::f32, {m, i}), y = view(yb, DType::f32, {m, o});
  int next = 0;
  auto run = [&] {
    linear_forward(y, x, view(ws[next], t, {o, i}), Tensor(), ctx);
    next = (next + 1) % copies;
  };
  next = 0;
  run();
  bool ok = true;
  Tensor w0 = view(ws[0], t, {o, i});
  for (int64_t s = 0; s < 16; ++s) {
    const int64_t r = (s * 7919) % m, c = (s * 104729) % o;
    double ref = 0, mag = 0;
    for (int64_t k = 0; k < i; ++k) {
      const double p = double(x.f32()[r * i + k]) * double(element(w0, c * i + k));
      ref += p;
      mag += std::fabs(p);
    }
    ok = ok && std::fabs(y.f32()[r * o + c] - ref) <= 1e-5 * mag + 1e-30;
  }
  const Timing tm = time_it(run);
  const double bytes = double(o * i) * dtype_size(t) + 4.0 * double(m) * double(i + o);
  row(name, fmt::format("m={} i={} o={}", m, i, o), dtype_name(t), tm, 2.0 * m * i * o, bytes, ok);
}

// One scan over l tokens (or one decoding step when l = 1), with every option of a Mamba block.
void bench_scan(Context& ctx, int64_t l) {
  const int64_t b = 1, xw = kR + 2 * kN;
  Buffer xz = random_buffer(DType::f32, size_t(b * l * 2 * kE), 1), dtb = random_buffer(DType::f32, size_t(b * l * kE), 2);
  Buffer xp = random_buffer(DType::f32, size_t(b * l * xw), 3), Ab(size_t(kE * kN) * 4);
  Buffer Db = random_buffer(DType::f32, size_t(kE), 4), biasb = random_buffer(DType::f32, size_t(kE), 5);
  Buffer yb(size_t(b * l * kE) * 4), st(size_t(b * kE * kN) * 4);
  for (int64_t c = 0; c < kE; ++c)
    for (int64_t s = 0; s < kN; ++s) Ab.as<float>()[c * kN + s] = -float(s + 1);
  std::fill(st.as<float>(), st.as<float>() + b * kE * kN, 0.0f);
  auto seq = [&](Buffer& buf, int64_t off, int64_t c, int64_t ld) {
    Tensor t(buf.as<float>() + off, DType::f32, {b, l, c});
    t.stride[1] = ld;
    t.stride[0] = l * ld;
    return t;
  };
  ScanArgs a;
  a.y = view(yb, DType::f32, {b, l, kE});
  a.u = seq(xz, 0, kE, 2 * kE);
  a.z = seq(xz, kE, kE, 2 * kE);
  a.dt = view(dtb, DType::f32, {b, l, kE});
  a.B = seq(xp, kR, kN, xw);
  a.C = seq(xp, kR + kN, kN, xw);
  a.A = view(Ab, DType::f32, {kE, kN});
  a.D = view(Db, DType::f32, {kE});
  a.dt_bias = view(biasb, DType::f32, {kE});
  a.state_in = a.state_out = view(st, DType::f32, {b, kE, kN});
  selective_scan_forward(a, ctx);
  // Check the last channel of token 0's output against a double recurrence from the state before the call.
  std::fill(st.as<float>(), st.as<float>() + b * kE * kN, 0.0f);
  selective_scan_forward(a, ctx);
  const int64_t c = kE - 1;
  double y0 = 0;
  const double dt = double(dtb.as<float>()[c]) + biasb.as<float>()[c];
  const double delta = dt > 20 ? dt : std::log1p(std::exp(dt));
  const double u = xz.as<float>()[c], z = xz.as<float>()[kE + c];
  for (int64_t s = 0; s < kN; ++s) y0 += delta * xp.as<float>()[kR + s] * u * xp.as<float>()[kR + kN + s];
  y0 = (y0 + Db.as<float>()[c] * u) * z / (1 + std::exp(-z));
  const bool ok = std::fabs(yb.as<float>()[c] - y0) <= 1e-5 * (std::fabs(y0) + 1e-3);
  const Timing tm = time_it([&] { selective_scan_forward(a, ctx); });
  const double updates = double(b * l * kE * kN);
  const double bytes = 4.0 * double(b * l) * double(4 * kE + 2 * kN) + 8.0 * double(b * kE * kN);
  row(l == 1 ? "scan step" : "selective scan", fmt::format("b={} l={} e={} n={}", b, l, kE, kN), "f32", tm,
      updates * 7.0, bytes, ok);
}

void bench_conv(Context& ctx, int64_t l) {
  const int64_t b = 1;
  Buffer x = random_buffer(DType::f32, size_t(b * l * kE), 1), w = random_buffer(DType::f32, size_t(kE * kK), 2);
  Buffer bias = random_buffer(DType::f32, size_t(kE), 3), out(size_t(b * l * kE) * 4);
  Buffer st = random_buffer(DType::f32, size_t(b * kE * (kK - 1)), 4);
  Tensor ts = view(st, DType::f32, {b, kE, kK - 1});
  auto run = [&] {
    conv1d_causal_forward(view(out, DType::f32, {b, l, kE}), ts, view(x, DType::f32, {b, l, kE}),
                          view(w, DType::f32, {kE, kK}), view(bias, DType::f32, {kE}), ts, true, ctx);
  };
  const Timing tm = time_it(run);
  row(l == 1 ? "conv1d step" : "conv1d", fmt::format("b={} l={} e={} k={}", b, l, kE, kK), "f32", tm,
      2.0 * double(b * l * kE * kK), 8.0 * double(b * l * kE), true);
}

void bench_rmsnorm(Context& ctx, int64_t m) {
  Buffer res = random_buffer(DType::f32, size_t(m * kD), 1), x = random_buffer(DType::f32, size_t(m * kD), 2);
  Buffer w = random_buffer(DType::f32, size_t(kD), 3), out(size_t(m * kD) * 4);
  const Timing tm = time_it([&] {
    rmsnorm_forward(view(out, DType::f32, {m, kD}), view(res, DType::f32, {m, kD}), view(x, DType::f32, {m, kD}),
                    view(w, DType::f32, {kD}), 1e-5f, ctx);
  });
  row("rmsnorm + residual", fmt::format("m={} d={}", m, kD), "f32", tm, 4.0 * double(m * kD), 16.0 * double(m * kD),
      true);
}

}  // namespace

int main(int argc, char** argv) {
  Context ctx(argc > 1 ? std::atoi(argv[1]) : 0);
  g_limits = {bench::measure_fma_peak(ctx.threads()), bench::measure_read_bandwidth(ctx.threads(), 2.0 * (1 << 30))};
  fmt::print("threads: {}; FMA peak {:.0f} GFLOP/s, read bandwidth {:.1f} GB/s\n\n", ctx.threads(),
             g_limits.flops * 1e-9, g_limits.bytes * 1e-9);
  fmt::print("| op                 | shape                    | dtype | median ms |   best ms |  GFLOP/s |    GB/s | limit | check |\n");
  fmt::print("|--------------------|--------------------------|-------|-----------|-----------|----------|---------|-------|-------|\n");
  for (DType t : {DType::f32, DType::bf16}) {
    bench_linear(ctx, "in_proj", kL, kD, 2 * kE, t, false);
    bench_linear(ctx, "x_proj", kL, kE, kR + 2 * kN, t, false);
    bench_linear(ctx, "dt_proj", kL, kR, kE, t, false);
    bench_linear(ctx, "out_proj", kL, kE, kD, t, false);
  }
  bench_scan(ctx, kL);
  bench_conv(ctx, kL);
  bench_rmsnorm(ctx, kL);
  for (DType t : {DType::f32, DType::bf16}) {
    bench_linear(ctx, "decode in_proj", 1, kD, 2 * kE, t, true);
    bench_linear(ctx, "decode x_proj", 1, kE, kR + 2 * kN, t, true);
    bench_linear(ctx, "decode dt_proj", 1, kR, kE, t, true);
    bench_linear(ctx, "decode out_proj", 1, kE, kD, t, true);
    bench_linear(ctx, "decode lm_head", 1, kD, kV, t, true);
  }
  bench_scan(ctx, 1);
  bench_conv(ctx, 1);
  bench_rmsnorm(ctx, 1);
  return 0;
}
