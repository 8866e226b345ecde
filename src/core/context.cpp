// Context (see context.h).
#include "core/context.h"

#include <cblas.h>
#include <omp.h>
#include <sched.h>

#include <thread>

#include "core/error.h"

namespace mambacpp {

int hardware_threads() {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) return CPU_COUNT(&set);
  const unsigned n = std::thread::hardware_concurrency();
  return n ? int(n) : 1;
}

Context::Context(int threads) { set_threads(threads); }

void Context::set_threads(int threads) {
  MAMBA_CHECK(threads >= 0 && threads <= 4096, "--threads: {} is not a valid thread count (1..4096, 0 = all)",
              threads);
  threads_ = threads == 0 ? hardware_threads() : threads;
  omp_set_num_threads(threads_);
  openblas_set_num_threads(threads_);
}

}  // namespace mambacpp
