// The ByteLevel pieces of GPT-2-style tokenizers: the split pattern
//   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
// evaluated by hand over code points (leftmost-first alternation, as the reference's regex engine does), and the
// reversible byte-to-character table that lets a BPE vocabulary of strings cover every byte: bytes that are
// printable Latin-1 ('!'..'~', 0xA1..0xAC, 0xAE..0xFF) stand for themselves and the other 68 bytes, in order,
// for U+0100, U+0101, ... (so the space 0x20 is 'Ġ' U+0120 and '\n' is 'Ċ' U+010A).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace mambacpp::byte_level {

// The character that stands for byte b.
char32_t byte_to_char(uint8_t b);
// The byte that character c stands for, or -1 when c is not one of the 256 byte characters.
int char_to_byte(char32_t c);

// The UTF-8 text of the byte characters for `bytes` (what the BPE vocabulary is written in).
std::string encode_bytes(std::string_view bytes);

// Decodes one token's text the way the ByteLevel decoder does: when every character is a byte character, the
// bytes they stand for; otherwise the token's own UTF-8 bytes (an added token such as a run of plain spaces).
// The result may be any bytes, not necessarily valid UTF-8.
std::string decode_token(std::string_view token);

// Appends to `out` the pieces of valid UTF-8 `text` under the split pattern above; the pieces cover the text.
void split(std::string_view text, std::vector<std::string_view>& out);

}  // namespace mambacpp::byte_level
