// AVX-512 VNNI kernels of the vision encoder's int8 format (vision_i8.h):
// a register tile of 2 panels (32 output rows) x 12 tokens, 24 zmm int32
// accumulators fed by one vpdpbusd per (panel, token) per 4 K-bytes; tokens in
// chunks that stay in L2 while a tile's panels stay in L1/L2.
// Built with AVX-512 F/BW/VL/VNNI flags (vision.cmake); used only when the
// kernel table is "avx512" (which requires those features), and with
// -ffp-contract=off so the epilogue rounds as the scalar reference does.
// GCC 12's AVX-512 headers self-initialise "undefined" vectors, which
// -Wuninitialized flags inside the header (GCC bug 105593): silence it there only.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#ifndef __clang__
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"  // a GCC-only group
#endif
#include <immintrin.h>
#pragma GCC diagnostic pop

#include <cmath>
#include <cstring>

#include "vision/vision_i8.h"
#include "vision/vision_ops.h"

namespace bluelm::vision {

const VisionOps* avx2_ops();  // vision_ops_avx2.cpp

namespace {

constexpr int kTok = 12;  // tokens per register tile

inline __m512i bcast4(const uint8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return _mm512_set1_epi32(v);
}

// The epilogue of a tile: acc (R x T blocks of 16 int32, token-major: block
// t * R + r is panel p + r against token t) -> Y, as the scalar reference.
template <int R, int T>
inline void store(const int32_t* acc, float* Y, size_t ldy, const I8Matrix& W, const float* xscale,
                  const int32_t* zp, int64_t p, const float* bias, bool accumulate) {
  for (int r = 0; r < R; ++r) {
    const int64_t row0 = (p + r) * kI8Panel;
    const int64_t left = W.rows - row0;
    const __mmask16 m = left >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << left) - 1u);
    const __m512 sw = _mm512_loadu_ps(W.scale + row0);
    const __m512i wsum = _mm512_loadu_si512(W.wsum + row0);
    const __m512 b = bias ? _mm512_maskz_loadu_ps(m, bias + row0) : _mm512_setzero_ps();
    for (int t = 0; t < T; ++t) {
      const __m512i corr = _mm512_mullo_epi32(_mm512_set1_epi32(zp[t]), wsum);
      __m512 v = _mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_load_si512(acc + (t * R + r) * 16), corr));
      v = _mm512_mul_ps(v, _mm512_mul_ps(sw, _mm512_set1_ps(xscale[t])));
      if (bias) v = _mm512_add_ps(v, b);
      float* y = Y + t * ldy + row0;
      if (accumulate) v = _mm512_add_ps(_mm512_maskz_loadu_ps(m, y), v);
      _mm512_mask_storeu_ps(y, m, v);
    }
  }
}

// R panels (w, w + pstride) x T tokens (xt) over `steps` K steps, with intrinsics
// (the edge tiles).
template <int R, int T>
inline void tile(const int8_t* w, size_t pstride, const uint8_t* const* xt, size_t, int64_t steps, float* Y,
                 size_t ldy, const I8Matrix& W, const float* xscale, const int32_t* zp, int64_t p, const float* bias,
                 bool accumulate) {
  __m512i acc[R][T];
#pragma GCC unroll 12
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 12
    for (int t = 0; t < T; ++t) acc[r][t] = _mm512_setzero_si512();
  const int8_t* w1 = w + (R > 1 ? pstride : 0);
  for (int64_t s = 0; s < steps; ++s) {
    const __m512i b0 = _mm512_loadu_si512(w + s * 64);
    const __m512i b1 = R > 1 ? _mm512_loadu_si512(w1 + s * 64) : b0;
#pragma GCC unroll 12
    for (int t = 0; t < T; ++t) {
      const __m512i a = bcast4(xt[t] + 4 * s);
      acc[0][t] = _mm512_dpbusd_epi32(acc[0][t], a, b0);
      if constexpr (R > 1) acc[R - 1][t] = _mm512_dpbusd_epi32(acc[R - 1][t], a, b1);
    }
  }
  alignas(64) int32_t buf[R * T * 16];
#pragma GCC unroll 12
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 12
    for (int t = 0; t < T; ++t) _mm512_store_si512(buf + (t * R + r) * 16, acc[r][t]);
  store<R, T>(buf, Y, ldy, W, xscale, zp, p, bias, accumulate);
}

