// AVX-512 decode (one token) of Q8_0 and Q4_1: two rows per 512-bit register
// where the layout allows (packed Q4_1 groups, file-layout Q8_0), the 256-bit
// tiles of x86/tiles256.h with vpdpbusd lane sums otherwise; every output
// keeps the 256-bit tiles' per-lane sequence.
#include <vector>

#include "kernels/avx512/avx512.h"
#include "kernels/avx512/zmm.h"
#include "kernels/x86/tiles256.h"

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

// ---- decode on packed groups: 2 rows per 512-bit register -------------------
// A packed group holds block b of 4 rows back to back (kernels/repack.h). One
// zmm carries rows i and i+1 as quarters [i lanes 0-3, i+1 lanes 0-3, i lanes
// 4-7, i+1 lanes 4-7] against the token's quants laid out [q0-15, q0-15,
// q16-31, q16-31]; a row's 8 lanes run the same sequence as in the 256-bit
// tiles and are folded by the same tree at the end.

// The token, prepared once per call and shared by every row group.
struct DecQ {
  __m512i q;  // [q0-15, q0-15, q16-31, q16-31]
  __m256 xd;  // [d_x, s_x] x 4
};

void prep_dec(const char* x, int64_t nb, DecQ* out) {
  for (int64_t b = 0; b < nb; ++b) {
    const char* xb = x + b * sizeof(BlockQ8_1);
    const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xb + 4));
    const __m512i zq = _mm512_castsi256_si512(q);
    out[b].q = _mm512_shuffle_i64x2(zq, zq, _MM_SHUFFLE(1, 1, 0, 0));
    uint32_t h = 0;
    std::memcpy(&h, xb, 4);
    const __m128 ds = _mm_cvtph_ps(_mm_cvtsi32_si128(int(h)));
    out[b].xd = _mm256_castpd_ps(_mm256_broadcastsd_pd(_mm_castps_pd(ds)));
  }
}

// Folds the accumulators of rows (0,1) and (2,3) to their 4 hsum() values.
inline __m128 fold4(__m512 a01, __m512 a23) {
  // lo + hi: quarters 0+2 and 1+3 -> [row0 | row1] and [row2 | row3], 4 lanes each
  const __m256 s01 = _mm256_add_ps(_mm512_castps512_ps256(a01), hi256(a01));
  const __m256 s23 = _mm256_add_ps(_mm512_castps512_ps256(a23), hi256(a23));
  // lanes 0+2, 1+3: [r0 r0 r2 r2 | r1 r1 r3 r3]
  const __m256 v = _mm256_add_ps(_mm256_shuffle_ps(s01, s23, _MM_SHUFFLE(1, 0, 1, 0)),
                                 _mm256_shuffle_ps(s01, s23, _MM_SHUFFLE(3, 2, 3, 2)));
  // lanes 0+1: [r0 r2 | r1 r3] in lanes 0, 2, 4, 6
  const __m256 r = _mm256_add_ps(v, _mm256_movehdup_ps(v));
  const __m256 g = _mm256_permutevar8x32_ps(r, _mm256_setr_epi32(0, 4, 2, 6, 0, 0, 0, 0));
  return _mm256_castps256_ps128(g);
}

