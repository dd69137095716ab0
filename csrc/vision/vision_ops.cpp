#include "vision/vision_ops.h"

#include <cmath>
#include <cstring>

#include "kernels/kernels.h"

namespace bluelm::vision {

#ifdef BLUELM_KERNELS_X86
const VisionOps* avx2_ops();    // vision_ops_avx2.cpp, built with AVX2 flags
const VisionOps* avx512_ops();  // vision_i8_avx512.cpp, built with AVX-512 VNNI flags
#endif

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

const VisionOps kScalar = {"scalar", softmax, gelu_tanh, layer_norm, i8_gemm_scalar, i8_quant_scalar, nullptr, nullptr};
// Other ISAs (NEON): portable element-wise ops and the portable int8 gemm.
const VisionOps kPortable = {"portable", softmax, gelu_tanh, layer_norm, i8_gemm_scalar, i8_quant_scalar, nullptr, nullptr};

}  // namespace

void layer_norm(const float* x, int64_t d, const float* w, const float* b, float eps, float* y) {
  double sum = 0.0;
  for (int64_t i = 0; i < d; ++i) sum += x[i];
  const float mean = static_cast<float>(sum / d);
  double var = 0.0;
  for (int64_t i = 0; i < d; ++i) var += static_cast<double>(x[i] - mean) * (x[i] - mean);
  const float inv = static_cast<float>(1.0 / std::sqrt(var / d + eps));
  for (int64_t i = 0; i < d; ++i) y[i] = (x[i] - mean) * inv * w[i] + b[i];
}

namespace {

const VisionOps& choose() {
  const char* isa = kernels::active().isa;
#ifdef BLUELM_KERNELS_X86
  if (std::strcmp(isa, "avx512") == 0) return *avx512_ops();
  if (std::strcmp(isa, "avx2") == 0) return *avx2_ops();
#endif
  return std::strcmp(isa, "scalar") == 0 ? kScalar : kPortable;
}

}  // namespace

const VisionOps& scalar_ops() { return kScalar; }

const VisionOps& ops() {
  static const VisionOps& o = choose();
  return o;
}

}  // namespace bluelm::vision