// The full tile, 2 panels x 12 tokens whose rows are xs bytes apart, in
// assembly: GCC keeps an array of 24 accumulators in memory and copies each
// around its vpdpbusd (measured 35% of the VNNI peak); here zmm8..zmm31 hold
// them, zmm0/zmm1 the two panels' 64 bytes, zmm2/zmm3 the broadcast tokens.
template <>
inline void tile<2, kTok>(const int8_t* w, size_t pstride, const uint8_t* const* xt, size_t xs, int64_t steps,
                          float* Y, size_t ldy, const I8Matrix& W, const float* xscale, const int32_t* zp,
                          int64_t p, const float* bias, bool accumulate) {
  alignas(64) int32_t buf[2 * kTok * 16];
  const uint8_t *x0 = xt[0], *x3 = xt[3], *x6 = xt[6], *x9 = xt[9];
  int64_t n = steps;
  int32_t* out = buf;
  asm volatile(
      "vpxord %%zmm8, %%zmm8, %%zmm8\n"
      "vpxord %%zmm9, %%zmm9, %%zmm9\n"
      "vpxord %%zmm10, %%zmm10, %%zmm10\n"
      "vpxord %%zmm11, %%zmm11, %%zmm11\n"
      "vpxord %%zmm12, %%zmm12, %%zmm12\n"
      "vpxord %%zmm13, %%zmm13, %%zmm13\n"
      "vpxord %%zmm14, %%zmm14, %%zmm14\n"
      "vpxord %%zmm15, %%zmm15, %%zmm15\n"
      "vpxord %%zmm16, %%zmm16, %%zmm16\n"
      "vpxord %%zmm17, %%zmm17, %%zmm17\n"
      "vpxord %%zmm18, %%zmm18, %%zmm18\n"
      "vpxord %%zmm19, %%zmm19, %%zmm19\n"
      "vpxord %%zmm20, %%zmm20, %%zmm20\n"
      "vpxord %%zmm21, %%zmm21, %%zmm21\n"
      "vpxord %%zmm22, %%zmm22, %%zmm22\n"
      "vpxord %%zmm23, %%zmm23, %%zmm23\n"
      "vpxord %%zmm24, %%zmm24, %%zmm24\n"
      "vpxord %%zmm25, %%zmm25, %%zmm25\n"
      "vpxord %%zmm26, %%zmm26, %%zmm26\n"
      "vpxord %%zmm27, %%zmm27, %%zmm27\n"
      "vpxord %%zmm28, %%zmm28, %%zmm28\n"
      "vpxord %%zmm29, %%zmm29, %%zmm29\n"
      "vpxord %%zmm30, %%zmm30, %%zmm30\n"
      "vpxord %%zmm31, %%zmm31, %%zmm31\n"
      "1:\n"
      "vmovdqu64 (%[w]), %%zmm0\n"
      "vmovdqu64 (%[w],%[ps]), %%zmm1\n"
      "vpbroadcastd (%[x0]), %%zmm2\n"
      "vpdpbusd %%zmm0, %%zmm2, %%zmm8\n"
      "vpdpbusd %%zmm1, %%zmm2, %%zmm9\n"
      "vpbroadcastd (%[x0],%[xs]), %%zmm3\n"
      "vpdpbusd %%zmm0, %%zmm3, %%zmm10\n"
      "vpdpbusd %%zmm1, %%zmm3, %%zmm11\n"
      "vpbroadcastd (%[x0],%[xs],2), %%zmm2\n"
      "vpdpbusd %%zmm0, %%zmm2, %%zmm12\n"
      "vpdpbusd %%zmm1, %%zmm2, %%zmm13\n"
      "vpbroadcastd (%[x3]), %%zmm3\n"
      "vpdpbusd %%zmm0, %%zmm3, %%zmm14\n"
      "vpdpbusd %%zmm1, %%zmm3, %%zmm15\n"
      "vpbroadcastd (%[x3],%[xs]), %%zmm2\n"
      "vpdpbusd %%zmm0, %%zmm2, %%zmm16\n"
      "vpdpbusd %%zmm1, %%zmm2, %%zmm17\n"
      "vpbroadcastd (%[x3],%[xs],2), %%zmm3\n"
      "vpdpbusd %%zmm0, %%zmm3, %%zmm18\n"
      "vpdpbusd %%zmm1, %%zmm3, %%zmm19\n"
      "vpbroadcastd (%[x6]), %%zmm2\n"
      "vpdpbusd %%zmm0, %%zmm2, %%zmm20\n"
      "vpdpbusd %%zmm1, %%zmm2, %%zmm21\n"
      "vpbroadcastd (%[x6],%[xs]), %%zmm3\n"
      "vpdpbusd %%zmm0, %%zmm3, %%zmm22\n"
      "vpdpbusd %%zmm1, %%zmm3, %%zmm23\n"
      "vpbroadcastd (%[x6],%[xs],2), %%zmm2\n"
      "vpdpbusd %%zmm0, %%zmm2, %%zmm24\n"
      "vpdpbusd %%zmm1, %%zmm2, %%zmm25\n"
      "vpbroadcastd (%[x9]), %%zmm3\n"
      "vpdpbusd %%zmm0, %%zmm3, %%zmm26\n"
      "vpdpbusd %%zmm1, %%zmm3, %%zmm27\n"
      "vpbroadcastd (%[x9],%[xs]), %%zmm2\n"
      "vpdpbusd %%zmm0, %%zmm2, %%zmm28\n"
      "vpdpbusd %%zmm1, %%zmm2, %%zmm29\n"
      "vpbroadcastd (%[x9],%[xs],2), %%zmm3\n"
      "vpdpbusd %%zmm0, %%zmm3, %%zmm30\n"
      "vpdpbusd %%zmm1, %%zmm3, %%zmm31\n"
      "add $64, %[w]\n"
      "add $4, %[x0]\n"
      "add $4, %[x3]\n"
      "add $4, %[x6]\n"
      "add $4, %[x9]\n"
      "dec %[n]\n"
      "jnz 1b\n"
      "vmovdqu64 %%zmm8, 0(%[out])\n"
      "vmovdqu64 %%zmm9, 64(%[out])\n"
      "vmovdqu64 %%zmm10, 128(%[out])\n"
      "vmovdqu64 %%zmm11, 192(%[out])\n"
      "vmovdqu64 %%zmm12, 256(%[out])\n"
      "vmovdqu64 %%zmm13, 320(%[out])\n"
      "vmovdqu64 %%zmm14, 384(%[out])\n"
      "vmovdqu64 %%zmm15, 448(%[out])\n"
      "vmovdqu64 %%zmm16, 512(%[out])\n"
      "vmovdqu64 %%zmm17, 576(%[out])\n"
      "vmovdqu64 %%zmm18, 640(%[out])\n"
      "vmovdqu64 %%zmm19, 704(%[out])\n"
      "vmovdqu64 %%zmm20, 768(%[out])\n"
      "vmovdqu64 %%zmm21, 832(%[out])\n"
      "vmovdqu64 %%zmm22, 896(%[out])\n"
      "vmovdqu64 %%zmm23, 960(%[out])\n"
      "vmovdqu64 %%zmm24, 1024(%[out])\n"
      "vmovdqu64 %%zmm25, 1088(%[out])\n"
      "vmovdqu64 %%zmm26, 1152(%[out])\n"
      "vmovdqu64 %%zmm27, 1216(%[out])\n"
      "vmovdqu64 %%zmm28, 1280(%[out])\n"
      "vmovdqu64 %%zmm29, 1344(%[out])\n"
      "vmovdqu64 %%zmm30, 1408(%[out])\n"
      "vmovdqu64 %%zmm31, 1472(%[out])\n"
      : [w] "+r"(w), [x0] "+r"(x0), [x3] "+r"(x3), [x6] "+r"(x6), [x9] "+r"(x9), [n] "+r"(n)
      : [ps] "r"(pstride), [xs] "r"(xs), [out] "r"(out)
      : "memory", "cc", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15", "xmm16", "xmm17", "xmm18", "xmm19", "xmm20", "xmm21", "xmm22", "xmm23", "xmm24", "xmm25", "xmm26", "xmm27", "xmm28", "xmm29", "xmm30", "xmm31");
  store<2, kTok>(buf, Y, ldy, W, xscale, zp, p, bias, accumulate);
}

template <int R>
void tokens_tail(int n, const int8_t* w, size_t pstride, const uint8_t* const* xt, int64_t steps, float* Y,
                 size_t ldy, const I8Matrix& W, const float* xs, const int32_t* zp, int64_t p, const float* bias,
                 bool acc) {
  switch (n) {
#define BLUELM_I8_TAIL(N) \
  case N:                 \
    tile<R, N>(w, pstride, xt, 0, steps, Y, ldy, W, xs, zp, p, bias, acc); break;
    BLUELM_I8_TAIL(1) BLUELM_I8_TAIL(2) BLUELM_I8_TAIL(3) BLUELM_I8_TAIL(4) BLUELM_I8_TAIL(5) BLUELM_I8_TAIL(6)
    BLUELM_I8_TAIL(7) BLUELM_I8_TAIL(8) BLUELM_I8_TAIL(9) BLUELM_I8_TAIL(10) BLUELM_I8_TAIL(11)
#undef BLUELM_I8_TAIL
    default: break;
  }
}

void gemm(const I8Matrix& W, const I8Acts& X, float* Y, size_t ldy, const float* bias, bool accumulate, int64_t p0,
          int64_t p1) {
  const int64_t steps = W.kp / 4, n = X.n;
  const size_t pstride = static_cast<size_t>(kI8Panel * W.kp);
  // Token chunks whose activations stay in L2 while each tile's panels sweep them.
  int64_t chunk = static_cast<int64_t>((512 * 1024) / X.stride);
  chunk = chunk < kTok ? kTok : chunk - chunk % kTok;
  const uint8_t* xt[kTok];
  for (int64_t t0 = 0; t0 < n; t0 += chunk) {
    const int64_t t1 = t0 + chunk < n ? t0 + chunk : n;
    for (int64_t p = p0; p < p1;) {
      const bool two = p + 2 <= p1;
      const int8_t* w = W.panels + p * pstride;
      int64_t t = t0;
      for (; t < t1; t += kTok) {
        const int nt = t1 - t < kTok ? static_cast<int>(t1 - t) : kTok;
        for (int i = 0; i < nt; ++i) xt[i] = X.q + (t + i) * X.stride;
        float* y = Y + t * ldy;
        const float* xs = X.scale + t;
        const int32_t* zp = X.zp + t;
        if (nt == kTok) {
          if (two) tile<2, kTok>(w, pstride, xt, X.stride, steps, y, ldy, W, xs, zp, p, bias, accumulate);
          else tile<1, kTok>(w, pstride, xt, 0, steps, y, ldy, W, xs, zp, p, bias, accumulate);
        } else if (two) {
          tokens_tail<2>(nt, w, pstride, xt, steps, y, ldy, W, xs, zp, p, bias, accumulate);
        } else {
          tokens_tail<1>(nt, w, pstride, xt, steps, y, ldy, W, xs, zp, p, bias, accumulate);
        }
      }
      p += two ? 2 : 1;
    }
  }
}

float quant(const float* x, int64_t k, int64_t kp, uint8_t* q, int32_t* zp) {
  __m512 lo = _mm512_setzero_ps(), hi = lo;
  int64_t i = 0;
  for (; i + 16 <= k; i += 16) {
    const __m512 v = _mm512_loadu_ps(x + i);
    lo = _mm512_min_ps(lo, v);
    hi = _mm512_max_ps(hi, v);
  }
  if (i < k) {
    const __m512 v = _mm512_maskz_loadu_ps(__mmask16((1u << (k - i)) - 1u), x + i);  // zeros past k
    lo = _mm512_min_ps(lo, v);
    hi = _mm512_max_ps(hi, v);
  }
  const float range = _mm512_reduce_max_ps(hi) - _mm512_reduce_min_ps(lo);
  const float inv = range > 0.0f ? 255.0f / range : 0.0f;
  const int32_t z = _mm_cvtss_si32(_mm_mul_ss(_mm_set_ss(-_mm512_reduce_min_ps(lo)), _mm_set_ss(inv)));
  const __m512 vinv = _mm512_set1_ps(inv);
  const __m512i off = _mm512_set1_epi32(z), zero = _mm512_setzero_si512();
  for (i = 0; i + 16 <= k; i += 16) {
    const __m512i v = _mm512_add_epi32(_mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(x + i), vinv)), off);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(q + i), _mm512_cvtusepi32_epi8(_mm512_max_epi32(v, zero)));
  }
  for (; i < k; ++i) {
    const int32_t u = _mm_cvtss_si32(_mm_mul_ss(_mm_set_ss(x[i]), _mm_set_ss(inv))) + z;
    q[i] = static_cast<uint8_t>(u < 0 ? 0 : u > 255 ? 255 : u);
  }
  for (; i < kp; ++i) q[i] = static_cast<uint8_t>(z);
  *zp = z;
  return range / 255.0f;
}

