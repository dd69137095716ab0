// AVX2 attention over the F32, F16 and INT8 (Q8_0) KV caches, and SwiGLU. The
// F16 cache follows llama.cpp's x86 order bit for bit (scalar/attention.cpp
// writes it out lane by lane); the INT8 cache is this project's own format.
#include <math.h>

#include "kernels/avx2/avx2.h"
#include "kernels/common/attend_f32.h"
#include "kernels/x86/common.h"
#include "kernels/x86/f16_dot_fold.h"
#include "kernels/x86/ggml_exp.h"

namespace bluelm::kernels::avx2 {
namespace {

// ---- attention ---------------------------------------------------------------

template <class L>
inline float dot_rows(const typename L::E* a, const float* b, int64_t n) {
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    acc0 = _mm256_fmadd_ps(L::load8(a + i), _mm256_loadu_ps(b + i), acc0);
    acc1 = _mm256_fmadd_ps(L::load8(a + i + 8), _mm256_loadu_ps(b + i + 8), acc1);
  }
  for (; i + 8 <= n; i += 8) acc0 = _mm256_fmadd_ps(L::load8(a + i), _mm256_loadu_ps(b + i), acc0);
  float s = hsum(_mm256_add_ps(acc0, acc1));
  for (; i < n; ++i) s += L::load1(a + i) * b[i];
  return s;
}

// out[d] = sum_j p_j V_j[d]; j in order per element, as the reference.
template <class L>
void weighted_sum(const float* p, const typename L::E* v, size_t stride, int64_t hd, int64_t n,
                  float* out) {
  int64_t d = 0;
  for (; d + 32 <= hd; d += 32) {
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    for (int64_t j = 0; j < n; ++j) {
      const typename L::E* vj = v + j * stride + d;
      const __m256 pj = _mm256_set1_ps(p[j]);
      a0 = _mm256_fmadd_ps(pj, L::load8(vj), a0);
      a1 = _mm256_fmadd_ps(pj, L::load8(vj + 8), a1);
      a2 = _mm256_fmadd_ps(pj, L::load8(vj + 16), a2);
      a3 = _mm256_fmadd_ps(pj, L::load8(vj + 24), a3);
    }
    _mm256_storeu_ps(out + d, a0);
    _mm256_storeu_ps(out + d + 8, a1);
    _mm256_storeu_ps(out + d + 16, a2);
    _mm256_storeu_ps(out + d + 24, a3);
  }
  for (; d + 8 <= hd; d += 8) {
    __m256 a = _mm256_setzero_ps();
    for (int64_t j = 0; j < n; ++j) a = _mm256_fmadd_ps(_mm256_set1_ps(p[j]), L::load8(v + j * stride + d), a);
    _mm256_storeu_ps(out + d, a);
  }
  for (; d < hd; ++d) {
    float a = 0.0f;
    for (int64_t j = 0; j < n; ++j) a += p[j] * L::load1(v + j * stride + d);
    out[d] = a;
  }
}


// ---- llama.cpp's x86 arithmetic (see scalar/attention.cpp for the lane-by-lane reference)

void swiglu(const float* gate, const float* up, float* y, int64_t n) {
  const __m256 one = _mm256_set1_ps(1.0f);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 g = _mm256_loadu_ps(gate + i);
    const __m256 silu = _mm256_div_ps(g, _mm256_add_ps(one, exp8(_mm256_sub_ps(_mm256_setzero_ps(), g))));
    _mm256_storeu_ps(y + i, _mm256_mul_ps(silu, _mm256_loadu_ps(up + i)));
  }
  for (; i < n; ++i) y[i] = gate[i] / (1.0f + expf(-gate[i])) * up[i];  // as ggml's tail
}

