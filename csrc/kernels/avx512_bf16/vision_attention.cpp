// AVX512_BF16 attention of the int8 vision encoder, one (image, head) at a
// time (VisionKernels::i8_attention): Q (times scale * log2 e), K and V rounded
// to bf16 once per head and packed so that each 32-bit lane of a vdpbf16ps
// holds the two values of one step of its sum; scores in f32 for 64 queries at
// a time (4 queries x 96 keys per tile), 2^(s - max) in f32, the weights
// rounded to bf16 and normalised by the sum of the rounded weights, P.V with 5
// queries x up to 72 columns per tile (4 zmm and one ymm: Zen 4 runs a ymm op
// in half a zmm's time). vdpbf16ps does 32 multiply-adds per instruction where
// an F32 FMA does 16.
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
constexpr float kLog2e = 1.44269504088896341f;

int64_t up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

// The packed operands of one head: byte sizes and offsets in the work buffer
// (each region 64-byte aligned).
struct Dims {
  int64_t hp;  // hd rounded up to 2: a Q row in bf16, pairs of dimensions
  int64_t np;  // keys rounded up to 16: a score row, a row of packed K
  int64_t n2;  // key pairs
  int64_t lp;  // a row of weights in bf16 (>= 2 * n2, a multiple of 32)
  int64_t hv;  // hd rounded up to 8: a row of packed V, in 32-bit pairs
  size_t q_off, k_off, v_off, s_off, p_off, inv_off, row_off, bytes;
};

Dims dims(int64_t n, int64_t hd) {
  Dims d{};
  d.hp = up(hd, 2);
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
  d.q_off = take(sizeof(uint16_t) * n * d.hp);
  d.k_off = take(sizeof(uint32_t) * (d.hp / 2) * d.np);
  d.v_off = take(sizeof(uint32_t) * d.n2 * d.hv);
  d.s_off = take(sizeof(float) * kQBlock * d.np);
  d.p_off = take(sizeof(uint16_t) * kQBlock * d.lp);
  d.inv_off = take(sizeof(float) * kQBlock);
  d.row_off = take(sizeof(uint16_t) * d.hp);
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

constexpr int64_t kAhead = 8;  // rows prefetched ahead while packing

// The lines of p[0, count) into L1: a head's slice of rows `ld` apart is a
// stride the hardware prefetcher does not follow.
inline void prefetch_slice(const float* p, int64_t count) {
  const char* b = reinterpret_cast<const char*>(p);
  for (int64_t i = 0; i < count * 4; i += 64) _mm_prefetch(b + i, _MM_HINT_T0);
  _mm_prefetch(b + count * 4 - 1, _MM_HINT_T0);
}

// bf16 bits of 16 floats, rounded to nearest even.
inline __m256i to_bf16(__m512 x) { return (__m256i)_mm512_cvtneps_pbh(x); }

// qb[t][d] = bf16(c * q[t][d]), rows of hp (a zero pad when hd is odd).
void pack_q(const float* q, size_t ld, int64_t n, int64_t hd, int64_t hp, float c, uint16_t* qb) {
  const __m512 cv = _mm512_set1_ps(c);
  for (int64_t t = 0; t < n; ++t) {
    if (t + kAhead < n) prefetch_slice(q + (t + kAhead) * ld, hd);
    uint16_t* row = qb + t * hp;
    for (int64_t d = 0; d < hp; d += 16) {
      const __mmask16 m = mask16(hd - d), ms = mask16(hp - d);
      const __m512 x = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, q + t * ld + d), cv);
      _mm256_mask_storeu_epi16(row + d, ms, to_bf16(x));
    }
  }
}

