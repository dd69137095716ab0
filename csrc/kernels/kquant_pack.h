// Row-interleaved layouts of the super-block weight types (Q2_K..Q6_K, IQ4_XS)
// for kernels whose SIMD lanes are rows: in a group of R rows (R = 16 for
// 512-bit registers, 8 for 256-bit ones) every field of a super-block is
// stored word by word across the R rows, so one load of R words holds the same
// bytes of R rows. ISA-neutral (plain C++): any table may use these layouts.
//
// A super-block's fields, as (offset, bytes, word) in the file's block:
//   Q4_K (144 B): d (0, 2, 2), dmin (2, 2, 2), scales (4, 12, 1), qs (16, 128, 4)
//   Q5_K (176 B): d, dmin, scales as Q4_K, qh (16, 32, 4), qs (48, 128, 4)
//   Q6_K (210 B): ql (0, 128, 4), qh (128, 64, 4), scales (192, 16, 1), d (208, 2, 2)
//   Q2_K (84 B): scales (0, 16, 1), qs (16, 64, 4), d (80, 2, 2), dmin (82, 2, 2)
//   Q3_K (110 B): hmask (0, 32, 4), qs (32, 64, 4), scales (96, 12, 1), d (108, 2, 2)
//   IQ4_XS (136 B): d (0, 2, 2), scales_h (2, 2, 2), scales_l (4, 4, 1), qs (8, 128, 4)
// Group g (rows gR .. gR+R-1) starts at byte g*R*row_bytes, as in the file;
// its super-block b at b*R*block_bytes from there; in it, byte k of word w of
// a field (offset o) of row i is at R*o + (w*R + i)*word + k. So the R fp16
// d of a super-block are R*2 contiguous bytes, scale byte k of the R rows is R
// contiguous bytes, and 4-byte word w of the quants of the R rows is R*4
// contiguous bytes. A pure permutation: the packed matrix has the file's size.
//
// With qword = 8 the quant fields (Q4_K/Q5_K qs and qh, Q6_K ql and qh) move
// in 8-byte words instead (the other fields as above): one 16-byte load holds
// 8 consecutive quant bytes of 2 rows, the 2x8 operand of SMMLA (i8mm).
#pragma once
#include <cstddef>
#include <cstdint>

#include "core/block_formats.h"
#include "kernels/repack.h"

namespace bluelm::kernels {

// Whether t has a row-interleaved layout here.
bool kquant_interleaved(GgmlType t);

// Interleaves (Pack) or restores rows [0, rows) of type t (rows a multiple of
// R), the quant fields in words of qword (4 or 8) bytes.
void kquant_pack(GgmlType t, int R, const void* src, void* dst, size_t row_bytes, int64_t rows, int qword = 4);
void kquant_unpack(GgmlType t, int R, const void* src, void* dst, size_t row_bytes, int64_t rows,
                   int qword = 4);

// Super-block b of n <= R file-layout rows (row i at row0 + i*row_bytes) into
// one interleaved super-block group at dst (R * block_bytes bytes); rows n..R-1
// read as zero bytes. For kernels that take a file-layout matrix.
void kquant_gather(GgmlType t, int R, const char* row0, size_t row_bytes, int n, int64_t b, char* dst,
                   int qword = 4);

// The PackFn entries of the tables (kernels.h): groups of R rows of type T.
template <GgmlType T, int R, int QWord = 4>
void kquant_pack_rows(const void* src, void* dst, size_t row_bytes, int64_t rows) {
  kquant_pack(T, R, src, dst, row_bytes, rows, QWord);
}
template <GgmlType T, int R, int QWord = 4>
void kquant_unpack_rows(const void* src, void* dst, size_t row_bytes, int64_t rows) {
  kquant_unpack(T, R, src, dst, row_bytes, rows, QWord);
}

}  // namespace bluelm::kernels
