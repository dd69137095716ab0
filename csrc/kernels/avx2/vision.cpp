// AVX2 + FMA element-wise ops of the vision encoder (softmax rows, GELU-tanh),
// and the table's vision entries (the int8 format: i8.cpp).
#include <immintrin.h>
#include <math.h>

#include "kernels/avx2/avx2.h"
#include "kernels/common/gemm_attention.h"
#include "kernels/x86/common.h"
#include "kernels/common/taylor_exp.h"

namespace bluelm::kernels::avx2 {
namespace {

inline float hmax(__m256 v) {
  __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_max_ps(s, _mm_movehl_ps(s, s));
  s = _mm_max_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

void softmax(float* s, int64_t n, float scale) {
  __m256 mv = _mm256_set1_ps(-INFINITY);
  int64_t j = 0;
  for (; j + 8 <= n; j += 8) mv = _mm256_max_ps(mv, _mm256_loadu_ps(s + j));
  float mx = hmax(mv);
  for (; j < n; ++j) mx = fmaxf(mx, s[j]);
  const __m256 sc = _mm256_set1_ps(scale), m8 = _mm256_set1_ps(mx);
  __m256 acc = _mm256_setzero_ps();
  for (j = 0; j + 8 <= n; j += 8) {
    const __m256 e = taylor_exp8(_mm256_mul_ps(sc, _mm256_sub_ps(_mm256_loadu_ps(s + j), m8)));
    _mm256_storeu_ps(s + j, e);
    acc = _mm256_add_ps(acc, e);
  }
  float sum = hsum(acc);
  for (; j < n; ++j) {
    s[j] = expf(scale * (s[j] - mx));
    sum += s[j];
  }
  const __m256 inv = _mm256_set1_ps(1.0f / sum);
  for (j = 0; j + 8 <= n; j += 8) _mm256_storeu_ps(s + j, _mm256_mul_ps(_mm256_loadu_ps(s + j), inv));
  for (; j < n; ++j) s[j] *= 1.0f / sum;
}

void gelu_tanh(float* x, int64_t n) {
  const __m256 k2 = _mm256_set1_ps(-2.0f * 0.7978845608028654f), c = _mm256_set1_ps(0.044715f);
  const __m256 one = _mm256_set1_ps(1.0f);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 v = _mm256_loadu_ps(x + i);
    const __m256 u = _mm256_mul_ps(k2, _mm256_fmadd_ps(_mm256_mul_ps(c, v), _mm256_mul_ps(v, v), v));
    _mm256_storeu_ps(x + i, _mm256_div_ps(v, _mm256_add_ps(one, taylor_exp8(u))));
  }
  for (; i < n; ++i) {
    const float v = x[i];
    x[i] = v / (1.0f + expf(-2.0f * 0.7978845608028654f * (v + 0.044715f * v * v * v)));
  }
}

}  // namespace

void fill_vision(KernelTable& t) {
  VisionKernels& v = t.vision;
  v.softmax = softmax;
  v.gelu_tanh = gelu_tanh;
  set_gemm_attention<gemm_f32, softmax>(v);
}

}  // namespace bluelm::kernels::avx2
