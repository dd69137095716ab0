// Weight repacking at load: the blocks of each group of R consecutive rows are
// interleaved, so a row tile of R rows streams one contiguous run of memory.
// Only the block order changes, never a block's bytes, so the kernels' per-block
// arithmetic (and so their results) stay exactly those of the file layout.
#pragma once
#include <cstddef>
#include <cstdint>

namespace bluelm::kernels {

// Block b of row g*R + i moves to block slot b*R + i of group g (group g starts
// at byte g*R*row_bytes, as in the file layout). rows must be a multiple of R.
void repack_rows(const void* src, void* dst, size_t row_bytes, size_t block_bytes, int64_t rows,
                 int R);

// The inverse (for tests and for reading one row back).
void unpack_rows(const void* src, void* dst, size_t row_bytes, size_t block_bytes, int64_t rows,
                 int R);

}  // namespace bluelm::kernels
