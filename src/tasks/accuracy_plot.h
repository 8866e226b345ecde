// The synthetic tasks' accuracy chart, as in the Mamba paper's induction-heads figure: accuracy (0–100 %,
// gridlines every 20 %) against the test length on a log2 axis (a tick and a label "2^k" at every power of
// two), one colour per series with a dot per length joined by lines, a legend of the series' labels to the
// right and the task's name as the title. Drawn on a train/raster.h Canvas and encoded by
// encode_png_palette (train/png_plot.h). Also the reader of the `task` command's results.json files.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace mambacpp {

struct AccuracySeries {
  std::string label;
  std::vector<std::pair<int64_t, double>> points;  // (test length ≥ 1, accuracy in [0, 1])
};

// At most this many series on one chart (one palette colour each).
constexpr size_t kMaxAccuracySeries = 10;

// The plot area's pixel bounds inside a width × height chart: accuracy 100 % is row `top`, 0 % row `bottom`;
// the legend lies to the right of `right`.
struct PlotArea {
  int left, top, right, bottom;
};
PlotArea accuracy_plot_area(int width, int height);
// The colour of series i.
std::array<uint8_t, 3> accuracy_series_colour(size_t i);

// Draws the chart and writes it to `path` atomically as a PNG. Throws Error for no series, too many, an empty
// series, or a point out of range.
void write_accuracy_plot(const std::string& path, const std::string& title, const std::vector<AccuracySeries>& series,
                         int width = 800, int height = 480);

// One results.json of `mambacpp task ... --out DIR`: the task, the variant and device, and the accuracy
// per test length.
struct TaskResults {
  std::string task, ssm, device;
  std::vector<std::pair<int64_t, double>> points;  // (length, accuracy in [0, 1])
};
// Reads and checks `path`; an Error names the file and the missing or bad field.
TaskResults read_task_results(const std::string& path);

}  // namespace mambacpp
