// Wall time since a steady-clock instant, in seconds: what the runtime's
// timed stages and measured costs record.
#pragma once
#include <chrono>

namespace bluelm {

inline double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace bluelm
