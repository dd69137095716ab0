// AVX-512 attention of one query row over the F16 cache in llama.cpp's
// one-token order (avx2/attention.cpp: attend with batched = false): the score
// of a key is ggml_vec_dot_f16's four 8-lane FMA chains folded (a0 + a2) +
// (a1 + a3), lo + hi, then two hadds; P.V runs 32 position lanes (j % 32) per
// column, folded as the AVX2 code folds them. Here two chains share a zmm,
// 8 keys' folds run transposed, and P.V keeps 16 lanes' accumulators of 16
// columns in registers (the AVX2 code's 32 spill): every lane keeps its
// sequence, so the bits are the AVX2 code's. A decode step runs it; a
// speculative round's rows run attend_steps (below), the same bits per lane.
#include <algorithm>
#include <type_traits>

#include "kernels/avx2/avx2.h"
#include "kernels/avx512/avx512.h"
#include "kernels/avx512/zmm.h"
#include "kernels/x86/f16_dot_fold.h"
#include "kernels/x86/ggml_exp.h"

namespace bluelm::kernels::avx512 {
namespace {

inline __m512 f16x16(const uint16_t* p) {
  return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}

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
  alignas(64) float qh[512];
  round_row_f16(q, qh, hd);
  folded_scores<chains>(k, kv_stride, qh, hd, n_kv, scale, scratch);
  softmax_ggml(scratch, n_kv);
  round_row_f16(scratch, scratch, n_kv);
  pv(scratch, v, kv_stride, hd, n_kv, out);
  return true;
}

// Several lanes at once (attend_steps): each lane's score of a key is the
// chains above run lane-wise over 16 keys at a time (keys transposed into a
// tile, one register lane per key), folded by the same adds in the same order
// ((a + b), lo + hi, lo128 + hi128, two hadds); P.V runs pv()'s 32 position
// lanes with each V row converted once for up to 3 lanes of a row.
namespace {

// r[i][e] becomes r[e][i]: four rounds of swapping the off-diagonal blocks of
// size b (8, 4, 2, 1); idx[2k], idx[2k + 1] are the low and high rows' picks for b = 8 >> k.
inline void transpose16(__m512 (&r)[16], const __m512i (&idx)[8]) {
#pragma GCC unroll 16
  for (int k = 0, b = 8; b >= 1; ++k, b /= 2)
#pragma GCC unroll 16
    for (int i = 0; i < 16; ++i)
      if ((i & b) == 0) {
        const __m512 lo = r[i], hi = r[i + b];
        r[i] = _mm512_permutex2var_ps(lo, idx[2 * k], hi);
        r[i + b] = _mm512_permutex2var_ps(lo, idx[2 * k + 1], hi);
      }
}

void transpose_idx(__m512i (&idx)[8]) {
#pragma GCC unroll 16
  for (int k = 0, b = 8; b >= 1; ++k, b /= 2) {
    alignas(64) int32_t lo[16], hi[16];
#pragma GCC unroll 16
    for (int e = 0; e < 16; ++e) {
      lo[e] = (e & b) ? 16 + e - b : e;
      hi[e] = (e & b) ? 16 + e : e + b;
    }
    idx[2 * k] = _mm512_load_si512(lo);
    idx[2 * k + 1] = _mm512_load_si512(hi);
  }
}

// Keys [j0, j0 + 16) (rows past `end` as zeros) into kt[d * 16 + key].
void key_tile(const uint16_t* k, size_t stride, int64_t hd, int64_t j0, int64_t end, const __m512i (&idx)[8],
              float* kt) {
  for (int64_t c = 0; c < hd; c += 16) {
    __m512 r[16];
#pragma GCC unroll 16
    for (int i = 0; i < 16; ++i) r[i] = j0 + i < end ? f16x16(k + (j0 + i) * stride + c) : _mm512_setzero_ps();
    transpose16(r, idx);
#pragma GCC unroll 16
    for (int i = 0; i < 16; ++i) _mm512_store_ps(kt + (c + i) * 16, r[i]);
  }
}

// The 16 keys' scores of NL lanes (queries qh[l], already F16-rounded).
template <int NL>
__attribute__((always_inline)) inline void tile_scores(const float* kt, const float* const* qh, int64_t hd, __m512 scale, float* const* out) {
  // s_c = a_c + b_c of chains() for key lanes at once
  auto s = [&](int c, __m512 (&res)[NL]) {
    __m512 a[NL], b[NL];
#pragma GCC unroll 16
    for (int l = 0; l < NL; ++l) a[l] = b[l] = _mm512_setzero_ps();
    for (int64_t i = 0; i < hd; i += 32) {
      const __m512 ka = _mm512_load_ps(kt + (i + c) * 16), kb = _mm512_load_ps(kt + (i + 16 + c) * 16);
#pragma GCC unroll 16
      for (int l = 0; l < NL; ++l) {
        a[l] = _mm512_fmadd_ps(ka, _mm512_set1_ps(qh[l][i + c]), a[l]);
        b[l] = _mm512_fmadd_ps(kb, _mm512_set1_ps(qh[l][i + 16 + c]), b[l]);
      }
    }
#pragma GCC unroll 16
    for (int l = 0; l < NL; ++l) res[l] = _mm512_add_ps(a[l], b[l]);
  };
  // t_c = (s_c + s_{c+8}) + (s_{c+4} + s_{c+12}): the 512 -> 256 and 256 -> 128 folds
  auto t = [&](int c, __m512 (&res)[NL]) {
    __m512 x0[NL], x8[NL], x4[NL], x12[NL];
    s(c, x0);
    s(c + 8, x8);
    s(c + 4, x4);
    s(c + 12, x12);
#pragma GCC unroll 16
    for (int l = 0; l < NL; ++l) res[l] = _mm512_add_ps(_mm512_add_ps(x0[l], x8[l]), _mm512_add_ps(x4[l], x12[l]));
  };
  __m512 t0[NL], t1[NL], t2[NL], t3[NL];
  t(0, t0);
  t(1, t1);
  t(2, t2);
  t(3, t3);
#pragma GCC unroll 16
  for (int l = 0; l < NL; ++l) {
    const __m512 r = _mm512_add_ps(_mm512_add_ps(t0[l], t1[l]), _mm512_add_ps(t2[l], t3[l]));
    _mm512_storeu_ps(out[l], _mm512_mul_ps(r, scale));
  }
}

// pv() for S lanes of one row (weights p[s], n positions): each V row is
// converted once per 16 columns for the S lanes; position lanes PL at a time
// (S x PL accumulators in registers: 4 lanes, a GQA group of 4, take 4).
template <int S, int PL = (S > 3 ? 4 : 8)>
void pv_lanes(const float* const* p, const uint16_t* v, size_t stride, int64_t hd, int64_t n, float* const* out) {
  alignas(64) float acc[S][32 * 16];
  for (int64_t d = 0; d < hd; d += 16) {
    for (int l0 = 0; l0 < 32; l0 += PL) {
      __m512 a[S][PL];
#pragma GCC unroll 16
      for (int s = 0; s < S; ++s)
#pragma GCC unroll 16
        for (int l = 0; l < PL; ++l) a[s][l] = _mm512_setzero_ps();
      auto step = [&](int64_t j, int l) {
        const __m512 vj = f16x16(v + j * stride + d);
#pragma GCC unroll 16
        for (int s = 0; s < S; ++s) a[s][l] = _mm512_fmadd_ps(vj, _mm512_set1_ps(p[s][j]), a[s][l]);
      };
      int64_t j0 = l0;
      for (; j0 + PL <= n; j0 += 32) {
#pragma GCC unroll 8
        for (int l = 0; l < PL; ++l) step(j0 + l, l);
      }
      for (int l = 0; j0 + l < n && l < PL; ++l) step(j0 + l, l);
#pragma GCC unroll 16
      for (int s = 0; s < S; ++s)
#pragma GCC unroll 16
        for (int l = 0; l < PL; ++l) _mm512_store_ps(acc[s] + 16 * (l0 + l), a[s][l]);
    }
#pragma GCC unroll 16
    for (int s = 0; s < S; ++s) {
      auto A = [&](int l) { return _mm512_load_ps(acc[s] + 16 * l); };
      __m512 x[8];
#pragma GCC unroll 16
      for (int l = 0; l < 8; ++l) x[l] = _mm512_add_ps(_mm512_add_ps(A(l), A(16 + l)), _mm512_add_ps(A(8 + l), A(24 + l)));
      const __m512 r = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(x[0], x[4]), _mm512_add_ps(x[1], x[5])),
                                     _mm512_add_ps(_mm512_add_ps(x[2], x[6]), _mm512_add_ps(x[3], x[7])));
      _mm512_storeu_ps(out[s] + d, r);
    }
  }
}

