// Added-token matching (see added_tokens.h).
#include "io/added_tokens.h"

#include <algorithm>

#include "io/unicode.h"

namespace mambacpp {
namespace {

// Start of the character that ends just before text[end] (end > 0).
size_t char_before(std::string_view text, size_t end) {
  size_t i = end - 1;
  while (i > 0 && (static_cast<unsigned char>(text[i]) & 0xC0) == 0x80) --i;
  return i;
}

bool word_char_before(std::string_view text, size_t end) {
  if (end == 0) return false;
  size_t i = char_before(text, end);
  return unicode::is_word_char(unicode::next_char(text, i));
}

bool word_char_at(std::string_view text, size_t i) {
  return i < text.size() && unicode::is_word_char(unicode::next_char(text, i));
}

// Start of the run of white space that ends at text[end].
size_t white_space_before(std::string_view text, size_t end) {
  while (end > 0) {
    const size_t prev = char_before(text, end);
    size_t i = prev;
    if (!unicode::is_white_space(unicode::next_char(text, i))) break;
    end = prev;
  }
  return end;
}

// End of the run of white space that starts at text[i].
size_t white_space_after(std::string_view text, size_t i) {
  while (i < text.size()) {
    size_t next = i;
    if (!unicode::is_white_space(unicode::next_char(text, next))) break;
    i = next;
  }
  return i;
}

}  // namespace

int32_t AddedTokenMatcher::child(int32_t node, unsigned char b) const {
  for (const auto& [byte, index] : nodes_[node].children) {
    if (byte == b) return index;
  }
  return -1;
}

void AddedTokenMatcher::add(const std::string& pattern, int32_t id, const AddedToken& rules) {
  int32_t node = 0;
  for (const char ch : pattern) {
    const auto b = static_cast<unsigned char>(ch);
    int32_t next = child(node, b);
    if (next < 0) {
      next = static_cast<int32_t>(nodes_.size());
      nodes_[node].children.emplace_back(b, next);
      nodes_.emplace_back();
    }
    node = next;
  }
  first_byte_[static_cast<unsigned char>(pattern[0])] = true;
  nodes_[node].entry = static_cast<int32_t>(entries_.size());
  entries_.push_back(Entry{id, rules});
}

std::pair<size_t, int32_t> AddedTokenMatcher::longest_at(std::string_view text, size_t i) const {
  std::pair<size_t, int32_t> best{i, -1};
  int32_t node = 0;
  for (size_t j = i; j < text.size(); ++j) {
    node = child(node, static_cast<unsigned char>(text[j]));
    if (node < 0) break;
    if (nodes_[node].entry >= 0) best = {j + 1, nodes_[node].entry};
  }
  return best;
}

void AddedTokenMatcher::split(std::string_view text, std::vector<TextSpan>& out) const {
  size_t taken = 0;  // end of the last span emitted
  size_t pos = 0;    // where the search for the next match starts
  while (pos < text.size() && !entries_.empty()) {
    std::pair<size_t, int32_t> match{0, -1};
    size_t start = pos;
    for (; start < text.size(); ++start) {
      if (!first_byte_[static_cast<unsigned char>(text[start])]) continue;
      match = longest_at(text, start);
      if (match.second >= 0) break;
    }
    if (match.second < 0) break;
    size_t stop = match.first;
    pos = stop;
    const Entry& entry = entries_[match.second];
    if (entry.rules.single_word && (word_char_before(text, start) || word_char_at(text, stop))) continue;
    if (entry.rules.lstrip) start = std::max(white_space_before(text, start), taken);
    if (entry.rules.rstrip) stop = white_space_after(text, stop);
    if (taken < start) out.push_back(TextSpan{taken, start, -1});
    out.push_back(TextSpan{start, stop, entry.id});
    taken = stop;
  }
  if (taken < text.size()) out.push_back(TextSpan{taken, text.size(), -1});
}

}  // namespace mambacpp
