// Device memory for Buffer (core/buffer.cpp declares these two entry points; the CPU-only build links
// core/cuda_stub.cpp instead). Plain cudaMalloc/cudaFree on the current device.
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdio>
#include <string>

#include "core/cuda/check.h"
#include "core/error.h"

namespace mambacpp {

void* cuda_alloc(size_t bytes) {
  void* p = nullptr;
  const cudaError_t err = cudaMalloc(&p, bytes);
  if (err == cudaErrorMemoryAllocation) {
    (void)cudaGetLastError();  // reset the last-error slot so later checks see only their own errors
    size_t free_b = 0, total_b = 0;
    const bool known = cudaMemGetInfo(&free_b, &total_b) == cudaSuccess;
    fail("out of GPU memory: could not allocate {} bytes ({:.1f} MiB){}", bytes, double(bytes) / (1 << 20),
         known ? fmt::format("; {:.1f} MiB free of {:.1f} MiB", double(free_b) / (1 << 20),
                             double(total_b) / (1 << 20))
               : std::string());
  }
  if (err != cudaSuccess) cuda::throw_cuda_error(err, "cudaMalloc(&p, bytes)", __FILE__, __LINE__);
  return p;
}

void cuda_free(void* p) noexcept {
  const cudaError_t err = cudaFree(p);
  if (err != cudaSuccess && err != cudaErrorCudartUnloading)
    std::fprintf(stderr, "mambacpp: warning: cudaFree failed: %s\n", cudaGetErrorString(err));
}

}  // namespace mambacpp
