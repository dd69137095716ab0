// AVX-512 F32 attention of the vision encoder, one (image, head) at a time:
// K transposed and V copied to contiguous rows once per head, scores for 64
// queries at a time (6 queries x 64 keys per tile), softmax16, P.V with 8
// queries x 48 columns per tile. Built with -ffp-contract=off.
#include "kernels/avx512/avx512.h"
#include "kernels/avx512/zmm.h"
#include "kernels/common/attention_stage.h"

namespace bluelm::kernels::avx512 {
namespace {

constexpr int64_t kKeys = 64;     // keys per score tile (4 zmm)
constexpr int kQ = 6;              // queries per score tile
constexpr int64_t kQBlock = 64;    // queries whose scores are live at once
constexpr int kPQ = 8;             // queries per P.V tile
constexpr int kPV = 3;             // zmm of output columns per P.V tile

int64_t keys_pad(int64_t n) { return (n + kKeys - 1) / kKeys * kKeys; }

int64_t cols_pad(int64_t hd) { return (hd + 15) / 16 * 16; }

size_t work_floats(int64_t n, int64_t hd) {
  return static_cast<size_t>(keys_pad(n) * (hd + kQBlock) + n * cols_pad(hd));
}

// sc[t][j0 + c] = q_t . kt[., j0 + c] for T queries, 64 keys; kt is hd x np.
template <int T>
inline void score_tile(const float* q, size_t ld, const float* kt, int64_t np, int64_t hd, float* sc) {
  __m512 acc[T][4];
#pragma GCC unroll 8
  for (int t = 0; t < T; ++t)
#pragma GCC unroll 8
    for (int c = 0; c < 4; ++c) acc[t][c] = _mm512_setzero_ps();
  for (int64_t d = 0; d < hd; ++d) {
    const float* kd = kt + d * np;
    const __m512 k0 = _mm512_loadu_ps(kd), k1 = _mm512_loadu_ps(kd + 16), k2 = _mm512_loadu_ps(kd + 32),
                 k3 = _mm512_loadu_ps(kd + 48);
#pragma GCC unroll 8
    for (int t = 0; t < T; ++t) {
      const __m512 b = _mm512_set1_ps(q[t * ld + d]);
      acc[t][0] = _mm512_fmadd_ps(k0, b, acc[t][0]);
      acc[t][1] = _mm512_fmadd_ps(k1, b, acc[t][1]);
      acc[t][2] = _mm512_fmadd_ps(k2, b, acc[t][2]);
      acc[t][3] = _mm512_fmadd_ps(k3, b, acc[t][3]);
    }
  }
#pragma GCC unroll 8
  for (int t = 0; t < T; ++t)
#pragma GCC unroll 8
    for (int c = 0; c < 4; ++c) _mm512_storeu_ps(sc + t * np + 16 * c, acc[t][c]);
}

// out[t][d0 + 16c + l] = sum_j p[t][j] v[j][d0 + 16c + l] for T queries, NV
// vectors of 16 columns (the last masked by `last`).
template <int T, int NV>
inline void pv_tile(const float* p, int64_t np, const float* v, int64_t hp, int64_t n, __mmask16 last, float* out,
                    size_t ld) {
  __m512 acc[T][NV];
#pragma GCC unroll 8
  for (int t = 0; t < T; ++t)
#pragma GCC unroll 8
    for (int c = 0; c < NV; ++c) acc[t][c] = _mm512_setzero_ps();
  for (int64_t j = 0; j < n; ++j) {
    const float* vj = v + j * hp;
    __m512 vv[NV];
#pragma GCC unroll 8
    for (int c = 0; c < NV; ++c) vv[c] = _mm512_loadu_ps(vj + 16 * c);
#pragma GCC unroll 8
    for (int t = 0; t < T; ++t) {
      const __m512 b = _mm512_set1_ps(p[t * np + j]);
#pragma GCC unroll 8
      for (int c = 0; c < NV; ++c) acc[t][c] = _mm512_fmadd_ps(vv[c], b, acc[t][c]);
    }
  }
#pragma GCC unroll 8
  for (int t = 0; t < T; ++t)
#pragma GCC unroll 8
    for (int c = 0; c < NV; ++c) {
      if (c + 1 < NV) _mm512_storeu_ps(out + t * ld + 16 * c, acc[t][c]);
      else _mm512_mask_storeu_ps(out + t * ld + 16 * c, last, acc[t][c]);
    }
}

// v: n rows of hp floats (V of this head, columns past hd zero).
template <int NV>
void pv_rows(const float* p, int64_t np, const float* v, int64_t hp, int64_t n, __mmask16 last, float* out,
             size_t ld, int64_t qb) {
  int64_t t = 0;
  for (; t + kPQ <= qb; t += kPQ) pv_tile<kPQ, NV>(p + t * np, np, v, hp, n, last, out + t * ld, ld);
  for (; t + 4 <= qb; t += 4) pv_tile<4, NV>(p + t * np, np, v, hp, n, last, out + t * ld, ld);
  for (; t < qb; ++t) pv_tile<1, NV>(p + t * np, np, v, hp, n, last, out + t * ld, ld);
}

template <int T>
void score_rows(const float* q, size_t ld, const float* kt, int64_t np, int64_t hd, float* sc, int64_t qb) {
  for (int64_t j0 = 0; j0 < np; j0 += kKeys) {
    int64_t t = 0;
    for (; t + T <= qb; t += T) score_tile<T>(q + t * ld, ld, kt + j0, np, hd, sc + t * np + j0);
    for (; t < qb; ++t) score_tile<1>(q + t * ld, ld, kt + j0, np, hd, sc + t * np + j0);
  }
}

void attention(const float* q, const float* k, const float* v, size_t ld, int64_t n, int64_t hd, float scale,
               float* out, float* work) {
  const int64_t np = keys_pad(n);
  float* kt = work;             // hd x np, K transposed, keys past n zero
  float* sc = work + hd * np;   // kQBlock x np scores
  const int64_t hp = cols_pad(hd);
  float* vc = sc + kQBlock * np;  // n x hp, V with contiguous rows, columns past hd zero
  stage_head(k, v, ld, n, hd, np, hp, kt, vc);
  for (int64_t q0 = 0; q0 < n; q0 += kQBlock) {
    const int64_t qb = n - q0 < kQBlock ? n - q0 : kQBlock;
    score_rows<kQ>(q + q0 * ld, ld, kt, np, hd, sc, qb);
    for (int64_t t = 0; t < qb; ++t) softmax16(sc + t * np, n, scale);
    for (int64_t d0 = 0; d0 < hd; d0 += 16 * kPV) {
      const int64_t w = hd - d0 < 16 * kPV ? hd - d0 : 16 * kPV;
      const int nv = static_cast<int>((w + 15) / 16);
      const int64_t rem = w - 16 * (nv - 1);
      const __mmask16 last = rem >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << rem) - 1u);
      const float* vd = vc + d0;
      float* od = out + q0 * ld + d0;
      switch (nv) {
        case 1: pv_rows<1>(sc, np, vd, hp, n, last, od, ld, qb); break;
        case 2: pv_rows<2>(sc, np, vd, hp, n, last, od, ld, qb); break;
        default: pv_rows<3>(sc, np, vd, hp, n, last, od, ld, qb); break;
      }
    }
  }
}

}  // namespace

void fill_vision_attention(KernelTable& t) {
  t.vision.attention = attention;
  t.vision.attention_work = work_floats;
}

}  // namespace bluelm::kernels::avx512
