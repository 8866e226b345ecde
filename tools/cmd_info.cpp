// `mambacpp info`: the version and what this build can use (CPU SIMD level, BLAS, threads, CUDA).
#include <cblas.h>

#include <cstdio>

#include "commands.h"
#include "core/context.h"
#include "core/cuda/device_info.h"
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
  const CudaRuntimeInfo cuda = cuda_runtime_info();
  if (!cuda.problem.empty()) {
    std::printf("cuda: %s\n", cuda.problem.c_str());
    return;
  }
  std::printf("cuda: driver %d.%d, runtime %d.%d, kernels for %s\n", cuda.driver_version / 1000,
              cuda.driver_version % 1000 / 10, cuda.runtime_version / 1000, cuda.runtime_version % 1000 / 10,
              MAMBACPP_CUDA_ARCHITECTURES);
  for (const CudaDeviceInfo& d : cuda.devices)
    std::printf("  gpu %d: %s, compute capability %d.%d, %d SMs, %.1f GiB (%.1f GiB free), L2 %.0f MiB\n", d.index,
                d.name.c_str(), d.cc_major, d.cc_minor, d.sm_count, double(d.total_bytes) / (1 << 30),
                double(d.free_bytes) / (1 << 30), double(d.l2_bytes) / (1 << 20));
}

}  // namespace

void add_info_command(CLI::App& app) {
  app.add_subcommand("info", "Print the version and the hardware support of this build")->callback(run_info);
}

}  // namespace mambacpp::cli
