// The CUDA device query (see device_info.h).
#include "core/cuda/device_info.h"

#include <cuda_runtime.h>

namespace mambacpp {

CudaRuntimeInfo cuda_runtime_info() {
  CudaRuntimeInfo info;
  if (cudaRuntimeGetVersion(&info.runtime_version) != cudaSuccess) info.runtime_version = 0;
  if (cudaDriverGetVersion(&info.driver_version) != cudaSuccess) info.driver_version = 0;
  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    info.problem = cudaGetErrorString(err);
    (void)cudaGetLastError();
    return info;
  }
  if (count == 0) info.problem = "the CUDA driver reports no device";
  int current = 0;
  const bool have_current = cudaGetDevice(&current) == cudaSuccess;
  for (int d = 0; d < count; ++d) {
    cudaDeviceProp prop{};
    if (cudaGetDeviceProperties(&prop, d) != cudaSuccess) continue;
    CudaDeviceInfo dev;
    dev.index = d;
    dev.name = prop.name;
    dev.sm_count = prop.multiProcessorCount;
    dev.cc_major = prop.major;
    dev.cc_minor = prop.minor;
    dev.total_bytes = prop.totalGlobalMem;
    dev.l2_bytes = size_t(prop.l2CacheSize);
    if (cudaSetDevice(d) == cudaSuccess && cudaMemGetInfo(&dev.free_bytes, &dev.total_bytes) != cudaSuccess)
      dev.free_bytes = 0;
    info.devices.push_back(dev);
  }
  if (have_current && cudaSetDevice(current) != cudaSuccess) info.problem = "could not restore the current device";
  (void)cudaGetLastError();
  return info;
}

}  // namespace mambacpp