// ---- Attention in F32, one (image, head) at a time -------------------------

constexpr int64_t kKeys = 64;     // keys per score tile (4 zmm)
constexpr int kQ = 6;              // queries per score tile
constexpr int64_t kQBlock = 64;    // queries whose scores are live at once
constexpr int kPQ = 8;             // queries per P.V tile
constexpr int kPV = 3;             // zmm of output columns per P.V tile

int64_t keys_pad(int64_t n) { return (n + kKeys - 1) / kKeys * kKeys; }

int64_t cols_pad(int64_t hd) { return (hd + 15) / 16 * 16; }

size_t attention_work(int64_t n, int64_t hd) {
  return static_cast<size_t>(keys_pad(n) * (hd + kQBlock) + n * cols_pad(hd));
}

// sc[t][j0 + c] = q_t . kt[., j0 + c] for T queries, 64 keys; kt is hd x np.
template <int T>
inline void score_tile(const float* q, size_t ld, const float* kt, int64_t np, int64_t hd, float* sc) {
  __m512 acc[T][4];
#pragma GCC unroll 8
  for (int t = 0; t < T; ++t)
#pragma GCC unroll 8
    for (int c = 0; c < 4; ++c) acc[t][c] = _mm512_setzero_ps();
  for (int64_t d = 0; d < hd; ++d) {
    const float* kd = kt + d * np;
    const __m512 k0 = _mm512_loadu_ps(kd), k1 = _mm512_loadu_ps(kd + 16), k2 = _mm512_loadu_ps(kd + 32),
                 k3 = _mm512_loadu_ps(kd + 48);
#pragma GCC unroll 8
    for (int t = 0; t < T; ++t) {
      const __m512 b = _mm512_set1_ps(q[t * ld + d]);
      acc[t][0] = _mm512_fmadd_ps(k0, b, acc[t][0]);
      acc[t][1] = _mm512_fmadd_ps(k1, b, acc[t][1]);
      acc[t][2] = _mm512_fmadd_ps(k2, b, acc[t][2]);
      acc[t][3] = _mm512_fmadd_ps(k3, b, acc[t][3]);
    }
  }
#pragma GCC unroll 8
  for (int t = 0; t < T; ++t)
#pragma GCC unroll 8
    for (int c = 0; c < 4; ++c) _mm512_storeu_ps(sc + t * np + 16 * c, acc[t][c]);
}

