// What the CUDA runtime reports about the machine, for `mambacpp info`. Declared without CUDA types so that
// any code may include it; builds without the CUDA backend provide a version that reports no devices.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

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

}  // namespace mambacpp
