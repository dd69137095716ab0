// ThreadPool::run_shared (decode's work split): every unit runs exactly once
// for any thread count, total and smallest take, and a thread done with its
// share takes over units of a thread that is held up.
#include <atomic>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "core/thread_pool.h"
#include "harness.h"

using namespace bluelm;

namespace harness {

void test_thread_pool() {
  using harness::check;
  for (int nth = 1; nth <= 4; ++nth) {
    ThreadPool pool(nth);
    for (int64_t total : {0, 1, 7, 100, 1000}) {
      for (int64_t min_take : {1, 3, 64}) {
        std::vector<std::atomic<int>> runs(static_cast<size_t>(total));
        std::atomic<bool> bad{false};
        pool.run_shared(total, min_take, [&](int64_t u0, int64_t u1, int ith) {
          if (u0 < 0 || u1 > total || u0 >= u1 || ith < 0 || ith >= nth) bad = true;
          for (int64_t u = u0; u < u1 && !bad; ++u) runs[static_cast<size_t>(u)]++;
        });
        bool once = !bad;
        for (auto& r : runs) once = once && r.load() == 1;
        check(once, "run_shared nth=" + std::to_string(nth) + " total=" + std::to_string(total) +
                        " min_take=" + std::to_string(min_take) + ": every unit once");
      }
    }
  }
  // Thread 1 (share [32, 64)) waits in its first piece until thread 0 has run
  // a unit of that share, which it can only do by taking from its back.
  ThreadPool pool(2);
  std::atomic<bool> taken{false};
  std::atomic<int> owner_runs{0};
  pool.run_shared(64, 1, [&](int64_t u0, int64_t u1, int ith) {
    if (ith == 0 && u1 > 32) taken = true;
    if (ith == 1) {
      owner_runs += static_cast<int>(u1 - u0);
      for (int i = 0; i < 5000 && !taken; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    (void)u0;
  });
  check(taken.load() && owner_runs.load() < 32, "run_shared: a held-up thread's units are taken over");
}

}  // namespace harness
