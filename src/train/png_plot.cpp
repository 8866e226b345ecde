// The loss chart and its PNG encoder (png_plot.h).
#include "train/png_plot.h"

#include <algorithm>
#include <array>
#include <cmath>

#include "core/error.h"
#include "io/atomic_file.h"
#include "train/raster.h"

namespace mambacpp {

namespace {

uint32_t crc32(const uint8_t* p, size_t n, uint32_t crc = 0) {
  static const std::array<uint32_t, 256> table = [] {
    std::array<uint32_t, 256> t{};
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xedb88320u ^ (c >> 1) : c >> 1;
      t[i] = c;
    }
    return t;
  }();
  crc = ~crc;
  for (size_t i = 0; i < n; ++i) crc = table[(crc ^ p[i]) & 0xff] ^ (crc >> 8);
  return ~crc;
}

void put_be32(std::string& out, uint32_t v) {
  for (int s = 24; s >= 0; s -= 8) out.push_back(char((v >> s) & 0xff));
}

void put_chunk(std::string& out, const char type[4], const std::string& data) {
  put_be32(out, uint32_t(data.size()));
  const std::string body = std::string(type, 4) + data;
  out += body;
  put_be32(out, crc32(reinterpret_cast<const uint8_t*>(body.data()), body.size()));
}

// A zlib stream of stored deflate blocks (at most 65,535 bytes each) holding `raw`.
std::string zlib_stored(const std::string& raw) {
  std::string z = {char(0x78), char(0x01)};
  size_t at = 0;
  do {
    const size_t n = std::min<size_t>(65535, raw.size() - at);
    z.push_back(at + n == raw.size() ? 1 : 0);
    z.push_back(char(n & 0xff));
    z.push_back(char(n >> 8));
    z.push_back(char(~n & 0xff));
    z.push_back(char((~n >> 8) & 0xff));
    z.append(raw, at, n);
    at += n;
  } while (at < raw.size());
  uint32_t a = 1, b = 0;
  for (unsigned char c : raw) {
    a = (a + c) % 65521;
    b = (b + a) % 65521;
  }
  put_be32(z, (b << 16) | a);
  return z;
}

// Palette indices of the chart's colours.
enum Colour : uint8_t { white, grid, black, blue, orange };
const std::vector<std::array<uint8_t, 3>> kPalette = {
    {255, 255, 255}, {225, 225, 225}, {0, 0, 0}, {31, 119, 180}, {255, 127, 14}};

}  // namespace

std::string encode_png_palette(int width, int height, const std::vector<std::array<uint8_t, 3>>& palette,
                               const std::vector<uint8_t>& pixels) {
  MAMBA_CHECK(width > 0 && height > 0 && pixels.size() == size_t(width) * height,
              "PNG: {} pixels for a {}x{} image", pixels.size(), width, height);
  MAMBA_CHECK(!palette.empty() && palette.size() <= 16, "PNG: {} palette colours (1 to 16)", palette.size());
  const size_t row = (size_t(width) + 1) / 2;
  std::string raw;
  raw.reserve(size_t(height) * (row + 1));
  for (int y = 0; y < height; ++y) {
    raw.push_back(0);  // filter: none
    const uint8_t* p = pixels.data() + size_t(y) * width;
    for (int x = 0; x < width; x += 2) {
      MAMBA_CHECK(p[x] < palette.size() && (x + 1 == width || p[x + 1] < palette.size()),
                  "PNG: pixel ({}, {}) is not a palette index", x, y);
      raw.push_back(char(p[x] << 4 | (x + 1 < width ? p[x + 1] : 0)));
    }
  }
  std::string ihdr;
  put_be32(ihdr, uint32_t(width));
  put_be32(ihdr, uint32_t(height));
  ihdr += {char(4), char(3), char(0), char(0), char(0)};  // 4 bits, palette, deflate, filter set 0, no interlace
  std::string plte;
  for (const auto& c : palette) plte.append(reinterpret_cast<const char*>(c.data()), 3);
  std::string png = "\x89PNG\r\n\x1a\n";
  put_chunk(png, "IHDR", ihdr);
  put_chunk(png, "PLTE", plte);
  put_chunk(png, "IDAT", zlib_stored(raw));
  put_chunk(png, "IEND", "");
  return png;
}

void write_loss_plot(const std::string& path, const LossCurves& curves, int width, int height) {
  Canvas c(width, height, white);
  const int left = 40, right = width - 20, top = 20, bottom = height - 30;
  double max_step = 1, lo = 1e300, hi = -1e300;
  for (const auto* curve : {&curves.train, &curves.val})
    for (const auto& [s, v] : *curve) {
      if (!std::isfinite(v)) continue;
      max_step = std::max(max_step, s);
      lo = std::min(lo, v);
      hi = std::max(hi, v);
    }
  if (lo > hi) lo = 0, hi = 1;
  lo = std::floor(lo), hi = std::max(std::ceil(hi), lo + 1);
  const auto px = [&](double s) { return left + (right - left) * s / max_step; };
  const auto py = [&](double v) { return bottom - (bottom - top) * (v - lo) / (hi - lo); };
  for (double v = lo; v <= hi; v += 1) c.line(left, py(v), right, py(v), grid, 1);
  c.line(left, top, left, bottom, black, 1);
  c.line(left, bottom, right, bottom, black, 1);
  const auto draw = [&](const std::vector<std::pair<double, double>>& pts, uint8_t col, int thick) {
    for (size_t i = 0; i < pts.size(); ++i) {
      if (!std::isfinite(pts[i].second)) continue;
      if (i > 0 && std::isfinite(pts[i - 1].second))
        c.line(px(pts[i - 1].first), py(pts[i - 1].second), px(pts[i].first), py(pts[i].second), col, thick);
      const double x = px(pts[i].first), y = py(pts[i].second);
      if (thick > 1) c.line(x - 2, y - 2, x + 2, y + 2, col, 3);  // a dot at each evaluation
    }
  };
  draw(curves.train, blue, 1);
  draw(curves.val, orange, 2);
  write_file_atomic(path, encode_png_palette(width, height, kPalette, c.px));
}

}  // namespace mambacpp
