// AVX2 kernels of the vision encoder's int8 format (vision_i8.h), for CPUs
// without VNNI: per 4 K-bytes, the token's bytes (q = u8 - 128, broadcast) give
// |q| (<= 128, as u8) and the weights signed by q, which vpmaddubsw multiplies
// (|w| <= 127, so a pair is at most 32512 and never saturates), then vpmaddwd
// sums the pairs to int32. That sum is acc - 128 * wsum; adding (128 - zp) * wsum
// gives exactly the integer the scalar reference converts, so the float
// operations that follow round the same. Tile: 1 panel x 4 tokens.
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
                 const float* xscale, const int32_t* zp, int64_t p, const float* bias, bool accumulate) {
  __m256i acc[T][2];
#pragma GCC unroll 4
  for (int t = 0; t < T; ++t) acc[t][0] = acc[t][1] = _mm256_setzero_si256();
  const __m256i ones = _mm256_set1_epi16(1), flip = _mm256_set1_epi8(static_cast<char>(0x80));
  for (int64_t s = 0; s < steps; ++s) {
    const __m256i w0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + s * 64));
    const __m256i w1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + s * 64 + 32));
#pragma GCC unroll 4
    for (int t = 0; t < T; ++t) {
      const __m256i x = _mm256_xor_si256(bcast4(xt[t] + 4 * s), flip), a = _mm256_abs_epi8(x);
      acc[t][0] = _mm256_add_epi32(acc[t][0], _mm256_madd_epi16(_mm256_maddubs_epi16(a, _mm256_sign_epi8(w0, x)), ones));
      acc[t][1] = _mm256_add_epi32(acc[t][1], _mm256_madd_epi16(_mm256_maddubs_epi16(a, _mm256_sign_epi8(w1, x)), ones));
    }
  }
  const int64_t row0 = p * kI8Panel;
  const int64_t left = W.rows - row0 < kI8Panel ? W.rows - row0 : kI8Panel;
#pragma GCC unroll 2
  for (int h = 0; h < 2; ++h) {
    const __m256 sw = _mm256_loadu_ps(W.scale + row0 + 8 * h);
    const __m256i wsum = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(W.wsum + row0 + 8 * h));
    float b[8] = {};
    if (bias)
      for (int i = 0; i < 8 && 8 * h + i < left; ++i) b[i] = bias[row0 + 8 * h + i];
    const __m256 bv = _mm256_loadu_ps(b);
#pragma GCC unroll 4
    for (int t = 0; t < T; ++t) {
      const __m256i a = _mm256_add_epi32(acc[t][h], _mm256_mullo_epi32(_mm256_set1_epi32(128 - zp[t]), wsum));
      __m256 v = _mm256_mul_ps(_mm256_cvtepi32_ps(a), _mm256_mul_ps(sw, _mm256_set1_ps(xscale[t])));
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
        const int32_t* zp = X.zp + t;
        switch (nt) {
          case 4: tile<4>(w, xt, steps, y, ldy, W, xs, zp, p, bias, accumulate); break;
          case 3: tile<3>(w, xt, steps, y, ldy, W, xs, zp, p, bias, accumulate); break;
          case 2: tile<2>(w, xt, steps, y, ldy, W, xs, zp, p, bias, accumulate); break;
          default: tile<1>(w, xt, steps, y, ldy, W, xs, zp, p, bias, accumulate); break;
        }
      }
    }
  }
}

float quant(const float* x, int64_t k, int64_t kp, uint8_t* q, int32_t* zp) {
  __m256 lo8 = _mm256_setzero_ps(), hi8 = lo8;
  int64_t i = 0;
  for (; i + 8 <= k; i += 8) {
    const __m256 v = _mm256_loadu_ps(x + i);
    lo8 = _mm256_min_ps(lo8, v);
    hi8 = _mm256_max_ps(hi8, v);
  }
  float l[8], h[8];
  _mm256_storeu_ps(l, lo8);
  _mm256_storeu_ps(h, hi8);
  float lo = 0.0f, hi = 0.0f;
  for (int j = 0; j < 8; ++j) {
    lo = l[j] < lo ? l[j] : lo;
    hi = h[j] > hi ? h[j] : hi;
  }
  for (; i < k; ++i) {
    lo = x[i] < lo ? x[i] : lo;
    hi = x[i] > hi ? x[i] : hi;
  }
  const float range = hi - lo, inv = range > 0.0f ? 255.0f / range : 0.0f;
  const int32_t z = _mm_cvtss_si32(_mm_mul_ss(_mm_set_ss(-lo), _mm_set_ss(inv)));
  const __m256 vinv = _mm256_set1_ps(inv);
  const __m256i off = _mm256_set1_epi32(z), perm = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
  auto cvt = [&](const float* p) {
    return _mm256_add_epi32(_mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(p), vinv)), off);
  };
  for (i = 0; i + 32 <= k; i += 32) {  // packus saturates to [0, 255], as the reference's clamp
    const __m256i ab = _mm256_packus_epi32(cvt(x + i), cvt(x + i + 8));
    const __m256i cd = _mm256_packus_epi32(cvt(x + i + 16), cvt(x + i + 24));
    const __m256i b = _mm256_permutevar8x32_epi32(_mm256_packus_epi16(ab, cd), perm);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(q + i), b);
  }
  for (; i < k; ++i) {
    const int32_t u = _mm_cvtss_si32(_mm_mul_ss(_mm_set_ss(x[i]), _mm_set_ss(inv))) + z;
    q[i] = static_cast<uint8_t>(u < 0 ? 0 : u > 255 ? 255 : u);
  }
  for (; i < kp; ++i) q[i] = static_cast<uint8_t>(z);
  *zp = z;
  return range / 255.0f;
}

}  // namespace

I8GemmFn avx2_i8_gemm() { return gemm; }
I8QuantFn avx2_i8_quant() { return quant; }

}  // namespace bluelm::vision
