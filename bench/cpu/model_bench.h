// The CPU model benchmark behind `mambacpp bench`: prefill (pp) and decode (tg) throughput of named model
// shapes with random weights, in the manner of llama-bench, with the fraction of the measured FMA peak
// (prefill) and of the memory-bandwidth floor (decode).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/dtype.h"

namespace mambacpp::bench {

struct ModelBenchOptions {
  std::vector<std::string> models = {"130m", "1.4b"};
  std::vector<DType> dtypes = {DType::f32, DType::bf16};
  std::vector<int64_t> prompts = {512, 2048};
  int64_t decode = 128;
  int reps = 3;
  int threads = 0;
};

struct ModelBenchRow {
  std::string model, dtype, test;  // test: "pp512", "tg128"
  int64_t params = 0;
  double weight_gib = 0;
  int threads = 0;
  double median_s = 0;             // one prompt, or one decoded token
  double tokens_per_s = 0;
  double gflops = 0;               // prefill: useful FLOPs per second / 1e9
  double gbps = 0;                 // decode: weight bytes per second / 1e9
  double fraction = 0;             // of the FMA peak (pp) or of the bandwidth floor (tg)
};

struct HardwareCeilings {
  double fma_flops = 0;        // f32 FLOP/s
  double read_bytes = 0;       // B/s
};

HardwareCeilings measure_ceilings(int threads);
std::vector<ModelBenchRow> run_model_bench(const ModelBenchOptions& opt, const HardwareCeilings& hw);
std::string format_markdown(const std::vector<ModelBenchRow>& rows, const HardwareCeilings& hw);
std::string format_json(const std::vector<ModelBenchRow>& rows, const HardwareCeilings& hw);

}  // namespace mambacpp::bench
