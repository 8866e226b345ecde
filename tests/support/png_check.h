// A strict reader of the PNG files the project writes (train/png_plot.h: palette images in stored deflate
// blocks): it checks the signature, every chunk's CRC-32, the chunk order, the IHDR fields, the stored blocks'
// lengths and the Adler-32, and returns the image's palette and pixels. Any deviation throws
// std::runtime_error saying what was wrong.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace mambacpp::test {

struct DecodedPng {
  int width = 0, height = 0;
  std::vector<std::array<uint8_t, 3>> palette;
  std::vector<uint8_t> pixels;  // (height, width) palette indices
  std::array<uint8_t, 3> rgb(int x, int y) const { return palette.at(pixels.at(size_t(y) * width + x)); }
};

DecodedPng decode_png(const std::string& png);

}  // namespace mambacpp::test
