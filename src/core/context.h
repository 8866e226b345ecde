// Context: what every op needs besides its tensors — the thread count for CPU work (OpenMP and OpenBLAS) and,
// in CUDA builds, the device, stream and library handles. Passed explicitly, last, to each op.
#pragma once

#include <memory>

namespace mambacpp {

struct CudaState;  // defined by the CUDA backend

class Context {
 public:
  // threads <= 0 means "all hardware threads".
  explicit Context(int threads = 0);
  int threads() const { return threads_; }
  // Sets the thread count used by this process's OpenMP regions and OpenBLAS calls.
  void set_threads(int threads);

  // The CUDA stream and library handles, created on first use by the CUDA backend (src/core/cuda/); empty
  // until then and always empty in CPU-only work.
  std::shared_ptr<CudaState> cuda;

 private:
  int threads_ = 1;
};

// Number of hardware threads available to this process.
int hardware_threads();

}  // namespace mambacpp
