// NEON (baseline AArch64) kernels of the vision encoder's int8 format
// (i8_format.h, K4 panels): widening multiplies. Per 2 K-steps (8 bytes), the
// token's bytes as q = u - 128 (signed), 4 of them in every 32-bit lane,
// against 4 rows x 4 bytes of the panel: SMULL/SMLAL put two products per
// int16 lane (|q| <= 128, |w| <= 127: at most 32512, never saturating), SADALP
// widens pairs into int32. The sums are acc - 128 * wsum, exact; the shared
// epilogue (common/i8_driver.h) adds (128 - zp) * wsum. Tile: 1 panel x 2 tokens.
// Also the table's activation quantiser. Built with -ffp-contract=off.
#include <cstring>

#include "kernels/common/i8_driver.h"
#include "kernels/common/i8_quant.h"
#include "kernels/neon/neon.h"

namespace bluelm::kernels::neon {
namespace {

// 4 activation bytes flipped to signed (u ^ 0x80 = u - 128), in every 32-bit lane.
inline int8x16_t bcast4_signed(const uint8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return veorq_s8(vreinterpretq_s8_s32(vdupq_n_s32(v)), vdupq_n_s8(-128));
}

struct Tiles {
  static constexpr int kTok = 1, kPanels = 1;

  // acc[t][2j] holds rows 4j, 4j+1 and acc[t][2j+1] rows 4j+2, 4j+3, two lanes each.
  template <int T>
  static void steps2(const int8_t* w, const int8x16_t* xa, const int8x16_t* xb, int32x4_t (*acc)[8]) {
    const int8x16x4_t w0 = vld1q_s8_x4(w), w1 = vld1q_s8_x4(w + 64);
#pragma GCC unroll 16
    for (int t = 0; t < T; ++t)
#pragma GCC unroll 16
      for (int j = 0; j < 4; ++j) {
        int16x8_t lo = vmull_s8(vget_low_s8(w0.val[j]), vget_low_s8(xa[t]));
        lo = vmlal_s8(lo, vget_low_s8(w1.val[j]), vget_low_s8(xb[t]));
        int16x8_t hi = vmull_high_s8(w0.val[j], xa[t]);
        hi = vmlal_high_s8(hi, w1.val[j], xb[t]);
        acc[t][2 * j] = vpadalq_s16(acc[t][2 * j], lo);
        acc[t][2 * j + 1] = vpadalq_s16(acc[t][2 * j + 1], hi);
      }
  }

  template <int R, int T>
  static void tile(const I8Tile& a) {
    const int64_t steps = a.W->kp / 4;
    int32x4_t acc[T][8] = {};  // zeros
    int64_t s = 0;
    for (; s + 2 <= steps; s += 2) {
      int8x16_t xa[T], xb[T];
#pragma GCC unroll 16
      for (int t = 0; t < T; ++t) {
        xa[t] = bcast4_signed(a.xt[t] + 4 * s);
        xb[t] = bcast4_signed(a.xt[t] + 4 * s + 4);
      }
      steps2<T>(a.w + s * 64, xa, xb, acc);
    }
    if (s < steps) {  // an odd last step
      const int8x16x4_t w0 = vld1q_s8_x4(a.w + s * 64);
#pragma GCC unroll 16
      for (int t = 0; t < T; ++t) {
        const int8x16_t x = bcast4_signed(a.xt[t] + 4 * s);
#pragma GCC unroll 16
        for (int j = 0; j < 4; ++j) {
          acc[t][2 * j] = vpadalq_s16(acc[t][2 * j], vmull_s8(vget_low_s8(w0.val[j]), vget_low_s8(x)));
          acc[t][2 * j + 1] = vpadalq_s16(acc[t][2 * j + 1], vmull_high_s8(w0.val[j], x));
        }
      }
    }
    alignas(16) int32_t buf[T * kI8Panel];
#pragma GCC unroll 16
    for (int t = 0; t < T; ++t)
#pragma GCC unroll 16
      for (int j = 0; j < 4; ++j) vst1q_s32(buf + 16 * t + 4 * j, vpaddq_s32(acc[t][2 * j], acc[t][2 * j + 1]));
    i8_store<I8Lanes4, T>(buf, 128, a);
  }
};

}  // namespace

void fill_i8(KernelTable& t) { set_i8<Tiles, I8Quant4>(t.vision, I8Layout::K4); }

}  // namespace bluelm::kernels::neon
