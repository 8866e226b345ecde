// A palette raster for the project's PNG charts (png_plot.h: the loss chart; tasks/accuracy_plot.h: the
// accuracy chart): one byte per pixel holding a palette index, row-major from the top-left corner, with
// clipped dots, lines, filled rectangles and discs, and text in a built-in 5×7 bitmap font (digits, letters
// drawn in lower case, and common punctuation; anything else is drawn as '?').
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

namespace mambacpp {

struct Canvas {
  int w, h;
  std::vector<uint8_t> px;  // (h, w) palette indices

  Canvas(int width, int height, uint8_t background);
  void dot(int x, int y, uint8_t c);
  // A line from (x0, y0) to (x1, y1), drawn as thick × thick squares whose top-left corner follows it.
  void line(double x0, double y0, double x1, double y1, uint8_t c, int thick);
  // The rectangle of pixels x0 ≤ x ≤ x1, y0 ≤ y ≤ y1.
  void fill(int x0, int y0, int x1, int y1, uint8_t c);
  // The pixels within `radius` of (cx, cy).
  void disc(double cx, double cy, double radius, uint8_t c);
  // `s` with its top-left corner at (x, y), each font pixel a scale × scale square.
  void text(int x, int y, std::string_view s, uint8_t c, int scale = 1);
};

// Font cells: 5 × 7 pixels, one column apart.
constexpr int kGlyphWidth = 5, kGlyphHeight = 7, kGlyphAdvance = 6;

// The width in pixels of `s` drawn at `scale`.
int text_width(std::string_view s, int scale = 1);

}  // namespace mambacpp
