// mambacpp command-line entry point: parses the subcommand and turns any mambacpp::Error into a message on
// stderr and exit code 1.
#include <cstdio>

#include <CLI/CLI.hpp>

#include "core/error.h"
#include "core/version.h"

int main(int argc, char** argv) {
  CLI::App app{"mambacpp: Mamba selective state space models in C++"};
  app.set_version_flag("--version", "mambacpp " MAMBACPP_VERSION);
  app.require_subcommand(1);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 1;
  } catch (const mambacpp::Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
