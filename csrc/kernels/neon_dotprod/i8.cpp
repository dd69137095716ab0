// NEON dotprod kernels of the vision encoder's int8 format (i8_format.h, K4
// panels): SDOT by element. A K-step's 64 panel bytes are 4 registers of 4
// rows x 4 bytes; one SDOT (by element) adds, per row, the 4 products with
// 4 of the token's bytes, taken as q = u - 128 (signed) from one register
// that holds 4 steps. The sums are acc - 128 * wsum, exact; the shared epilogue
// (common/i8_driver.h) adds (128 - zp) * wsum. Tile: 1 panel x 4 tokens: per 4 K-steps
// 4 LD1 (4 registers each), per token 1 load and 1 EOR, 16 SDOT.
// Built with -ffp-contract=off; the quantiser is the NEON table's.
#include <cstring>

#include "kernels/common/i8_driver.h"
#include "kernels/neon_dotprod/neon_dotprod.h"

namespace bluelm::kernels::neon_dotprod {
namespace {

struct Tiles {
  static constexpr int kTok = 3, kPanels = 1;

  // One K-step (64 panel bytes) against lane L (bytes 4L..4L+3) of each token's x.
  template <int L, int T>
  static void step(const int8_t* w, const int8x16_t* x, int32x4_t (*acc)[4]) {
    const int8x16x4_t v = vld1q_s8_x4(w);
#pragma GCC unroll 16
    for (int t = 0; t < T; ++t)
#pragma GCC unroll 16
      for (int g = 0; g < 4; ++g) acc[t][g] = vdotq_laneq_s32(acc[t][g], v.val[g], x[t], L);
  }

  template <int R, int T>
  static void tile(const I8Tile& a) {
    const int64_t steps = a.W->kp / 4;
    const int8x16_t flip = vdupq_n_s8(-128);
    int32x4_t acc[T][4] = {};  // zeros
    int64_t s = 0;
    for (; s + 4 <= steps; s += 4) {
      int8x16_t x[T];
#pragma GCC unroll 16
      for (int t = 0; t < T; ++t)
        x[t] = veorq_s8(vreinterpretq_s8_u8(vld1q_u8(a.xt[t] + 4 * s)), flip);
      const int8_t* w = a.w + s * 64;
      step<0, T>(w, x, acc);
      step<1, T>(w + 64, x, acc);
      step<2, T>(w + 128, x, acc);
      step<3, T>(w + 192, x, acc);
    }
    for (; s < steps; ++s) {  // the last 1-3 steps, 4 bytes each
      int8x16_t x[T];
#pragma GCC unroll 16
      for (int t = 0; t < T; ++t) {
        int32_t v;
        std::memcpy(&v, a.xt[t] + 4 * s, 4);
        x[t] = veorq_s8(vreinterpretq_s8_s32(vdupq_n_s32(v)), flip);
      }
      step<0, T>(a.w + s * 64, x, acc);
    }
    alignas(16) int32_t buf[T * kI8Panel];
#pragma GCC unroll 16
    for (int t = 0; t < T; ++t)
#pragma GCC unroll 16
      for (int g = 0; g < 4; ++g) vst1q_s32(buf + 16 * t + 4 * g, acc[t][g]);
    i8_store<I8Lanes4, T>(buf, 128, a);
  }
};

}  // namespace

void fill_i8(KernelTable& t) { set_i8_gemm<Tiles>(t.vision, I8Layout::K4); }

}  // namespace bluelm::kernels::neon_dotprod
