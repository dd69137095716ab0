// NEON element-wise ops of the vision encoder: softmax rows and GELU-tanh with
// common/taylor_exp.h's e^x on 4 lanes, LayerNorm with its sums in double.
// Within 1e-5 of the scalar table (tests/cpp/test_vision.cpp).
#include <arm_neon.h>

#include <cmath>

#include "kernels/common/taylor_exp.h"
#include "kernels/neon/neon.h"

namespace bluelm::kernels::neon {

void softmax(float* s, int64_t n, float scale) {
  float32x4_t mv = vdupq_n_f32(-INFINITY);
  int64_t j = 0;
  for (; j + 4 <= n; j += 4) mv = vmaxq_f32(mv, vld1q_f32(s + j));
  float mx = vmaxvq_f32(mv);
  for (; j < n; ++j) mx = std::fmax(mx, s[j]);
  const float32x4_t m = vdupq_n_f32(mx);
  float32x4_t acc = vdupq_n_f32(0.0f);
  for (j = 0; j + 4 <= n; j += 4) {
    const float32x4_t e = taylor_exp4(vmulq_n_f32(vsubq_f32(vld1q_f32(s + j), m), scale));
    vst1q_f32(s + j, e);
    acc = vaddq_f32(acc, e);
  }
  float sum = vaddvq_f32(acc);
  for (; j < n; ++j) {
    s[j] = std::exp(scale * (s[j] - mx));
    sum += s[j];
  }
  const float inv = 1.0f / sum;
  for (j = 0; j + 4 <= n; j += 4) vst1q_f32(s + j, vmulq_n_f32(vld1q_f32(s + j), inv));
  for (; j < n; ++j) s[j] *= inv;
}

namespace {

void gelu_tanh(float* x, int64_t n) {
  constexpr float k2 = -2.0f * 0.7978845608028654f, c = 0.044715f;  // -2 sqrt(2/pi)
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) {
    const float32x4_t v = vld1q_f32(x + i);
    const float32x4_t u = vmulq_n_f32(vfmaq_f32(v, vmulq_n_f32(v, c), vmulq_f32(v, v)), k2);
    vst1q_f32(x + i, vdivq_f32(v, vaddq_f32(vdupq_n_f32(1.0f), taylor_exp4(u))));
  }
  for (; i < n; ++i) {
    const float v = x[i];
    x[i] = v / (1.0f + std::exp(k2 * (v + c * v * v * v)));
  }
}

// The sums of x and of (x - mean)^2 in double, as the scalar version.
void layer_norm(const float* x, int64_t d, const float* w, const float* b, float eps, float* y) {
  float64x2_t s0 = vdupq_n_f64(0.0), s1 = s0;
  int64_t i = 0;
  for (; i + 4 <= d; i += 4) {
    const float32x4_t v = vld1q_f32(x + i);
    s0 = vaddq_f64(s0, vcvt_f64_f32(vget_low_f32(v)));
    s1 = vaddq_f64(s1, vcvt_high_f64_f32(v));
  }
  double sum = vaddvq_f64(vaddq_f64(s0, s1));
  for (; i < d; ++i) sum += x[i];
  const float mean = static_cast<float>(sum / d);
  const float32x4_t mv = vdupq_n_f32(mean);
  s0 = s1 = vdupq_n_f64(0.0);
  for (i = 0; i + 4 <= d; i += 4) {
    const float32x4_t c = vsubq_f32(vld1q_f32(x + i), mv);
    const float64x2_t c0 = vcvt_f64_f32(vget_low_f32(c)), c1 = vcvt_high_f64_f32(c);
    s0 = vfmaq_f64(s0, c0, c0);
    s1 = vfmaq_f64(s1, c1, c1);
  }
  double var = vaddvq_f64(vaddq_f64(s0, s1));
  for (; i < d; ++i) var += static_cast<double>(x[i] - mean) * (x[i] - mean);
  const float inv = static_cast<float>(1.0 / std::sqrt(var / d + eps));
  for (i = 0; i + 4 <= d; i += 4) {
    const float32x4_t c = vmulq_n_f32(vsubq_f32(vld1q_f32(x + i), mv), inv);
    vst1q_f32(y + i, vfmaq_f32(vld1q_f32(b + i), c, vld1q_f32(w + i)));
  }
  for (; i < d; ++i) y[i] = (x[i] - mean) * inv * w[i] + b[i];
}

}  // namespace

void fill_vision(KernelTable& t) { t.vision.set_rows(softmax, gelu_tanh, layer_norm); }

}  // namespace bluelm::kernels::neon
