// Device-independent memory moves, CUDA graphs and the count of device memory in use, for code that must compile
// without the CUDA toolkit (the model, the generation loop): declared without CUDA types. CUDA builds implement
// them in device_memory.cpp (the count in alloc.cpp, beside the allocator); CPU-only builds link
// core/cuda_stub.cpp, where touching the device is a clear Error.
//
// The *_async functions are queued on the Context's stream (the one every CUDA op runs on) when a side is on
// the device; a copy into host memory waits for its data. The plain functions finish before they return and
// wait for all queued work first, so they are safe with any stream (setup and teardown, not hot loops).
#pragma once

#include <cstddef>
#include <memory>

#include "core/buffer.h"
#include "core/context.h"

namespace mambacpp {

void copy_memory_async(void* dst, Device dst_device, const void* src, Device src_device, size_t bytes, Context& ctx);
void copy_memory(void* dst, Device dst_device, const void* src, Device src_device, size_t bytes);
void zero_memory(void* dst, Device device, size_t bytes);
// Waits for the work queued on the Context's stream (nothing to do when it has no CUDA state).
void synchronize(Context& ctx);

// Device memory held by Buffers on the current device, in bytes: `in_use` now, `peak` (the most in use at once
// since the last reset_device_memory_peak()), and `reserved`, what the allocator holds from the device (the
// memory pool's: in use plus freed memory kept for reuse). With MAMBACPP_CUDA_POOL=0 the allocator counts the
// Buffers of all devices itself and `reserved` equals `in_use`. Zeros in a build without CUDA or where no device
// is present. The CUDA backend's own workspaces (cuBLASLt's, the ops' scratch) are not Buffers.
struct DeviceMemoryUse {
  size_t in_use = 0, peak = 0, reserved = 0;
};
DeviceMemoryUse device_memory_use();
// Starts a new peak from what is in use now.
void reset_device_memory_peak();

// A recorded sequence of work on the Context's stream, replayed with one launch. Between begin_capture() and
// end_capture() the ops called are recorded, not run; they must not allocate memory or wait for the host.
class StreamGraph {
 public:
  StreamGraph();
  ~StreamGraph();
  StreamGraph(const StreamGraph&) = delete;
  StreamGraph& operator=(const StreamGraph&) = delete;

  void begin_capture(Context& ctx);
  void end_capture(Context& ctx);
  bool ready() const;
  // Queues the recorded work on the Context's stream.
  void replay(Context& ctx);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace mambacpp
