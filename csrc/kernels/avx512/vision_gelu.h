// GELU-tanh on 16 lanes, shared by the element-wise op (vision.cpp) and the
// int8 gemm's epilogue (i8.cpp), so both give the same bits. Include only
// from files built with -ffp-contract=off. Internal linkage.
#pragma once
#include "kernels/avx512/zmm.h"

namespace bluelm::kernels::avx512 {
namespace {

// x / (1 + 2^u), u = -2 sqrt(2/pi) log2(e) (x + 0.044715 x^3) clamped to 126
// (2^126 keeps the Newton step of the reciprocal finite; there and past it the
// result is 0 to within 2^-126 |x|): 2^u as 2^round(u) (scalef) times a degree-5
// fit of 2^f on |f| <= 1/2 (relative error 2e-7), and 1 / (1 + 2^u) by rcp14
// and one Newton step (relative error about 2^-28 before rounding), so no
// division (5 cycles a zmm on Zen 4).
inline __m512 gelu16(__m512 v) {
  const __m512 k2 = _mm512_set1_ps(-2.0f * 0.7978845608028654f * 1.44269504088896341f);
  const __m512 u = _mm512_min_ps(
      _mm512_mul_ps(k2, _mm512_fmadd_ps(_mm512_mul_ps(_mm512_set1_ps(0.044715f), v), _mm512_mul_ps(v, v), v)),
      _mm512_set1_ps(126.0f));
  const __m512 n = _mm512_roundscale_ps(u, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m512 f = _mm512_sub_ps(u, n);
  __m512 p = _mm512_set1_ps(0.001326472731307149f);
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(0.009671512991189957f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(0.05550733581185341f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(0.24022242426872253f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(0.6931470036506653f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.0f));
  const __m512 d = _mm512_add_ps(_mm512_set1_ps(1.0f), _mm512_scalef_ps(p, n));
  const __m512 r = _mm512_rcp14_ps(d);
  return _mm512_mul_ps(v, _mm512_mul_ps(r, _mm512_fnmadd_ps(d, r, _mm512_set1_ps(2.0f))));
}

}  // namespace
}  // namespace bluelm::kernels::avx512
