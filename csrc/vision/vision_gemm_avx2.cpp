// AVX2 Q8_0 x Q8_0 matrix-matrix product for the vision encoder, where every
// matmul has hundreds of tokens: BLUELM_VQ_ROWS weight rows x 2 tokens per register tile
// (named accumulators), block scales read as floats from side arrays so
// the inner loop has no fp16 conversion and no scalar multiply.
// Built with -mavx2 -mfma -mf16c; called only when the AVX2 ops are active.
#include <immintrin.h>

#include "vision/vision_gemm.h"

#ifndef BLUELM_VQ_ROWS
#define BLUELM_VQ_ROWS 4  // 4 x 2 measured a little faster than 3 x 2 on Zen 3
#endif

namespace bluelm::vision {
namespace {

inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

inline __m256i load32(const int8_t* p) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)); }

// Y[t*ldy + r] for R rows from w (row stride ws bytes, scales wd with stride nb)
// and T tokens from x (stride xs bytes, scales xd with stride nb).
// One weight row's block against one token's block: acc += (|w| . sign(q, w)) * dw * dx.
#define BLUELM_Q8_STEP(acc, a, s, q, dw, dx)                                                        \
  acc = _mm256_fmadd_ps(                                                                           \
      _mm256_cvtepi32_ps(_mm256_madd_epi16(_mm256_maddubs_epi16(a, _mm256_sign_epi8(q, s)), ones)), \
      _mm256_mul_ps(dw, dx), acc)

// Y[t*ldy + r] for R rows (R = 4 or 1) from w (row stride ws bytes, scales wd,
// nb per row) and T tokens (T = 2 or 1) from x (stride xs, scales xd). Named
// accumulators keep all eight in registers.
template <int R, int T>
void tile(const char* w, size_t ws, const float* wd, const char* x, size_t xs, const float* xd, int64_t nb,
          float* y, size_t ldy) {
  static_assert(R >= 1 && R <= 4 && (T == 2 || T == 1), "tile shapes");
  __m256 a00 = _mm256_setzero_ps(), a01 = a00, a10 = a00, a11 = a00, a20 = a00, a21 = a00, a30 = a00, a31 = a00;
  const __m256i ones = _mm256_set1_epi16(1);
  const BlockQ8_0* x0 = reinterpret_cast<const BlockQ8_0*>(x);
  const BlockQ8_0* x1 = reinterpret_cast<const BlockQ8_0*>(x + (T > 1 ? xs : 0));
  const BlockQ8_0* w0 = reinterpret_cast<const BlockQ8_0*>(w);
  const BlockQ8_0* w1 = reinterpret_cast<const BlockQ8_0*>(w + (R > 1 ? ws : 0));
  const BlockQ8_0* w2 = reinterpret_cast<const BlockQ8_0*>(w + (R > 2 ? 2 * ws : 0));
  const BlockQ8_0* w3 = reinterpret_cast<const BlockQ8_0*>(w + (R > 3 ? 3 * ws : 0));
  for (int64_t b = 0; b < nb; ++b) {
    const __m256i q0 = load32(x0[b].qs);
    const __m256i q1 = T > 1 ? load32(x1[b].qs) : q0;
    const __m256 d0 = _mm256_broadcast_ss(xd + b);
    const __m256 d1 = _mm256_broadcast_ss(xd + (T > 1 ? nb : 0) + b);
    {
      const __m256i s = load32(w0[b].qs), a = _mm256_sign_epi8(s, s);
      const __m256 dw = _mm256_broadcast_ss(wd + b);
      BLUELM_Q8_STEP(a00, a, s, q0, dw, d0);
      if (T > 1) BLUELM_Q8_STEP(a01, a, s, q1, dw, d1);
    }
    if (R > 1) {
      const __m256i s = load32(w1[b].qs), a = _mm256_sign_epi8(s, s);
      const __m256 dw = _mm256_broadcast_ss(wd + nb + b);
      BLUELM_Q8_STEP(a10, a, s, q0, dw, d0);
      if (T > 1) BLUELM_Q8_STEP(a11, a, s, q1, dw, d1);
    }
    if (R > 2) {
      const __m256i s = load32(w2[b].qs), a = _mm256_sign_epi8(s, s);
      const __m256 dw = _mm256_broadcast_ss(wd + 2 * nb + b);
      BLUELM_Q8_STEP(a20, a, s, q0, dw, d0);
      if (T > 1) BLUELM_Q8_STEP(a21, a, s, q1, dw, d1);
    }
    if (R > 3) {
      const __m256i s = load32(w3[b].qs), a = _mm256_sign_epi8(s, s);
      const __m256 dw = _mm256_broadcast_ss(wd + 3 * nb + b);
      BLUELM_Q8_STEP(a30, a, s, q0, dw, d0);
      if (T > 1) BLUELM_Q8_STEP(a31, a, s, q1, dw, d1);
    }
  }
  const __m256 acc[4][2] = {{a00, a01}, {a10, a11}, {a20, a21}, {a30, a31}};
  for (int i = 0; i < R; ++i)
    for (int t = 0; t < T; ++t) y[t * ldy + i] = hsum(acc[i][t]);
}
#undef BLUELM_Q8_STEP

void gemm(const Q8Matrix& W, const Q8Activations& X, float* Y, size_t ldy, int64_t r0, int64_t r1) {
  constexpr int kR = BLUELM_VQ_ROWS, kT = 2;
  const char* w = static_cast<const char*>(W.blocks);
  const char* x = static_cast<const char*>(X.blocks);
  const int64_t nb = W.k / QK, n = X.n;
  // Token chunks that stay in L2 while each 4-row tile sweeps them from L1.
  int64_t chunk = static_cast<int64_t>((256 * 1024) / X.stride);
  chunk = chunk < kT ? kT : chunk - chunk % kT;
  for (int64_t t0 = 0; t0 < n; t0 += chunk) {
    const int64_t t1 = t0 + chunk < n ? t0 + chunk : n;
    for (int64_t r = r0; r < r1;) {
      const bool full = r + kR <= r1;
      const char* wr = w + r * W.stride;
      const float* wdr = W.scales + r * nb;
      int64_t t = t0;
      for (; t + kT <= t1; t += kT) {
        const char* xt = x + t * X.stride;
        const float* xdt = X.scales + t * nb;
        float* yt = Y + t * ldy + r;
        if (full) tile<kR, kT>(wr, W.stride, wdr, xt, X.stride, xdt, nb, yt, ldy);
        else tile<1, kT>(wr, W.stride, wdr, xt, X.stride, xdt, nb, yt, ldy);
      }
      for (; t < t1; ++t) {
        if (full) tile<kR, 1>(wr, W.stride, wdr, x + t * X.stride, X.stride, X.scales + t * nb, nb, Y + t * ldy + r, ldy);
        else tile<1, 1>(wr, W.stride, wdr, x + t * X.stride, X.stride, X.scales + t * nb, nb, Y + t * ldy + r, ldy);
      }
      r += full ? kR : 1;
    }
  }
}

}  // namespace

Q8GemmFn avx2_q8_gemm() { return gemm; }

}  // namespace bluelm::vision
