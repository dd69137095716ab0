// AVX-512 decode (one token) of Q8_0 and Q4_1 (and Q5_0 / Q5_1 through the
// same code, their blocks read by x86/tiles256.h's Blk policies): two rows per
// 512-bit register where the layout allows (packed Q4_1 groups, file-layout
// Q8_0 / Q5_0), the 256-bit tiles of x86/tiles256.h with vpdpbusd lane sums
// otherwise; every output keeps the 256-bit tiles' per-lane sequence.
#include <vector>

#include "kernels/avx512/avx512.h"
#include "kernels/avx512/zmm.h"
#include "kernels/x86/tiles256.h"
#include "kernels/avx512/q4_1_dtile.h"
#include "kernels/avx512/q8_0_dtile.h"

namespace bluelm::kernels::avx512 {
namespace {

// Exact int32 lane sums of 4 products by vpdpbusd (u8 x s8): signed weights
// become unsigned by w ^ 0x80 = w + 128, and 128 * sum(q) is subtracted in the
// start value, once per token block (shared by the rows).
struct Vnni {
  using W = __m256i;
  static __m256i start(__m256i q) {
    const __m256i z = _mm256_setzero_si256();
    return _mm256_sub_epi32(z, _mm256_dpbusd_epi32(z, _mm256_set1_epi8(char(0x80)), q));
  }
  static W prep_w(__m256i s) { return _mm256_xor_si256(s, _mm256_set1_epi8(char(0x80))); }
  static __m256i dot_ss(W u, __m256i q, __m256i start) { return _mm256_dpbusd_epi32(start, u, q); }
  static __m256i dot_us(__m256i u, __m256i q) { return _mm256_dpbusd_epi32(_mm256_setzero_si256(), u, q); }
};

template <class U>
void dtile_q8(const char* w, size_t ws, const DecQ8* px, int64_t nb, float* y) {
  const __m512i s01 = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
  const __m512i s23 = _mm512_setr_epi32(2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
  __m512 acc01 = _mm512_setzero_ps(), acc23 = _mm512_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    const Q8Rows r = load_rows4<U>(w, ws, b);
    const __m512 prod = _mm512_castps128_ps512(_mm_mul_ps(r.dw, px[b].dx));
    acc01 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dpbusd512(px[b].start, r.u01, px[b].q)), _mm512_permutexvar_ps(s01, prod), acc01);
    acc23 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dpbusd512(px[b].start, r.u23, px[b].q)), _mm512_permutexvar_ps(s23, prod), acc23);
  }
  y[0] = hsum(_mm512_castps512_ps256(acc01));
  y[1] = hsum(hi256(acc01));
  y[2] = hsum(_mm512_castps512_ps256(acc23));
  y[3] = hsum(hi256(acc23));
}

template <class Blk, class U>
void decode_signed(const char* w, size_t ws, const char* x, size_t xs, float* Y, size_t ldy, int64_t K, int64_t r0,
                   int64_t r1) {
  const int64_t nb = K / QK;
  std::vector<DecQ8> dq(static_cast<size_t>(nb));
  prep_dec8<U>(x, nb, dq.data());
  int64_t r = r0;
  for (; r + 4 <= r1; r += 4) dtile_q8<U>(w + r * ws, ws, dq.data(), nb, Y + r);
  for (; r < r1; ++r)
    Q8_0Tile<Vnni, Blk>::template tile<1, 1>(w + r * ws, ws, sizeof(typename Blk::Block), x, xs, Y + r, ldy, K);
}

template <class Blk>
void decode_unsigned(const char* w, size_t ws, const char* x, size_t xs, float* Y, size_t ldy, int64_t K,
                     int64_t r0, int64_t r1) {
  constexpr size_t bb = sizeof(typename Blk::Block);
  int64_t r = r0;
  for (; r + 4 <= r1; r += 4) Q4_1Tile<Vnni, Blk>::template tile<4, 1>(w + r * ws, ws, bb, x, xs, Y + r, ldy, K);
  for (; r < r1; ++r) Q4_1Tile<Vnni, Blk>::template tile<1, 1>(w + r * ws, ws, bb, x, xs, Y + r, ldy, K);
}

}  // namespace

void decode_q8_0(const char* w, size_t ws, const char* x, size_t xs, float* Y, size_t ldy, int64_t K, int64_t r0,
                 int64_t r1) {
  decode_signed<Q8_0Blk, Q8_0U>(w, ws, x, xs, Y, ldy, K, r0, r1);
}

void decode_q5_0(const char* w, size_t ws, const char* x, size_t xs, float* Y, size_t ldy, int64_t K, int64_t r0,
                 int64_t r1) {
  decode_signed<Q5_0Blk, Q5_0U>(w, ws, x, xs, Y, ldy, K, r0, r1);
}

void decode_q4_1(const char* w, size_t ws, const char* x, size_t xs, float* Y, size_t ldy, int64_t K, int64_t r0,
                 int64_t r1) {
  decode_unsigned<Q4_1Blk>(w, ws, x, xs, Y, ldy, K, r0, r1);
}

void decode_q5_1(const char* w, size_t ws, const char* x, size_t xs, float* Y, size_t ldy, int64_t K, int64_t r0,
                 int64_t r1) {
  decode_unsigned<Q5_1Blk>(w, ws, x, xs, Y, ldy, K, r0, r1);
}

void decode_q4_1_packed(const char* w, size_t ws, const char* x, size_t xs, float* Y, size_t ldy, int64_t K,
                        int64_t r0, int64_t r1) {
  constexpr int P = 4;
  const int64_t nb = K / QK;
  std::vector<DecQ> dq(static_cast<size_t>(nb));
  prep_dec(x, nb, dq.data());
  for (int64_t r = r0; r < r1;) {
    if (r + P <= r1 && r % P == 0) {
      const DecQ* px = dq.data();
      float* y = Y + r;
      dtile<1>(w + r * ws, &px, nb, &y);
      r += P;
    } else {  // a row outside whole groups of the range (rare): the prefill tile
      prefill_q4_1(w, ws, P, x, xs, Y, ldy, K, r, r + 1, 1);
      ++r;
    }
  }
}

}  // namespace bluelm::kernels::avx512
