// What the CUDA runtime reports about the machine, for `mambacpp info` and for the commands that check, before
// any work, that `--device cuda` can run. Declared without CUDA types so that
// any code may include it; builds without the CUDA backend provide a version that reports no devices.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "core/error.h"

namespace mambacpp {

struct CudaDeviceInfo {
  int index = 0;
  std::string name;
  int sm_count = 0;
  int cc_major = 0, cc_minor = 0;  // compute capability
  size_t total_bytes = 0, free_bytes = 0;
  size_t l2_bytes = 0;
};

struct CudaRuntimeInfo {
  int driver_version = 0, runtime_version = 0;  // e.g. 13000 for 13.0; 0 when unknown
  std::vector<CudaDeviceInfo> devices;
  std::string problem;  // why no device is listed (no driver, no device, built without CUDA); empty otherwise
};

// Never throws: an absent driver or device is reported in `problem`.
CudaRuntimeInfo cuda_runtime_info();

// Throws an Error naming `--device cuda` and the reason when no CUDA device can be used.
inline void require_cuda_device() {
  const CudaRuntimeInfo info = cuda_runtime_info();
  MAMBA_CHECK(!info.devices.empty(), "--device cuda: no CUDA device can be used ({}); use --device cpu",
              info.problem);
}

}  // namespace mambacpp
