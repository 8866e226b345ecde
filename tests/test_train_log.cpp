// Tests of the training outputs: the JSON-lines loss log (appending, trimming on resume, reading the curves
// back) and the PNG loss chart (signature, chunk CRCs, palette and the stored-deflate image data decoded back).
#include <gtest/gtest.h>

#include <array>
#include <cstring>
#include <string>
#include <vector>

#include "core/error.h"
#include "support/test_util.h"
#include "train/loss_log.h"
#include "train/png_plot.h"

namespace mambacpp {
namespace {

using test::TempDir;

uint32_t be32(const std::string& s, size_t at) {
  return uint32_t(uint8_t(s[at])) << 24 | uint32_t(uint8_t(s[at + 1])) << 16 | uint32_t(uint8_t(s[at + 2])) << 8 |
         uint32_t(uint8_t(s[at + 3]));
}

uint32_t crc32_bitwise(const std::string& s) {
  uint32_t c = 0xffffffffu;
  for (unsigned char b : s) {
    c ^= b;
    for (int k = 0; k < 8; ++k) c = (c >> 1) ^ (0xedb88320u & (0u - (c & 1)));
  }
  return ~c;
}

TEST(TrainLog, AppendsAndTrimsStepsPastTheResumedCheckpoint) {
  TempDir dir;
  const std::string path = dir.file("loss_log.jsonl");
  {
    LossLog log(path, -1);
    for (int s = 1; s <= 4; ++s) log.write({{"step", s}, {"loss", 5.0 - s}});
    log.write({{"step", 4}, {"val_loss", 1.5}});
  }
  {
    LossLog log(path, 2);  // resumed at step 2: steps 3 and 4 are run again
    log.write({{"step", 3}, {"loss", 1.75}});
  }
  const LossCurves c = read_loss_curves(path);
  ASSERT_EQ(c.train.size(), 3u);
  EXPECT_EQ(c.train[2], (std::pair<double, double>{3, 1.75}));
  EXPECT_TRUE(c.val.empty());
  test::write_file(path, "{\"step\": 1, \"loss\": 2}\nnot json\n");
  test::expect_error([&] { read_loss_curves(path); }, {"loss_log.jsonl:2"});
}

TEST(TrainLog, PngIsWellFormedAndHoldsTheImage) {
  const int w = 601, h = 250;  // odd width (a half-filled last byte); more than one 65,535-byte stored block
  const std::vector<std::array<uint8_t, 3>> palette = {{255, 255, 255}, {1, 2, 3}, {200, 100, 0}};
  std::vector<uint8_t> px(size_t(w) * h);
  for (size_t i = 0; i < px.size(); ++i) px[i] = uint8_t((i * 7 + i / 13) % 3);
  const std::string png = encode_png_palette(w, h, palette, px);
  ASSERT_EQ(png.substr(0, 8), std::string("\x89PNG\r\n\x1a\n"));
  std::string idat;
  size_t at = 8;
  std::vector<std::string> types;
  while (at < png.size()) {
    const uint32_t n = be32(png, at);
    const std::string type = png.substr(at + 4, 4);
    EXPECT_EQ(be32(png, at + 8 + n), crc32_bitwise(png.substr(at + 4, 4 + n))) << type;
    if (type == "IHDR") {
      EXPECT_EQ(be32(png, at + 8), uint32_t(w));
      EXPECT_EQ(be32(png, at + 12), uint32_t(h));
      EXPECT_EQ(png.substr(at + 16, 2), std::string("\x04\x03", 2));  // 4 bits per pixel, palette
    }
    if (type == "PLTE") {
      EXPECT_EQ(png.substr(at + 8, n), std::string("\xff\xff\xff\x01\x02\x03\xc8\x64\x00", 9));
    }
    if (type == "IDAT") idat += png.substr(at + 8, n);
    types.push_back(type);
    at += 12 + n;
  }
  EXPECT_EQ(types, (std::vector<std::string>{"IHDR", "PLTE", "IDAT", "IEND"}));
  // Undo the zlib stream of stored blocks and compare the unpacked rows with the pixels.
  std::string raw;
  size_t p = 2;
  for (bool last = false; !last;) {
    last = idat[p] & 1;
    const size_t n = uint8_t(idat[p + 1]) | size_t(uint8_t(idat[p + 2])) << 8;
    EXPECT_EQ(n ^ 0xffff, uint8_t(idat[p + 3]) | size_t(uint8_t(idat[p + 4])) << 8);
    raw += idat.substr(p + 5, n);
    p += 5 + n;
  }
  uint32_t a = 1, b = 0;
  for (unsigned char c : raw) a = (a + c) % 65521, b = (b + a) % 65521;
  EXPECT_EQ(be32(idat, p), b << 16 | a);
  const size_t row = (w + 1) / 2 + 1;
  ASSERT_EQ(raw.size(), size_t(h) * row);
  for (int y = 0; y < h; ++y) {
    ASSERT_EQ(raw[size_t(y) * row], 0);
    for (int x = 0; x < w; ++x) {
      const uint8_t byte = uint8_t(raw[size_t(y) * row + 1 + size_t(x) / 2]);
      ASSERT_EQ(x % 2 == 0 ? byte >> 4 : byte & 15, px[size_t(y) * w + x]) << x << ", " << y;
    }
  }
  test::expect_error([&] { encode_png_palette(2, 1, palette, {0, 3}); }, {"palette index"});
}

TEST(TrainLog, LossPlotIsWritten) {
  TempDir dir;
  LossCurves c;
  for (int s = 1; s <= 50; ++s) c.train.emplace_back(s, 5.5 - 0.07 * s);
  c.val = {{25, 3.9}, {50, 2.4}};
  write_loss_plot(dir.file("loss.png"), c, 200, 120);
  const std::string png = test::read_file(dir.file("loss.png"));
  EXPECT_EQ(png.substr(1, 3), "PNG");
  EXPECT_GT(png.size(), size_t(200 * 120 / 2));
}

}  // namespace
}  // namespace mambacpp