// gelu_tanh(g) * u, 8 lanes: the scalar reference's operations (kernels.h).
inline __m256 geglu8(__m256 g, __m256 u) {
  const __m256 one = _mm256_set1_ps(1.0f);
  const __m256 inner = _mm256_mul_ps(g, _mm256_fmadd_ps(_mm256_set1_ps(0.044715f), _mm256_mul_ps(g, g), one));
  const __m256 e = exp8(_mm256_mul_ps(_mm256_set1_ps(-1.5957691216057308f), inner));
  return _mm256_mul_ps(_mm256_div_ps(g, _mm256_add_ps(one, e)), u);
}

// A row tail of n < 8 through the same 8-lane code, so every element matches the reference.
template <typename Fn>
inline void tail8(float* y, int64_t n, Fn&& fn) {
  alignas(32) float buf[8] = {};
  for (int64_t i = 0; i < n; ++i) buf[i] = y[i];
  _mm256_store_ps(buf, fn(_mm256_load_ps(buf)));
  for (int64_t i = 0; i < n; ++i) y[i] = buf[i];
}

void geglu(const float* gate, const float* up, float* y, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, geglu8(_mm256_loadu_ps(gate + i), _mm256_loadu_ps(up + i)));
  if (i == n) return;
  alignas(32) float g[8] = {}, u[8] = {}, r[8];
  for (int64_t k = i; k < n; ++k) g[k - i] = gate[k], u[k - i] = up[k];
  _mm256_store_ps(r, geglu8(_mm256_load_ps(g), _mm256_load_ps(u)));
  for (int64_t k = i; k < n; ++k) y[k] = r[k - i];
}

// Attention logit soft-cap cap * tanh(s / cap), tanh as 1 - 2 / (1 + exp(2x)) (the reference's).
void softcap_scores(float* s, int64_t n, float cap) {
  if (!(cap > 0.0f)) return;
  const __m256 k = _mm256_set1_ps(2.0f / cap), c = _mm256_set1_ps(cap), one = _mm256_set1_ps(1.0f),
               two = _mm256_set1_ps(2.0f);
  auto cap8 = [&](__m256 x) {
    return _mm256_mul_ps(c, _mm256_sub_ps(one, _mm256_div_ps(two, _mm256_add_ps(one, exp8(_mm256_mul_ps(k, x))))));
  };
  int64_t j = 0;
  for (; j + 8 <= n; j += 8) _mm256_storeu_ps(s + j, cap8(_mm256_loadu_ps(s + j)));
  if (j < n) tail8(s + j, n - j, cap8);
}

// ggml_vec_dot_f16's lane fold: (a0 + a2) + (a1 + a3), lo + hi, two hadds.
inline float fold32(__m256 a0, __m256 a1, __m256 a2, __m256 a3) {
  const __m256 x = _mm256_add_ps(_mm256_add_ps(a0, a2), _mm256_add_ps(a1, a3));
  __m128 t = _mm_add_ps(_mm256_castps256_ps128(x), _mm256_extractf128_ps(x, 1));
  t = _mm_hadd_ps(t, t);
  t = _mm_hadd_ps(t, t);
  return _mm_cvtss_f32(t);
}

float dot_f16_vec_order(const uint16_t* a, const float* b, int64_t n) {
  __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
  const int64_t np = n & ~int64_t(31);
  for (int64_t i = 0; i < np; i += 32)
    for (int c = 0; c < 4; ++c)
      acc[c] = _mm256_fmadd_ps(F16Load::load8(a + i + 8 * c), _mm256_loadu_ps(b + i + 8 * c), acc[c]);
  double s = fold32(acc[0], acc[1], acc[2], acc[3]);
  for (int64_t i = np; i < n; ++i) s += static_cast<double>(h2f(a[i]) * b[i]);
  return static_cast<float>(s);
}

