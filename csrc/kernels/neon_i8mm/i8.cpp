// NEON i8mm kernels of the vision encoder's int8 format (i8_format.h, K8
// panels: row pairs x 8 K-bytes). USMMLA multiplies a 2x8 block of unsigned
// activation bytes (two tokens) by a 2x8 block of signed weights (two rows)
// into the 2x2 int32 sums [t0.r0, t0.r1, t1.r0, t1.r1]: 32 multiply-adds per
// instruction, twice SDOT's 16, on u8 activations as they are (no -128 flip).
// The sums are exact; the shared epilogue (common/i8_driver.h) subtracts zp * wsum.
// Tile: 1 panel (8 row pairs) x 4 tokens (2 pairs), 16 int32x4 accumulators:
// per 8 K-bytes 2 LD1 (4 registers each), per token pair 2 loads, 16 USMMLA.
// Built with -ffp-contract=off; the quantiser is the NEON table's.
#include "kernels/common/i8_driver.h"
#include "kernels/neon_i8mm/neon_i8mm.h"

namespace bluelm::kernels::neon_i8mm {
namespace {

struct Tiles {
  static constexpr int kTok = 4, kPanels = 1;

  template <int R, int T>
  static void tile(const I8Tile& a) {
    constexpr int TP = (T + 1) / 2;  // token pairs; an odd last token is paired with itself
    const int64_t steps = a.W->kp / 8;
    int32x4_t acc[TP][8] = {};  // zeros
    const uint8_t* x0[TP];
    const uint8_t* x1[TP];
#pragma GCC unroll 16
    for (int p = 0; p < TP; ++p) {
      x0[p] = a.xt[2 * p];
      x1[p] = a.xt[2 * p + 1 < T ? 2 * p + 1 : 2 * p];
    }
    for (int64_t s = 0; s < steps; ++s) {
      const int8x16x4_t w0 = vld1q_s8_x4(a.w + s * 128), w1 = vld1q_s8_x4(a.w + s * 128 + 64);
#pragma GCC unroll 16
      for (int p = 0; p < TP; ++p) {
        const uint8x16_t x = vcombine_u8(vld1_u8(x0[p] + 8 * s), vld1_u8(x1[p] + 8 * s));
#pragma GCC unroll 16
        for (int r = 0; r < 4; ++r) {
          acc[p][r] = vusmmlaq_s32(acc[p][r], x, w0.val[r]);
          acc[p][4 + r] = vusmmlaq_s32(acc[p][4 + r], x, w1.val[r]);
        }
      }
    }
    alignas(16) int32_t buf[2 * TP * kI8Panel];
#pragma GCC unroll 16
    for (int p = 0; p < TP; ++p)
#pragma GCC unroll 16
      for (int r = 0; r < 8; ++r) {
        vst1_s32(buf + 16 * (2 * p) + 2 * r, vget_low_s32(acc[p][r]));
        vst1_s32(buf + 16 * (2 * p + 1) + 2 * r, vget_high_s32(acc[p][r]));
      }
    i8_store<I8Lanes4, T>(buf, 0, a);
  }
};

}  // namespace

void fill_i8(KernelTable& t) { set_i8_gemm<Tiles>(t.vision, I8Layout::K8); }

}  // namespace bluelm::kernels::neon_i8mm
