// Device-independent memory moves and CUDA graphs, for code that must compile without the CUDA toolkit (the
// model, the generation loop): declared without CUDA types. CUDA builds implement them in device_memory.cpp;
// CPU-only builds link core/cuda_stub.cpp, where touching the device is a clear Error.
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
