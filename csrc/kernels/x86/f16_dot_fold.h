// ggml_vec_dot_f16's x86 fold of a dot product's lanes, and the one-token F16
// attention scores built on it (avx2/attention.cpp, avx512/attend_step.cpp): a key's four
// 8-lane FMA chains a0..a3 become x = (a0 + a2) + (a1 + a3), then lo + hi
// (t0..t3), then two hadds: (t0 + t1) + (t2 + t3). Include only from files
// compiled with at least -mavx2 (anonymous namespace: a private copy each).
#pragma once
#include <immintrin.h>

#include <cstddef>
#include <cstdint>

namespace bluelm::kernels {
namespace {

// One key's x folded to its score.
inline float fold1(__m256 x) {
  __m128 t = _mm_add_ps(_mm256_castps256_ps128(x), _mm256_extractf128_ps(x, 1));
  t = _mm_hadd_ps(t, t);
  t = _mm_hadd_ps(t, t);
  return _mm_cvtss_f32(t);
}

// Eight keys' x at once, lane i the score of key i: each lane's adds are fold1's, in its order.
inline __m256 fold8(const __m256 (&x)[8]) {
  __m256 s[4];
  for (int i = 0; i < 4; ++i)
    s[i] = _mm256_add_ps(_mm256_permute2f128_ps(x[2 * i], x[2 * i + 1], 0x20),
                         _mm256_permute2f128_ps(x[2 * i], x[2 * i + 1], 0x31));
  // hadd pairs within 128-bit halves: keys [0, 2, 4, 6 | 1, 3, 5, 7]
  const __m256 r = _mm256_hadd_ps(_mm256_hadd_ps(s[0], s[1]), _mm256_hadd_ps(s[2], s[3]));
  return _mm256_permutevar8x32_ps(r, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

// The one-token scores of n keys (key j at k + j * stride), scale times each
// key's Chains(key, qh, hd) folded: 8 keys at a time by fold8, the rest by fold1.
template <__m256 (*Chains)(const uint16_t*, const float*, int64_t)>
inline void folded_scores(const uint16_t* k, size_t stride, const float* qh, int64_t hd, int64_t n, float scale,
                          float* out) {
  const __m256 vs = _mm256_set1_ps(scale);
  int64_t j = 0;
  for (; j + 8 <= n; j += 8) {
    __m256 x[8];
    for (int i = 0; i < 8; ++i) x[i] = Chains(k + (j + i) * stride, qh, hd);
    _mm256_storeu_ps(out + j, _mm256_mul_ps(fold8(x), vs));
  }
  for (; j < n; ++j) out[j] = fold1(Chains(k + j * stride, qh, hd)) * scale;
}

}  // namespace
}  // namespace bluelm::kernels
