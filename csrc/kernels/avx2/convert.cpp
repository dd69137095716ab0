// AVX2 activation conversion: Q8_0 / Q8_1 blocks, F16, BF16, each byte as the
// scalar codecs write it.
#include "kernels/avx2/avx2.h"
#include "kernels/common/convert.h"
#include "kernels/x86/common.h"

namespace bluelm::kernels::avx2 {
namespace {

struct Quantizer {
  // One block of 32 floats -> d and 32 int8 as the reference codec; returns sum(q)
  // and the unrounded d in *d_f32.
  static int block(const float* x, uint16_t* d_out, int8_t* qs, float* d_f32) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 v[4];
    __m256 amax = _mm256_setzero_ps();
    for (int j = 0; j < 4; ++j) {
      v[j] = _mm256_loadu_ps(x + 8 * j);
      amax = _mm256_max_ps(amax, _mm256_andnot_ps(sign, v[j]));
    }
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(amax), _mm256_extractf128_ps(amax, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    const float amax_s = _mm_cvtss_f32(m);
    const float d = amax_s / 127.0f;
    const float id = amax_s != 0.0f ? 127.0f / amax_s : 0.0f;  // as the reference codec
    *d_out = kernels::f2h(d);
    *d_f32 = d;
    const __m256 idv = _mm256_set1_ps(id);
    __m256i i32[4];
    for (int j = 0; j < 4; ++j)
      i32[j] = _mm256_cvtps_epi32(
          _mm256_round_ps(_mm256_mul_ps(v[j], idv), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    const __m256i sum = _mm256_add_epi32(_mm256_add_epi32(i32[0], i32[1]), _mm256_add_epi32(i32[2], i32[3]));
    // packs interleave 128-bit lanes; the permute restores element order.
    const __m256i p16a = _mm256_packs_epi32(i32[0], i32[1]);
    const __m256i p16b = _mm256_packs_epi32(i32[2], i32[3]);
    const __m256i p8 = _mm256_packs_epi16(p16a, p16b);
    const __m256i q = _mm256_permutevar8x32_epi32(p8, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(qs), q);
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(sum), _mm256_extracti128_si256(sum, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
    return _mm_cvtsi128_si32(s);
  }

  static uint16_t f2h(float f) { return kernels::f2h(f); }

  static constexpr int kF16 = 8;
  static void f16(const float* x, uint16_t* o) {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(o), _mm256_cvtps_ph(_mm256_loadu_ps(x), _MM_FROUND_TO_NEAREST_INT));
  }

  static constexpr int kBF16 = 8;
  static void bf16(const float* x, uint16_t* o) {
    const __m256i u = _mm256_castps_si256(_mm256_loadu_ps(x));
    const __m256i nan = _mm256_cmpgt_epi32(_mm256_and_si256(u, _mm256_set1_epi32(0x7fffffff)),
                                           _mm256_set1_epi32(0x7f800000));
    const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
    const __m256i r = _mm256_srli_epi32(_mm256_add_epi32(u, _mm256_add_epi32(lsb, _mm256_set1_epi32(0x7fff))), 16);
    const __m256i qn = _mm256_or_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(64));
    const __m256i v = _mm256_blendv_epi8(r, qn, nan);
    const __m256i p = _mm256_permute4x64_epi64(_mm256_packus_epi32(v, v), 0x08);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(o), _mm256_castsi256_si128(p));
  }
};

}  // namespace

void fill_convert(KernelTable& t) { set_converts<Quantizer>(t); }

}  // namespace bluelm::kernels::avx2
