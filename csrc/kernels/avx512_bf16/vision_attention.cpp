// AVX512_BF16 attention of the int8 vision encoder, one (image, head) at a
// time (VisionKernels::i8_attention). Scores with VNNI: each query row to u8
// with a zero point and K, less its mean over the keys (which moves all scores
// of a query by the same amount), per key to s8, as the int8 matmuls quantise
// (i8_format.h); exact int32 sums in tiles of 4 queries x 96 keys, scaled by
// the two rows' scales and scale * log2 e. Then 2^(s - max) in f32, the
// weights rounded to bf16 and normalised by the sum of the rounded weights,
// and P.V with vdpbf16ps (V in bf16) in tiles of 5 queries x up to 72 columns
// (4 zmm and one ymm: Zen 4 runs a ymm op in half a zmm's time). For so400m's
// 729 x 72 heads: 0.72 ms, against 1.9 ms for the F32 kernel (Zen 4, one core).
#include <cmath>
#include <cstdint>
#include <cstring>

#include "kernels/avx512/zmm.h"
#include "kernels/avx512_bf16/avx512_bf16.h"

namespace bluelm::kernels::avx512_bf16 {
namespace {

constexpr int64_t kQBlock = 64;  // queries whose scores are live at once
constexpr int kSQ = 4;            // queries per score tile
constexpr int kSV = 6;            // zmm of 16 keys per score tile
constexpr int kPQ = 5;            // queries per P.V tile
constexpr int64_t kAhead = 8;     // rows prefetched ahead while quantising
constexpr float kLog2e = 1.44269504088896341f;

int64_t up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

// The packed operands of one head in the work buffer (each region 64-byte aligned).
struct Dims {
  int64_t kq;  // hd rounded up to 4: a query in u8, a key in s8
  int64_t np;  // keys rounded up to 16: a score row, a row of packed K
  int64_t n2;  // key pairs
  int64_t lp;  // a row of weights in bf16 (>= 2 * n2, a multiple of 32)
  int64_t hv;  // hd rounded up to 8: a row of packed V, in 32-bit pairs
  size_t qu, qs, qz, k8, ks, ksum, kmean, krow, vp, sc, p, inv, bytes;  // offsets
};

Dims dims(int64_t n, int64_t hd) {
  Dims d{};
  d.kq = up(hd, 4);
  d.np = up(n, 16);
  d.n2 = (n + 1) / 2;
  d.lp = up(2 * d.n2, 32);
  d.hv = up(hd, 8);
  size_t at = 0;
  auto take = [&at](size_t bytes) {
    const size_t off = at;
    at += (bytes + 63) / 64 * 64;
    return off;
  };
  d.qu = take(n * d.kq);
  d.qs = take(sizeof(float) * n);
  d.qz = take(sizeof(int32_t) * n);
  d.k8 = take(d.kq * d.np);
  d.ks = take(sizeof(float) * d.np);
  d.ksum = take(sizeof(int32_t) * d.np);
  d.kmean = take(sizeof(float) * up(hd, 16));
  d.krow = take(up(d.kq, 16));
  d.vp = take(sizeof(uint32_t) * d.n2 * d.hv);
  d.sc = take(sizeof(float) * kQBlock * d.np);
  d.p = take(sizeof(uint16_t) * kQBlock * d.lp);
  d.inv = take(sizeof(float) * kQBlock);
  d.bytes = at;
  return d;
}

size_t work_floats(int64_t n, int64_t hd) { return (dims(n, hd).bytes + 64) / sizeof(float); }

inline __m512bh as_bh(__m512i v) { return (__m512bh)v; }
inline __m256bh as_bh(__m256i v) { return (__m256bh)v; }

inline __m512i bcast_pair(const uint16_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return _mm512_set1_epi32(v);
}

inline __mmask16 mask16(int64_t n) { return n >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << n) - 1u); }

// The lines of p[0, count) into L1: a head's slice of rows `ld` apart is a
// stride the hardware prefetcher does not follow.
inline void prefetch_slice(const float* p, int64_t count) {
  const char* b = reinterpret_cast<const char*>(p);
  for (int64_t i = 0; i < count * 4; i += 64) _mm_prefetch(b + i, _MM_HINT_T0);
  _mm_prefetch(b + count * 4 - 1, _MM_HINT_T0);
}

