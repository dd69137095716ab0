// AVX-512 VNNI kernels of the vision encoder's int8 format (i8_format.h, K4
// panels): a register tile of 2 panels (32 output rows) x 12 tokens, 24 zmm
// int32 accumulators fed by one vpdpbusd per (panel, token) per 4 K-bytes;
// tokens in chunks that stay in L2 while a tile's panels stay in L1/L2
// (common/i8_driver.h). The full tile prefetches its outputs' lines and the
// panels 1 KiB ahead (each worth about 1% here). i8_gemm_gelu is the same gemm
// with GELU-tanh (vision_gelu.h, gelu_tanh's bits) on each output in the
// epilogue, while in registers (the up-projection: no second pass over its
// outputs). Built with -ffp-contract=off so the epilogue rounds as the scalar
// reference does.
#include "kernels/avx512/avx512.h"
#include "kernels/avx512/vision_gelu.h"
#include "kernels/avx512/zmm.h"
#include "kernels/common/i8_quant.h"

namespace bluelm::kernels::avx512 {
namespace {

constexpr int kTok = 12;  // tokens per register tile

// The epilogue of a tile: acc (R x T blocks of 16 int32, token-major: block
// t * R + r is panel p + r against token t) -> Y, as the scalar reference.
template <int R, int T>
inline void store(const int32_t* acc, const I8Tile& a) {
  const I8Matrix& W = *a.W;
  const float* bias = a.bias;
  for (int r = 0; r < R; ++r) {
    const int64_t row0 = (a.p + r) * kI8Panel;
    const int64_t left = W.rows - row0;
    const __mmask16 m = left >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << left) - 1u);
    const __m512 sw = _mm512_loadu_ps(W.scale + row0);
    const __m512i wsum = _mm512_loadu_si512(W.wsum + row0);
    const __m512 b = bias ? _mm512_maskz_loadu_ps(m, bias + row0) : _mm512_setzero_ps();
    for (int t = 0; t < T; ++t) {
      const __m512i corr = _mm512_mullo_epi32(_mm512_set1_epi32(a.zp[t]), wsum);
      __m512 v = _mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_load_si512(acc + (t * R + r) * 16), corr));
      v = _mm512_mul_ps(v, _mm512_mul_ps(sw, _mm512_set1_ps(a.xscale[t])));
      if (bias) v = _mm512_add_ps(v, b);
      float* y = a.y + t * a.ldy + row0;
      if (a.accumulate) v = _mm512_add_ps(_mm512_maskz_loadu_ps(m, y), v);
      if (a.gelu) v = gelu16(v);
      _mm512_mask_storeu_ps(y, m, v);
    }
  }
}

// R panels (w, w + pstride) x T tokens (xt) over `steps` K steps, with intrinsics
// (the edge tiles).
template <int R, int T>
inline void tile_intrinsics(const I8Tile& a) {
  const int8_t* w = a.w;
  const size_t pstride = a.pstride;
  const int64_t steps = a.W->kp / 4;
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
      const __m512i x = bcast4(a.xt[t] + 4 * s);
      acc[0][t] = _mm512_dpbusd_epi32(acc[0][t], x, b0);
      if constexpr (R > 1) acc[R - 1][t] = _mm512_dpbusd_epi32(acc[R - 1][t], x, b1);
    }
  }
  alignas(64) int32_t buf[R * T * 16];
#pragma GCC unroll 12
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 12
    for (int t = 0; t < T; ++t) _mm512_store_si512(buf + (t * R + r) * 16, acc[r][t]);
  store<R, T>(buf, a);
}

// The full tile, 2 panels x 12 tokens whose rows are xs bytes apart, in
// assembly: GCC keeps an array of 24 accumulators in memory and copies each
// around its vpdpbusd (measured 35% of the VNNI peak); here zmm8..zmm31 hold
// them, zmm0/zmm1 the two panels' 64 bytes, zmm2/zmm3 the broadcast tokens.
inline void tile_asm(const I8Tile& a) {
  alignas(64) int32_t buf[2 * kTok * 16];
  for (int t = 0; t < kTok; ++t) {
    float* y = a.y + t * a.ldy + a.p * kI8Panel;
    _mm_prefetch(reinterpret_cast<const char*>(y), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(y + 16), _MM_HINT_T0);
  }
  const int8_t* w = a.w;
  const size_t pstride = a.pstride, xs = a.xs;
  const uint8_t *x0 = a.xt[0], *x3 = a.xt[3], *x6 = a.xt[6], *x9 = a.xt[9];
  int64_t n = a.W->kp / 4;
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
      "prefetcht0 1024(%[w])\n"
      "prefetcht0 1024(%[w],%[ps])\n"
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
  store<2, kTok>(buf, a);
}

struct Tiles {
  static constexpr int kTok = avx512::kTok, kPanels = 2;
  template <int R, int T>
  static void tile(const I8Tile& a) {
    if constexpr (R == 2 && T == kTok) tile_asm(a);
    else tile_intrinsics<R, T>(a);
  }
};

}  // namespace

void fill_i8(KernelTable& t) {
  set_i8_gemm<Tiles, 512 * 1024>(t.vision, I8Layout::K4);  // tokens in chunks of 512 KiB
  t.vision.i8_gemm_gelu = i8_gemm_tiles<Tiles, 512 * 1024, true>;
  t.vision.i8_quant = i8_quant_row<I8Quant16>;
}

}  // namespace bluelm::kernels::avx512
