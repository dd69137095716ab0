#include "core/huge_pages.h"

#include <cstdlib>
#include <new>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace bluelm {

namespace {
constexpr size_t kHuge = size_t(2) << 20;
}

void* alloc_huge(size_t n) {
  const size_t rounded = (n + kHuge - 1) / kHuge * kHuge;
  void* p = std::aligned_alloc(kHuge, rounded ? rounded : kHuge);
  if (!p) throw std::bad_alloc();
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  // Whole huge pages within n only: a huge page over the tail would make the
  // buffer hold up to 2 MiB more than it needs once touched.
  if (n >= kHuge) ::madvise(p, n / kHuge * kHuge, MADV_HUGEPAGE);  // advice only: failure is harmless
#endif
  return p;
}

void free_huge(void* p) { std::free(p); }

}  // namespace bluelm
