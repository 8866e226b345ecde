// Training-step benchmark on the GPU at the shapes of ANCHORS.md §3: Mamba-130M, 370M and 1.4B (src/model/presets.h)
// with random weights, L = 2,048, the reference's batch sizes, mixed precision (bf16 matrices in the passes, f32
// master weights, gradients and AdamW moments), gradient clipping at 1.0 and one AdamW update per step — what
// `mambacpp train --device cuda --dtype bf16` does per step. Each step is timed from the zeroing of the gradients to
// the end of the update (the GPU waited for); the median of 8 steps after 3 warm-up steps is printed beside the
// reference's, with the forward pass alone, the peak GPU memory (the allocator's high-water mark over the model's
// setup and steps, above what was in use before; Buffers only, see gb()) and the matrix products' share of the bf16
// tensor-core rate.
// By default the forward pass keeps the scan's states every 16 tokens for the backward pass (TrainWorkspace::
// keep_scan_states; the conv output is kept in bf16 only, as the scan's u). Where that takes the peak memory above
// the reference's, the model is timed again with the states recomputed in the backward pass.
//
// Usage: train_bench [130m|370m|1.4b ...] [--rows N] [--states keep|recompute] [--once]
//        (default: all three; --rows: rows per forward/backward group, default the whole batch for 130M and
//        370M, 4,096 for 1.4B; --states: only that way; --once: one untimed step, for a kernel profiler)
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <map>
#include <string>
#include <vector>

#include "core/context.h"
#include "core/cuda/cuda_state.h"
#include "core/cuda/device_memory.h"
#include "model/lm_train.h"
#include "model/presets.h"
#include "train/trainable.h"

