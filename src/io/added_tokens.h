// Added tokens (tokenizer.json "added_tokens"): strings split out of the text before the model sees it. A set is
// searched leftmost-longest over bytes (a trie walked from each start); after each match the search resumes at
// the match's end. A match of a single_word token is dropped when a word character (\w) touches either side;
// lstrip widens a match left over the white space before it (never into the previous match), rstrip right over
// the white space after it. The tokenizer keeps two sets: tokens matched on the raw text and, for
// `normalized: true` tokens, their normalized form matched on normalized text.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace mambacpp {

struct AddedToken {
  std::string content;
  bool single_word = false;
  bool lstrip = false;
  bool rstrip = false;
  bool normalized = true;
  bool special = false;
  bool operator==(const AddedToken&) const = default;
};

// A stretch [begin, end) of the searched text: an added token's id, or -1 for text left to tokenize. Token
// stretches may overlap the text before them only where rstrip reached over a later match's start, as in the
// reference.
struct TextSpan {
  size_t begin, end;
  int32_t id;
};

class AddedTokenMatcher {
 public:
  // Adds `pattern` (non-empty), matched for token `id` under the rules of `rules`.
  void add(const std::string& pattern, int32_t id, const AddedToken& rules);
  // Appends the spans of `text` (valid UTF-8) in order; the text spans are non-empty.
  void split(std::string_view text, std::vector<TextSpan>& out) const;

 private:
  struct Node {
    std::vector<std::pair<unsigned char, int32_t>> children;
    int32_t entry = -1;  // index into entries_ of the pattern ending here
  };
  struct Entry {
    int32_t id;
    AddedToken rules;
  };
  // End of the longest pattern that starts at text[i], with its entry; {i, -1} when none does.
  std::pair<size_t, int32_t> longest_at(std::string_view text, size_t i) const;
  int32_t child(int32_t node, unsigned char b) const;

  std::vector<Node> nodes_{Node{}};
  std::vector<Entry> entries_;
  bool first_byte_[256] = {};
};

}  // namespace mambacpp
