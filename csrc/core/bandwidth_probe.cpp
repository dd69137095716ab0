#include "core/bandwidth_probe.h"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <utility>

namespace bluelm {

namespace {
// Four independent 16-byte lanes (GCC/Clang vector extension, SSE2/NEON
// baseline) so the loop is bound by loads, not by one add chain.
typedef uint64_t v2u64 __attribute__((vector_size(16)));

uint64_t sum_words(const uint64_t* p, size_t n) {
  v2u64 a0 = {0, 0}, a1 = a0, a2 = a0, a3 = a0;
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    v2u64 v[4];
    std::memcpy(v, p + i, sizeof v);
    a0 += v[0];
    a1 += v[1];
    a2 += v[2];
    a3 += v[3];
  }
  const v2u64 a = a0 + a1 + a2 + a3;
  uint64_t s = a[0] + a[1];
  for (; i < n; ++i) {
    uint64_t w;
    std::memcpy(&w, p + i, sizeof w);
    s += w;
  }
  return s;
}
}  // namespace

ReadProbe::ReadProbe(size_t bytes, int n_threads)
    : n_(bytes / sizeof(uint64_t)),
      buf_(static_cast<uint64_t*>(alloc_huge(n_ * sizeof(uint64_t)))),
      pool_(n_threads),
      sink_(static_cast<size_t>(pool_.size()), 0) {
  // Each thread writes the part it reads later (first touch places the pages).
  uint64_t* buf = buf_.get();
  pool_.parallel_for(static_cast<int64_t>(n_), 4096, [buf](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) buf[i] = static_cast<uint64_t>(i);
  });
}

double ReadProbe::best_of(int passes) {
  double best = 0.0;
  for (int p = 0; p < passes && n_ > 0; ++p) {
    const auto t0 = std::chrono::steady_clock::now();
    pool_.run([&](int ith, int nth) {
      const size_t b = n_ * ith / nth, e = n_ * (ith + 1) / nth;
      sink_[ith] += sum_words(buf_.get() + b, e - b);
    });
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (s > 0) best = std::max(best, static_cast<double>(n_ * sizeof(uint64_t)) / s);
  }
  // Keep the sums observable so the reads cannot be dropped.
  volatile uint64_t keep = 0;
  for (uint64_t v : sink_) keep = keep + v;
  (void)keep;
  return best;
}

SpanProbe::SpanProbe(std::vector<std::vector<Span>> jobs, int n_threads)
    : jobs_(std::move(jobs)), pool_(n_threads), sink_(static_cast<size_t>(pool_.size()), 0) {
  for (const auto& job : jobs_)
    for (const Span& sp : job) total_ += sp.bytes;
}

double SpanProbe::best_of(int passes) {
  double best = 0.0;
  for (int p = 0; p < passes && total_ > 0; ++p) {
    const auto t0 = std::chrono::steady_clock::now();
    for (const auto& job : jobs_) {
      size_t job_bytes = 0;
      for (const Span& sp : job) job_bytes += sp.bytes;
      // Thread ith: bytes [job_bytes * ith / nth, job_bytes * (ith + 1) / nth) of the job's spans end to end.
      pool_.run([&](int ith, int nth) {
        const size_t b = job_bytes * ith / nth, e = job_bytes * (ith + 1) / nth;
        size_t at = 0;
        for (const Span& sp : job) {
          const size_t lo = std::max(b, at), hi = std::min(e, at + sp.bytes);
          if (lo < hi) {  // whole words of the part, from the first word boundary in it
            const char* base = static_cast<const char*>(sp.data);
            const size_t w0 = (lo - at + 7) / 8, w1 = (hi - at) / 8;
            if (w0 < w1) sink_[ith] += sum_words(reinterpret_cast<const uint64_t*>(base) + w0, w1 - w0);
          }
          at += sp.bytes;
        }
      });
    }
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (s > 0) best = std::max(best, static_cast<double>(total_) / s);
  }
  volatile uint64_t keep = 0;
  for (uint64_t v : sink_) keep = keep + v;
  (void)keep;
  return best;
}

double read_bandwidth(size_t bytes, int n_threads, int passes) {
  if (bytes < sizeof(uint64_t) || passes < 1) return 0.0;
  return ReadProbe(bytes, n_threads).best_of(passes);
}

}  // namespace bluelm
