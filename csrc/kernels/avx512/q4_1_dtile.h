// AVX-512 Q4_1 decode tiles on packed groups of 4 rows (kernels/repack.h):
// the one-token decode's (decode.cpp); the small-batch gemv (gemv_batch.cpp:
// btile) runs the same lanes with this file's fold4.
// Internal linkage: included by AVX-512 files only.
#pragma once
#include <cstring>

#include "kernels/avx512/avx512.h"
#include "kernels/avx512/zmm.h"
#include "kernels/x86/tiles256.h"

namespace bluelm::kernels::avx512 {
namespace {

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

inline void prep_dec(const char* x, int64_t nb, DecQ* out) {
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

// A block of a packed group, unpacked: the 4 rows' nibbles as vpdpbusd takes
// them against a token's [q0-15, q0-15, q16-31, q16-31] (rows 0, 1 in u01,
// rows 2, 3 in u23) and their scales, h = [d0, m0, d1, m1, d2, m2, d3, m3].
struct GroupBlock {
  __m512i u01, u23;
  __m256 h;
};

inline GroupBlock unpack_block(const char* gb) {
  // Quants of row i are dwords 1+5i..4+5i, [d, m] dword 5i; indices >= 16 read the group's tail.
  const __m512i qidx = _mm512_setr_epi32(1, 2, 3, 4, 6, 7, 8, 9, 11, 12, 13, 14, 16, 17, 18, 19);
  const __m512i hidx = _mm512_setr_epi32(0, 5, 10, 15, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0);
  const __m512i m4 = _mm512_set1_epi8(0x0f);
  // The loop's few bytes per instruction leave too few loads in flight for
  // DRAM: ask for the stream 2 KiB ahead (a hint; never faults). Two lines
  // per 80-byte step so none is skipped.
  _mm_prefetch(gb + 2048, _MM_HINT_T0);
  _mm_prefetch(gb + 2048 + 64, _MM_HINT_T0);
  const __m512i z0 = _mm512_loadu_si512(gb);
  const __m512i z1 = _mm512_maskz_loadu_epi32(0x000f, gb + 64);
  const __m512i qs = _mm512_permutex2var_epi32(z0, qidx, z1);
  const __m512i lo = _mm512_and_si512(qs, m4);
  const __m512i hi = _mm512_and_si512(_mm512_srli_epi16(qs, 4), m4);
  return {_mm512_shuffle_i64x2(lo, hi, _MM_SHUFFLE(1, 0, 1, 0)), _mm512_shuffle_i64x2(lo, hi, _MM_SHUFFLE(3, 2, 3, 2)),
          _mm256_cvtph_ps(_mm512_castsi512_si128(_mm512_permutexvar_epi32(hidx, z0)))};
}

// One packed Q4_1 group of 4 rows x T tokens (20-byte blocks): each block's
// weights are unpacked once and serve the T tokens, each of which runs exactly
// the one-token sequence (its own accumulators, the same operations in the
// same order), so every output has the bits of T = 1.
template <int T>
void dtile(const char* g, const DecQ* const* px, int64_t nb, float* const* y) {
  constexpr int kBytes = 4 * sizeof(BlockQ4_1);
  // Scale of row i: lane 2i of prod, in that row's quarters.
  const __m512i s01 = _mm512_setr_epi32(0, 0, 0, 0, 2, 2, 2, 2, 0, 0, 0, 0, 2, 2, 2, 2);
  const __m512i s23 = _mm512_setr_epi32(4, 4, 4, 4, 6, 6, 6, 6, 4, 4, 4, 4, 6, 6, 6, 6);
  __m512 acc01[T], acc23[T];
  __m256 macc[T];  // lane 2i+1 sums m_w * s_x of row i
  for (int t = 0; t < T; ++t) {
    acc01[t] = acc23[t] = _mm512_setzero_ps();
    macc[t] = _mm256_setzero_ps();
  }
  for (int64_t b = 0; b < nb; ++b) {
    const GroupBlock blk = unpack_block(g + b * kBytes);
    const __m256 h = blk.h;
    const __m512i u01 = blk.u01, u23 = blk.u23;
    const __m512i st = _mm512_setzero_si512();
    for (int t = 0; t < T; ++t) {
      const DecQ& x = px[t][b];
      const __m256 prod = _mm256_mul_ps(h, x.xd);  // [dw*dx, mw*sx] per row
      macc[t] = _mm256_add_ps(macc[t], prod);
      const __m512 pz = _mm512_castps256_ps512(prod);
      acc01[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dpbusd512(st, u01, x.q)), _mm512_permutexvar_ps(s01, pz), acc01[t]);
      acc23[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dpbusd512(st, u23, x.q)), _mm512_permutexvar_ps(s23, pz), acc23[t]);
    }
  }
  for (int t = 0; t < T; ++t) {
    const __m128 r = fold4(acc01[t], acc23[t]);
    // m sums of rows 0..3 from lanes 1, 3, 5, 7
    const __m128 m =
        _mm256_castps256_ps128(_mm256_permutevar8x32_ps(macc[t], _mm256_setr_epi32(1, 3, 5, 7, 0, 0, 0, 0)));
    _mm_storeu_ps(y[t], _mm_add_ps(r, m));
  }
}

}  // namespace
}  // namespace bluelm::kernels::avx512
