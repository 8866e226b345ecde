// Helpers of the Tensor-level CUDA ops: a tensor seen as rows of its last dimension, and the check that every
// defined tensor of a call lives on the GPU. Host code only (uses std::string).
#pragma once

#include <cstdint>
#include <initializer_list>
#include <string>
#include <utility>

#include "core/tensor.h"

namespace mambacpp::cuda {

struct Rows {
  int64_t rows = 0, cols = 0, ld = 0;  // ld: elements from one row to the next
};

// A tensor (…, c) whose leading dimensions collapse into one row stride (checked by the op dispatchers).
inline Rows rows_of(const Tensor& t) {
  Rows r;
  r.cols = t.ndim > 0 ? t.shape[t.ndim - 1] : 1;
  r.rows = 1;
  r.ld = r.cols;
  bool found = false;
  for (int d = t.ndim - 2; d >= 0; --d) {
    r.rows *= t.shape[d];
    if (t.shape[d] != 1 && !found) r.ld = t.stride[d], found = true;
  }
  return r;
}

// True when every defined tensor is on cuda; otherwise sets *why naming the first that is not.
inline bool on_cuda(std::initializer_list<std::pair<const char*, const Tensor*>> tensors, std::string* why) {
  for (const auto& [name, t] : tensors)
    if (t->defined() && t->device != Device::cuda) {
      if (why != nullptr) *why = std::string(name) + " is on " + device_name(t->device) + ", not cuda";
      return false;
    }
  return true;
}

}  // namespace mambacpp::cuda