// One key's chains of dot_f16_vec_order (head_dim a multiple of 32) as
// (a0 + a2) + (a1 + a3), for folded_scores: the same adds per key in the same order.
inline __m256 chains_f16(const uint16_t* k, const float* qh, int64_t hd) {
  __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
  for (int64_t i = 0; i < hd; i += 32) {
    a0 = _mm256_fmadd_ps(F16Load::load8(k + i), _mm256_loadu_ps(qh + i), a0);
    a1 = _mm256_fmadd_ps(F16Load::load8(k + i + 8), _mm256_loadu_ps(qh + i + 8), a1);
    a2 = _mm256_fmadd_ps(F16Load::load8(k + i + 16), _mm256_loadu_ps(qh + i + 16), a2);
    a3 = _mm256_fmadd_ps(F16Load::load8(k + i + 24), _mm256_loadu_ps(qh + i + 24), a3);
  }
  return _mm256_add_ps(_mm256_add_ps(a0, a2), _mm256_add_ps(a1, a3));
}

float dot_f16_tile_order(const uint16_t* a, const float* b, int64_t n) {
  __m256 acc = _mm256_setzero_ps();
  for (int64_t i = 0; i < n; i += 8)
    acc = _mm256_fmadd_ps(F16Load::load8(a + i), _mm256_loadu_ps(b + i), acc);
  return hsum(acc);
}

// 8 columns of the one-token P.V: position lanes [l0, l0 + 8) of the 32 (lane
// l takes j = l, l + 32, ... in order), in registers (all 32 would spill).
inline void pv_quarter(const float* p, const uint16_t* v, size_t stride, int64_t n, int l0, __m256 (&a)[8]) {
  for (int l = 0; l < 8; ++l) a[l] = _mm256_setzero_ps();
  int64_t j0 = l0;
  for (; j0 + 8 <= n; j0 += 32) {
#pragma GCC unroll 8
    for (int l = 0; l < 8; ++l)
      a[l] = _mm256_fmadd_ps(F16Load::load8(v + (j0 + l) * stride), _mm256_set1_ps(p[j0 + l]), a[l]);
  }
  for (int l = 0; l < 8 && j0 + l < n; ++l)
    a[l] = _mm256_fmadd_ps(F16Load::load8(v + (j0 + l) * stride), _mm256_set1_ps(p[j0 + l]), a[l]);
}

// weighted_sum_lanes(batched = false) where head_dim is a multiple of 8: its
// 32 lanes a quarter at a time, folded as it folds them.
void pv_f16(const float* p, const uint16_t* v, size_t stride, int64_t hd, int64_t n, float* out) {
  for (int64_t d = 0; d < hd; d += 8) {
    __m256 q0[8], q1[8], q2[8], q3[8];  // lanes 0-7, 8-15, 16-23, 24-31
    pv_quarter(p, v + d, stride, n, 0, q0);
    pv_quarter(p, v + d, stride, n, 16, q2);
    __m256 x[8];
    for (int l = 0; l < 8; ++l) x[l] = _mm256_add_ps(q0[l], q2[l]);
    pv_quarter(p, v + d, stride, n, 8, q1);
    pv_quarter(p, v + d, stride, n, 24, q3);
    for (int l = 0; l < 8; ++l) x[l] = _mm256_add_ps(x[l], _mm256_add_ps(q1[l], q3[l]));
    const __m256 r = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(x[0], x[4]), _mm256_add_ps(x[1], x[5])),
                                   _mm256_add_ps(_mm256_add_ps(x[2], x[6]), _mm256_add_ps(x[3], x[7])));
    _mm256_storeu_ps(out + d, r);
  }
}

