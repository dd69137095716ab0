// The int8 format's scalar reference (kernels/i8_format.h), reading the K4
// panel layout. Built with -ffp-contract=off (kernels.cmake): the epilogue
// rounds each product before the next add, as every SIMD version does.
#include "kernels/common/round.h"
#include "kernels/scalar/scalar.h"

namespace bluelm::kernels::scalar {
namespace {

float i8_quant(const float* x, int64_t k, int64_t kp, uint8_t* q, int32_t* zp) {
  float lo = 0.0f, hi = 0.0f;
  for (int64_t i = 0; i < k; ++i) {
    lo = x[i] < lo ? x[i] : lo;
    hi = x[i] > hi ? x[i] : hi;
  }
  const float range = hi - lo, inv = range > 0.0f ? 255.0f / range : 0.0f;
  const int32_t z = round_even(-lo * inv);
  for (int64_t i = 0; i < k; ++i) {
    const int32_t u = round_even(x[i] * inv) + z;
    q[i] = static_cast<uint8_t>(u < 0 ? 0 : u > 255 ? 255 : u);
  }
  for (int64_t i = k; i < kp; ++i) q[i] = static_cast<uint8_t>(z);
  *zp = z;
  return range / 255.0f;
}

void i8_gemm(const I8Matrix& W, const I8Acts& X, float* Y, size_t ldy, const float* bias, bool accumulate,
             int64_t p0, int64_t p1) {
  const int64_t kp = W.kp, steps = kp / 4;
  for (int64_t t = 0; t < X.n; ++t) {
    const uint8_t* x = X.q + t * X.stride;
    const float sx = X.scale[t];
    const int32_t zp = X.zp[t];
    for (int64_t p = p0; p < p1; ++p) {
      const int8_t* panel = W.panels + p * kI8Panel * kp;
      int32_t acc[kI8Panel] = {};
      for (int64_t s = 0; s < steps; ++s) {
        const uint8_t* xs = x + 4 * s;
        const int8_t* ws = panel + s * kI8Panel * 4;
        for (int64_t i = 0; i < kI8Panel; ++i) {
          acc[i] += int32_t(xs[0]) * ws[4 * i] + int32_t(xs[1]) * ws[4 * i + 1] + int32_t(xs[2]) * ws[4 * i + 2] +
                    int32_t(xs[3]) * ws[4 * i + 3];
        }
      }
      float* y = Y + t * ldy;
      for (int64_t i = 0; i < kI8Panel; ++i) {
        const int64_t r = p * kI8Panel + i;
        if (r >= W.rows) break;
        float v = static_cast<float>(acc[i] - zp * W.wsum[r]) * (W.scale[r] * sx);
        if (bias) v = v + bias[r];
        y[r] = accumulate ? y[r] + v : v;
      }
    }
  }
}

}  // namespace

void fill_i8(KernelTable& t) {
  t.vision.i8_layout = I8Layout::K4;
  t.vision.i8_gemm = i8_gemm;
  t.vision.i8_quant = i8_quant;
}

}  // namespace bluelm::kernels::scalar
