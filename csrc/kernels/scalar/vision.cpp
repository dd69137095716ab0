// The vision encoder's element-wise ops, plainly (std::exp, sums in double),
// and its attention from the scalar gemm.
#include <cmath>

#include "kernels/common/gemm_attention.h"
#include "kernels/scalar/scalar.h"

namespace bluelm::kernels::scalar {
namespace {

void softmax(float* s, int64_t n, float scale) {
  float mx = -INFINITY;
  for (int64_t j = 0; j < n; ++j) mx = std::fmax(mx, s[j]);
  float sum = 0.0f;
  for (int64_t j = 0; j < n; ++j) {
    s[j] = std::exp(scale * (s[j] - mx));
    sum += s[j];
  }
  const float inv = 1.0f / sum;
  for (int64_t j = 0; j < n; ++j) s[j] *= inv;
}

void gelu_tanh(float* x, int64_t n) {
  constexpr float k = 0.7978845608028654f;  // sqrt(2/pi)
  for (int64_t i = 0; i < n; ++i) {
    const float v = x[i];
    const float u = k * (v + 0.044715f * v * v * v);
    x[i] = v / (1.0f + std::exp(-2.0f * u));
  }
}

void layer_norm(const float* x, int64_t d, const float* w, const float* b, float eps, float* y) {
  double sum = 0.0;
  for (int64_t i = 0; i < d; ++i) sum += x[i];
  const float mean = static_cast<float>(sum / d);
  double var = 0.0;
  for (int64_t i = 0; i < d; ++i) var += static_cast<double>(x[i] - mean) * (x[i] - mean);
  const float inv = static_cast<float>(1.0 / std::sqrt(var / d + eps));
  for (int64_t i = 0; i < d; ++i) y[i] = (x[i] - mean) * inv * w[i] + b[i];
}

}  // namespace

void fill_vision(KernelTable& t) {
  t.vision.set_rows(softmax, gelu_tanh, layer_norm);
  set_gemm_attention<gemm_f32, softmax>(t.vision);
}

}  // namespace bluelm::kernels::scalar