// acc + the u8 x s8 products of each 4 bytes, summed per lane. GCC 12 copies
// and spills the accumulators of _mm512_dpbusd_epi32 in unrolled tiles (it
// keeps them in registers through this).
inline __m512i dpbusd(__m512i acc, __m512i u8, __m512i s8) {
  asm("vpdpbusd %2, %1, %0" : "+v"(acc) : "v"(u8), "v"(s8));
  return acc;
}

// Each query row to u8 as the int8 format's i8_quant (i8_format.h): over [lo,
// hi] = [min(x, 0), max(x, 0)], inv = 255 / (hi - lo), zero point
// round(-lo * inv), u = clamp(round(x * inv) + zp, 0, 255), rounding to nearest
// even; scale (hi - lo) / 255. Rows of kq bytes (the pad is zp).
void quantize_q(const float* q, size_t ld, int64_t n, int64_t hd, int64_t kq, uint8_t* qu, float* qs, int32_t* qz) {
  for (int64_t t = 0; t < n; ++t) {
    if (t + kAhead < n) prefetch_slice(q + (t + kAhead) * ld, hd);
    const float* x = q + t * ld;
    __m512 lo = _mm512_setzero_ps(), hi = lo;
    for (int64_t d = 0; d < hd; d += 16) {
      const __m512 v = _mm512_maskz_loadu_ps(mask16(hd - d), x + d);
      lo = _mm512_min_ps(lo, v);
      hi = _mm512_max_ps(hi, v);
    }
    const float range = _mm512_reduce_max_ps(hi) - _mm512_reduce_min_ps(lo);
    const float inv = range > 0.0f ? 255.0f / range : 0.0f;
    const int32_t z = static_cast<int32_t>(std::nearbyint(-_mm512_reduce_min_ps(lo) * inv));
    const __m512 vinv = _mm512_set1_ps(inv);
    const __m512i off = _mm512_set1_epi32(z), zero = _mm512_setzero_si512();
    for (int64_t d = 0; d < kq; d += 16) {
      const __m512 v = _mm512_maskz_loadu_ps(mask16(hd - d), x + d);
      const __m512i u = _mm512_max_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(_mm512_mul_ps(v, vinv)), off), zero);
      _mm_mask_storeu_epi8(qu + t * kq + d, mask16(kq - d), _mm512_cvtusepi32_epi8(u));
    }
    qs[t] = range / 255.0f;
    qz[t] = z;
  }
}

// K less its mean over the keys (kmean[d]: the f32 sum over j in order, times
// 1 / n), each key to s8 with scale max|k - kmean| / 127 (round to nearest
// even), packed k8[s][j] = 4 bytes (dimensions 4s..4s+3 of key j); ks[j] =
// scale * c, ksum[j] = the key's s8 sum; keys n..np are zero. `row` holds one
// key on its way.
void quantize_k(const float* k, size_t ld, int64_t n, int64_t hd, const Dims& d, float c, uint32_t* k8, float* ks,
                int32_t* ksum, float* kmean, int8_t* row) {
  const int64_t nv = (hd + 15) / 16;
  for (int64_t v = 0; v < nv; ++v) _mm512_storeu_ps(kmean + 16 * v, _mm512_setzero_ps());
  for (int64_t j = 0; j < n; ++j) {
    if (j + kAhead < n) prefetch_slice(k + (j + kAhead) * ld, hd);
    for (int64_t v = 0; v < nv; ++v) {
      const __m512 x = _mm512_maskz_loadu_ps(mask16(hd - 16 * v), k + j * ld + 16 * v);
      _mm512_storeu_ps(kmean + 16 * v, _mm512_add_ps(_mm512_loadu_ps(kmean + 16 * v), x));
    }
  }
  const __m512 inv_n = _mm512_set1_ps(1.0f / static_cast<float>(n));
  for (int64_t v = 0; v < nv; ++v) _mm512_storeu_ps(kmean + 16 * v, _mm512_mul_ps(_mm512_loadu_ps(kmean + 16 * v), inv_n));
  const int64_t steps = d.kq / 4;
  for (int64_t j = 0; j < n; ++j) {  // the rows are in L2 from the pass above
    const float* x = k + j * ld;
    __m512 mx = _mm512_setzero_ps();
    for (int64_t v = 0; v < nv; ++v) {
      const __mmask16 m = mask16(hd - 16 * v);
      const __m512 y = _mm512_maskz_sub_ps(m, _mm512_maskz_loadu_ps(m, x + 16 * v), _mm512_loadu_ps(kmean + 16 * v));
      mx = _mm512_max_ps(mx, _mm512_abs_ps(y));
    }
    const float amax = _mm512_reduce_max_ps(mx), inv = amax > 0.0f ? 127.0f / amax : 0.0f;
    const __m512 vinv = _mm512_set1_ps(inv);
    __m512i sum = _mm512_setzero_si512();
    for (int64_t v = 0; v < (d.kq + 15) / 16; ++v) {
      const __mmask16 m = mask16(hd - 16 * v);
      const __m512 y = _mm512_maskz_sub_ps(m, _mm512_maskz_loadu_ps(m, x + 16 * v), _mm512_loadu_ps(kmean + 16 * v));
      const __m512i s = _mm512_cvtps_epi32(_mm512_mul_ps(y, vinv));
      sum = _mm512_add_epi32(sum, s);
      _mm_mask_storeu_epi8(row + 16 * v, mask16(d.kq - 16 * v), _mm512_cvtsepi32_epi8(s));
    }
    ksum[j] = _mm512_reduce_add_epi32(sum);
    ks[j] = amax / 127.0f * c;
    for (int64_t s = 0; s < steps; ++s) std::memcpy(k8 + s * d.np + j, row + 4 * s, 4);
  }
  for (int64_t j = n; j < d.np; ++j) {
    ks[j] = 0.0f;
    ksum[j] = 0;
    for (int64_t s = 0; s < steps; ++s) k8[s * d.np + j] = 0;
  }
}

