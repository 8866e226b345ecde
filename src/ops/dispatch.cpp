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

}  // namespace mambacpp::dispatch
