// NEON + i8mm (SMMLA) int8 gemms for prefill; built with
// -march=armv8.6-a+fp16+dotprod+i8mm. SMMLA multiplies a 2x8 by an 8x2 int8
// block, so a 2-row x 2-token tile costs 4 SMMLA per block of 32 where SDOT
// needs 8. Decode (one token) and ragged edges use the dotprod kernels.
#include "kernels/arm/common.h"
#include "kernels/neon_dotprod/neon_dotprod.h"
#include "kernels/neon_i8mm/neon_i8mm.h"

namespace bluelm::kernels::neon_i8mm {
namespace {

inline int8x16_t zip_lo(int8x16_t a, int8x16_t b) {
  return vreinterpretq_s8_s64(vzip1q_s64(vreinterpretq_s64_s8(a), vreinterpretq_s64_s8(b)));
}
inline int8x16_t zip_hi(int8x16_t a, int8x16_t b) {
  return vreinterpretq_s8_s64(vzip2q_s64(vreinterpretq_s64_s8(a), vreinterpretq_s64_s8(b)));
}

// Tile of 2*RP weight rows x 2*TP tokens; each 2x2 accumulator holds
// [r0.t0, r0.t1, r1.t0, r1.t1]. Fmt: a block tag of arm/common.h.
template <class Fmt, int RP, int TP>
void mtile(const char* w, size_t ws, const char* x, size_t xs, float* y, size_t ldy, int64_t K) {
  const int64_t nb = K / QK;
  float32x4_t acc[RP][TP], macc[RP][TP];
  for (int i = 0; i < RP; ++i)
    for (int p = 0; p < TP; ++p) acc[i][p] = macc[i][p] = vdupq_n_f32(0.0f);
  const size_t wbs = Fmt::kBlock, xbs = Fmt::kXBlock, xq = Fmt::kXq;
  for (int64_t b = 0; b < nb; ++b) {
    int8x16_t xm[TP][4];
    float32x4_t dx[TP], sx[TP];  // [t0, t1, t0, t1]
    for (int p = 0; p < TP; ++p) {
      const char* xa = x + (2 * p) * xs + b * xbs;
      const char* xb = xa + xs;
      const int8x16_t a0 = vld1q_s8(reinterpret_cast<const int8_t*>(xa + xq));
      const int8x16_t a1 = vld1q_s8(reinterpret_cast<const int8_t*>(xa + xq + 16));
      const int8x16_t b0 = vld1q_s8(reinterpret_cast<const int8_t*>(xb + xq));
      const int8x16_t b1 = vld1q_s8(reinterpret_cast<const int8_t*>(xb + xq + 16));
      xm[p][0] = zip_lo(a0, b0);
      xm[p][1] = zip_hi(a0, b0);
      xm[p][2] = zip_lo(a1, b1);
      xm[p][3] = zip_hi(a1, b1);
      const float da = h2f(xa), db = h2f(xb);
      const float d4[4] = {da, db, da, db};
      dx[p] = vld1q_f32(d4);
      if (Fmt::kMin) {
        const float sa = h2f(xa + 2), sb = h2f(xb + 2);
        const float s4[4] = {sa, sb, sa, sb};
        sx[p] = vld1q_f32(s4);
      }
    }
    for (int i = 0; i < RP; ++i) {
      int8x16_t r[2][2];
      float dw[2], mw[2];
      for (int h = 0; h < 2; ++h) {
        const char* wb = w + (2 * i + h) * ws + b * wbs;
        Fmt::weights(wb, &r[h][0], &r[h][1]);
        dw[h] = h2f(wb);
        mw[h] = Fmt::kMin ? h2f(wb + 2) : 0.0f;
      }
      const int8x16_t wm0 = zip_lo(r[0][0], r[1][0]), wm1 = zip_hi(r[0][0], r[1][0]);
      const int8x16_t wm2 = zip_lo(r[0][1], r[1][1]), wm3 = zip_hi(r[0][1], r[1][1]);
      const float d4[4] = {dw[0], dw[0], dw[1], dw[1]};
      const float32x4_t dwv = vld1q_f32(d4);
      for (int p = 0; p < TP; ++p) {
        int32x4_t s = vmmlaq_s32(vdupq_n_s32(0), wm0, xm[p][0]);
        s = vmmlaq_s32(s, wm1, xm[p][1]);
        s = vmmlaq_s32(s, wm2, xm[p][2]);
        s = vmmlaq_s32(s, wm3, xm[p][3]);
        acc[i][p] = vfmaq_f32(acc[i][p], vcvtq_f32_s32(s), vmulq_f32(dwv, dx[p]));
        if (Fmt::kMin) {
          const float m4[4] = {mw[0], mw[0], mw[1], mw[1]};
          macc[i][p] = vfmaq_f32(macc[i][p], vld1q_f32(m4), sx[p]);
        }
      }
    }
  }
  for (int i = 0; i < RP; ++i)
    for (int p = 0; p < TP; ++p) {
      float o[4];
      vst1q_f32(o, Fmt::kMin ? vaddq_f32(acc[i][p], macc[i][p]) : acc[i][p]);
      float* yr = y + (2 * p) * ldy + 2 * i;
      yr[0] = o[0];
      yr[ldy] = o[1];
      yr[1] = o[2];
      yr[ldy + 1] = o[3];
    }
}

// Edge: the SDOT gemm of the same format, for one token and the rows and the
// token left over by the 4-row x 2-token tiles.
template <class Fmt, GemmFn Edge>
void gemm(const void* W, size_t ws, const void* X, size_t xs, float* Y, size_t ldy, int64_t K,
          int64_t r0, int64_t r1, int64_t n_tok) {
  const GemmFn edge = Edge;
  if (n_tok == 1) return edge(W, ws, X, xs, Y, ldy, K, r0, r1, n_tok);
  const char* w = static_cast<const char*>(W);
  const char* x = static_cast<const char*>(X);
  const int64_t rm = r0 + (r1 - r0) / 4 * 4;  // rows covered by 4-row tiles
  const int64_t te = n_tok & ~int64_t(1);     // tokens covered by 2-token tiles
  int64_t chunk = static_cast<int64_t>((192 * 1024) / (xs ? xs : 1));
  chunk = chunk < 4 ? 4 : chunk - chunk % 4;
  for (int64_t t0 = 0; t0 < te; t0 += chunk) {
    const int64_t t1 = t0 + chunk < te ? t0 + chunk : te;
    for (int64_t r = r0; r < rm; r += 4) {
      int64_t t = t0;
      for (; t + 4 <= t1; t += 4) mtile<Fmt, 2, 2>(w + r * ws, ws, x + t * xs, xs, Y + t * ldy + r, ldy, K);
      if (t < t1) mtile<Fmt, 2, 1>(w + r * ws, ws, x + t * xs, xs, Y + t * ldy + r, ldy, K);
    }
  }
  if (te < n_tok && rm > r0) edge(W, ws, x + te * xs, xs, Y + te * ldy, ldy, K, r0, rm, 1);
  if (rm < r1) edge(W, ws, X, xs, Y, ldy, K, rm, r1, n_tok);
}

}  // namespace

void fill_gemm(KernelTable& t) {
  t.gemm[W_Q4_0] = gemm<Q4_0Blocks, neon_dotprod::gemm_q4_0>;
  t.gemm[W_Q4_1] = gemm<Q4_1Blocks, neon_dotprod::gemm_q4_1>;
  t.gemm[W_Q8_0] = gemm<Q8_0Blocks, neon_dotprod::gemm_q8_0>;
}

}  // namespace bluelm::kernels::neon_i8mm
