// AVX-512 VNNI Q4_K, Q5_K and Q6_K (and Q2_K, Q3_K, IQ4_XS: x86/kquant_lowbit_tiles.h):
// x86/kquant_tiles.h with 16 rows per zmm
// (vpdpbusd for the 4-element sums, vpdpwssd for the min terms), on 16-row
// interleaved groups (kernels/kquant_pack.h) repacked at load, or the file
// layout interleaved per call; the Q8_K activation converter. Bit-identical to
// the scalar reference.
#include "kernels/avx512/avx512.h"
#include "kernels/avx512/zmm.h"
#include "kernels/kquant_pack.h"
#include "kernels/x86/kquant_lowbit_tiles.h"
#include "kernels/x86/kquant_tiles.h"

namespace bluelm::kernels::avx512 {
namespace {

struct V16 {
  using I = __m512i;
  using F = __m512;
  static constexpr int R = 16;
  static constexpr int kMaxT = 8;  // tokens per prefill tile (measured: 8 beats 4 for Q4_K by 11-18%)
  static I load(const char* p) { return _mm512_loadu_si512(p); }
  static I zero() { return _mm512_setzero_si512(); }
  static I set32(int32_t v) { return _mm512_set1_epi32(v); }
  static I set8(char c) { return _mm512_set1_epi8(c); }
  static I add(I a, I b) { return _mm512_add_epi32(a, b); }
  static I mul(I a, I b) { return _mm512_mullo_epi32(a, b); }
  static I and_(I a, I b) { return _mm512_and_si512(a, b); }
  static I or_(I a, I b) { return _mm512_or_si512(a, b); }
  // m ? a : b. vpternlogd overwrites its first operand: b, a temporary in the
  // tiles, rather than the mask, which a copy would then have to keep
  static I sel(I m, I a, I b) { return _mm512_ternarylogic_epi32(b, a, m, 0xd8); }
  template <int n>
  static I shl16(I a) { return _mm512_slli_epi16(a, n); }
  template <int n>
  static I shr16(I a) { return _mm512_srli_epi16(a, n); }
  template <int n>
  static I shl32(I a) { return _mm512_slli_epi32(a, n); }
  template <int n>
  static I sar32(I a) { return _mm512_srai_epi32(a, n); }
  static constexpr bool kDot4Exact = true;  // vpdpbusd: u8 x s8 products summed in int32
  static I dot4(I acc, I u, const int8_t* x) { return _mm512_dpbusd_epi32(acc, u, bcast4(x)); }
  static I dot4_prompt(I acc, I u, const int8_t* x) { return dpbusd512_bcast4(acc, u, x); }
  static I dot2(I acc, I pairs, int32_t xw) { return _mm512_dpwssd_epi32(acc, pairs, _mm512_set1_epi32(xw)); }
  static __m128i bytes(const char* p) { return _mm_loadu_si128(reinterpret_cast<const __m128i*>(p)); }
  static I widen_u8(__m128i b) { return _mm512_cvtepu8_epi32(b); }
  static I widen_s8(__m128i b) { return _mm512_cvtepi8_epi32(b); }
  static I pairs(__m128i a, __m128i b) {
    const __m256i ab = _mm256_set_m128i(_mm_unpackhi_epi8(a, b), _mm_unpacklo_epi8(a, b));
    return _mm512_cvtepu8_epi16(ab);
  }
  static F h2f(const char* p) { return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))); }
  // IQ4_XS (IQ4XSBiasedFmt)
  static I table16(const int8_t* p) {
    return _mm512_broadcast_i32x4(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  }
  static I lookup(I table, I nib) { return _mm512_shuffle_epi8(table, nib); }
  static I xor_(I a, I b) { return _mm512_xor_si512(a, b); }
  static I widen_u16(const char* p) {
    return _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  }
  static F set1(float v) { return _mm512_set1_ps(v); }
  static F mul(F a, F b) { return _mm512_mul_ps(a, b); }
  static F cvt(I a) { return _mm512_cvtepi32_ps(a); }
  static F fma(F a, F b, F c) { return _mm512_fmadd_ps(a, b, c); }
  static F fnma(F a, F b, F c) { return _mm512_fnmadd_ps(a, b, c); }
  static void store(float* p, F v) { _mm512_storeu_ps(p, v); }
};

// The Q8_K activation row of the K-quant gemms: the scalar codec
// (core/quantize.cpp quantize_row_q8_k) 16 lanes at a time, with its bits: the
// first value of largest magnitude (NaN never is one: vmaxps keeps its second
// operand), q = min(127, round-to-nearest-even(iscale * x)) by the same
// 1.5 * 2^23 trick, each 16's sum from the stored bytes, d = 1 / iscale. Decode
// runs it on one thread before every K-quant matmul.
void convert_q8_k(const float* x, void* y, int64_t K) {
  BlockQ8_K* o = static_cast<BlockQ8_K*>(y);
  const __m512i mant = _mm512_set1_epi32(0x007fffff), half = _mm512_set1_epi32(0x00400000),
                top = _mm512_set1_epi32(127);
  const __m512 magic = _mm512_set1_ps(12582912.0f);
  for (int64_t b = 0; b < K / QK_K; ++b, x += QK_K) {
    __m512 am = _mm512_setzero_ps();
    for (int j = 0; j < 16; ++j) am = _mm512_max_ps(_mm512_abs_ps(_mm512_loadu_ps(x + 16 * j)), am);
    const float amax = _mm512_reduce_max_ps(am);
    if (amax == 0) {
      std::memset(&o[b], 0, sizeof(BlockQ8_K));
      continue;
    }
    float max = 0;
    for (int j = 0; j < 16; ++j) {
      const __m512 a = _mm512_abs_ps(_mm512_loadu_ps(x + 16 * j));
      const unsigned m = _mm512_cmp_ps_mask(a, _mm512_set1_ps(amax), _CMP_EQ_OQ);
      if (m) {
        max = x[16 * j + __builtin_ctz(m)];
        break;
      }
    }
    const float iscale = -127.0f / max;
    const __m512 is = _mm512_set1_ps(iscale);
    for (int j = 0; j < 16; ++j) {
      // The product rounds on its own, as the codec's: GCC fused mul_ps + add_ps
      // into one FMA, whose rounding differs on near-ties (q off by one).
      const __m512 p =
          _mm512_mul_round_ps(is, _mm512_loadu_ps(x + 16 * j), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
      const __m512 s = _mm512_add_ps(p, magic);
      __m512i q = _mm512_sub_epi32(_mm512_and_si512(_mm512_castps_si512(s), mant), half);
      const __m128i q8 = _mm512_cvtepi32_epi8(_mm512_min_epi32(q, top));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(o[b].qs + 16 * j), q8);
      o[b].bsums[j] = static_cast<int16_t>(_mm512_reduce_add_epi32(_mm512_cvtepi8_epi32(q8)));
    }
    o[b].d = 1 / iscale;
  }
}

}  // namespace

void fill_kquants(KernelTable& t) {
  set_kquant_entries<K4Fmt<V16, false>, K4Fmt<V16, true>, K6Fmt<V16>, V16>(t);
  set_kquant_entry<K23Fmt<V16, false>, V16>(t);  // Q2_K, Q3_K
  set_kquant_entry<K23Fmt<V16, true>, V16>(t);
  set_kquant_entry<IQ4XSBiasedFmt<V16>, V16>(t);
  t.convert[A_Q8_K] = convert_q8_k;
}

}  // namespace bluelm::kernels::avx512
