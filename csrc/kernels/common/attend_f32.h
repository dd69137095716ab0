// Attention over an F32 KV cache for the SIMD tables, and the softmax of the
// F32 and INT8 caches as ggml sums it (in double; the same bits on every
// table: libm's expf, one reciprocal multiply). Internal linkage.
#pragma once
#include <cmath>
#include <cstddef>
#include <cstdint>

namespace bluelm::kernels {
namespace {

inline void softmax_sum_double(float* s, int64_t n) {
  float mx = -INFINITY;
  for (int64_t j = 0; j < n; ++j) mx = std::fmax(mx, s[j]);
  double sum = 0.0;
  for (int64_t j = 0; j < n; ++j) {
    s[j] = std::exp(s[j] - mx);
    sum += s[j];
  }
  const float inv = static_cast<float>(1.0 / sum);
  for (int64_t j = 0; j < n; ++j) s[j] *= inv;
}

// One query row against n positions of F32 K/V rows `stride` floats apart:
// scores by the ISA's row dot, the soft-cap (a no-op for cap <= 0), softmax,
// P.V by its weighted sum.
template <float (*Dot)(const float* k, const float* q, int64_t hd),
          void (*WeightedSum)(const float* p, const float* v, size_t stride, int64_t hd, int64_t n, float* out),
          void (*Softcap)(float* s, int64_t n, float cap)>
void attend_f32(const float* q, const float* k, const float* v, size_t stride, int64_t hd, int64_t n, float scale,
                float softcap, float* scratch, float* out) {
  for (int64_t j = 0; j < n; ++j) scratch[j] = scale * Dot(k + j * stride, q, hd);
  Softcap(scratch, n, softcap);
  softmax_sum_double(scratch, n);
  WeightedSum(scratch, v, stride, hd, n, out);
}

}  // namespace
}  // namespace bluelm::kernels
