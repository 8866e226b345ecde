// Byte-level BPE model: a vocabulary of byte-character strings (see byte_level.h) and ranked merges. A word (one
// piece of the split, as raw bytes) starts as one symbol per byte and repeatedly merges the adjacent pair of
// lowest rank, leftmost first, with a heap over a linked list of symbols (O(n log n)); the reference's rule for
// stale heap entries is kept (an entry stands while its position still holds a pair merging to the same token).
// Results are cached per word; the cache is shared by all threads (a reader-writer lock guards it).
#pragma once

#include <cstdint>
#include <memory>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace mambacpp {

class BpeModel {
 public:
  using Vocab = std::unordered_map<std::string, int32_t>;
  using Merges = std::vector<std::pair<std::string, std::string>>;  // rank = index

  // Throws Error (prefixed by `where`, e.g. "tokenizer.json: model") when a merge names a token, or makes one,
  // that is not in the vocabulary. With ignore_merges, a word that is itself in the vocabulary is one token.
  BpeModel(Vocab vocab, const Merges& merges, bool ignore_merges, const std::string& where);

  // Appends the ids of one word given as raw bytes.
  void encode_word(std::string_view word, std::vector<int32_t>& out) const;

  const Vocab& vocab() const { return vocab_; }

 private:
  struct Merge {
    int32_t rank;
    int32_t new_id;
  };
  static uint64_t pair_key(int32_t a, int32_t b) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
  }
  const Merge* find_merge(int32_t a, int32_t b) const;
  void merge_word(std::string_view word, std::vector<int32_t>& out) const;

  struct StringHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  using Cache = std::unordered_map<std::string, std::vector<int32_t>, StringHash, std::equal_to<>>;

  Vocab vocab_;
  std::unordered_map<uint64_t, Merge> merges_;
  int32_t byte_ids_[256];  // id of each byte's character, or -1 when the vocabulary lacks it
  bool ignore_merges_;
  mutable std::unique_ptr<std::shared_mutex> cache_mutex_ = std::make_unique<std::shared_mutex>();
  mutable Cache cache_;
};

}  // namespace mambacpp
