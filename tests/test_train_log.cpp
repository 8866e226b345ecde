// Tests of the training outputs: the JSON-lines loss log (appending, trimming on resume, reading the curves
// back) and the PNG loss chart (decoded back by the strict reader of support/png_check.h).
#include <gtest/gtest.h>

#include <array>
#include <string>
#include <vector>

#include "core/error.h"
#include "support/png_check.h"
#include "support/test_util.h"
#include "train/loss_log.h"
#include "train/png_plot.h"

namespace mambacpp {
namespace {

using test::TempDir;

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
  const test::DecodedPng img = test::decode_png(encode_png_palette(w, h, palette, px));
  EXPECT_EQ(img.width, w);
  EXPECT_EQ(img.height, h);
  EXPECT_EQ(img.palette, palette);
  EXPECT_EQ(img.pixels, px);
  test::expect_error([&] { encode_png_palette(2, 1, palette, {0, 3}); }, {"palette index"});
}

TEST(TrainLog, LossPlotIsWritten) {
  TempDir dir;
  LossCurves c;
  for (int s = 1; s <= 50; ++s) c.train.emplace_back(s, 5.5 - 0.07 * s);
  c.val = {{25, 3.9}, {50, 2.4}};
  write_loss_plot(dir.file("loss.png"), c, 200, 120);
  const test::DecodedPng img = test::decode_png(test::read_file(dir.file("loss.png")));
  EXPECT_EQ(img.width, 200);
  EXPECT_EQ(img.height, 120);
}

}  // namespace
}  // namespace mambacpp
