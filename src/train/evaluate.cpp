// Evaluation of a language model on token data (evaluate.h).
#include "train/evaluate.h"

#include <algorithm>
#include <cmath>
#include <numbers>
#include <vector>

#include "core/error.h"
#include "io/tokenizer.h"

namespace mambacpp {

EvalResult evaluate(const ModelWeights& w, const TokenData& data, TokenRange range, int64_t seq_len, int64_t batch,
                    int64_t max_windows, TrainWorkspace& ws, Context& ctx) {
  MAMBA_CHECK(batch > 0, "evaluation batch must be positive, got {}", batch);
  std::vector<int64_t> starts = eval_windows(data, range, seq_len);
  if (max_windows > 0 && int64_t(starts.size()) > max_windows) starts.resize(size_t(max_windows));
  const int64_t window = seq_len + 1;
  std::vector<int32_t> ids(size_t(batch * window));
  std::vector<uint8_t> doc_start(ids.size());
  double total = 0;
  for (size_t i = 0; i < starts.size(); i += size_t(batch)) {
    const int64_t nb = std::min<int64_t>(batch, int64_t(starts.size() - i));
    for (int64_t bi = 0; bi < nb; ++bi) {
      data.copy(starts[i + size_t(bi)], window, ids.data() + bi * window);
      data.doc_start_flags(starts[i + size_t(bi)], window, doc_start.data() + bi * window);
    }
    total += lm_loss_packed(nullptr, w, ids.data(), doc_start.data(), nb, window, ws, ctx) * double(nb);
  }
  EvalResult r;
  r.windows = int64_t(starts.size());
  r.predictions = r.windows * seq_len;
  r.loss = total / double(r.windows);
  r.perplexity = std::exp(r.loss);
  r.bits_per_token = r.loss / std::numbers::ln2;
  const double tokens_per_byte = data.text_bytes() > 0 ? double(data.size()) / double(data.text_bytes()) : 1.0;
  r.bits_per_byte = r.bits_per_token * tokens_per_byte;
  return r;
}

void check_vocabulary(const TokenData& data, const Tokenizer* tok, const MambaConfig& cfg,
                      const std::string& model_source) {
  if (tok != nullptr)
    MAMBA_CHECK(tok->vocab_size() <= cfg.vocab_size,
                "the tokenizer has {} tokens but the model ({}) has a vocabulary of {}", tok->vocab_size(),
                model_source, cfg.vocab_size);
  const int64_t top = data.max_token();
  MAMBA_CHECK(top < cfg.vocab_size, "{}: token id {} is outside the vocabulary of {} of the model ({})",
              data.source(), top, cfg.vocab_size, model_source);
}

}  // namespace mambacpp