// P.V with lanes by position: 8 (tiled matmul) or 32 (dot product) accumulators
// per 8 output elements; positions past n_kv (llama.cpp's padding) weigh zero.
void weighted_sum_lanes(const float* p, const uint16_t* v, size_t stride, int64_t hd, int64_t n,
                        bool batched, float* out) {
  int64_t d = 0;
  for (; d + 8 <= hd; d += 8) {
    __m256 acc[32];
    for (int l = 0; l < 32; ++l) acc[l] = _mm256_setzero_ps();
    const int64_t lanes = batched ? 8 : 32;
    for (int64_t j = 0; j < n; ++j) {
      __m256& a = acc[j % lanes];
      a = _mm256_fmadd_ps(F16Load::load8(v + j * stride + d), _mm256_set1_ps(p[j]), a);
    }
    __m256 r;
    if (batched) {
      r = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(acc[0], acc[4]), _mm256_add_ps(acc[2], acc[6])),
                        _mm256_add_ps(_mm256_add_ps(acc[1], acc[5]), _mm256_add_ps(acc[3], acc[7])));
    } else {
      __m256 x[8];
      for (int l = 0; l < 8; ++l)
        x[l] = _mm256_add_ps(_mm256_add_ps(acc[l], acc[16 + l]), _mm256_add_ps(acc[8 + l], acc[24 + l]));
      r = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(x[0], x[4]), _mm256_add_ps(x[1], x[5])),
                        _mm256_add_ps(_mm256_add_ps(x[2], x[6]), _mm256_add_ps(x[3], x[7])));
    }
    _mm256_storeu_ps(out + d, r);
  }
  for (; d < hd; ++d) {
    float acc[32] = {};
    const int64_t lanes = batched ? 8 : 32;
    for (int64_t j = 0; j < n; ++j) acc[j % lanes] = fmaf(h2f(v[j * stride + d]), p[j], acc[j % lanes]);
    float x[8];
    if (batched) {
      out[d] = ((acc[0] + acc[4]) + (acc[2] + acc[6])) + ((acc[1] + acc[5]) + (acc[3] + acc[7]));
    } else {
      for (int l = 0; l < 8; ++l) x[l] = (acc[l] + acc[16 + l]) + (acc[8 + l] + acc[24 + l]);
      out[d] = ((x[0] + x[4]) + (x[1] + x[5])) + ((x[2] + x[6]) + (x[3] + x[7]));
    }
  }
}

// 8 int8 values widened to float.
inline __m256 widen8(const int8_t* p) {
  return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))));
}

// INT8 cache (this project's format: no llama.cpp order to mirror, so the sums
// are free to vectorise; tested against the F32 reference within a tolerance).
void attend_q8_0(const float* q, const BlockQ8_0* k, const BlockQ8_0* v, size_t kv_stride,
                 int64_t head_dim, int64_t n_kv, float scale, float softcap, float* scratch, float* out) {
  const size_t row_blocks = kv_stride / QK;
  const int64_t nb = head_dim / QK;
  for (int64_t j = 0; j < n_kv; ++j) {
    const BlockQ8_0* kj = k + j * row_blocks;
    __m256 acc = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; ++b) {
      const int8_t* qs = kj[b].qs;
      const float* qb = q + b * QK;
      __m256 s = _mm256_mul_ps(widen8(qs), _mm256_loadu_ps(qb));
      s = _mm256_fmadd_ps(widen8(qs + 8), _mm256_loadu_ps(qb + 8), s);
      s = _mm256_fmadd_ps(widen8(qs + 16), _mm256_loadu_ps(qb + 16), s);
      s = _mm256_fmadd_ps(widen8(qs + 24), _mm256_loadu_ps(qb + 24), s);
      acc = _mm256_fmadd_ps(s, _mm256_set1_ps(h2f(kj[b].d)), acc);
    }
    scratch[j] = scale * hsum(acc);
  }
  softcap_scores(scratch, n_kv, softcap);
  softmax_ggml(scratch, n_kv);
  for (int64_t d = 0; d < head_dim; ++d) out[d] = 0.0f;
  for (int64_t j = 0; j < n_kv; ++j) {
    const BlockQ8_0* vj = v + j * row_blocks;
    for (int64_t b = 0; b < nb; ++b) {
      const __m256 pd = _mm256_set1_ps(scratch[j] * h2f(vj[b].d));
      float* ob = out + b * QK;
      for (int c = 0; c < QK; c += 8)
        _mm256_storeu_ps(ob + c, _mm256_fmadd_ps(widen8(vj[b].qs + c), pd, _mm256_loadu_ps(ob + c)));
    }
  }
}

