// Token sampling (see sampler.h). The order of the filters is that of Hugging Face's logits processors:
// repetition penalty, temperature, top-k, top-p, min-p.
#include "infer/sampler.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace mambacpp {

void SamplingParams::validate() const {
  MAMBA_CHECK(std::isfinite(temperature) && temperature >= 0, "--temperature must be >= 0, got {}", temperature);
  MAMBA_CHECK(top_k >= 0, "--top-k must be >= 0 (0 = off), got {}", top_k);
  MAMBA_CHECK(top_p > 0 && top_p <= 1, "--top-p must be in (0, 1], got {}", top_p);
  MAMBA_CHECK(min_p >= 0 && min_p <= 1, "--min-p must be in [0, 1], got {}", min_p);
  MAMBA_CHECK(std::isfinite(repetition_penalty) && repetition_penalty > 0,
              "--repeat-penalty must be > 0, got {}", repetition_penalty);
}

int32_t argmax(const float* x, int64_t n) {
  int64_t best = 0;
  for (int64_t i = 1; i < n; ++i)
    if (x[i] > x[best]) best = i;
  return int32_t(best);
}

Sampler::Sampler(const SamplingParams& p, uint64_t seed) : p_(p), rng_(seed) { p_.validate(); }

int32_t Sampler::sample(const float* logits, int64_t v, std::span<const int32_t> history) {
  cand_.resize(size_t(v));
  for (int64_t i = 0; i < v; ++i) cand_[size_t(i)] = {logits[i], int32_t(i)};
  if (p_.repetition_penalty != 1.0f) {
    for (int32_t id : history) {
      if (id < 0 || id >= v) continue;
      float& x = cand_[size_t(id)].first;
      if (x == logits[id]) x = x > 0 ? x / p_.repetition_penalty : x * p_.repetition_penalty;
    }
  }
  if (p_.temperature == 0.0f) {
    size_t best = 0;
    for (size_t i = 1; i < cand_.size(); ++i)
      if (cand_[i].first > cand_[best].first) best = i;
    return cand_[best].second;
  }
  // Sort descending by logit (ties by id), keep top-k.
  const auto by_logit = [](const auto& a, const auto& b) { return a.first > b.first || (a.first == b.first && a.second < b.second); };
  size_t keep = cand_.size();
  if (p_.top_k > 0 && size_t(p_.top_k) < keep) {
    keep = size_t(p_.top_k);
    std::partial_sort(cand_.begin(), cand_.begin() + std::ptrdiff_t(keep), cand_.end(), by_logit);
  } else {
    std::sort(cand_.begin(), cand_.end(), by_logit);
  }
  // Softmax at temperature over the kept candidates (in double).
  std::vector<double> prob(keep);
  const double top = cand_[0].first / double(p_.temperature);
  double sum = 0;
  for (size_t i = 0; i < keep; ++i) sum += prob[i] = std::exp(cand_[i].first / double(p_.temperature) - top);
  for (auto& q : prob) q /= sum;
  // top-p: the smallest prefix whose mass reaches top_p (at least one token).
  size_t n = keep;
  if (p_.top_p < 1.0f) {
    double acc = 0;
    for (size_t i = 0; i < keep; ++i) {
      acc += prob[i];
      if (acc >= p_.top_p) {
        n = i + 1;
        break;
      }
    }
  }
  // min-p: drop tokens less likely than min_p times the most likely one.
  if (p_.min_p > 0.0f) {
    const double floor = p_.min_p * prob[0];
    size_t m = 1;
    while (m < n && prob[m] >= floor) ++m;
    n = m;
  }
  double mass = 0;
  for (size_t i = 0; i < n; ++i) mass += prob[i];
  double r = rng_.uniform() * mass;
  for (size_t i = 0; i < n; ++i) {
    r -= prob[i];
    if (r < 0) return cand_[i].second;
  }
  return cand_[n - 1].second;
}

}  // namespace mambacpp
