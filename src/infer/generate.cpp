// Generation loop (see generate.h).
#include "infer/generate.h"

#include <chrono>

#include "core/error.h"
#include "model/lm.h"

namespace mambacpp {

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Runs every prompt through the model, leaving `state` after each prompt and its last logits in `logits`
// (b, v). Prompts of one length share one batched pass; otherwise each runs alone and its state is copied in.
void prefill(Buffer& logits, RecurrentState& state, const ModelWeights& w,
             const std::vector<std::vector<int32_t>>& prompts, int64_t chunk, Workspace& ws, Context& ctx) {
  const int64_t b = state.batch(), v = w.config.vocab_size;
  ForwardOptions fo;
  fo.logits_for = LogitsFor::last_position;
  fo.chunk = chunk;
  bool same_length = true;
  for (const auto& p : prompts) same_length = same_length && p.size() == prompts[0].size();
  if (same_length) {
    const int64_t l = int64_t(prompts[0].size());
    std::vector<int32_t> ids;
    for (const auto& p : prompts) ids.insert(ids.end(), p.begin(), p.end());
    lm_forward(Tensor(logits.data(), DType::f32, {b, v}), state, w, ids.data(), l, fo, ws, ctx);
    return;
  }
  RecurrentState one(w.config, 1);
  for (int64_t i = 0; i < b; ++i) {
    one.reset();
    lm_forward(Tensor(logits.as<float>() + i * v, DType::f32, {1, v}), one, w, prompts[size_t(i)].data(),
               int64_t(prompts[size_t(i)].size()), fo, ws, ctx);
    state.copy_row_from(one, 0, i);
  }
}

}  // namespace

std::vector<std::vector<int32_t>> generate(const ModelWeights& w, const std::vector<std::vector<int32_t>>& prompts,
                                           const GenerateOptions& opt, const TokenCallback& on_token,
                                           GenerateStats* stats, Context& ctx) {
  MAMBA_CHECK(!prompts.empty(), "generate: no prompts");
  for (size_t i = 0; i < prompts.size(); ++i) MAMBA_CHECK(!prompts[i].empty(), "generate: prompt {} is empty", i);
  MAMBA_CHECK(opt.max_new_tokens >= 0, "-n/--n-predict must be >= 0, got {}", opt.max_new_tokens);
  opt.sampling.validate();

  const int64_t b = int64_t(prompts.size()), v = w.config.vocab_size;
  RecurrentState state(w.config, b);
  Workspace ws;
  Buffer logits(size_t(b * v) * sizeof(float));
  GenerateStats st;
  for (const auto& p : prompts) st.prompt_tokens += int64_t(p.size());

  auto t0 = std::chrono::steady_clock::now();
  prefill(logits, state, w, prompts, opt.chunk, ws, ctx);
  st.prompt_seconds = seconds_since(t0);

  std::vector<Sampler> samplers;
  for (int64_t i = 0; i < b; ++i) samplers.emplace_back(opt.sampling, opt.seed + uint64_t(i));
  std::vector<std::vector<int32_t>> history(prompts);
  std::vector<std::vector<int32_t>> out(static_cast<size_t>(b));
  std::vector<char> done(size_t(b), 0);
  std::vector<int32_t> next(size_t(b), 0);
  ForwardOptions step;
  step.logits_for = LogitsFor::last_position;

  t0 = std::chrono::steady_clock::now();
  for (int64_t t = 0; t < opt.max_new_tokens; ++t) {
    int64_t active = 0;
    for (int64_t i = 0; i < b; ++i) {
      if (done[size_t(i)]) continue;
      const int32_t id = samplers[size_t(i)].sample(logits.as<float>() + i * v, v, history[size_t(i)]);
      next[size_t(i)] = id;
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
    lm_forward(Tensor(logits.data(), DType::f32, {b, v}), state, w, next.data(), 1, step, ws, ctx);
  }
  st.generate_seconds = seconds_since(t0);
  if (stats) *stats = st;
  return out;
}

}  // namespace mambacpp
