// Device entry points for builds without the CUDA backend: asking for device memory is a clear error, never a
// crash; memory moves and graphs that touch the device fail the same way; no device memory is ever in use; the
// device query reports that the build has no CUDA support.
#include <cstddef>
#include <cstring>

#include "core/cuda/device_info.h"
#include "core/cuda/device_memory.h"
#include "core/error.h"

namespace mambacpp {

void* cuda_alloc(size_t bytes) {
  fail("CUDA was requested ({} bytes of device memory), but this build of mambacpp has no CUDA support; "
       "rebuild with nvcc available (MAMBACPP_CUDA=ON) or use --device cpu",
       bytes);
}
void cuda_free(void*, size_t) noexcept {}

namespace {

[[noreturn]] void no_cuda(const char* what) {
  fail("{} needs CUDA, but this build of mambacpp has no CUDA support; rebuild with nvcc available "
       "(MAMBACPP_CUDA=ON) or use --device cpu",
       what);
}

}  // namespace

void copy_memory_async(void* dst, Device dst_device, const void* src, Device src_device, size_t bytes, Context&) {
  copy_memory(dst, dst_device, src, src_device, bytes);
}

void copy_memory(void* dst, Device dst_device, const void* src, Device src_device, size_t bytes) {
  if (dst_device != Device::cpu || src_device != Device::cpu) no_cuda("a copy to or from the GPU");
  if (bytes != 0) std::memcpy(dst, src, bytes);
}

void zero_memory(void* dst, Device device, size_t bytes) {
  if (device != Device::cpu) no_cuda("clearing GPU memory");
  if (bytes != 0) std::memset(dst, 0, bytes);
}

void synchronize(Context&) {}

DeviceMemoryUse device_memory_use() { return {}; }
void reset_device_memory_peak() {}

struct StreamGraph::Impl {};
StreamGraph::StreamGraph() = default;
StreamGraph::~StreamGraph() = default;
void StreamGraph::begin_capture(Context&) { no_cuda("recording a CUDA graph"); }
void StreamGraph::end_capture(Context&) { no_cuda("recording a CUDA graph"); }
bool StreamGraph::ready() const { return false; }
void StreamGraph::replay(Context&) { no_cuda("replaying a CUDA graph"); }

CudaRuntimeInfo cuda_runtime_info() { return {0, 0, {}, "built without CUDA support"}; }

}  // namespace mambacpp
