// Device memory for Buffer (core/buffer.cpp declares cuda_alloc/cuda_free; the CPU-only build links
// core/cuda_stub.cpp instead) and its count, device_memory_use() (device_memory.h).
//
// Buffers come from the current device's default CUDA memory pool, whose release threshold is raised so that
// freed memory stays reserved for the next allocation: generate() allocates its state, workspace and logits
// anew on every call, and the pool hands the same memory back without a cudaMalloc/cudaFree each time.
// MAMBACPP_CUDA_POOL=0 (read once) allocates with plain cudaMalloc/cudaFree instead, which give memory back to
// the device at once (for a GPU shared with other programs); so does a device without memory pools.
//
// Ordering: every op runs on its Context's non-blocking stream, which the allocator cannot see. Like cudaFree,
// cuda_free first waits for the whole device, so a Buffer may be destroyed while queued work still uses it; it
// then frees on the legacy default stream. cuda_alloc allocates on that stream and waits for it, so the memory
// is ready for any stream when it returns. Neither may run while a stream is being recorded as a graph.
#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <string>

#include "core/cuda/check.h"
#include "core/cuda/device_memory.h"
#include "core/error.h"

namespace mambacpp {
namespace {

// True unless MAMBACPP_CUDA_POOL=0 or the device current at the first call has no memory pools. Never throws:
// cuda_free depends on it.
bool pool_enabled() noexcept {
  static const bool on = [] {
    const char* v = std::getenv("MAMBACPP_CUDA_POOL");
    if (v != nullptr && std::strcmp(v, "0") == 0) return false;
    int device = 0, supported = 0;
    const bool ok = cudaGetDevice(&device) == cudaSuccess &&
                    cudaDeviceGetAttribute(&supported, cudaDevAttrMemoryPoolsSupported, device) == cudaSuccess;
    if (!ok) (void)cudaGetLastError();  // no device: plain cudaMalloc reports that when it is asked for memory
    return ok && supported != 0;
  }();
  return on;
}

// Without the pool the allocator counts the bytes of live Buffers itself (over all devices).
std::atomic<size_t> plain_in_use{0}, plain_peak{0};

struct DevicePool {
  cudaMemPool_t pool = nullptr;
  std::atomic<uint64_t> peak_floor{0};  // bytes in use at the last reset_device_memory_peak()
};

// The current device's default memory pool; on first use its release threshold is raised so that freed memory
// stays reserved for reuse.
DevicePool& device_pool() {
  int device = 0;
  CUDA_CHECK(cudaGetDevice(&device));
  static std::mutex mutex;
  static std::map<int, DevicePool> pools;  // map: the entries never move
  const std::lock_guard lock(mutex);
  DevicePool& p = pools[device];
  if (p.pool == nullptr) {
    int supported = 0;
    CUDA_CHECK(cudaDeviceGetAttribute(&supported, cudaDevAttrMemoryPoolsSupported, device));
    MAMBA_CHECK(supported != 0,
                "CUDA device {} has no memory pools (cudaMallocAsync); set MAMBACPP_CUDA_POOL=0 to allocate with "
                "cudaMalloc",
                device);
    cudaMemPool_t pool = nullptr;
    CUDA_CHECK(cudaDeviceGetDefaultMemPool(&pool, device));
    uint64_t keep_all = UINT64_MAX;
    CUDA_CHECK(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep_all));
    p.pool = pool;
  }
  return p;
}

uint64_t pool_attribute(cudaMemPool_t pool, cudaMemPoolAttr attr) {
  uint64_t value = 0;
  CUDA_CHECK(cudaMemPoolGetAttribute(pool, attr, &value));
  return value;
}

[[noreturn]] void out_of_memory(size_t bytes) {
  (void)cudaGetLastError();  // reset the last-error slot so later checks see only their own errors
  size_t free_b = 0, total_b = 0;
  const bool known = cudaMemGetInfo(&free_b, &total_b) == cudaSuccess;
  fail("out of GPU memory: could not allocate {} bytes ({:.1f} MiB){}", bytes, double(bytes) / (1 << 20),
       known ? fmt::format("; {:.1f} MiB free of {:.1f} MiB", double(free_b) / (1 << 20),
                           double(total_b) / (1 << 20))
             : std::string());
}

[[noreturn]] void allocation_failed(cudaError_t err, const char* call, size_t bytes) {
  (void)cudaGetLastError();
  fail("CUDA error {} ({}): {} of {} bytes failed", cudaGetErrorName(err), cudaGetErrorString(err), call, bytes);
}

void* plain_alloc(size_t bytes) {
  void* p = nullptr;
  const cudaError_t err = cudaMalloc(&p, bytes);
  if (err == cudaErrorMemoryAllocation) out_of_memory(bytes);
  if (err != cudaSuccess) allocation_failed(err, "cudaMalloc", bytes);
  const size_t now = plain_in_use.fetch_add(bytes) + bytes;
  size_t peak = plain_peak.load();
  while (now > peak && !plain_peak.compare_exchange_weak(peak, now)) {
  }
  return p;
}

void* pool_alloc(size_t bytes) {
  const cudaMemPool_t pool = device_pool().pool;
  void* p = nullptr;
  cudaError_t err = cudaMallocFromPoolAsync(&p, bytes, pool, cudaStreamLegacy);
  if (err == cudaErrorMemoryAllocation) {
    // Freed memory the pool keeps may be what is missing (held in pieces of other sizes): give all of it back
    // to the device, once the frees still queued have run, and try once more.
    (void)cudaGetLastError();
    CUDA_CHECK(cudaStreamSynchronize(cudaStreamLegacy));
    CUDA_CHECK(cudaMemPoolTrimTo(pool, 0));
    err = cudaMallocFromPoolAsync(&p, bytes, pool, cudaStreamLegacy);
    if (err == cudaErrorMemoryAllocation) out_of_memory(bytes);
  }
  if (err != cudaSuccess) allocation_failed(err, "cudaMallocFromPoolAsync", bytes);
  const cudaError_t sync = cudaStreamSynchronize(cudaStreamLegacy);
  if (sync != cudaSuccess) {
    (void)cudaFreeAsync(p, cudaStreamLegacy);
    cuda::throw_cuda_error(sync, "cudaStreamSynchronize(cudaStreamLegacy)", __FILE__, __LINE__);
  }
  return p;
}

void report_free(cudaError_t err, const char* call) noexcept {
  if (err != cudaSuccess && err != cudaErrorCudartUnloading)
    std::fprintf(stderr, "mambacpp: warning: %s failed: %s\n", call, cudaGetErrorString(err));
}

}  // namespace

