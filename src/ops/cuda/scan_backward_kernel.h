// The fused selective-scan backward kernel on raw device pointers (the Tensor-level entry point is
// cuda_scan_backward.h). Included by .cu files and by host code; needs only the CUDA runtime.
//
// Mathematics: ops_backward.h, selective_scan_backward. Layout as in the forward (scan_kernel.h): (b, l, e) and
// (b, l, n) sequences with a contiguous last dimension and arbitrary batch and token strides; A (e, n), D,
// dt_bias (e), the states (b, e, n): contiguous. Everything is f32, except that u may be bf16 or f16 (widened to
// f32 as it is read, which is exact) and ddt and dz may be bf16 or f16. A time-invariant B or C (the selection
// ablations) is instead (e, n), per channel (B_lti / C_lti, the sequence B / C and dB / dC then absent), and its
// gradient (e, n) is added to: the sum over batch rows and steps.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "core/dtype.h"

namespace mambacpp::cuda {

// A sequence tensor: element (bi, t, k) at p[bi·sb + t·sl + k]; strides in elements. f32, except where a dtype
// field below says otherwise (p then points to that type).
struct GradSeq {
  float* p = nullptr;
  int64_t sb = 0, sl = 0;
};

struct ScanGradKernelParams {
  int64_t b = 0, l = 0, e = 0, n = 0;
  GradSeq du, ddt, dz;                // (b, l, e) written; dz.p == nullptr exactly when there is no gate
  DType ddt_dtype = DType::f32;       // of ddt: f32, or bf16 / f16 (ddt.p then points to that type)
  DType dz_dtype = DType::f32;        // of dz, likewise
  GradSeq dB, dC;                     // (b, l, n) written; p == nullptr where B_lti / C_lti is given
  float* dA = nullptr;                // (e, n) added to, or nullptr
  float* dD = nullptr;                // (e) added to, or nullptr
  float* ddt_bias = nullptr;          // (e) added to, or nullptr
  float* dstate_in = nullptr;         // (b, e, n) written, or nullptr
  GradSeq dy;                         // (b, l, e)
  const float* dstate_out = nullptr;  // (b, e, n) or nullptr for zero
  GradSeq u, dt, z;                   // (b, l, e); z.p == nullptr: no gate
  GradSeq B, C;                       // (b, l, n); p == nullptr where B_lti / C_lti is given
  const float* A = nullptr;           // (e, n)
  const float* D = nullptr;           // (e) or nullptr
  const float* dt_bias = nullptr;     // (e) or nullptr
  const float* state_in = nullptr;    // (b, e, n) or nullptr for zeros
  // (b, ceil(l / 16), n, e) or nullptr: the forward's state before every 16th step (ops.h, chunk_states); used
  // by the tiles of n ≤ 64 (chunks of 16 steps) in place of their forward pass over the sequence.
  const float* chunk_states = nullptr;
  bool dt_softplus = true;
  // Budgets, in floats, of the state checkpoints and of the dB/dC partial sums; 0 takes the defaults. Smaller
  // budgets reach the paths that long sequences take (checkpoints every K chunks, several tiles per block).
  int64_t checkpoint_budget = 0, partial_budget = 0;
  const float* B_lti = nullptr;       // (e, n) or nullptr: a time-invariant B[c, s] in place of B[t, s]
  const float* C_lti = nullptr;       // (e, n) or nullptr: a time-invariant C[c, s] in place of C[t, s]
  float* dB_lti = nullptr;            // (e, n) added to, or nullptr (not wanted); with B_lti only
  float* dC_lti = nullptr;            // (e, n) added to, or nullptr (not wanted); with C_lti only
  DType u_dtype = DType::f32;         // of u: f32, or bf16 / f16 (u.p then points to that type)
};

// The largest state size the kernel handles.
constexpr int64_t kScanBackwardMaxState = 256;

// Whether the kernel handles `p`; if not, *why (when given) names the limit that is exceeded.
bool scan_backward_kernel_supports(const ScanGradKernelParams& p, std::string* why);
// Bytes of device scratch memory the launch needs (state checkpoints and the partial sums of the reductions).
size_t scan_backward_scratch_bytes(const ScanGradKernelParams& p);
// Queues the backward on `stream`, using `scratch` (at least scan_backward_scratch_bytes(p), 256-byte
// aligned). `p` must be supported (checked by the caller).
void scan_backward_kernel_launch(const ScanGradKernelParams& p, void* scratch, cudaStream_t stream);

}  // namespace mambacpp::cuda
