// Evaluating a language model on token data: the mean next-token loss over non-overlapping windows, each from
// a zero state and with the state reset at every document start inside it (lm_loss_packed), reported in nats per
// token, as perplexity, and in bits per token and per byte of source text.
#pragma once

#include <cstdint>
#include <string>

#include "core/context.h"
#include "model/lm_train.h"
#include "model/weights.h"
#include "train/batcher.h"
#include "train/token_file.h"

namespace mambacpp {

class Tokenizer;

struct EvalResult {
  double loss = 0;            // nats per predicted token (the windows' mean, each batch weighted by its windows)
  int64_t windows = 0;
  int64_t predictions = 0;    // windows · seq_len
  double bits_per_token = 0;
  double bits_per_byte = 0;   // through the data's overall tokens-per-byte ratio (1 for byte-level data)
  double perplexity = 0;
};

// Evaluates `w` on the windows of `range` (at most `max_windows` of them, the first ones, when > 0), `batch`
// windows per forward pass.
EvalResult evaluate(const ModelWeights& w, const TokenData& data, TokenRange range, int64_t seq_len, int64_t batch,
                    int64_t max_windows, TrainWorkspace& ws, Context& ctx);

// Throws Error when the data or the tokenizer has ids the model's vocabulary (`cfg`, from `model_source`)
// does not cover, naming both.
void check_vocabulary(const TokenData& data, const Tokenizer* tok, const MambaConfig& cfg,
                      const std::string& model_source);

}  // namespace mambacpp
