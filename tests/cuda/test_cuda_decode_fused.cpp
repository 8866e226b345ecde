// The fused decoding step (lm_step_fused) against the general one (lm_step_device): the logits of several steps
// from the same state, on the golden checkpoints (f32 and bf16 matrices) and a random model of the Mamba-130M
// shape, at batch 1 and 3; greedy continuations with the fused step equal to the CPU's; and the limits the
// fused step refuses.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "core/context.h"
#include "core/cuda/device_memory.h"
#include "core/rng.h"
#include "cuda/cuda_test_util.h"
#include "infer/sampler.h"
#include "model/lm.h"
#include "model/lm_step_fused.h"
#include "model/loader.h"
#include "model/presets.h"
#include "ops/cuda/cuda_ops.h"
#include "support/golden_model.h"
#include "support/test_util.h"

namespace mambacpp::test {
namespace {

// Runs `steps` steps of random ids through both step functions from zero states; the logits must agree to tol.
void expect_same_steps(const ModelWeights& w, int64_t b, int64_t steps, double tol, Context& ctx) {
  std::string why;
  ASSERT_TRUE(lm_step_fused_supports(w, b, &why)) << why;
  const MambaConfig& c = w.config;
  const int64_t v = c.vocab_size;
  RecurrentState ref_state(c, b, Device::cuda), got_state(c, b, Device::cuda);
  Workspace ref_ws(Device::cuda), got_ws(Device::cuda);
  ref_ws.reserve(c, b), got_ws.reserve(c, b);
  Buffer ids(size_t(b) * 4, Device::cuda), ref_logits(size_t(b * v) * 4, Device::cuda),
      got_logits(size_t(b * v) * 4, Device::cuda);
  std::vector<float> ref(static_cast<size_t>(b * v)), got(static_cast<size_t>(b * v));
  Rng rng(uint64_t(b * 31 + v));
  for (int64_t t = 0; t < steps; ++t) {
    std::vector<int32_t> tok(static_cast<size_t>(b));
    for (auto& id : tok) id = int32_t(rng.below(uint64_t(v)));
    copy_memory(ids.data(), Device::cuda, tok.data(), Device::cpu, ids.bytes());
    ASSERT_EQ(cudaSuccess, cudaMemset(got_logits.data(), 0xff, got_logits.bytes()));
    lm_step_device(Tensor(ref_logits.data(), DType::f32, {b, v}, Device::cuda), ref_state, w, ids.as<int32_t>(),
                   ref_ws, ctx);
    lm_step_fused(Tensor(got_logits.data(), DType::f32, {b, v}, Device::cuda), got_state, w, ids.as<int32_t>(),
                  got_ws, ctx);
    copy_memory(ref.data(), Device::cpu, ref_logits.data(), Device::cuda, ref_logits.bytes());
    copy_memory(got.data(), Device::cpu, got_logits.data(), Device::cuda, got_logits.bytes());
    EXPECT_CLOSE(got.data(), ref.data(), ref.size(), tol) << "batch " << b << " step " << t;
  }
}

class CudaFusedStepTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override { SKIP_WITHOUT_GPU(); }
  GoldenModel g{GetParam()};
  Context ctx{2};
  ModelWeights cpu = load_model(g.dir, DType::f32);
};

TEST_P(CudaFusedStepTest, LogitsEqualTheGeneralStep) {
  for (int64_t b : {1, 3}) {
    expect_same_steps(cpu.to_device(Device::cuda, DType::f32), b, 8, 1e-5, ctx);
    expect_same_steps(cpu.to_device(Device::cuda, DType::bf16), b, 8, 1e-2, ctx);
    expect_same_steps(cpu.to_device(Device::cuda, DType::f16), b, 4, 1e-2, ctx);
  }
}

// Greedy decoding with the fused step (argmax on the GPU) continues a batch of prompts as the CPU does.
TEST_P(CudaFusedStepTest, GreedyContinuationEqualsCpu) {
  const ModelWeights gpu = cpu.to_device(Device::cuda, DType::f32);
  const MambaConfig& c = cpu.config;
  const int64_t b = 3, v = c.vocab_size, steps = 24;
  RecurrentState cs(c, b), gs(c, b, Device::cuda);
  Workspace cw, gw(Device::cuda);
  gw.reserve(c, b);
  Buffer glog(size_t(b * v) * 4, Device::cuda), gids(size_t(b) * 4, Device::cuda);
  std::vector<float> clog(static_cast<size_t>(b * v));
  std::vector<int32_t> cpu_ids = {1, 7, 11}, gpu_ids = cpu_ids;
  copy_memory(gids.data(), Device::cuda, gpu_ids.data(), Device::cpu, gids.bytes());
  for (int64_t t = 0; t < steps; ++t) {
    lm_forward(Tensor(clog.data(), DType::f32, {b, v}), cs, cpu, cpu_ids.data(), 1, ForwardOptions{}, cw, ctx);
    for (int64_t i = 0; i < b; ++i) cpu_ids[size_t(i)] = argmax(clog.data() + i * v, v);
    const Tensor logits(glog.data(), DType::f32, {b, v}, Device::cuda);
    lm_step_fused(logits, gs, gpu, gids.as<int32_t>(), gw, ctx);
    argmax_rows_cuda(gids.as<int32_t>(), logits, ctx);
    copy_memory(gpu_ids.data(), Device::cpu, gids.data(), Device::cuda, gids.bytes());
    ASSERT_EQ(gpu_ids, cpu_ids) << "step " << t;
  }
}

TEST_P(CudaFusedStepTest, RefusesWhatItDoesNotHandle) {
  std::string why;
  EXPECT_FALSE(lm_step_fused_supports(cpu, 1, &why));
  EXPECT_NE(why.find("cuda"), std::string::npos) << why;
  const ModelWeights gpu = cpu.to_device(Device::cuda, DType::f32);
  EXPECT_FALSE(lm_step_fused_supports(gpu, 9, &why));
  EXPECT_NE(why.find("batch 9"), std::string::npos) << why;
}

INSTANTIATE_TEST_SUITE_P(Golden, CudaFusedStepTest, ::testing::ValuesIn(golden_model_names()));

// Random weights of the Mamba-130M shape (d 768, e 1536, n 16, r 48, 24 layers, v 50,280).
TEST(CudaFusedStep, MambaShapedModel) {
  SKIP_WITHOUT_GPU();
  Context ctx{2};
  const ModelWeights host = ModelWeights::random(preset_config("130m"), DType::f32, 3);
  for (int64_t b : {1, 3}) {
    expect_same_steps(host.to_device(Device::cuda, DType::f32), b, 4, 1e-5, ctx);
    expect_same_steps(host.to_device(Device::cuda, DType::bf16), b, 4, 1e-2, ctx);
  }
  expect_same_steps(host.to_device(Device::cuda, DType::bf16), 8, 3, 1e-2, ctx);
}

}  // namespace
}  // namespace mambacpp::test
