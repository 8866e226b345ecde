// A small PNG chart of the training and validation loss against the step, drawn without a graphics library:
// an RGB raster with axes, a faint horizontal line at every whole nat, the training curve (blue) and the
// validation curve (orange, a dot per evaluation), encoded by a minimal PNG writer: a 16-colour palette image
// (4 bits per pixel) in a zlib stream of stored, uncompressed deflate blocks; CRC-32 and Adler-32 computed here.
// The drawing itself is on a train/raster.h Canvas, shared with the accuracy chart (tasks/accuracy_plot.h).
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "train/loss_log.h"

namespace mambacpp {

// The PNG file bytes of a palette image: `pixels` holds height rows of width palette indices (one byte each,
// < palette.size() ≤ 16), stored at 4 bits per pixel.
std::string encode_png_palette(int width, int height, const std::vector<std::array<uint8_t, 3>>& palette,
                               const std::vector<uint8_t>& pixels);

// Draws `curves` into a width × height chart and writes it to `path` atomically.
void write_loss_plot(const std::string& path, const LossCurves& curves, int width = 640, int height = 400);

}  // namespace mambacpp
