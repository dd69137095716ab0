// The row-interleaved super-block layouts (kquant_pack.h).
#include "kernels/kquant_pack.h"

#include <cstring>

namespace bluelm::kernels {
namespace {

struct Field {
  int offset, bytes, word;
};

struct Layout {
  const Field* fields;
  int n;
  size_t block;  // bytes per super-block
};

constexpr Field kQ4K[] = {{0, 2, 2}, {2, 2, 2}, {4, 12, 1}, {16, 128, 4}};
constexpr Field kQ5K[] = {{0, 2, 2}, {2, 2, 2}, {4, 12, 1}, {16, 32, 4}, {48, 128, 4}};
constexpr Field kQ6K[] = {{0, 128, 4}, {128, 64, 4}, {192, 16, 1}, {208, 2, 2}};
constexpr Field kQ2K[] = {{0, 16, 1}, {16, 64, 4}, {80, 2, 2}, {82, 2, 2}};
constexpr Field kQ3K[] = {{0, 32, 4}, {32, 64, 4}, {96, 12, 1}, {108, 2, 2}};
constexpr Field kIQ4XS[] = {{0, 2, 2}, {2, 2, 2}, {4, 4, 1}, {8, 128, 4}};
// The same with the quant fields in 8-byte words (qword = 8).
constexpr Field kQ4K8[] = {{0, 2, 2}, {2, 2, 2}, {4, 12, 1}, {16, 128, 8}};
constexpr Field kQ5K8[] = {{0, 2, 2}, {2, 2, 2}, {4, 12, 1}, {16, 32, 8}, {48, 128, 8}};
constexpr Field kQ6K8[] = {{0, 128, 8}, {128, 64, 8}, {192, 16, 1}, {208, 2, 2}};
static_assert(sizeof(BlockQ4_K) == 144 && sizeof(BlockQ5_K) == 176 && sizeof(BlockQ6_K) == 210,
              "the field tables follow ggml's super-block layouts");
static_assert(sizeof(BlockQ2_K) == 84 && sizeof(BlockQ3_K) == 110 && sizeof(BlockIQ4_XS) == 136,
              "the field tables follow ggml's super-block layouts");

bool layout_of(GgmlType t, Layout* out, int qword = 4) {
  const bool w8 = qword == 8;
  switch (t) {
    case GgmlType::Q4_K: *out = {w8 ? kQ4K8 : kQ4K, 4, sizeof(BlockQ4_K)}; return true;
    case GgmlType::Q5_K: *out = {w8 ? kQ5K8 : kQ5K, 5, sizeof(BlockQ5_K)}; return true;
    case GgmlType::Q6_K: *out = {w8 ? kQ6K8 : kQ6K, 4, sizeof(BlockQ6_K)}; return true;
    case GgmlType::Q2_K: *out = {kQ2K, 4, sizeof(BlockQ2_K)}; return true;
    case GgmlType::Q3_K: *out = {kQ3K, 4, sizeof(BlockQ3_K)}; return true;
    case GgmlType::IQ4_XS: *out = {kIQ4XS, 4, sizeof(BlockIQ4_XS)}; return true;
    default: return false;
  }
}

// The words of one field of row i between the file block and the group block.
template <bool Pack, int kWord>
void move_field(const Field& fd, int R, int i, const char* from, char* to) {
  for (int w = 0; w < fd.bytes / kWord; ++w) {
    const size_t file = size_t(fd.offset + w * kWord);
    const size_t packed = size_t(R) * fd.offset + size_t(w * R + i) * kWord;
    if (Pack) std::memcpy(to + packed, from + file, kWord);
    else std::memcpy(to + file, from + packed, kWord);
  }
}

// Moves one super-block of row i between the file block and the interleaved
// group block (R rows); `from` is the one read.
template <bool Pack>
void move_block(const Layout& L, int R, int i, const char* from, char* to) {
  for (int f = 0; f < L.n; ++f) {
    const Field& fd = L.fields[f];
    if (fd.word == 8) move_field<Pack, 8>(fd, R, i, from, to);
    else if (fd.word == 4) move_field<Pack, 4>(fd, R, i, from, to);
    else if (fd.word == 2) move_field<Pack, 2>(fd, R, i, from, to);
    else move_field<Pack, 1>(fd, R, i, from, to);
  }
}

template <bool Pack>
void permute(GgmlType t, int R, const void* src, void* dst, size_t row_bytes, int64_t rows, int qword) {
  Layout L;
  if (!layout_of(t, &L, qword)) return;
  const char* s = static_cast<const char*>(src);
  char* d = static_cast<char*>(dst);
  const int64_t nb = static_cast<int64_t>(row_bytes / L.block);
  for (int64_t g = 0; g + R <= rows; g += R) {
    const size_t base = size_t(g) * row_bytes;
    for (int64_t b = 0; b < nb; ++b) {
      const size_t group = base + size_t(b) * R * L.block;
      for (int i = 0; i < R; ++i) {
        const size_t file = base + size_t(i) * row_bytes + size_t(b) * L.block;
        if (Pack) move_block<true>(L, R, i, s + file, d + group);
        else move_block<false>(L, R, i, s + group, d + file);
      }
    }
  }
}

}  // namespace

bool kquant_interleaved(GgmlType t) {
  Layout L;
  return layout_of(t, &L);
}

void kquant_pack(GgmlType t, int R, const void* src, void* dst, size_t row_bytes, int64_t rows, int qword) {
  permute<true>(t, R, src, dst, row_bytes, rows, qword);
}

void kquant_unpack(GgmlType t, int R, const void* src, void* dst, size_t row_bytes, int64_t rows, int qword) {
  permute<false>(t, R, src, dst, row_bytes, rows, qword);
}

void kquant_gather(GgmlType t, int R, const char* row0, size_t row_bytes, int n, int64_t b, char* dst,
                   int qword) {
  Layout L;
  if (!layout_of(t, &L, qword)) return;
  if (n < R) std::memset(dst, 0, size_t(R) * L.block);
  for (int i = 0; i < n; ++i) move_block<true>(L, R, i, row0 + size_t(i) * row_bytes + size_t(b) * L.block, dst);
}

}  // namespace bluelm::kernels
