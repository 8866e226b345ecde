// Unicode helpers (see unicode.h). UTF-8 well-formedness follows Table 3-7 of the Unicode Standard: the second
// byte's range depends on the lead byte (E0: A0..BF, ED: 80..9F, F0: 90..BF, F4: 80..8F), which excludes
// overlong forms, surrogates and code points above U+10FFFF.
#include "io/unicode.h"

#include <utf8proc.h>

#include <array>
#include <cstdlib>
#include <memory>

#include "core/error.h"

namespace mambacpp::unicode {
namespace {

// Examines the sequence that starts at s[i]. Returns its length when it is a whole well-formed character;
// otherwise returns minus the length of its maximal ill-formed subpart (at least 1) and sets *truncated when
// that subpart is a well-formed prefix cut short by the end of s.
int step(std::string_view s, size_t i, bool* truncated) {
  *truncated = false;
  const auto b0 = static_cast<unsigned char>(s[i]);
  if (b0 < 0x80) return 1;
  int need = 0;
  unsigned char lo = 0x80, hi = 0xBF;
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    need = 1;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    need = 2;
    if (b0 == 0xE0) lo = 0xA0;
    if (b0 == 0xED) hi = 0x9F;
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    need = 3;
    if (b0 == 0xF0) lo = 0x90;
    if (b0 == 0xF4) hi = 0x8F;
  } else {
    return -1;
  }
  for (int k = 1; k <= need; ++k) {
    if (i + k >= s.size()) {
      *truncated = true;
      return -k;
    }
    const auto b = static_cast<unsigned char>(s[i + k]);
    if (b < lo || b > hi) return -k;
    lo = 0x80;
    hi = 0xBF;
  }
  return need + 1;
}

bool is_letter(utf8proc_category_t cat) {
  return cat == UTF8PROC_CATEGORY_LU || cat == UTF8PROC_CATEGORY_LL || cat == UTF8PROC_CATEGORY_LT ||
         cat == UTF8PROC_CATEGORY_LM || cat == UTF8PROC_CATEGORY_LO;
}

bool is_number(utf8proc_category_t cat) {
  return cat == UTF8PROC_CATEGORY_ND || cat == UTF8PROC_CATEGORY_NL || cat == UTF8PROC_CATEGORY_NO;
}

CharClass slow_class(char32_t c) {
  if (is_white_space(c)) return CharClass::kSpace;
  const auto cat = utf8proc_category(static_cast<utf8proc_int32_t>(c));
  if (is_letter(cat)) return CharClass::kLetter;
  if (is_number(cat)) return CharClass::kNumber;
  return CharClass::kOther;
}

std::array<CharClass, 128> make_ascii_classes() {
  std::array<CharClass, 128> t{};
  for (char32_t c = 0; c < 128; ++c) t[c] = slow_class(c);
  return t;
}

}  // namespace

size_t first_invalid_utf8(std::string_view s) {
  size_t i = 0;
  bool truncated = false;
  while (i < s.size()) {
    if (static_cast<unsigned char>(s[i]) < 0x80) {
      ++i;
      continue;
    }
    const int n = step(s, i, &truncated);
    if (n < 0) return i;
    i += static_cast<size_t>(n);
  }
  return std::string_view::npos;
}

char32_t next_char(std::string_view s, size_t& i) {
  const auto b0 = static_cast<unsigned char>(s[i]);
  if (b0 < 0x80) {
    ++i;
    return b0;
  }
  const int n = b0 >= 0xF0 ? 4 : b0 >= 0xE0 ? 3 : 2;
  char32_t c = b0 & (0x7F >> n);
  for (int k = 1; k < n; ++k) c = (c << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
  i += static_cast<size_t>(n);
  return c;
}

void append_utf8(std::string& out, char32_t c) {
  if (c < 0x80) {
    out += static_cast<char>(c);
  } else if (c < 0x800) {
    out += static_cast<char>(0xC0 | (c >> 6));
    out += static_cast<char>(0x80 | (c & 0x3F));
  } else if (c < 0x10000) {
    out += static_cast<char>(0xE0 | (c >> 12));
    out += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (c & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (c >> 18));
    out += static_cast<char>(0x80 | ((c >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (c & 0x3F));
  }
}

size_t append_lossy(std::string& out, std::string_view bytes, bool final) {
  size_t i = 0;
  bool truncated = false;
  while (i < bytes.size()) {
    const int n = step(bytes, i, &truncated);
    if (n > 0) {
      out.append(bytes.substr(i, static_cast<size_t>(n)));
      i += static_cast<size_t>(n);
      continue;
    }
    if (truncated && !final) break;
    out += "\xEF\xBF\xBD";
    i += static_cast<size_t>(-n);
  }
  return i;
}

CharClass char_class(char32_t c) {
  static const std::array<CharClass, 128> ascii = make_ascii_classes();
  return c < 128 ? ascii[c] : slow_class(c);
}

bool is_white_space(char32_t c) {
  if (c == 0x20 || (c >= 0x09 && c <= 0x0D) || c == 0x85) return true;
  if (c < 0xA0) return false;
  const auto cat = utf8proc_category(static_cast<utf8proc_int32_t>(c));
  return cat == UTF8PROC_CATEGORY_ZS || cat == UTF8PROC_CATEGORY_ZL || cat == UTF8PROC_CATEGORY_ZP;
}

bool is_word_char(char32_t c) {
  // Other_Alphabetic code points outside the mark categories: circled and squared Latin letters (So).
  if ((c >= 0x24B6 && c <= 0x24E9) || (c >= 0x1F130 && c <= 0x1F149) || (c >= 0x1F150 && c <= 0x1F169) ||
      (c >= 0x1F170 && c <= 0x1F189)) {
    return true;
  }
  if (c == 0x200C || c == 0x200D) return true;
  const auto cat = utf8proc_category(static_cast<utf8proc_int32_t>(c));
  return is_letter(cat) || cat == UTF8PROC_CATEGORY_NL || cat == UTF8PROC_CATEGORY_ND || cat == UTF8PROC_CATEGORY_MN ||
         cat == UTF8PROC_CATEGORY_MC || cat == UTF8PROC_CATEGORY_ME || cat == UTF8PROC_CATEGORY_PC;
}

std::string nfc(std::string_view s) {
  // Text made only of code points below U+0300 is already in NFC: no character there decomposes, and none is
  // the second half of a canonical composition. Such text has no byte >= 0xCC.
  bool simple = true;
  for (const char ch : s) simple &= static_cast<unsigned char>(ch) < 0xCC;
  if (simple) return std::string(s);
  utf8proc_uint8_t* out = nullptr;
  const utf8proc_ssize_t n =
      utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(s.data()), static_cast<utf8proc_ssize_t>(s.size()), &out,
                   static_cast<utf8proc_option_t>(UTF8PROC_STABLE | UTF8PROC_COMPOSE));
  const std::unique_ptr<utf8proc_uint8_t, decltype(&std::free)> owned(out, &std::free);
  MAMBA_CHECK(n >= 0, "NFC normalization failed: {}", utf8proc_errmsg(n));
  return std::string(reinterpret_cast<const char*>(out), static_cast<size_t>(n));
}

}  // namespace mambacpp::unicode
