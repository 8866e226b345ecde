// The strict PNG reader of the tests (png_check.h).
#include "support/png_check.h"

#include <stdexcept>

namespace mambacpp::test {

namespace {

uint32_t be32(const std::string& s, size_t at) {
  if (at + 4 > s.size()) throw std::runtime_error("PNG: truncated at byte " + std::to_string(at));
  return uint32_t(uint8_t(s[at])) << 24 | uint32_t(uint8_t(s[at + 1])) << 16 | uint32_t(uint8_t(s[at + 2])) << 8 |
         uint32_t(uint8_t(s[at + 3]));
}

// CRC-32 bit by bit (independent of the table-driven encoder).
uint32_t crc32_bitwise(const std::string& s) {
  uint32_t c = 0xffffffffu;
  for (unsigned char b : s) {
    c ^= b;
    for (int k = 0; k < 8; ++k) c = (c >> 1) ^ (0xedb88320u & (0u - (c & 1)));
  }
  return ~c;
}

void require(bool ok, const std::string& what) {
  if (!ok) throw std::runtime_error("PNG: " + what);
}

}  // namespace

DecodedPng decode_png(const std::string& png) {
  require(png.substr(0, 8) == std::string("\x89PNG\r\n\x1a\n"), "bad signature");
  DecodedPng img;
  std::string idat, types;
  for (size_t at = 8; at < png.size();) {
    const uint32_t n = be32(png, at);
    require(at + 12 + n <= png.size(), "chunk past the end of the file");
    const std::string type = png.substr(at + 4, 4), data = png.substr(at + 8, n);
    require(be32(png, at + 8 + n) == crc32_bitwise(png.substr(at + 4, 4 + n)), "bad CRC of chunk " + type);
    if (type == "IHDR") {
      require(n == 13, "IHDR of " + std::to_string(n) + " bytes");
      img.width = int(be32(data, 0)), img.height = int(be32(data, 4));
      require(data.substr(8, 5) == std::string("\x04\x03\x00\x00\x00", 5), "not a 4-bit palette image");
    }
    if (type == "PLTE")
      for (size_t i = 0; i + 3 <= n; i += 3) img.palette.push_back({uint8_t(data[i]), uint8_t(data[i + 1]), uint8_t(data[i + 2])});
    if (type == "IDAT") idat += data;
    types += type + " ";
    at += 12 + n;
  }
  require(types == "IHDR PLTE IDAT IEND ", "chunks " + types);
  // Undo the zlib stream of stored blocks.
  require(idat.size() >= 6 && idat[0] == 0x78 && idat[1] == 0x01, "bad zlib header");
  std::string raw;
  size_t p = 2;
  for (bool last = false; !last;) {
    require(p + 5 <= idat.size(), "truncated deflate block");
    last = idat[p] & 1;
    require((idat[p] & 6) == 0, "not a stored deflate block");
    const size_t n = uint8_t(idat[p + 1]) | size_t(uint8_t(idat[p + 2])) << 8;
    require((n ^ 0xffff) == (uint8_t(idat[p + 3]) | size_t(uint8_t(idat[p + 4])) << 8), "bad stored length");
    raw += idat.substr(p + 5, n);
    p += 5 + n;
  }
  uint32_t a = 1, b = 0;
  for (unsigned char c : raw) a = (a + c) % 65521, b = (b + a) % 65521;
  require(be32(idat, p) == (b << 16 | a), "bad Adler-32");
  const size_t row = size_t(img.width + 1) / 2 + 1;
  require(raw.size() == size_t(img.height) * row, "image data of " + std::to_string(raw.size()) + " bytes");
  img.pixels.resize(size_t(img.width) * img.height);
  for (int y = 0; y < img.height; ++y) {
    require(raw[size_t(y) * row] == 0, "row filter other than none");
    for (int x = 0; x < img.width; ++x) {
      const uint8_t byte = uint8_t(raw[size_t(y) * row + 1 + size_t(x) / 2]);
      const uint8_t index = x % 2 == 0 ? byte >> 4 : byte & 15;
      require(index < img.palette.size(), "pixel outside the palette");
      img.pixels[size_t(y) * img.width + x] = index;
    }
  }
  return img;
}

}  // namespace mambacpp::test