// kp[s][j] (32 bits) = (bf16 k[j][2s], bf16 k[j][2s+1]): each step of the
// scores' sum holds 16 keys' pairs in a zmm; keys n..np are zero.
// `row` holds one key in bf16 on its way.
void pack_k(const float* k, size_t ld, int64_t n, int64_t hd, const Dims& d, uint32_t* kp, uint16_t* row) {
  const int64_t steps = d.hp / 2;
  for (int64_t j = 0; j < n; ++j) {
    if (j + kAhead < n) prefetch_slice(k + (j + kAhead) * ld, hd);
    pack_q(k + j * ld, ld, 1, hd, d.hp, 1.0f, row);
    for (int64_t s = 0; s < steps; ++s) std::memcpy(kp + s * d.np + j, row + 2 * s, sizeof(uint32_t));
  }
  for (int64_t s = 0; s < steps; ++s)
    for (int64_t j = n; j < d.np; ++j) kp[s * d.np + j] = 0;
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

// sc[t][16c + l] = sum over steps of the pairs of q_t and of the keys of kp
// (T queries, NV zmm of keys).
template <int T, int NV>
inline void score_tile(const uint16_t* qb, int64_t hp, const uint32_t* kp, int64_t np, float* sc) {
  __m512 acc[T][NV];
#pragma GCC unroll 8
  for (int t = 0; t < T; ++t)
#pragma GCC unroll 8
    for (int c = 0; c < NV; ++c) acc[t][c] = _mm512_setzero_ps();
  const int64_t steps = hp / 2;
  for (int64_t s = 0; s < steps; ++s) {
    __m512bh kv[NV];
#pragma GCC unroll 8
    for (int c = 0; c < NV; ++c) kv[c] = as_bh(_mm512_loadu_si512(kp + s * np + 16 * c));
#pragma GCC unroll 8
    for (int t = 0; t < T; ++t) {
      const __m512bh b = as_bh(bcast_pair(qb + t * hp + 2 * s));
#pragma GCC unroll 8
      for (int c = 0; c < NV; ++c) acc[t][c] = _mm512_dpbf16_ps(acc[t][c], b, kv[c]);
    }
  }
#pragma GCC unroll 8
  for (int t = 0; t < T; ++t)
#pragma GCC unroll 8
    for (int c = 0; c < NV; ++c) _mm512_storeu_ps(sc + t * np + 16 * c, acc[t][c]);
}

template <int T>
void score_rows(const uint16_t* qb, int64_t hp, const uint32_t* kp, int64_t np, float* sc) {
  int64_t j = 0;
  for (; j + 16 * kSV <= np; j += 16 * kSV) score_tile<T, kSV>(qb, hp, kp + j, np, sc + j);
  static_assert(kSV == 6, "the remainder cases below");
  switch ((np - j) / 16) {
    case 5: score_tile<T, 5>(qb, hp, kp + j, np, sc + j); break;
    case 4: score_tile<T, 4>(qb, hp, kp + j, np, sc + j); break;
    case 3: score_tile<T, 3>(qb, hp, kp + j, np, sc + j); break;
    case 2: score_tile<T, 2>(qb, hp, kp + j, np, sc + j); break;
    case 1: score_tile<T, 1>(qb, hp, kp + j, np, sc + j); break;
    default: break;
  }
}

void scores(const uint16_t* qb, int64_t qn, const uint32_t* kp, const Dims& d, float* sc) {
  int64_t t = 0;
  for (; t + kSQ <= qn; t += kSQ) score_rows<kSQ>(qb + t * d.hp, d.hp, kp, d.np, sc + t * d.np);
  for (; t < qn; ++t) score_rows<1>(qb + t * d.hp, d.hp, kp, d.np, sc + t * d.np);
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
  uint16_t* qb = reinterpret_cast<uint16_t*>(base + d.q_off);
  uint32_t* kp = reinterpret_cast<uint32_t*>(base + d.k_off);
  uint32_t* vp = reinterpret_cast<uint32_t*>(base + d.v_off);
  float* sc = reinterpret_cast<float*>(base + d.s_off);
  uint16_t* p = reinterpret_cast<uint16_t*>(base + d.p_off);
  float* inv = reinterpret_cast<float*>(base + d.inv_off);
  pack_q(q, ld, n, hd, d.hp, scale * kLog2e, qb);
  pack_k(k, ld, n, hd, d, kp, reinterpret_cast<uint16_t*>(base + d.row_off));
  pack_v(v, ld, n, hd, d, vp);
  for (int64_t q0 = 0; q0 < n; q0 += kQBlock) {
    const int64_t qn = n - q0 < kQBlock ? n - q0 : kQBlock;
    scores(qb + q0 * d.hp, qn, kp, d, sc);
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
