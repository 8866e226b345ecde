// Hardware ceilings (see hw_probe.h). Both probes take the best of several timed passes after a warm-up.
#include "hw_probe.h"

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <vector>

#include "core/buffer.h"
#include "ops/cpu/simd.h"

namespace mambacpp::bench {

namespace {

double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

}  // namespace

double measure_read_bandwidth(int threads, double bytes) {
  using cpu::Vec;
  const int64_t n = int64_t(bytes / sizeof(float)) / cpu::kLanes * cpu::kLanes;
  Buffer buf(size_t(n) * sizeof(float));
  float* p = buf.as<float>();
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t i = 0; i < n; ++i) p[i] = float(i & 1023);
  double best = 1e30;
  volatile float sink = 0;
  for (int rep = 0; rep < 6; ++rep) {
    const double t0 = now();
    float total = 0;
#pragma omp parallel num_threads(threads) reduction(+ : total)
    {
      Vec a0 = Vec::zero(), a1 = Vec::zero(), a2 = Vec::zero(), a3 = Vec::zero();
#pragma omp for schedule(static)
      for (int64_t i = 0; i < n; i += 4 * cpu::kLanes) {
        a0 = a0 + Vec::load(p + i);
        a1 = a1 + Vec::load(p + i + cpu::kLanes);
        a2 = a2 + Vec::load(p + i + 2 * cpu::kLanes);
        a3 = a3 + Vec::load(p + i + 3 * cpu::kLanes);
      }
      total += cpu::reduce_add((a0 + a1) + (a2 + a3));
    }
    sink = sink + total;
    if (rep > 0) best = std::min(best, now() - t0);
  }
  return double(n) * sizeof(float) / best;
}

double measure_fma_peak(int threads) {
  using cpu::Vec;
  constexpr int kChains = 12;
  constexpr int64_t kIters = 20'000'000;
  double best = 1e30;
  volatile float sink = 0;
  for (int rep = 0; rep < 3; ++rep) {
    const double t0 = now();
#pragma omp parallel num_threads(threads)
    {
      Vec acc[kChains];
      for (int c = 0; c < kChains; ++c) acc[c] = Vec::broadcast(float(c + omp_get_thread_num()));
      const Vec a = Vec::broadcast(0.999999f), b = Vec::broadcast(1e-7f);
      for (int64_t i = 0; i < kIters; ++i)
        for (int c = 0; c < kChains; ++c) acc[c] = cpu::fma(acc[c], a, b);
      Vec s = Vec::zero();
      for (int c = 0; c < kChains; ++c) s = s + acc[c];
      sink = sink + cpu::reduce_add(s);
    }
    best = std::min(best, now() - t0);
  }
  return double(threads) * kIters * kChains * cpu::kLanes * 2.0 / best;
}

}  // namespace mambacpp::bench
