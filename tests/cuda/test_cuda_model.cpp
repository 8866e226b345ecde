// The Mamba-1 LM on the GPU against the CPU, on the golden checkpoints: logits of every position (f32 and half
// matrices, one pass and chunked), decoding steps from the device step (as generation runs them), greedy
// continuations identical to the CPU's with and without the recorded graph, prompts of different lengths in
// one batch, sampling from the GPU's logits, and the error for mixed devices.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "core/context.h"
#include "core/cuda/device_memory.h"
#include "cuda/cuda_test_util.h"
#include "infer/generate.h"
#include "model/lm.h"
#include "model/loader.h"
#include "ops/ops.h"
#include "support/golden_model.h"
#include "support/test_util.h"

namespace mambacpp::test {
namespace {

// Logits (b, l, v) of `ids` (b sequences of one length) from a zero state, on the device of `w`; the output is
// poisoned with NaN first.
std::vector<float> forward_all(const ModelWeights& w, const std::vector<std::vector<int32_t>>& ids, int64_t chunk,
                               Context& ctx) {
  const Device dev = w.embedding.device;
  const int64_t b = int64_t(ids.size()), l = int64_t(ids[0].size()), v = w.config.vocab_size;
  std::vector<int32_t> flat;
  for (const auto& row : ids) flat.insert(flat.end(), row.begin(), row.end());
  Buffer logits(size_t(b * l * v) * sizeof(float), dev);
  std::vector<float> out(size_t(b * l * v), std::nanf(""));
  copy_memory(logits.data(), dev, out.data(), Device::cpu, logits.bytes());
  RecurrentState state(w.config, b, dev);
  Workspace ws(dev);
  ForwardOptions fo;
  fo.logits_for = LogitsFor::all_positions;
  fo.chunk = chunk;
  lm_forward(Tensor(logits.data(), DType::f32, {b, l, v}, dev), state, w, flat.data(), l, fo, ws, ctx);
  copy_memory(out.data(), Device::cpu, logits.data(), dev, logits.bytes());
  return out;
}

class CudaModelTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override { SKIP_WITHOUT_GPU(); }
  GoldenModel g{GetParam()};
  Context ctx{2};
  ModelWeights cpu = load_model(g.dir, DType::f32);
};

TEST_P(CudaModelTest, LogitsMatchCpu) {
  const ModelWeights gpu = cpu.to_device(Device::cuda, DType::f32);
  for (size_t i = 0; i < g.expected["logits"].size(); ++i) {
    const auto ids = g.input_ids(i);
    const auto ref = forward_all(cpu, ids, 256, ctx);
    for (int64_t chunk : {256, 5}) {
      const auto got = forward_all(gpu, ids, chunk, ctx);
      EXPECT_CLOSE(got.data(), ref.data(), ref.size(), 1e-4) << "case " << i << " chunk " << chunk;
    }
    const auto golden = g.logits(i);
    const auto got = forward_all(gpu, ids, 256, ctx);
    EXPECT_CLOSE(got.data(), golden.data(), golden.size(), 1e-4) << "case " << i << " vs transformers";
  }
}

// Half matrices: chunks of more than kLinearFewRows rows (the norm, the conv and the scan write the products'
// inputs in the matrices' dtype) and of fewer (f32 inputs, the few-row product).
TEST_P(CudaModelTest, HalfMatricesStayClose) {
  const auto ids = g.input_ids(0);
  ASSERT_GT(int64_t(ids.size() * ids[0].size()), kLinearFewRows);
  const auto ref = forward_all(cpu, ids, 256, ctx);
  for (DType t : {DType::bf16, DType::f16})
    for (int64_t chunk : {int64_t(256), std::max<int64_t>(1, kLinearFewRows / int64_t(ids.size()))}) {
      const auto got = forward_all(cpu.to_device(Device::cuda, t), ids, chunk, ctx);
      EXPECT_CLOSE(got.data(), ref.data(), ref.size(), 3e-2) << dtype_name(t) << " chunk " << chunk;
    }
}

// lm_step_device over ids already on the GPU equals lm_forward one token at a time on the CPU.
TEST_P(CudaModelTest, DeviceStepsMatchCpuSteps) {
  const ModelWeights gpu = cpu.to_device(Device::cuda, DType::f32);
  const auto ids = g.input_ids(0);
  const int64_t b = int64_t(ids.size()), l = int64_t(ids[0].size()), v = cpu.config.vocab_size;
  RecurrentState cs(cpu.config, b), gs(cpu.config, b, Device::cuda);
  Workspace cw, gw(Device::cuda);
  gw.reserve(cpu.config, b);
  Buffer glog(size_t(b * v) * 4, Device::cuda), gids(size_t(b) * 4, Device::cuda);
  std::vector<float> ref(static_cast<size_t>(b * v)), got(static_cast<size_t>(b * v));
  for (int64_t t = 0; t < l; ++t) {
    std::vector<int32_t> tok(static_cast<size_t>(b));
    for (int64_t bi = 0; bi < b; ++bi) tok[size_t(bi)] = ids[size_t(bi)][size_t(t)];
    lm_forward(Tensor(ref.data(), DType::f32, {b, v}), cs, cpu, tok.data(), 1, ForwardOptions{}, cw, ctx);
    copy_memory(gids.data(), Device::cuda, tok.data(), Device::cpu, size_t(b) * 4);
    lm_step_device(Tensor(glog.data(), DType::f32, {b, v}, Device::cuda), gs, gpu, gids.as<int32_t>(), gw, ctx);
    copy_memory(got.data(), Device::cpu, glog.data(), Device::cuda, glog.bytes());
    EXPECT_CLOSE(got.data(), ref.data(), ref.size(), 1e-4) << "step " << t;
  }
}

TEST_P(CudaModelTest, GreedyContinuationEqualsCpu) {
  const ModelWeights gpu = cpu.to_device(Device::cuda, DType::f32);
  GenerateOptions o;
  o.max_new_tokens = 24;
  o.sampling.temperature = 0.0f;
  // Three prompts of different lengths: prefilled one by one, decoded together.
  const std::vector<std::vector<int32_t>> prompts = {{1, 2, 3, 4, 5}, {7, 8}, {11, 12, 13, 14, 15, 16, 17, 18, 19}};
  const auto ref = generate(cpu, prompts, o, nullptr, nullptr, ctx);
  // Both decoding steps: the fused one-launch step (the default at these batches) and lm_step_device.
  for (bool fused : {true, false})
    for (bool graph : {true, false}) {
      o.cuda_graph = graph, o.fused_step = fused;
      const std::string how = std::string(graph ? "graph" : "no graph") + (fused ? ", fused step" : ", op by op");
      EXPECT_EQ(generate(gpu, prompts, o, nullptr, nullptr, ctx), ref) << how;
      EXPECT_EQ(generate(gpu, {prompts[0], prompts[0]}, o, nullptr, nullptr, ctx),
                (std::vector<std::vector<int32_t>>{ref[0], ref[0]}))
          << "same-length batch, " << how;
    }
  o.fused_step = true;
  // Greedy with a repetition penalty: chosen on the GPU from its logits, as the CPU chooses.
  o.sampling.repetition_penalty = 1.3f;
  EXPECT_EQ(generate(gpu, prompts, o, nullptr, nullptr, ctx), generate(cpu, prompts, o, nullptr, nullptr, ctx));
}

TEST_P(CudaModelTest, MixedDevicesAreAnError) {
  const ModelWeights gpu = cpu.to_device(Device::cuda, DType::f32);
  RecurrentState state(cpu.config, 1);
  Workspace ws;
  const int64_t v = cpu.config.vocab_size;
  Buffer logits(size_t(v) * 4, Device::cuda);
  const int32_t id = 1;
  expect_error(
      [&] {
        lm_forward(Tensor(logits.data(), DType::f32, {1, v}, Device::cuda), state, gpu, &id, 1, ForwardOptions{}, ws,
                   ctx);
      },
      {"must share one device"});
}

INSTANTIATE_TEST_SUITE_P(Golden, CudaModelTest, ::testing::ValuesIn(golden_model_names()));

}  // namespace
}  // namespace mambacpp::test
