// AVX-512 attention over the F16 cache for prompt chunks: the sums of the
// AVX2 table's tinyBLAS-order path (avx2/attention.cpp), vectorised across keys
// and over wider P.V columns; every lane keeps its own sequence, so results
// are identical. One-token steps over the F16 cache run attend_step.cpp's
// kernel (llama.cpp's one-token order); other caches go to the AVX2 code.
#include "kernels/avx2/avx2.h"
#include "kernels/avx512/avx512.h"
#include "kernels/avx512/zmm.h"
#include "kernels/x86/ggml_exp.h"

namespace bluelm::kernels::avx512 {
namespace {


inline __m256 f16x8(const uint16_t* p) { return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))); }

// scores[j] = scale * (one 8-lane FMA chain over K_j . q, then the tree); 8 keys at a time.
void scores_tile_order(const uint16_t* k, size_t stride, const float* qh, int64_t hd, int64_t n,
                       float scale, float* out) {
  const __m256 vs = _mm256_set1_ps(scale);
  int64_t j = 0;
  for (; j + 8 <= n; j += 8) {
    __m256 acc[8];
    for (int i = 0; i < 8; ++i) acc[i] = _mm256_setzero_ps();
    for (int64_t d = 0; d < hd; d += 8) {
      const __m256 qv = _mm256_loadu_ps(qh + d);
#pragma GCC unroll 8
      for (int i = 0; i < 8; ++i) acc[i] = _mm256_fmadd_ps(f16x8(k + (j + i) * stride + d), qv, acc[i]);
    }
    _mm256_storeu_ps(out + j, _mm256_mul_ps(hsum8(acc), vs));
  }
  for (; j < n; ++j) {
    __m256 acc = _mm256_setzero_ps();
    for (int64_t d = 0; d < hd; d += 8) acc = _mm256_fmadd_ps(f16x8(k + j * stride + d), _mm256_loadu_ps(qh + d), acc);
    out[j] = hsum(acc) * scale;
  }
}

inline __m512 f16x16(const uint16_t* p) {
  return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}

// out[d] = sum_j p_j V_j[d] in 8 position lanes (j % 8), the lanes folded
// ((0+4)+(2+6))+((1+5)+(3+7)): 32 columns per pass (16 zmm accumulators).
template <int W>  // zmm per pass: 2 (32 columns) or 1 (16)
inline void pv_pass(const float* p, const uint16_t* v, size_t stride, int64_t n, float* out) {
  __m512 acc[8][W];
  for (int l = 0; l < 8; ++l)
    for (int c = 0; c < W; ++c) acc[l][c] = _mm512_setzero_ps();
  int64_t j = 0;
  for (; j + 8 <= n; j += 8) {
#pragma GCC unroll 8
    for (int l = 0; l < 8; ++l) {
      const __m512 pj = _mm512_set1_ps(p[j + l]);
      for (int c = 0; c < W; ++c) acc[l][c] = _mm512_fmadd_ps(f16x16(v + (j + l) * stride + 16 * c), pj, acc[l][c]);
    }
  }
  for (int l = 0; j < n; ++j, ++l) {
    const __m512 pj = _mm512_set1_ps(p[j]);
    for (int c = 0; c < W; ++c) acc[l][c] = _mm512_fmadd_ps(f16x16(v + j * stride + 16 * c), pj, acc[l][c]);
  }
  for (int c = 0; c < W; ++c) {
    const __m512 r = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(acc[0][c], acc[4][c]), _mm512_add_ps(acc[2][c], acc[6][c])),
                                   _mm512_add_ps(_mm512_add_ps(acc[1][c], acc[5][c]), _mm512_add_ps(acc[3][c], acc[7][c])));
    _mm512_storeu_ps(out + 16 * c, r);
  }
}

void pv_tile_order(const float* p, const uint16_t* v, size_t stride, int64_t hd, int64_t n, float* out) {
  int64_t d = 0;
  for (; d + 32 <= hd; d += 32) pv_pass<2>(p, v + d, stride, n, out + d);
  for (; d + 16 <= hd; d += 16) pv_pass<1>(p, v + d, stride, n, out + d);
  for (; d < hd; d += 8) {  // hd % 8 == 0 here
    __m256 acc[8];
    for (int l = 0; l < 8; ++l) acc[l] = _mm256_setzero_ps();
    for (int64_t j = 0; j < n; ++j)
      acc[j % 8] = _mm256_fmadd_ps(f16x8(v + j * stride + d), _mm256_set1_ps(p[j]), acc[j % 8]);
    _mm256_storeu_ps(out + d, _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(acc[0], acc[4]), _mm256_add_ps(acc[2], acc[6])),
                                            _mm256_add_ps(_mm256_add_ps(acc[1], acc[5]), _mm256_add_ps(acc[3], acc[7]))));
  }
}