// vp[s][c] (32 bits) = (bf16 v[2s][c], bf16 v[2s+1][c]): each step of P.V's
// sum holds 16 columns of two keys in a zmm; columns hd..hv and a missing
// last key are zero.
void pack_v(const float* v, size_t ld, int64_t n, int64_t hd, const Dims& d, uint32_t* vp) {
  const __m512i inter = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7, 22,
                                         6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
  for (int64_t s = 0; s < d.n2; ++s) {
    const float* a = v + 2 * s * ld;
    const bool has_b = 2 * s + 1 < n;
    for (int64_t r = 2 * s + kAhead; r < 2 * s + kAhead + 2 && r < n; ++r) prefetch_slice(v + r * ld, hd);
    for (int64_t c = 0; c < d.hv; c += 16) {
      const __mmask16 m = mask16(hd - c), ms = mask16(d.hv - c);
      const __m512 x0 = _mm512_maskz_loadu_ps(m, a + c);
      const __m512 x1 = has_b ? _mm512_maskz_loadu_ps(m, a + ld + c) : _mm512_setzero_ps();
      const __m512i both = (__m512i)_mm512_cvtne2ps_pbh(x1, x0);  // x0's 16 values, then x1's
      _mm512_mask_storeu_epi32(vp + s * d.hv + c, ms, _mm512_permutexvar_epi16(inter, both));
    }
  }
}

// sc[t][16c + l] (log2 units) = float(sum_d u[t][d] k8[j][d] - zp[t] ksum[j]) *
// (ks[j] * qs[t]) for T queries and NV zmm of keys j = 16c + l.
template <int T, int NV>
inline void score_tile(const uint8_t* qu, int64_t kq, const float* qs, const int32_t* qz, const uint32_t* k8,
                       int64_t np, const float* ks, const int32_t* ksum, float* sc) {
  __m512i acc[T][NV];
#pragma GCC unroll 8
  for (int t = 0; t < T; ++t)
#pragma GCC unroll 8
    for (int c = 0; c < NV; ++c) acc[t][c] = _mm512_setzero_si512();
  const int64_t steps = kq / 4;
  for (int64_t s = 0; s < steps; ++s) {
    __m512i kv[NV];
#pragma GCC unroll 8
    for (int c = 0; c < NV; ++c) kv[c] = _mm512_loadu_si512(k8 + s * np + 16 * c);
#pragma GCC unroll 8
    for (int t = 0; t < T; ++t) {
      int32_t w;
      std::memcpy(&w, qu + t * kq + 4 * s, 4);
      const __m512i b = _mm512_set1_epi32(w);
#pragma GCC unroll 8
      for (int c = 0; c < NV; ++c) acc[t][c] = dpbusd(acc[t][c], b, kv[c]);
    }
  }
#pragma GCC unroll 8
  for (int c = 0; c < NV; ++c) {
    const __m512 kscale = _mm512_loadu_ps(ks + 16 * c);
    const __m512i kw = _mm512_loadu_si512(ksum + 16 * c);
#pragma GCC unroll 8
    for (int t = 0; t < T; ++t) {
      const __m512i a = _mm512_sub_epi32(acc[t][c], _mm512_mullo_epi32(_mm512_set1_epi32(qz[t]), kw));
      const __m512 f = _mm512_mul_ps(_mm512_cvtepi32_ps(a), _mm512_mul_ps(kscale, _mm512_set1_ps(qs[t])));
      _mm512_storeu_ps(sc + t * np + 16 * c, f);
    }
  }
}

