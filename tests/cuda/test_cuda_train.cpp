// Training on the GPU against the CPU: on the golden checkpoints, the loss and every parameter's gradient from
// lm_loss on cuda (f32 matrices) equal the CPU's and transformers' (relative 1e-4), bit for bit the same run to run;
// packed documents and explicit targets agree with the CPU; mixed precision (bf16 matrices) stays close to f32; one
// AdamW update of TrainableModel on cuda equals the CPU's, and the fused update kernels (one tensor, or all in one
// launch) equal the passes they replace and the CPU bit for bit; and `train --device cuda` resumes bit-identically, writes
// checkpoints the CPU loads, and learns. The selection ablations (lti, dt, b, c: a time-invariant B and/or C in the
// scan) on a small random model: the loss, every gradient and the chunked forward's logits equal the CPU's.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "core/context.h"
#include "core/cuda/device_memory.h"
#include "model/lm.h"
#include "cuda/cuda_test_util.h"
#include "model/lm_train.h"
#include "model/loader.h"
#include "model/presets.h"
#include "ops/ops_train.h"
#include "support/golden_model.h"
#include "support/test_util.h"
#include "train/loss_log.h"
#include "train/trainable.h"
#include "train/trainer.h"

namespace mambacpp::test {
namespace {

// The gradients as host floats, in ParamGrads order.
std::vector<float> host_grads(const ParamGrads& g) {
  std::vector<float> out(g.storage.bytes() / sizeof(float));
  copy_memory(out.data(), Device::cpu, g.storage.data(), g.storage.device(), g.storage.bytes());
  return out;
}

class CudaTrainTest : public ::testing::TestWithParam<std::string> {
 protected:
  GoldenModel g{GetParam()};
  ModelWeights host = load_model(g.dir, DType::f32);
  std::vector<int32_t> ids;
  int64_t b = 0, l = 0;

  void SetUp() override {
    SKIP_WITHOUT_GPU();
    const auto rows = g.expected["loss"]["input_ids"].get<std::vector<std::vector<int32_t>>>();
    b = int64_t(rows.size()), l = int64_t(rows[0].size());
    for (const auto& r : rows) ids.insert(ids.end(), r.begin(), r.end());
  }

