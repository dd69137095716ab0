// NEON + dotprod (SDOT) int8 gemms; compiled with -march=armv8.2-a+fp16+dotprod.
// Float gemms, conversions and attention come from the baseline neon table.
#include <arm_neon.h>
#include <string.h>

#include "kernels/kernels.h"

namespace bluelm::kernels {

const KernelTable* neon_table();

namespace {

inline float h2f(const void* p) {
  __fp16 h;
  memcpy(&h, p, 2);
  return static_cast<float>(h);
}

// Kind 0: Q4_0 x Q8_0, 1: Q4_1 x Q8_1, 2: Q8_0 x Q8_0. R weight rows x T tokens.
template <int Kind, int R, int T>
void qtile(const char* w, size_t ws, const char* x, size_t xs, float* y, size_t ldy, int64_t K) {
  const int64_t nb = K / QK;
  float32x4_t acc[R][T];
  float macc[R][T];
  for (int i = 0; i < R; ++i)
    for (int t = 0; t < T; ++t) {
      acc[i][t] = vdupq_n_f32(0.0f);
      macc[i][t] = 0.0f;
    }
  const size_t wbs = Kind == 0 ? sizeof(BlockQ4_0) : Kind == 1 ? sizeof(BlockQ4_1) : sizeof(BlockQ8_0);
  const size_t xbs = Kind == 1 ? sizeof(BlockQ8_1) : sizeof(BlockQ8_0);
  const size_t xq = Kind == 1 ? 4 : 2;
  for (int64_t b = 0; b < nb; ++b) {
    int8x16_t x0[T], x1[T];
    float dx[T], sx[T];
    for (int t = 0; t < T; ++t) {
      const char* xb = x + t * xs + b * xbs;
      x0[t] = vld1q_s8(reinterpret_cast<const int8_t*>(xb + xq));
      x1[t] = vld1q_s8(reinterpret_cast<const int8_t*>(xb + xq + 16));
      dx[t] = h2f(xb);
      sx[t] = Kind == 1 ? h2f(xb + 2) : 0.0f;
    }
    for (int i = 0; i < R; ++i) {
      const char* wb = w + i * ws + b * wbs;
      int8x16_t w0, w1;
      if (Kind == 2) {
        w0 = vld1q_s8(reinterpret_cast<const int8_t*>(wb + 2));
        w1 = vld1q_s8(reinterpret_cast<const int8_t*>(wb + 18));
      } else {
        // Low nibbles are elements 0..15, high nibbles 16..31; Q4_1's stay unsigned
        // (0..15 fit int8), Q4_0's are shifted to -8..7.
        const uint8x16_t v = vld1q_u8(reinterpret_cast<const uint8_t*>(wb + (Kind == 1 ? 4 : 2)));
        w0 = vreinterpretq_s8_u8(vandq_u8(v, vdupq_n_u8(0x0f)));
        w1 = vreinterpretq_s8_u8(vshrq_n_u8(v, 4));
        if (Kind == 0) {
          w0 = vsubq_s8(w0, vdupq_n_s8(8));
          w1 = vsubq_s8(w1, vdupq_n_s8(8));
        }
      }
      const float dw = h2f(wb);
      const float mw = Kind == 1 ? h2f(wb + 2) : 0.0f;
      for (int t = 0; t < T; ++t) {
        const int32x4_t s = vdotq_s32(vdotq_s32(vdupq_n_s32(0), w0, x0[t]), w1, x1[t]);
        acc[i][t] = vfmaq_n_f32(acc[i][t], vcvtq_f32_s32(s), dw * dx[t]);
        if (Kind == 1) macc[i][t] += mw * sx[t];
      }
    }
  }
  for (int i = 0; i < R; ++i)
    for (int t = 0; t < T; ++t) y[t * ldy + i] = vaddvq_f32(acc[i][t]) + macc[i][t];
}

// Decode streams rows 4 at a time; prefill tiles 4 rows x 2 tokens over token
// chunks that stay in L2, so each tile's weights are reused from L1.
template <int Kind>
void gemm(const void* W, size_t ws, const void* X, size_t xs, float* Y, size_t ldy, int64_t K,
          int64_t r0, int64_t r1, int64_t n_tok) {
  const char* w = static_cast<const char*>(W);
  const char* x = static_cast<const char*>(X);
  if (n_tok == 1) {
    int64_t r = r0;
    for (; r + 4 <= r1; r += 4) qtile<Kind, 4, 1>(w + r * ws, ws, x, xs, Y + r, ldy, K);
    for (; r < r1; ++r) qtile<Kind, 1, 1>(w + r * ws, ws, x, xs, Y + r, ldy, K);
    return;
  }
  int64_t chunk = static_cast<int64_t>((192 * 1024) / (xs ? xs : 1));
  chunk = chunk < 2 ? 2 : chunk - chunk % 2;
  for (int64_t t0 = 0; t0 < n_tok; t0 += chunk) {
    const int64_t t1 = t0 + chunk < n_tok ? t0 + chunk : n_tok;
    for (int64_t r = r0; r < r1;) {
      const bool full = r + 4 <= r1;
      int64_t t = t0;
      for (; t + 2 <= t1; t += 2) {
        if (full) qtile<Kind, 4, 2>(w + r * ws, ws, x + t * xs, xs, Y + t * ldy + r, ldy, K);
        else qtile<Kind, 1, 2>(w + r * ws, ws, x + t * xs, xs, Y + t * ldy + r, ldy, K);
      }
      if (t < t1) {
        if (full) qtile<Kind, 4, 1>(w + r * ws, ws, x + t * xs, xs, Y + t * ldy + r, ldy, K);
        else qtile<Kind, 1, 1>(w + r * ws, ws, x + t * xs, xs, Y + t * ldy + r, ldy, K);
      }
      r += full ? 4 : 1;
    }
  }
}

KernelTable make_table() {
  KernelTable t = *neon_table();
  t.isa = "neon_dotprod";
  t.gemm[W_Q4_0] = gemm<0>;
  t.gemm[W_Q4_1] = gemm<1>;
  t.gemm[W_Q8_0] = gemm<2>;
  return t;
}

}  // namespace

const KernelTable* neon_dotprod_table() {
  static const KernelTable t = make_table();
  return &t;
}

}  // namespace bluelm::kernels
