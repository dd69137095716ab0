// Weight repacking at load: the blocks of each group of R consecutive rows are
// interleaved, so a row tile of R rows streams one contiguous run of memory.
// repack_rows changes only the block order, never a block's bytes; a kernel's
// arithmetic never depends on the layout, so packed results stay exactly those
// of the file layout.
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

// Q4_0 in groups of 16 rows whose quants are interleaved 4 bytes at a time, so
// one 64-byte load holds the same 8 elements of 16 rows (the AVX-512 kernels'
// lanes are rows). Group g starts at byte g*16*row_bytes; its block b is 288
// bytes: the 16 fp16 scales (row i at 2i), then 4 chunks of 64 bytes, chunk c
// holding bytes 4c..4c+3 of each row's 16 quant bytes (row i at 4i). rows must
// be a multiple of 16.
constexpr int kQ4x16Rows = 16;
void repack_q4_0_x16(const void* src, void* dst, size_t row_bytes, int64_t rows);
void unpack_q4_0_x16(const void* src, void* dst, size_t row_bytes, int64_t rows);

// Q5_0 / Q5_1 in groups of 16 rows, the same idea for 5-bit blocks. Group g's
// block b (16 * 22 or 16 * 24 bytes): the 16 fp16 scales d (row i at 2i), for
// Q5_1 then the 16 fp16 mins m; then the 16 rows' high-bit words (row i at 4i),
// their bits permuted so element 4j + k's bit sits at bit 8k + j (one shift
// and mask brings elements 4j..4j+3 to bit 4 of bytes 0..3); then the 4 quant
// chunks of Q4_0's x16 layout. rows must be a multiple of 16.
constexpr int kQ5x16Rows = 16;
void repack_q5_0_x16(const void* src, void* dst, size_t row_bytes, int64_t rows);
void unpack_q5_0_x16(const void* src, void* dst, size_t row_bytes, int64_t rows);
void repack_q5_1_x16(const void* src, void* dst, size_t row_bytes, int64_t rows);
void unpack_q5_1_x16(const void* src, void* dst, size_t row_bytes, int64_t rows);
// The permutation of the high-bit word (and its inverse).
uint32_t q5_x16_bits(uint32_t qh);
uint32_t q5_x16_unbits(uint32_t qh);

// Signature shared by the layout-specific packers (KernelTable::pack/unpack).
using PackFn = void (*)(const void* src, void* dst, size_t row_bytes, int64_t rows);

}  // namespace bluelm::kernels
