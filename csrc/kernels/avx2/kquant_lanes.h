// The AVX2 lane traits of the row-interleaved K-quant tiles (x86/kquant_tiles.h
// and x86/kquant_lowbit_tiles.h list what a traits class gives): 8 rows per
// ymm, the 4-element sums by vpmaddubsw + vpmaddwd. Shared by the AVX2 files
// that instantiate those tiles (kquants.cpp, kquants_lowbit.cpp).
#pragma once
#include <immintrin.h>

#include <cstdint>
#include <cstring>

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
  static I sel(I m, I a, I b) { return _mm256_or_si256(_mm256_and_si256(m, a), _mm256_andnot_si256(m, b)); }
  template <int n>
  static I shl16(I a) { return _mm256_slli_epi16(a, n); }
  template <int n>
  static I shr16(I a) { return _mm256_srli_epi16(a, n); }
  // u <= 63: a pair of products is at most 2 * 63 * 128, no int16 saturation.
  static constexpr bool kDot4Exact = false;
  // Runs of dot4 (x86/kquant_tiles.h run_dot4): int16 pairs added in int16, widened once.
  static I dot4_i16(I part, I u, const int8_t* x) {
    int32_t v;
    std::memcpy(&v, x, 4);
    return _mm256_add_epi16(part, _mm256_maddubs_epi16(u, _mm256_set1_epi32(v)));
  }
  static I widen_i16(I part) { return _mm256_madd_epi16(part, _mm256_set1_epi16(1)); }
  // A run of one step (the tiles' int16 runs cover every AVX2 use today).
  static I dot4(I acc, I u, const int8_t* x) { return _mm256_add_epi32(acc, widen_i16(dot4_i16(zero(), u, x))); }
  static I dot4_prompt(I acc, I u, const int8_t* x) { return dot4(acc, u, x); }
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
  // The signed-level types (IQ4_XS): a 16-byte table in each 128-bit half,
  // looked up by nibbles; |w| . sign(x, w) by vpmaddubsw is exact (|w|, |x| <= 127).
  static I table16(const int8_t* p) {
    return _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  }
  static I lookup(I table, I nib) { return _mm256_shuffle_epi8(table, nib); }
  static I abs8(I a) { return _mm256_abs_epi8(a); }
  static I sdot4(I acc, I aw, I w, const int8_t* x) {
    int32_t v;
    std::memcpy(&v, x, 4);
    const I p = _mm256_maddubs_epi16(aw, _mm256_sign_epi8(_mm256_set1_epi32(v), w));
    return _mm256_add_epi32(acc, _mm256_madd_epi16(p, _mm256_set1_epi16(1)));
  }
};

}  // namespace
}  // namespace bluelm::kernels::avx2
