// ByteLevel split pattern and byte-to-character table (see byte_level.h).
#include "io/byte_level.h"

#include <array>

#include "io/unicode.h"

namespace mambacpp::byte_level {
namespace {

using unicode::CharClass;

struct Tables {
  std::array<char32_t, 256> to_char{};
  std::array<int, 324> to_byte{};  // indexed by code point; the byte characters all lie below U+0144
};

bool stands_for_itself(int b) { return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE); }

Tables make_tables() {
  Tables t;
  t.to_byte.fill(-1);
  char32_t next = 0x100;
  for (int b = 0; b < 256; ++b) {
    const char32_t c = stands_for_itself(b) ? static_cast<char32_t>(b) : next++;
    t.to_char[b] = c;
    t.to_byte[c] = b;
  }
  return t;
}

const Tables& tables() {
  static const Tables t = make_tables();
  return t;
}

// Class of the character at s[i]; *end receives the offset just past it.
CharClass class_at(std::string_view s, size_t i, size_t* end) {
  *end = i;
  return unicode::char_class(unicode::next_char(s, *end));
}

// Offset just past the run of characters of class k that starts at s[i].
size_t run_end(std::string_view s, size_t i, CharClass k) {
  size_t next = i;
  while (i < s.size() && class_at(s, i, &next) == k) i = next;
  return i;
}

// Length of the contraction ('s 't 're 've 'm 'll 'd) at s[i], or 0.
size_t contraction(std::string_view s, size_t i) {
  if (s[i] != '\'' || i + 1 >= s.size()) return 0;
  const char a = s[i + 1];
  if (a == 's' || a == 't' || a == 'm' || a == 'd') return 2;
  if (i + 2 >= s.size()) return 0;
  const char b = s[i + 2];
  return ((a == 'r' || a == 'v') && b == 'e') || (a == 'l' && b == 'l') ? 3 : 0;
}

// Length of the piece the split pattern matches at s[i].
size_t piece_at(std::string_view s, size_t i) {
  if (const size_t n = contraction(s, i)) return n;
  size_t after = 0;
  const CharClass first = class_at(s, i, &after);
  if (s[i] == ' ' && after < s.size()) {
    size_t unused = 0;
    const CharClass second = class_at(s, after, &unused);
    if (second != CharClass::kSpace) return run_end(s, after, second) - i;
  }
  if (first != CharClass::kSpace) return run_end(s, i, first) - i;
  // \s+(?!\S) takes the whole run at the end of the text, and otherwise all of it but the last character,
  // which then begins the next piece; a lone space before a non-space falls to \s+.
  size_t end = i, last = i, next = i;
  while (end < s.size() && class_at(s, end, &next) == CharClass::kSpace) {
    last = end;
    end = next;
  }
  return end == s.size() || last == i ? end - i : last - i;
}

}  // namespace

char32_t byte_to_char(uint8_t b) { return tables().to_char[b]; }

int char_to_byte(char32_t c) { return c < tables().to_byte.size() ? tables().to_byte[c] : -1; }

std::string encode_bytes(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size() * 2);
  for (const char b : bytes) unicode::append_utf8(out, byte_to_char(static_cast<uint8_t>(b)));
  return out;
}

std::string decode_token(std::string_view token) {
  std::string out;
  out.reserve(token.size());
  for (size_t i = 0; i < token.size();) {
    const int b = char_to_byte(unicode::next_char(token, i));
    if (b < 0) return std::string(token);
    out += static_cast<char>(b);
  }
  return out;
}

void split(std::string_view text, std::vector<std::string_view>& out) {
  for (size_t i = 0; i < text.size();) {
    const size_t n = piece_at(text, i);
    out.push_back(text.substr(i, n));
    i += n;
  }
}

}  // namespace mambacpp::byte_level
