// The epilogue shared by the NEON int8 gemms of the vision format
// (i8_format.h): the scalar reference's float operations, in its order, on the
// exact int32 sums of one panel. Internal linkage, as arm/common.h; include
// only from files built with -ffp-contract=off (kernels.cmake).
#pragma once
#include <arm_neon.h>

#include "kernels/common/i8_driver.h"

namespace bluelm::kernels {
namespace {

// acc: T tokens' sums for the 16 rows of panel a.p (token t at acc + 16 t), each
// sum acc_true - shift * wsum (the tiles that multiply q = u - 128 as signed
// bytes leave shift = 128; those that take u unsigned, 0). Writes
//   y = float(acc_true - zp * wsum) * (scale * x_scale) (+ bias) (+ y)
// for the panel's rows below W.rows.
template <int T>
inline void i8_store(const int32_t* acc, int32_t shift, const I8Tile& a) {
  const I8Matrix& W = *a.W;
  const int64_t row0 = a.p * kI8Panel;
  const int64_t left = W.rows - row0 < kI8Panel ? W.rows - row0 : kI8Panel;
  float b[kI8Panel] = {};
  if (a.bias)
    for (int64_t i = 0; i < left; ++i) b[i] = a.bias[row0 + i];
  for (int g = 0; g < 4; ++g) {  // rows 4g .. 4g+3; scale and wsum are padded to whole panels
    const float32x4_t sw = vld1q_f32(W.scale + row0 + 4 * g);
    const int32x4_t wsum = vld1q_s32(W.wsum + row0 + 4 * g);
    const float32x4_t bv = vld1q_f32(b + 4 * g);
    for (int t = 0; t < T; ++t) {
      // acc_true - zp * wsum = acc + (shift - zp) * wsum, exactly in int32.
      const int32x4_t c = vmlaq_s32(vld1q_s32(acc + 16 * t + 4 * g), vdupq_n_s32(shift - a.zp[t]), wsum);
      float32x4_t v = vmulq_f32(vcvtq_f32_s32(c), vmulq_f32(sw, vdupq_n_f32(a.xscale[t])));
      if (a.bias) v = vaddq_f32(v, bv);
      float* y = a.y + t * a.ldy + row0 + 4 * g;
      if (left >= 4 * g + 4) {
        if (a.accumulate) v = vaddq_f32(vld1q_f32(y), v);
        vst1q_f32(y, v);
      } else {
        float tmp[4];
        vst1q_f32(tmp, v);
        for (int i = 0; 4 * g + i < left; ++i) y[i] = a.accumulate ? y[i] + tmp[i] : tmp[i];
      }
    }
  }
}

}  // namespace
}  // namespace bluelm::kernels
