// selective_scan_backward on the GPU (cuda_scan_backward.h): checks what is particular to the CUDA kernel, fills
// its parameters and runs scan_backward_kernel.cu on the Context's stream with the Context's scratch memory.
#include <array>
#include <string>
#include <tuple>
#include <utility>

#include "core/cuda/cuda_state.h"
#include "core/error.h"
#include "ops/cuda/cuda_scan_backward.h"
#include "ops/cuda/scan_backward_kernel.h"

namespace mambacpp {
namespace {

using Named = std::pair<const char*, const Tensor*>;

bool refuse(std::string* why, std::string msg) {
  if (why != nullptr) *why = std::move(msg);
  return false;
}

cuda::GradSeq seq(const Tensor& t) { return {t.defined() ? t.f32() : nullptr, t.stride[0], t.stride[1]}; }

float* data_or_null(const Tensor& t) { return t.defined() ? t.f32() : nullptr; }

// Checks the CUDA-specific conditions and fills the kernel's parameters.
bool make_params(const ScanGradArgs& a, cuda::ScanGradKernelParams* p, std::string* why) {
  const auto all = a.named();
  for (const auto& [name, t] : all) {
    if (!t->defined()) continue;
    if (t->device != Device::cuda)
      return refuse(why, fmt::format("{} is on {}; the CUDA selective scan backward needs every tensor on cuda",
                                     name, device_name(t->device)));
    const bool may_be_half = t == &a.u || t == &a.ddt || t == &a.dz;
    if (t->dtype != DType::f32 && !(may_be_half && (t->dtype == DType::bf16 || t->dtype == DType::f16)))
      return refuse(why, fmt::format("{} is {}; the CUDA selective scan backward supports f32 only (and bf16 or f16 "
                                     "for u, ddt and dz)",
                                     name, dtype_name(t->dtype)));
  }
  if (a.u.ndim != 3) return refuse(why, fmt::format("u must have shape [b, l, e], got {}", a.u.shape_str()));
  if (a.A.ndim != 2) return refuse(why, fmt::format("A must have shape [e, n], got {}", a.A.shape_str()));
  const int64_t b = a.u.shape[0], l = a.u.shape[1], e = a.u.shape[2], n = a.A.shape[1];
  // B and C: (b, l, n) per token, or (e, n) per channel (time-invariant) with dB / dC (e, n) added to.
  const bool B_lti = a.B.ndim == 2, C_lti = a.C.ndim == 2;
  const std::array<std::pair<Named, int64_t>, 11> seqs{{{{"u", &a.u}, e},
                                                        {{"dt", &a.dt}, e},
                                                        {{"dy", &a.dy}, e},
                                                        {{"z", &a.z}, e},
                                                        {{"du", &a.du}, e},
                                                        {{"ddt", &a.ddt}, e},
                                                        {{"dz", &a.dz}, e},
                                                        {{"B", &a.B}, n},
                                                        {{"C", &a.C}, n},
                                                        {{"dB", &a.dB}, n},
                                                        {{"dC", &a.dC}, n}}};
  for (const auto& [named, k] : seqs) {
    const Tensor& t = *named.second;
    if (!t.defined()) continue;
    if ((B_lti && (&t == &a.B || &t == &a.dB)) || (C_lti && (&t == &a.C || &t == &a.dC))) continue;
    if (t.ndim != 3 || t.shape[0] != b || t.shape[1] != l || t.shape[2] != k)
      return refuse(why, fmt::format("{} must have shape [{}, {}, {}], got {}", named.first, b, l, k,
                                     t.shape_str()));
    if (k > 1 && t.stride[2] != 1)
      return refuse(why, fmt::format("{} must have a contiguous last dimension (stride {})", named.first,
                                     t.stride[2]));
    if (t.stride[0] < 0 || t.stride[1] < 0) return refuse(why, fmt::format("{} has a negative stride", named.first));
  }
  for (const auto& [name, t] : {Named{"A", &a.A}, Named{"D", &a.D}, Named{"dt_bias", &a.dt_bias},
                                Named{"state_in", &a.state_in}, Named{"dA", &a.dA}, Named{"dD", &a.dD},
                                Named{"ddt_bias", &a.ddt_bias}, Named{"dstate_in", &a.dstate_in},
                                Named{"dstate_out", &a.dstate_out}})
    if (t->defined() && !t->is_contiguous()) return refuse(why, fmt::format("{} must be contiguous", name));
  for (const auto& [lti, name, t] : {std::tuple{B_lti, "B", &a.B}, std::tuple{B_lti, "dB", &a.dB},
                                     std::tuple{C_lti, "C", &a.C}, std::tuple{C_lti, "dC", &a.dC}}) {
    if (!lti || !t->defined()) continue;
    if (t->ndim != 2 || t->shape[0] != e || t->shape[1] != n || !t->is_contiguous())
      return refuse(why, fmt::format("{} (time-invariant) must be a contiguous [{}, {}], got {}", name, e, n,
                                     t->shape_str()));
  }

  p->b = b, p->l = l, p->e = e, p->n = n;
  p->du = seq(a.du);
  p->ddt = {static_cast<float*>(a.ddt.data), a.ddt.stride[0], a.ddt.stride[1]};
  p->ddt_dtype = a.ddt.dtype;
  p->dz = {static_cast<float*>(a.dz.data), a.dz.stride[0], a.dz.stride[1]};
  p->dz_dtype = a.dz.defined() ? a.dz.dtype : DType::f32;
  p->dy = seq(a.dy), p->dt = seq(a.dt), p->z = seq(a.z);
  p->u = {static_cast<float*>(a.u.data), a.u.stride[0], a.u.stride[1]};
  p->u_dtype = a.u.dtype;
  if (B_lti)
    p->B_lti = a.B.f32(), p->dB_lti = data_or_null(a.dB);
  else
    p->B = seq(a.B), p->dB = seq(a.dB);
  if (C_lti)
    p->C_lti = a.C.f32(), p->dC_lti = data_or_null(a.dC);
  else
    p->C = seq(a.C), p->dC = seq(a.dC);
  p->dA = data_or_null(a.dA), p->dD = data_or_null(a.dD), p->ddt_bias = data_or_null(a.ddt_bias);
  p->dstate_in = data_or_null(a.dstate_in), p->dstate_out = data_or_null(a.dstate_out);
  p->A = data_or_null(a.A), p->D = data_or_null(a.D), p->dt_bias = data_or_null(a.dt_bias);
  p->state_in = data_or_null(a.state_in);
  if (a.chunk_states.defined()) {
    const Tensor& t = a.chunk_states;
    if (t.ndim != 4 || t.shape[0] != b || t.shape[1] != scan_state_count(l) || t.shape[2] != n || t.shape[3] != e ||
        !t.is_contiguous())
      return refuse(why, fmt::format("chunk_states must be a contiguous [{}, {}, {}, {}], got {}", b,
                                     scan_state_count(l), n, e, t.shape_str()));
    p->chunk_states = t.f32();
  }
  p->dt_softplus = a.dt_softplus;
  if (p->z.p != nullptr && p->dz.p == nullptr) return refuse(why, "dz must be given exactly when z is");
  std::string kernel_why;
  if (!cuda::scan_backward_kernel_supports(*p, &kernel_why)) return refuse(why, kernel_why);
  return true;
}

}  // namespace

bool selective_scan_backward_cuda_supports(const ScanGradArgs& args, std::string* why) {
  cuda::ScanGradKernelParams p;
  return make_params(args, &p, why);
}

void selective_scan_backward_cuda(const ScanGradArgs& args, Context& ctx) {
  cuda::ScanGradKernelParams p;
  std::string why;
  MAMBA_CHECK(make_params(args, &p, &why), "selective_scan_backward (cuda): {}", why);
  if (p.b == 0 || p.e == 0) return;
  CudaState& cs = cuda_state(ctx);
  void* scratch = cs.scratch(cuda::scan_backward_scratch_bytes(p));
  cuda::scan_backward_kernel_launch(p, scratch, cs.stream);
}

}  // namespace mambacpp
