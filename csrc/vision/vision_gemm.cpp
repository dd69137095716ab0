#include "vision/vision_gemm.h"

namespace bluelm::vision {

void q8_gemm_scalar(const Q8Matrix& W, const Q8Activations& X, float* Y, size_t ldy, int64_t r0, int64_t r1) {
  const int64_t nb = W.k / QK;
  for (int64_t t = 0; t < X.n; ++t) {
    const BlockQ8_0* x = reinterpret_cast<const BlockQ8_0*>(static_cast<const char*>(X.blocks) + t * X.stride);
    const float* xd = X.scales + t * nb;
    for (int64_t r = r0; r < r1; ++r) {
      const BlockQ8_0* w = reinterpret_cast<const BlockQ8_0*>(static_cast<const char*>(W.blocks) + r * W.stride);
      const float* wd = W.scales + r * nb;
      float s = 0.0f;
      for (int64_t b = 0; b < nb; ++b) {
        int32_t sum = 0;
        for (int j = 0; j < QK; ++j) sum += int32_t(w[b].qs[j]) * x[b].qs[j];
        s += static_cast<float>(sum) * (wd[b] * xd[b]);
      }
      Y[t * ldy + r] = s;
    }
  }
}

}  // namespace bluelm::vision
