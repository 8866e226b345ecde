// Tensor views (see tensor.h).
#include "core/tensor.h"

#include "core/error.h"

namespace mambacpp {

Tensor::Tensor(void* d, DType t, std::initializer_list<int64_t> dims, Device dev)
    : Tensor(d, t, std::span<const int64_t>(dims.begin(), dims.size()), dev) {}

Tensor::Tensor(void* d, DType t, std::span<const int64_t> dims, Device dev) : data(d), dtype(t), device(dev) {
  MAMBA_CHECK(int(dims.size()) <= kMaxDims, "tensor of {} dimensions: at most {} are supported", dims.size(),
              kMaxDims);
  ndim = int(dims.size());
  int64_t st = 1;
  for (int k = ndim - 1; k >= 0; --k) {
    shape[k] = dims[size_t(k)];
    stride[k] = st;
    st *= shape[k];
  }
}

int64_t Tensor::numel() const {
  int64_t n = 1;
  for (int i = 0; i < ndim; ++i) n *= shape[i];
  return n;
}

bool Tensor::is_contiguous() const {
  int64_t st = 1;
  for (int k = ndim - 1; k >= 0; --k) {
    if (shape[k] != 1 && stride[k] != st) return false;
    st *= shape[k];
  }
  return true;
}

std::string Tensor::shape_str() const {
  std::string s = "[";
  for (int i = 0; i < ndim; ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

Tensor view(Buffer& buf, DType dtype, std::initializer_list<int64_t> dims) {
  Tensor t(buf.data(), dtype, dims, buf.device());
  MAMBA_CHECK(t.nbytes() <= buf.bytes(), "internal: view of {} bytes over a buffer of {} bytes", t.nbytes(),
              buf.bytes());
  return t;
}

}  // namespace mambacpp
