// The NEON dotprod tile of the super-block types without a row-interleaved
// layout (Q2_K, Q3_K, IQ4_XS) on the file layout: R weight rows x T tokens
// (driven by common/gemm_driver.h). Each row's super-block is unpacked once
// per tile by NEON into 16 vectors of signed levels in element order (Fmt::
// unpack; the integer sub-block scales and mins as core/block_formats.h
// decodes them, IQ4_XS's 8 scales of 32 given per 16), then per token:
//   isum = sum_s sc_s * (SDOT of sub-block s)           (exact int32)
//   acc  = fma(d_w * d_x, (float)isum, acc)
//   Q2_K: imin = sum_s mn_s * bsum_s (exact); acc = fma(-(dmin_w * d_x), (float)imin, acc)
// the scalar reference's sequence (kernels/scalar/kquants.h): its bits.
// Include only from files built with +dotprod.
#pragma once
#include <cmath>

#include "kernels/arm/common.h"

namespace bluelm::kernels {
namespace {

struct SuperBlock {
  int8x16_t q[16];  // elements 16s..16s+15
  int32_t sc[16];   // per 16 elements
  int16_t mn[16];   // Q2_K only
  float d, dmin;
};

// Bits 2g..2g+1 of each byte of v (the 2-bit fields of Q2_K/Q3_K).
inline uint8x16_t two_bits(uint8x16_t v, int g) {
  return vandq_u8(vshlq_u8(v, vdupq_n_s8(int8_t(-2 * g))), vdupq_n_u8(3));
}

// The 2-bit fields of Q2_K/Q3_K's qs in element order: element 128h + 32g + l
// is bits 2g of byte 32h + l.
inline void low_bits(const uint8_t* qs, int8x16_t* q) {
  for (int h = 0; h < 2; ++h) {
    const uint8x16_t a0 = vld1q_u8(qs + 32 * h), a1 = vld1q_u8(qs + 32 * h + 16);
    for (int g = 0; g < 4; ++g) {
      q[8 * h + 2 * g] = vreinterpretq_s8_u8(two_bits(a0, g));
      q[8 * h + 2 * g + 1] = vreinterpretq_s8_u8(two_bits(a1, g));
    }
  }
}

struct Q2KUnpack {
  static constexpr size_t kBlock = sizeof(BlockQ2_K);
  static constexpr bool kMin = true;
  static void unpack(const char* p, SuperBlock* u) {
    const BlockQ2_K& b = *reinterpret_cast<const BlockQ2_K*>(p);
    u->d = fp16_to_fp32(b.d);
    u->dmin = fp16_to_fp32(b.dmin);
    for (int s = 0; s < 16; ++s) {
      u->sc[s] = b.scales[s] & 0x0f;
      u->mn[s] = int16_t(b.scales[s] >> 4);
    }
    low_bits(b.qs, u->q);
  }
};

struct Q3KUnpack {
  static constexpr size_t kBlock = sizeof(BlockQ3_K);
  static constexpr bool kMin = false;
  static void unpack(const char* p, SuperBlock* u) {
    const BlockQ3_K& b = *reinterpret_cast<const BlockQ3_K*>(p);
    u->d = fp16_to_fp32(b.d);
    u->dmin = 0.0f;
    int sc[16];
    unpack_q3_k_scales(b.scales, sc);
    for (int s = 0; s < 16; ++s) u->sc[s] = sc[s];
    // Q2_K's low bits; bit e / 32 of hmask[e % 32] set means "no -4"
    low_bits(b.qs, u->q);
    const uint8x16_t m[2] = {vld1q_u8(b.hmask), vld1q_u8(b.hmask + 16)};
    for (int v = 0; v < 16; ++v) {  // elements 16v..16v+15: bit v / 2 of hmask half v % 2
      const uint8x16_t four = vandq_u8(vtstq_u8(m[v % 2], vdupq_n_u8(uint8_t(1u << (v / 2)))), vdupq_n_u8(4));
      u->q[v] = vsubq_s8(vorrq_s8(u->q[v], vreinterpretq_s8_u8(four)), vdupq_n_s8(4));
    }
  }
};

struct IQ4XSUnpack {
  static constexpr size_t kBlock = sizeof(BlockIQ4_XS);
  static constexpr bool kMin = false;
  static void unpack(const char* p, SuperBlock* u) {
    const BlockIQ4_XS& b = *reinterpret_cast<const BlockIQ4_XS*>(p);
    u->d = fp16_to_fp32(b.d);
    u->dmin = 0.0f;
    const int8x16_t levels = vld1q_s8(kIQ4NLValues);
    for (int j = 0; j < 8; ++j) {  // sub-block j of 32: an IQ4_NL block
      u->sc[2 * j] = u->sc[2 * j + 1] = iq4_xs_scale(b, j);
      const uint8x16_t v = vld1q_u8(b.qs + 16 * j);
      u->q[2 * j] = vqtbl1q_s8(levels, vandq_u8(v, vdupq_n_u8(0x0f)));
      u->q[2 * j + 1] = vqtbl1q_s8(levels, vshrq_n_u8(v, 4));
    }
  }
};

template <class Fmt>
struct SuperTile {
  static constexpr size_t kBlock = Fmt::kBlock;
  template <int R, int T>
  static void tile(const char* w, size_t rs, size_t bs, const char* x, size_t xs, float* y, size_t ldy,
                   int64_t K) {
    const int64_t nb = K / QK_K;
    float acc[R][T] = {};
    SuperBlock u;
    for (int64_t b = 0; b < nb; ++b) {
      for (int i = 0; i < R; ++i) {
        Fmt::unpack(w + i * rs + b * bs, &u);
        for (int t = 0; t < T; ++t) {
          const BlockQ8_K& xb = reinterpret_cast<const BlockQ8_K*>(x + t * xs)[b];
          int32x4_t v = vdupq_n_s32(0);
          for (int s = 0; s < 16; ++s)
            v = vmlaq_n_s32(v, vdotq_s32(vdupq_n_s32(0), u.q[s], vld1q_s8(xb.qs + 16 * s)), u.sc[s]);
          acc[i][t] = std::fma(u.d * xb.d, static_cast<float>(vaddvq_s32(v)), acc[i][t]);
          if constexpr (Fmt::kMin) {
            const int16x8_t m0 = vld1q_s16(u.mn), m1 = vld1q_s16(u.mn + 8);
            const int16x8_t s0 = vld1q_s16(xb.bsums), s1 = vld1q_s16(xb.bsums + 8);
            int32x4_t im = vmull_s16(vget_low_s16(m0), vget_low_s16(s0));
            im = vmlal_high_s16(im, m0, s0);
            im = vmlal_s16(im, vget_low_s16(m1), vget_low_s16(s1));
            im = vmlal_high_s16(im, m1, s1);
            acc[i][t] = std::fma(-(u.dmin * xb.d), static_cast<float>(vaddvq_s32(im)), acc[i][t]);
          }
        }
      }
    }
    for (int i = 0; i < R; ++i)
      for (int t = 0; t < T; ++t) y[t * ldy + i] = acc[i][t];
  }
};

}  // namespace
}  // namespace bluelm::kernels
