#include "kernels/repack.h"

#include <cstring>

namespace bluelm::kernels {

namespace {
template <bool Pack>
void permute(const void* src, void* dst, size_t row_bytes, size_t block_bytes, int64_t rows, int R) {
  const char* s = static_cast<const char*>(src);
  char* d = static_cast<char*>(dst);
  const int64_t nb = static_cast<int64_t>(row_bytes / block_bytes);
  for (int64_t g = 0; g + R <= rows; g += R) {
    const size_t base = static_cast<size_t>(g) * row_bytes;
    for (int i = 0; i < R; ++i) {
      for (int64_t b = 0; b < nb; ++b) {
        const size_t file = base + i * row_bytes + b * block_bytes;
        const size_t packed = base + (b * R + i) * block_bytes;
        std::memcpy(d + (Pack ? packed : file), s + (Pack ? file : packed), block_bytes);
      }
    }
  }
}
}  // namespace

void repack_rows(const void* src, void* dst, size_t row_bytes, size_t block_bytes, int64_t rows,
                 int R) {
  permute<true>(src, dst, row_bytes, block_bytes, rows, R);
}

void unpack_rows(const void* src, void* dst, size_t row_bytes, size_t block_bytes, int64_t rows,
                 int R) {
  permute<false>(src, dst, row_bytes, block_bytes, rows, R);
}

}  // namespace bluelm::kernels
