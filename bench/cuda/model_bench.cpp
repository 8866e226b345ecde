// End-to-end benchmark of the Mamba-1 LM on the GPU at the shapes of ANCHORS.md §2: Mamba-130M and Mamba-1.4B
// (src/model/presets.h): random weights and prefill activations in bf16, greedy generation of 128 tokens after a
// 2,048-token prompt at batch 1, 16 and 64 (the whole call timed, prompt included, as mamba_ssm's generate was),
// the prefill alone, the decoding latency per token with and without the recorded CUDA graph, and the GPU memory
// of each call as the allocator counts it (device_memory_use: Buffers, the ops' scratch included; not the CUDA
// context or cuBLASLt's workspace): its peak, weights included, and what it holds after the call (the weights).
// Before timing it checks that the GPU's greedy continuation of a short prompt equals the CPU's.
// Prints markdown tables with mamba_ssm's numbers beside ours.
//
// Usage: model_bench [--decode] [130m|1.4b ...]   (default: both; --decode: the check and the decoding table only)
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <exception>
#include <map>
#include <string>
#include <vector>

#include "core/context.h"
#include "core/cuda/cuda_state.h"
#include "core/cuda/device_memory.h"
#include "infer/generate.h"
#include "model/lm.h"
#include "model/lm_step_fused.h"
#include "model/presets.h"

