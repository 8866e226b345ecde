// Embedding lookup on the CPU (see ops.h and cpu_ops.h): each output row is one table row converted to f32.
#include <algorithm>

#include "ops/cpu/cpu_ops.h"
#include "ops/cpu/simd.h"

namespace mambacpp::cpu {

void embedding(MatF32 out, const int32_t* ids, MatAny table, int threads) {
  const int64_t d = out.cols;
  const size_t elem = dtype_size(table.dtype);
  const bool parallel = out.rows * d >= (int64_t(1) << 15);
#pragma omp parallel for num_threads(threads) schedule(static) if (parallel)
  for (int64_t r = 0; r < out.rows; ++r) {
    const void* src = static_cast<const char*>(table.p) + size_t(ids[r]) * size_t(table.ld) * elem;
    float* dst = out.row(r);
    for (int64_t c = 0; c < d; c += kLanes) {
      const int count = int(std::min<int64_t>(kLanes, d - c));
      load_as_f32(src, table.dtype, c, count).store_partial(dst + c, count);
    }
  }
}

}  // namespace mambacpp::cpu