void attend(const float* q, const void* K, const void* V, GgmlType kv_type, size_t kv_stride,
            int64_t head_dim, int64_t n_kv, float scale, float softcap, bool batched, float* scratch, float* out) {
  if (kv_type == GgmlType::F16 && !batched && softcap == 0.0f &&
      attend_step_f16(q, static_cast<const uint16_t*>(K), static_cast<const uint16_t*>(V), kv_stride, head_dim, n_kv,
                      scale, scratch, out))
    return;  // one-token order (attend_step.cpp)
  if (kv_type != GgmlType::F16 || !batched || head_dim % 8 != 0 || head_dim > 512 || softcap > 0.0f) {
    avx2::attend(q, K, V, kv_type, kv_stride, head_dim, n_kv, scale, softcap, batched, scratch, out);
    return;
  }
  // llama.cpp's F16 matmuls see the query and the softmax weights in F16.
  alignas(64) float qh[512];
  round_row_f16(q, qh, head_dim);
  scores_tile_order(static_cast<const uint16_t*>(K), kv_stride, qh, head_dim, n_kv, scale, scratch);
  softmax_ggml(scratch, n_kv);
  round_row_f16(scratch, scratch, n_kv);
  pv_tile_order(scratch, static_cast<const uint16_t*>(V), kv_stride, head_dim, n_kv, out);
}

// Several query rows of one head: each K (V) row is converted once per 4 (2)
// rows. Per row, every score and output lane keeps attend()'s sequence; a row
// never touches positions it does not see (the later rows' extra scores are
// computed but unused, and P.V runs each row over its own positions only).
void scores_rows4(const uint16_t* k, size_t stride, const float (*qh)[512], int64_t hd, int64_t n,
                  float scale, float* const* out) {
  const __m256 vs = _mm256_set1_ps(scale);
  int64_t j = 0;
  for (; j + 4 <= n; j += 4) {
    // Every loop over r and c fully unrolled, so the 16 accumulators stay in registers.
    __m256 acc[4][4];
#pragma GCC unroll 4
    for (int r = 0; r < 4; ++r)
#pragma GCC unroll 4
      for (int c = 0; c < 4; ++c) acc[r][c] = _mm256_setzero_ps();
    for (int64_t d = 0; d < hd; d += 8) {
      __m256 kv[4];
#pragma GCC unroll 4
      for (int c = 0; c < 4; ++c) kv[c] = f16x8(k + (j + c) * stride + d);
#pragma GCC unroll 4
      for (int r = 0; r < 4; ++r) {
        const __m256 qv = _mm256_load_ps(qh[r] + d);
#pragma GCC unroll 4
        for (int c = 0; c < 4; ++c) acc[r][c] = _mm256_fmadd_ps(kv[c], qv, acc[r][c]);
      }
    }
#pragma GCC unroll 2
    for (int r = 0; r < 4; r += 2) {
      const __m256 a[8] = {acc[r][0], acc[r][1], acc[r][2], acc[r][3],
                           acc[r + 1][0], acc[r + 1][1], acc[r + 1][2], acc[r + 1][3]};
      const __m256 v = _mm256_mul_ps(hsum8(a), vs);
      _mm_storeu_ps(out[r] + j, _mm256_castps256_ps128(v));
      _mm_storeu_ps(out[r + 1] + j, _mm256_extractf128_ps(v, 1));
    }
  }
  for (; j < n; ++j) {
    for (int r = 0; r < 4; ++r) {
      __m256 acc = _mm256_setzero_ps();
      for (int64_t d = 0; d < hd; d += 8) acc = _mm256_fmadd_ps(f16x8(k + j * stride + d), _mm256_load_ps(qh[r] + d), acc);
      out[r][j] = hsum(acc) * scale;
    }
  }
}

inline __m512 fold8(const __m512 (&a)[8]) {
  return _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(a[0], a[4]), _mm512_add_ps(a[2], a[6])),
                       _mm512_add_ps(_mm512_add_ps(a[1], a[5]), _mm512_add_ps(a[3], a[7])));
}

