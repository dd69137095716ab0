#include "core/thread_pool.h"

#include <fstream>
#include <set>
#include <string>
#include <type_traits>
#include <utility>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define BLUELM_PAUSE() _mm_pause()
#elif defined(__aarch64__)
#define BLUELM_PAUSE() __asm__ __volatile__("yield")
#else
#define BLUELM_PAUSE() ((void)0)
#endif

namespace bluelm {

namespace {
// Busy-wait briefly (jobs arrive microseconds apart while decoding), then yield
// the core so an oversubscribed machine still makes progress, then sleep.
constexpr int kPauseIterations = 2048;
constexpr int kYieldIterations = 256;

// set_warm's spans are read a step at a time, checking between steps whether
// the next job has started.
constexpr size_t kWarmStep = 2048;

// Reads one byte of every line of w while busy() holds. Loads, not prefetch
// hints: the hints measured no faster (they may be dropped when the core's
// miss buffers are full), and the lines must reach this core's L2 before the
// next job asks for them.
template <typename Busy>
void warm_span(const ThreadPool::Warm& w, Busy&& busy) {
  for (size_t off = 0; off < w.bytes && busy(); off += kWarmStep) {
    const size_t end = off + kWarmStep < w.bytes ? off + kWarmStep : w.bytes;
    for (size_t l = off; l < end; l += 64) (void)*reinterpret_cast<const volatile char*>(w.begin + l);
  }
}

void backoff(int i) {
  if (i < kPauseIterations) {
    BLUELM_PAUSE();
  } else {
    std::this_thread::yield();
  }
}
}  // namespace

ThreadPool::ThreadPool(int n_threads) : n_threads_(n_threads < 1 ? 1 : n_threads), shares_(n_threads_) {
  for (int i = 1; i < n_threads_; ++i) workers_.emplace_back(&ThreadPool::worker, this, i);
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_.store(true);
    generation_.fetch_add(1);
  }
  wake_.notify_all();
  for (auto& t : workers_) t.join();
}

void ThreadPool::set_warm(const Warm* spans) {
  if (spans) warm_.assign(spans, spans + n_threads_);
  else warm_.clear();
}

bool ThreadPool::take(Share& s, int64_t min_take, bool front, int64_t* u0, int64_t* u1) {
  uint64_t v = s.range.load(std::memory_order_relaxed);
  for (;;) {
    const int64_t f = static_cast<int64_t>(v & 0xffffffffu), b = static_cast<int64_t>(v >> 32);
    if (f >= b) return false;
    const int64_t want = (b - f) / 2 > min_take ? (b - f) / 2 : min_take;
    const int64_t n = b - f < want ? b - f : want;
    const uint64_t next = front ? pack_range(f + n, b) : pack_range(f, b - n);
    if (s.range.compare_exchange_weak(v, next, std::memory_order_relaxed)) {
      *u0 = front ? f : b - n;
      *u1 = front ? f + n : b;
      return true;
    }
  }
}

void ThreadPool::run_raw(JobFn fn, void* ctx) {
  if (n_threads_ == 1) {
    fn(ctx, 0, 1);
    return;
  }
  job_ = fn;
  job_ctx_ = ctx;
  pending_.store(n_threads_ - 1, std::memory_order_relaxed);
  {
    // The lock orders the publish with sleepers' check of the generation.
    std::lock_guard<std::mutex> lock(mutex_);
    generation_.fetch_add(1, std::memory_order_release);
  }
  wake_.notify_all();
  fn(ctx, 0, n_threads_);
  // While the workers finish, this thread's next part heads for its cache.
  auto working = [&] { return pending_.load(std::memory_order_acquire) != 0; };
  if (!warm_.empty()) warm_span(warm_[0], working);
  for (int i = 0; working(); ++i) backoff(i);
}

void ThreadPool::worker(int ith) {
  uint64_t seen = 0;
  for (;;) {
    uint64_t gen = generation_.load(std::memory_order_acquire);
    for (int i = 0; gen == seen && i < kPauseIterations + kYieldIterations; ++i) {
      backoff(i);
      gen = generation_.load(std::memory_order_acquire);
    }
    if (gen == seen) {
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait(lock, [&] { return generation_.load(std::memory_order_acquire) != seen; });
      gen = generation_.load(std::memory_order_acquire);
    }
    seen = gen;
    if (stop_.load()) return;
    job_(job_ctx_, ith, n_threads_);
    // Copied before the end is signalled: from then on the caller may change it.
    const Warm w = warm_.empty() ? Warm{} : warm_[ith];
    pending_.fetch_sub(1, std::memory_order_acq_rel);
    warm_span(w, [&] { return generation_.load(std::memory_order_relaxed) == seen; });
  }
}

int physical_cores() {
  // Count distinct (package, core) pairs; fall back to hardware_concurrency.
  std::set<std::pair<std::string, std::string>> cores;
  for (unsigned cpu = 0; cpu < 4096; ++cpu) {
    const std::string base = "/sys/devices/system/cpu/cpu" + std::to_string(cpu) + "/topology/";
    std::ifstream pkg(base + "physical_package_id"), core(base + "core_id");
    if (!pkg || !core) break;
    std::string p, c;
    pkg >> p;
    core >> c;
    cores.emplace(p, c);
  }
  if (!cores.empty()) return static_cast<int>(cores.size());
  const unsigned hc = std::thread::hardware_concurrency();
  return hc ? static_cast<int>(hc) : 1;
}

}  // namespace bluelm
