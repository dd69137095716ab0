// common/taylor_exp.h's e^x on x86 vectors: 8 lanes in the AVX2 files, 16 in
// the AVX-512 ones; the arithmetic is the same, lane by lane. Internal linkage.
#pragma once
#include <immintrin.h>

#include "kernels/common/taylor_exp.h"

namespace bluelm::kernels {
namespace {

struct V8 {
  using F = __m256;
  static F set1(float v) { return _mm256_set1_ps(v); }
  static F min(F a, F b) { return _mm256_min_ps(a, b); }
  static F max(F a, F b) { return _mm256_max_ps(a, b); }
  static F mul(F a, F b) { return _mm256_mul_ps(a, b); }
  static F fmadd(F a, F b, F c) { return _mm256_fmadd_ps(a, b, c); }
  static F fnmadd(F a, F b, F c) { return _mm256_fnmadd_ps(a, b, c); }
  static F round(F a) { return _mm256_round_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
  static F scale2n(F p, F n) {  // the exponent bits of 2^n, then one multiply
    const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
  }
};
inline __m256 taylor_exp8(__m256 x) { return taylor_exp<V8>(x); }

#ifdef __AVX512F__
struct V16 {
  using F = __m512;
  static F set1(float v) { return _mm512_set1_ps(v); }
  static F min(F a, F b) { return _mm512_min_ps(a, b); }
  static F max(F a, F b) { return _mm512_max_ps(a, b); }
  static F mul(F a, F b) { return _mm512_mul_ps(a, b); }
  static F fmadd(F a, F b, F c) { return _mm512_fmadd_ps(a, b, c); }
  static F fnmadd(F a, F b, F c) { return _mm512_fnmadd_ps(a, b, c); }
  static F round(F a) { return _mm512_roundscale_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
  static F scale2n(F p, F n) { return _mm512_scalef_ps(p, n); }
};
inline __m512 taylor_exp16(__m512 x) { return taylor_exp<V16>(x); }
#endif

}  // namespace
}  // namespace bluelm::kernels
