// ModelWeights::to_device (see weights.h): each tensor converted on the host to its stored dtype and copied into
// one Buffer of its own on the target device.
#include <vector>

#include "core/cuda/device_memory.h"
#include "model/weights.h"

namespace mambacpp {
namespace {

// Copies `src` (contiguous, on the host or a device) to a new Buffer on `device` in dtype `to`.
Tensor copy_tensor(const Tensor& src, Device device, DType to, std::vector<Buffer>& storage) {
  if (!src.defined()) return Tensor{};
  const size_t count = size_t(src.numel());
  std::vector<char> host(src.nbytes());
  copy_memory(host.data(), Device::cpu, src.data, src.device, host.size());
  std::vector<char> converted(count * dtype_size(to));
  if (to == src.dtype) {
    converted.swap(host);
  } else {
    std::vector<float> f32(count);
    convert_to_f32(f32.data(), host.data(), src.dtype, count);
    convert_from_f32(converted.data(), to, f32.data(), count);
  }
  storage.emplace_back(converted.size(), device);
  copy_memory(storage.back().data(), device, converted.data(), Device::cpu, converted.size());
  return Tensor(storage.back().data(), to, std::span<const int64_t>(src.shape.data(), size_t(src.ndim)), device);
}

}  // namespace

ModelWeights ModelWeights::to_device(Device device, DType dtype) const {
  ModelWeights out;
  out.config = config;
  out.matrix_dtype = dtype;
  auto& st = out.storage;
  const auto vec = [&](const Tensor& t) { return copy_tensor(t, device, DType::f32, st); };
  const auto mat = [&](const Tensor& t) { return copy_tensor(t, device, dtype, st); };
  out.embedding = mat(embedding);
  out.norm_f = vec(norm_f);
  out.lm_head = lm_head.data == embedding.data ? out.embedding : mat(lm_head);
  for (const LayerWeights& l : layers) {
    LayerWeights d;
    d.norm = vec(l.norm);
    d.in_proj = mat(l.in_proj);
    d.in_proj_bias = vec(l.in_proj_bias);
    d.conv_w = vec(l.conv_w);
    d.conv_b = vec(l.conv_b);
    d.x_proj = mat(l.x_proj);
    d.dt_proj = mat(l.dt_proj);
    d.dt_bias = vec(l.dt_bias);
    d.A_log = vec(l.A_log);
    d.A = vec(l.A);
    d.B = vec(l.B);
    d.C = vec(l.C);
    d.D = vec(l.D);
    d.out_proj = mat(l.out_proj);
    d.out_proj_bias = vec(l.out_proj_bias);
    out.layers.push_back(d);
  }
  return out;
}

}  // namespace mambacpp