template <int T>
void score_rows(const uint8_t* qu, int64_t kq, const float* qs, const int32_t* qz, const uint32_t* k8, int64_t np,
                const float* ks, const int32_t* ksum, float* sc) {
  int64_t j = 0;
  for (; j + 16 * kSV <= np; j += 16 * kSV) score_tile<T, kSV>(qu, kq, qs, qz, k8 + j, np, ks + j, ksum + j, sc + j);
  static_assert(kSV == 6, "the remainder cases below");
  switch ((np - j) / 16) {
    case 5: score_tile<T, 5>(qu, kq, qs, qz, k8 + j, np, ks + j, ksum + j, sc + j); break;
    case 4: score_tile<T, 4>(qu, kq, qs, qz, k8 + j, np, ks + j, ksum + j, sc + j); break;
    case 3: score_tile<T, 3>(qu, kq, qs, qz, k8 + j, np, ks + j, ksum + j, sc + j); break;
    case 2: score_tile<T, 2>(qu, kq, qs, qz, k8 + j, np, ks + j, ksum + j, sc + j); break;
    case 1: score_tile<T, 1>(qu, kq, qs, qz, k8 + j, np, ks + j, ksum + j, sc + j); break;
    default: break;
  }
}

void scores(const uint8_t* qu, const float* qs, const int32_t* qz, int64_t qn, const uint32_t* k8, const float* ks,
            const int32_t* ksum, const Dims& d, float* sc) {
  int64_t t = 0;
  for (; t + kSQ <= qn; t += kSQ)
    score_rows<kSQ>(qu + t * d.kq, d.kq, qs + t, qz + t, k8, d.np, ks, ksum, sc + t * d.np);
  for (; t < qn; ++t) score_rows<1>(qu + t * d.kq, d.kq, qs + t, qz + t, k8, d.np, ks, ksum, sc + t * d.np);
}

// 2^x for finite x <= 0: 2^round(x) (scalef: 0 or a subnormal far below 2^-126)
// times the degree-5 Taylor polynomial of 2^f = e^(f ln 2) on |f| <= 1/2
// (relative error below 3e-6).
inline __m512 exp2_neg(__m512 x) {
  const __m512 n = _mm512_roundscale_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m512 f = _mm512_sub_ps(x, n);
  __m512 p = _mm512_set1_ps(1.3333558146428443e-3f);  // ln2^5 / 120
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(9.6181291076284772e-3f));  // ln2^4 / 24
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(5.5504108664821580e-2f));  // ln2^3 / 6
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(2.4022650695910071e-1f));  // ln2^2 / 2
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(6.9314718055994531e-1f));  // ln2
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.0f));
  return _mm512_scalef_ps(p, n);
}

// The f32 value of bf16 bits (16 of them).
inline __m512 from_bf16(__m256i b) { return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(b), 16)); }

// 32 weights bf16(2^(s_j - m)) to p (those at or past `n` zero); adds their f32 values to sum.
template <bool kMasked>
inline void weights32(const float* s, __m512 m, int64_t n, uint16_t* p, __m512& sum) {
  __m512 e0, e1;
  if constexpr (kMasked) {
    const __mmask16 m0 = n > 0 ? mask16(n) : 0, m1 = n > 16 ? mask16(n - 16) : 0;
    e0 = _mm512_maskz_mov_ps(m0, exp2_neg(_mm512_sub_ps(_mm512_maskz_loadu_ps(m0, s), m)));
    e1 = _mm512_maskz_mov_ps(m1, exp2_neg(_mm512_sub_ps(_mm512_maskz_loadu_ps(m1, s + 16), m)));
  } else {
    e0 = exp2_neg(_mm512_sub_ps(_mm512_loadu_ps(s), m));
    e1 = exp2_neg(_mm512_sub_ps(_mm512_loadu_ps(s + 16), m));
  }
  const __m512i b = (__m512i)_mm512_cvtne2ps_pbh(e1, e0);  // e0's 16 values, then e1's
  _mm512_storeu_si512(p, b);
  sum = _mm512_add_ps(sum, from_bf16(_mm512_castsi512_si256(b)));
  sum = _mm512_add_ps(sum, from_bf16(_mm512_extracti64x4_epi64(b, 1)));
}

