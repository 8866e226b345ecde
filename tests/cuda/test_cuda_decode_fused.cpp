// The fused one-launch decoding step (FusedStep) against the general one (lm_step_device): the logits of several
// steps from the same state, on the golden checkpoints (f32, bf16 and f16 matrices), a random model of the
// Mamba-130M shape and one with Mamba-1.4B's layers, at batch 1 to 8; the same step recorded in a CUDA graph and
// replayed gives the same bits as the direct launches (the grid barrier is reused across launches and replays);
// greedy continuations with the fused step equal to the CPU's, its own greedy choice against a reference on its
// logits (ties, NaN); and the limits the fused step refuses.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "core/context.h"
#include "core/cuda/device_memory.h"
#include "core/error.h"
#include "core/rng.h"
#include "cuda/cuda_test_util.h"
#include "infer/sampler.h"
#include "model/lm.h"
#include "model/lm_step_fused.h"
#include "model/loader.h"
#include "model/presets.h"
#include "ops/cuda/cuda_ops.h"
#include "ops/cuda/decode_kernels.h"
#include "support/golden_model.h"
#include "support/test_util.h"

namespace mambacpp::test {
namespace {

// One sequence of decoding steps: a state, a workspace and logits on the GPU.
struct StepRun {
  StepRun(const ModelWeights& w, int64_t b)
      : state(w.config, b, Device::cuda), logits(size_t(b * w.config.vocab_size) * 4, Device::cuda) {
    ws.reserve(w.config, b);
  }
  Tensor out(int64_t b, int64_t v) { return Tensor(logits.data(), DType::f32, {b, v}, Device::cuda); }
  std::vector<float> host() {
    std::vector<float> h(logits.bytes() / 4);
    copy_memory(h.data(), Device::cpu, logits.data(), Device::cuda, logits.bytes());
    return h;
  }
  RecurrentState state;
  Workspace ws{Device::cuda};
  Buffer logits;
};

// Runs `steps` steps of random ids from zero states through lm_step_device, the fused step launched directly and
// the fused step replayed from a CUDA graph: the fused logits agree with the general step's to tol, and the two
// fused runs agree bit for bit.
void expect_same_steps(const ModelWeights& w, int64_t b, int64_t steps, double tol, Context& ctx) {
  std::string why;
  ASSERT_TRUE(FusedStep::supports(w, b, &why)) << why;
  const int64_t v = w.config.vocab_size;
  StepRun ref(w, b), got(w, b), replayed(w, b);
  FusedStep direct(w, got.state, got.ws, ctx), recorded(w, replayed.state, replayed.ws, ctx);
  Buffer ids(size_t(b) * 4, Device::cuda);
  StreamGraph graph;
  Rng rng(uint64_t(b * 31 + v));
  for (int64_t t = 0; t < steps; ++t) {
    std::vector<int32_t> tok(static_cast<size_t>(b));
    for (auto& id : tok) id = int32_t(rng.below(uint64_t(v)));
    copy_memory(ids.data(), Device::cuda, tok.data(), Device::cpu, ids.bytes());
    ASSERT_EQ(cudaSuccess, cudaMemset(got.logits.data(), 0xff, got.logits.bytes()));
    ASSERT_EQ(cudaSuccess, cudaMemset(replayed.logits.data(), 0xff, replayed.logits.bytes()));
    ASSERT_EQ(cudaSuccess, cudaDeviceSynchronize());  // the ops' non-blocking stream does not wait for the memsets
    lm_step_device(ref.out(b, v), ref.state, w, ids.as<int32_t>(), ref.ws, ctx);
    direct.run(got.out(b, v), ids.as<int32_t>(), ctx);
    if (!graph.ready()) {
      graph.begin_capture(ctx);
      recorded.run(replayed.out(b, v), ids.as<int32_t>(), ctx);
      graph.end_capture(ctx);
    }
    graph.replay(ctx);
    synchronize(ctx);
    const std::vector<float> r = ref.host(), g = got.host(), p = replayed.host();
    EXPECT_CLOSE(g.data(), r.data(), r.size(), tol) << "batch " << b << " step " << t;
    EXPECT_EQ(0, std::memcmp(g.data(), p.data(), g.size() * 4)) << "replayed step differs, batch " << b << " step " << t;
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
  for (int64_t b : {1, 3, 8}) {
    expect_same_steps(cpu.to_device(Device::cuda, DType::f32), b, 8, 1e-5, ctx);
    expect_same_steps(cpu.to_device(Device::cuda, DType::bf16), b, 8, 1e-2, ctx);
    expect_same_steps(cpu.to_device(Device::cuda, DType::f16), b, 4, 1e-2, ctx);
  }
}

// Greedy decoding with the fused step (argmax on the GPU: by argmax_rows_cuda after the step, or chosen by the step
// itself into its own ids, replayed from a graph) continues a batch of prompts as the CPU does.
TEST_P(CudaFusedStepTest, GreedyContinuationEqualsCpu) {
  const ModelWeights gpu = cpu.to_device(Device::cuda, DType::f32);
  const MambaConfig& c = cpu.config;
  const int64_t b = 3, v = c.vocab_size, steps = 24;
  for (bool in_kernel : {false, true}) {
    RecurrentState cs(c, b);
    StepRun run(gpu, b);
    FusedStep step(gpu, run.state, run.ws, ctx);
    StreamGraph graph;
    Workspace cw;
    Buffer gids(size_t(b) * 4, Device::cuda);
    std::vector<float> clog(static_cast<size_t>(b * v));
    std::vector<int32_t> cpu_ids = {1, 7, 11}, gpu_ids = cpu_ids;
    copy_memory(gids.data(), Device::cuda, gpu_ids.data(), Device::cpu, gids.bytes());
    for (int64_t t = 0; t < steps; ++t) {
      lm_forward(Tensor(clog.data(), DType::f32, {b, v}), cs, cpu, cpu_ids.data(), 1, ForwardOptions{}, cw, ctx);
      for (int64_t i = 0; i < b; ++i) cpu_ids[size_t(i)] = argmax(clog.data() + i * v, v);
      if (!in_kernel) {
        step.run(run.out(b, v), gids.as<int32_t>(), ctx);
        argmax_rows_cuda(gids.as<int32_t>(), run.out(b, v), ctx);
      } else {
        if (!graph.ready()) {
          graph.begin_capture(ctx);
          step.run(run.out(b, v), gids.as<int32_t>(), ctx, gids.as<int32_t>());
          graph.end_capture(ctx);
        }
        graph.replay(ctx);
      }
      copy_memory(gpu_ids.data(), Device::cpu, gids.data(), Device::cuda, gids.bytes());
      ASSERT_EQ(gpu_ids, cpu_ids) << "step " << t << (in_kernel ? ", chosen by the step" : ", argmax_rows_cuda");
    }
  }
}

TEST_P(CudaFusedStepTest, RefusesWhatItDoesNotHandle) {
  std::string why;
  EXPECT_FALSE(FusedStep::supports(cpu, 1, &why));
  EXPECT_NE(why.find("cuda"), std::string::npos) << why;
  const ModelWeights gpu = cpu.to_device(Device::cuda, DType::f32);
  EXPECT_FALSE(FusedStep::supports(gpu, 9, &why));
  EXPECT_NE(why.find("batch 9"), std::string::npos) << why;
  StepRun run(gpu, 2);
  Workspace small(Device::cuda);
  small.reserve(gpu.config, 1);
  EXPECT_THROW(FusedStep bad(gpu, run.state, small, ctx), Error);
}

// The kernel holds a thread's share of a norm's weights in registers: d_model is bounded (the unfused step takes
// wider models).
TEST(CudaFusedStep, RefusesModelsWiderThanItsNormRegisters) {
  cuda::DecodeStepParams p;
  p.b = 1, p.n = 16, p.r = 8, p.k = 4, p.v = 64;
  p.d = cuda::kDecodeMaxD, p.e = 2 * p.d;
  std::string why;
  EXPECT_TRUE(cuda::decode_step_supports(p, &why)) << why;
  p.d = cuda::kDecodeMaxD + 8;
  EXPECT_FALSE(cuda::decode_step_supports(p, &why));
  EXPECT_NE(why.find("d_model above 4096"), std::string::npos) << why;
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

// The greedy id a row's logits give: the largest number, the lowest id among equal ones, NaN skipped, 0 for a row
// of NaN.
int32_t greedy_reference(const float* x, int64_t v) {
  int64_t best = -1;
  for (int64_t j = 0; j < v; ++j)
    if (!std::isnan(x[j]) && (best < 0 || x[j] > x[best])) best = j;
  return int32_t(best < 0 ? 0 : best);
}

// The fused step's own greedy choice (random weights of the Mamba-130M shape, two layers; the head is the tied
// embedding, 50,280 columns spread over every block of the grid) equals the reference choice on the logits it
// wrote, and argmax_rows_cuda's: with row 0's largest logit made twice, in two columns of different blocks (both
// after a smaller id), a column of NaN, and row 2's id out of range (every logit NaN, so id 0). Batches 1, 3 and 8,
// f32 and bf16 matrices, the choice written to its own buffer or over the ids.
TEST(CudaFusedStep, GreedyChoiceBreaksTiesLowAndSkipsNaN) {
  SKIP_WITHOUT_GPU();
  Context ctx{2};
  MambaConfig c = preset_config("130m");
  c.n_layer = 2;
  const int64_t v = c.vocab_size, d = c.d_model;
  const int64_t j_nan = 3, j1 = 5, j2 = v - 7;  // grid warps j % 2,112 of blocks 5 and 113 on 132 SMs
  for (DType dt : {DType::f32, DType::bf16})
    for (int64_t b : {1, 3, 8}) {
      ModelWeights host = ModelWeights::random(c, DType::f32, 11);
      ASSERT_EQ(host.lm_head.data, host.embedding.data) << "the test assumes a tied head";
      std::vector<int32_t> tok(static_cast<size_t>(b));
      for (int64_t i = 0; i < b; ++i) tok[size_t(i)] = int32_t(100 + 37 * i);
      // The first run finds row 0's largest logit m; the second makes columns j1 and j2 2 · row m, so that their
      // logits are exactly twice row 0's largest (and the largest of row 0), and column j_nan NaN.
      int64_t m = 0;
      for (int pass = 0; pass < 2; ++pass) {
        if (pass == 1) {
          float* head = host.embedding.f32();
          for (int64_t k = 0; k < d; ++k) {
            head[j1 * d + k] = head[j2 * d + k] = 2.0f * head[m * d + k];
            head[j_nan * d + k] = std::nanf("");
          }
          if (b >= 3) tok[2] = int32_t(v);  // out of range: NaN logits
        }
        const ModelWeights gpu = host.to_device(Device::cuda, dt);
        StepRun run(gpu, b);
        FusedStep step(gpu, run.state, run.ws, ctx);
        Buffer ids(size_t(b) * 4, Device::cuda), chosen(size_t(b) * 4, Device::cuda), ref(size_t(b) * 4, Device::cuda);
        copy_memory(ids.data(), Device::cuda, tok.data(), Device::cpu, ids.bytes());
        poison_device(chosen.data(), chosen.bytes());
        step.run(run.out(b, v), ids.as<int32_t>(), ctx, chosen.as<int32_t>());
        argmax_rows_cuda(ref.as<int32_t>(), run.out(b, v), ctx);
        synchronize(ctx);
        const std::vector<float> logits = run.host();
        std::vector<int32_t> got(static_cast<size_t>(b)), by_kernel(static_cast<size_t>(b));
        copy_memory(got.data(), Device::cpu, chosen.data(), Device::cuda, chosen.bytes());
        copy_memory(by_kernel.data(), Device::cpu, ref.data(), Device::cuda, ref.bytes());
        for (int64_t i = 0; i < b; ++i) {
          const float* row = logits.data() + i * v;
          EXPECT_EQ(got[size_t(i)], greedy_reference(row, v)) << dtype_name(dt) << " batch " << b << " row " << i;
          EXPECT_EQ(got[size_t(i)], by_kernel[size_t(i)]) << dtype_name(dt) << " batch " << b << " row " << i;
        }
        if (pass == 0) {
          m = greedy_reference(logits.data(), v);
          ASSERT_GT(logits[size_t(m)], 0.0f);
          continue;
        }
        EXPECT_EQ(got[0], j1) << dtype_name(dt) << " batch " << b;
        EXPECT_EQ(logits[size_t(j1)], logits[size_t(j2)]);
        EXPECT_TRUE(std::isnan(logits[size_t(j_nan)]));
        if (b >= 3) {
          EXPECT_EQ(got[2], 0) << dtype_name(dt) << " batch " << b;
        }
        // Over the ids themselves, as generate() asks for it.
        step.run(run.out(b, v), ids.as<int32_t>(), ctx, ids.as<int32_t>());
        synchronize(ctx);
        std::vector<int32_t> over(static_cast<size_t>(b));
        copy_memory(over.data(), Device::cpu, ids.data(), Device::cuda, ids.bytes());
        const std::vector<float> next = run.host();
        for (int64_t i = 0; i < b; ++i)
          EXPECT_EQ(over[size_t(i)], greedy_reference(next.data() + i * v, v)) << "batch " << b << " row " << i;
      }
    }
}

// Random weights of the Mamba-1.4B layer shape (d 2,048, e 4,096, n 16, r 128, v 50,280; two layers): rows long
// enough for the kernels that pipeline 8 pieces at batch 1 and preload 2 (decode_kernels.cu, kernel_for_rows).
TEST(CudaFusedStep, LongRowsModel) {
  SKIP_WITHOUT_GPU();
  Context ctx{2};
  MambaConfig c = preset_config("1.4b");
  c.n_layer = 2;
  const ModelWeights host = ModelWeights::random(c, DType::f32, 5);
  const ModelWeights bf16 = host.to_device(Device::cuda, DType::bf16);
  for (int64_t b : {1, 2, 5, 8}) expect_same_steps(bf16, b, 3, 1e-2, ctx);
  expect_same_steps(host.to_device(Device::cuda, DType::f16), 1, 3, 1e-2, ctx);
}

}  // namespace
}  // namespace mambacpp::test
