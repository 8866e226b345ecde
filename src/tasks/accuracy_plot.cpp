// The accuracy chart and the results.json reader (accuracy_plot.h).
#include "tasks/accuracy_plot.h"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/atomic_file.h"
#include "train/png_plot.h"
#include "train/raster.h"

namespace mambacpp {

namespace {

// Palette indices: four fixed colours, then one per series.
enum Colour : uint8_t { white, grid, black, grey, first_series };
const std::array<std::array<uint8_t, 3>, kMaxAccuracySeries> kSeriesColours = {{{31, 119, 180},
                                                                                   {255, 127, 14},
                                                                                   {44, 160, 44},
                                                                                   {214, 39, 40},
                                                                                   {148, 103, 189},
                                                                                   {140, 86, 75},
                                                                                   {227, 119, 194},
                                                                                   {127, 127, 127},
                                                                                   {188, 189, 34},
                                                                                   {23, 190, 207}}};

std::vector<std::array<uint8_t, 3>> palette(size_t series) {
  std::vector<std::array<uint8_t, 3>> p = {{255, 255, 255}, {225, 225, 225}, {0, 0, 0}, {90, 90, 90}};
  p.insert(p.end(), kSeriesColours.begin(), kSeriesColours.begin() + std::ptrdiff_t(series));
  return p;
}

constexpr int kLegendWidth = 190;  // to the right of the plot area, margins included

void check_series(const std::vector<AccuracySeries>& series) {
  MAMBA_CHECK(!series.empty(), "accuracy chart: no series to draw");
  MAMBA_CHECK(series.size() <= kMaxAccuracySeries, "accuracy chart: {} series, at most {} fit one chart",
              series.size(), kMaxAccuracySeries);
  for (const AccuracySeries& s : series) {
    MAMBA_CHECK(!s.points.empty(), "accuracy chart: series '{}' has no points", s.label);
    for (const auto& [length, acc] : s.points)
      MAMBA_CHECK(length >= 1 && std::isfinite(acc) && acc >= 0 && acc <= 1,
                  "accuracy chart: series '{}' has the point (length {}, accuracy {}); lengths must be ≥ 1 and "
                  "accuracies in [0, 1]",
                  s.label, length, acc);
  }
}

// The x axis: log2 of the length from `lo` to `hi` (whole exponents), labelled every `step` exponents.
struct XAxis {
  int lo, hi, step;
};

XAxis x_axis(const std::vector<AccuracySeries>& series, int plot_width) {
  double mn = 1e300, mx = 0;
  for (const AccuracySeries& s : series)
    for (const auto& p : s.points) mn = std::min(mn, double(p.first)), mx = std::max(mx, double(p.first));
  XAxis a{int(std::floor(std::log2(mn))), int(std::ceil(std::log2(mx))), 1};
  if (a.hi == a.lo) --a.lo, ++a.hi;
  const int label = text_width(fmt::format("2^{}", a.hi)) + 8;
  while ((a.hi - a.lo) / a.step * label > plot_width && a.step < a.hi - a.lo) ++a.step;
  return a;
}

void draw_legend(Canvas& c, const PlotArea& area, const std::vector<AccuracySeries>& series) {
  const int x0 = area.right + 16, x1 = c.w - 10, y0 = area.top, y1 = area.top + 8 + 16 * int(series.size());
  c.line(x0, y0, x1, y0, black, 1);
  c.line(x0, y1, x1, y1, black, 1);
  c.line(x0, y0, x0, y1, black, 1);
  c.line(x1, y0, x1, y1, black, 1);
  const size_t chars = size_t(std::max(1, (x1 - x0 - 42) / kGlyphAdvance));
  for (size_t i = 0; i < series.size(); ++i) {
    const uint8_t col = uint8_t(first_series + i);
    const int y = y0 + 12 + 16 * int(i);
    c.line(x0 + 8, y, x0 + 28, y, col, 2);
    c.disc(x0 + 18.5, y + 0.5, 3.5, col);
    std::string label = series[i].label;
    if (label.size() > chars) label = label.substr(0, chars - 2) + "..";
    c.text(x0 + 36, y - 3, label, black);
  }
}

}  // namespace

PlotArea accuracy_plot_area(int width, int height) { return {52, 48, width - kLegendWidth, height - 44}; }

std::array<uint8_t, 3> accuracy_series_colour(size_t i) { return kSeriesColours.at(i); }

void write_accuracy_plot(const std::string& path, const std::string& title, const std::vector<AccuracySeries>& series,
                         int width, int height) {
  MAMBA_CHECK(width >= 400 && height >= 200, "accuracy chart: {}x{} pixels is too small (at least 400x200)", width,
              height);
  check_series(series);
  Canvas c(width, height, white);
  const PlotArea a = accuracy_plot_area(width, height);
  const XAxis xa = x_axis(series, a.right - a.left);
  const auto px = [&](double e) { return a.left + (a.right - a.left) * (e - xa.lo) / (xa.hi - xa.lo); };
  const auto py = [&](double acc) { return a.bottom - (a.bottom - a.top) * acc; };

  c.text((a.left + a.right - text_width(title, 2)) / 2, 12, title, black, 2);
  c.text(a.left - 40, a.top - 16, "accuracy", grey);
  const std::string caption = "test length (tokens, log2 scale)";
  c.text((a.left + a.right - text_width(caption)) / 2, a.bottom + 26, caption, grey);
  for (int pct = 0; pct <= 100; pct += 20) {
    const int y = int(std::lround(py(pct / 100.0)));
    c.line(a.left, y, a.right, y, grid, 1);
    const std::string label = fmt::format("{}%", pct);
    c.text(a.left - 6 - text_width(label), y - 3, label, black);
  }
  for (int e = xa.lo; e <= xa.hi; ++e) {
    const int x = int(std::lround(px(e)));
    c.line(x, a.top, x, a.bottom, grid, 1);
    c.line(x, a.bottom, x, a.bottom + 4, black, 1);
    if ((e - xa.lo) % xa.step != 0) continue;
    const std::string label = fmt::format("2^{}", e);
    c.text(x - text_width(label) / 2, a.bottom + 8, label, black);
  }
  c.line(a.left, a.top, a.left, a.bottom, black, 1);
  c.line(a.left, a.bottom, a.right, a.bottom, black, 1);

  for (size_t i = 0; i < series.size(); ++i) {
    const uint8_t col = uint8_t(first_series + i);
    std::vector<std::pair<int64_t, double>> pts = series[i].points;
    std::sort(pts.begin(), pts.end());
    for (size_t k = 0; k < pts.size(); ++k) {
      const double x = px(std::log2(double(pts[k].first))), y = py(pts[k].second);
      if (k > 0) {
        const double xp = px(std::log2(double(pts[k - 1].first))), yp = py(pts[k - 1].second);
        c.line(xp - 0.5, yp - 0.5, x - 0.5, y - 0.5, col, 2);
      }
      c.disc(x, y, 3.5, col);
    }
  }
  draw_legend(c, a, series);
  write_file_atomic(path, encode_png_palette(width, height, palette(series.size()), c.px));
}

TaskResults read_task_results(const std::string& path) {
  const std::string text = read_whole_file(path);
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    fail("{}: not valid JSON ({})", path, e.what());
  }
  MAMBA_CHECK(j.is_object(), "{}: not a JSON object", path);
  const auto string_field = [&](const char* key) {
    MAMBA_CHECK(j.contains(key) && j[key].is_string(), "{}: field \"{}\" is missing or not a string", path, key);
    return j[key].get<std::string>();
  };
  TaskResults r{string_field("task"), string_field("ssm"), string_field("device"), {}};
  MAMBA_CHECK(j.contains("results") && j["results"].is_array() && !j["results"].empty(),
              "{}: field \"results\" is missing, not an array or empty", path);
  for (size_t i = 0; i < j["results"].size(); ++i) {
    const nlohmann::json& row = j["results"][i];
    MAMBA_CHECK(row.is_object(), "{}: results[{}] is not an object", path, i);
    MAMBA_CHECK(row.contains("length") && row["length"].is_number_integer() && row["length"].get<int64_t>() >= 1,
                "{}: results[{}].length is missing or not a positive integer", path, i);
    MAMBA_CHECK(row.contains("accuracy") && row["accuracy"].is_number(),
                "{}: results[{}].accuracy is missing or not a number", path, i);
    const double acc = row["accuracy"].get<double>();
    MAMBA_CHECK(acc >= 0 && acc <= 1, "{}: results[{}].accuracy is {}, outside [0, 1]", path, i, acc);
    r.points.emplace_back(row["length"].get<int64_t>(), acc);
  }
  return r;
}

}  // namespace mambacpp
