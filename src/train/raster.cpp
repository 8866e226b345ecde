// The palette raster and its bitmap font (raster.h).
#include "train/raster.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <cmath>

namespace mambacpp {

namespace {

// Each glyph as 7 rows of 5 columns, '#' for a lit pixel; spaces between rows are for reading only.
struct GlyphArt {
  char c;
  const char* rows;
};
constexpr GlyphArt kGlyphArt[] = {
    {'0', ".###. #...# #..## #.#.# ##..# #...# .###."}, {'1', "..#.. .##.. ..#.. ..#.. ..#.. ..#.. .###."},
    {'2', ".###. #...# ....# ...#. ..#.. .#... #####"}, {'3', "##### ...#. ..#.. ...#. ....# #...# .###."},
    {'4', "...#. ..##. .#.#. #..#. ##### ...#. ...#."}, {'5', "##### #.... ####. ....# ....# #...# .###."},
    {'6', "..##. .#... #.... ####. #...# #...# .###."}, {'7', "##### ....# ...#. ..#.. .#... .#... .#..."},
    {'8', ".###. #...# #...# .###. #...# #...# .###."}, {'9', ".###. #...# #...# .#### ....# ...#. .##.."},
    {'a', "..... ..... .###. ....# .#### #...# .####"}, {'b', "#.... #.... #.##. ##..# #...# #...# ####."},
    {'c', "..... ..... .###. #.... #.... #...# .###."}, {'d', "....# ....# .##.# #..## #...# #...# .####"},
    {'e', "..... ..... .###. #...# ##### #.... .###."}, {'f', "..##. .#..# .#... ###.. .#... .#... .#..."},
    {'g', "..... ..... .#### #...# .#### ....# .###."}, {'h', "#.... #.... #.##. ##..# #...# #...# #...#"},
    {'i', "..#.. ..... .##.. ..#.. ..#.. ..#.. .###."}, {'j', "...#. ..... ..##. ...#. ...#. #..#. .##.."},
    {'k', "#.... #.... #..#. #.#.. ##... #.#.. #..#."}, {'l', ".##.. ..#.. ..#.. ..#.. ..#.. ..#.. .###."},
    {'m', "..... ..... ##.#. #.#.# #.#.# #...# #...#"}, {'n', "..... ..... #.##. ##..# #...# #...# #...#"},
    {'o', "..... ..... .###. #...# #...# #...# .###."}, {'p', "..... ..... ####. #...# ####. #.... #...."},
    {'q', "..... ..... .#### #...# .#### ....# ....#"}, {'r', "..... ..... #.##. ##..# #.... #.... #...."},
    {'s', "..... ..... .###. #.... .###. ....# ####."}, {'t', ".#... .#... ###.. .#... .#... .#..# ..##."},
    {'u', "..... ..... #...# #...# #...# #..## .##.#"}, {'v', "..... ..... #...# #...# #...# .#.#. ..#.."},
    {'w', "..... ..... #...# #...# #.#.# #.#.# .#.#."}, {'x', "..... ..... #...# .#.#. ..#.. .#.#. #...#"},
    {'y', "..... ..... #...# #...# .#### ....# .###."}, {'z', "..... ..... ##### ...#. ..#.. .#... #####"},
    {' ', "..... ..... ..... ..... ..... ..... ....."}, {'^', "..#.. .#.#. #...# ..... ..... ..... ....."},
    {'%', "##... ##..# ...#. ..#.. .#... #..## ...##"}, {'(', "...#. ..#.. .#... .#... .#... ..#.. ...#."},
    {')', ".#... ..#.. ...#. ...#. ...#. ..#.. .#..."}, {'-', "..... ..... ..... .###. ..... ..... ....."},
    {'.', "..... ..... ..... ..... ..... .##.. .##.."}, {',', "..... ..... ..... ..... .##.. ..#.. .#..."},
    {':', "..... .##.. .##.. ..... .##.. .##.. ....."}, {'/', "....# ....# ...#. ..#.. .#... #.... #...."},
    {'_', "..... ..... ..... ..... ..... ..... #####"}, {'+', "..... ..#.. ..#.. ##### ..#.. ..#.. ....."},
    {'=', "..... ..... ##### ..... ##### ..... ....."}, {'[', ".###. .#... .#... .#... .#... .#... .###."},
    {']', ".###. ...#. ...#. ...#. ...#. ...#. .###."}, {'?', ".###. #...# ....# ...#. ..#.. ..... ..#.."},
};

// Row bit masks (bit 4 = leftmost column) by character code; unknown characters map to '?'.
using Glyph = std::array<uint8_t, kGlyphHeight>;
const std::array<Glyph, 128>& glyphs() {
  static const std::array<Glyph, 128> table = [] {
    std::array<Glyph, 128> t{};
    std::array<bool, 128> known{};
    for (const GlyphArt& g : kGlyphArt) {
      Glyph rows{};
      int bit = 0;
      for (const char* p = g.rows; *p; ++p) {
        if (*p == ' ') continue;
        if (*p == '#') rows[size_t(bit / kGlyphWidth)] |= uint8_t(1 << (kGlyphWidth - 1 - bit % kGlyphWidth));
        ++bit;
      }
      t[size_t(g.c)] = rows;
      known[size_t(g.c)] = true;
    }
    for (size_t c = 0; c < 128; ++c)
      if (!known[c]) t[c] = std::isupper(int(c)) ? t[size_t(std::tolower(int(c)))] : t[size_t('?')];
    return t;
  }();
  return table;
}

}  // namespace

Canvas::Canvas(int width, int height, uint8_t background)
    : w(width), h(height), px(size_t(width) * height, background) {}

void Canvas::dot(int x, int y, uint8_t c) {
  if (x >= 0 && y >= 0 && x < w && y < h) px[size_t(y) * w + x] = c;
}

void Canvas::line(double x0, double y0, double x1, double y1, uint8_t c, int thick) {
  const int n = int(std::max(std::abs(x1 - x0), std::abs(y1 - y0))) + 1;
  for (int i = 0; i <= n; ++i) {
    const double t = double(i) / n;
    const int x = int(std::lround(x0 + (x1 - x0) * t)), y = int(std::lround(y0 + (y1 - y0) * t));
    for (int dx = 0; dx < thick; ++dx)
      for (int dy = 0; dy < thick; ++dy) dot(x + dx, y + dy, c);
  }
}

void Canvas::fill(int x0, int y0, int x1, int y1, uint8_t c) {
  for (int y = y0; y <= y1; ++y)
    for (int x = x0; x <= x1; ++x) dot(x, y, c);
}

void Canvas::disc(double cx, double cy, double radius, uint8_t c) {
  const int r = int(std::ceil(radius)), x0 = int(std::lround(cx)), y0 = int(std::lround(cy));
  for (int dy = -r; dy <= r; ++dy)
    for (int dx = -r; dx <= r; ++dx)
      if (dx * dx + dy * dy <= radius * radius) dot(x0 + dx, y0 + dy, c);
}

void Canvas::text(int x, int y, std::string_view s, uint8_t c, int scale) {
  for (const char ch : s) {
    const Glyph& g = glyphs()[size_t(static_cast<unsigned char>(ch) < 128 ? ch : '?')];
    for (int row = 0; row < kGlyphHeight; ++row)
      for (int col = 0; col < kGlyphWidth; ++col)
        if (g[size_t(row)] >> (kGlyphWidth - 1 - col) & 1)
          fill(x + col * scale, y + row * scale, x + col * scale + scale - 1, y + row * scale + scale - 1, c);
    x += kGlyphAdvance * scale;
  }
}

int text_width(std::string_view s, int scale) {
  return s.empty() ? 0 : (int(s.size()) * kGlyphAdvance - 1) * scale;
}

}  // namespace mambacpp
