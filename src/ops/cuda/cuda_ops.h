// The CUDA implementations behind the op dispatchers of ops.h, on Tensors that live on the GPU.
//
// Each op has a *_supports function that says whether the CUDA implementation handles a call — shapes,
// dtypes, strides, devices — and, if not, why; the op itself throws mambacpp::Error with that reason. Work is
// queued on the Context's stream (core/cuda/cuda_state.h) and is asynchronous to the host, unless
// MAMBACPP_CUDA_SYNC=1 (then each op waits for its kernels and reports their faults).
#pragma once

#include <string>

#include "core/context.h"
#include "ops/ops.h"

namespace mambacpp {

// selective_scan_forward (ops.h) on the GPU. u, dt, B, C and z share one dtype (f32, bf16 or f16); y has that
// dtype or f32; A, D, dt_bias, state_in and state_out are f32. Any n from 1 to 256.
bool selective_scan_cuda_supports(const ScanArgs& args, std::string* why);
void selective_scan_forward_cuda(const ScanArgs& args, Context& ctx);

}  // namespace mambacpp