// One row of scores (log2 units) -> p[0, lp) = bf16(2^(s_j - max)) for j < n, 0
// after; returns 1 / (the sum of the rounded weights).
float softmax_row(const float* s, int64_t n, uint16_t* p, int64_t lp) {
  __m512 mv = _mm512_set1_ps(-INFINITY);
  for (int64_t j = 0; j < n; j += 16) mv = _mm512_mask_max_ps(mv, mask16(n - j), mv, _mm512_loadu_ps(s + j));
  const __m512 m = _mm512_set1_ps(_mm512_reduce_max_ps(mv));
  __m512 sum = _mm512_setzero_ps();
  int64_t j = 0;
  for (; j + 32 <= n; j += 32) weights32<false>(s + j, m, n - j, p + j, sum);
  for (; j < lp; j += 32) weights32<true>(s + j, m, n - j, p + j, sum);
  return 1.0f / _mm512_reduce_add_ps(sum);
}

// out[t][c] = inv[t] * sum_j p[t][j] v[j][c] for T queries and the columns of
// NZ zmm (16 each) and, with HALF, one ymm (8) after them; the last vector's
// store is masked by `last`.
template <int T, int NZ, bool HALF>
inline void pv_tile(const uint16_t* p, int64_t lp, const uint32_t* vp, int64_t hv, int64_t n2, const float* inv,
                    float* out, size_t ld, __mmask16 last) {
  __m512 acc[T][NZ > 0 ? NZ : 1];
  __m256 acch[T];
#pragma GCC unroll 8
  for (int t = 0; t < T; ++t) {
#pragma GCC unroll 8
    for (int c = 0; c < NZ; ++c) acc[t][c] = _mm512_setzero_ps();
    acch[t] = _mm256_setzero_ps();
  }
  for (int64_t s = 0; s < n2; ++s) {
    const uint32_t* vs = vp + s * hv;
    __m512bh vv[NZ > 0 ? NZ : 1];
#pragma GCC unroll 8
    for (int c = 0; c < NZ; ++c) vv[c] = as_bh(_mm512_loadu_si512(vs + 16 * c));
    __m256bh vh{};
    if constexpr (HALF) vh = as_bh(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(vs + 16 * NZ)));
#pragma GCC unroll 8
    for (int t = 0; t < T; ++t) {
      const __m512i b = bcast_pair(p + t * lp + 2 * s);
#pragma GCC unroll 8
      for (int c = 0; c < NZ; ++c) acc[t][c] = _mm512_dpbf16_ps(acc[t][c], as_bh(b), vv[c]);
      if constexpr (HALF) acch[t] = _mm256_dpbf16_ps(acch[t], as_bh(_mm512_castsi512_si256(b)), vh);
    }
  }
#pragma GCC unroll 8
  for (int t = 0; t < T; ++t) {
    const __m512 iv = _mm512_set1_ps(inv[t]);
    float* o = out + t * ld;
#pragma GCC unroll 8
    for (int c = 0; c < NZ; ++c) {
      const __m512 r = _mm512_mul_ps(acc[t][c], iv);
      if (c + 1 < NZ || HALF) _mm512_storeu_ps(o + 16 * c, r);
      else _mm512_mask_storeu_ps(o + 16 * c, last, r);
    }
    if constexpr (HALF) _mm256_mask_storeu_ps(o + 16 * NZ, __mmask8(last), _mm256_mul_ps(acch[t], _mm512_castps512_ps256(iv)));
  }
}

template <int NZ, bool HALF>
void pv_rows(const uint16_t* p, int64_t lp, int64_t qn, const uint32_t* vp, int64_t hv, int64_t n2, const float* inv,
             float* out, size_t ld, __mmask16 last) {
  int64_t t = 0;
  for (; t + kPQ <= qn; t += kPQ) pv_tile<kPQ, NZ, HALF>(p + t * lp, lp, vp, hv, n2, inv + t, out + t * ld, ld, last);
  for (; t + 2 <= qn; t += 2) pv_tile<2, NZ, HALF>(p + t * lp, lp, vp, hv, n2, inv + t, out + t * ld, ld, last);
  for (; t < qn; ++t) pv_tile<1, NZ, HALF>(p + t * lp, lp, vp, hv, n2, inv + t, out + t * ld, ld, last);
}

