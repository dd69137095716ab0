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

  // Units [0, total) (total < 2^32) of one job, each thread first on its own
  // contiguous share (thread ith: [total * ith / nth, total * (ith + 1) / nth),
  // parallel_for's split, so set_warm's read-ahead of each share's start stays
  // right), taken from its front half of what is left at a time (at least
  // min_take units); a thread whose share is done takes from the back of the
  // others' shares the same way. So a job costs about log2(share / min_take)
  // claims per thread (each one gemm call in decode), and the last pieces are
  // small. fn(u0, u1, ith) runs [u0, u1) on thread ith. For decode: a thread
  // slowed by other work on the machine or by a slower stream no longer holds
  // the whole job up. Which thread runs a unit varies, so fn's result must not
  // depend on it.
  template <typename Fn>
  void run_shared(int64_t total, int64_t min_take, Fn&& fn) {
    if (n_threads_ == 1) {
      if (total > 0) fn(int64_t(0), total, 0);
      return;
    }
    // Set before the job is published, so every thread sees every share.
    const int nth = n_threads_;
    for (int i = 0; i < nth; ++i)
      shares_[static_cast<size_t>(i)].range.store(pack_range(total * i / nth, total * (i + 1) / nth),
                                                  std::memory_order_relaxed);
    run([&](int ith, int) {
      Share& own = shares_[static_cast<size_t>(ith)];
      int64_t u0, u1;
      while (take(own, min_take, true, &u0, &u1)) fn(u0, u1, ith);
      for (int k = 1; k < nth; ++k) {
        Share& other = shares_[static_cast<size_t>((ith + k) % nth)];
        while (take(other, min_take, false, &u0, &u1)) fn(u0, u1, ith);
      }
    });
  }

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

  // One thread's share of run_shared's units: [front, back) packed in 64 bits.
  struct alignas(64) Share {
    std::atomic<uint64_t> range{0};
  };
  static uint64_t pack_range(int64_t front, int64_t back) {
    return static_cast<uint64_t>(front) | (static_cast<uint64_t>(back) << 32);
  }
  // Takes half of what is left of s (at least min_take units, at most all)
  // from its front (the owner) or its back.
  static bool take(Share& s, int64_t min_take, bool front, int64_t* u0, int64_t* u1);

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
  std::vector<Share> shares_;  // run_shared's, one per thread
};

// Physical cores (not hardware threads) of this machine, at least 1.
int physical_cores();

}  // namespace bluelm
