// The synthetic task generators (generators.h).
#include "tasks/generators.h"

#include <algorithm>

#include "core/error.h"
#include "core/rng.h"

namespace mambacpp {

namespace {

// splitmix64's finaliser: a well-mixed 64-bit hash of x.
uint64_t mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// A random data token (0..15) for position t of the sequence hashed as `seed`.
int32_t filler(uint64_t seed, int64_t t) { return int32_t(mix(seed ^ mix(uint64_t(t))) >> 60); }

}  // namespace

Task parse_task(const std::string& name) {
  if (name == "selective-copying") return Task::selective_copying;
  if (name == "induction-heads") return Task::induction_heads;
  fail("unknown task '{}': the tasks are selective-copying and induction-heads", name);
}

const char* task_name(Task task) {
  return task == Task::selective_copying ? "selective-copying" : "induction-heads";
}

int64_t task_vocab(Task task) { return task == Task::selective_copying ? 18 : 17; }
int64_t task_min_length(Task task) { return task == Task::selective_copying ? 2 * kCopyCount : 4; }
int64_t task_answers(Task task) { return task == Task::selective_copying ? kCopyCount : 1; }

TaskSequence::TaskSequence(Task task, uint64_t seed, int64_t index, int64_t length)
    : task_(task), hash_seed_(mix(mix(seed) ^ uint64_t(index))), length_(length) {
  MAMBA_CHECK(length >= task_min_length(task), "{}: a sequence needs at least {} tokens, got a length of {}",
              task_name(task), task_min_length(task), length);
  Rng rng(hash_seed_);
  if (task == Task::selective_copying) {
    const int64_t body = length - kCopyCount;
    while (int64_t(key_positions_.size()) < kCopyCount) {
      const int64_t p = int64_t(rng.below(uint64_t(body)));
      if (std::find(key_positions_.begin(), key_positions_.end(), p) == key_positions_.end())
        key_positions_.push_back(p);
    }
    std::sort(key_positions_.begin(), key_positions_.end());
    for (int32_t j = 0; j < kCopyCount; ++j) key_tokens_.push_back(int32_t(rng.below(kTaskDataTokens)));
    answers_ = key_tokens_;
  } else {
    const int64_t p = int64_t(rng.below(uint64_t(length - 2)));
    const int32_t key = int32_t(rng.below(kTaskDataTokens));
    key_positions_ = {p, p + 1};
    key_tokens_ = {kInductionSpecial, key};
    answers_ = {key};
  }
}

int32_t TaskSequence::token_at(int64_t t) const {
  if (task_ == Task::selective_copying) {
    if (t >= length_ - kCopyCount) return kCopyMarker;
    const auto it = std::lower_bound(key_positions_.begin(), key_positions_.end(), t);
    return it != key_positions_.end() && *it == t ? key_tokens_[size_t(it - key_positions_.begin())] : kCopyNoise;
  }
  if (t == length_ - 1) return kInductionSpecial;
  if (t == key_positions_[0]) return key_tokens_[0];
  if (t == key_positions_[1]) return key_tokens_[1];
  return filler(hash_seed_, t);
}

void TaskSequence::fill(int64_t start, int64_t count, int32_t* ids) const {
  MAMBA_CHECK(start >= 0 && count >= 0 && start + count <= length_,
              "{}: tokens {}..{} lie outside a sequence of {}", task_name(task_), start, start + count, length_);
  for (int64_t i = 0; i < count; ++i) ids[i] = token_at(start + i);
}

void TaskSequence::fill_targets(int32_t* targets) const {
  std::fill(targets, targets + length_, -1);
  std::copy(answers_.begin(), answers_.end(), targets + first_answer());
}

}  // namespace mambacpp
