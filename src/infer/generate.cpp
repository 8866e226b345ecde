// Generation loop (see generate.h).
#include "infer/generate.h"

#include <chrono>
#include <memory>

#include "core/cuda/device_memory.h"
#include "core/error.h"
#include "model/lm.h"
#include "model/lm_step_fused.h"
#ifdef MAMBACPP_HAS_CUDA
#include "ops/cuda/cuda_ops.h"
#endif

namespace mambacpp {

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Runs every prompt through the model, leaving `state` after each prompt and its last logits in `logits`
// (b, v). Prompts of one length share one batched pass; otherwise each runs alone and its state is copied in.
void prefill(Buffer& logits, RecurrentState& state, const ModelWeights& w,
             const std::vector<std::vector<int32_t>>& prompts, const GenerateOptions& opt, Workspace& ws,
             Context& ctx) {
  const int64_t b = state.batch(), v = w.config.vocab_size;
  const Device dev = state.device();
  ForwardOptions fo;
  fo.logits_for = LogitsFor::last_position;
  fo.chunk = opt.chunk;
  fo.half_activations = opt.half_activations;
  bool same_length = true;
  for (const auto& p : prompts) same_length = same_length && p.size() == prompts[0].size();
  if (same_length) {
    const int64_t l = int64_t(prompts[0].size());
    std::vector<int32_t> ids;
    for (const auto& p : prompts) ids.insert(ids.end(), p.begin(), p.end());
    lm_forward(Tensor(logits.data(), DType::f32, {b, v}, dev), state, w, ids.data(), l, fo, ws, ctx);
    return;
  }
  RecurrentState one(w.config, 1, dev);
  for (int64_t i = 0; i < b; ++i) {
    one.reset();
    lm_forward(Tensor(logits.as<float>() + i * v, DType::f32, {1, v}, dev), one, w, prompts[size_t(i)].data(),
               int64_t(prompts[size_t(i)].size()), fo, ws, ctx);
    state.copy_row_from(one, 0, i);
  }
}

// How the next ids are chosen and the next step is run, on the model's device. On cuda every sampling setting
// is chosen on the GPU (sample_rows_cuda; argmax_rows_cuda when greedy without a penalty, or the fused step's
// own greedy choice), right after the step that made the logits, so that both are recorded in one graph. Its draws are the host Samplers': row i's Rng
// is seeded with seed + i and gives one uniform per token it samples, copied to the device before each step.
class Decoder {
 public:
  Decoder(const ModelWeights& w, RecurrentState& state, Workspace& ws, Buffer& logits, const GenerateOptions& opt,
          const std::vector<std::vector<int32_t>>& prompts, Context& ctx)
      : w_(w), state_(state), ws_(ws), logits_(logits), opt_(opt), ctx_(ctx), b_(state.batch()),
        v_(w.config.vocab_size), dev_(state.device()) {
    if (dev_ == Device::cpu) {
      for (int64_t i = 0; i < b_; ++i) samplers_.emplace_back(opt.sampling, opt.seed + uint64_t(i));
      return;
    }
    ids_ = Buffer(size_t(b_) * sizeof(int32_t), dev_);
    ws_.reserve(w.config, b_);
    if (opt.fused_step && b_ <= kFusedStepMaxBatch && FusedStep::supports(w, b_, nullptr))
      fused_ = std::make_unique<FusedStep>(w, state, ws, ctx);
    for (int64_t i = 0; i < b_; ++i) rngs_.emplace_back(opt.seed + uint64_t(i));
    if (opt.sampling.temperature > 0.0f) {
      uniforms_ = Buffer(size_t(b_) * sizeof(double), dev_);
      host_uniforms_.assign(size_t(b_), 0.0);
    }
    if (opt.sampling.repetition_penalty != 1.0f) mark_seen(prompts);
    draw_uniforms(std::vector<char>(size_t(b_), 0));
    choose_on_device();
  }

  // The next id of every sequence (for finished ones, whatever the model produced), given each history.
  void next_ids(std::vector<int32_t>& next, const std::vector<std::vector<int32_t>>& history,
                const std::vector<char>& done) {
    if (dev_ == Device::cuda) {
      copy_memory_async(next.data(), Device::cpu, ids_.data(), dev_, size_t(b_) * sizeof(int32_t), ctx_);
      return;
    }
    const float* host = logits_.as<float>();
    for (int64_t i = 0; i < b_; ++i)
      if (!done[size_t(i)]) next[size_t(i)] = samplers_[size_t(i)].sample(host + i * v_, v_, history[size_t(i)]);
  }

  // Runs the model one token further on `next`, leaving the new logits (and, on cuda, the ids chosen from them
  // for the sequences not `done`).
  void step(const std::vector<int32_t>& next, const std::vector<char>& done) {
    if (dev_ == Device::cpu) {
      ForwardOptions fo;
      lm_forward(logits_tensor(), state_, w_, next.data(), 1, fo, ws_, ctx_);
      return;
    }
    draw_uniforms(done);
    if (!opt_.cuda_graph || steps_ == 0) {
      device_step();  // the first step also sizes every buffer the recorded steps use
    } else {
      if (!graph_.ready()) {
        graph_.begin_capture(ctx_);
        device_step();
        graph_.end_capture(ctx_);
      }
      graph_.replay(ctx_);
    }
    ++steps_;
  }

 private:
  Tensor logits_tensor() const { return Tensor(logits_.data(), DType::f32, {b_, v_}, dev_); }

