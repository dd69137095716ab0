// AVX-512 Q8_0 (Q5_0) decode inputs in the file layout (a token's blocks, a
// block of 4 weight rows), shared by the one-token decode (decode.cpp:
// dtile_q8) and the small-batch gemv (gemv_batch.cpp), which therefore run the
// same per-row arithmetic.
// Internal linkage: included by AVX-512 files only.
#pragma once
#include <cstring>

#include "kernels/avx512/avx512.h"
#include "kernels/avx512/zmm.h"
#include "kernels/x86/tiles256.h"

namespace bluelm::kernels::avx512 {
namespace {

// Q8_0 (Q5_0) decode in the file layout: rows (i, i+1) as the two 256-bit halves
// of a zmm, each half the sequence of Q8_0Tile<Vnni, Blk>::tile<1, 1>. The
// weights as vpdpbusd takes them: unsigned levels (U::uquants) whose offset
// U::kOffset (Q8_0: q ^ 0x80 = q + 128; Q5_0: its raw 5-bit level, q - 16 + 16)
// is taken out in the start value, once per token block.
struct Q8_0U {
  using Block = BlockQ8_0;
  static constexpr char kOffset = char(0x80);
  static __m256i uquants(const char* wb) {
    return _mm256_xor_si256(load32(reinterpret_cast<const Block*>(wb)->qs), _mm256_set1_epi8(char(0x80)));
  }
};
struct Q5_0U {
  using Block = BlockQ5_0;
  static constexpr char kOffset = 16;
  static __m256i uquants(const char* wb) {  // nibbles | 0x10 under the 32 high bits (a mask register)
    const Block* b = reinterpret_cast<const Block*>(wb);
    uint32_t h;
    std::memcpy(&h, b->qh, 4);
    return _mm256_or_si256(nibbles(b->qs), _mm256_maskz_mov_epi8(__mmask32(h), _mm256_set1_epi8(0x10)));
  }
};

struct DecQ8 {
  __m512i q;      // [q | q]
  __m512i start;  // -offset * (4-element group sums)
  __m128 dx;      // d_x in every lane
};

template <class U>
void prep_dec8(const char* x, int64_t nb, DecQ8* out) {
  for (int64_t b = 0; b < nb; ++b) {
    const BlockQ8_0* xb = reinterpret_cast<const BlockQ8_0*>(x) + b;
    out[b].q = _mm512_broadcast_i64x4(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(xb->qs)));
    out[b].start = _mm512_sub_epi32(_mm512_setzero_si512(),
                                    dpbusd512(_mm512_setzero_si512(), _mm512_set1_epi8(U::kOffset), out[b].q));
    out[b].dx = _mm_set1_ps(h2f(xb->d));
  }
}

// Block b of 4 rows `ws` bytes apart, read as dtile_q8 and the small-batch
// btile_q8 take it: rows 0, 1 in u01 and 2, 3 in u23 (U::uquants each), and
// the rows' d_w as floats [d0, d1, d2, d3].
struct Q8Rows {
  __m512i u01, u23;
  __m128 dw;
};

template <class U>
inline Q8Rows load_rows4(const char* w, size_t ws, int64_t b) {
  constexpr size_t bb = sizeof(typename U::Block);
  if (b % 2 == 0)  // four row streams, 2 KiB ahead each (see q4_1_dtile.h's unpack_block)
    for (int i = 0; i < 4; ++i) _mm_prefetch(w + i * ws + b * bb + 2048, _MM_HINT_T0);
  auto qs = [&](int i) { return U::uquants(w + i * ws + b * bb); };
  auto d = [&](int i) {
    uint16_t h;
    std::memcpy(&h, w + i * ws + b * bb, 2);
    return h;
  };
  __m128i h = _mm_cvtsi32_si128(d(0));
  h = _mm_insert_epi16(h, d(1), 1);
  h = _mm_insert_epi16(h, d(2), 2);
  h = _mm_insert_epi16(h, d(3), 3);
  return {_mm512_inserti64x4(_mm512_castsi256_si512(qs(0)), qs(1), 1),
          _mm512_inserti64x4(_mm512_castsi256_si512(qs(2)), qs(3), 1), _mm_cvtph_ps(h)};
}

}  // namespace
}  // namespace bluelm::kernels::avx512