// Columns in groups of 64 (4 zmm) while more than 72 remain, then one group of
// up to 72: whole zmm and, for a rest of at most 8, a ymm.
void pv(const uint16_t* p, int64_t lp, int64_t qn, const uint32_t* vp, const Dims& d, int64_t hd, const float* inv,
        float* out, size_t ld) {
  for (int64_t c0 = 0; c0 < hd;) {
    const int64_t rem = hd - c0;
    const uint32_t* v = vp + c0;
    float* o = out + c0;
    if (rem > 72) {
      pv_rows<4, false>(p, lp, qn, v, d.hv, d.n2, inv, o, ld, 0xFFFF);
      c0 += 64;
      continue;
    }
    int nz = static_cast<int>(rem / 16);
    const int64_t tail = rem % 16;
    const bool half = tail > 0 && tail <= 8;
    if (tail > 8) ++nz;
    const __mmask16 last = tail == 0 ? __mmask16(0xFFFF) : mask16(tail);
    switch (nz * 2 + (half ? 1 : 0)) {
      case 1: pv_rows<0, true>(p, lp, qn, v, d.hv, d.n2, inv, o, ld, last); break;
      case 2: pv_rows<1, false>(p, lp, qn, v, d.hv, d.n2, inv, o, ld, last); break;
      case 3: pv_rows<1, true>(p, lp, qn, v, d.hv, d.n2, inv, o, ld, last); break;
      case 4: pv_rows<2, false>(p, lp, qn, v, d.hv, d.n2, inv, o, ld, last); break;
      case 5: pv_rows<2, true>(p, lp, qn, v, d.hv, d.n2, inv, o, ld, last); break;
      case 6: pv_rows<3, false>(p, lp, qn, v, d.hv, d.n2, inv, o, ld, last); break;
      case 7: pv_rows<3, true>(p, lp, qn, v, d.hv, d.n2, inv, o, ld, last); break;
      case 8: pv_rows<4, false>(p, lp, qn, v, d.hv, d.n2, inv, o, ld, last); break;
      default: pv_rows<4, true>(p, lp, qn, v, d.hv, d.n2, inv, o, ld, last); break;
    }
    break;
  }
}

void attention(const float* q, const float* k, const float* v, size_t ld, int64_t n, int64_t hd, float scale,
               float* out, float* work) {
  const Dims d = dims(n, hd);
  char* base = reinterpret_cast<char*>((reinterpret_cast<uintptr_t>(work) + 63) / 64 * 64);
  auto at = [base](size_t off) { return static_cast<void*>(base + off); };
  uint8_t* qu = static_cast<uint8_t*>(at(d.qu));
  float* qs = static_cast<float*>(at(d.qs));
  int32_t* qz = static_cast<int32_t*>(at(d.qz));
  uint32_t* k8 = static_cast<uint32_t*>(at(d.k8));
  float* ks = static_cast<float*>(at(d.ks));
  int32_t* ksum = static_cast<int32_t*>(at(d.ksum));
  uint32_t* vp = static_cast<uint32_t*>(at(d.vp));
  float* sc = static_cast<float*>(at(d.sc));
  uint16_t* p = static_cast<uint16_t*>(at(d.p));
  float* inv = static_cast<float*>(at(d.inv));
  quantize_q(q, ld, n, hd, d.kq, qu, qs, qz);
  quantize_k(k, ld, n, hd, d, scale * kLog2e, k8, ks, ksum, static_cast<float*>(at(d.kmean)),
             static_cast<int8_t*>(at(d.krow)));
  pack_v(v, ld, n, hd, d, vp);
  for (int64_t q0 = 0; q0 < n; q0 += kQBlock) {
    const int64_t qn = n - q0 < kQBlock ? n - q0 : kQBlock;
    scores(qu + q0 * d.kq, qs + q0, qz + q0, qn, k8, ks, ksum, d, sc);
    for (int64_t t = 0; t < qn; ++t) inv[t] = softmax_row(sc + t * d.np, n, p + t * d.lp, d.lp);
    pv(p, d.lp, qn, vp, d, hd, inv, out + q0 * ld, ld);
  }
}

}  // namespace

void fill_vision_attention(KernelTable& t) {
  t.vision.i8_attention = attention;
  t.vision.i8_attention_work = work_floats;
}

}  // namespace bluelm::kernels::avx512_bf16
