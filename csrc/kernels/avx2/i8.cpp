// AVX2 kernels of the vision encoder's int8 format (i8_format.h, K4 panels),
// for CPUs without VNNI: per 4 K-bytes, the token's bytes (q = u8 - 128,
// broadcast) give |q| (<= 128, as u8) and the weights signed by q, which
// vpmaddubsw multiplies (|w| <= 127, so a pair is at most 32512 and never
// saturates), then vpmaddwd sums the pairs to int32. That sum is acc - 128 *
// wsum; adding (128 - zp) * wsum gives exactly the integer the scalar reference
// converts, so the float operations that follow round the same. Tile: 1 panel
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
  static constexpr size_t kChunkBytes = 256 * 1024;

  template <int R, int T>
  static void tile(const I8Tile& a) {
    const I8Matrix& W = *a.W;
    const int64_t steps = W.kp / 4;
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
    const int64_t row0 = a.p * kI8Panel;
    const int64_t left = W.rows - row0 < kI8Panel ? W.rows - row0 : kI8Panel;
#pragma GCC unroll 2
    for (int h = 0; h < 2; ++h) {
      const __m256 sw = _mm256_loadu_ps(W.scale + row0 + 8 * h);
      const __m256i wsum = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(W.wsum + row0 + 8 * h));
      float b[8] = {};
      if (a.bias)
        for (int i = 0; i < 8 && 8 * h + i < left; ++i) b[i] = a.bias[row0 + 8 * h + i];
      const __m256 bv = _mm256_loadu_ps(b);
#pragma GCC unroll 4
      for (int t = 0; t < T; ++t) {
        const __m256i c = _mm256_add_epi32(acc[t][h], _mm256_mullo_epi32(_mm256_set1_epi32(128 - a.zp[t]), wsum));
        __m256 v = _mm256_mul_ps(_mm256_cvtepi32_ps(c), _mm256_mul_ps(sw, _mm256_set1_ps(a.xscale[t])));
        if (a.bias) v = _mm256_add_ps(v, bv);
        float* y = a.y + t * a.ldy + row0 + 8 * h;
        if (left >= 8 * h + 8) {
          if (a.accumulate) v = _mm256_add_ps(_mm256_loadu_ps(y), v);
          _mm256_storeu_ps(y, v);
        } else {
          float tmp[8];
          _mm256_storeu_ps(tmp, v);
          for (int i = 0; 8 * h + i < left; ++i) y[i] = a.accumulate ? y[i] + tmp[i] : tmp[i];
        }
      }
    }
  }
};

struct Quant {
  static int32_t round(float v) { return round_nearest(v); }
  using F = __m256;
  static constexpr int kLanes = 8;
  static F zero() { return _mm256_setzero_ps(); }
  static F load(const float* p) { return _mm256_loadu_ps(p); }
  static F min(F a, F b) { return _mm256_min_ps(a, b); }
  static F max(F a, F b) { return _mm256_max_ps(a, b); }
  static float hmin(F v) {  // lanes <= 0
    float l[8], lo = 0.0f;
    _mm256_storeu_ps(l, v);
    for (int j = 0; j < 8; ++j) lo = l[j] < lo ? l[j] : lo;
    return lo;
  }
  static float hmax(F v) {  // lanes >= 0
    float h[8], hi = 0.0f;
    _mm256_storeu_ps(h, v);
    for (int j = 0; j < 8; ++j) hi = h[j] > hi ? h[j] : hi;
    return hi;
  }
  static int64_t body(const float* x, int64_t k, float inv, int32_t z, uint8_t* q) {
    const __m256 vinv = _mm256_set1_ps(inv);
    const __m256i off = _mm256_set1_epi32(z), perm = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    auto cvt = [&](const float* p) {
      return _mm256_add_epi32(_mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(p), vinv)), off);
    };
    int64_t i = 0;
    for (; i + 32 <= k; i += 32) {  // packus saturates to [0, 255], as the reference's clamp
      const __m256i ab = _mm256_packus_epi32(cvt(x + i), cvt(x + i + 8));
      const __m256i cd = _mm256_packus_epi32(cvt(x + i + 16), cvt(x + i + 24));
      const __m256i b = _mm256_permutevar8x32_epi32(_mm256_packus_epi16(ab, cd), perm);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(q + i), b);
    }
    return i;
  }
};

}  // namespace

void fill_i8(KernelTable& t) { set_i8<Tiles, Quant>(t.vision, I8Layout::K4); }

}  // namespace bluelm::kernels::avx2