// P.V of rows A (na positions) and B (nb >= na), 16 columns per pass.
void pv_rows2(const float* pa, int64_t na, const float* pb, int64_t nb, const uint16_t* v, size_t stride,
              int64_t hd, float* oa, float* ob) {
  for (int64_t col = 0; col < hd; col += 16) {
    __m512 a[8], b[8];
#pragma GCC unroll 8
    for (int l = 0; l < 8; ++l) a[l] = b[l] = _mm512_setzero_ps();
    int64_t j = 0;
    for (; j + 8 <= na; j += 8) {
#pragma GCC unroll 8
      for (int l = 0; l < 8; ++l) {
        const __m512 vj = f16x16(v + (j + l) * stride + col);
        a[l] = _mm512_fmadd_ps(vj, _mm512_set1_ps(pa[j + l]), a[l]);
        b[l] = _mm512_fmadd_ps(vj, _mm512_set1_ps(pb[j + l]), b[l]);
      }
    }
    for (; j < na; ++j) {
      const __m512 vj = f16x16(v + j * stride + col);
      a[j % 8] = _mm512_fmadd_ps(vj, _mm512_set1_ps(pa[j]), a[j % 8]);
      b[j % 8] = _mm512_fmadd_ps(vj, _mm512_set1_ps(pb[j]), b[j % 8]);
    }
    for (; j < nb; ++j) b[j % 8] = _mm512_fmadd_ps(f16x16(v + j * stride + col), _mm512_set1_ps(pb[j]), b[j % 8]);
    _mm512_storeu_ps(oa + col, fold8(a));
    _mm512_storeu_ps(ob + col, fold8(b));
  }
}

void attend_rows(const float* q, size_t q_stride, const void* K, const void* V, GgmlType kv_type,
                 size_t kv_stride, int64_t head_dim, int64_t n_kv0, int64_t m, float scale,
                 float* scratch, float* out, size_t out_stride) {
  if (kv_type == GgmlType::Q8_0) {  // avx2's 4-row INT8 path
    avx2::attend_rows(q, q_stride, K, V, kv_type, kv_stride, head_dim, n_kv0, m, scale, scratch, out,
                              out_stride);
    return;
  }
  if (kv_type != GgmlType::F16 || head_dim % 16 != 0 || head_dim > 512) {
    for (int64_t t = 0; t < m; ++t)
      attend(q + t * q_stride, K, V, kv_type, kv_stride, head_dim, n_kv0 + t, scale, 0.0f, true, scratch,
             out + t * out_stride);
    return;
  }
  const uint16_t* k = static_cast<const uint16_t*>(K);
  const uint16_t* v = static_cast<const uint16_t*>(V);
  const int64_t room = n_kv0 + m - 1;  // scratch: 4 rows of `room` scores (the most a row sees)
  alignas(64) float qh[4][512];
  for (int64_t t0 = 0; t0 < m; t0 += 4) {
    const int R = static_cast<int>(m - t0 < 4 ? m - t0 : 4);
    float* s[4];
    int64_t n[4];
    for (int r = 0; r < 4; ++r) {
      s[r] = scratch + r * room;
      n[r] = n_kv0 + t0 + (r < R ? r : R - 1);
      const float* qr = q + (t0 + (r < R ? r : R - 1)) * q_stride;  // missing rows repeat the last
      round_row_f16(qr, qh[r], head_dim);
    }
    scores_rows4(k, kv_stride, qh, head_dim, n[3], scale, s);
    for (int r = 0; r < R; ++r) {
      softmax_ggml(s[r], n[r]);
      round_row_f16(s[r], s[r], n[r]);
    }
    int r = 0;
    for (; r + 2 <= R; r += 2)
      pv_rows2(s[r], n[r], s[r + 1], n[r + 1], v, kv_stride, head_dim, out + (t0 + r) * out_stride,
               out + (t0 + r + 1) * out_stride);
    if (r < R) pv_tile_order(s[r], v, kv_stride, head_dim, n[r], out + (t0 + r) * out_stride);
  }
}

}  // namespace

void fill_attention(KernelTable& t) {
  t.attend = attend;
  t.attend_rows = attend_rows;
  t.attend_steps = attend_steps;
}

}  // namespace bluelm::kernels::avx512
