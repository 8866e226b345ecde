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
  const cudaError_t err = cudaMalloc(&blas_workspace, kBlasWorkspaceBytes);
  if (err != cudaSuccess) {
    (void)cublasLtDestroy(blas_lt);
    report_teardown(cudaStreamDestroy(stream), "cudaStreamDestroy");
    cuda::throw_cuda_error(err, "cudaMalloc(&blas_workspace, kBlasWorkspaceBytes)", __FILE__, __LINE__);
  }
}

CudaState::~CudaState() {
  if (blas_lt != nullptr && cublasLtDestroy(blas_lt) != CUBLAS_STATUS_SUCCESS)
    std::fprintf(stderr, "mambacpp: warning: cublasLtDestroy failed while releasing CUDA state\n");
  if (scratch_ != nullptr) report_teardown(cudaFree(scratch_), "cudaFree");
  if (blas_workspace != nullptr) report_teardown(cudaFree(blas_workspace), "cudaFree");
  if (stream != nullptr) report_teardown(cudaStreamDestroy(stream), "cudaStreamDestroy");
}

void CudaState::synchronize() const { CUDA_CHECK(cudaStreamSynchronize(stream)); }

void* CudaState::scratch(size_t bytes) {
  if (bytes <= scratch_bytes_) return scratch_;
  cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
  CUDA_CHECK(cudaStreamIsCapturing(stream, &capture));
  MAMBA_CHECK(capture == cudaStreamCaptureStatusNone,
              "CUDA scratch memory must grow from {} to {} bytes while a graph is being recorded; run the "
              "recorded sequence once before recording it",
              scratch_bytes_, bytes);
  synchronize();
  if (scratch_ != nullptr) CUDA_CHECK(cudaFree(scratch_));
  scratch_ = nullptr;
  scratch_bytes_ = 0;
  const cudaError_t err = cudaMalloc(&scratch_, bytes);
  if (err == cudaErrorMemoryAllocation) {
    (void)cudaGetLastError();
    fail("out of GPU memory: could not allocate {} bytes ({:.1f} MiB) of scratch memory", bytes,
         double(bytes) / (1 << 20));
  }
  if (err != cudaSuccess) cuda::throw_cuda_error(err, "cudaMalloc(&scratch_, bytes)", __FILE__, __LINE__);
  scratch_bytes_ = bytes;
  return scratch_;
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
