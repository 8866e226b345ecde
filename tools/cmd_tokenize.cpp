// `mambacpp tokenize`: text to ids (comma-separated) or, with --decode, ids to text.
#include <cstdio>

#include "cli_util.h"
#include "commands.h"
#include "core/error.h"

namespace mambacpp::cli {

namespace {

struct TokenizeOptions {
  std::string tokenizer, text, text_file, decode;
};

void run_tokenize(const TokenizeOptions& o) {
  const int given = int(!o.text.empty()) + int(!o.text_file.empty()) + int(!o.decode.empty());
  MAMBA_CHECK(given == 1, "tokenize: give exactly one of --text, --text-file or --decode");
  const Tokenizer tok = Tokenizer::from_file(o.tokenizer);
  if (!o.decode.empty()) {
    const std::string text = tok.decode(parse_ids(o.decode, "--decode"));
    std::fwrite(text.data(), 1, text.size(), stdout);
    std::fputc('\n', stdout);
    return;
  }
  const std::string text = o.text_file.empty() ? o.text : read_text_file(o.text_file);
  std::printf("%s\n", join_ids(tok.encode(text)).c_str());
}

}  // namespace

void add_tokenize_command(CLI::App& app) {
  auto o = std::make_shared<TokenizeOptions>();
  CLI::App* cmd = app.add_subcommand("tokenize", "Encode text to token ids, or decode ids to text");
  cmd->add_option("--tokenizer", o->tokenizer, "tokenizer.json file")->required();
  cmd->add_option("--text", o->text, "text to encode");
  cmd->add_option("--text-file", o->text_file, "file whose contents to encode");
  cmd->add_option("--decode", o->decode, "comma-separated ids to decode");
  cmd->callback([o] { run_tokenize(*o); });
}

}  // namespace mambacpp::cli