  // The step, then the choice of the next ids; the fused step makes the plain greedy choice itself.
  void device_step() {
    if (fused_ && plain_greedy()) return fused_->run(logits_tensor(), ids_.as<int32_t>(), ctx_, ids_.as<int32_t>());
    if (fused_)
      fused_->run(logits_tensor(), ids_.as<int32_t>(), ctx_);
    else
      lm_step_device(logits_tensor(), state_, w_, ids_.as<int32_t>(), ws_, ctx_);
    choose_on_device();
  }

  // Greedy without a repetition penalty: the argmax of the logits.
  bool plain_greedy() const {
    return opt_.sampling.temperature == 0.0f && opt_.sampling.repetition_penalty == 1.0f;
  }

  // seen (b, v) on the device: 1 for every id of each prompt (the chosen ids are marked by the sampling kernel).
  void mark_seen(const std::vector<std::vector<int32_t>>& prompts) {
    std::vector<unsigned char> host(size_t(b_ * v_), 0);
    for (int64_t i = 0; i < b_; ++i)
      for (int32_t id : prompts[size_t(i)])
        if (id >= 0 && id < v_) host[size_t(i * v_ + id)] = 1;
    seen_ = Buffer(host.size(), dev_);
    copy_memory(seen_.data(), dev_, host.data(), Device::cpu, host.size());
  }

  // One uniform per unfinished row for the next choice, as the host Sampler would draw it, queued to the device.
  void draw_uniforms(const std::vector<char>& done) {
    if (host_uniforms_.empty()) return;
    for (int64_t i = 0; i < b_; ++i)
      if (!done[size_t(i)]) host_uniforms_[size_t(i)] = rngs_[size_t(i)].uniform();
    copy_memory_async(uniforms_.data(), dev_, host_uniforms_.data(), Device::cpu, uniforms_.bytes(), ctx_);
  }

  void choose_on_device() {
#ifdef MAMBACPP_HAS_CUDA
    const SamplingParams& s = opt_.sampling;
    if (plain_greedy()) {
      argmax_rows_cuda(ids_.as<int32_t>(), logits_tensor(), ctx_);
      return;
    }
    SampleFilters f;
    f.temperature = s.temperature, f.top_k = s.top_k, f.top_p = s.top_p, f.min_p = s.min_p;
    f.repetition_penalty = s.repetition_penalty;
    sample_rows_cuda(ids_.as<int32_t>(), logits_tensor(), seen_.as<unsigned char>(), uniforms_.as<double>(), f,
                     ctx_);
#endif
  }

  const ModelWeights& w_;
  RecurrentState& state_;
  Workspace& ws_;
  Buffer& logits_;
  const GenerateOptions& opt_;
  Context& ctx_;
  const int64_t b_, v_;
  const Device dev_;
  std::vector<Sampler> samplers_;  // cpu
  std::vector<Rng> rngs_;          // cuda: the Samplers' generators
  std::vector<double> host_uniforms_;
  Buffer ids_, seen_, uniforms_;
  StreamGraph graph_;
  std::unique_ptr<FusedStep> fused_;  // the one-launch step, where it applies (lm_step_fused.h)
  int64_t steps_ = 0;
};

}  // namespace

std::vector<std::vector<int32_t>> generate(const ModelWeights& w, const std::vector<std::vector<int32_t>>& prompts,
                                           const GenerateOptions& opt, const TokenCallback& on_token,
                                           GenerateStats* stats, Context& ctx) {
  MAMBA_CHECK(!prompts.empty(), "generate: no prompts");
  for (size_t i = 0; i < prompts.size(); ++i) MAMBA_CHECK(!prompts[i].empty(), "generate: prompt {} is empty", i);
  MAMBA_CHECK(opt.max_new_tokens >= 0, "-n/--n-predict must be >= 0, got {}", opt.max_new_tokens);
  opt.sampling.validate();

  const int64_t b = int64_t(prompts.size()), v = w.config.vocab_size;
  const Device dev = w.embedding.device;
  RecurrentState state(w.config, b, dev);
  Workspace ws(dev);
  Buffer logits(size_t(b * v) * sizeof(float), dev);
  GenerateStats st;
  for (const auto& p : prompts) st.prompt_tokens += int64_t(p.size());

  auto t0 = std::chrono::steady_clock::now();
  prefill(logits, state, w, prompts, opt, ws, ctx);
  synchronize(ctx);
  st.prompt_seconds = seconds_since(t0);

  t0 = std::chrono::steady_clock::now();
  Decoder decoder(w, state, ws, logits, opt, prompts, ctx);
  std::vector<std::vector<int32_t>> history(prompts);
  std::vector<std::vector<int32_t>> out(static_cast<size_t>(b));
  std::vector<char> done(size_t(b), 0);
  std::vector<int32_t> next(size_t(b), 0);
  for (int64_t t = 0; t < opt.max_new_tokens; ++t) {
    decoder.next_ids(next, history, done);
    int64_t active = 0;
    for (int64_t i = 0; i < b; ++i) {
      if (done[size_t(i)]) continue;
      const int32_t id = next[size_t(i)];
      history[size_t(i)].push_back(id);
      out[size_t(i)].push_back(id);
      ++st.generated_tokens;
      if (on_token) on_token(i, id);
      if (id == opt.eos_id || t + 1 == opt.max_new_tokens)
        done[size_t(i)] = 1;
      else
        ++active;
    }
    if (active == 0) break;
    decoder.step(next, done);
  }
  st.generate_seconds = seconds_since(t0);
  if (stats) *stats = st;
  return out;
}

}  // namespace mambacpp
