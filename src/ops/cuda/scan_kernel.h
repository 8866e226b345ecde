// The fused selective-scan forward kernel on raw device pointers (the Tensor-level entry point is in
// cuda_ops.h). Included by .cu files and by host code; needs only the CUDA runtime.
//
// Mathematics: ops.h, selective_scan_forward. Layout: u, dt, z, y are token-major (b, l, e) and B, C are
// (b, l, n); each has a contiguous last dimension and arbitrary batch and token strides (B and C are usually
// views into x_proj's output). A is (e, n), D and dt_bias (e), state_in and state_out (b, e, n): all f32 and
// contiguous. A time-invariant B or C (the selection ablations) is instead (e, n) f32 contiguous, per channel
// (B_lti / C_lti; then the sequence B / C is absent), and needs f32 dt and z. With f32 dt, B, C and z, u may be
// bf16 or f16 (u_dtype): it is widened to f32 as it is loaded, which is exact, so the result is the f32 scan's
// on the widened u.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <string>

#include "core/dtype.h"

namespace mambacpp::cuda {

// A read-only sequence tensor: element (bi, t, k) at p[bi·sb + t·sl + k]; strides in elements.
struct SeqIn {
  const void* p = nullptr;
  int64_t sb = 0, sl = 0;
};
// The same for the output.
struct SeqOut {
  void* p = nullptr;
  int64_t sb = 0, sl = 0;
};

struct ScanKernelParams {
  int64_t b = 0, l = 0, e = 0, n = 0;
  DType in_dtype = DType::f32;       // of dt, B, C and z
  DType y_dtype = DType::f32;        // in_dtype, f32, or (with f32 inputs) bf16 or f16
  SeqOut y;                          // (b, l, e)
  SeqIn u, dt, z;                    // (b, l, e); z.p == nullptr: no gate
  SeqIn B, C;                        // (b, l, n); p == nullptr where B_lti / C_lti is given
  const float* A = nullptr;          // (e, n)
  const float* D = nullptr;          // (e) or nullptr
  const float* dt_bias = nullptr;    // (e) or nullptr
  const float* state_in = nullptr;   // (b, e, n) or nullptr for zeros
  float* state_out = nullptr;        // (b, e, n) or nullptr; may equal state_in
  float* chunk_states = nullptr;     // (b, ceil(l / 16), n, e) or nullptr: the state before every 16th step (ops.h)
  bool dt_softplus = true;
  const float* B_lti = nullptr;      // (e, n) or nullptr: a time-invariant B[c, s] in place of B[t, s]
  const float* C_lti = nullptr;      // (e, n) or nullptr: a time-invariant C[c, s] in place of C[t, s]
  DType u_dtype = DType::f32;        // of u: in_dtype, or (with f32 inputs) bf16 or f16
};

// The largest state size the kernel handles.
constexpr int64_t kScanMaxState = 256;

// Whether the kernel handles `p`; if not, *why (when given) names the limit that is exceeded.
bool scan_kernel_supports(const ScanKernelParams& p, std::string* why);
// Queues the scan on `stream`. `p` must be supported (checked by the caller). A single step (l = 1, decoding)
// without chunk_states runs the light kernel of scan_step_kernel.cu; the rest the chunked kernel of scan_kernel.cu.
void scan_kernel_launch(const ScanKernelParams& p, cudaStream_t stream);
// The single-step kernel alone (p.l must be 1).
void scan_step_kernel_launch(const ScanKernelParams& p, cudaStream_t stream);

}  // namespace mambacpp::cuda
