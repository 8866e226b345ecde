// Buffer: the one owner of tensor memory. Host buffers are 64-byte aligned (one cache line, one AVX-512
// register); device buffers come from the CUDA backend's allocator. Move-only.
#pragma once

#include <cstddef>
#include <cstdint>

namespace mambacpp {

enum class Device : uint8_t { cpu, cuda };
const char* device_name(Device d);

class Buffer {
 public:
  Buffer() = default;
  // Allocates `bytes` on `device`; throws Error (naming the size) when memory is exhausted.
  explicit Buffer(size_t bytes, Device device = Device::cpu);
  ~Buffer();
  Buffer(Buffer&& o) noexcept;
  Buffer& operator=(Buffer&& o) noexcept;
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;

  void* data() { return ptr_; }
  const void* data() const { return ptr_; }
  template <typename T>
  T* as() { return static_cast<T*>(ptr_); }
  template <typename T>
  const T* as() const { return static_cast<const T*>(ptr_); }
  size_t bytes() const { return bytes_; }
  Device device() const { return device_; }
  bool empty() const { return bytes_ == 0; }

 private:
  void release() noexcept;
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
  Device device_ = Device::cpu;
};

}  // namespace mambacpp
