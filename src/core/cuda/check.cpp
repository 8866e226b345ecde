// CUDA and cuBLAS error reporting (see check.h).
#include "core/cuda/check.h"

#include <cstdlib>
#include <cstring>

#include "core/error.h"

namespace mambacpp::cuda {

void throw_cuda_error(cudaError_t err, const char* stmt, const char* file, int line) {
  fail("CUDA error {} ({}): {} failed at {}:{}", cudaGetErrorName(err), cudaGetErrorString(err), stmt, file,
       line);
}

void throw_cublas_error(cublasStatus_t status, const char* stmt, const char* file, int line) {
  fail("cuBLAS error {} ({}): {} failed at {}:{}", cublasLtGetStatusName(status), cublasLtGetStatusString(status),
       stmt, file, line);
}

bool sync_after_each_op() {
  static const bool on = [] {
    const char* v = std::getenv("MAMBACPP_CUDA_SYNC");
    return v != nullptr && std::strcmp(v, "1") == 0;
  }();
  return on;
}

void check_launch(const char* op, cudaStream_t stream, const char* file, int line) {
  const cudaError_t launch = cudaGetLastError();
  if (launch != cudaSuccess)
    fail("CUDA error {} ({}): the kernel launch of {} was rejected at {}:{}", cudaGetErrorName(launch),
         cudaGetErrorString(launch), op, file, line);
  cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
  if (!sync_after_each_op() || cudaStreamIsCapturing(stream, &capture) != cudaSuccess ||
      capture != cudaStreamCaptureStatusNone)
    return;  // nothing runs while a graph is being recorded
  const cudaError_t run = cudaStreamSynchronize(stream);
  if (run != cudaSuccess)
    fail("CUDA error {} ({}) while running {} (launched at {}:{}; MAMBACPP_CUDA_SYNC=1)", cudaGetErrorName(run),
         cudaGetErrorString(run), op, file, line);
}

}  // namespace mambacpp::cuda
