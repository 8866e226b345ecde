// selective_scan_forward on the GPU (see cuda_ops.h): checks the Tensors, then runs the fused kernel of
// scan_kernel.cu on the Context's stream.
#include <string>
#include <utility>

#include "core/cuda/cuda_state.h"
#include "core/error.h"
#include "ops/cuda/cuda_ops.h"
#include "ops/cuda/scan_kernel.h"

namespace mambacpp {
namespace {

// Sets *why (when given) and returns false.
bool refuse(std::string* why, std::string msg) {
  if (why != nullptr) *why = std::move(msg);
  return false;
}

bool has_shape(const Tensor& t, std::initializer_list<int64_t> dims) {
  if (t.ndim != int(dims.size())) return false;
  int i = 0;
  for (int64_t d : dims)
    if (t.shape[i++] != d) return false;
  return true;
}

std::string dims_str(std::initializer_list<int64_t> dims) {
  std::string s = "[";
  int i = 0;
  for (int64_t d : dims) s += (i++ ? ", " : "") + std::to_string(d);
  return s + "]";
}

// A (b, l, k) sequence tensor of dtype `dt` with a contiguous last dimension.
bool check_seq(const char* name, const Tensor& t, DType dt, int64_t b, int64_t l, int64_t k, std::string* why) {
  if (!has_shape(t, {b, l, k}))
    return refuse(why, fmt::format("{} must have shape {}, got {}", name, dims_str({b, l, k}), t.shape_str()));
  if (t.dtype != dt)
    return refuse(why, fmt::format("{} is {}, but dt is {}; dt, B, C and z must share one dtype (and u too, or it "
                                   "is bf16 or f16 with f32 others)",
                                   name, dtype_name(t.dtype), dtype_name(dt)));
  if (k > 1 && t.stride[2] != 1)
    return refuse(why, fmt::format("{} must have a contiguous last dimension (stride {})", name, t.stride[2]));
  return true;
}

// An f32 contiguous tensor of the given shape.
bool check_f32(const char* name, const Tensor& t, std::initializer_list<int64_t> dims, std::string* why) {
  if (!has_shape(t, dims))
    return refuse(why, fmt::format("{} must have shape {}, got {}", name, dims_str(dims), t.shape_str()));
  if (t.dtype != DType::f32) return refuse(why, fmt::format("{} must be f32, got {}", name, dtype_name(t.dtype)));
  if (!t.is_contiguous()) return refuse(why, fmt::format("{} must be contiguous", name));
  return true;
}

cuda::SeqIn seq_in(const Tensor& t) { return {t.data, t.stride[0], t.stride[1]}; }

// Checks the arguments and fills the kernel's parameters.
bool make_params(const ScanArgs& a, cuda::ScanKernelParams* p, std::string* why) {
  const auto all = a.named();
  for (const auto& [name, t] : all)
    if (t->defined() && t->device != Device::cuda)
      return refuse(why, fmt::format("{} is on {}; the CUDA selective scan needs every tensor on cuda", name,
                                     device_name(t->device)));
  // A required tensor may have no data only when its shape has no elements (l = 0, say).
  for (const auto& [name, t] : {std::pair{"y", &a.y}, std::pair{"u", &a.u}, std::pair{"dt", &a.dt},
                                std::pair{"A", &a.A}, std::pair{"B", &a.B}, std::pair{"C", &a.C}})
    if (!t->defined() && !(t->ndim > 0 && t->numel() == 0))
      return refuse(why, fmt::format("{} is required but undefined", name));
  if (a.u.ndim != 3) return refuse(why, fmt::format("u must have shape [b, l, e], got {}", a.u.shape_str()));
  if (a.A.ndim != 2) return refuse(why, fmt::format("A must have shape [e, n], got {}", a.A.shape_str()));
  const int64_t b = a.u.shape[0], l = a.u.shape[1], e = a.u.shape[2], n = a.A.shape[1];
  // dt, B, C and z share one dtype; u has it too, or is bf16 or f16 beside f32 ones (widened as it is read).
  const DType in = a.dt.dtype, u_dtype = a.u.dtype;
  if (u_dtype != in && !(in == DType::f32 && (u_dtype == DType::bf16 || u_dtype == DType::f16)))
    return refuse(why, fmt::format("u is {} and dt is {}; u must be {} too, or bf16 or f16 with f32 dt, B, C and z",
                                   dtype_name(u_dtype), dtype_name(in), dtype_name(in)));
  // B and C: (b, l, n) per token, or (e, n) f32 per channel (time-invariant).
  const bool B_lti = a.B.ndim == 2, C_lti = a.C.ndim == 2;
  if (!check_seq("u", a.u, u_dtype, b, l, e, why) || !check_seq("dt", a.dt, in, b, l, e, why) ||
      !(B_lti ? check_f32("B (time-invariant)", a.B, {e, n}, why) : check_seq("B", a.B, in, b, l, n, why)) ||
      !(C_lti ? check_f32("C (time-invariant)", a.C, {e, n}, why) : check_seq("C", a.C, in, b, l, n, why)) ||
      (a.z.defined() && !check_seq("z", a.z, in, b, l, e, why)) || !check_f32("A", a.A, {e, n}, why) ||
      (a.D.defined() && !check_f32("D", a.D, {e}, why)) ||
      (a.dt_bias.defined() && !check_f32("dt_bias", a.dt_bias, {e}, why)) ||
      (a.state_in.defined() && !check_f32("state_in", a.state_in, {b, e, n}, why)) ||
      (a.state_out.defined() && !check_f32("state_out", a.state_out, {b, e, n}, why)) ||
      (a.chunk_states.defined() && !check_f32("chunk_states", a.chunk_states, {b, scan_state_count(l), n, e}, why)))
    return false;
  if (a.y.dtype != in && a.y.dtype != DType::f32 && in != DType::f32)
    return refuse(why, fmt::format("y is {}; it must be {} (the dtype of dt) or f32", dtype_name(a.y.dtype),
                                   dtype_name(in)));
  if (!check_seq("y", a.y, a.y.dtype, b, l, e, why)) return false;

  p->b = b, p->l = l, p->e = e, p->n = n;
  p->in_dtype = in;
  p->u_dtype = u_dtype;
  p->y_dtype = a.y.dtype;
  p->y = {a.y.data, a.y.stride[0], a.y.stride[1]};
  p->u = seq_in(a.u), p->dt = seq_in(a.dt);
  if (B_lti)
    p->B_lti = a.B.f32();
  else
    p->B = seq_in(a.B);
  if (C_lti)
    p->C_lti = a.C.f32();
  else
    p->C = seq_in(a.C);
  if (a.z.defined()) p->z = seq_in(a.z);
  p->A = a.A.f32();
  p->D = a.D.defined() ? a.D.f32() : nullptr;
  p->dt_bias = a.dt_bias.defined() ? a.dt_bias.f32() : nullptr;
  p->state_in = a.state_in.defined() ? a.state_in.f32() : nullptr;
  p->state_out = a.state_out.defined() ? a.state_out.f32() : nullptr;
  p->chunk_states = a.chunk_states.defined() ? a.chunk_states.f32() : nullptr;
  p->dt_softplus = a.dt_softplus;
  std::string kernel_why;
  if (!cuda::scan_kernel_supports(*p, &kernel_why)) return refuse(why, kernel_why);
  return true;
}

}  // namespace

bool selective_scan_cuda_supports(const ScanArgs& args, std::string* why) {
  cuda::ScanKernelParams p;
  return make_params(args, &p, why);
}

void selective_scan_forward_cuda(const ScanArgs& args, Context& ctx) {
  cuda::ScanKernelParams p;
  std::string why;
  MAMBA_CHECK(make_params(args, &p, &why), "selective_scan_forward (cuda): {}", why);
  cuda::scan_kernel_launch(p, cuda_state(ctx).stream);
}

}  // namespace mambacpp
