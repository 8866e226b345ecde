// Backward of the embedding lookup on the CPU (see ops_backward.h): a scatter-add of the output rows into the
// table's gradient. Column blocks are spread over the threads and each walks the rows in order, so every table
// element receives its additions in row order whatever the thread count.
#include <algorithm>

#include "ops/cpu/cpu_backward.h"
#include "ops/cpu/simd.h"

namespace mambacpp::cpu {

void embedding_backward(MatF32 dtable, MatF32 dout, const int32_t* ids, int threads) {
  const int64_t d = dout.cols, blocks = (d + kLanes - 1) / kLanes;
  const bool parallel = dout.rows * d >= (int64_t(1) << 15);
#pragma omp parallel for num_threads(threads) schedule(static) if (parallel)
  for (int64_t blk = 0; blk < blocks; ++blk) {
    const int64_t c0 = blk * kLanes;
    const int count = int(std::min<int64_t>(kLanes, d - c0));
    for (int64_t r = 0; r < dout.rows; ++r) {
      float* dst = dtable.row(ids[r]) + c0;
      (Vec::load_partial(dst, count) + Vec::load_partial(dout.row(r) + c0, count)).store_partial(dst, count);
    }
  }
}

}  // namespace mambacpp::cpu
