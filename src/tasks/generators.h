// The synthetic tasks of the Mamba paper (Gu & Dao 2023, §4.1 and Appendix E.1), as seeded generators of token
// sequences of any length. A sequence is defined by (task, seed, index, length) alone: its tokens are computed
// position by position from a counter-based hash, so any slice of it can be produced on demand (a sequence of
// 2^20 tokens is streamed chunk by chunk, never held whole) and the stream of sequences needs no state.
//
// Vocabulary layouts (data tokens first, then the task's special tokens):
//   selective copying  0..15 data, 16 noise, 17 marker (v = 18). A body of l − 16 tokens is noise except at 16
//                      distinct random positions, which hold random data tokens; 16 markers follow. At the j-th
//                      marker (position l − 16 + j) the model must output the j-th data token in body order.
//   induction heads    0..15 data, 16 special (v = 17). Every token is a random data token, except one special
//                      token at a random position p ≤ l − 3 followed by the key at p + 1, and the special token
//                      again at the last position l − 1, where the model must output the key.
// An answer position t is scored on the logits after token t (the model's prediction at t), as in lm_loss.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace mambacpp {

enum class Task { selective_copying, induction_heads };

// "selective-copying" / "induction-heads" ⇄ Task; parse throws Error listing the names.
Task parse_task(const std::string& name);
const char* task_name(Task task);

constexpr int32_t kTaskDataTokens = 16;  // data tokens 0..15 in both tasks
constexpr int32_t kCopyNoise = 16;
constexpr int32_t kCopyMarker = 17;
constexpr int32_t kCopyCount = 16;       // data tokens to copy
constexpr int32_t kInductionSpecial = 16;

int64_t task_vocab(Task task);       // 18 (selective copying), 17 (induction heads)
int64_t task_min_length(Task task);  // 32 (16 body positions + 16 markers), 4
int64_t task_answers(Task task);     // answer positions per sequence: 16, 1

// One sequence of a task. Construction draws the few random choices (positions, data tokens, key); the
// filler tokens are hashed from (seed, index, position) when asked for.
class TaskSequence {
 public:
  // Throws Error when length < task_min_length(task).
  TaskSequence(Task task, uint64_t seed, int64_t index, int64_t length);

  int64_t length() const { return length_; }
  // ids[0 .. count) = tokens start .. start + count of the sequence (0 ≤ start, start + count ≤ length).
  void fill(int64_t start, int64_t count, int32_t* ids) const;
  // The answer positions are the last task_answers() positions: first_answer() .. length − 1.
  int64_t first_answer() const { return length_ - int64_t(answers_.size()); }
  // The token to output at each answer position, in order.
  const std::vector<int32_t>& answers() const { return answers_; }
  // Positions of the data tokens in the body (selective copying, ascending) or {p, p + 1} (induction heads).
  const std::vector<int64_t>& key_positions() const { return key_positions_; }
  // targets[0 .. length): the answer at each answer position, −1 elsewhere (lm_loss_targets' layout).
  void fill_targets(int32_t* targets) const;

 private:
  int32_t token_at(int64_t t) const;

  Task task_;
  uint64_t hash_seed_;
  int64_t length_;
  std::vector<int64_t> key_positions_;
  std::vector<int32_t> key_tokens_;  // the token at each key position
  std::vector<int32_t> answers_;
};

}  // namespace mambacpp
