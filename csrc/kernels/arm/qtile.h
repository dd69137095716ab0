// The NEON quantised tile of the neon and neon_dotprod tables: R weight rows x
// T tokens over all K blocks in an order policy (OrderTile). QTile's order:
// each block's products summed exactly in 4 int32
// lanes, the lanes scaled by d_w * d_x into a float32x4 accumulator (one FMA per
// block), folded by vaddvq at the end; Q4_1's m_w * s_x summed apart and added
// last. Dot forms the lane sums (which elements share a lane differs per table:
// widening multiplies or SDOT):
//   int32x4_t Dot::dot32(int8x16_t w0, int8x16_t w1, int8x16_t x0, int8x16_t x1)
// Fmt is a block tag of arm/common.h. Block b of tile row i is at w + i*rs + b*bs
// (common/gemm_driver.h).
#pragma once
#include "kernels/arm/common.h"

namespace bluelm::kernels {
namespace {

// The lane-sum order of the Q4_0 / Q8_0 / Q4_1 tiles: a block's 4 int32 lane
// sums (Dot) scaled into one float32x4, folded by vaddvq, mins added last.
// Order policies (this one; arm/block_tile.h's for other orders) give
//   Acc, zero(), step(acc, w0, w1, x0, x1, d_w * d_x), min(macc, m_w, s_x),
//   fold(acc, macc): the output.
template <class Dot>
struct Lanes4 {
  using Acc = float32x4_t;
  static Acc zero() { return vdupq_n_f32(0.0f); }
  static Acc step(Acc a, int8x16_t w0, int8x16_t w1, int8x16_t x0, int8x16_t x1, float d) {
    return vfmaq_n_f32(a, vcvtq_f32_s32(Dot::dot32(w0, w1, x0, x1)), d);
  }
  static float min(float macc, float mw, float sx) { return macc + mw * sx; }
  static float fold(Acc a, float macc) { return vaddvq_f32(a) + macc; }
};

// R weight rows x T tokens of a block format in an order.
template <class Order, class Fmt>
struct OrderTile {
  static constexpr size_t kBlock = Fmt::kBlock;
  template <int R, int T>
  static void tile(const char* w, size_t rs, size_t bs, const char* x, size_t xs, float* y, size_t ldy,
                   int64_t K) {
    const int64_t nb = K / QK;
    typename Order::Acc acc[R][T];
    float macc[R][T];
    for (int i = 0; i < R; ++i)
      for (int t = 0; t < T; ++t) {
        acc[i][t] = Order::zero();
        macc[i][t] = 0.0f;
      }
    for (int64_t b = 0; b < nb; ++b) {
      int8x16_t x0[T], x1[T];
      float dx[T], sx[T];
      for (int t = 0; t < T; ++t) {
        const char* xb = x + t * xs + b * Fmt::kXBlock;
        x0[t] = vld1q_s8(reinterpret_cast<const int8_t*>(xb + Fmt::kXq));
        x1[t] = vld1q_s8(reinterpret_cast<const int8_t*>(xb + Fmt::kXq + 16));
        dx[t] = h2f(xb);
        sx[t] = Fmt::kMin ? h2f(xb + 2) : 0.0f;
      }
      for (int i = 0; i < R; ++i) {
        const char* wb = w + i * rs + b * bs;
        int8x16_t w0, w1;
        Fmt::weights(wb, &w0, &w1);
        const float dw = h2f(wb);
        const float mw = Fmt::kMin ? h2f(wb + 2) : 0.0f;
        for (int t = 0; t < T; ++t) {
          acc[i][t] = Order::step(acc[i][t], w0, w1, x0[t], x1[t], dw * dx[t]);
          if (Fmt::kMin) macc[i][t] = Order::min(macc[i][t], mw, sx[t]);
        }
      }
    }
    for (int i = 0; i < R; ++i)
      for (int t = 0; t < T; ++t) y[t * ldy + i] = Order::fold(acc[i][t], macc[i][t]);
  }
};

template <class Dot, class Fmt>
using QTile = OrderTile<Lanes4<Dot>, Fmt>;

}  // namespace
}  // namespace bluelm::kernels
