// Train/validation split and seeded batching (batcher.h).
#include "train/batcher.h"

#include <cmath>

#include "core/error.h"
#include "core/rng.h"

namespace mambacpp {

namespace {

uint64_t mix(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

}  // namespace

void split_tokens(int64_t n, double train_fraction, TokenRange& train, TokenRange& val) {
  const int64_t cut = int64_t(std::floor(double(n) * train_fraction));
  train = {0, cut};
  val = {cut, n};
}

BatchSampler::BatchSampler(const TokenData& data, TokenRange range, int64_t batch, int64_t seq_len, uint64_t seed)
    : data_(data), range_(range), batch_(batch), seq_len_(seq_len), seed_(seed) {
  MAMBA_CHECK(batch > 0 && seq_len > 0, "batch ({}) and sequence length ({}) must be positive", batch, seq_len);
  MAMBA_CHECK(range.size() >= seq_len + 1,
              "{}: the training part has {} tokens, fewer than one window of --seq-len {} + 1", data.source(),
              range.size(), seq_len);
}

void BatchSampler::fill(int64_t index, int32_t* out, uint8_t* doc_start) const {
  Rng rng(mix(seed_ ^ mix(uint64_t(index) + 0x632be59bd9b4e019ull)));
  const uint64_t starts = uint64_t(range_.size() - seq_len_);
  for (int64_t bi = 0; bi < batch_; ++bi) {
    const int64_t at = range_.begin + int64_t(rng.below(starts));
    data_.copy(at, seq_len_ + 1, out + bi * (seq_len_ + 1));
    if (doc_start != nullptr) data_.doc_start_flags(at, seq_len_ + 1, doc_start + bi * (seq_len_ + 1));
  }
}

std::vector<int64_t> eval_windows(const TokenData& data, TokenRange range, int64_t seq_len) {
  MAMBA_CHECK(seq_len > 0, "sequence length must be positive, got {}", seq_len);
  std::vector<int64_t> out;
  for (int64_t at = range.begin; at + seq_len + 1 <= range.end; at += seq_len) out.push_back(at);
  MAMBA_CHECK(!out.empty(), "{}: the evaluation part has {} tokens, fewer than one window of --seq-len {} + 1",
              data.source(), range.size(), seq_len);
  return out;
}

}  // namespace mambacpp
