// e^x for the vision encoder's softmax and GELU on vectors of every ISA:
// x clamped to [-87, 88], 2^n * p(r) with n = round(x / ln 2),
// r = x - n ln 2 (ln 2 split in two), p the degree-6 Taylor polynomial
// (relative error about 2e-7). V, the ISA's traits (below, each compiled only
// where its instructions are), supplies the vector type F and set1, min, max,
// mul, fmadd(a, b, c) = a*b + c, fnmadd(a, b, c) = c - a*b (both fused), round
// (to nearest) and scale2n(p, n) = p * 2^n; the arithmetic is the same, lane
// by lane. Internal linkage. The AVX-512 files include avx512/zmm.h first.
#pragma once

#include "kernels/common/intrinsics.h"

namespace bluelm::kernels {
namespace {

template <class V>
inline typename V::F taylor_exp(typename V::F x) {
  using F = typename V::F;
  x = V::min(V::max(x, V::set1(-87.0f)), V::set1(88.0f));
  const F n = V::round(V::mul(x, V::set1(1.44269504088896341f)));
  F r = V::fnmadd(n, V::set1(0.693359375f), x);  // ln2 split hi/lo
  r = V::fnmadd(n, V::set1(-2.12194440e-4f), r);
  F p = V::set1(1.0f / 720.0f);
  p = V::fmadd(p, r, V::set1(1.0f / 120.0f));
  p = V::fmadd(p, r, V::set1(1.0f / 24.0f));
  p = V::fmadd(p, r, V::set1(1.0f / 6.0f));
  p = V::fmadd(p, r, V::set1(0.5f));
  p = V::fmadd(p, r, V::set1(1.0f));
  p = V::fmadd(p, r, V::set1(1.0f));
  return V::scale2n(p, n);
}

#if defined(__AVX2__) && defined(__FMA__)
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
#endif

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

#if defined(__aarch64__)
struct V4 {
  using F = float32x4_t;
  static F set1(float v) { return vdupq_n_f32(v); }
  static F min(F a, F b) { return vminq_f32(a, b); }
  static F max(F a, F b) { return vmaxq_f32(a, b); }
  static F mul(F a, F b) { return vmulq_f32(a, b); }
  static F fmadd(F a, F b, F c) { return vfmaq_f32(c, a, b); }
  static F fnmadd(F a, F b, F c) { return vfmsq_f32(c, a, b); }
  static F round(F a) { return vrndnq_f32(a); }
  static F scale2n(F p, F n) {  // the exponent bits of 2^n, then one multiply
    const int32x4_t e = vshlq_n_s32(vaddq_s32(vcvtnq_s32_f32(n), vdupq_n_s32(127)), 23);
    return vmulq_f32(p, vreinterpretq_f32_s32(e));
  }
};
inline float32x4_t taylor_exp4(float32x4_t x) { return taylor_exp<V4>(x); }
#endif

}  // namespace
}  // namespace bluelm::kernels
