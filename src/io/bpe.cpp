// Byte-level BPE model (see bpe.h).
#include "io/bpe.h"

#include <mutex>
#include <queue>

#include "core/error.h"
#include "io/byte_level.h"

namespace mambacpp {
namespace {

constexpr size_t kCacheCapacity = 1 << 16;  // words; once full, new words are merged without being stored
constexpr size_t kCachedWordBytes = 256;    // longer words are not cached

struct Symbol {
  int32_t id;
  int32_t prev, next;  // neighbours in the list, -1 at the ends
  bool removed;        // absorbed by its left neighbour
};

struct Candidate {
  int32_t rank, pos, new_id;
};

// Heap order: lowest rank first, then leftmost.
struct LaterCandidate {
  bool operator()(const Candidate& a, const Candidate& b) const {
    return a.rank != b.rank ? a.rank > b.rank : a.pos > b.pos;
  }
};

}  // namespace

BpeModel::BpeModel(Vocab vocab, const Merges& merges, bool ignore_merges, const std::string& where)
    : vocab_(std::move(vocab)), ignore_merges_(ignore_merges) {
  auto id_of = [&](const std::string& token, size_t rank) {
    const auto it = vocab_.find(token);
    MAMBA_CHECK(it != vocab_.end(), "{}.merges[{}]: token '{}' is not in the vocabulary", where, rank, token);
    return it->second;
  };
  merges_.reserve(merges.size());
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const auto& [a, b] = merges[rank];
    const int32_t a_id = id_of(a, rank), b_id = id_of(b, rank), new_id = id_of(a + b, rank);
    merges_[pair_key(a_id, b_id)] = Merge{static_cast<int32_t>(rank), new_id};
  }
  for (int b = 0; b < 256; ++b) {
    const auto it = vocab_.find(byte_level::encode_bytes(std::string(1, static_cast<char>(b))));
    byte_ids_[b] = it == vocab_.end() ? -1 : it->second;
  }
}

const BpeModel::Merge* BpeModel::find_merge(int32_t a, int32_t b) const {
  const auto it = merges_.find(pair_key(a, b));
  return it == merges_.end() ? nullptr : &it->second;
}

void BpeModel::merge_word(std::string_view word, std::vector<int32_t>& out) const {
  std::vector<Symbol> sym;
  sym.reserve(word.size());
  for (const char ch : word) {
    const int32_t id = byte_ids_[static_cast<uint8_t>(ch)];
    if (id < 0) continue;  // a byte the vocabulary lacks is dropped, as the reference does without unk_token
    const auto n = static_cast<int32_t>(sym.size());
    if (n > 0) sym.back().next = n;
    sym.push_back(Symbol{id, n - 1, -1, false});
  }
  std::priority_queue<Candidate, std::vector<Candidate>, LaterCandidate> heap;
  for (size_t i = 0; i + 1 < sym.size(); ++i) {
    if (const Merge* m = find_merge(sym[i].id, sym[i + 1].id)) {
      heap.push(Candidate{m->rank, static_cast<int32_t>(i), m->new_id});
    }
  }
  while (!heap.empty()) {
    const Candidate top = heap.top();
    heap.pop();
    Symbol& left = sym[top.pos];
    if (left.removed || left.next < 0) continue;
    const Symbol right = sym[left.next];
    const Merge* current = find_merge(left.id, right.id);
    if (current == nullptr || current->new_id != top.new_id) continue;  // stale entry
    sym[left.next].removed = true;
    left.id = top.new_id;
    left.next = right.next;
    if (right.next >= 0) sym[right.next].prev = top.pos;
    if (left.prev >= 0) {
      if (const Merge* m = find_merge(sym[left.prev].id, left.id)) heap.push(Candidate{m->rank, left.prev, m->new_id});
    }
    if (left.next >= 0) {
      if (const Merge* m = find_merge(left.id, sym[left.next].id)) heap.push(Candidate{m->rank, top.pos, m->new_id});
    }
  }
  for (const Symbol& s : sym) {
    if (!s.removed) out.push_back(s.id);
  }
}

void BpeModel::encode_word(std::string_view word, std::vector<int32_t>& out) const {
  if (word.empty()) return;
  if (ignore_merges_) {
    const auto it = vocab_.find(byte_level::encode_bytes(word));
    if (it != vocab_.end()) {
      out.push_back(it->second);
      return;
    }
  }
  const bool cacheable = word.size() < kCachedWordBytes;
  if (cacheable) {
    std::shared_lock lock(*cache_mutex_);
    const auto it = cache_.find(word);
    if (it != cache_.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  const size_t start = out.size();
  merge_word(word, out);
  if (cacheable) {
    std::unique_lock lock(*cache_mutex_);
    if (cache_.size() < kCacheCapacity) cache_.try_emplace(std::string(word), out.begin() + start, out.end());
  }
}

}  // namespace mambacpp
