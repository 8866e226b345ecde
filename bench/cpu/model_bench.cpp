// CPU model benchmark (see model_bench.h). Each case: one untimed warm-up, then `reps` timed runs; the median
// is reported. Prefill runs the whole prompt from a zero state and computes the last position's logits, as a
// generation does; decode times single-token steps from a zero state, greedy.
#include "model_bench.h"

#include <algorithm>
#include <chrono>
#include <nlohmann/json.hpp>

#include "core/context.h"
#include "core/error.h"
#include "hw_probe.h"
#include "infer/sampler.h"
#include "model/lm.h"
#include "model/presets.h"

namespace mambacpp::bench {

namespace {

double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : 0.5 * (v[v.size() / 2 - 1] + v[v.size() / 2]);
}

// Useful FLOPs per prompt token: the layers' matrix products (2 per multiply-add) and the scan's
// discretisation, recurrence and contraction (about 7 per state element), plus the head once per prompt.
double flops_per_token(const MambaConfig& c) {
  const double d = double(c.d_model), e = double(c.d_inner), n = double(c.d_state), r = double(c.dt_rank);
  const double matrices = d * 2 * e + e * (r + 2 * n) + r * e + e * d;
  return double(c.n_layer) * (2 * matrices + 7 * e * n);
}

double time_prefill(const ModelWeights& w, const std::vector<int32_t>& ids, Context& ctx) {
  RecurrentState state(w.config, 1);
  Workspace ws;
  std::vector<float> logits(size_t(w.config.vocab_size));
  ForwardOptions fo;
  fo.chunk = 512;
  const double t0 = now();
  lm_forward(Tensor(logits.data(), DType::f32, {1, w.config.vocab_size}), state, w, ids.data(), int64_t(ids.size()),
             fo, ws, ctx);
  return now() - t0;
}

double time_decode(const ModelWeights& w, int64_t steps, Context& ctx) {
  RecurrentState state(w.config, 1);
  Workspace ws;
  std::vector<float> logits(size_t(w.config.vocab_size));
  int32_t tok = 0;
  const double t0 = now();
  for (int64_t i = 0; i < steps; ++i) {
    lm_forward(Tensor(logits.data(), DType::f32, {1, w.config.vocab_size}), state, w, &tok, 1, ForwardOptions{}, ws, ctx);
    tok = argmax(logits.data(), w.config.vocab_size);
  }
  return (now() - t0) / double(steps);
}

template <typename F>
double median_of(int reps, F&& run) {
  run();  // warm-up
  std::vector<double> t;
  for (int i = 0; i < reps; ++i) t.push_back(run());
  return median(t);
}

}  // namespace

HardwareCeilings measure_ceilings(int threads) {
  return {measure_fma_peak(threads), measure_read_bandwidth(threads)};
}

std::vector<ModelBenchRow> run_model_bench(const ModelBenchOptions& opt, const HardwareCeilings& hw) {
  MAMBA_CHECK(opt.reps >= 1, "--reps must be >= 1, got {}", opt.reps);
  MAMBA_CHECK(opt.decode >= 0, "--decode must be >= 0, got {}", opt.decode);
  for (int64_t p : opt.prompts) MAMBA_CHECK(p >= 1, "--prompts: {} is not a prompt length", p);
  Context ctx(opt.threads);
  std::vector<ModelBenchRow> rows;
  for (const std::string& name : opt.models) {
    const MambaConfig cfg = preset_config(name);
    for (DType dt : opt.dtypes) {
      const ModelWeights w = ModelWeights::random(cfg, dt, 1234);
      ModelBenchRow base;
      base.model = name;
      base.dtype = dtype_name(dt);
      base.params = w.parameter_count();
      base.weight_gib = double(w.weight_bytes()) / double(1 << 30);
      base.threads = ctx.threads();
      for (int64_t p : opt.prompts) {
        std::vector<int32_t> ids(static_cast<size_t>(p));
        for (int64_t i = 0; i < p; ++i) ids[size_t(i)] = int32_t((i * 2654435761u) % uint64_t(cfg.vocab_size));
        ModelBenchRow r = base;
        r.test = "pp" + std::to_string(p);
        r.median_s = median_of(opt.reps, [&] { return time_prefill(w, ids, ctx); });
        r.tokens_per_s = double(p) / r.median_s;
        r.gflops = (flops_per_token(cfg) * double(p) + 2.0 * double(cfg.d_model * cfg.vocab_size)) / r.median_s / 1e9;
        r.fraction = r.gflops * 1e9 / hw.fma_flops;
        rows.push_back(r);
      }
      if (opt.decode > 0) {
        ModelBenchRow r = base;
        r.test = "tg" + std::to_string(opt.decode);
        r.median_s = median_of(opt.reps, [&] { return time_decode(w, opt.decode, ctx); });
        r.tokens_per_s = 1.0 / r.median_s;
        r.gbps = double(w.weight_bytes()) / r.median_s / 1e9;
        r.fraction = r.gbps * 1e9 / hw.read_bytes;
        rows.push_back(r);
      }
    }
  }
  return rows;
}

std::string format_markdown(const std::vector<ModelBenchRow>& rows, const HardwareCeilings& hw) {
  std::string s = fmt::format(
      "CPU ceilings measured now: f32 FMA peak {:.1f} GFLOP/s, memory read bandwidth {:.1f} GB/s\n\n"
      "| model | params | weights | threads | test | median | tokens/s | achieved | of limit |\n"
      "|---|---:|---:|---:|---|---:|---:|---:|---:|\n",
      hw.fma_flops / 1e9, hw.read_bytes / 1e9);
  for (const auto& r : rows) {
    const bool pp = r.test.rfind("pp", 0) == 0;
    s += fmt::format("| {} | {:.1f}M | {} {:.2f} GiB | {} | {} | {:.2f} ms{} | {:.1f} | {} | {:.0f} % {} |\n", r.model,
                     double(r.params) / 1e6, r.dtype, r.weight_gib, r.threads, r.test, r.median_s * 1e3,
                     pp ? "" : "/token", r.tokens_per_s,
                     pp ? fmt::format("{:.1f} GFLOP/s", r.gflops) : fmt::format("{:.1f} GB/s", r.gbps),
                     r.fraction * 100, pp ? "FMA peak" : "bandwidth");
  }
  return s;
}

std::string format_json(const std::vector<ModelBenchRow>& rows, const HardwareCeilings& hw) {
  nlohmann::json j;
  j["device"] = "cpu";
  j["fma_peak_gflops"] = hw.fma_flops / 1e9;
  j["read_bandwidth_gbps"] = hw.read_bytes / 1e9;
  for (const auto& r : rows)
    j["rows"].push_back({{"model", r.model}, {"dtype", r.dtype}, {"test", r.test}, {"params", r.params},
                         {"weight_gib", r.weight_gib}, {"threads", r.threads}, {"median_s", r.median_s},
                         {"tokens_per_s", r.tokens_per_s}, {"gflops", r.gflops}, {"gbps", r.gbps},
                         {"fraction_of_limit", r.fraction}});
  return j.dump(1);
}

}  // namespace mambacpp::bench