namespace {

using namespace mambacpp;

constexpr int64_t kPrompt = 2048, kNew = 128;

// ANCHORS.md §2: mamba_ssm 2.3.2.post1 generate(cg=True), H100 80GB HBM3, 2026-11-22.
struct Anchor {
  std::map<int64_t, double> gen_tok_s;  // by batch: batch·128 / whole-call seconds
  double prefill_b1_ms, prefill_b64_ms, decode_ms;
};
const std::map<std::string, Anchor> kAnchors = {
    {"130m", {{{1, 876}, {16, 10084}, {64, 20135}}, 18.3, 259, 1.0}},
    {"1.4b", {{{1, 311}, {16, 2525}, {64, 3904}}, 31.1, 1591, 3.0}},
};

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Bytes above `base`, in GiB.
double gib_above(size_t bytes, size_t base) { return bytes > base ? double(bytes - base) / double(1 << 30) : 0.0; }

std::vector<std::vector<int32_t>> prompts(int64_t b, int64_t l, int64_t v) {
  std::vector<std::vector<int32_t>> p(static_cast<size_t>(b), std::vector<int32_t>(static_cast<size_t>(l)));
  for (int64_t i = 0; i < b; ++i)
    for (int64_t t = 0; t < l; ++t) p[size_t(i)][size_t(t)] = int32_t((i * 7919 + t * 104729) % v);
  return p;
}

GenerateOptions greedy(int64_t n, int64_t b, bool graph) {
  GenerateOptions o;
  o.max_new_tokens = n;
  o.sampling.temperature = 0.0f;
  o.eos_id = -1;
  o.chunk = std::max<int64_t>(256, 32768 / b);
  o.cuda_graph = graph;
  return o;
}

// The GPU's greedy continuation (f32 matrices) equals the CPU's on a short prompt of this model shape.
bool check(const ModelWeights& host, Context& ctx) {
  const ModelWeights gpu = host.to_device(Device::cuda, DType::f32);
  const auto p = prompts(2, 12, host.config.vocab_size);
  const auto o = greedy(8, 2, true);
  return generate(gpu, p, o, nullptr, nullptr, ctx) == generate(host, p, o, nullptr, nullptr, ctx);
}

// The whole generate() call at batch 1, 16 and 64, and the prefill alone.
void bench_calls(const ModelWeights& w, int64_t v, const Anchor& a, size_t base, Context& ctx) {
  std::printf("\n| batch | ours: whole call | ours tok/s | mamba_ssm tok/s | ratio | prefill | decode/token | peak GPU mem | held |\n");
  std::printf("|---|---|---|---|---|---|---|---|---|\n");
  for (int64_t b : {1, 16, 64}) {
    const auto p = prompts(b, kPrompt, v);
    GenerateStats st;
    double best = 1e30, peak = 0, held = 0;
    for (int rep = 0; rep < 2; ++rep) {
      reset_device_memory_peak();
      const double t0 = now_s();
      generate(w, p, greedy(kNew, b, true), nullptr, &st, ctx);
      best = std::min(best, now_s() - t0);
      const DeviceMemoryUse use = device_memory_use();
      peak = std::max(peak, gib_above(use.peak, base));
      held = gib_above(use.in_use, base);
    }
    const double tok_s = double(b * kNew) / best, ref = a.gen_tok_s.at(b);
    std::printf("| %lld | %.1f ms | %.0f | %.0f | %.2fx | %.1f ms | %.3f ms | %.2f GiB | %.2f GiB |\n", (long long)b,
                best * 1e3, tok_s, ref, tok_s / ref, st.prompt_seconds * 1e3,
                st.generate_seconds * 1e3 / double(kNew - 1), peak, held);
  }

  std::printf("\n| prefill (one forward, logits of the last position) | ours | mamba_ssm | ratio |\n|---|---|---|---|\n");
  for (int64_t b : {1, 64}) {
    const auto p = prompts(b, kPrompt, v);
    GenerateStats st;
    double best = 1e30;
    for (int rep = 0; rep < 3; ++rep) {
      generate(w, p, greedy(0, b, true), nullptr, &st, ctx);
      best = std::min(best, st.prompt_seconds);
    }
    const double ref = b == 1 ? a.prefill_b1_ms : a.prefill_b64_ms;
    std::printf("| batch %lld x %lld | %.1f ms (%.0fK tok/s) | %.1f ms | %.2fx |\n", (long long)b, (long long)kPrompt,
                best * 1e3, double(b * kPrompt) / best / 1e3, ref, ref / (best * 1e3));
  }

}

// Decoding latency: the fused one-launch step (what generate() uses up to kFusedStepMaxBatch) against the unfused
// step, both replayed as graphs, and the unfused step launched op by op.
void bench_decode(const ModelWeights& w, int64_t v, const Anchor& a, Context& ctx) {
  std::printf("\n| decode | batch | ms/token | mamba_ssm | ratio |\n|---|---|---|---|---|\n");
  const auto decode_ms = [&](int64_t b, bool graph, bool fused) {
    GenerateStats st;
    auto o = greedy(kNew + 1, b, graph);
    o.fused_step = fused;
    generate(w, prompts(b, 16, v), o, nullptr, &st, ctx);
    return st.generate_seconds * 1e3 / double(kNew);
  };
  for (int64_t b : {1, 2, 4, 8, 16})
    for (int how = 0; how < 3; ++how) {
      if (how == 2 && b != 1) continue;
      const bool fused = how == 0, graph = how < 2;
      if (fused && b > kFusedStepMaxBatch) continue;
      const double ms = decode_ms(b, graph, fused);
      const char* name = fused ? "fused step, CUDA graph" : graph ? "op by op, CUDA graph" : "op by op";
      if (b == 1)
        std::printf("| %s | 1 | %.3f | %.1f | %.2fx |\n", name, ms, a.decode_ms, a.decode_ms / ms);
      else
        std::printf("| %s | %lld | %.3f | - | - |\n", name, (long long)b, ms);
    }
}

void bench_model(const std::string& name, bool decode_only, Context& ctx) {
  const Anchor& a = kAnchors.at(name);
  const MambaConfig cfg = preset_config(name);
  const size_t base = device_memory_use().in_use;  // before the weights: the columns count them
  const ModelWeights host = ModelWeights::random(cfg, DType::bf16, 1);
  std::printf("\n### Mamba-%s (d %lld, %lld layers), random weights, bf16 matrices\n", name.c_str(),
              (long long)cfg.d_model, (long long)cfg.n_layer);
  std::printf("check: GPU greedy continuation (f32) == CPU: %s\n", check(host, ctx) ? "yes" : "NO");
  const ModelWeights w = host.to_device(Device::cuda, DType::bf16);
  const int64_t v = cfg.vocab_size;
  generate(w, prompts(1, 64, v), greedy(4, 1, true), nullptr, nullptr, ctx);  // warm-up
  if (!decode_only) bench_calls(w, v, a, base, ctx);
  bench_decode(w, v, a, ctx);
}

}  // namespace

int main(int argc, char** argv) {
  try {
    std::vector<std::string> names;
    bool decode_only = false;
    for (int i = 1; i < argc; ++i) {
      if (std::string(argv[i]) == "--decode")
        decode_only = true;
      else
        names.emplace_back(argv[i]);
    }
    if (names.empty()) names = {"130m", "1.4b"};
    cudaDeviceProp prop{};
    if (cudaGetDeviceProperties(&prop, 0) != cudaSuccess) {
      std::fprintf(stderr, "model_bench: no CUDA device\n");
      return 1;
    }
    std::printf("device: %s; prompt %lld + %lld generated tokens, greedy\n", prop.name, (long long)kPrompt,
                (long long)kNew);
    Context ctx(0);
    cuda_state(ctx);  // cuBLASLt's workspace allocated before any memory count is taken: the columns leave it out
    for (const std::string& n : names) bench_model(n, decode_only, ctx);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "model_bench: %s\n", e.what());
    return 1;
  }
  return 0;
}