// out[t][d0 + 16c + l] = sum_j p[t][j] v[j][d0 + 16c + l] for T queries, NV
// vectors of 16 columns (the last masked by `last`).
template <int T, int NV>
inline void pv_tile(const float* p, int64_t np, const float* v, int64_t hp, int64_t n, __mmask16 last, float* out,
                    size_t ld) {
  __m512 acc[T][NV];
#pragma GCC unroll 8
  for (int t = 0; t < T; ++t)
#pragma GCC unroll 8
    for (int c = 0; c < NV; ++c) acc[t][c] = _mm512_setzero_ps();
  for (int64_t j = 0; j < n; ++j) {
    const float* vj = v + j * hp;
    __m512 vv[NV];
#pragma GCC unroll 8
    for (int c = 0; c < NV; ++c) vv[c] = _mm512_loadu_ps(vj + 16 * c);
#pragma GCC unroll 8
    for (int t = 0; t < T; ++t) {
      const __m512 b = _mm512_set1_ps(p[t * np + j]);
#pragma GCC unroll 8
      for (int c = 0; c < NV; ++c) acc[t][c] = _mm512_fmadd_ps(vv[c], b, acc[t][c]);
    }
  }
#pragma GCC unroll 8
  for (int t = 0; t < T; ++t)
#pragma GCC unroll 8
    for (int c = 0; c < NV; ++c) {
      if (c + 1 < NV) _mm512_storeu_ps(out + t * ld + 16 * c, acc[t][c]);
      else _mm512_mask_storeu_ps(out + t * ld + 16 * c, last, acc[t][c]);
    }
}

