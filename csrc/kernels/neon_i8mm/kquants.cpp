// NEON i8mm Q4_K and Q5_K: arm/kquant_tiles.h with the products of token
// pairs by SMMLA. On the 4-row layout, zipping the 32-bit words w and w+1 of
// the 4 rows gives rows 0,1 (and 2,3) x 8 elements, one 2x8 operand; two
// tokens' 8 activation bytes zipped are the other; SMMLA adds the 2 rows x 2
// tokens of 8 products, half the instructions of SDOT by element for the same
// sums. The sums are exact integers, so the results stay the scalar
// reference's bits. An odd last token, decode, Q6_K and the other types run
// the dotprod kernels (compiled here with the same code).
#include "kernels/arm/kquant_tiles.h"
#include "kernels/neon_i8mm/neon_i8mm.h"

namespace bluelm::kernels::neon_i8mm {
namespace {

inline int8x16_t zip32_lo(uint8x16_t a, uint8x16_t b) {
  return vreinterpretq_s8_u32(vzip1q_u32(vreinterpretq_u32_u8(a), vreinterpretq_u32_u8(b)));
}
inline int8x16_t zip32_hi(uint8x16_t a, uint8x16_t b) {
  return vreinterpretq_s8_u32(vzip2q_u32(vreinterpretq_u32_u8(a), vreinterpretq_u32_u8(b)));
}
inline int8x16_t zip64_lo(int8x16_t a, int8x16_t b) {
  return vreinterpretq_s8_s64(vzip1q_s64(vreinterpretq_s64_s8(a), vreinterpretq_s64_s8(b)));
}
inline int8x16_t zip64_hi(int8x16_t a, int8x16_t b) {
  return vreinterpretq_s8_s64(vzip2q_s64(vreinterpretq_s64_s8(a), vreinterpretq_s64_s8(b)));
}

// One sub-block of 32 (the 8 words q of 4 rows) with tokens xa, xb (32 bytes
// each): rows 0,1 x the two tokens and rows 2,3 x them, as int32x4 per token
// with a lane per row.
inline void mmla32(const uint8x16_t* q, const int8_t* xa, const int8_t* xb, int32x4_t* ta, int32x4_t* tb) {
  int32x4_t p01 = vdupq_n_s32(0), p23 = vdupq_n_s32(0);  // [r0a, r0b, r1a, r1b], [r2a, ...]
  for (int h = 0; h < 2; ++h) {
    const int8x16_t a = vld1q_s8(xa + 16 * h), b = vld1q_s8(xb + 16 * h);
    const int8x16_t x0 = zip64_lo(a, b), x1 = zip64_hi(a, b);  // elements 16h..16h+7, +8..+15
    p01 = vmmlaq_s32(p01, zip32_lo(q[4 * h], q[4 * h + 1]), x0);
    p23 = vmmlaq_s32(p23, zip32_hi(q[4 * h], q[4 * h + 1]), x0);
    p01 = vmmlaq_s32(p01, zip32_lo(q[4 * h + 2], q[4 * h + 3]), x1);
    p23 = vmmlaq_s32(p23, zip32_hi(q[4 * h + 2], q[4 * h + 3]), x1);
  }
  *ta = vuzp1q_s32(p01, p23);
  *tb = vuzp2q_s32(p01, p23);
}

struct MmlaK4 {
  template <int J, int T>
  static void dot(const uint8x16_t* lo, const uint8x16_t* hi, const KTok* const* tk, int64_t b,
                  const int32x4_t* sc, int32x4_t* isum) {
#pragma GCC unroll 2
    for (int t = 0; t + 1 < T; t += 2) {
      const int8_t* xa = tk[t][b].x->qs + 64 * J;
      const int8_t* xb = tk[t + 1][b].x->qs + 64 * J;
      int32x4_t a0, a1, c0, c1;
      mmla32(lo, xa, xb, &a0, &a1);
      mmla32(hi, xa + 32, xb + 32, &c0, &c1);
      isum[t] = vmlaq_s32(vmlaq_s32(isum[t], a0, sc[2 * J]), c0, sc[2 * J + 1]);
      isum[t + 1] = vmlaq_s32(vmlaq_s32(isum[t + 1], a1, sc[2 * J]), c1, sc[2 * J + 1]);
    }
    if constexpr (T % 2 == 1) SdotK4::dot<J, 1>(lo, hi, tk + T - 1, b, sc, isum + T - 1);
  }
};

}  // namespace

void fill_kquants(KernelTable& t) { fill_kquant_tiles<MmlaK4>(t); }

}  // namespace bluelm::kernels::neon_i8mm
