// The block tags and order policies (arm/qtile.h's OrderTile) of the NEON
// dotprod 32-element block types whose order of arithmetic is x86's
// (kernels/scalar/kquants.h), so results are the scalar reference's bits.
//   Lanes8 (Q5_0, Q5_1): per block, 8 sums of 4 consecutive products (SDOT of
//   each 16-element half: lanes 0..3, then 4..7), each lane into its own float
//   accumulator by one FMA with d_w * d_x; folded at the end as sum8_tree;
//   Q5_1's m_w * s_x summed apart (each product rounded) and added last.
//   OneAcc (IQ4_NL): a block's 32 products summed exactly, one FMA with
//   d_w * d_x into a single accumulator.
// Include only from files built with +dotprod.
#pragma once
#include <cmath>

#include "kernels/arm/qtile.h"

namespace bluelm::kernels {
namespace {

// The high bits of bytes 0..1 (elements 0..15) of a 5-bit block's qh, as 0x10.
inline uint8x16_t qh_bits(const char* qh) {
  const uint8x16_t b = vcombine_u8(vdup_n_u8(uint8_t(qh[0])), vdup_n_u8(uint8_t(qh[1])));
  const uint8x16_t bit = {1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128};
  return vandq_u8(vtstq_u8(b, bit), vdupq_n_u8(0x10));
}

// Q5_0 (kMin = false: levels less 16, against Q8_0) and Q5_1 (against Q8_1):
// element j is nibble j of qs (low nibbles first) with bit j of qh on top.
template <bool kHasMin>
struct Q5Blocks {
  static constexpr size_t kBlock = kHasMin ? sizeof(BlockQ5_1) : sizeof(BlockQ5_0);
  static constexpr size_t kXBlock = kHasMin ? sizeof(BlockQ8_1) : sizeof(BlockQ8_0);
  static constexpr size_t kXq = kHasMin ? 4 : 2;
  static constexpr bool kMin = kHasMin;
  static void weights(const char* wb, int8x16_t* w0, int8x16_t* w1) {
    const char* qh = wb + (kHasMin ? 4 : 2);
    const uint8x16_t v = vld1q_u8(reinterpret_cast<const uint8_t*>(qh + 4));
    const uint8x16_t lo = vorrq_u8(vandq_u8(v, vdupq_n_u8(0x0f)), qh_bits(qh));
    const uint8x16_t hi = vorrq_u8(vshrq_n_u8(v, 4), qh_bits(qh + 2));
    const int8x16_t off = vdupq_n_s8(kHasMin ? 0 : 16);
    *w0 = vsubq_s8(vreinterpretq_s8_u8(lo), off);
    *w1 = vsubq_s8(vreinterpretq_s8_u8(hi), off);
  }
};

struct IQ4_NLBlocks {
  static constexpr size_t kBlock = sizeof(BlockIQ4_NL), kXBlock = sizeof(BlockQ8_0), kXq = 2;
  static constexpr bool kMin = false;
  static void weights(const char* wb, int8x16_t* w0, int8x16_t* w1) {
    const int8x16_t levels = vld1q_s8(kIQ4NLValues);
    const uint8x16_t v = vld1q_u8(reinterpret_cast<const uint8_t*>(wb + 2));
    *w0 = vqtbl1q_s8(levels, vandq_u8(v, vdupq_n_u8(0x0f)));
    *w1 = vqtbl1q_s8(levels, vshrq_n_u8(v, 4));
  }
};

struct Lanes8 {
  struct Acc {
    float32x4_t lo, hi;
  };
  static Acc zero() { return {vdupq_n_f32(0.0f), vdupq_n_f32(0.0f)}; }
  static Acc step(Acc a, int8x16_t w0, int8x16_t w1, int8x16_t x0, int8x16_t x1, float d) {
    const int32x4_t z = vdupq_n_s32(0);
    a.lo = vfmaq_n_f32(a.lo, vcvtq_f32_s32(vdotq_s32(z, w0, x0)), d);
    a.hi = vfmaq_n_f32(a.hi, vcvtq_f32_s32(vdotq_s32(z, w1, x1)), d);
    return a;
  }
  // m_w * s_x rounded on its own (fma with 0 is the product, never fused into the add)
  static float min(float macc, float mw, float sx) { return macc + std::fma(mw, sx, 0.0f); }
  // ((a0 + a4) + (a2 + a6)) + ((a1 + a5) + (a3 + a7)), plus the mins (0 for Q5_0, as the reference)
  static float fold(Acc a, float mins) {
    const float32x4_t s = vaddq_f32(a.lo, a.hi);
    const float32x2_t p = vadd_f32(vget_low_f32(s), vget_high_f32(s));
    return (vget_lane_f32(p, 0) + vget_lane_f32(p, 1)) + mins;
  }
};

struct OneAcc {
  using Acc = float;
  static Acc zero() { return 0.0f; }
  static Acc step(Acc a, int8x16_t w0, int8x16_t w1, int8x16_t x0, int8x16_t x1, float d) {
    const int32_t s = vaddvq_s32(vdotq_s32(vdotq_s32(vdupq_n_s32(0), w0, x0), w1, x1));
    return std::fma(d, static_cast<float>(s), a);
  }
  static float min(float macc, float, float) { return macc; }  // no min term
  static float fold(Acc a, float) { return a; }
};

}  // namespace
}  // namespace bluelm::kernels
