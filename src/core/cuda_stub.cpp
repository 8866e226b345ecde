// Device entry points for builds without the CUDA backend: asking for device memory is a clear error, never a
// crash, and the device query reports that the build has no CUDA support.
#include <cstddef>

#include "core/cuda/device_info.h"
#include "core/error.h"

namespace mambacpp {

void* cuda_alloc(size_t bytes) {
  fail("CUDA was requested ({} bytes of device memory), but this build of mambacpp has no CUDA support; "
       "rebuild with nvcc available (MAMBACPP_CUDA=ON) or use --device cpu",
       bytes);
}
void cuda_free(void*) noexcept {}

CudaRuntimeInfo cuda_runtime_info() { return {0, 0, {}, "built without CUDA support"}; }

}  // namespace mambacpp
