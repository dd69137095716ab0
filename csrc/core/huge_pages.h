// Large buffers on transparent huge pages where the OS offers them: decode
// streams every weight once per token, and 4 KiB pages cost a TLB miss each
// 4 KiB (more under virtualisation).
#pragma once
#include <cstddef>
#include <memory>
#include <type_traits>

namespace bluelm {

// 2 MiB-aligned memory of n bytes, advised as huge pages (Linux); throws
// std::bad_alloc when out of memory. Free with free_huge.
void* alloc_huge(size_t n);
void free_huge(void* p);

struct HugeFree {
  void operator()(void* p) const { free_huge(p); }
};

// An array of n uninitialised T on huge pages: scratch that is written before
// it is read, so its pages are not cleared twice (the kernel's first-touch
// clear, then a value-initialising std::vector's) and fault 2 MiB at a time.
template <class T>
class HugeArray {
  static_assert(std::is_trivially_copyable<T>::value, "uninitialised storage");

 public:
  void resize(size_t n) {
    p_.reset(static_cast<T*>(alloc_huge(n * sizeof(T))));
    n_ = n;
  }
  T* data() { return p_.get(); }
  const T* data() const { return p_.get(); }
  size_t size() const { return n_; }

 private:
  std::unique_ptr<T, HugeFree> p_;
  size_t n_ = 0;
};

}  // namespace bluelm
