// The JSON-lines loss log (loss_log.h).
#include "train/loss_log.h"

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <sstream>

#include "core/error.h"
#include "io/atomic_file.h"

namespace mambacpp {

using nlohmann::json;

namespace {

// Calls f(line number, parsed entry) for every line of `path`.
template <typename F>
void for_each_entry(const std::string& path, F&& f) {
  std::istringstream in(read_whole_file(path));
  std::string line;
  for (int64_t n = 1; std::getline(in, line); ++n) {
    if (line.empty()) continue;
    json j = json::parse(line, nullptr, false);
    MAMBA_CHECK(j.is_object() && j.contains("step") && j["step"].is_number(),
                "{}:{}: not a loss-log entry (a JSON object with a step)", path, n);
    f(line, j);
  }
}

}  // namespace

LossLog::LossLog(const std::string& path, int64_t keep_through) : path_(path) {
  std::error_code ec;
  if (keep_through < 0 || !std::filesystem::exists(path, ec)) {
    write_file_atomic(path, "");
  } else {
    std::string kept;
    for_each_entry(path, [&](const std::string& line, const json& j) {
      if (j["step"].get<double>() <= double(keep_through)) kept += line + "\n";
    });
    write_file_atomic(path, kept);
  }
  file_ = std::fopen(path.c_str(), "a");
  MAMBA_CHECK(file_ != nullptr, "{}: cannot open for appending: {}", path, std::strerror(errno));
}

LossLog::~LossLog() {
  if (file_ != nullptr) std::fclose(file_);
}

void LossLog::write(const json& entry) {
  const std::string line = entry.dump() + "\n";
  const bool ok = std::fwrite(line.data(), 1, line.size(), file_) == line.size() && std::fflush(file_) == 0;
  MAMBA_CHECK(ok, "{}: write failed: {}", path_, std::strerror(errno));
}

LossCurves read_loss_curves(const std::string& path) {
  LossCurves c;
  for_each_entry(path, [&](const std::string&, const json& j) {
    const double step = j["step"].get<double>();
    if (j.contains("loss") && j["loss"].is_number()) c.train.emplace_back(step, j["loss"].get<double>());
    if (j.contains("val_loss") && j["val_loss"].is_number()) c.val.emplace_back(step, j["val_loss"].get<double>());
  });
  return c;
}

}  // namespace mambacpp
