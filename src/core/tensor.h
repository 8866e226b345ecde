// Tensor: a non-owning view of memory held by a Buffer (or a memory-mapped checkpoint): element type, device,
// shape and strides in elements, in PyTorch dimension order (the last dimension varies fastest).
#pragma once

#include <array>
#include <cstdint>
#include <initializer_list>
#include <span>
#include <string>

#include "core/buffer.h"
#include "core/dtype.h"

namespace mambacpp {

constexpr int kMaxDims = 5;

struct Tensor {
  void* data = nullptr;
  DType dtype = DType::f32;
  Device device = Device::cpu;
  int ndim = 0;
  std::array<int64_t, kMaxDims> shape{};
  std::array<int64_t, kMaxDims> stride{};  // in elements

  Tensor() = default;
  // A contiguous view of `data` with the given shape.
  Tensor(void* data, DType dtype, std::initializer_list<int64_t> dims, Device device = Device::cpu);
  Tensor(void* data, DType dtype, std::span<const int64_t> dims, Device device = Device::cpu);

  bool defined() const { return data != nullptr; }
  int64_t size(int dim) const { return shape[dim < 0 ? dim + ndim : dim]; }
  int64_t numel() const;
  size_t nbytes() const { return size_t(numel()) * dtype_size(dtype); }
  bool is_contiguous() const;
  // "[2, 3, 4]"
  std::string shape_str() const;

  template <typename T>
  T* ptr() const { return static_cast<T*>(data); }
  float* f32() const { return static_cast<float*>(data); }
};

// A contiguous tensor view over the start of `buf`, which must be large enough.
Tensor view(Buffer& buf, DType dtype, std::initializer_list<int64_t> dims);

}  // namespace mambacpp
