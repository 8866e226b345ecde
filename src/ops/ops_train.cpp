// The dispatchers of ops_train.h: each validates its tensors (defined unless empty, contiguous, dtype, matching
// element counts, one device), throwing mambacpp::Error that names the op and the argument, then runs the CPU
// loops (cpu/cpu_train.h) or the CUDA kernels (cuda/train_kernels.h) on the Context's stream.
#include "ops/ops_train.h"

#include <cmath>
#include <initializer_list>
#include <utility>

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

#ifdef MAMBACPP_HAS_CUDA
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

double sum_squares(Tensor t, Context& ctx) {
  constexpr const char* op = "sum_squares";
  [[maybe_unused]] const Device dev = common_device(op, {{"t", &t}});
  require_f32(op, {{"t", &t}});
#ifdef MAMBACPP_HAS_CUDA
  if (dev == Device::cuda) {
    CudaState& cs = cuda_state(ctx);
    cuda::SumSquaresParams p;
    p.t = t.f32(), p.n = t.numel();
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
  return cpu::sum_squares(t.f32(), t.numel(), ctx.threads());
}

void adamw_update(Tensor param, Tensor grad, Tensor m, Tensor v, const AdamWStep& s, Context& ctx) {
  constexpr const char* op = "adamw_update";
  [[maybe_unused]] const Device dev = common_device(op, {{"param", &param}, {"grad", &grad}, {"m", &m}, {"v", &v}});
  require_f32(op, {{"param", &param}, {"grad", &grad}, {"m", &m}, {"v", &v}});
  require_same_numel(op, {{"param", &param}, {"grad", &grad}, {"m", &m}, {"v", &v}});
  MAMBA_CHECK(s.bias_correction1 > 0 && s.bias_correction2 > 0,
              "{}: the bias corrections must be positive, got {} and {}", op, s.bias_correction1,
              s.bias_correction2);
  MAMBA_CHECK(std::isfinite(s.lr) && std::isfinite(s.weight_decay), "{}: lr = {} and weight_decay = {} must be finite",
              op, s.lr, s.weight_decay);
#ifdef MAMBACPP_HAS_CUDA
  if (dev == Device::cuda) {
    cuda::AdamWParams p;
    p.param = param.f32(), p.grad = grad.f32(), p.m = m.f32(), p.v = v.f32(), p.n = param.numel();
    p.keep = float(1.0 - s.lr * s.weight_decay);
    p.step_size = float(s.lr / s.bias_correction1);
    p.sqrt_bc2 = float(std::sqrt(s.bias_correction2));
    p.beta1 = float(s.beta1), p.beta2 = float(s.beta2), p.eps = float(s.eps);
    return cuda::adamw_kernel_launch(p, cuda_state(ctx).stream);
  }
#endif
  cpu::adamw_update(param.f32(), grad.f32(), m.f32(), v.f32(), param.numel(), s, ctx.threads());
}

}  // namespace mambacpp