// One packed Q4_1 group of 4 rows x 1 token (20-byte blocks).
void dtile(const char* g, const DecQ* px, int64_t nb, float* y) {
  constexpr int kBytes = 4 * sizeof(BlockQ4_1);
  // Quants of row i are dwords 1+5i..4+5i, [d, m] dword 5i; indices >= 16 read the group's tail.
  const __m512i qidx = _mm512_setr_epi32(1, 2, 3, 4, 6, 7, 8, 9, 11, 12, 13, 14, 16, 17, 18, 19);
  const __m512i hidx = _mm512_setr_epi32(0, 5, 10, 15, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0);
  // Scale of row i: lane 2i of prod, in that row's quarters.
  const __m512i s01 = _mm512_setr_epi32(0, 0, 0, 0, 2, 2, 2, 2, 0, 0, 0, 0, 2, 2, 2, 2);
  const __m512i s23 = _mm512_setr_epi32(4, 4, 4, 4, 6, 6, 6, 6, 4, 4, 4, 4, 6, 6, 6, 6);
  const __m512i m4 = _mm512_set1_epi8(0x0f);
  __m512 acc01 = _mm512_setzero_ps(), acc23 = _mm512_setzero_ps();
  __m256 macc = _mm256_setzero_ps();  // lane 2i+1 sums m_w * s_x of row i
  for (int64_t b = 0; b < nb; ++b) {
    const char* gb = g + b * kBytes;
    // The loop's few bytes per instruction leave too few loads in flight for
    // DRAM: ask for the stream 2 KiB ahead (a hint; never faults). Two lines
    // per 80-byte step so none is skipped.
    _mm_prefetch(gb + 2048, _MM_HINT_T0);
    _mm_prefetch(gb + 2048 + 64, _MM_HINT_T0);
    const __m512i z0 = _mm512_loadu_si512(gb);
    const __m512i z1 = _mm512_maskz_loadu_epi32(0x000f, gb + 64);
    const __m512i qs = _mm512_permutex2var_epi32(z0, qidx, z1);
    const __m256 h = _mm256_cvtph_ps(_mm512_castsi512_si128(_mm512_permutexvar_epi32(hidx, z0)));
    const __m256 prod = _mm256_mul_ps(h, px[b].xd);  // [dw*dx, mw*sx] per row
    macc = _mm256_add_ps(macc, prod);
    const __m512i lo = _mm512_and_si512(qs, m4);
    const __m512i hi = _mm512_and_si512(_mm512_srli_epi16(qs, 4), m4);
    const __m512i u01 = _mm512_shuffle_i64x2(lo, hi, _MM_SHUFFLE(1, 0, 1, 0));
    const __m512i u23 = _mm512_shuffle_i64x2(lo, hi, _MM_SHUFFLE(3, 2, 3, 2));
    const __m512i st = _mm512_setzero_si512();
    const __m512 pz = _mm512_castps256_ps512(prod);
    acc01 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dpbusd512(st, u01, px[b].q)), _mm512_permutexvar_ps(s01, pz), acc01);
    acc23 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dpbusd512(st, u23, px[b].q)), _mm512_permutexvar_ps(s23, pz), acc23);
  }
  const __m128 r = fold4(acc01, acc23);
  // m sums of rows 0..3 from lanes 1, 3, 5, 7
  const __m128 m = _mm256_castps256_ps128(_mm256_permutevar8x32_ps(macc, _mm256_setr_epi32(1, 3, 5, 7, 0, 0, 0, 0)));
  _mm_storeu_ps(y, _mm_add_ps(r, m));
}

// Q8_0 decode in the file layout: rows (i, i+1) as the two 256-bit halves of a
// zmm, each half the sequence of Q8_0Tile<Vnni>::tile<1, 1>.
struct DecQ8 {
  __m512i q;      // [q | q]
  __m512i start;  // -128 * (4-element group sums)
  __m128 dx;      // d_x in every lane
};

void prep_dec8(const char* x, int64_t nb, DecQ8* out) {
  for (int64_t b = 0; b < nb; ++b) {
    const BlockQ8_0* xb = reinterpret_cast<const BlockQ8_0*>(x) + b;
    out[b].q = _mm512_broadcast_i64x4(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(xb->qs)));
    out[b].start = _mm512_sub_epi32(_mm512_setzero_si512(),
                                    dpbusd512(_mm512_setzero_si512(), _mm512_set1_epi8(char(0x80)), out[b].q));
    out[b].dx = _mm_set1_ps(h2f(xb->d));
  }
}

