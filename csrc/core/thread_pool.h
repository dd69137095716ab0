// A persistent pool: the caller runs share 0 of every job and workers run the
// rest. Workers spin briefly between jobs (decode issues hundreds of small jobs
// per token), then sleep. No allocation per job.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>
#include <vector>

namespace bluelm {

class ThreadPool {
 public:
  explicit ThreadPool(int n_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return n_threads_; }

  // Calls fn(ith, nth) once for every ith in [0, nth) across the pool and returns
  // when all calls are done. fn must not throw.
  template <typename Fn>
  void run(Fn&& fn) {
    run_raw(
        [](void* ctx, int ith, int nth) { (*static_cast<std::remove_reference_t<Fn>*>(ctx))(ith, nth); },
        &fn);
  }

  // Memory a thread is about to stream: [begin, begin + bytes), all readable.
  struct Warm {
    const char* begin = nullptr;
    size_t bytes = 0;
  };
  // Hints for the jobs that follow (decode): from the end of its part of each
  // job until the next job starts, thread ith reads spans[ith] (n_threads
  // entries, copied) a line at a time, so its next part starts from its cache
  // instead of a cold DRAM stream after the caller's serial work between jobs.
  // Reading stops as soon as the next job starts. nullptr clears. Call
  // between jobs only.
  void set_warm(const Warm* spans);

  // Splits [0, n) into contiguous ranges of whole `grain`s, one per thread.
  template <typename Fn>
  void parallel_for(int64_t n, int64_t grain, Fn&& fn) {
    run([&](int ith, int nth) {
      const int64_t units = (n + grain - 1) / grain;
      const int64_t u0 = units * ith / nth, u1 = units * (ith + 1) / nth;
      const int64_t b = u0 * grain, e = u1 * grain < n ? u1 * grain : n;
      if (b < e) fn(b, e);
    });
  }

 private:
  using JobFn = void (*)(void*, int, int);
  void run_raw(JobFn fn, void* ctx);
  void worker(int ith);

  int n_threads_;
  std::vector<std::thread> workers_;
  JobFn job_ = nullptr;
  void* job_ctx_ = nullptr;
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> pending_{0};
  std::atomic<bool> stop_{false};
  std::mutex mutex_;
  std::condition_variable wake_;
  std::vector<Warm> warm_;  // set_warm's spans (empty: none)
};

// Physical cores (not hardware threads) of this machine, at least 1.
int physical_cores();

}  // namespace bluelm
