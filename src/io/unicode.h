// Unicode helpers for the tokenizer: UTF-8 validation, decoding and encoding; lossy conversion of arbitrary bytes
// that replaces each maximal ill-formed subsequence by U+FFFD (the Unicode "substitution of maximal subparts"
// practice, as Rust's String::from_utf8_lossy does); the character classes the GPT-2 split regex and the
// added-token rules use; and NFC normalization. Character properties and NFC come from utf8proc.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace mambacpp::unicode {

// Byte offset of the first ill-formed UTF-8 sequence in `s`, or std::string_view::npos when `s` is valid.
size_t first_invalid_utf8(std::string_view s);

// Decodes the character that starts at s[i] (s must be valid UTF-8 there) and advances i past it.
char32_t next_char(std::string_view s, size_t& i);

// Appends the UTF-8 encoding of the code point c.
void append_utf8(std::string& out, char32_t c);

// Appends `bytes` to `out` as valid UTF-8, replacing each maximal ill-formed subsequence by U+FFFD. When `final`
// is false, a trailing sequence that is incomplete but could still become valid is left unconsumed. Returns the
// number of bytes consumed.
size_t append_lossy(std::string& out, std::string_view bytes, bool final);

// The classes the GPT-2 split pattern distinguishes: \p{L}, \p{N}, \s (White_Space), and everything else.
enum class CharClass : unsigned char { kLetter, kNumber, kSpace, kOther };
CharClass char_class(char32_t c);

// Unicode White_Space (what both \s dialects in the reference match).
bool is_white_space(char32_t c);

// A "word" character as the reference's \w has it: Alphabetic, a mark, a decimal digit, connector punctuation or
// a join control.
bool is_word_char(char32_t c);

// NFC of valid UTF-8 text.
std::string nfc(std::string_view s);

}  // namespace mambacpp::unicode
