// AVX-512 element-wise ops of the vision encoder (softmax rows, GELU-tanh,
// LayerNorm) and the table's vision entries. Built with -ffp-contract=off.
#include <cmath>

#include "kernels/avx512/avx512.h"
#include "kernels/avx512/vision_gelu.h"
#include "kernels/avx512/zmm.h"
#include "kernels/common/taylor_exp.h"

namespace bluelm::kernels::avx512 {
void softmax16(float* s, int64_t n, float scale) {
  __m512 mv = _mm512_set1_ps(-INFINITY);
  int64_t j = 0;
  for (; j + 16 <= n; j += 16) mv = _mm512_max_ps(mv, _mm512_loadu_ps(s + j));
  const __mmask16 tail = __mmask16((1u << (n - j)) - 1u);
  if (j < n) mv = _mm512_mask_max_ps(mv, tail, mv, _mm512_maskz_loadu_ps(tail, s + j));
  const __m512 m = _mm512_set1_ps(_mm512_reduce_max_ps(mv)), sc = _mm512_set1_ps(scale);
  __m512 acc = _mm512_setzero_ps();
  for (j = 0; j + 16 <= n; j += 16) {
    const __m512 e = taylor_exp16(_mm512_mul_ps(sc, _mm512_sub_ps(_mm512_loadu_ps(s + j), m)));
    _mm512_storeu_ps(s + j, e);
    acc = _mm512_add_ps(acc, e);
  }
  if (j < n) {
    const __m512 e = taylor_exp16(_mm512_mul_ps(sc, _mm512_sub_ps(_mm512_maskz_loadu_ps(tail, s + j), m)));
    _mm512_mask_storeu_ps(s + j, tail, e);
    acc = _mm512_mask_add_ps(acc, tail, acc, e);
  }
  const __m512 inv = _mm512_set1_ps(1.0f / _mm512_reduce_add_ps(acc));
  for (j = 0; j + 16 <= n; j += 16) _mm512_storeu_ps(s + j, _mm512_mul_ps(_mm512_loadu_ps(s + j), inv));
  if (j < n) _mm512_mask_storeu_ps(s + j, tail, _mm512_mul_ps(_mm512_maskz_loadu_ps(tail, s + j), inv));
}

namespace {

void gelu_tanh16(float* x, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(x + i, gelu16(_mm512_loadu_ps(x + i)));
  if (i < n) {
    const __mmask16 m = __mmask16((1u << (n - i)) - 1u);
    _mm512_mask_storeu_ps(x + i, m, gelu16(_mm512_maskz_loadu_ps(m, x + i)));
  }
}

// LayerNorm of one row as the portable version (scalar/vision.cpp): sums of x and of
// (x - mean)^2 in double, the output in float, (x - mean) * inv * w + b.
void layer_norm16(const float* x, int64_t d, const float* w, const float* b, float eps, float* y) {
  __m512d s0 = _mm512_setzero_pd(), s1 = s0;
  int64_t i = 0;
  for (; i + 16 <= d; i += 16) {
    const __m512 v = _mm512_loadu_ps(x + i);
    s0 = _mm512_add_pd(s0, _mm512_cvtps_pd(_mm512_castps512_ps256(v)));
    s1 = _mm512_add_pd(s1, _mm512_cvtps_pd(hi256(v)));
  }
  double sum = _mm512_reduce_add_pd(_mm512_add_pd(s0, s1));
  for (; i < d; ++i) sum += x[i];
  const float mean = static_cast<float>(sum / d);
  const __m512 mv = _mm512_set1_ps(mean);
  s0 = s1 = _mm512_setzero_pd();
  for (i = 0; i + 16 <= d; i += 16) {
    const __m512 c = _mm512_sub_ps(_mm512_loadu_ps(x + i), mv);
    const __m512d c0 = _mm512_cvtps_pd(_mm512_castps512_ps256(c)), c1 = _mm512_cvtps_pd(hi256(c));
    s0 = _mm512_add_pd(s0, _mm512_mul_pd(c0, c0));
    s1 = _mm512_add_pd(s1, _mm512_mul_pd(c1, c1));
  }
  double var = _mm512_reduce_add_pd(_mm512_add_pd(s0, s1));
  for (; i < d; ++i) var += static_cast<double>(x[i] - mean) * (x[i] - mean);
  const float inv = static_cast<float>(1.0 / std::sqrt(var / d + eps));
  const __m512 iv = _mm512_set1_ps(inv);
  for (i = 0; i + 16 <= d; i += 16) {
    const __m512 c = _mm512_mul_ps(_mm512_sub_ps(_mm512_loadu_ps(x + i), mv), iv);
    _mm512_storeu_ps(y + i, _mm512_add_ps(_mm512_mul_ps(c, _mm512_loadu_ps(w + i)), _mm512_loadu_ps(b + i)));
  }
  for (; i < d; ++i) y[i] = (x[i] - mean) * inv * w[i] + b[i];
}

}  // namespace

void fill_vision(KernelTable& t) { t.vision.set_rows(softmax16, gelu_tanh16, layer_norm16); }

}  // namespace bluelm::kernels::avx512
