#include "vision/vision_i8.h"

#include <cmath>
#include <cstring>

namespace bluelm::vision {

namespace {
int64_t round16(int64_t n) { return (n + kI8Panel - 1) / kI8Panel * kI8Panel; }
// Round to nearest, ties to even (as cvtps2dq), for |v| < 2^22, without a libm
// call: 1.5 * 2^23 + v has an ulp of 1. (This file is built with
// -ffp-contract=off, so v = x * id is rounded before the sum, as in the SIMD code.)
inline int32_t round_even(float v) {
  constexpr float m = 12582912.0f;
  return static_cast<int32_t>((v + m) - m);
}
}  // namespace

void i8_alloc(I8Packed& p, int64_t rows, int64_t k) {
  const int64_t rp = round16(rows), kp = i8_k_pad(k);
  p.panels.assign(static_cast<size_t>(rp * kp), 0);
  p.scale.assign(static_cast<size_t>(rp), 0.0f);
  p.wsum.assign(static_cast<size_t>(rp), 0);
}

void i8_pack_rows(I8Packed& p, int64_t k, int64_t r0, int64_t r1, const float* rows_f, int64_t ld) {
  const int64_t kp = i8_k_pad(k);
  for (int64_t r = r0; r < r1; ++r) {
    const float* w = rows_f + (r - r0) * ld;
    float amax = 0.0f;
    for (int64_t i = 0; i < k; ++i) amax = std::fmax(amax, std::fabs(w[i]));
    const float d = amax / 127.0f, id = amax > 0.0f ? 127.0f / amax : 0.0f;
    int8_t* panel = p.panels.data() + (r / kI8Panel) * kI8Panel * kp;
    const int64_t i = r % kI8Panel;
    int32_t sum = 0;
    for (int64_t c = 0; c < k; ++c) {
      const int32_t q = round_even(w[c] * id);
      panel[((c / 4) * kI8Panel + i) * 4 + c % 4] = static_cast<int8_t>(q);
      sum += q;
    }
    p.scale[r] = d;
    p.wsum[r] = sum;
  }
}

float i8_quant_scalar(const float* x, int64_t k, int64_t kp, uint8_t* q, int32_t* zp) {
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

void i8_gemm_scalar(const I8Matrix& W, const I8Acts& X, float* Y, size_t ldy, const float* bias, bool accumulate,
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

}  // namespace bluelm::vision
