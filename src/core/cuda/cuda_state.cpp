// CudaState (see cuda_state.h).
#include "core/cuda/cuda_state.h"

#include <cstdio>

#include "core/cuda/check.h"
#include "core/error.h"

namespace mambacpp {
namespace {

// Destructors cannot throw: a failure while tearing down is reported on stderr, except the one that only says
// the CUDA runtime has already been unloaded at process exit.
void report_teardown(cudaError_t err, const char* what) {
  if (err != cudaSuccess && err != cudaErrorCudartUnloading)
    std::fprintf(stderr, "mambacpp: warning: %s failed while releasing CUDA state: %s\n", what,
                 cudaGetErrorString(err));
}

}  // namespace

CudaState::CudaState(int dev) : device(dev) {
  CUDA_CHECK(cudaSetDevice(device));
  cudaDeviceProp prop{};
  CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
  sm_count = prop.multiProcessorCount;
  cc_major = prop.major;
  cc_minor = prop.minor;
  shared_per_block_optin = prop.sharedMemPerBlockOptin;
  CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  const cublasStatus_t st = cublasLtCreate(&blas_lt);
  if (st != CUBLAS_STATUS_SUCCESS) {
    report_teardown(cudaStreamDestroy(stream), "cudaStreamDestroy");
    cuda::throw_cublas_error(st, "cublasLtCreate(&blas_lt)", __FILE__, __LINE__);
  }
  try {
    blas_workspace_memory_ = Buffer(kBlasWorkspaceBytes, Device::cuda);
  } catch (...) {
    (void)cublasLtDestroy(blas_lt);
    report_teardown(cudaStreamDestroy(stream), "cudaStreamDestroy");
    throw;
  }
  blas_workspace = blas_workspace_memory_.data();
}

CudaState::~CudaState() {
  if (blas_lt != nullptr && cublasLtDestroy(blas_lt) != CUBLAS_STATUS_SUCCESS)
    std::fprintf(stderr, "mambacpp: warning: cublasLtDestroy failed while releasing CUDA state\n");
  if (stream != nullptr) report_teardown(cudaStreamDestroy(stream), "cudaStreamDestroy");
}

void CudaState::synchronize() const { CUDA_CHECK(cudaStreamSynchronize(stream)); }

void* CudaState::scratch(size_t bytes) {
  if (bytes <= scratch_.bytes()) return scratch_.data();
  cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
  CUDA_CHECK(cudaStreamIsCapturing(stream, &capture));
  MAMBA_CHECK(capture == cudaStreamCaptureStatusNone,
              "CUDA scratch memory must grow from {} to {} bytes while a graph is being recorded; run the "
              "recorded sequence once before recording it",
              scratch_.bytes(), bytes);
  scratch_ = Buffer();  // freed first (after the queued work that uses it), so the two never coexist
  scratch_ = Buffer(bytes, Device::cuda);
  return scratch_.data();
}

CudaState& cuda_state(Context& ctx) {
  if (!ctx.cuda) {
    int count = 0;
    const cudaError_t err = cudaGetDeviceCount(&count);
    MAMBA_CHECK(err == cudaSuccess && count > 0, "no usable CUDA device: {}",
                err == cudaSuccess ? "the driver reports none" : cudaGetErrorString(err));
    int device = 0;
    CUDA_CHECK(cudaGetDevice(&device));
    ctx.cuda = std::make_shared<CudaState>(device);
  }
  return *ctx.cuda;
}

}  // namespace mambacpp
