// The CUDA selective-scan backward at the Tensor level (mathematics and argument roles: ops_backward.h,
// selective_scan_backward; the kernel: scan_backward_kernel.cu). The results are bitwise identical from run to
// run: every sum runs in an order fixed by the shapes, with no atomics.
//
// The caller (the dispatcher) has checked what the CPU op checks: shapes, row strides, which optional tensors
// go together. selective_scan_backward_cuda_supports says whether this implementation handles the rest: every
// defined tensor on cuda and f32 (u may be bf16 or f16, and so may ddt and dz), 1 ≤ n ≤ 256, a contiguous last dimension for the sequences (B, C, dB and dC
// may be row-strided views, into x_proj's output for instance). B and/or C may be time-invariant, (e, n)
// contiguous, with dB / dC (e, n) added to (their sums over batch rows and steps, in a fixed order).
#pragma once

#include <string>

#include "core/context.h"
#include "ops/ops_backward.h"

namespace mambacpp {

// Whether selective_scan_backward_cuda handles `args`; if not, *why (when given) names what is not supported.
bool selective_scan_backward_cuda_supports(const ScanGradArgs& args, std::string* why);
// Queues the backward on the Context's stream, with its scratch memory (state checkpoints and partial sums).
// Throws Error for an unsupported call.
void selective_scan_backward_cuda(const ScanGradArgs& args, Context& ctx);

}  // namespace mambacpp
