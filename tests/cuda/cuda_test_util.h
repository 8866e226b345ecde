// Helpers of the CUDA test suites: skipping without a GPU, host and device tensor pairs and device tensors alone,
// filled from host vectors (rounded to their dtype), poisoned with NaN, and read back as f32.
#pragma once

#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cstring>
#include <initializer_list>
#include <utility>
#include <vector>

#include "core/buffer.h"
#include "core/cuda/device_info.h"
#include "core/dtype.h"
#include "core/tensor.h"

namespace mambacpp::test {

#define SKIP_WITHOUT_GPU()                                                                    \
  do {                                                                                        \
    const CudaRuntimeInfo info_ = cuda_runtime_info();                                        \
    if (info_.devices.empty()) GTEST_SKIP() << "no CUDA device: " << info_.problem;           \
  } while (0)

#define ASSERT_CUDA(stmt) ASSERT_EQ(cudaSuccess, (stmt)) << #stmt

inline size_t element_count(std::initializer_list<int64_t> dims) {
  int64_t count = 1;
  for (int64_t x : dims) count *= x;
  return size_t(count);
}

// Rounds every value to what `dt` can hold.
inline void round_to(DType dt, std::vector<float>& v) {
  for (float& x : v) {
    if (dt == DType::bf16) x = bf16_to_f32(f32_to_bf16(x));
    if (dt == DType::f16) x = f16_to_f32(f32_to_f16(x));
  }
}

// Copies host bytes to the device and waits: a copy from pageable memory may return before its data reaches the
// device, and the ops run on a non-blocking stream that does not wait for it.
inline void copy_to_device(void* dev, const void* host, size_t bytes) {
  ASSERT_CUDA(cudaMemcpy(dev, host, bytes, cudaMemcpyHostToDevice));
  ASSERT_CUDA(cudaDeviceSynchronize());
}

// NaN in every element of device memory (0xff bytes are NaN in f32, bf16 and f16).
inline void poison_device(void* dev, size_t bytes) {
  ASSERT_CUDA(cudaMemset(dev, 0xff, bytes));
  ASSERT_CUDA(cudaDeviceSynchronize());
}

// `count` elements of dtype `dt` at `dev`, as f32.
inline std::vector<float> device_values(const void* dev, DType dt, size_t count) {
  std::vector<char> bytes(count * dtype_size(dt));
  EXPECT_EQ(cudaSuccess, cudaMemcpy(bytes.data(), dev, bytes.size(), cudaMemcpyDeviceToHost));
  std::vector<float> v(count);
  convert_to_f32(v.data(), bytes.data(), dt, count);
  return v;
}

// A host tensor and a device tensor of the same shape and dtype, each owning its memory.
struct Pair {
  Buffer host_buf, dev_buf;
  Tensor host, dev;
};

inline Pair make_pair(DType dt, std::initializer_list<int64_t> dims) {
  Pair p;
  const size_t bytes = element_count(dims) * dtype_size(dt);
  p.host_buf = Buffer(bytes);
  p.dev_buf = Buffer(bytes, Device::cuda);
  p.host = Tensor(p.host_buf.data(), dt, dims);
  p.dev = Tensor(p.dev_buf.data(), dt, dims, Device::cuda);
  return p;
}

// Fills both sides with `v` converted to the pair's dtype.
inline void fill(Pair& p, const std::vector<float>& v) {
  convert_from_f32(p.host_buf.data(), p.host.dtype, v.data(), v.size());
  copy_to_device(p.dev_buf.data(), p.host_buf.data(), p.host_buf.bytes());
}

// NaN in every element on the device and on the host.
inline void poison(Pair& p) {
  std::vector<unsigned char> ff(p.host_buf.bytes(), 0xff);
  std::memcpy(p.host_buf.data(), ff.data(), ff.size());
  poison_device(p.dev_buf.data(), p.dev_buf.bytes());
}

// The device side as f32 (after waiting for all work).
inline std::vector<float> download(const Pair& p) {
  EXPECT_EQ(cudaSuccess, cudaDeviceSynchronize());
  return device_values(p.dev_buf.data(), p.dev.dtype, p.dev_buf.bytes() / dtype_size(p.dev.dtype));
}

// The host side as f32.
inline std::vector<float> host_values(const Pair& p) {
  std::vector<float> v(p.host_buf.bytes() / dtype_size(p.host.dtype));
  convert_to_f32(v.data(), p.host_buf.data(), p.host.dtype, v.size());
  return v;
}

// A device tensor alone, contiguous, owning its memory: for tests whose host side is plain vectors.
struct Dev {
  Buffer buf;
  Tensor t;
};

inline Dev device_tensor(DType dt, std::initializer_list<int64_t> dims) {
  Dev d;
  d.buf = Buffer(element_count(dims) * dtype_size(dt), Device::cuda);
  d.t = Tensor(d.buf.data(), dt, dims, Device::cuda);
  return d;
}

// The device tensor holds `v` converted to its dtype.
inline void upload(Dev& d, const std::vector<float>& v) {
  std::vector<char> bytes(d.buf.bytes());
  convert_from_f32(bytes.data(), d.t.dtype, v.data(), v.size());
  copy_to_device(d.buf.data(), bytes.data(), bytes.size());
}

inline void poison(Dev& d) { poison_device(d.buf.data(), d.buf.bytes()); }

// The first `count` elements as f32 (the caller waits for the work that writes them).
inline std::vector<float> download(const Dev& d, size_t count) { return device_values(d.buf.data(), d.t.dtype, count); }

// The same view (offset in elements, shape, strides) of both sides.
inline std::pair<Tensor, Tensor> views(const Pair& p, int64_t offset, std::initializer_list<int64_t> dims,
                                       std::initializer_list<int64_t> strides) {
  std::pair<Tensor, Tensor> v{p.host, p.dev};
  for (Tensor* t : {&v.first, &v.second}) {
    t->data = static_cast<char*>(t->data) + offset * int64_t(dtype_size(t->dtype));
    t->ndim = int(dims.size());
    int i = 0;
    for (int64_t d : dims) t->shape[size_t(i++)] = d;
    i = 0;
    for (int64_t s : strides) t->stride[size_t(i++)] = s;
  }
  return v;
}

}  // namespace mambacpp::test
