// What every op dispatcher (ops.cpp, ops_backward.cpp, ops_train.cpp) checks before it routes a call: that the
// defined tensors share one device (and that a cuda tensor meets a build with the CUDA backend), and that the
// CUDA implementation handles the call; and the CPU form of an output asked for, or an input held, in half
// precision. Internal to src/ops.
#pragma once

#include <initializer_list>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "core/tensor.h"

namespace mambacpp::dispatch {

using Named = std::pair<const char*, const Tensor*>;

// The device shared by all defined tensors (cpu when none is defined); an Error naming the op and two of the
// tensors if they differ, or naming the op when it is cuda in a build without the CUDA backend.
Device common_device(const char* op, std::span<const Named> tensors);
inline Device common_device(const char* op, std::initializer_list<Named> tensors) {
  return common_device(op, std::span<const Named>(tensors.begin(), tensors.size()));
}

// Throws an Error naming the op and the CUDA implementation's limit (`why`) when `supported` is false.
void require_cuda_support(const char* op, bool supported, const std::string& why);

// Whether t is defined and held in bf16 or f16.
inline bool is_half(const Tensor& t) { return t.defined() && (t.dtype == DType::bf16 || t.dtype == DType::f16); }

// t as if it were f32: a half tensor's shape and strides are checked by the rules of an f32 one.
inline Tensor as_f32_shape(Tensor t) {
  t.dtype = DType::f32;
  return t;
}

// dst (b, l, e) in bf16 or f16, with its own strides = the f32 rows at src, row (bi, t) at src + bi·sb + t·sl,
// each rounded to nearest even: how a CPU op writes an output that a product reads in half precision.
void round_rows(const Tensor& dst, const float* src, int64_t sb, int64_t sl);

// src (b, l, e) in bf16 or f16, with its own strides, widened to f32 (exact) into a contiguous (b, l, e) vector:
// how a CPU op reads an input held in half precision.
std::vector<float> widen_rows(const Tensor& src);

}  // namespace mambacpp::dispatch
