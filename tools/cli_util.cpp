// CLI helpers (see cli_util.h).
#include "cli_util.h"

#include <cerrno>
#include <charconv>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/error.h"

namespace mambacpp::cli {

std::vector<int32_t> parse_ids(const std::string& text, const std::string& option) {
  std::vector<int32_t> ids;
  size_t pos = 0;
  MAMBA_CHECK(!text.empty(), "{}: empty list of token ids", option);
  while (pos <= text.size()) {
    const size_t end = std::min(text.find(',', pos), text.size());
    const std::string item = text.substr(pos, end - pos);
    int64_t value = -1;
    const auto [ptr, ec] = std::from_chars(item.data(), item.data() + item.size(), value);
    MAMBA_CHECK(!item.empty() && ec == std::errc() && ptr == item.data() + item.size() && value >= 0 &&
                    value <= INT32_MAX,
                "{}: '{}' (item {}) is not a token id (a non-negative integer)", option, item, ids.size() + 1);
    ids.push_back(int32_t(value));
    pos = end + 1;
  }
  return ids;
}

std::string join_ids(const std::vector<int32_t>& ids) {
  std::string s;
  for (size_t i = 0; i < ids.size(); ++i) s += (i ? "," : "") + std::to_string(ids[i]);
  return s;
}

std::string read_text_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  MAMBA_CHECK(f.good(), "cannot read '{}': {}", path, std::strerror(errno));
  std::ostringstream ss;
  ss << f.rdbuf();
  MAMBA_CHECK(!f.bad(), "error while reading '{}'", path);
  return ss.str();
}

void RunOptions::add_to(CLI::App& cmd) {
  cmd.add_option("-t,--threads", threads, "CPU threads (0 = all available)")->capture_default_str();
  cmd.add_option("--dtype", dtype, "storage type of the weight matrices: f32, bf16 or f16")->capture_default_str();
  cmd.add_flag("--f32-activations", f32_activations,
               "with --device cuda and bf16/f16 matrices, keep the prompt's activations in f32 (default: in the "
               "matrices' dtype, as mamba_ssm does)");
}

DType RunOptions::matrix_dtype() const { return parse_dtype(dtype, "--dtype"); }

Tokenizer load_tokenizer(const std::string& explicit_path, const std::string& model_dir) {
  if (!explicit_path.empty()) return Tokenizer::from_file(explicit_path);
  const auto path = std::filesystem::path(model_dir) / "tokenizer.json";
  MAMBA_CHECK(std::filesystem::exists(path),
              "model folder '{}' has no tokenizer.json: pass --tokenizer FILE, or token ids with --prompt-ids",
              model_dir);
  return Tokenizer::from_file(path.string());
}

}  // namespace mambacpp::cli
