// The prompt-chunk attention lane type of the AVX-512 tables
// (kernels/common/flash_attention.h): 16 lanes per zmm, 3 vectors of queries per
// group, 8 keys per score tile and 8 columns per P.V tile (24 accumulators
// each); the INT8 cache's block dots use VNNI. Shared by avx512/flash.cpp and
// avx512_bf16/flash.cpp; internal linkage, as zmm.h.
#pragma once
#include "kernels/avx512/zmm.h"
#include "kernels/common/flash_attention.h"

namespace bluelm::kernels {
namespace {

struct Zmm {
  static constexpr int W = 16, kB = 3, kJ = 8, kD = 8;
  using F = __m512;
  static F zero() { return _mm512_setzero_ps(); }
  static F set1(float v) { return _mm512_set1_ps(v); }
  static F load(const float* p) { return _mm512_loadu_ps(p); }
  static void store(float* p, F v) { _mm512_storeu_ps(p, v); }
  static F add(F a, F b) { return _mm512_add_ps(a, b); }
  static F sub(F a, F b) { return _mm512_sub_ps(a, b); }
  static F mul(F a, F b) { return _mm512_mul_ps(a, b); }
  static F div(F a, F b) { return _mm512_div_ps(a, b); }
  static F fmadd(F a, F b, F c) { return _mm512_fmadd_ps(a, b, c); }
  static F fnmadd(F a, F b, F c) { return _mm512_fnmadd_ps(a, b, c); }
  static F max(F a, F b) { return _mm512_max_ps(a, b); }
  static F min(F a, F b) { return _mm512_min_ps(a, b); }
  static F round(F a) { return _mm512_roundscale_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
  static F scale2n(F p, F n) {
    const __m512i e = _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)), 23);
    return _mm512_mul_ps(p, _mm512_castsi512_ps(e));
  }
  static F select_in(F pos, F lo, F hi, F x, F y) {
    const __mmask16 m = _mm512_cmp_ps_mask(lo, pos, _CMP_LE_OQ) & _mm512_cmp_ps_mask(pos, hi, _CMP_LE_OQ);
    return _mm512_mask_blend_ps(m, y, x);
  }
  static F select_eq(F a, F b, F x, F y) { return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(a, b, _CMP_EQ_OQ), y, x); }
  static F cvt_i32(const int32_t* p) { return _mm512_cvtepi32_ps(_mm512_loadu_si512(p)); }

  static void f16_to_f32(const uint16_t* src, float* dst, int64_t n) {
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
      _mm512_storeu_ps(dst + i, _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i))));
    for (; i < n; ++i) dst[i] = _cvtsh_ss(src[i]);
  }
  static void q8_0_to_f32(const BlockQ8_0* b, int64_t nb, float* dst) {
    for (int64_t k = 0; k < nb; ++k) {
      const __m512 d = _mm512_set1_ps(_cvtsh_ss(b[k].d));
      for (int h = 0; h < 32; h += 16) {
        const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b[k].qs + h));
        _mm512_storeu_ps(dst + k * 32 + h, _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q))));
      }
    }
  }
  // vpdpbusd multiplies unsigned by signed bytes: keys are kept as k + 128
  // (k xor 0x80) and dot_i8 takes 128 * the query's block sum back off.
  static void k_quants(const BlockQ8_0* b, int64_t nb, int8_t* dst) {
    const __m256i flip = _mm256_set1_epi8(static_cast<char>(0x80));
    for (int64_t k = 0; k < nb; ++k)
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + k * 32),
                          _mm256_xor_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(b[k].qs)), flip));
  }
  template <int J, int B>
  static void dot_i8(const int8_t* k, int64_t ks, const int8_t* qb, int GL, const int32_t* qsum, int32_t* out) {
    __m512i acc[J][B];
#pragma GCC unroll 16
    for (int j = 0; j < J; ++j)
#pragma GCC unroll 4
      for (int b = 0; b < B; ++b) acc[j][b] = _mm512_setzero_si512();
#pragma GCC unroll 8
    for (int c = 0; c < 8; ++c) {
      __m512i q[B];
#pragma GCC unroll 4
      for (int b = 0; b < B; ++b) q[b] = _mm512_loadu_si512(qb + (c * GL + b * W) * 4);
#pragma GCC unroll 16
      for (int j = 0; j < J; ++j) {
        const __m512i kk = bcast4(k + j * ks + 4 * c);
#pragma GCC unroll 4
        for (int b = 0; b < B; ++b) acc[j][b] = dpbusd512(acc[j][b], kk, q[b]);
      }
    }
#pragma GCC unroll 4
    for (int b = 0; b < B; ++b) {
      const __m512i off = _mm512_slli_epi32(_mm512_loadu_si512(qsum + b * W), 7);
#pragma GCC unroll 16
      for (int j = 0; j < J; ++j) _mm512_storeu_si512(out + j * GL + b * W, _mm512_sub_epi32(acc[j][b], off));
    }
  }
};

}  // namespace
}  // namespace bluelm::kernels
