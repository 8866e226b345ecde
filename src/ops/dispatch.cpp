// The dispatchers' shared checks (dispatch.h).
#include "ops/dispatch.h"

#include "core/error.h"

namespace mambacpp::dispatch {

Device common_device(const char* op, std::span<const Named> tensors) {
  const Named* first = nullptr;
  for (const Named& t : tensors) {
    if (!t.second->defined()) continue;
    if (first && t.second->device != first->second->device)
      fail("{}: {} is on {} but {} is on {}", op, t.first, device_name(t.second->device), first->first,
           device_name(first->second->device));
    if (!first) first = &t;
  }
  const Device dev = first ? first->second->device : Device::cpu;
#ifndef MAMBACPP_HAS_CUDA
  if (dev == Device::cuda)
    fail("{}: {} is on cuda, but this build of mambacpp has no CUDA support; rebuild with nvcc available "
         "(MAMBACPP_CUDA=ON)",
         op, first->first);
#endif
  return dev;
}

void require_cuda_support(const char* op, bool supported, const std::string& why) {
  MAMBA_CHECK(supported, "{}: the CUDA implementation does not handle this call: {}", op, why);
}

void round_rows(const Tensor& dst, const float* src, int64_t sb, int64_t sl) {
  const size_t esize = dtype_size(dst.dtype);
  for (int64_t bi = 0; bi < dst.shape[0]; ++bi)
    for (int64_t t = 0; t < dst.shape[1]; ++t)
      convert_from_f32(static_cast<char*>(dst.data) + size_t(bi * dst.stride[0] + t * dst.stride[1]) * esize,
                       dst.dtype, src + bi * sb + t * sl, size_t(dst.shape[2]));
}

std::vector<float> widen_rows(const Tensor& src) {
  const int64_t b = src.shape[0], l = src.shape[1], e = src.shape[2];
  const size_t esize = dtype_size(src.dtype);
  std::vector<float> out(size_t(b * l * e));
  for (int64_t bi = 0; bi < b; ++bi)
    for (int64_t t = 0; t < l; ++t)
      convert_to_f32(out.data() + (bi * l + t) * e, static_cast<const char*>(src.data) +
                                                        size_t(bi * src.stride[0] + t * src.stride[1]) * esize,
                     src.dtype, size_t(e));
  return out;
}

}  // namespace mambacpp::dispatch