  // Loss and gradients of `w` (on its device) for the golden batch, through `loss_fn`.
  template <typename F>
  std::pair<double, std::vector<float>> run(const ModelWeights& w, F loss_fn, Context& ctx) {
    ParamGrads grads(w);
    // Poison, then zero through the op: the gradients must come from the passes alone.
    std::vector<float> nan(grads.storage.bytes() / sizeof(float), std::nanf(""));
    copy_memory(grads.storage.data(), grads.storage.device(), nan.data(), Device::cpu, grads.storage.bytes());
    grads.zero(ctx);
    TrainWorkspace ws(w.embedding.device);
    const double loss = loss_fn(&grads, w, ws);
    return {loss, host_grads(grads)};
  }
};

TEST_P(CudaTrainTest, GradientsEqualTheCpuAndTransformersAndAreDeterministic) {
  Context ctx(2);
  const auto plain = [&](ParamGrads* gr, const ModelWeights& w, TrainWorkspace& ws) {
    return lm_loss(gr, w, ids.data(), b, l, ws, ctx);
  };
  const auto [cpu_loss, cpu] = run(host, plain, ctx);
  const ModelWeights dev = host.to_device(Device::cuda, DType::f32);
  const auto [loss, gpu] = run(dev, plain, ctx);
  const auto [loss2, gpu2] = run(dev, plain, ctx);
  EXPECT_NEAR(loss, cpu_loss, 1e-5 * cpu_loss);
  EXPECT_NEAR(loss, g.expected["loss"]["value"].get<double>(), 1e-4 * cpu_loss);
  EXPECT_EQ(loss, loss2);
  EXPECT_EQ(std::memcmp(gpu.data(), gpu2.data(), gpu.size() * sizeof(float)), 0) << "run-to-run bits differ";
  ParamGrads layout(host);
  size_t offset = 0;
  double worst = 0;
  for (size_t i = 0; i < layout.names.size(); ++i) {
    const size_t n = size_t(layout.grads[i].numel());
    const Closeness vs_cpu = compare(gpu.data() + offset, cpu.data() + offset, n);
    const Tensor ref = g.tensors.get("grad." + layout.names[i]);
    const Closeness vs_hf = compare(gpu.data() + offset, ref.f32(), n);
    EXPECT_LE(vs_cpu.rel_l2, 1e-4) << layout.names[i] << " vs cpu: " << vs_cpu.describe();
    EXPECT_LE(vs_hf.rel_l2, 1e-4) << layout.names[i] << " vs transformers: " << vs_hf.describe();
    worst = std::max(worst, vs_hf.rel_l2);
    offset += n;
  }
  std::printf("%s: cuda loss %.9f (cpu %.9f), worst gradient vs transformers %.3g\n", GetParam().c_str(), loss,
              cpu_loss, worst);
}

TEST_P(CudaTrainTest, PackedDocumentsAndExplicitTargetsEqualTheCpu) {
  Context ctx(2);
  std::vector<uint8_t> starts(size_t(b * l), 0);
  starts[0] = starts[3] = starts[size_t(l + 1)] = 1;
  std::vector<int32_t> targets(size_t(b * l), -1);
  targets[1] = 2;
  targets[size_t(b * l - 1)] = 0;
  targets[size_t(l)] = 5;
  const ModelWeights dev = host.to_device(Device::cuda, DType::f32);
  const auto packed = [&](ParamGrads* gr, const ModelWeights& w, TrainWorkspace& ws) {
    return lm_loss_packed(gr, w, ids.data(), starts.data(), b, l, ws, ctx);
  };
  const auto chosen = [&](ParamGrads* gr, const ModelWeights& w, TrainWorkspace& ws) {
    return lm_loss_targets(gr, w, ids.data(), targets.data(), b, l, ws, ctx);
  };
  for (int which = 0; which < 2; ++which) {
    const auto [cl, cg] = which == 0 ? run(host, packed, ctx) : run(host, chosen, ctx);
    const auto [gl, gg] = which == 0 ? run(dev, packed, ctx) : run(dev, chosen, ctx);
    EXPECT_NEAR(gl, cl, 1e-5 * cl) << (which == 0 ? "packed" : "targets");
    const Closeness c = compare(gg.data(), cg.data(), cg.size());
    EXPECT_LE(c.rel_l2, 1e-4) << (which == 0 ? "packed: " : "targets: ") << c.describe();
  }
}

// The conv output is kept only in the half dtype, and the scan reads it as its u.
TEST_P(CudaTrainTest, MixedPrecisionStaysCloseToF32) {
  Context ctx(2);
  const auto plain = [&](ParamGrads* gr, const ModelWeights& w, TrainWorkspace& ws) {
    return lm_loss(gr, w, ids.data(), b, l, ws, ctx);
  };
  const auto [cpu_loss, cpu] = run(host, plain, ctx);
  for (DType dt : {DType::bf16, DType::f16}) {
    TrainableModel m(load_model(g.dir, DType::f32), Device::cuda, dt, AdamWOptions{}, ctx);
    EXPECT_EQ(m.compute().matrix_dtype, dt);
    const auto [loss, gpu] = run(m.compute(), plain, ctx);
    const std::string what = dtype_name(dt);
    EXPECT_NEAR(loss, cpu_loss, 1e-2 * cpu_loss) << what;
    const Closeness c = compare(gpu.data(), cpu.data(), cpu.size());
    EXPECT_LE(c.rel_l2, 3e-2) << what << ": " << c.describe();
  }
}

// The update itself (clipping, AdamW, A refreshed) on the GPU equals the CPU's, given the same gradients (those
// of the CPU, copied over): the passes' own agreement is checked above, and Adam would amplify their rounding
// differences on elements whose gradient is nearly zero.
TEST_P(CudaTrainTest, OneUpdateOnTheGpuEqualsTheCpu) {
  Context ctx(2);
  TrainableModel cpu(load_model(g.dir, DType::f32), Device::cpu, DType::f32, AdamWOptions{}, ctx);
  TrainableModel gpu(load_model(g.dir, DType::f32), Device::cuda, DType::f32, AdamWOptions{}, ctx);
  TrainWorkspace ws;
  for (int step = 0; step < 3; ++step) {
    cpu.grads().zero(ctx);
    lm_loss(&cpu.grads(), cpu.compute(), ids.data(), b, l, ws, ctx);
    copy_memory(gpu.grads().storage.data(), Device::cuda, cpu.grads().storage.data(), Device::cpu,
                cpu.grads().storage.bytes());
    const ClippedGrads c1 = cpu.clip_gradients(0.5, 1.0f, ctx), c2 = gpu.clip_gradients(0.5, 1.0f, ctx);
    EXPECT_NEAR(c2.norm, c1.norm, 1e-12 * c1.norm);
    cpu.step(1e-2, c1.scale, ctx);
    gpu.step(1e-2, c2.scale, ctx);
  }
  const ModelWeights back = gpu.host_copy();
  const auto a = cpu.master().named_parameters(), c = back.named_parameters();
  ASSERT_EQ(a.size(), c.size());
  for (size_t i = 0; i < a.size(); ++i)
    EXPECT_CLOSE(c[i].second.f32(), a[i].second.f32(), size_t(a[i].second.numel()), 1e-6) << a[i].first;
  // A = −exp(A_log) was refreshed on the device.
  std::vector<float> A(size_t(back.layers[0].A.numel()));
  copy_memory(A.data(), Device::cpu, gpu.master().layers[0].A.data, Device::cuda, A.size() * sizeof(float));
  for (size_t i = 0; i < A.size(); ++i) EXPECT_FLOAT_EQ(A[i], -std::exp(back.layers[0].A_log.f32()[i]));
}

// One tensor of the fused AdamW test: n elements `offset` elements into their buffers (an offset that is not a
// multiple of 4 takes the kernels' one-element path), with a copy of dtype `copy` (f32: none).
struct FusedCase {
  int64_t n, offset;
  DType copy;
  bool decay;
};

// How the update is run: the passes it replaces (scale_inplace twice, adamw_update, copy_convert), adamw_update
// with the factors and the copy tensor by tensor, or adamw_update_all.
enum class FusedHow { sequence, one_by_one, all };

// One update of every case's tensors (the same starting values each call) on `dev`; returns the bytes of each
// case's param, m, v and copy afterwards.
std::vector<std::vector<char>> run_adamw(const std::vector<FusedCase>& cases, Device dev, FusedHow how,
                                         Context& ctx) {
  std::vector<Buffer> bufs;
  std::vector<AdamWTensor> ts;
  for (size_t i = 0; i < cases.size(); ++i) {
    const FusedCase& c = cases[i];
    const size_t count = size_t(c.n + c.offset);
    const std::vector<float> init[4] = {random_vector(count, 200 + i), random_vector(count, 300 + i, -3.0f, 3.0f),
                                        random_vector(count, 400 + i, -0.1f, 0.1f),
                                        random_vector(count, 500 + i, 0.0f, 0.01f)};
    Tensor arr[5];
    for (int k = 0; k < 5; ++k) {
      const DType dt = k == 4 ? c.copy : DType::f32;
      const size_t es = dtype_size(dt);
      bufs.emplace_back(count * es, dev);
      if (k < 4)
        copy_memory(bufs.back().data(), dev, init[k].data(), Device::cpu, count * es);
      else
        zero_memory(bufs.back().data(), dev, count * es);
      arr[k] = Tensor(bufs.back().as<char>() + size_t(c.offset) * es, dt, {c.n}, dev);
    }
    ts.push_back({arr[0], arr[1], arr[2], arr[3], c.copy == DType::f32 ? Tensor{} : arr[4], c.decay});
  }
  AdamWStep s{3e-3, 0.9, 0.95, 1e-8, 0.1, 1 - 0.9 * 0.9, 1 - 0.95 * 0.95, {}};
  const GradScale scale{float(1.0 / 3.0), float(1.0 / (4.75 + 1e-6))};
  if (how == FusedHow::all) {
    s.grad_scale = scale;
    adamw_update_all(ts, s, ctx);
  }
  for (const AdamWTensor& t : how == FusedHow::all ? std::vector<AdamWTensor>{} : ts) {
    AdamWStep one = s;
    one.weight_decay = t.decay ? s.weight_decay : 0.0;
    if (how == FusedHow::one_by_one) {
      one.grad_scale = scale;
      adamw_update(t.param, t.grad, t.m, t.v, t.copy, one, ctx);
      continue;
    }
    scale_inplace(t.grad, scale.accum, ctx);
    scale_inplace(t.grad, scale.clip, ctx);
    adamw_update(t.param, t.grad, t.m, t.v, Tensor{}, one, ctx);
    if (t.copy.defined()) copy_convert(t.copy, t.param, ctx);
  }
  std::vector<std::vector<char>> out;
  for (const AdamWTensor& t : ts)
    for (const Tensor* x : {&t.param, &t.m, &t.v, &t.copy}) {
      if (!x->defined()) continue;
      out.emplace_back(x->nbytes());
      copy_memory(out.back().data(), Device::cpu, x->data, dev, x->nbytes());
    }
  return out;
}

// The fused update (the gradient read through the accumulation and clipping factors, the bf16/f16 copy written
// from the updated parameter) on the GPU, tensor by tensor and all in one launch, equals the passes it replaces
// and the CPU's, bit for bit: the kernels round every operation as the CPU loop does.
TEST(CudaTrainOps, FusedAdamWEqualsTheSequenceAndTheCpu) {
  SKIP_WITHOUT_GPU();
  Context ctx(4);
  const std::vector<FusedCase> cases = {{1, 0, DType::bf16, true},        {37, 0, DType::f16, false},
                                        {70001, 1, DType::bf16, true},    {int64_t(3) << 20, 0, DType::bf16, true},
                                        {4099, 0, DType::f32, false},     {5000, 2, DType::f16, true},
                                        {0, 0, DType::bf16, true},        {123457, 0, DType::f16, false}};
  const auto want = run_adamw(cases, Device::cuda, FusedHow::sequence, ctx);
  const std::pair<const char*, std::vector<std::vector<char>>> got[] = {
      {"one by one", run_adamw(cases, Device::cuda, FusedHow::one_by_one, ctx)},
      {"all in one launch", run_adamw(cases, Device::cuda, FusedHow::all, ctx)},
      {"all on the cpu", run_adamw(cases, Device::cpu, FusedHow::all, ctx)},
      {"sequence on the cpu", run_adamw(cases, Device::cpu, FusedHow::sequence, ctx)}};
  for (const auto& [what, arrays] : got) {
    ASSERT_EQ(arrays.size(), want.size()) << what;
    for (size_t i = 0; i < want.size(); ++i) EXPECT_TRUE(arrays[i] == want[i]) << what << ": array " << i;
  }
}

INSTANTIATE_TEST_SUITE_P(Golden, CudaTrainTest, ::testing::ValuesIn(golden_model_names()));

// A small random model of each ablation (n = 5, e = 40: neither a multiple of the kernels' tiles), on cuda
// against the CPU: lm_loss and every parameter's gradient (mixer.B / mixer.C included where time-invariant), bit
// for bit the same run to run; and the logits of a forward in chunks of 12 over 37 tokens (the last chunk one
// token long, the scan's single-step kernel).
class CudaTrainAblation : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override { SKIP_WITHOUT_GPU(); }
};

TEST_P(CudaTrainAblation, LossGradientsAndLogitsEqualTheCpu) {
  MambaConfig c;
  c.d_model = 16, c.n_layer = 2, c.vocab_size = 11, c.d_state = 5, c.d_conv = 4, c.expand = 2, c.d_inner = 40;
  c.dt_rank = 2;
  c.set_ssm_variant(GetParam());
  const ModelWeights host = ModelWeights::random(c, DType::f32, 23);
  const ModelWeights dev = host.to_device(Device::cuda, DType::f32);
  const int64_t b = 2, l = 37, v = c.vocab_size;
  std::vector<int32_t> ids(size_t(b * l));
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = int32_t((i * 7 + i / 5) % size_t(v));
  Context ctx(2);
  const auto loss_of = [&](const ModelWeights& w, std::vector<float>* grads) {
    ParamGrads g(w);
    std::vector<float> nan(g.storage.bytes() / sizeof(float), std::nanf(""));
    copy_memory(g.storage.data(), g.storage.device(), nan.data(), Device::cpu, g.storage.bytes());
    g.zero(ctx);
    TrainWorkspace ws(w.embedding.device);
    const double loss = lm_loss(&g, w, ids.data(), b, l, ws, ctx);
    *grads = host_grads(g);
    return loss;
  };
  std::vector<float> cpu, gpu, gpu2;
  const double cpu_loss = loss_of(host, &cpu), loss = loss_of(dev, &gpu), loss2 = loss_of(dev, &gpu2);
  EXPECT_NEAR(loss, cpu_loss, 1e-5 * cpu_loss);
  EXPECT_EQ(loss, loss2);
  EXPECT_EQ(std::memcmp(gpu.data(), gpu2.data(), gpu.size() * sizeof(float)), 0) << "run-to-run bits differ";
  ParamGrads layout(host);
  size_t offset = 0;
  for (size_t i = 0; i < layout.names.size(); ++i) {
    const size_t n = size_t(layout.grads[i].numel());
    const Closeness cl = compare(gpu.data() + offset, cpu.data() + offset, n);
    EXPECT_LE(cl.rel_l2, 1e-4) << layout.names[i] << ": " << cl.describe();
    offset += n;
  }

  std::vector<float> want(size_t(b * l * v)), got(size_t(b * l * v), std::nanf(""));
  for (const Device d : {Device::cpu, Device::cuda}) {
    Buffer logits(got.size() * sizeof(float), d);
    copy_memory(logits.data(), d, got.data(), Device::cpu, logits.bytes());  // NaN
    RecurrentState state(c, b, d);
    Workspace ws(d);
    ForwardOptions fo;
    fo.logits_for = LogitsFor::all_positions;
    fo.chunk = 12;
    lm_forward(Tensor(logits.data(), DType::f32, {b, l, v}, d), state, d == Device::cpu ? host : dev, ids.data(), l,
               fo, ws, ctx);
    copy_memory(d == Device::cpu ? want.data() : got.data(), Device::cpu, logits.data(), d, logits.bytes());
  }
  EXPECT_CLOSE(got.data(), want.data(), want.size(), 1e-4) << "logits";
  std::printf("%s: cuda loss %.9f (cpu %.9f)\n", GetParam().c_str(), loss, cpu_loss);
}

INSTANTIATE_TEST_SUITE_P(Variants, CudaTrainAblation, ::testing::Values("lti", "dt", "b", "c"));

// A small byte-level run on the GPU: bf16 mixed precision, stopped and resumed = uninterrupted (bit for bit), the
// checkpoints load on the CPU, and the loss falls.
TEST(CudaTrainLoop, ResumesBitIdenticallyAndLearns) {
  SKIP_WITHOUT_GPU();
  TempDir dir;
  MambaConfig c = preset_config("tiny");
  c.d_model = 64;
  c.n_layer = 2;
  c.d_inner = 0;
  c.dt_rank = 0;
  c.fill_derived();
  write_file(dir.file("config.json"), c.to_hf_json());
  std::string text;
  for (int i = 0; text.size() < 20000; ++i) text += "the quick brown fox " + std::to_string(i % 13) + " jumps\n";
  write_file(dir.file("text.txt"), text);
  TrainOptions o;
  o.data = dir.file("text.txt");
  o.config = dir.file("config.json");
  o.steps = 40;
  o.batch = 8;
  o.seq_len = 64;
  o.warmup = 5;
  o.eval_every = 20;
  o.eval_windows = 8;
  o.save_every = 0;
  o.seed = 3;
  o.device = Device::cuda;
  o.dtype = DType::bf16;
  Context ctx(2);
  TrainOptions whole = o;
  whole.out = dir.file("whole");
  const TrainSummary s = train(whole, ctx, nullptr);
  TrainOptions part = o;
  part.out = dir.file("part");
  part.stop_after = 15;
  train(part, ctx, nullptr);
  part.resume = true;
  part.stop_after = 0;
  train(part, ctx, nullptr);
  EXPECT_EQ(read_file(whole.out + "/latest/model.safetensors"), read_file(part.out + "/latest/model.safetensors"));
  EXPECT_EQ(read_file(whole.out + "/latest/optimizer.safetensors"),
            read_file(part.out + "/latest/optimizer.safetensors"));
  const auto curve = read_loss_curves(whole.out + "/loss_log.jsonl").train;
  ASSERT_EQ(curve.size(), size_t(40));
  EXPECT_LT(curve.back().second, 0.6 * curve.front().second) << "first " << curve.front().second;
  EXPECT_TRUE(std::isfinite(s.best_val_loss));
  const ModelWeights back = load_model(whole.out + "/best", DType::f32);
  EXPECT_EQ(back.config.d_model, 64);
}

}  // namespace
}  // namespace mambacpp::test