void dtile_q8(const char* w, size_t ws, const DecQ8* px, int64_t nb, float* y) {
  const __m512i flip = _mm512_set1_epi8(char(0x80));
  const __m512i s01 = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
  const __m512i s23 = _mm512_setr_epi32(2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
  __m512 acc01 = _mm512_setzero_ps(), acc23 = _mm512_setzero_ps();
  auto qs = [&](int i, int64_t b) {
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(reinterpret_cast<const BlockQ8_0*>(w + i * ws)[b].qs));
  };
  auto d = [&](int i, int64_t b) { return reinterpret_cast<const BlockQ8_0*>(w + i * ws)[b].d; };
  for (int64_t b = 0; b < nb; ++b) {
    if (b % 2 == 0)  // four row streams, 2 KiB ahead each (see dtile)
      for (int i = 0; i < 4; ++i) _mm_prefetch(w + i * ws + b * sizeof(BlockQ8_0) + 2048, _MM_HINT_T0);
    __m128i h = _mm_cvtsi32_si128(d(0, b));
    h = _mm_insert_epi16(h, d(1, b), 1);
    h = _mm_insert_epi16(h, d(2, b), 2);
    h = _mm_insert_epi16(h, d(3, b), 3);
    const __m512 prod = _mm512_castps128_ps512(_mm_mul_ps(_mm_cvtph_ps(h), px[b].dx));
    const __m512i u01 = _mm512_xor_si512(_mm512_inserti64x4(_mm512_castsi256_si512(qs(0, b)), qs(1, b), 1), flip);
    const __m512i u23 = _mm512_xor_si512(_mm512_inserti64x4(_mm512_castsi256_si512(qs(2, b)), qs(3, b), 1), flip);
    acc01 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dpbusd512(px[b].start, u01, px[b].q)), _mm512_permutexvar_ps(s01, prod), acc01);
    acc23 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dpbusd512(px[b].start, u23, px[b].q)), _mm512_permutexvar_ps(s23, prod), acc23);
  }
  y[0] = hsum(_mm512_castps512_ps256(acc01));
  y[1] = hsum(hi256(acc01));
  y[2] = hsum(_mm512_castps512_ps256(acc23));
  y[3] = hsum(hi256(acc23));
}

}  // namespace

void decode_q8_0(const char* w, size_t ws, const char* x, size_t xs, float* Y, size_t ldy, int64_t K, int64_t r0,
                 int64_t r1) {
  const int64_t nb = K / QK;
  std::vector<DecQ8> dq(static_cast<size_t>(nb));
  prep_dec8(x, nb, dq.data());
  int64_t r = r0;
  for (; r + 4 <= r1; r += 4) dtile_q8(w + r * ws, ws, dq.data(), nb, Y + r);
  for (; r < r1; ++r) Q8_0Tile<Vnni>::tile<1, 1>(w + r * ws, ws, sizeof(BlockQ8_0), x, xs, Y + r, ldy, K);
}

void decode_q4_1(const char* w, size_t ws, const char* x, size_t xs, float* Y, size_t ldy, int64_t K, int64_t r0,
                 int64_t r1) {
  constexpr size_t bb = sizeof(BlockQ4_1);
  int64_t r = r0;
  for (; r + 4 <= r1; r += 4) Q4_1Tile<Vnni>::tile<4, 1>(w + r * ws, ws, bb, x, xs, Y + r, ldy, K);
  for (; r < r1; ++r) Q4_1Tile<Vnni>::tile<1, 1>(w + r * ws, ws, bb, x, xs, Y + r, ldy, K);
}

void decode_q4_1_packed(const char* w, size_t ws, const char* x, size_t xs, float* Y, size_t ldy, int64_t K,
                        int64_t r0, int64_t r1) {
  constexpr int P = 4;
  const int64_t nb = K / QK;
  std::vector<DecQ> dq(static_cast<size_t>(nb));
  prep_dec(x, nb, dq.data());
  for (int64_t r = r0; r < r1;) {
    if (r + P <= r1 && r % P == 0) {
      dtile(w + r * ws, dq.data(), nb, Y + r);
      r += P;
    } else {  // a row outside whole groups of the range (rare): the prefill tile
      prefill_q4_1(w, ws, P, x, xs, Y, ldy, K, r, r + 1, 1);
      ++r;
    }
  }
}

}  // namespace bluelm::kernels::avx512
