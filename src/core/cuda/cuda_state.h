// CudaState: what CUDA ops need besides their tensors — the device, the stream every op is queued on, the
// cuBLASLt handle and the device limits kernels size themselves by. One per Context (Context::cuda), created on
// first use by cuda_state(). Only CUDA-backend code includes this header.
#pragma once

#include <cublasLt.h>
#include <cuda_runtime.h>

#include <cstddef>

#include "core/buffer.h"
#include "core/context.h"

namespace mambacpp {

struct CudaState {
  int device = 0;
  cudaStream_t stream = nullptr;       // non-blocking with respect to the legacy default stream
  cublasLtHandle_t blas_lt = nullptr;
  int sm_count = 0;
  int cc_major = 0, cc_minor = 0;      // compute capability
  size_t shared_per_block_optin = 0;   // bytes of shared memory a block may use after opting in
  void* blas_workspace = nullptr;      // cuBLASLt's scratch, kBlasWorkspaceBytes (in blas_workspace_memory_)
  static constexpr size_t kBlasWorkspaceBytes = size_t(32) << 20;

  // Creates the stream and handle on `device` (which becomes the calling thread's current device).
  explicit CudaState(int device);
  ~CudaState();
  CudaState(const CudaState&) = delete;
  CudaState& operator=(const CudaState&) = delete;

  // Waits for everything queued on the stream; throws Error if any of it failed.
  void synchronize() const;
  // At least `bytes` of device scratch memory, valid until the next call with a larger size (which waits for the
  // stream, frees it and allocates anew). Like cuBLASLt's workspace it is a Buffer: memory from the pool that
  // device_memory_use() counts. Ops use it for short-lived conversions within one launch sequence.
  // Growing it while a graph is being recorded is an Error: record only calls that an earlier run has sized.
  void* scratch(size_t bytes);

 private:
  Buffer blas_workspace_memory_;
  Buffer scratch_;
};

// The CUDA state of `ctx`, created on first use on the calling thread's current device (device 0 unless the
// program chose another). Throws Error when no usable CUDA device is present.
CudaState& cuda_state(Context& ctx);

}  // namespace mambacpp
