// Device allocation entry points for builds without the CUDA backend: asking for device memory is a clear
// error, never a crash.
#include <cstddef>

#include "core/error.h"

namespace mambacpp {

void* cuda_alloc(size_t bytes) {
  fail("CUDA was requested ({} bytes of device memory), but this build of mambacpp has no CUDA support; "
       "rebuild with nvcc available (MAMBACPP_CUDA=ON) or use --device cpu",
       bytes);
}
void cuda_free(void*) noexcept {}

}  // namespace mambacpp
