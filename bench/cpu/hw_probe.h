// Hardware ceilings measured on the spot, for the benchmarks' "fraction of the limit" columns: the memory
// read bandwidth and the f32 FMA peak, with a given number of threads.
#pragma once

namespace mambacpp::bench {

// Bytes per second streamed by a vectorised read-sum of a `bytes`-sized buffer (best of several passes).
double measure_read_bandwidth(int threads, double bytes = double(1 << 30));
// f32 floating-point operations per second (an FMA counts as 2) of independent FMA chains in registers.
double measure_fma_peak(int threads);

}  // namespace mambacpp::bench
