// Batches for training and evaluation from a TokenData: the train/validation split (first 90 % / last 10 %
// of the tokens), training windows at seeded random offsets inside the training part, and the validation part
// cut into non-overlapping windows (ANCHORS §6). A window of seq_len predictions holds seq_len + 1 tokens:
// inputs t and targets t + 1; consecutive validation windows share one boundary token. Windows may span several
// documents: their document-start flags go with them, for lm_loss_packed to reset the state at each one.
#pragma once

#include <cstdint>
#include <vector>

#include "train/token_file.h"

namespace mambacpp {

struct TokenRange {
  int64_t begin = 0, end = 0;  // [begin, end)
  int64_t size() const { return end - begin; }
};

// [0, ⌊0.9·n⌋) and [⌊0.9·n⌋, n) for `train_fraction` 0.9.
void split_tokens(int64_t n, double train_fraction, TokenRange& train, TokenRange& val);

// Training batches: batch number i holds `batch` windows of seq_len + 1 tokens, each starting at an offset
// drawn uniformly from the range's valid starts by a generator seeded from (seed, i) alone, so any batch can
// be drawn again from its number (the data loader's whole state is the seed and the next batch number).
class BatchSampler {
 public:
  // Throws Error naming the data source when the range holds fewer than seq_len + 1 tokens.
  BatchSampler(const TokenData& data, TokenRange range, int64_t batch, int64_t seq_len, uint64_t seed);
  // Fills out[batch · (seq_len + 1)] with batch number `index`, and doc_start (same shape) with the windows'
  // document-start flags when it is not null.
  void fill(int64_t index, int32_t* out, uint8_t* doc_start = nullptr) const;
  int64_t batch() const { return batch_; }
  int64_t window() const { return seq_len_ + 1; }

 private:
  const TokenData& data_;
  TokenRange range_;
  int64_t batch_, seq_len_;
  uint64_t seed_;
};

// Start offsets of the non-overlapping windows of seq_len + 1 tokens (stride seq_len) covering `range`;
// throws Error naming the data source when not even one fits.
std::vector<int64_t> eval_windows(const TokenData& data, TokenRange range, int64_t seq_len);

}  // namespace mambacpp
