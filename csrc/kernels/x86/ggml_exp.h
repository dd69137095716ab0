// ggml's x86 vector exp and softmax, shared by the AVX2 and AVX-512 kernel
// files (internal linkage, as x86/common.h).
#pragma once
#include <immintrin.h>
#include <math.h>

#include <cstdint>

#include "kernels/x86/common.h"

namespace bluelm::kernels {
namespace {

// exp(x) = 2^n * e^b: n by the 1.5 * 2^23 rounding trick, b = x - n*ln2 in two FMAs,
// e^b - 1 by a degree-5 polynomial; lanes with |n| > 126 take a two-step scale.
inline __m256 exp8(__m256 x) {
  const __m256 shift = _mm256_set1_ps(0x1.8p23f);
  const __m256 z = _mm256_fmadd_ps(x, _mm256_set1_ps(0x1.715476p+0f), shift);
  const __m256 n = _mm256_sub_ps(z, shift);
  const __m256 b = _mm256_fnmadd_ps(n, _mm256_set1_ps(0x1.7f7d1cp-20f),
                                    _mm256_fnmadd_ps(n, _mm256_set1_ps(0x1.62e4p-1f), x));
  const __m256i e = _mm256_slli_epi32(_mm256_castps_si256(z), 23);
  const __m256 k = _mm256_castsi256_ps(_mm256_add_epi32(e, _mm256_castps_si256(_mm256_set1_ps(1.0f))));
  const __m256 u = _mm256_mul_ps(b, b);
  const __m256 hi = _mm256_fmadd_ps(_mm256_fmadd_ps(_mm256_set1_ps(0x1.0e4020p-7f), b, _mm256_set1_ps(0x1.573e2ep-5f)), u,
                                    _mm256_fmadd_ps(_mm256_set1_ps(0x1.555e66p-3f), b, _mm256_set1_ps(0x1.fffdb6p-2f)));
  const __m256 p = _mm256_fmadd_ps(hi, u, _mm256_mul_ps(_mm256_set1_ps(0x1.ffffecp-1f), b));
  const __m256 an = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), n);
  const __m256 big = _mm256_cmp_ps(an, _mm256_set1_ps(126.0f), _CMP_GT_OQ);
  const __m256 normal = _mm256_fmadd_ps(p, k, k);
  if (!_mm256_movemask_ps(big)) return normal;
  const __m256i g = _mm256_and_si256(_mm256_castps_si256(_mm256_cmp_ps(n, _mm256_setzero_ps(), _CMP_LE_OQ)),
                                     _mm256_set1_epi32(int(0x82000000u)));
  const __m256 s1 = _mm256_castsi256_ps(_mm256_add_epi32(g, _mm256_set1_epi32(0x7f000000)));
  const __m256 s2 = _mm256_castsi256_ps(_mm256_sub_epi32(e, g));
  const __m256 huge = _mm256_cmp_ps(an, _mm256_set1_ps(192.0f), _CMP_GT_OQ);
  const __m256 scaled = _mm256_mul_ps(_mm256_fmadd_ps(s2, p, s2), s1);
  const __m256 r = _mm256_blendv_ps(normal, scaled, big);
  return _mm256_blendv_ps(r, _mm256_mul_ps(s1, s1), huge);
}

// Softmax in place as ggml's CPU code computes it: exp8 of s - max, the sum of
// each 8-lane group's hsum in a double, one reciprocal multiply. The max by
// vector (it ignores NaN scores as fmaxf does; a +-0 tie cannot change
// exp(s - max)).
inline void softmax_ggml(float* s, int64_t n) {
  __m256 m8 = _mm256_set1_ps(-INFINITY);
  int64_t j = 0;
  for (; j + 8 <= n; j += 8) m8 = _mm256_max_ps(_mm256_loadu_ps(s + j), m8);
  __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(m8), _mm256_extractf128_ps(m8, 1));
  m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
  m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
  float mx = _mm_cvtss_f32(m4);
  for (; j < n; ++j) mx = s[j] > mx ? s[j] : mx;
  const __m256 vmx = _mm256_set1_ps(mx);
  double sum = 0.0;
  for (j = 0; j + 8 <= n; j += 8) {
    const __m256 v = exp8(_mm256_sub_ps(_mm256_loadu_ps(s + j), vmx));
    _mm256_storeu_ps(s + j, v);
    sum += hsum(v);
  }
  if (j < n) {  // padded KV positions contribute exact zeros
    alignas(32) float t[8] = {};
    for (int64_t l = 0; l < n - j; ++l) t[l] = s[j + l];
    _mm256_store_ps(t, exp8(_mm256_sub_ps(_mm256_load_ps(t), vmx)));
    for (int64_t l = n - j; l < 8; ++l) t[l] = 0.0f;
    for (int64_t l = 0; l < n - j; ++l) s[j + l] = t[l];
    sum += hsum(_mm256_load_ps(t));
  }
  const __m256 inv = _mm256_set1_ps(static_cast<float>(1.0 / sum));
  for (j = 0; j + 8 <= n; j += 8) _mm256_storeu_ps(s + j, _mm256_mul_ps(_mm256_loadu_ps(s + j), inv));
  for (; j < n; ++j) s[j] *= _mm256_cvtss_f32(inv);
}

}  // namespace
}  // namespace bluelm::kernels