// attend_q8_0 for up to 4 consecutive query rows of one head (row r sees one
// position more than row r-1): each K/V block is widened once for all rows,
// and every row keeps attend_q8_0's sequence of operations, so the results
// are identical to it. scratch: 4 rows of `room` scores.
void attend_rows_q8_0(const float* q, size_t q_stride, const BlockQ8_0* k, const BlockQ8_0* v,
                      size_t kv_stride, int64_t head_dim, const int64_t* n, int R, float scale,
                      float* scratch, size_t room, float* out, size_t out_stride) {
  const size_t row_blocks = kv_stride / QK;
  const int64_t nb = head_dim / QK, nmax = n[R - 1];
  float* s[4];
  for (int r = 0; r < R; ++r) s[r] = scratch + r * room;
  for (int64_t j = 0; j < nmax; ++j) {
    const BlockQ8_0* kj = k + j * row_blocks;
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    for (int64_t b = 0; b < nb; ++b) {
      const int8_t* qs = kj[b].qs;
      const __m256 w0 = widen8(qs), w1 = widen8(qs + 8), w2 = widen8(qs + 16), w3 = widen8(qs + 24);
      const __m256 dk = _mm256_set1_ps(h2f(kj[b].d));
      for (int r = 0; r < R; ++r) {
        const float* qb = q + r * q_stride + b * QK;
        __m256 sv = _mm256_mul_ps(w0, _mm256_loadu_ps(qb));
        sv = _mm256_fmadd_ps(w1, _mm256_loadu_ps(qb + 8), sv);
        sv = _mm256_fmadd_ps(w2, _mm256_loadu_ps(qb + 16), sv);
        sv = _mm256_fmadd_ps(w3, _mm256_loadu_ps(qb + 24), sv);
        acc[r] = _mm256_fmadd_ps(sv, dk, acc[r]);
      }
    }
    for (int r = 0; r < R; ++r)
      if (j < n[r]) s[r][j] = scale * hsum(acc[r]);
  }
  for (int r = 0; r < R; ++r) softmax_ggml(s[r], n[r]);
  // P.V 16 columns at a time: 2 accumulators per row stay in registers.
  for (int64_t d0 = 0; d0 < head_dim; d0 += 16) {
    const int64_t b = d0 / QK, c = d0 % QK;
    __m256 acc[4][2];
    for (int r = 0; r < 4; ++r) acc[r][0] = acc[r][1] = _mm256_setzero_ps();
    for (int64_t j = 0; j < nmax; ++j) {
      const BlockQ8_0& vb = v[j * row_blocks + b];
      const __m256 w0 = widen8(vb.qs + c), w1 = widen8(vb.qs + c + 8);
      const float dv = h2f(vb.d);
      for (int r = 0; r < R; ++r) {
        if (j >= n[r]) continue;
        const __m256 pd = _mm256_set1_ps(s[r][j] * dv);
        acc[r][0] = _mm256_fmadd_ps(w0, pd, acc[r][0]);
        acc[r][1] = _mm256_fmadd_ps(w1, pd, acc[r][1]);
      }
    }
    for (int r = 0; r < R; ++r) {
      _mm256_storeu_ps(out + r * out_stride + d0, acc[r][0]);
      _mm256_storeu_ps(out + r * out_stride + d0 + 8, acc[r][1]);
    }
  }
}

}  // namespace

