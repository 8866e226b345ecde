// Device memory behind Buffer (src/core/cuda/alloc.cpp): freed memory is reused without growing what the
// allocator holds, the in-use count and its peak follow live Buffers, an impossible size is an Error naming it,
// and destroying a Buffer that queued work still writes is safe for the memory's next owner.
// Every test holds with the memory pool and with MAMBACPP_CUDA_POOL=0. ImpossibleSizeNamesTheBytes fails an
// allocation on purpose, which compute-sanitizer reports as an API error: leave it out of a memcheck run.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstddef>
#include <string>
#include <vector>

#include "core/buffer.h"
#include "core/context.h"
#include "core/cuda/cuda_state.h"
#include "core/cuda/device_memory.h"
#include "core/error.h"
#include "cuda/cuda_test_util.h"

namespace mambacpp::test {
namespace {

constexpr size_t kMiB = size_t(1) << 20;

// The index of the first byte that is not `value`, or bytes.size().
size_t first_other_byte(const std::vector<unsigned char>& bytes, unsigned char value) {
  return size_t(std::find_if(bytes.begin(), bytes.end(), [&](unsigned char c) { return c != value; }) -
                bytes.begin());
}

// Writes `bytes` of `value` into the device buffer b from the host, reads them back and checks every byte.
void expect_round_trip(Buffer& b, size_t bytes, unsigned char value) {
  const std::vector<unsigned char> sent(bytes, value);
  std::vector<unsigned char> back(bytes, 0);
  copy_memory(b.data(), Device::cuda, sent.data(), Device::cpu, bytes);
  copy_memory(back.data(), Device::cpu, b.data(), Device::cuda, bytes);
  EXPECT_EQ(first_other_byte(back, value), bytes);
}

// A non-blocking stream of the test's own, unordered with the Context's.
struct OtherStream {
  cudaStream_t s = nullptr;
  OtherStream() { EXPECT_EQ(cudaSuccess, cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking)); }
  ~OtherStream() { EXPECT_EQ(cudaSuccess, cudaStreamDestroy(s)); }
};

// Enough fills of `bytes` (a few milliseconds of writes) that the last ones are still queued when the host
// destroys the buffer.
constexpr size_t kFillBytes = 256 * kMiB;
constexpr int kFills = 32;

void queue_fills(void* p, unsigned char value, cudaStream_t stream) {
  for (int i = 0; i < kFills; ++i) ASSERT_CUDA(cudaMemsetAsync(p, value, kFillBytes, stream));
}

TEST(CudaMemory, FreedMemoryIsReused) {
  SKIP_WITHOUT_GPU();
  const size_t bytes = 96 * kMiB;
  const DeviceMemoryUse before = device_memory_use();
  DeviceMemoryUse first;
  {
    const Buffer a(bytes, Device::cuda);
    first = device_memory_use();
  }
  EXPECT_GE(first.in_use, before.in_use + bytes);
  EXPECT_GE(first.reserved, first.in_use);
  EXPECT_EQ(device_memory_use().in_use, before.in_use);
  for (int round = 0; round < 3; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    const Buffer b(bytes, Device::cuda);
    const DeviceMemoryUse again = device_memory_use();
    EXPECT_EQ(again.in_use, first.in_use);
    EXPECT_LE(again.reserved, first.reserved);
  }
  EXPECT_EQ(device_memory_use().in_use, before.in_use);
}

TEST(CudaMemory, PeakCoversLiveBuffersUntilReset) {
  SKIP_WITHOUT_GPU();
  const size_t a_bytes = 40 * kMiB, b_bytes = 24 * kMiB;
  reset_device_memory_peak();
  const DeviceMemoryUse base = device_memory_use();
  EXPECT_EQ(base.peak, base.in_use);
  {
    const Buffer a(a_bytes, Device::cuda), b(b_bytes, Device::cuda);
    const DeviceMemoryUse live = device_memory_use();
    EXPECT_GE(live.in_use, base.in_use + a_bytes + b_bytes);
    EXPECT_GE(live.peak, live.in_use);
  }
  const DeviceMemoryUse after = device_memory_use();
  EXPECT_EQ(after.in_use, base.in_use);
  EXPECT_GE(after.peak, base.in_use + a_bytes + b_bytes);  // the peak outlives the buffers

  reset_device_memory_peak();
  EXPECT_EQ(device_memory_use().peak, base.in_use);
  const Buffer c(b_bytes, Device::cuda);
  const DeviceMemoryUse small = device_memory_use();
  EXPECT_GE(small.peak, base.in_use + b_bytes);
  EXPECT_LT(small.peak, base.in_use + a_bytes + b_bytes);
}

TEST(CudaMemory, ImpossibleSizeNamesTheBytes) {
  SKIP_WITHOUT_GPU();
  const size_t huge = size_t(1) << 50;
  const size_t in_use = device_memory_use().in_use;
  try {
    const Buffer b(huge, Device::cuda);
    ADD_FAILURE() << "allocating " << huge << " bytes succeeded";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(std::to_string(huge)), std::string::npos) << e.what();
  }
  EXPECT_EQ(cudaSuccess, cudaGetLastError());
  EXPECT_EQ(device_memory_use().in_use, in_use);

  Buffer ok(kMiB, Device::cuda);
  expect_round_trip(ok, kMiB, 0x5a);
}

// Fills still queued on the Context's stream when X is destroyed must not reach Y, which may be X's memory.
TEST(CudaMemory, FreeWaitsForQueuedWork) {
  SKIP_WITHOUT_GPU();
  Context ctx(1);
  const cudaStream_t stream = cuda_state(ctx).stream;
  {
    Buffer x(kFillBytes, Device::cuda);
    queue_fills(x.data(), 0x11, stream);
  }
  Buffer y(kFillBytes, Device::cuda);
  expect_round_trip(y, kFillBytes, 0x22);
  EXPECT_EQ(cudaSuccess, cudaStreamSynchronize(stream));
  EXPECT_EQ(cudaSuccess, cudaGetLastError());
}

// The same with Y written and read on another stream, by calls that wait for nothing else: only the free's own
// wait keeps X's fills off Y.
TEST(CudaMemory, FreeWaitsForQueuedWorkSeenFromAnotherStream) {
  SKIP_WITHOUT_GPU();
  Context ctx(1);
  const cudaStream_t stream = cuda_state(ctx).stream;
  const OtherStream other;
  {
    Buffer x(kFillBytes, Device::cuda);
    queue_fills(x.data(), 0x11, stream);
  }
  Buffer y(kFillBytes, Device::cuda);
  std::vector<unsigned char> back(kFillBytes, 0);
  ASSERT_CUDA(cudaMemsetAsync(y.data(), 0x22, kFillBytes, other.s));
  ASSERT_CUDA(cudaMemcpyAsync(back.data(), y.data(), kFillBytes, cudaMemcpyDeviceToHost, other.s));
  ASSERT_CUDA(cudaStreamSynchronize(other.s));
  EXPECT_EQ(first_other_byte(back, 0x22), kFillBytes);
  EXPECT_EQ(cudaSuccess, cudaStreamSynchronize(stream));
  EXPECT_EQ(cudaSuccess, cudaGetLastError());
}

}  // namespace
}  // namespace mambacpp::test