// v: n rows of hp floats (V of this head, columns past hd zero).
template <int NV>
void pv_rows(const float* p, int64_t np, const float* v, int64_t hp, int64_t n, __mmask16 last, float* out,
             size_t ld, int64_t qb) {
  int64_t t = 0;
  for (; t + kPQ <= qb; t += kPQ) pv_tile<kPQ, NV>(p + t * np, np, v, hp, n, last, out + t * ld, ld);
  for (; t + 4 <= qb; t += 4) pv_tile<4, NV>(p + t * np, np, v, hp, n, last, out + t * ld, ld);
  for (; t < qb; ++t) pv_tile<1, NV>(p + t * np, np, v, hp, n, last, out + t * ld, ld);
}

template <int T>
void score_rows(const float* q, size_t ld, const float* kt, int64_t np, int64_t hd, float* sc, int64_t qb) {
  for (int64_t j0 = 0; j0 < np; j0 += kKeys) {
    int64_t t = 0;
    for (; t + T <= qb; t += T) score_tile<T>(q + t * ld, ld, kt + j0, np, hd, sc + t * np + j0);
    for (; t < qb; ++t) score_tile<1>(q + t * ld, ld, kt + j0, np, hd, sc + t * np + j0);
  }
}

void softmax16(float* s, int64_t n, float scale);

