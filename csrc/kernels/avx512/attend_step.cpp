// AVX-512 attention of one query row over the F16 cache in llama.cpp's
// one-token order (avx2/attention.cpp: attend with batched = false): the score
// of a key is ggml_vec_dot_f16's four 8-lane FMA chains folded (a0 + a2) +
// (a1 + a3), lo + hi, then two hadds; P.V runs 32 position lanes (j % 32) per
// column, folded as the AVX2 code folds them. Here two chains share a zmm,
// 8 keys' folds run transposed, and P.V keeps 16 lanes' accumulators of 16
// columns in registers (the AVX2 code's 32 spill): every lane keeps its
// sequence, so the bits are the AVX2 code's. A decode step and each row of a
// speculative round run it.
#include "kernels/avx512/avx512.h"
#include "kernels/avx512/zmm.h"
#include "kernels/x86/ggml_exp.h"

namespace bluelm::kernels::avx512 {
namespace {

inline __m512 f16x16(const uint16_t* p) {
  return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}
inline __m256 round_f16(__m256 v) { return _mm256_cvtph_ps(_mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT)); }

// One key's four chains as [a0 | a1] and [a2 | a3], reduced to the 8 lanes (a0 + a2) + (a1 + a3).
inline __m256 chains(const uint16_t* k, const float* qh, int64_t hd) {
  __m512 a = _mm512_setzero_ps(), b = _mm512_setzero_ps();
  for (int64_t i = 0; i < hd; i += 32) {
    a = _mm512_fmadd_ps(f16x16(k + i), _mm512_load_ps(qh + i), a);
    b = _mm512_fmadd_ps(f16x16(k + i + 16), _mm512_load_ps(qh + i + 16), b);
  }
  const __m512 s = _mm512_add_ps(a, b);
  return _mm256_add_ps(_mm512_castps512_ps256(s), hi256(s));
}

// Lane i: x[i]'s lo + hi (t0..t3), then (t0 + t1) + (t2 + t3), as two hadds give.
inline __m256 fold8(const __m256 (&x)[8]) {
  __m256 s[4];
  for (int i = 0; i < 4; ++i)
    s[i] = _mm256_add_ps(_mm256_permute2f128_ps(x[2 * i], x[2 * i + 1], 0x20),
                         _mm256_permute2f128_ps(x[2 * i], x[2 * i + 1], 0x31));
  // hadd pairs within 128-bit halves: keys [0, 2, 4, 6 | 1, 3, 5, 7]
  const __m256 r = _mm256_hadd_ps(_mm256_hadd_ps(s[0], s[1]), _mm256_hadd_ps(s[2], s[3]));
  return _mm256_permutevar8x32_ps(r, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

inline float fold1(__m256 x) {
  __m128 t = _mm_add_ps(_mm256_castps256_ps128(x), _mm256_extractf128_ps(x, 1));
  t = _mm_hadd_ps(t, t);
  t = _mm_hadd_ps(t, t);
  return _mm_cvtss_f32(t);
}

void scores(const uint16_t* k, size_t stride, const float* qh, int64_t hd, int64_t n, float scale, float* out) {
  const __m256 vs = _mm256_set1_ps(scale);
  int64_t j = 0;
  for (; j + 8 <= n; j += 8) {
    __m256 x[8];
    for (int i = 0; i < 8; ++i) x[i] = chains(k + (j + i) * stride, qh, hd);
    _mm256_storeu_ps(out + j, _mm256_mul_ps(fold8(x), vs));
  }
  for (; j < n; ++j) out[j] = fold1(chains(k + j * stride, qh, hd)) * scale;
}

// 16 columns of P.V: position lanes [l0, l0 + 16) of the 32 (lane l takes
// j = l, l + 32, ... in order), into acc + 16 * l.
void pv_half(const float* p, const uint16_t* v, size_t stride, int64_t n, int l0, float* acc) {
  __m512 a[16];
  for (int l = 0; l < 16; ++l) a[l] = _mm512_setzero_ps();
  int64_t j0 = l0;
  for (; j0 + 16 <= n; j0 += 32) {
#pragma GCC unroll 16
    for (int l = 0; l < 16; ++l) a[l] = _mm512_fmadd_ps(f16x16(v + (j0 + l) * stride), _mm512_set1_ps(p[j0 + l]), a[l]);
  }
  for (int l = 0; j0 + l < n && l < 16; ++l) a[l] = _mm512_fmadd_ps(f16x16(v + (j0 + l) * stride), _mm512_set1_ps(p[j0 + l]), a[l]);
  for (int l = 0; l < 16; ++l) _mm512_store_ps(acc + 16 * (l0 + l), a[l]);
}

void pv(const float* p, const uint16_t* v, size_t stride, int64_t hd, int64_t n, float* out) {
  alignas(64) float acc[32 * 16];
  for (int64_t d = 0; d < hd; d += 16) {
    pv_half(p, v + d, stride, n, 0, acc);
    pv_half(p, v + d, stride, n, 16, acc);
    auto A = [&](int l) { return _mm512_load_ps(acc + 16 * l); };
    __m512 x[8];
    for (int l = 0; l < 8; ++l) x[l] = _mm512_add_ps(_mm512_add_ps(A(l), A(16 + l)), _mm512_add_ps(A(8 + l), A(24 + l)));
    const __m512 r = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(x[0], x[4]), _mm512_add_ps(x[1], x[5])),
                                   _mm512_add_ps(_mm512_add_ps(x[2], x[6]), _mm512_add_ps(x[3], x[7])));
    _mm512_storeu_ps(out + d, r);
  }
}

}  // namespace

bool attend_step_f16(const float* q, const uint16_t* k, const uint16_t* v, size_t kv_stride, int64_t hd,
                     int64_t n_kv, float scale, float* scratch, float* out) {
  if (hd % 32 != 0 || hd > 512) return false;
  // llama.cpp's F16 matmuls see the query and the softmax weights in F16.
  alignas(64) float qh[512];
  for (int64_t d = 0; d < hd; d += 8) _mm256_store_ps(qh + d, round_f16(_mm256_loadu_ps(q + d)));
  scores(k, kv_stride, qh, hd, n_kv, scale, scratch);
  softmax_ggml(scratch, n_kv);
  int64_t j = 0;
  for (; j + 8 <= n_kv; j += 8) _mm256_storeu_ps(scratch + j, round_f16(_mm256_loadu_ps(scratch + j)));
  for (; j < n_kv; ++j) scratch[j] = _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtps_ph(_mm_set_ss(scratch[j]), _MM_FROUND_TO_NEAREST_INT)));
  pv(scratch, v, kv_stride, hd, n_kv, out);
  return true;
}

}  // namespace bluelm::kernels::avx512
