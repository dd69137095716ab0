// AVX2 kernels of the vision encoder's int8 format (i8_format.h, K4 panels),
// for CPUs without VNNI: per 4 K-bytes, the token's bytes (q = u8 - 128,
// broadcast) give |q| (<= 128, as u8) and the weights signed by q, which
// vpmaddubsw multiplies (|w| <= 127, so a pair is at most 32512 and never
// saturates), then vpmaddwd sums the pairs to int32. That sum is acc - 128 *
// wsum; adding (128 - zp) * wsum gives exactly the integer the scalar reference
// converts, so the float operations that follow (the shared epilogue of
// common/i8_driver.h) round the same. Tile: 1 panel
// x 4 tokens. Built with -ffp-contract=off (kernels.cmake).
#include <cstring>

#include "kernels/avx2/avx2.h"
#include "kernels/common/i8_quant.h"
#include "kernels/x86/common.h"

namespace bluelm::kernels::avx2 {
namespace {

inline __m256i bcast4(const uint8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return _mm256_set1_epi32(v);
}

struct Tiles {
  static constexpr int kTok = 4, kPanels = 1;

  template <int R, int T>
  static void tile(const I8Tile& a) {
    const int64_t steps = a.W->kp / 4;
    __m256i acc[T][2];
#pragma GCC unroll 4
    for (int t = 0; t < T; ++t) acc[t][0] = acc[t][1] = _mm256_setzero_si256();
    const __m256i ones = _mm256_set1_epi16(1), flip = _mm256_set1_epi8(static_cast<char>(0x80));
    for (int64_t s = 0; s < steps; ++s) {
      const __m256i w0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.w + s * 64));
      const __m256i w1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.w + s * 64 + 32));
#pragma GCC unroll 4
      for (int t = 0; t < T; ++t) {
        const __m256i x = _mm256_xor_si256(bcast4(a.xt[t] + 4 * s), flip), ax = _mm256_abs_epi8(x);
        acc[t][0] = _mm256_add_epi32(acc[t][0], _mm256_madd_epi16(_mm256_maddubs_epi16(ax, _mm256_sign_epi8(w0, x)), ones));
        acc[t][1] = _mm256_add_epi32(acc[t][1], _mm256_madd_epi16(_mm256_maddubs_epi16(ax, _mm256_sign_epi8(w1, x)), ones));
      }
    }
    alignas(32) int32_t buf[T * kI8Panel];
#pragma GCC unroll 4
    for (int t = 0; t < T; ++t) {
      _mm256_store_si256(reinterpret_cast<__m256i*>(buf + 16 * t), acc[t][0]);
      _mm256_store_si256(reinterpret_cast<__m256i*>(buf + 16 * t + 8), acc[t][1]);
    }
    i8_store<I8Lanes8, T>(buf, 128, a);
  }
};

}  // namespace

void fill_i8(KernelTable& t) { set_i8<Tiles, I8Quant8>(t.vision, I8Layout::K4); }

}  // namespace bluelm::kernels::avx2