void attention(const float* q, const float* k, const float* v, size_t ld, int64_t n, int64_t hd, float scale,
               float* out, float* work) {
  const int64_t np = keys_pad(n);
  float* kt = work;             // hd x np, K transposed, keys past n zero
  float* sc = work + hd * np;   // kQBlock x np scores
  const int64_t hp = cols_pad(hd);
  float* vc = sc + kQBlock * np;  // n x hp, V with contiguous rows, columns past hd zero
  for (int64_t d = 0; d < hd; ++d) {
    float* row = kt + d * np;
    for (int64_t j = 0; j < n; ++j) row[j] = k[j * ld + d];
    for (int64_t j = n; j < np; ++j) row[j] = 0.0f;
  }
  for (int64_t j = 0; j < n; ++j) {
    std::memcpy(vc + j * hp, v + j * ld, sizeof(float) * hd);
    for (int64_t d = hd; d < hp; ++d) vc[j * hp + d] = 0.0f;
  }
  for (int64_t q0 = 0; q0 < n; q0 += kQBlock) {
    const int64_t qb = n - q0 < kQBlock ? n - q0 : kQBlock;
    score_rows<kQ>(q + q0 * ld, ld, kt, np, hd, sc, qb);
    for (int64_t t = 0; t < qb; ++t) softmax16(sc + t * np, n, scale);
    for (int64_t d0 = 0; d0 < hd; d0 += 16 * kPV) {
      const int64_t w = hd - d0 < 16 * kPV ? hd - d0 : 16 * kPV;
      const int nv = static_cast<int>((w + 15) / 16);
      const int64_t rem = w - 16 * (nv - 1);
      const __mmask16 last = rem >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << rem) - 1u);
      const float* vd = vc + d0;
      float* od = out + q0 * ld + d0;
      switch (nv) {
        case 1: pv_rows<1>(sc, np, vd, hp, n, last, od, ld, qb); break;
        case 2: pv_rows<2>(sc, np, vd, hp, n, last, od, ld, qb); break;
        default: pv_rows<3>(sc, np, vd, hp, n, last, od, ld, qb); break;
      }
    }
  }
}

