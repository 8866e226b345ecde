// Buffer allocation (see buffer.h).
#include "core/buffer.h"

#include <cstdlib>
#include <utility>

#include "core/error.h"

namespace mambacpp {

const char* device_name(Device d) { return d == Device::cpu ? "cpu" : "cuda"; }

// The CUDA backend provides these when it is built in; the CPU-only build links stubs that throw. cuda_free
// takes the size that was allocated (the allocator counts the bytes in use).
void* cuda_alloc(size_t bytes);
void cuda_free(void* p, size_t bytes) noexcept;

Buffer::Buffer(size_t bytes, Device device) : bytes_(bytes), device_(device) {
  if (bytes == 0) return;
  if (device == Device::cpu) {
    const size_t rounded = (bytes + 63) / 64 * 64;
    ptr_ = std::aligned_alloc(64, rounded);
    MAMBA_CHECK(ptr_ != nullptr, "out of host memory: could not allocate {} bytes ({:.1f} MiB)", bytes,
                double(bytes) / (1 << 20));
  } else {
    ptr_ = cuda_alloc(bytes);
  }
}

Buffer::~Buffer() { release(); }

Buffer::Buffer(Buffer&& o) noexcept
    : ptr_(std::exchange(o.ptr_, nullptr)), bytes_(std::exchange(o.bytes_, 0)), device_(o.device_) {}

Buffer& Buffer::operator=(Buffer&& o) noexcept {
  if (this != &o) {
    release();
    ptr_ = std::exchange(o.ptr_, nullptr);
    bytes_ = std::exchange(o.bytes_, 0);
    device_ = o.device_;
  }
  return *this;
}

void Buffer::release() noexcept {
  if (!ptr_) return;
  if (device_ == Device::cpu)
    std::free(ptr_);
  else
    cuda_free(ptr_, bytes_);
  ptr_ = nullptr;
  bytes_ = 0;
}

}  // namespace mambacpp
