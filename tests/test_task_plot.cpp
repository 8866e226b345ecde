// The accuracy chart of the synthetic tasks (src/tasks/accuracy_plot.h) and `mambacpp task plot`: the PNG
// decodes (signature, chunk CRCs, IHDR, stored deflate), each series' colour lies where its points are (100 % in
// the plot's top band, 0 % at its bottom) and in the legend; bad results.json files end in an error naming
// the file and the field, exit code 1 and no chart.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <vector>

#include "core/error.h"
#include "support/png_check.h"
#include "support/test_util.h"
#include "tasks/accuracy_plot.h"

namespace mambacpp {
namespace {

// The rows (min, max) at which `rgb` appears with x in [x0, x1]; {-1, -1} where it does not.
std::pair<int, int> rows_of(const test::DecodedPng& img, const std::array<uint8_t, 3>& rgb, int x0, int x1) {
  std::pair<int, int> r{-1, -1};
  for (int y = 0; y < img.height; ++y)
    for (int x = x0; x <= x1; ++x)
      if (img.rgb(x, y) == rgb) {
        if (r.first < 0) r.first = y;
        r.second = y;
      }
  return r;
}

std::vector<std::pair<int64_t, double>> flat(double accuracy) {
  std::vector<std::pair<int64_t, double>> pts;
  for (int e = 6; e <= 20; ++e) pts.emplace_back(int64_t(1) << e, accuracy);
  return pts;
}

TEST(AccuracyPlot, SeriesLieWhereTheirPointsAre) {
  test::TempDir dir;
  const int w = 800, h = 480;
  write_accuracy_plot(dir.file("chart.png"), "induction-heads", {{"s6 (cpu)", flat(1.0)}, {"lti (cpu)", flat(0.0)}},
                      w, h);
  const test::DecodedPng img = test::decode_png(test::read_file(dir.file("chart.png")));
  ASSERT_EQ(img.width, w);
  ASSERT_EQ(img.height, h);
  const PlotArea a = accuracy_plot_area(w, h);
  const auto top = rows_of(img, accuracy_series_colour(0), a.left, a.right);
  const auto bottom = rows_of(img, accuracy_series_colour(1), a.left, a.right);
  ASSERT_GE(top.first, 0);
  ASSERT_GE(bottom.first, 0);
  EXPECT_GE(top.first, a.top - 5);  // 100 %: within a dot's radius of the top row
  EXPECT_LE(top.second, a.top + 5);
  EXPECT_GE(bottom.first, a.bottom - 5);  // 0 %: at the bottom row
  EXPECT_LE(bottom.second, a.bottom + 5);
  // Both colours also appear in the legend, the first series above the second.
  const auto legend0 = rows_of(img, accuracy_series_colour(0), a.right + 1, w - 1);
  const auto legend1 = rows_of(img, accuracy_series_colour(1), a.right + 1, w - 1);
  ASSERT_GE(legend0.first, 0);
  ASSERT_GE(legend1.first, 0);
  EXPECT_LT(legend0.second, legend1.first);
  // A point at 50 % of the mid length: the series' colour at the middle of the plot area.
  write_accuracy_plot(dir.file("half.png"), "t", {{"x", {{64, 0.5}, {1 << 20, 0.5}}}}, w, h);
  const test::DecodedPng half = test::decode_png(test::read_file(dir.file("half.png")));
  const int mid_x = (a.left + a.right) / 2, mid_y = (a.top + a.bottom) / 2;
  const auto mid = rows_of(half, accuracy_series_colour(0), mid_x, mid_x);
  EXPECT_GE(mid.first, mid_y - 2);
  EXPECT_LE(mid.second, mid_y + 2);
}

TEST(AccuracyPlot, RefusesBadSeries) {
  test::TempDir dir;
  const std::string path = dir.file("c.png");
  test::expect_error([&] { write_accuracy_plot(path, "t", {}); }, {"no series"});
  test::expect_error([&] { write_accuracy_plot(path, "t", {{"a", {}}}); }, {"'a'", "no points"});
  test::expect_error([&] { write_accuracy_plot(path, "t", {{"a", {{64, 1.5}}}}); }, {"'a'", "[0, 1]"});
  test::expect_error([&] { write_accuracy_plot(path, "t", {{"a", {{0, 0.5}}}}); }, {"length 0"});
  test::expect_error([&] { write_accuracy_plot(path, "t", std::vector<AccuracySeries>(11, {"a", {{64, 1.0}}})); },
                     {"11 series"});
  EXPECT_FALSE(std::filesystem::exists(path));
}

std::string results_json(const std::string& ssm, double accuracy) {
  return R"({"task": "induction-heads", "ssm": ")" + ssm + R"(", "device": "cpu", "results": [)" +
         R"({"length": 64, "sequences": 4, "accuracy": )" + std::to_string(accuracy) + "}, " +
         R"({"length": 1048576, "sequences": 4, "accuracy": )" + std::to_string(accuracy) + "}]}";
}

TEST(TaskPlotCli, ChartsSeveralRuns) {
  test::TempDir dir;
  test::write_file(dir.file("s6.json"), results_json("s6", 1.0));
  test::write_file(dir.file("lti.json"), results_json("lti", 0.0));
  const test::RunResult r =
      test::run_cli({"task", "plot", dir.file("s6.json"), dir.file("lti.json"), "-o", dir.file("chart.png")});
  ASSERT_EQ(r.code, 0) << r.err;
  const test::DecodedPng img = test::decode_png(test::read_file(dir.file("chart.png")));
  const PlotArea a = accuracy_plot_area(img.width, img.height);
  EXPECT_LE(rows_of(img, accuracy_series_colour(0), a.left, a.right).second, a.top + 5);
  EXPECT_GE(rows_of(img, accuracy_series_colour(1), a.left, a.right).first, a.bottom - 5);
}

TEST(TaskPlotCli, ARunWithOutWritesItsChart) {
  test::TempDir dir;
  const test::RunResult r = test::run_cli({"task", "induction-heads", "--steps", "2", "--batch", "2",
                                           "--train-length", "16", "--lengths", "16,64", "--eval-samples", "2",
                                           "-t", "1", "--out", dir.file("run")});
  ASSERT_EQ(r.code, 0) << r.err;
  const test::DecodedPng img = test::decode_png(test::read_file(dir.file("run/accuracy.png")));
  const PlotArea a = accuracy_plot_area(img.width, img.height);
  EXPECT_GE(rows_of(img, accuracy_series_colour(0), a.left, a.right).first, a.top - 5);
}

TEST(TaskPlotCli, BadFilesExitWithTheirNameAndNoChart) {
  test::TempDir dir;
  test::write_file(dir.file("good.json"), results_json("s6", 1.0));
  const std::vector<std::pair<std::string, std::vector<std::string>>> cases = {
      {"", {"missing.json"}},
      {"{\"task\": ", {"bad.json", "not valid JSON"}},
      {"[1, 2]", {"bad.json", "not a JSON object"}},
      {R"({"ssm": "s6", "device": "cpu", "results": []})", {"bad.json", "\"task\""}},
      {R"({"task": "induction-heads", "device": "cpu", "results": []})", {"bad.json", "\"ssm\""}},
      {R"({"task": "induction-heads", "ssm": "s6", "device": "cpu"})", {"bad.json", "\"results\""}},
      {R"({"task": "induction-heads", "ssm": "s6", "device": "cpu", "results": [{"accuracy": 1}]})",
       {"bad.json", "results[0].length"}},
      {R"({"task": "induction-heads", "ssm": "s6", "device": "cpu", "results": [{"length": 64}]})",
       {"bad.json", "results[0].accuracy"}},
      {R"({"task": "induction-heads", "ssm": "s6", "device": "cpu", "results": [{"length": 64, "accuracy": 2}]})",
       {"bad.json", "results[0].accuracy", "outside"}},
      {R"({"task": "selective-copying", "ssm": "s6", "device": "cpu", "results": [{"length": 64, "accuracy": 1}]})",
       {"bad.json", "selective-copying", "induction-heads"}},
  };
  for (const auto& [content, parts] : cases) {
    const std::string input = content.empty() ? dir.file("missing.json") : dir.file("bad.json");
    if (!content.empty()) test::write_file(input, content);
    const test::RunResult r = test::run_cli({"task", "plot", dir.file("good.json"), input, "-o", dir.file("c.png")});
    EXPECT_EQ(r.code, 1) << content;
    for (const std::string& part : parts) EXPECT_NE(r.err.find(part), std::string::npos) << part << ": " << r.err;
    EXPECT_FALSE(std::filesystem::exists(dir.file("c.png"))) << content;
  }
  const test::RunResult no_output = test::run_cli({"task", "plot", dir.file("good.json")});
  EXPECT_EQ(no_output.code, 1);
  const test::RunResult no_task = test::run_cli({"task"});
  EXPECT_EQ(no_task.code, 1);
  EXPECT_NE(no_task.err.find("name a task"), std::string::npos) << no_task.err;
}

}  // namespace
}  // namespace mambacpp
