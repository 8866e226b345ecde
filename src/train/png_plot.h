// A small PNG chart of the training and validation loss against the step, drawn without a graphics library:
// an RGB raster with axes, a faint horizontal line at every whole nat, the training curve (blue) and the
// validation curve (orange, a dot per evaluation), encoded by a minimal PNG writer (zlib stream of stored,
// uncompressed deflate blocks; CRC-32 and Adler-32 computed here).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "train/loss_log.h"

namespace mambacpp {

// The PNG file bytes of an 8-bit RGB image (rgb: height rows of width · 3 bytes).
std::string encode_png_rgb(int width, int height, const std::vector<uint8_t>& rgb);

// Draws `curves` into a width × height chart and writes it to `path` atomically.
void write_loss_plot(const std::string& path, const LossCurves& curves, int width = 640, int height = 400);

}  // namespace mambacpp
