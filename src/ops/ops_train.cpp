// The dispatchers of ops_train.h: each validates its tensors (defined unless empty, contiguous, dtype, matching
// element counts, one device), throwing mambacpp::Error that names the op and the argument, then runs the CPU
// loops (cpu/cpu_train.h) or the CUDA kernels (cuda/train_kernels.h) on the Context's stream.
#include "ops/ops_train.h"

#include <cmath>
#include <initializer_list>
#include <utility>
#include <vector>

#include "core/error.h"
#include "ops/dispatch.h"
#include "ops/cpu/cpu_train.h"
#ifdef MAMBACPP_HAS_CUDA
#include "core/cuda/check.h"
#include "core/cuda/cuda_state.h"
#include "ops/cuda/infer_kernels.h"
#include "ops/cuda/train_kernels.h"
#endif

namespace mambacpp {
namespace {

using dispatch::Named;

// Every tensor: defined (or of no elements), contiguous, and on one device, which is returned.
Device common_device(const char* op, std::initializer_list<Named> tensors) {
  for (const Named& t : tensors) {
    MAMBA_CHECK(t.second->defined() || (t.second->ndim > 0 && t.second->numel() == 0),
                "{}: {} is required but undefined", op, t.first);
    MAMBA_CHECK(t.second->is_contiguous(), "{}: {} (shape {}) must be contiguous", op, t.first,
                t.second->shape_str());
  }
  return dispatch::common_device(op, tensors);
}

void require_f32(const char* op, std::initializer_list<Named> tensors) {
  for (const Named& t : tensors)
    MAMBA_CHECK(t.second->dtype == DType::f32, "{}: {} must be f32, got {}", op, t.first,
                dtype_name(t.second->dtype));
}

// Every tensor has as many elements as the first.
void require_same_numel(const char* op, std::initializer_list<Named> tensors) {
  const Named& first = *tensors.begin();
  for (const Named& t : tensors)
    MAMBA_CHECK(t.second->numel() == first.second->numel(),
                "{}: {} (shape {}) must have as many elements as {} (shape {})", op, t.first, t.second->shape_str(),
                first.first, first.second->shape_str());
}

// The checks adamw_update and adamw_update_all share: every tensor's arrays (param, grad, m, v contiguous f32 of
// one numel; copy undefined or bf16/f16 of that numel) on one device, which is returned (cpu when no tensor has
// elements); the scalars.
Device check_adamw(const char* op, std::span<const AdamWTensor> tensors, const AdamWStep& s) {
  MAMBA_CHECK(s.bias_correction1 > 0 && s.bias_correction2 > 0,
              "{}: the bias corrections must be positive, got {} and {}", op, s.bias_correction1,
              s.bias_correction2);
  MAMBA_CHECK(std::isfinite(s.lr) && std::isfinite(s.weight_decay), "{}: lr = {} and weight_decay = {} must be finite",
              op, s.lr, s.weight_decay);
  Device dev = Device::cpu;
  size_t first = tensors.size();  // the first tensor with elements
  for (size_t i = 0; i < tensors.size(); ++i) {
    const AdamWTensor& t = tensors[i];
    const Device d = common_device(op, {{"param", &t.param}, {"grad", &t.grad}, {"m", &t.m}, {"v", &t.v}});
    require_f32(op, {{"param", &t.param}, {"grad", &t.grad}, {"m", &t.m}, {"v", &t.v}});
    require_same_numel(op, {{"param", &t.param}, {"grad", &t.grad}, {"m", &t.m}, {"v", &t.v}});
    if (t.copy.defined()) {
      MAMBA_CHECK(t.copy.dtype == DType::bf16 || t.copy.dtype == DType::f16, "{}: copy must be bf16 or f16, got {}",
                  op, dtype_name(t.copy.dtype));
      common_device(op, {{"param", &t.param}, {"copy", &t.copy}});
      require_same_numel(op, {{"param", &t.param}, {"copy", &t.copy}});
    }
    if (!t.param.defined()) continue;  // no elements: on no device
    if (first == tensors.size()) first = i, dev = d;
    MAMBA_CHECK(d == dev, "{}: tensor {} is on {}, tensor {} on {}", op, i, device_name(d), first, device_name(dev));
  }
  return dev;
}

void cpu_adamw(const AdamWTensor& t, const AdamWStep& s, Context& ctx) {
  cpu::adamw_update(t.param.f32(), t.grad.f32(), t.m.f32(), t.v.f32(), t.copy.defined() ? t.copy.data : nullptr,
                    t.copy.defined() ? t.copy.dtype : DType::f32, t.param.numel(), s, ctx.threads());
}

#ifdef MAMBACPP_HAS_CUDA
cuda::AdamWScalars adamw_scalars(const AdamWStep& s) {
  cuda::AdamWScalars c;
  c.step_size = float(s.lr / s.bias_correction1);
  c.sqrt_bc2 = float(std::sqrt(s.bias_correction2));
  c.beta1 = float(s.beta1), c.beta2 = float(s.beta2), c.eps = float(s.eps);
  c.one_minus_beta1 = 1.0f - c.beta1, c.one_minus_beta2 = 1.0f - c.beta2;
  c.grad_scale = s.grad_scale.accum, c.clip_scale = s.grad_scale.clip;
  return c;
}

cuda::AdamWTensorArgs adamw_args(const AdamWTensor& t, double weight_decay, const AdamWStep& s) {
  cuda::AdamWTensorArgs a;
  a.param = t.param.f32(), a.grad = t.grad.f32(), a.m = t.m.f32(), a.v = t.v.f32(), a.n = t.param.numel();
  if (t.copy.defined()) a.copy = t.copy.data, a.copy_dtype = t.copy.dtype;
  a.keep = float(1.0 - s.lr * weight_decay);
  return a;
}

void run_elementwise(cuda::ElementOp what, const Tensor& dst, const Tensor& a, const Tensor& b, float s,
                     Context& ctx) {
  cuda::ElementwiseParams p;
  p.op = what, p.dst = dst.data, p.dst_dtype = dst.dtype, p.a = a.f32(), p.b = b.f32(), p.s = s;
  p.n = dst.numel();
  cuda::elementwise_kernel_launch(p, cuda_state(ctx).stream);
}
#endif

}  // namespace

void fill_zero(Tensor t, Context& ctx) {
  constexpr const char* op = "fill_zero";
  [[maybe_unused]] const Device dev = common_device(op, {{"t", &t}});
  require_f32(op, {{"t", &t}});
#ifdef MAMBACPP_HAS_CUDA
  if (dev == Device::cuda) return run_elementwise(cuda::ElementOp::zero, t, {}, {}, 0, ctx);
#endif
  cpu::fill_zero(t.f32(), t.numel(), ctx.threads());
}

void add_into(Tensor dst, Tensor src, Context& ctx) {
  constexpr const char* op = "add_into";
  [[maybe_unused]] const Device dev = common_device(op, {{"dst", &dst}, {"src", &src}});
  require_f32(op, {{"dst", &dst}, {"src", &src}});
  require_same_numel(op, {{"dst", &dst}, {"src", &src}});
#ifdef MAMBACPP_HAS_CUDA
  if (dev == Device::cuda) return run_elementwise(cuda::ElementOp::add, dst, src, {}, 0, ctx);
#endif
  cpu::add_into(dst.f32(), src.f32(), dst.numel(), ctx.threads());
}

void add_product_into(Tensor dst, Tensor a, Tensor b, Context& ctx) {
  constexpr const char* op = "add_product_into";
  [[maybe_unused]] const Device dev = common_device(op, {{"dst", &dst}, {"a", &a}, {"b", &b}});
  require_f32(op, {{"dst", &dst}, {"a", &a}, {"b", &b}});
  require_same_numel(op, {{"dst", &dst}, {"a", &a}, {"b", &b}});
#ifdef MAMBACPP_HAS_CUDA
  if (dev == Device::cuda) return run_elementwise(cuda::ElementOp::add_product, dst, a, b, 0, ctx);
#endif
  cpu::add_product_into(dst.f32(), a.f32(), b.f32(), dst.numel(), ctx.threads());
}

void scale_inplace(Tensor t, float s, Context& ctx) {
  constexpr const char* op = "scale_inplace";
  [[maybe_unused]] const Device dev = common_device(op, {{"t", &t}});
  require_f32(op, {{"t", &t}});
#ifdef MAMBACPP_HAS_CUDA
  if (dev == Device::cuda) return run_elementwise(cuda::ElementOp::scale, t, {}, {}, s, ctx);
#endif
  cpu::scale_inplace(t.f32(), s, t.numel(), ctx.threads());
}

void neg_exp(Tensor dst, Tensor src, Context& ctx) {
  constexpr const char* op = "neg_exp";
  [[maybe_unused]] const Device dev = common_device(op, {{"dst", &dst}, {"src", &src}});
  require_f32(op, {{"dst", &dst}, {"src", &src}});
  require_same_numel(op, {{"dst", &dst}, {"src", &src}});
#ifdef MAMBACPP_HAS_CUDA
  if (dev == Device::cuda) return run_elementwise(cuda::ElementOp::neg_exp, dst, src, {}, 0, ctx);
#endif
  cpu::neg_exp(dst.f32(), src.f32(), dst.numel(), ctx.threads());
}

void copy_convert(Tensor dst, Tensor src, Context& ctx) {
  constexpr const char* op = "copy_convert";
  [[maybe_unused]] const Device dev = common_device(op, {{"dst", &dst}, {"src", &src}});
  require_f32(op, {{"src", &src}});
  require_same_numel(op, {{"dst", &dst}, {"src", &src}});
#ifdef MAMBACPP_HAS_CUDA
  if (dev == Device::cuda) return run_elementwise(cuda::ElementOp::convert, dst, src, {}, 0, ctx);
#endif
  cpu::copy_convert(dst.data, dst.dtype, src.f32(), dst.numel(), ctx.threads());
}

void copy_convert_rows(Tensor dst, Tensor src, Context& ctx) {
  constexpr const char* op = "copy_convert_rows";
  [[maybe_unused]] const Device dev = dispatch::common_device(op, {{"dst", &dst}, {"src", &src}});
  require_f32(op, {{"src", &src}});
  MAMBA_CHECK(dst.dtype == DType::bf16 || dst.dtype == DType::f16, "{}: dst must be bf16 or f16, got {}", op,
              dtype_name(dst.dtype));
  MAMBA_CHECK(dst.ndim == 2 && src.ndim == 2 && dst.shape[0] == src.shape[0] && dst.shape[1] == src.shape[1],
              "{}: dst (shape {}) and src (shape {}) must be matrices of one shape", op, dst.shape_str(),
              src.shape_str());
  for (const Named& t : {Named{"dst", &dst}, Named{"src", &src}}) {
    const Tensor& v = *t.second;
    MAMBA_CHECK(v.defined() || v.numel() == 0, "{}: {} is required but undefined", op, t.first);
    MAMBA_CHECK(v.shape[1] <= 1 || v.stride[1] == 1, "{}: {} (shape {}) must be contiguous in its last dimension", op,
                t.first, v.shape_str());
    MAMBA_CHECK(v.shape[0] <= 1 || v.stride[0] >= v.shape[1], "{}: {} (shape {}) has overlapping rows", op, t.first,
                v.shape_str());
  }
  const int64_t rows = src.shape[0], cols = src.shape[1];
  const int64_t ld_src = rows <= 1 ? cols : src.stride[0], ld_dst = rows <= 1 ? cols : dst.stride[0];
#ifdef MAMBACPP_HAS_CUDA
  if (dev == Device::cuda) {
    cuda::ConvertParams p;
    p.dst = dst.data, p.dst_dtype = dst.dtype, p.src = src.f32(), p.ld_src = ld_src, p.m = rows, p.c = cols;
    p.ld_dst = ld_dst;
    return cuda::convert_kernel_launch(p, cuda_state(ctx).stream);
  }
#endif
  for (int64_t r = 0; r < rows; ++r)
    cpu::copy_convert(static_cast<char*>(dst.data) + size_t(r * ld_dst) * dtype_size(dst.dtype), dst.dtype,
                      src.f32() + r * ld_src, cols, 1);
}

double sum_squares(Tensor t, float s, Context& ctx) {
  constexpr const char* op = "sum_squares";
  [[maybe_unused]] const Device dev = common_device(op, {{"t", &t}});
  require_f32(op, {{"t", &t}});
#ifdef MAMBACPP_HAS_CUDA
  if (dev == Device::cuda) {
    CudaState& cs = cuda_state(ctx);
    cuda::SumSquaresParams p;
    p.t = t.f32(), p.scale = s, p.n = t.numel();
    const int64_t partials = cuda::sum_squares_partials(p.n);
    p.result = static_cast<double*>(cs.scratch(size_t(partials + 1) * sizeof(double)));
    p.partials = p.result + 1;
    cuda::sum_squares_kernel_launch(p, cs.stream);
    double result = 0;
    CUDA_CHECK(cudaMemcpyAsync(&result, p.result, sizeof(double), cudaMemcpyDeviceToHost, cs.stream));
    cs.synchronize();
    return result;
  }
#endif
  return cpu::sum_squares(t.f32(), s, t.numel(), ctx.threads());
}

void adamw_update(Tensor param, Tensor grad, Tensor m, Tensor v, Tensor copy, const AdamWStep& s, Context& ctx) {
  const AdamWTensor t{param, grad, m, v, copy, true};
  [[maybe_unused]] const Device dev = check_adamw("adamw_update", {&t, 1}, s);
#ifdef MAMBACPP_HAS_CUDA
  if (dev == Device::cuda) {
    cuda::AdamWParams p;
    p.t = adamw_args(t, s.weight_decay, s), p.s = adamw_scalars(s);
    return cuda::adamw_kernel_launch(p, cuda_state(ctx).stream);
  }
#endif
  cpu_adamw(t, s, ctx);
}

void adamw_update_all(std::span<const AdamWTensor> tensors, const AdamWStep& s, Context& ctx) {
  if (tensors.empty()) return;
  [[maybe_unused]] const Device dev = check_adamw("adamw_update_all", tensors, s);
#ifdef MAMBACPP_HAS_CUDA
  if (dev == Device::cuda) {
    std::vector<cuda::AdamWTensorArgs> table;
    for (const AdamWTensor& t : tensors)
      if (t.param.numel() > 0) table.push_back(adamw_args(t, t.decay ? s.weight_decay : 0.0, s));
    CudaState& cs = cuda_state(ctx);
    void* device_table = cs.scratch(cuda::adamw_table_bytes(int64_t(table.size())));
    return cuda::adamw_all_kernel_launch(table.data(), int64_t(table.size()), adamw_scalars(s), device_table,
                                         cs.stream);
  }
#endif
  for (const AdamWTensor& t : tensors) {
    AdamWStep one = s;
    one.weight_decay = t.decay ? s.weight_decay : 0.0;
    cpu_adamw(t, one, ctx);
  }
}

}  // namespace mambacpp
