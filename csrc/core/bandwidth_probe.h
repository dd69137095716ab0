// Measures this machine's memory read bandwidth, the ceiling of decode speed
// (each token reads every weight once): the benchmark's roofline.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "core/huge_pages.h"
#include "core/thread_pool.h"

namespace bluelm {

// A buffer of `bytes` (on huge pages, written once by the threads that read
// it) and a pool of n_threads to sweep it. Kept across sweeps so a benchmark
// can probe between decode steps without a fresh allocation each time (the
// host's bandwidth changes within seconds on a VM).
class ReadProbe {
 public:
  ReadProbe(size_t bytes, int n_threads);
  // Best of `passes` timed sweeps, in bytes per second.
  double best_of(int passes);

 private:
  size_t n_;  // 64-bit words
  std::unique_ptr<uint64_t, HugeFree> buf_;
  ThreadPool pool_;
  std::vector<uint64_t> sink_;
};

// Best of `passes` timed sweeps reading a `bytes` buffer split over n_threads
// pool threads, in bytes per second. The buffer is allocated and written once.
double read_bandwidth(size_t bytes, int n_threads, int passes);

// Memory that exists elsewhere (a model's weights), read as decode reads it: a
// pool job per group of spans, in order, each group's bytes split evenly over
// the threads. No arithmetic, so it gives what those pages, in that order and
// with a barrier between jobs, allow: a decode's ceiling there.
class SpanProbe {
 public:
  struct Span {
    const void* data;
    size_t bytes;
  };
  SpanProbe(std::vector<std::vector<Span>> jobs, int n_threads);
  // Best of `passes` sweeps of every job, in bytes per second.
  double best_of(int passes);
  size_t bytes() const { return total_; }

 private:
  std::vector<std::vector<Span>> jobs_;
  size_t total_ = 0;
  ThreadPool pool_;
  std::vector<uint64_t> sink_;
};

}  // namespace bluelm
