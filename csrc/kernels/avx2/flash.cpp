// Prompt-chunk attention (kernels/common/flash_attention.h) with 8 lanes per
// ymm: 2 vectors of queries per group, 4 keys per score tile, 6 columns per
// P.V tile. The INT8 cache's block dots: vpmaddubsw on |k| and q * sign(k)
// (pairs of products below 2^15), then vpmaddwd.
#include <immintrin.h>

#include <cstring>

#include "kernels/avx2/avx2.h"
#include "kernels/common/flash_attention.h"

namespace bluelm::kernels::avx2 {
namespace {

struct Ymm {
  static constexpr int W = 8, kB = 2, kJ = 4, kD = 6;
  using F = __m256;
  static F zero() { return _mm256_setzero_ps(); }
  static F set1(float v) { return _mm256_set1_ps(v); }
  static F load(const float* p) { return _mm256_loadu_ps(p); }
  static void store(float* p, F v) { _mm256_storeu_ps(p, v); }
  static F add(F a, F b) { return _mm256_add_ps(a, b); }
  static F sub(F a, F b) { return _mm256_sub_ps(a, b); }
  static F mul(F a, F b) { return _mm256_mul_ps(a, b); }
  static F div(F a, F b) { return _mm256_div_ps(a, b); }
  static F fmadd(F a, F b, F c) { return _mm256_fmadd_ps(a, b, c); }
  static F fnmadd(F a, F b, F c) { return _mm256_fnmadd_ps(a, b, c); }
  static F max(F a, F b) { return _mm256_max_ps(a, b); }
  static F min(F a, F b) { return _mm256_min_ps(a, b); }
  static F round(F a) { return _mm256_round_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
  static F scale2n(F p, F n) {
    const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
  }
  static F select_in(F pos, F lo, F hi, F x, F y) {
    const __m256 m = _mm256_and_ps(_mm256_cmp_ps(lo, pos, _CMP_LE_OQ), _mm256_cmp_ps(pos, hi, _CMP_LE_OQ));
    return _mm256_blendv_ps(y, x, m);
  }
  static F select_eq(F a, F b, F x, F y) { return _mm256_blendv_ps(y, x, _mm256_cmp_ps(a, b, _CMP_EQ_OQ)); }
  static F cvt_i32(const int32_t* p) {
    return _mm256_cvtepi32_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  }

  static void f16_to_f32(const uint16_t* src, float* dst, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
      _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i))));
    for (; i < n; ++i) dst[i] = _cvtsh_ss(src[i]);
  }
  static void q8_0_to_f32(const BlockQ8_0* b, int64_t nb, float* dst) {
    for (int64_t k = 0; k < nb; ++k) {
      const __m256 d = _mm256_set1_ps(_cvtsh_ss(b[k].d));
      for (int h = 0; h < 32; h += 8) {
        const __m128i q = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(b[k].qs + h));
        _mm256_storeu_ps(dst + k * 32 + h, _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q))));
      }
    }
  }
  static void k_quants(const BlockQ8_0* b, int64_t nb, int8_t* dst) {
    for (int64_t k = 0; k < nb; ++k) std::memcpy(dst + k * 32, b[k].qs, 32);
  }
  template <int J, int B>
  static void dot_i8(const int8_t* k, int64_t ks, const int8_t* qb, int GL, const int32_t*, int32_t* out) {
    const __m256i ones = _mm256_set1_epi16(1);
    __m256i acc[J][B];
    for (int j = 0; j < J; ++j)
      for (int b = 0; b < B; ++b) acc[j][b] = _mm256_setzero_si256();
#pragma GCC unroll 8
    for (int c = 0; c < 8; ++c) {
      __m256i q[B];
#pragma GCC unroll 4
      for (int b = 0; b < B; ++b) q[b] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qb + (c * GL + b * W) * 4));
#pragma GCC unroll 16
      for (int j = 0; j < J; ++j) {
        int32_t k4;
        std::memcpy(&k4, k + j * ks + 4 * c, 4);
        const __m256i kk = _mm256_set1_epi32(k4), ka = _mm256_abs_epi8(kk);
#pragma GCC unroll 4
        for (int b = 0; b < B; ++b) {
          const __m256i p16 = _mm256_maddubs_epi16(ka, _mm256_sign_epi8(q[b], kk));
          acc[j][b] = _mm256_add_epi32(acc[j][b], _mm256_madd_epi16(p16, ones));
        }
      }
    }
    for (int j = 0; j < J; ++j)
      for (int b = 0; b < B; ++b) _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + j * GL + b * W), acc[j][b]);
  }
};

}  // namespace

void fill_flash(KernelTable& t) { set_flash_entries<Ymm>(t); }

}  // namespace bluelm::kernels::avx2
