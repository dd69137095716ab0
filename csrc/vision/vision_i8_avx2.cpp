// AVX2 kernels of the vision encoder's int8 format (vision_i8.h), for CPUs
// without VNNI: per 4 K-bytes, the token's bytes (u8 - 128 = q, broadcast) are
// signed by the weights and multiplied with |w| by vpmaddubsw (|w| <= 127 and
// |q| <= 127, so pairs never saturate), then vpmaddwd sums the pairs to int32.
// That sum is sum q * w = acc - corr exactly, so the epilogue's float operations
// see the same integer as the scalar reference. Tile: 1 panel x 4 tokens.
// Built with -mavx2 -mfma -mf16c -ffp-contract=off (vision.cmake).
#include <immintrin.h>

#include <cstring>

#include "vision/vision_i8.h"

namespace bluelm::vision {
namespace {

constexpr int kTok = 4;

inline __m256i bcast4(const uint8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return _mm256_set1_epi32(v);
}

template <int T>
inline void tile(const int8_t* w, const uint8_t* const* xt, int64_t steps, float* Y, size_t ldy, const I8Matrix& W,
                 const float* xscale, int64_t p, const float* bias, bool accumulate) {
  __m256i acc[T][2];
#pragma GCC unroll 4
  for (int t = 0; t < T; ++t) acc[t][0] = acc[t][1] = _mm256_setzero_si256();
  const __m256i ones = _mm256_set1_epi16(1), flip = _mm256_set1_epi8(static_cast<char>(0x80));
  for (int64_t s = 0; s < steps; ++s) {
    const __m256i w0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + s * 64));
    const __m256i w1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + s * 64 + 32));
    const __m256i a0 = _mm256_abs_epi8(w0), a1 = _mm256_abs_epi8(w1);
#pragma GCC unroll 4
    for (int t = 0; t < T; ++t) {
      const __m256i x = _mm256_xor_si256(bcast4(xt[t] + 4 * s), flip);
      acc[t][0] = _mm256_add_epi32(acc[t][0], _mm256_madd_epi16(_mm256_maddubs_epi16(a0, _mm256_sign_epi8(x, w0)), ones));
      acc[t][1] = _mm256_add_epi32(acc[t][1], _mm256_madd_epi16(_mm256_maddubs_epi16(a1, _mm256_sign_epi8(x, w1)), ones));
    }
  }
  const int64_t row0 = p * kI8Panel;
  const int64_t left = W.rows - row0 < kI8Panel ? W.rows - row0 : kI8Panel;
#pragma GCC unroll 2
  for (int h = 0; h < 2; ++h) {
    const __m256 sw = _mm256_loadu_ps(W.scale + row0 + 8 * h);
    float b[8] = {};
    if (bias)
      for (int i = 0; i < 8 && 8 * h + i < left; ++i) b[i] = bias[row0 + 8 * h + i];
    const __m256 bv = _mm256_loadu_ps(b);
#pragma GCC unroll 4
    for (int t = 0; t < T; ++t) {
      __m256 v = _mm256_mul_ps(_mm256_cvtepi32_ps(acc[t][h]), _mm256_mul_ps(sw, _mm256_set1_ps(xscale[t])));
      if (bias) v = _mm256_add_ps(v, bv);
      float* y = Y + t * ldy + row0 + 8 * h;
      if (left >= 8 * h + 8) {
        if (accumulate) v = _mm256_add_ps(_mm256_loadu_ps(y), v);
        _mm256_storeu_ps(y, v);
      } else {
        float tmp[8];
        _mm256_storeu_ps(tmp, v);
        for (int i = 0; 8 * h + i < left; ++i) y[i] = accumulate ? y[i] + tmp[i] : tmp[i];
      }
    }
  }
}

void gemm(const I8Matrix& W, const I8Acts& X, float* Y, size_t ldy, const float* bias, bool accumulate, int64_t p0,
          int64_t p1) {
  const int64_t steps = W.kp / 4, n = X.n;
  const size_t pstride = static_cast<size_t>(kI8Panel * W.kp);
  int64_t chunk = static_cast<int64_t>((256 * 1024) / X.stride);
  chunk = chunk < kTok ? kTok : chunk - chunk % kTok;
  const uint8_t* xt[kTok];
  for (int64_t t0 = 0; t0 < n; t0 += chunk) {
    const int64_t t1 = t0 + chunk < n ? t0 + chunk : n;
    for (int64_t p = p0; p < p1; ++p) {
      const int8_t* w = W.panels + p * pstride;
      for (int64_t t = t0; t < t1; t += kTok) {
        const int nt = t1 - t < kTok ? static_cast<int>(t1 - t) : kTok;
        for (int i = 0; i < nt; ++i) xt[i] = X.q + (t + i) * X.stride;
        float* y = Y + t * ldy;
        const float* xs = X.scale + t;
        switch (nt) {
          case 4: tile<4>(w, xt, steps, y, ldy, W, xs, p, bias, accumulate); break;
          case 3: tile<3>(w, xt, steps, y, ldy, W, xs, p, bias, accumulate); break;
          case 2: tile<2>(w, xt, steps, y, ldy, W, xs, p, bias, accumulate); break;
          default: tile<1>(w, xt, steps, y, ldy, W, xs, p, bias, accumulate); break;
        }
      }
    }
  }
}

float quant(const float* x, int64_t k, int64_t kp, uint8_t* q) {
  const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
  __m256 mv = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 8 <= k; i += 8) mv = _mm256_max_ps(mv, _mm256_and_ps(_mm256_loadu_ps(x + i), absmask));
  __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(mv), _mm256_extractf128_ps(mv, 1));
  m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
  m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
  float amax = _mm_cvtss_f32(m4);
  for (; i < k; ++i) {
    const float a = x[i] < 0 ? -x[i] : x[i];
    amax = a > amax ? a : amax;
  }
  const float id = amax > 0.0f ? 127.0f / amax : 0.0f;
  const __m256 vid = _mm256_set1_ps(id);
  const __m256i off = _mm256_set1_epi32(128), perm = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
  auto cvt = [&](const float* p) {
    return _mm256_add_epi32(_mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(p), vid)), off);
  };
  for (i = 0; i + 32 <= k; i += 32) {
    const __m256i ab = _mm256_packus_epi32(cvt(x + i), cvt(x + i + 8));
    const __m256i cd = _mm256_packus_epi32(cvt(x + i + 16), cvt(x + i + 24));
    const __m256i b = _mm256_permutevar8x32_epi32(_mm256_packus_epi16(ab, cd), perm);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(q + i), b);
  }
  for (; i < k; ++i) {
    const __m128 v = _mm_mul_ss(_mm_set_ss(x[i]), _mm_set_ss(id));
    q[i] = static_cast<uint8_t>(_mm_cvtss_si32(v) + 128);
  }
  for (; i < kp; ++i) q[i] = 128;
  return amax / 127.0f;
}

}  // namespace

I8GemmFn avx2_i8_gemm() { return gemm; }
I8QuantFn avx2_i8_quant() { return quant; }

}  // namespace bluelm::vision