namespace {

using namespace mambacpp;

constexpr int64_t kLen = 2048;
constexpr double kTensorTflops = 790;  // ANCHORS.md: bf16 dense GEMM on this device kind

// ANCHORS.md §3: mamba_ssm + PyTorch fused AdamW, bf16 autocast, H100 80GB HBM3, 2026-11-22.
struct Anchor {
  int64_t batch;
  double step_ms, tok_s, peak_gb;
  int64_t rows;  // our default rows per group
};
const std::map<std::string, Anchor> kAnchors = {
    {"130m", {8, 158, 103.8e3, 25.1, 8 * kLen}},
    {"370m", {8, 350, 46.8e3, 47.8, 8 * kLen}},
    {"1.4b", {4, 399, 20.5e3, 56.1, 2 * kLen}},
};

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Device memory in GB as the allocator counts it (device_memory_use: Buffers from the memory pool, the ops'
// scratch included; not the CUDA context or cuBLASLt's workspace). cudaMemGetInfo would count what the pool keeps.
double gb(size_t bytes) { return double(bytes) / 1e9; }

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Times one model, with the scan's states kept by the forward pass or recomputed by the backward pass
// (TrainWorkspace::keep_scan_states); returns its peak memory in GB (0 with `once`).
double bench_model(const std::string& name, int64_t rows_override, bool keep_states, bool once, Context& ctx) {
  const Anchor& a = kAnchors.at(name);
  const MambaConfig cfg = preset_config(name);
  const size_t base = device_memory_use().in_use;
  reset_device_memory_peak();
  TrainableModel model(ModelWeights::random(cfg, DType::f32, 1), Device::cuda, DType::bf16, AdamWOptions{}, ctx);
  TrainWorkspace ws(Device::cuda);
  ws.rows_per_pass = rows_override > 0 ? rows_override : a.rows;
  ws.keep_scan_states = keep_states;
  const int64_t b = a.batch, v = cfg.vocab_size;
  std::vector<int32_t> ids(size_t(b * kLen));
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = int32_t((i * 104729 + 7919) % size_t(v));

  double loss = 0;
  const auto step = [&] {
    model.grads().zero(ctx);
    loss = lm_loss(&model.grads(), model.compute(), ids.data(), b, kLen, ws, ctx);
    model.step(1e-4, model.clip_gradients(1.0, 1.0f, ctx).scale, ctx);
    synchronize(ctx);
  };
  if (once) {  // a single step, for a kernel profiler
    step();
    std::printf("one step of Mamba-%s done, loss %.4f\n", name.c_str(), loss);
    return 0;
  }
  std::vector<double> times, fwd;
  for (int i = 0; i < 11; ++i) {
    const double t0 = now_s();
    step();
    if (i >= 3) times.push_back(now_s() - t0);
  }
  const double peak = gb(device_memory_use().peak) - gb(base);
  for (int i = 0; i < 5; ++i) {
    const double t0 = now_s();
    lm_loss(nullptr, model.compute(), ids.data(), b, kLen, ws, ctx);
    synchronize(ctx);
    fwd.push_back(now_s() - t0);
  }
  const double ms = median(times) * 1e3, tok_s = double(b * kLen) / (ms / 1e3);
  // Matrix work per step: 2·params·tokens forward, twice that backward (the tied embedding counted once, as
  // the head's product; the vectors' share is negligible).
  const double flops = 6.0 * double(model.master().parameter_count()) * double(b * kLen);
  std::printf("| Mamba-%s%s | %lld x %lld | %lld | %.1f ms | %.1fK | %.0f ms | %.1fK | %.2fx | %.1f ms | %.1f GB | %.1f GB | "
              "%.0f%% | %.3f |\n",
              name.c_str(), keep_states ? "" : " (states recomputed)", (long long)b, (long long)kLen, (long long)ws.rows_per_pass, ms, tok_s / 1e3, a.step_ms,
              a.tok_s / 1e3, tok_s / a.tok_s, median(fwd) * 1e3, peak, a.peak_gb,
              100.0 * flops / (ms / 1e3) / (kTensorTflops * 1e12), loss);
  std::fflush(stdout);
  return peak;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    std::vector<std::string> names;
    int64_t rows = 0;
    bool once = false;
    std::string states = "auto";
    for (int i = 1; i < argc; ++i) {
      const std::string arg = argv[i];
      if (arg == "--once") {
        once = true;
      } else if (arg == "--states" && i + 1 < argc && (std::string(argv[i + 1]) == "keep" ||
                                                        std::string(argv[i + 1]) == "recompute")) {
        states = argv[++i];
      } else if (arg == "--rows" && i + 1 < argc) {
        rows = std::atoll(argv[++i]);
      } else if (kAnchors.count(arg)) {
        names.push_back(arg);
      } else {
        std::fprintf(stderr,
                     "train_bench: unknown argument '%s' (models: 130m, 370m, 1.4b; --rows N; --states keep|recompute; "
                     "--once)\n",
                     arg.c_str());
        return 1;
      }
    }
    if (names.empty()) names = {"130m", "370m", "1.4b"};
    cudaDeviceProp prop{};
    if (cudaGetDeviceProperties(&prop, 0) != cudaSuccess) {
      std::fprintf(stderr, "train_bench: no CUDA device\n");
      return 1;
    }
    std::printf("device: %s; training step = zero grads, forward + backward (bf16 matrices, f32 elsewhere), clip 1.0, "
                "AdamW (f32 masters); median of 8 steps after 3 warm-up\n\n",
                prop.name);
    std::printf("| model | batch x L | rows/group | step | tok/s | mamba_ssm step | mamba_ssm tok/s | ratio | forward only | "
                "peak GPU mem | mamba_ssm peak | tensor-core share | loss |\n");
    std::printf("|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    Context ctx(0);
    cuda_state(ctx);  // cuBLASLt's workspace allocated before any memory count is taken: the column leaves it out
    for (const std::string& n : names) {
      // The way asked for, or the faster one, then (auto) the leaner one if the peak is above the reference's.
      const double peak = bench_model(n, rows, states != "recompute", once, ctx);
      if (states == "auto" && !once && peak > kAnchors.at(n).peak_gb) bench_model(n, rows, false, once, ctx);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "train_bench: %s\n", e.what());
    return 1;
  }
  return 0;
}
