// Checks for CUDA runtime and cuBLAS(Lt) calls and kernel launches.
//
// CUDA_CHECK(stmt) and CUBLAS_CHECK(stmt) throw mambacpp::Error naming the failed statement, the error and the
// file and line. CUDA_CHECK_LAUNCH(op, stream) follows every kernel launch: it reports a rejected launch, and
// when the environment sets MAMBACPP_CUDA_SYNC=1 it also waits for the stream, so that a fault raised
// asynchronously by a kernel is reported at the op that caused it.
//
// This header is included by .cu files and so deliberately does not include core/error.h (fmt does not compile
// under nvcc's front end); the throwing functions are defined in check.cpp.
#pragma once

#include <cublasLt.h>
#include <cuda_runtime.h>

namespace mambacpp::cuda {

[[noreturn]] void throw_cuda_error(cudaError_t err, const char* stmt, const char* file, int line);
[[noreturn]] void throw_cublas_error(cublasStatus_t status, const char* stmt, const char* file, int line);
// Called after a launch of `op` on `stream`; see the file comment.
void check_launch(const char* op, cudaStream_t stream, const char* file, int line);
// True when MAMBACPP_CUDA_SYNC=1 (read once, at the first call).
bool sync_after_each_op();

}  // namespace mambacpp::cuda

#define CUDA_CHECK(stmt)                                                              \
  do {                                                                                \
    const cudaError_t mambacpp_err_ = (stmt);                                         \
    if (mambacpp_err_ != cudaSuccess)                                                 \
      ::mambacpp::cuda::throw_cuda_error(mambacpp_err_, #stmt, __FILE__, __LINE__);   \
  } while (0)

#define CUBLAS_CHECK(stmt)                                                            \
  do {                                                                                \
    const cublasStatus_t mambacpp_st_ = (stmt);                                       \
    if (mambacpp_st_ != CUBLAS_STATUS_SUCCESS)                                        \
      ::mambacpp::cuda::throw_cublas_error(mambacpp_st_, #stmt, __FILE__, __LINE__);  \
  } while (0)

#define CUDA_CHECK_LAUNCH(op, stream) ::mambacpp::cuda::check_launch((op), (stream), __FILE__, __LINE__)
