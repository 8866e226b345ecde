// The selective scan for a single step (l = 1), as decoding runs it (interface: scan_kernel.h; mathematics:
// ops.h). The chunked kernel of scan_kernel.cu walks whole chunks of steps, so at l = 1 most of its work is
// padding; here one thread owns one (batch row, channel) and updates its n states in a loop:
//   h[s] = exp(δ·A[s])·h[s] + δ·B[s]·u,   y = (Σ_s h[s]·C[s] + D·u)·silu(z).
// B and C are read by every thread of a batch row (they stay in L1); the state row is read and written once.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "core/cuda/check.h"
#include "ops/cuda/scan_kernel.h"

namespace mambacpp::cuda {
namespace {

constexpr int kThreads = 128;

__device__ __forceinline__ float to_f32(float x) { return x; }
__device__ __forceinline__ float to_f32(__nv_bfloat16 x) { return __bfloat162float(x); }
__device__ __forceinline__ float to_f32(__half x) { return __half2float(x); }

template <class T>
__device__ __forceinline__ T from_f32(float x);
template <>
__device__ __forceinline__ float from_f32<float>(float x) { return x; }
template <>
__device__ __forceinline__ __nv_bfloat16 from_f32<__nv_bfloat16>(float x) { return __float2bfloat16_rn(x); }
template <>
__device__ __forceinline__ __half from_f32<__half>(float x) { return __float2half_rn(x); }

template <class In>
__device__ __forceinline__ float at(const SeqIn& s, int64_t bi, int64_t k) {
  return to_f32(static_cast<const In*>(s.p)[bi * s.sb + k]);
}

template <class In, class Out>
__global__ void __launch_bounds__(kThreads) scan_step_kernel(ScanKernelParams p) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= p.b * p.e) return;
  const int64_t bi = i / p.e, c = i % p.e, n = p.n;
  const float u = at<In>(p.u, bi, c);
  float delta = at<In>(p.dt, bi, c) + (p.dt_bias != nullptr ? p.dt_bias[c] : 0.0f);
  if (p.dt_softplus) delta = delta > 20.0f ? delta : log1pf(expf(delta));
  const float du = delta * u;
  const float* A = p.A + c * n;
  const float* h_in = p.state_in != nullptr ? p.state_in + i * n : nullptr;
  float* h_out = p.state_out != nullptr ? p.state_out + i * n : nullptr;
  float y = 0.0f;
  for (int64_t s = 0; s < n; ++s) {
    const float h0 = h_in != nullptr ? h_in[s] : 0.0f;
    const float h = expf(delta * A[s]) * h0 + du * at<In>(p.B, bi, s);
    y += h * at<In>(p.C, bi, s);
    if (h_out != nullptr) h_out[s] = h;
  }
  if (p.D != nullptr) y += p.D[c] * u;
  if (p.z.p != nullptr) {
    const float z = at<In>(p.z, bi, c);
    y *= z / (1.0f + expf(-z));
  }
  static_cast<Out*>(p.y.p)[bi * p.y.sb + c] = from_f32<Out>(y);
}

template <class In>
void launch(const ScanKernelParams& p, cudaStream_t stream) {
  const unsigned blocks = unsigned((p.b * p.e + kThreads - 1) / kThreads);
  if (p.y_f32)
    scan_step_kernel<In, float><<<blocks, kThreads, 0, stream>>>(p);
  else
    scan_step_kernel<In, In><<<blocks, kThreads, 0, stream>>>(p);
  CUDA_CHECK_LAUNCH("selective_scan_forward (single step)", stream);
}

}  // namespace

void scan_step_kernel_launch(const ScanKernelParams& p, cudaStream_t stream) {
  if (p.b == 0 || p.e == 0) return;
  switch (p.in_dtype) {
    case DType::f32: launch<float>(p, stream); break;
    case DType::bf16: launch<__nv_bfloat16>(p, stream); break;
    case DType::f16: launch<__half>(p, stream); break;
  }
}

}  // namespace mambacpp::cuda