// Lanes [l0, l1), at most kStepLanes, of an F16 cache (head_dim % 32 == 0, <= 512).
void steps_f16(const ChunkAttention& a, int64_t l0, int64_t l1, float* scratch) {
  const int64_t hd = a.head_dim, G = a.n_group, nl = l1 - l0;
  const uint16_t* k = static_cast<const uint16_t*>(a.k);
  const uint16_t* v = static_cast<const uint16_t*>(a.v);
  int64_t lo[kStepLanes] = {}, hi[kStepLanes] = {};
  for (int64_t l = 0; l < nl; ++l) {
    hi[l] = a.pos0 + (l0 + l) / G + 1;
    lo[l] = a.window ? std::max<int64_t>(0, hi[l] - a.window) : 0;
  }
  const int64_t first = *std::min_element(lo, lo + nl), end = hi[nl - 1];
  const int64_t room = (end - first + 15) / 16 * 16;  // scores of lane l at scratch + l * room, from `first`
  alignas(64) float qh[kStepLanes][512];
  for (int64_t l = 0; l < nl; ++l) {
    const int64_t L = l0 + l;
    round_row_f16(a.q + L / G * a.q_stride + L % G * hd, qh[l], hd);
  }
  __m512i idx[8];
  transpose_idx(idx);
  const __m512 vs = _mm512_set1_ps(a.scale);
  alignas(64) float kt[512 * 16];
  const size_t row_bytes = static_cast<size_t>(hd) * 2;
  for (int64_t j0 = first; j0 < end; j0 += 16) {
    // The next tile's K rows (to L1) and this tile's V rows (to L2, for P.V):
    // at the cache's row stride the loads otherwise wait on DRAM.
    for (int64_t j = j0; j < std::min(end, j0 + 16); ++j) {
      const char* vj = reinterpret_cast<const char*>(v + j * a.kv_stride);
      for (size_t b = 0; b < row_bytes; b += 64) _mm_prefetch(vj + b, _MM_HINT_T1);
      if (j + 16 >= end) continue;
      const char* kn = reinterpret_cast<const char*>(k + (j + 16) * a.kv_stride);
      for (size_t b = 0; b < row_bytes; b += 64) _mm_prefetch(kn + b, _MM_HINT_T0);
    }
    key_tile(k, a.kv_stride, hd, j0, end, idx, kt);
    int64_t l = 0;
    auto run = [&](auto nlanes) {
      constexpr int NL = decltype(nlanes)::value;
      const float* q[NL];
      float* o[NL];
      for (int i = 0; i < NL; ++i) {
        q[i] = qh[l + i];
        o[i] = scratch + (l + i) * room + (j0 - first);
      }
      tile_scores<NL>(kt, q, hd, vs, o);
      l += NL;
    };
    while (l + 4 <= nl) run(std::integral_constant<int, 4>());  // run() advances l
    if (nl - l == 3) run(std::integral_constant<int, 3>());
    if (nl - l == 2) run(std::integral_constant<int, 2>());
    if (nl - l == 1) run(std::integral_constant<int, 1>());
  }
  for (int64_t l = 0; l < nl; ++l) {
    float* p = scratch + l * room + (lo[l] - first);
    softmax_ggml(p, hi[l] - lo[l]);
    round_row_f16(p, p, hi[l] - lo[l]);
  }
  // P.V: the lanes of one row share V's conversions, up to 4 at a time
  for (int64_t l = 0; l < nl;) {
    const int64_t row_end = std::min(nl, ((l0 + l) / G + 1) * G - l0);
    const int S = static_cast<int>(std::min<int64_t>(row_end - l == 4 ? 4 : 3, row_end - l));
    const float* p[4];
    float* o[4];
#pragma GCC unroll 16
    for (int s = 0; s < S; ++s) {
      const int64_t L = l0 + l + s;
      p[s] = scratch + (l + s) * room + (lo[l] - first);
      o[s] = a.out + L / G * a.out_stride + L % G * hd;
    }
    const uint16_t* vr = v + lo[l] * a.kv_stride;
    const int64_t n = hi[l] - lo[l];
    if (S == 4) pv_lanes<4>(p, vr, a.kv_stride, hd, n, o);
    else if (S == 3) pv_lanes<3>(p, vr, a.kv_stride, hd, n, o);
    else if (S == 2) pv_lanes<2>(p, vr, a.kv_stride, hd, n, o);
    else pv_lanes<1>(p, vr, a.kv_stride, hd, n, o);
    l += S;
  }
}

}  // namespace

void attend_steps(const ChunkAttention& a, int64_t lane0, int64_t lane1, float* scratch) {
  const int64_t hd = a.head_dim, G = a.n_group;
  if (a.kv_type == GgmlType::F16 && a.softcap == 0.0f && hd % 32 == 0 && hd <= 512) {
    for (int64_t l0 = lane0; l0 < lane1; l0 += kStepLanes) steps_f16(a, l0, std::min(lane1, l0 + kStepLanes), scratch);
    return;
  }
  for (int64_t L = lane0; L < lane1; ++L) {  // what attend() runs for these caches
    const int64_t t = L / G, hi = a.pos0 + t + 1, lo = a.window ? std::max<int64_t>(0, hi - a.window) : 0;
    const size_t off = row_bytes(a.kv_type, static_cast<int64_t>(lo * a.kv_stride));
    avx2::attend(a.q + t * a.q_stride + L % G * hd, static_cast<const uint8_t*>(a.k) + off,
                 static_cast<const uint8_t*>(a.v) + off, a.kv_type, a.kv_stride, hd, hi - lo, a.scale, a.softcap,
                 false, scratch, a.out + t * a.out_stride + L % G * hd);
  }
}

}  // namespace bluelm::kernels::avx512
