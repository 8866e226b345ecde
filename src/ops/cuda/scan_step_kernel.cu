// The selective scan for a single step (l = 1), as decoding runs it (interface: scan_kernel.h; mathematics:
// ops.h). The chunked kernel of scan_kernel.cu walks whole chunks of steps, so at l = 1 most of its work is
// padding. Here a group of G threads (G = n rounded up to a power of two, at most 32, so a group never straddles
// a warp) owns one (batch row, channel); thread g updates states g, g + G, …:
//   h[s] = exp(δ·A[s])·h[s] + δ·B[s]·u,   y = (Σ_s h[s]·C[s] + D·u)·silu(z),
// and the group adds its partial sums with shuffles. B and C are read by every group of a batch row (they stay
// in L1); the state is read and written once, coalesced. With LTI (f32 only), a time-invariant B or C (B_lti,
// C_lti, either or both) is read at the group's channel instead: B_lti[c, s]. With f32 inputs u may be bf16 or
// f16 (read and widened by the f32 kernels).
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <type_traits>

#include "core/cuda/check.h"
#include "ops/cuda/scan_kernel.h"
#include "ops/cuda/scan_math.cuh"

namespace mambacpp::cuda {
namespace {

using namespace scan_math;

constexpr int kThreads = 128;

template <class In>
__device__ __forceinline__ float at(const SeqIn& s, int64_t bi, int64_t k) {
  return to_f32(static_cast<const In*>(s.p)[bi * s.sb + k]);
}

// u at (bi, c): in In, or with f32 inputs a bf16 or f16 u (u_dtype), widened to f32.
template <class In>
__device__ __forceinline__ float u_at(const ScanKernelParams& p, int64_t bi, int64_t c) {
  if constexpr (std::is_same_v<In, float>) {
    if (p.u_dtype == DType::bf16) return at<__nv_bfloat16>(p.u, bi, c);
    if (p.u_dtype == DType::f16) return at<__half>(p.u, bi, c);
  }
  return at<In>(p.u, bi, c);
}

// B or C at state s: the time-invariant row `lti` (B_lti[c, ·]) where given, else the sequence at batch row bi.
template <class In, bool LTI>
__device__ __forceinline__ float b_or_c(const float* lti, const SeqIn& seq, int64_t bi, int64_t s) {
  if constexpr (LTI)
    if (lti != nullptr) return lti[s];
  return at<In>(seq, bi, s);
}

template <class In, class Out, bool LTI>
__global__ void __launch_bounds__(kThreads) scan_step_kernel(ScanKernelParams p, int group) {
  const int64_t t = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t i = t / group, g = t % group;
  const bool valid = i < p.b * p.e;
  const int64_t bi = valid ? i / p.e : 0, c = valid ? i % p.e : 0, n = p.n;
  float y = 0.0f, u = 0.0f;
  if (valid) {
    u = u_at<In>(p, bi, c);
    float delta = at<In>(p.dt, bi, c) + (p.dt_bias != nullptr ? p.dt_bias[c] : 0.0f);
    if (p.dt_softplus) delta = delta > 20.0f ? delta : log1pf(expf(delta));
    const float du = delta * u;
    const float* A = p.A + c * n;
    const float* B_lti = p.B_lti != nullptr ? p.B_lti + c * n : nullptr;
    const float* C_lti = p.C_lti != nullptr ? p.C_lti + c * n : nullptr;
    const float* h_in = p.state_in != nullptr ? p.state_in + i * n : nullptr;
    float* h_out = p.state_out != nullptr ? p.state_out + i * n : nullptr;
    for (int64_t s = g; s < n; s += group) {
      const float h0 = h_in != nullptr ? h_in[s] : 0.0f;
      const float h = expf(delta * A[s]) * h0 + du * b_or_c<In, LTI>(B_lti, p.B, bi, s);
      y += h * b_or_c<In, LTI>(C_lti, p.C, bi, s);
      if (h_out != nullptr) h_out[s] = h;
    }
  }
  for (int off = group / 2; off > 0; off >>= 1) y += __shfl_xor_sync(0xffffffffu, y, off);
  if (!valid || g != 0) return;
  if (p.D != nullptr) y += p.D[c] * u;
  if (p.z.p != nullptr) {
    const float z = at<In>(p.z, bi, c);
    y *= z / (1.0f + expf(-z));
  }
  static_cast<Out*>(p.y.p)[bi * p.y.sb + c] = from_f32<Out>(y);
}

template <class In>
void launch(const ScanKernelParams& p, cudaStream_t stream) {
  int group = 1;
  while (group < 32 && group < p.n) group *= 2;
  const unsigned blocks = unsigned((p.b * p.e * group + kThreads - 1) / kThreads);
  // y: f32, the inputs' dtype, or (f32 inputs only) bf16 or f16.
  const auto run = [&]<class Out, bool LTI>() { scan_step_kernel<In, Out, LTI><<<blocks, kThreads, 0, stream>>>(p, group); };
  const bool lti = p.B_lti != nullptr || p.C_lti != nullptr;  // f32 sequences (scan_kernel_supports)
  if (p.y_dtype == DType::f32)
    lti ? run.template operator()<float, true>() : run.template operator()<float, false>();
  else if (p.y_dtype == DType::bf16)
    lti ? run.template operator()<__nv_bfloat16, true>() : run.template operator()<__nv_bfloat16, false>();
  else
    lti ? run.template operator()<__half, true>() : run.template operator()<__half, false>();
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
