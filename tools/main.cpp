// mambacpp command-line entry point: registers the subcommands, parses, and turns any failure into a message
// on stderr and exit code 1.
#include <cstdio>
#include <exception>

#include <CLI/CLI.hpp>

#include "commands.h"
#include "core/error.h"
#include "core/version.h"

int main(int argc, char** argv) {
  CLI::App app{"mambacpp: Mamba selective state space models in C++"};
  app.set_version_flag("--version", "mambacpp " MAMBACPP_VERSION);
  app.require_subcommand(1);
  mambacpp::cli::add_info_command(app);
  mambacpp::cli::add_tokenize_command(app);
  mambacpp::cli::add_forward_command(app);
  mambacpp::cli::add_generate_command(app);
  mambacpp::cli::add_bench_command(app);
  mambacpp::cli::add_train_command(app);
  mambacpp::cli::add_eval_command(app);
  mambacpp::cli::add_task_command(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 1;
  } catch (const mambacpp::Error& e) {
    std::fflush(stdout);
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fflush(stdout);
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
