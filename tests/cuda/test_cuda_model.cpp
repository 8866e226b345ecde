// The Mamba-1 LM on the GPU against the CPU, on the golden checkpoints: logits of every position (f32 and half
// matrices, one pass and chunked), decoding steps from the device step (as generation runs them), greedy
// continuations identical to the CPU's with and without the recorded graph, prompts of different lengths in
// one batch, sampling from the GPU's logits, and the error for mixed devices. On random models, the prefill with
// half activations against f32 activations.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "core/context.h"
#include "core/cuda/device_memory.h"
#include "cuda/cuda_test_util.h"
#include "infer/generate.h"
#include "model/lm.h"
#include "model/loader.h"
#include "model/presets.h"
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

// Half matrices: chunks of more than kLinearFewRows rows (the tied model holds the mixer's activations in the
// matrices' dtype; the untied one, with an in_proj bias, has the norm, the conv and the scan write the products'
// inputs in it) and of fewer (f32 activations, the few-row product).
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

// A prefill on the GPU: the logits of every position and the state after them (each layer's conv state, then
// each layer's SSM state).
struct Prefill {
  std::vector<float> logits, conv, ssm;
};

// `ids` (b sequences of one length, row-major) from a zero state with the given options; the logits are
// poisoned with NaN first.
Prefill prefill_on_gpu(const ModelWeights& w, const std::vector<int32_t>& ids, int64_t b, const ForwardOptions& fo,
                       Context& ctx) {
  const int64_t l = int64_t(ids.size()) / b, v = w.config.vocab_size;
  Prefill p;
  p.logits.assign(size_t(b * l * v), std::nanf(""));
  Buffer logits(p.logits.size() * sizeof(float), Device::cuda);
  copy_memory(logits.data(), Device::cuda, p.logits.data(), Device::cpu, logits.bytes());
  RecurrentState state(w.config, b, Device::cuda);
  Workspace ws(Device::cuda);
  lm_forward(Tensor(logits.data(), DType::f32, {b, l, v}, Device::cuda), state, w, ids.data(), l, fo, ws, ctx);
  copy_memory(p.logits.data(), Device::cpu, logits.data(), Device::cuda, logits.bytes());
  for (int64_t i = 0; i < w.config.n_layer; ++i)
    for (auto [t, out] : {std::pair{state.conv(i), &p.conv}, std::pair{state.ssm(i), &p.ssm}}) {
      std::vector<float> h(size_t(t.numel()));
      copy_memory(h.data(), Device::cpu, t.data, Device::cuda, t.nbytes());
      out->insert(out->end(), h.begin(), h.end());
    }
  return p;
}

// The prefill with its mixer activations in the matrices' half dtype (ForwardOptions::half_activations) against
// the same prefill with f32 activations, both with bf16/f16 matrices: logits of every position and the state
// after them agree to the half tolerance above, in one chunk and in chunks of more than kLinearFewRows rows
// that carry the state; and they differ, so the half form was taken. Random S6 models without an in_proj bias:
// the tiny preset (channels multiples of 16) and an odd shape (e = 72, n = 5, r = 3, k = 3: rows of x_proj's
// output 13 elements long, read in place by dt_proj and the scan).
TEST(CudaModel, HalfActivationsMatchF32Activations) {
  SKIP_WITHOUT_GPU();
  Context ctx(2);
  MambaConfig odd;
  odd.d_model = 36, odd.n_layer = 2, odd.vocab_size = 100, odd.d_state = 5, odd.d_conv = 3, odd.dt_rank = 3;
  odd.fill_derived();
  odd.validate("the odd test shape");
  const int64_t b = 2, l = 40;
  for (const MambaConfig& cfg : {preset_config("tiny"), odd}) {
    const ModelWeights host = ModelWeights::random(cfg, DType::f32, 7);
    std::vector<int32_t> ids(size_t(b * l));
    for (size_t i = 0; i < ids.size(); ++i) ids[i] = int32_t((i * 37 + 11) % size_t(cfg.vocab_size));
    for (DType t : {DType::bf16, DType::f16}) {
      const ModelWeights gpu = host.to_device(Device::cuda, t);
      ForwardOptions fo;
      fo.logits_for = LogitsFor::all_positions;
      fo.half_activations = false;
      const Prefill ref = prefill_on_gpu(gpu, ids, b, fo, ctx);
      // one chunk of 80 rows; chunks of 7 tokens (14 rows, the last 10)
      for (int64_t chunk : {int64_t(256), int64_t(7)}) {
        SCOPED_TRACE("d=" + std::to_string(cfg.d_model) + " " + dtype_name(t) + " chunk " + std::to_string(chunk));
        ASSERT_GT(b * ((l - 1) % chunk + 1), kLinearFewRows) << "the last chunk takes the half form too";
        fo.chunk = chunk;
        fo.half_activations = true;
        const Prefill got = prefill_on_gpu(gpu, ids, b, fo, ctx);
        EXPECT_CLOSE(got.logits.data(), ref.logits.data(), ref.logits.size(), 3e-2) << "logits";
        EXPECT_CLOSE(got.conv.data(), ref.conv.data(), ref.conv.size(), 3e-2) << "conv state";
        EXPECT_CLOSE(got.ssm.data(), ref.ssm.data(), ref.ssm.size(), 3e-2) << "ssm state";
        EXPECT_NE(0, std::memcmp(got.logits.data(), ref.logits.data(), ref.logits.size() * sizeof(float)))
            << "the half form gave the f32 form's bits";
      }
    }
  }
}

}  // namespace
}  // namespace mambacpp::test