// e^x for x <= 0 (softmax arguments), as the AVX2 exp8: 2^n * p(r), degree 6.
inline __m512 exp16(__m512 x) {
  x = _mm512_max_ps(x, _mm512_set1_ps(-87.0f));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.0f / 720.0f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  return _mm512_scalef_ps(p, n);
}

void softmax16(float* s, int64_t n, float scale) {
  __m512 mv = _mm512_set1_ps(-INFINITY);
  int64_t j = 0;
  for (; j + 16 <= n; j += 16) mv = _mm512_max_ps(mv, _mm512_loadu_ps(s + j));
  const __mmask16 tail = __mmask16((1u << (n - j)) - 1u);
  if (j < n) mv = _mm512_mask_max_ps(mv, tail, mv, _mm512_maskz_loadu_ps(tail, s + j));
  const __m512 m = _mm512_set1_ps(_mm512_reduce_max_ps(mv)), sc = _mm512_set1_ps(scale);
  __m512 acc = _mm512_setzero_ps();
  for (j = 0; j + 16 <= n; j += 16) {
    const __m512 e = exp16(_mm512_mul_ps(sc, _mm512_sub_ps(_mm512_loadu_ps(s + j), m)));
    _mm512_storeu_ps(s + j, e);
    acc = _mm512_add_ps(acc, e);
  }
  if (j < n) {
    const __m512 e = exp16(_mm512_mul_ps(sc, _mm512_sub_ps(_mm512_maskz_loadu_ps(tail, s + j), m)));
    _mm512_mask_storeu_ps(s + j, tail, e);
    acc = _mm512_mask_add_ps(acc, tail, acc, e);
  }
  const __m512 inv = _mm512_set1_ps(1.0f / _mm512_reduce_add_ps(acc));
  for (j = 0; j + 16 <= n; j += 16) _mm512_storeu_ps(s + j, _mm512_mul_ps(_mm512_loadu_ps(s + j), inv));
  if (j < n) _mm512_mask_storeu_ps(s + j, tail, _mm512_mul_ps(_mm512_maskz_loadu_ps(tail, s + j), inv));
}

