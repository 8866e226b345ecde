// `mambacpp info`: the version and what this build can use (CPU SIMD level, BLAS, threads, CUDA).
#include <cblas.h>

#include <cstdio>

#include "commands.h"
#include "core/context.h"
#include "core/version.h"

namespace mambacpp::cli {

namespace {

const char* simd_level() {
#if defined(__AVX512F__) && defined(__AVX512BF16__)
  return "AVX-512 (with AVX512-BF16)";
#elif defined(__AVX512F__)
  return "AVX-512";
#elif defined(__AVX2__)
  return "AVX2";
#else
  return "none (scalar)";
#endif
}

void run_info() {
  std::printf("mambacpp %s (%s, %s)\n", MAMBACPP_VERSION, MAMBACPP_BUILD_TYPE, MAMBACPP_COMPILER);
  std::printf("cpu simd: %s\n", simd_level());
  std::printf("blas: OpenBLAS %s\n", openblas_get_config());
  std::printf("threads: %d available\n", hardware_threads());
  std::printf("cuda: not built in\n");
}

}  // namespace

void add_info_command(CLI::App& app) {
  app.add_subcommand("info", "Print the version and the hardware support of this build")->callback(run_info);
}

}  // namespace mambacpp::cli
