// Helpers of the AVX-512 files (built with -mavx2 -mfma -mf16c
// -mavx512f/bw/vl/vnni); internal linkage, as x86/common.h.
#pragma once
// GCC 12's AVX-512 headers self-initialise "undefined" vectors, which
// -Wuninitialized flags inside the header (GCC bug 105593): silence it there only.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#pragma GCC diagnostic pop
#else
#include <immintrin.h>
#endif

#include <cstring>
#include <type_traits>

#include "kernels/x86/common.h"

namespace bluelm::kernels {
namespace {

// fn(std::integral_constant<int, T>{}) for a tile's token count T, 1 to Max:
// the small-batch tiles' template argument (gemv_batch.cpp, gemv_fast.cpp).
template <int Max, class Fn>
void with_tokens(int T, Fn&& fn) {
  if constexpr (Max > 1) {
    if (T < Max) return with_tokens<Max - 1>(T, fn);
  }
  fn(std::integral_constant<int, Max>{});
}

// acc[j] += sum of u8 * s8 over bytes 4j..4j+3 (wrapping; never near the limits here).
inline __m512i dpbusd512(__m512i acc, __m512i u, __m512i s) { return _mm512_dpbusd_epi32(acc, u, s); }

// dpbusd512(acc, u, the 4 signed bytes at s in every lane), the bytes read by
// the instruction's embedded {1to16} broadcast. From the intrinsics GCC emits
// a vpbroadcastd and a register dot, a vector op more per dot where each
// broadcast feeds one dot. The K-quant prompt tiles use it (test_kernels
// --bench, one Zen 4 core, alternated: Q6_K prefill 1.1-1.2x, Q4_K
// 1.00-1.04x; 1B Q4_K_M pp512 1.04-1.06x); not K-quant decode (x86/kquant_tiles.h
// tile_dot4), the Q4_0 x16 tile (SmolLM2 Q4_0 pp512 0.995x) nor the Q5_0/Q5_1
// x16 tile (its prefill 0.65x).
inline __m512i dpbusd512_bcast4(__m512i acc, __m512i u, const void* s) {
  typedef int32_t __attribute__((may_alias)) word;
  __asm__("vpdpbusd %2%{1to16%}, %1, %0" : "+v"(acc) : "v"(u), "m"(*static_cast<const word*>(s)));
  return acc;
}

inline __m256 hi256(__m512 v) { return _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)); }

// The 4 bytes at p in every 32-bit lane.
inline __m512i bcast4(const void* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return _mm512_set1_epi32(v);
}

// hsum() of 8 vectors at once, by transposing: lane i of the result is
// hsum(a[i]) (lo+hi, then lanes 0+2 / 1+3, then 0+1, the same adds).
inline __m256 hsum8(const __m256 (&a)[8]) {
  __m256 s[4], v[2];
  for (int i = 0; i < 4; ++i)
    s[i] = _mm256_add_ps(_mm256_permute2f128_ps(a[2 * i], a[2 * i + 1], 0x20),
                         _mm256_permute2f128_ps(a[2 * i], a[2 * i + 1], 0x31));
  for (int i = 0; i < 2; ++i)
    v[i] = _mm256_add_ps(_mm256_shuffle_ps(s[2 * i], s[2 * i + 1], _MM_SHUFFLE(1, 0, 1, 0)),
                         _mm256_shuffle_ps(s[2 * i], s[2 * i + 1], _MM_SHUFFLE(3, 2, 3, 2)));
  const __m256 r = _mm256_add_ps(_mm256_shuffle_ps(v[0], v[1], _MM_SHUFFLE(2, 0, 2, 0)),
                                 _mm256_shuffle_ps(v[0], v[1], _MM_SHUFFLE(3, 1, 3, 1)));
  // r holds keys [0, 2, 4, 6 | 1, 3, 5, 7]
  return _mm256_permutevar8x32_ps(r, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

// Values rounded to F16 and back: llama.cpp's F16 matmuls see the query and
// the softmax weights in F16 (attention.cpp, attend_step.cpp).
inline __m256 round_f16(__m256 v) { return _mm256_cvtph_ps(_mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT)); }
inline void round_row_f16(const float* x, float* y, int64_t n) {
  int64_t j = 0;
  for (; j + 8 <= n; j += 8) _mm256_storeu_ps(y + j, round_f16(_mm256_loadu_ps(x + j)));
  for (; j < n; ++j) y[j] = _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtps_ph(_mm_set_ss(x[j]), _MM_FROUND_TO_NEAREST_INT)));
}

}  // namespace
}  // namespace bluelm::kernels
