// AVX2 Q4_K, Q5_K and Q6_K: x86/kquant_tiles.h with 8 rows per ymm (the
// 4-element sums by vpmaddubsw + vpmaddwd, the min terms by vpmaddwd), on
// 8-row interleaved groups (kernels/kquant_pack.h) repacked at load, or the
// file layout interleaved per call. Bit-identical to the scalar reference.
#include <immintrin.h>

#include "kernels/avx2/avx2.h"
#include "kernels/kquant_pack.h"
#include "kernels/x86/kquant_tiles.h"

namespace bluelm::kernels::avx2 {
namespace {

struct V8 {
  using I = __m256i;
  using F = __m256;
  static constexpr int R = 8;
  static constexpr int kMaxT = 4;  // tokens per prefill tile (measured: 4 beats 8, which spills)
  static I load(const char* p) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)); }
  static I zero() { return _mm256_setzero_si256(); }
  static I set32(int32_t v) { return _mm256_set1_epi32(v); }
  static I set8(char c) { return _mm256_set1_epi8(c); }
  static I add(I a, I b) { return _mm256_add_epi32(a, b); }
  static I mul(I a, I b) { return _mm256_mullo_epi32(a, b); }
  static I and_(I a, I b) { return _mm256_and_si256(a, b); }
  static I or_(I a, I b) { return _mm256_or_si256(a, b); }
  template <int n>
  static I shl16(I a) { return _mm256_slli_epi16(a, n); }
  template <int n>
  static I shr16(I a) { return _mm256_srli_epi16(a, n); }
  // u <= 63: a pair of products is at most 2 * 63 * 128, no int16 saturation.
  static I dot4(I acc, I u, const int8_t* x) {
    int32_t v;
    std::memcpy(&v, x, 4);
    const I p = _mm256_maddubs_epi16(u, _mm256_set1_epi32(v));
    return _mm256_add_epi32(acc, _mm256_madd_epi16(p, _mm256_set1_epi16(1)));
  }
  static I dot2(I acc, I pairs, int32_t xw) {
    return _mm256_add_epi32(acc, _mm256_madd_epi16(pairs, _mm256_set1_epi32(xw)));
  }
  static __m128i bytes(const char* p) { return _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)); }
  static I widen_u8(__m128i b) { return _mm256_cvtepu8_epi32(b); }
  static I widen_s8(__m128i b) { return _mm256_cvtepi8_epi32(b); }
  static I pairs(__m128i a, __m128i b) { return _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(a, b)); }
  static F h2f(const char* p) { return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))); }
  static F set1(float v) { return _mm256_set1_ps(v); }
  static F mul(F a, F b) { return _mm256_mul_ps(a, b); }
  static F cvt(I a) { return _mm256_cvtepi32_ps(a); }
  static F fma(F a, F b, F c) { return _mm256_fmadd_ps(a, b, c); }
  static F fnma(F a, F b, F c) { return _mm256_fnmadd_ps(a, b, c); }
  static void store(float* p, F v) { _mm256_storeu_ps(p, v); }
};

}  // namespace

void fill_kquants(KernelTable& t) {
  set_kquant_entries<K4Fmt<V8, false>, K4Fmt<V8, true>, K6Fmt<V8>, V8>(t);
}

}  // namespace bluelm::kernels::avx2
