// Helpers of the CUDA test suites: skipping without a GPU, device tensors filled from host vectors (rounded to
// their dtype), poisoned with NaN, and read back as f32.
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

// A host tensor and a device tensor of the same shape and dtype, each owning its memory.
struct Pair {
  Buffer host_buf, dev_buf;
  Tensor host, dev;
};

inline Pair make_pair(DType dt, std::initializer_list<int64_t> dims) {
  Pair p;
  int64_t count = 1;
  for (int64_t x : dims) count *= x;
  const size_t bytes = size_t(count) * dtype_size(dt);
  p.host_buf = Buffer(bytes);
  p.dev_buf = Buffer(bytes, Device::cuda);
  p.host = Tensor(p.host_buf.data(), dt, dims);
  p.dev = Tensor(p.dev_buf.data(), dt, dims, Device::cuda);
  return p;
}

// Fills both sides with `v` converted to the pair's dtype.
inline void fill(Pair& p, const std::vector<float>& v) {
  convert_from_f32(p.host_buf.data(), p.host.dtype, v.data(), v.size());
  ASSERT_EQ(cudaSuccess, cudaMemcpy(p.dev_buf.data(), p.host_buf.data(), p.host_buf.bytes(), cudaMemcpyHostToDevice));
  // A copy from pageable memory may return before its data reaches the device, and the ops run on a non-blocking
  // stream that does not wait for it: wait here.
  ASSERT_EQ(cudaSuccess, cudaDeviceSynchronize());
}

// NaN in every element on the device (0xff bytes are NaN in f32, bf16 and f16) and on the host.
inline void poison(Pair& p) {
  std::vector<unsigned char> ff(p.host_buf.bytes(), 0xff);
  std::memcpy(p.host_buf.data(), ff.data(), ff.size());
  ASSERT_EQ(cudaSuccess, cudaMemset(p.dev_buf.data(), 0xff, p.dev_buf.bytes()));
  ASSERT_EQ(cudaSuccess, cudaDeviceSynchronize());
}

// The device side as f32 (after waiting for all work).
inline std::vector<float> download(const Pair& p) {
  EXPECT_EQ(cudaSuccess, cudaDeviceSynchronize());
  std::vector<char> bytes(p.dev_buf.bytes());
  EXPECT_EQ(cudaSuccess, cudaMemcpy(bytes.data(), p.dev_buf.data(), bytes.size(), cudaMemcpyDeviceToHost));
  std::vector<float> v(bytes.size() / dtype_size(p.dev.dtype));
  convert_to_f32(v.data(), bytes.data(), p.dev.dtype, v.size());
  return v;
}

// The host side as f32.
inline std::vector<float> host_values(const Pair& p) {
  std::vector<float> v(p.host_buf.bytes() / dtype_size(p.host.dtype));
  convert_to_f32(v.data(), p.host_buf.data(), p.host.dtype, v.size());
  return v;
}

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