void* cuda_alloc(size_t bytes) { return pool_enabled() ? pool_alloc(bytes) : plain_alloc(bytes); }

void cuda_free(void* p, size_t bytes) noexcept {
  if (!pool_enabled()) {
    plain_in_use.fetch_sub(bytes);
    report_free(cudaFree(p), "cudaFree");
    return;
  }
  report_free(cudaDeviceSynchronize(), "cudaDeviceSynchronize before freeing device memory");
  report_free(cudaFreeAsync(p, cudaStreamLegacy), "cudaFreeAsync");
}

DeviceMemoryUse device_memory_use() {
  if (!pool_enabled()) {
    const size_t in_use = plain_in_use.load();
    return {in_use, std::max(plain_peak.load(), in_use), in_use};
  }
  DevicePool& p = device_pool();
  CUDA_CHECK(cudaStreamSynchronize(cudaStreamLegacy));  // frees still queued count as done
  const uint64_t used = pool_attribute(p.pool, cudaMemPoolAttrUsedMemCurrent);
  const uint64_t high = std::max({pool_attribute(p.pool, cudaMemPoolAttrUsedMemHigh), used, p.peak_floor.load()});
  return {size_t(used), size_t(high), size_t(pool_attribute(p.pool, cudaMemPoolAttrReservedMemCurrent))};
}

void reset_device_memory_peak() {
  if (!pool_enabled()) {
    plain_peak.store(plain_in_use.load());
    return;
  }
  DevicePool& p = device_pool();
  CUDA_CHECK(cudaStreamSynchronize(cudaStreamLegacy));
  // The pool's high-water mark can only be reset to zero; the floor keeps what is in use now as the peak.
  p.peak_floor.store(pool_attribute(p.pool, cudaMemPoolAttrUsedMemCurrent));
  uint64_t zero = 0;
  CUDA_CHECK(cudaMemPoolSetAttribute(p.pool, cudaMemPoolAttrUsedMemHigh, &zero));
}

}  // namespace mambacpp
