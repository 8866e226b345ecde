// `mambacpp forward`: the logits of every position of one sequence, as JSON {"logits": [[...], ...]}, each
// float printed in its shortest form that reads back to the same value. --device cuda runs the model on the GPU
// (matrices in --dtype; activations in that dtype unless --f32-activations, as lm.h says; state in f32).
#include <cstdio>

#include "cli_util.h"
#include "commands.h"
#include "core/cuda/device_info.h"
#include "core/cuda/device_memory.h"
#include "core/error.h"
#include "model/lm.h"
#include "model/loader.h"

namespace mambacpp::cli {

namespace {

struct ForwardCmdOptions {
  std::string model, ids;
  std::string device = "cpu";
  RunOptions run;
};

void run_forward(const ForwardCmdOptions& o) {
  MAMBA_CHECK(o.device == "cpu" || o.device == "cuda", "--device must be cpu or cuda, got {}", o.device);
  const Device dev = o.device == "cuda" ? Device::cuda : Device::cpu;
  if (dev == Device::cuda) require_cuda_device();
  Context ctx(o.run.threads);
  const std::vector<int32_t> ids = parse_ids(o.ids, "--ids");
  ModelWeights w = load_model(o.model, o.run.matrix_dtype());
  if (dev != Device::cpu) w = w.to_device(dev, o.run.matrix_dtype());
  const int64_t l = int64_t(ids.size()), v = w.config.vocab_size;
  Buffer logits(size_t(l * v) * sizeof(float), dev);
  RecurrentState state(w.config, 1, dev);
  Workspace ws(dev);
  ForwardOptions fo;
  fo.logits_for = LogitsFor::all_positions;
  fo.half_activations = !o.run.f32_activations;
  lm_forward(Tensor(logits.data(), DType::f32, {1, l, v}, dev), state, w, ids.data(), l, fo, ws, ctx);
  std::vector<float> host(size_t(l * v));
  copy_memory(host.data(), Device::cpu, logits.data(), dev, logits.bytes());
  std::string out = "{\"logits\": [";
  const float* p = host.data();
  for (int64_t t = 0; t < l; ++t) {
    out += t ? ", [" : "[";
    for (int64_t j = 0; j < v; ++j) {
      if (j) out += ", ";
      out += fmt::format("{}", p[t * v + j]);
    }
    out += "]";
  }
  out += "]}\n";
  std::fwrite(out.data(), 1, out.size(), stdout);
}

}  // namespace

void add_forward_command(CLI::App& app) {
  auto o = std::make_shared<ForwardCmdOptions>();
  CLI::App* cmd = app.add_subcommand("forward", "Print the logits of every position of a token sequence as JSON");
  cmd->add_option("-m,--model", o->model, "model folder (config.json, model.safetensors)")->required();
  cmd->add_option("--ids", o->ids, "comma-separated token ids")->required();
  cmd->add_option("--device", o->device, "cpu or cuda")->capture_default_str();
  o->run.add_to(*cmd);
  cmd->callback([o] { run_forward(*o); });
}

}  // namespace mambacpp::cli
