// NEON gemm tiles for the AArch64 baseline: quantised blocks by widening
// multiplies (arm/qtile.h), float rows by FMA (common/float_tile.h); driven by
// common/gemm_driver.h
// in the file layout.
#include "kernels/arm/qtile.h"
#include "kernels/common/float_tile.h"
#include "kernels/common/gemm_driver.h"
#include "kernels/neon/neon.h"

namespace bluelm::kernels::neon {
namespace {

// Exact int32 lane sums of 32 int8 products. Each int16 lane holds two products,
// at most 128*127*2 in magnitude (activations are within +-127), so no overflow.
// Lane l sums elements 2l, 2l+1 of each 8-element quarter.
struct Widen {
  static int32x4_t dot32(int8x16_t w0, int8x16_t w1, int8x16_t x0, int8x16_t x1) {
    int16x8_t p0 = vmull_s8(vget_low_s8(w0), vget_low_s8(x0));
    p0 = vmlal_high_s8(p0, w0, x0);
    int16x8_t p1 = vmull_s8(vget_low_s8(w1), vget_low_s8(x1));
    p1 = vmlal_high_s8(p1, w1, x1);
    return vpadalq_s16(vpaddlq_s16(p0), p1);
  }
};

}  // namespace

void fill_gemm(KernelTable& t) {
  t.gemm[W_F32] = gemm_tiles<FloatTile<F32Load>, 0>;
  t.gemm[W_F16] = gemm_tiles<FloatTile<F16Load>, 0>;
  t.gemm[W_BF16] = gemm_tiles<FloatTile<BF16Load>, 0>;
  t.gemm[W_Q4_0] = gemm_tiles<QTile<Widen, Q4_0Blocks>, 0>;
  t.gemm[W_Q4_1] = gemm_tiles<QTile<Widen, Q4_1Blocks>, 0>;
  t.gemm[W_Q8_0] = gemm_tiles<QTile<Widen, Q8_0Blocks>, 0>;
}

}  // namespace bluelm::kernels::neon