void gelu_tanh16(float* x, int64_t n) {
  const __m512 k2 = _mm512_set1_ps(-2.0f * 0.7978845608028654f), c = _mm512_set1_ps(0.044715f);
  const __m512 one = _mm512_set1_ps(1.0f), hi = _mm512_set1_ps(88.0f);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512 v = _mm512_loadu_ps(x + i);
    const __m512 u = _mm512_mul_ps(k2, _mm512_fmadd_ps(_mm512_mul_ps(c, v), _mm512_mul_ps(v, v), v));
    _mm512_storeu_ps(x + i, _mm512_div_ps(v, _mm512_add_ps(one, exp16(_mm512_min_ps(u, hi)))));
  }
  if (i < n) {
    const __mmask16 m = __mmask16((1u << (n - i)) - 1u);
    const __m512 v = _mm512_maskz_loadu_ps(m, x + i);
    const __m512 u = _mm512_mul_ps(k2, _mm512_fmadd_ps(_mm512_mul_ps(c, v), _mm512_mul_ps(v, v), v));
    _mm512_mask_storeu_ps(x + i, m, _mm512_div_ps(v, _mm512_add_ps(one, exp16(_mm512_min_ps(u, hi)))));
  }
}

inline __m256 hi8(__m512 v) { return _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)); }

// LayerNorm of one row as the portable version (vision_ops.cpp): sums of x and of
// (x - mean)^2 in double, the output in float, (x - mean) * inv * w + b.
void layer_norm16(const float* x, int64_t d, const float* w, const float* b, float eps, float* y) {
  __m512d s0 = _mm512_setzero_pd(), s1 = s0;
  int64_t i = 0;
  for (; i + 16 <= d; i += 16) {
    const __m512 v = _mm512_loadu_ps(x + i);
    s0 = _mm512_add_pd(s0, _mm512_cvtps_pd(_mm512_castps512_ps256(v)));
    s1 = _mm512_add_pd(s1, _mm512_cvtps_pd(hi8(v)));
  }
  double sum = _mm512_reduce_add_pd(_mm512_add_pd(s0, s1));
  for (; i < d; ++i) sum += x[i];
  const float mean = static_cast<float>(sum / d);
  const __m512 mv = _mm512_set1_ps(mean);
  s0 = s1 = _mm512_setzero_pd();
  for (i = 0; i + 16 <= d; i += 16) {
    const __m512 c = _mm512_sub_ps(_mm512_loadu_ps(x + i), mv);
    const __m512d c0 = _mm512_cvtps_pd(_mm512_castps512_ps256(c)), c1 = _mm512_cvtps_pd(hi8(c));
    s0 = _mm512_add_pd(s0, _mm512_mul_pd(c0, c0));
    s1 = _mm512_add_pd(s1, _mm512_mul_pd(c1, c1));
  }
  double var = _mm512_reduce_add_pd(_mm512_add_pd(s0, s1));
  for (; i < d; ++i) var += static_cast<double>(x[i] - mean) * (x[i] - mean);
  const float inv = static_cast<float>(1.0 / std::sqrt(var / d + eps));
  const __m512 iv = _mm512_set1_ps(inv);
  for (i = 0; i + 16 <= d; i += 16) {
    const __m512 c = _mm512_mul_ps(_mm512_sub_ps(_mm512_loadu_ps(x + i), mv), iv);
    _mm512_storeu_ps(y + i, _mm512_add_ps(_mm512_mul_ps(c, _mm512_loadu_ps(w + i)), _mm512_loadu_ps(b + i)));
  }
  for (; i < d; ++i) y[i] = (x[i] - mean) * inv * w[i] + b[i];
}

VisionOps make_ops() {
  VisionOps o = *avx2_ops();
  o.isa = "avx512";
  o.i8_gemm = gemm;
  o.i8_quant = quant;
  o.attention = attention;
  o.attention_work = attention_work;
  o.softmax = softmax16;
  o.gelu_tanh = gelu_tanh16;
  o.layer_norm = layer_norm16;
  return o;
}

}  // namespace

const VisionOps* avx512_ops() {
  static const VisionOps o = make_ops();
  return &o;
}

}  // namespace bluelm::vision
