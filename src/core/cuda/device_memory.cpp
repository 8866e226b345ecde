// Memory moves and stream graphs on the CUDA runtime (see device_memory.h).
#include "core/cuda/device_memory.h"

#include <cuda_runtime.h>

#include <cstdio>
#include <cstring>

#include "core/cuda/check.h"
#include "core/cuda/cuda_state.h"
#include "core/error.h"

namespace mambacpp {
namespace {

cudaMemcpyKind copy_kind(Device dst, Device src) {
  if (dst == Device::cuda) return src == Device::cuda ? cudaMemcpyDeviceToDevice : cudaMemcpyHostToDevice;
  return src == Device::cuda ? cudaMemcpyDeviceToHost : cudaMemcpyHostToHost;
}

}  // namespace

void copy_memory_async(void* dst, Device dst_device, const void* src, Device src_device, size_t bytes,
                       Context& ctx) {
  if (bytes == 0) return;
  if (dst_device == Device::cpu && src_device == Device::cpu) {
    std::memcpy(dst, src, bytes);
    return;
  }
  const cudaStream_t stream = cuda_state(ctx).stream;
  CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, copy_kind(dst_device, src_device), stream));
  if (dst_device == Device::cpu) CUDA_CHECK(cudaStreamSynchronize(stream));
}

void copy_memory(void* dst, Device dst_device, const void* src, Device src_device, size_t bytes) {
  if (bytes == 0) return;
  if (dst_device == Device::cpu && src_device == Device::cpu) {
    std::memcpy(dst, src, bytes);
    return;
  }
  CUDA_CHECK(cudaDeviceSynchronize());
  CUDA_CHECK(cudaMemcpy(dst, src, bytes, copy_kind(dst_device, src_device)));
  CUDA_CHECK(cudaDeviceSynchronize());
}

void zero_memory(void* dst, Device device, size_t bytes) {
  if (bytes == 0) return;
  if (device == Device::cpu) {
    std::memset(dst, 0, bytes);
    return;
  }
  CUDA_CHECK(cudaDeviceSynchronize());
  CUDA_CHECK(cudaMemset(dst, 0, bytes));
  CUDA_CHECK(cudaDeviceSynchronize());
}

void synchronize(Context& ctx) {
  if (ctx.cuda) ctx.cuda->synchronize();
}

struct StreamGraph::Impl {
  cudaGraph_t graph = nullptr;
  cudaGraphExec_t exec = nullptr;
  void clear() {
    if (exec != nullptr && cudaGraphExecDestroy(exec) != cudaSuccess)
      std::fprintf(stderr, "mambacpp: warning: cudaGraphExecDestroy failed\n");
    if (graph != nullptr && cudaGraphDestroy(graph) != cudaSuccess)
      std::fprintf(stderr, "mambacpp: warning: cudaGraphDestroy failed\n");
    exec = nullptr;
    graph = nullptr;
  }
};

StreamGraph::StreamGraph() : impl_(std::make_unique<Impl>()) {}
StreamGraph::~StreamGraph() { impl_->clear(); }

void StreamGraph::begin_capture(Context& ctx) {
  impl_->clear();
  CUDA_CHECK(cudaStreamBeginCapture(cuda_state(ctx).stream, cudaStreamCaptureModeThreadLocal));
}

void StreamGraph::end_capture(Context& ctx) {
  CUDA_CHECK(cudaStreamEndCapture(cuda_state(ctx).stream, &impl_->graph));
  CUDA_CHECK(cudaGraphInstantiate(&impl_->exec, impl_->graph, 0));
}

bool StreamGraph::ready() const { return impl_->exec != nullptr; }

void StreamGraph::replay(Context& ctx) {
  MAMBA_CHECK(ready(), "StreamGraph::replay: nothing has been captured");
  const cudaStream_t stream = cuda_state(ctx).stream;
  CUDA_CHECK(cudaGraphLaunch(impl_->exec, stream));
  CUDA_CHECK_LAUNCH("graph replay", stream);
}

}  // namespace mambacpp
