// Large buffers on transparent huge pages where the OS offers them: decode
// streams every weight once per token, the vision gemms sweep their panels and
// activations over and over, and 4 KiB pages cost a TLB miss each 4 KiB (more
// under virtualisation).
#pragma once
#include <cstddef>

namespace bluelm {

// 2 MiB-aligned memory of n bytes, its whole 2 MiB pages advised as huge pages
// (Linux); throws std::bad_alloc when out of memory. Free with free_huge.
void* alloc_huge(size_t n);
void free_huge(void* p);

struct HugeFree {
  void operator()(void* p) const { free_huge(p); }
};

}  // namespace bluelm
