// Helpers shared by the CLI's subcommands: parsing id lists, reading text files, loading a model folder's
// tokenizer, and the options every model-running command takes.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "core/context.h"
#include "core/dtype.h"
#include "io/tokenizer.h"

namespace mambacpp::cli {

// "1,2,3" -> {1, 2, 3}; throws Error naming `option` on anything else (empty items, signs, overflow).
std::vector<int32_t> parse_ids(const std::string& text, const std::string& option);
std::string join_ids(const std::vector<int32_t>& ids);
// Reads a whole file; throws Error naming it when it cannot be read.
std::string read_text_file(const std::string& path);

// --threads, --dtype and --f32-activations, shared by the commands that run a model.
struct RunOptions {
  int threads = 0;
  std::string dtype = "f32";
  bool f32_activations = false;  // on cuda with half matrices: the prompt's activations in f32 (lm.h)
  void add_to(CLI::App& cmd);
  DType matrix_dtype() const;
};

// The tokenizer at `explicit_path` if given, else `model_dir`/tokenizer.json; throws Error saying which.
Tokenizer load_tokenizer(const std::string& explicit_path, const std::string& model_dir);

}  // namespace mambacpp::cli
