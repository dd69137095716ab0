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

namespace {
constexpr size_t kQ40Block = 18;  // fp16 d + 16 quant bytes
template <bool Pack>
void interleave_q4_0(const void* src, void* dst, size_t row_bytes, int64_t rows) {
  const char* s = static_cast<const char*>(src);
  char* d = static_cast<char*>(dst);
  const int64_t nb = static_cast<int64_t>(row_bytes / kQ40Block);
  constexpr int R = kQ4x16Rows;
  for (int64_t g = 0; g + R <= rows; g += R) {
    const size_t base = static_cast<size_t>(g) * row_bytes;
    for (int64_t b = 0; b < nb; ++b) {
      const size_t packed = base + static_cast<size_t>(b) * R * kQ40Block;
      for (int i = 0; i < R; ++i) {
        const size_t file = base + i * row_bytes + b * kQ40Block;
        auto move = [&](size_t file_off, size_t packed_off, size_t n) {
          if (Pack) std::memcpy(d + packed + packed_off, s + file + file_off, n);
          else std::memcpy(d + file + file_off, s + packed + packed_off, n);
        };
        move(0, 2 * i, 2);
        for (int c = 0; c < 4; ++c) move(2 + 4 * c, 2 * R + 64 * c + 4 * i, 4);
      }
    }
  }
}
}  // namespace

void repack_q4_0_x16(const void* src, void* dst, size_t row_bytes, int64_t rows) {
  interleave_q4_0<true>(src, dst, row_bytes, rows);
}

void unpack_q4_0_x16(const void* src, void* dst, size_t row_bytes, int64_t rows) {
  interleave_q4_0<false>(src, dst, row_bytes, rows);
}

uint32_t q5_x16_bits(uint32_t qh) {
  uint32_t r = 0;
  for (int e = 0; e < 32; ++e) r |= ((qh >> e) & 1u) << (8 * (e % 4) + e / 4);
  return r;
}

uint32_t q5_x16_unbits(uint32_t qh) {
  uint32_t r = 0;
  for (int e = 0; e < 32; ++e) r |= ((qh >> (8 * (e % 4) + e / 4)) & 1u) << e;
  return r;
}

namespace {
// Heads: the fp16 fields before qh (d; d and m for Q5_1).
template <bool Pack, int Heads>
void interleave_q5(const void* src, void* dst, size_t row_bytes, int64_t rows) {
  constexpr size_t kBlock = 2 * Heads + 4 + 16;
  constexpr int R = kQ5x16Rows;
  const char* s = static_cast<const char*>(src);
  char* d = static_cast<char*>(dst);
  const int64_t nb = static_cast<int64_t>(row_bytes / kBlock);
  constexpr size_t kBits = 2 * R * Heads, kQuants = kBits + 4 * R;
  for (int64_t g = 0; g + R <= rows; g += R) {
    const size_t base = static_cast<size_t>(g) * row_bytes;
    for (int64_t b = 0; b < nb; ++b) {
      const size_t packed = base + static_cast<size_t>(b) * R * kBlock;
      for (int i = 0; i < R; ++i) {
        const size_t file = base + i * row_bytes + b * kBlock;
        auto move = [&](size_t file_off, size_t packed_off, size_t n) {
          if (Pack) std::memcpy(d + packed + packed_off, s + file + file_off, n);
          else std::memcpy(d + file + file_off, s + packed + packed_off, n);
        };
        for (int h = 0; h < Heads; ++h) move(2 * h, 2 * R * h + 2 * i, 2);
        uint32_t qh;
        std::memcpy(&qh, (Pack ? s + file : s + packed + kBits + 4 * i) + (Pack ? 2 * Heads : 0), 4);
        qh = Pack ? q5_x16_bits(qh) : q5_x16_unbits(qh);
        std::memcpy((Pack ? d + packed + kBits + 4 * i : d + file + 2 * Heads), &qh, 4);
        for (int c = 0; c < 4; ++c) move(2 * Heads + 4 + 4 * c, kQuants + 64 * c + 4 * i, 4);
      }
    }
  }
}
}  // namespace

void repack_q5_0_x16(const void* src, void* dst, size_t row_bytes, int64_t rows) {
  interleave_q5<true, 1>(src, dst, row_bytes, rows);
}
void unpack_q5_0_x16(const void* src, void* dst, size_t row_bytes, int64_t rows) {
  interleave_q5<false, 1>(src, dst, row_bytes, rows);
}
void repack_q5_1_x16(const void* src, void* dst, size_t row_bytes, int64_t rows) {
  interleave_q5<true, 2>(src, dst, row_bytes, rows);
}
void unpack_q5_1_x16(const void* src, void* dst, size_t row_bytes, int64_t rows) {
  interleave_q5<false, 2>(src, dst, row_bytes, rows);
}

}  // namespace bluelm::kernels