void attend(const float* q, const void* K, const void* V, GgmlType kv_type, size_t kv_stride,
            int64_t head_dim, int64_t n_kv, float scale, float softcap, bool batched, float* scratch, float* out) {
  if (kv_type == GgmlType::Q8_0) {
    attend_q8_0(q, static_cast<const BlockQ8_0*>(K), static_cast<const BlockQ8_0*>(V), kv_stride,
                head_dim, n_kv, scale, softcap, scratch, out);
    return;
  }
  if (kv_type == GgmlType::F32) {
    attend_f32<dot_rows<F32Load>, weighted_sum<F32Load>, softcap_scores>(q, static_cast<const float*>(K), static_cast<const float*>(V),
                                                         kv_stride, head_dim, n_kv, scale, softcap, scratch, out);
    return;
  }
  // F16 cache: llama.cpp's F16 matmuls see the query and the softmax weights in F16.
  const uint16_t* k = static_cast<const uint16_t*>(K);
  float qh[512];
  int64_t d = 0;
  for (; d + 8 <= head_dim; d += 8)
    _mm256_storeu_ps(qh + d, _mm256_cvtph_ps(_mm256_cvtps_ph(_mm256_loadu_ps(q + d), _MM_FROUND_TO_NEAREST_INT)));
  for (; d < head_dim; ++d) qh[d] = h2f(f2h(q[d]));
  const bool tile_kq = batched && head_dim % 8 == 0;
  if (!batched && head_dim % 32 == 0) {
    folded_scores<chains_f16>(k, kv_stride, qh, head_dim, n_kv, scale, scratch);
  } else {
    for (int64_t j = 0; j < n_kv; ++j) {
      const uint16_t* kj = k + j * kv_stride;
      scratch[j] = (tile_kq ? dot_f16_tile_order(kj, qh, head_dim) : dot_f16_vec_order(kj, qh, head_dim)) * scale;
    }
  }
  softcap_scores(scratch, n_kv, softcap);
  softmax_ggml(scratch, n_kv);
  int64_t j = 0;
  for (; j + 8 <= n_kv; j += 8)
    _mm256_storeu_ps(scratch + j, _mm256_cvtph_ps(_mm256_cvtps_ph(_mm256_loadu_ps(scratch + j), _MM_FROUND_TO_NEAREST_INT)));
  for (; j < n_kv; ++j) scratch[j] = h2f(f2h(scratch[j]));
  const uint16_t* v = static_cast<const uint16_t*>(V);
  if (!batched && head_dim % 8 == 0) pv_f16(scratch, v, kv_stride, head_dim, n_kv, out);
  else weighted_sum_lanes(scratch, v, kv_stride, head_dim, n_kv, batched, out);
}

// Prompt-chunk attention 4 rows at a time for the INT8 cache; other caches
// loop attend (the F16 order has no shared work here).
void attend_rows(const float* q, size_t q_stride, const void* K, const void* V, GgmlType kv_type,
                 size_t kv_stride, int64_t head_dim, int64_t n_kv0, int64_t m, float scale,
                 float* scratch, float* out, size_t out_stride) {
  if (kv_type != GgmlType::Q8_0) {
    for (int64_t t = 0; t < m; ++t)
      attend(q + t * q_stride, K, V, kv_type, kv_stride, head_dim, n_kv0 + t, scale, 0.0f, true, scratch,
             out + t * out_stride);
    return;
  }
  const size_t room = static_cast<size_t>(n_kv0 + m - 1);
  for (int64_t t0 = 0; t0 < m; t0 += 4) {
    const int R = static_cast<int>(m - t0 < 4 ? m - t0 : 4);
    int64_t n[4];
    for (int r = 0; r < R; ++r) n[r] = n_kv0 + t0 + r;
    attend_rows_q8_0(q + t0 * q_stride, q_stride, static_cast<const BlockQ8_0*>(K),
                     static_cast<const BlockQ8_0*>(V), kv_stride, head_dim, n, R, scale, scratch,
                     room, out + t0 * out_stride, out_stride);
  }
}

void fill_attention(KernelTable& t) {
  t.attend = attend;
  t.attend_rows = attend_rows;
  t.swiglu = swiglu;
  t.geglu = geglu;
}

}  // namespace bluelm::kernels::avx2
