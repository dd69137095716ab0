// Measures this machine's memory read bandwidth, the ceiling of decode speed
// (each token reads every weight once): the benchmark's roofline.
#pragma once
#include <cstddef>

namespace bluelm {

// Best of `passes` timed sweeps reading a `bytes` buffer split over n_threads
// pool threads, in bytes per second. The buffer is allocated and written once.
double read_bandwidth(size_t bytes, int n_threads, int passes);

}  // namespace bluelm
