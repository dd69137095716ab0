// The int8 vision encoder's attention on AVX-512 VNNI, one (image, head) at a
// time (VisionKernels::i8_attention). Scores: each query row to u8 with a zero
// point and K, less its mean over the keys (which moves all scores of a query
// by the same amount), per key to s8, as the int8 matmuls quantise
// (i8_format.h); exact int32 sums in tiles of 4 queries x 96 keys (started at
// -zp * ksum, so the tile's epilogue is a convert and one multiply), scaled by
// the key's scale and scale * log2 e (the tiles keep each query's max while
// the scores are in registers); the query's scale comes in the softmax, one
// fma with the max. Weights: 255 * 2^(s - max) in f32, rounded to u8 (the
// largest is 255). P.V in int8 too: V less its mean over
// the keys (the weights sum to 1, so the mean comes back whole) to s8 per
// column, exact int32 sums with vpdpbusd (4 keys per product) in tiles of 5
// queries x up to 72 columns (4 zmm and one ymm: Zen 4 runs a ymm op in half
// a zmm's time), normalised by the exact sum of the u8 weights. For so400m's
// 729 x 72 heads: 0.54 ms, against 0.76 ms with bf16 weights and V (P.V 0.18
// against 0.34 ms) and 1.9 ms for the F32 kernel (Zen 4, one core, CPU time).
// Nothing here needs AVX512_BF16 any more; the kernel stays in this table, the
// one the int8 encoder's tests single out.
#include <cmath>
#include <cstdint>
#include <cstring>

#include "kernels/avx512/zmm.h"
#include "kernels/avx512_bf16/avx512_bf16.h"

namespace bluelm::kernels::avx512_bf16 {
namespace {

constexpr int64_t kQBlock = 64;  // queries whose weights are live at once (P.V's block)
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
  int64_t n4;  // key quads (P.V's steps)
  int64_t lp;  // a row of u8 weights (>= 4 * n4, a multiple of 64)
  int64_t hv;  // hd rounded up to 8: a row of packed V, in 32-bit quads
  size_t qu, qs, qz, k8, ks, ksum, kmean, krow, vp, vmean, vscale, vinv, sc, p, inv, mrow, bytes;  // offsets
};

Dims dims(int64_t n, int64_t hd) {
  Dims d{};
  d.kq = up(hd, 4);
  d.np = up(n, 16);
  d.n4 = (n + 3) / 4;
  d.lp = up(4 * d.n4, 64);
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
  d.vp = take(sizeof(uint32_t) * d.n4 * d.hv);
  d.vmean = take(sizeof(float) * up(d.hv, 16));
  d.vscale = take(sizeof(float) * up(d.hv, 16));
  d.vinv = take(sizeof(float) * up(d.hv, 16));
  d.sc = take(sizeof(float) * kSQ * d.np);
  d.p = take(kQBlock * d.lp);
  d.inv = take(sizeof(float) * kQBlock);
  d.mrow = take(sizeof(float) * kQBlock);
  d.bytes = at;
  return d;
}

size_t work_floats(int64_t n, int64_t hd) { return (dims(n, hd).bytes + 64) / sizeof(float); }

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
inline __m256i dpbusd(__m256i acc, __m256i u8, __m256i s8) {
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

// The f32 sums over j < n, in order, of x[j][16 v + l] for the NV vectors v0..
// v0 + NV (lanes past hd 0), times inv_n, into mean: accumulators in registers
// (a sum through memory waits on the store of the last row for each row).
template <int NV>
void column_mean_tile(const float* x, size_t ld, int64_t n, int64_t hd, int64_t v0, float inv_n, float* mean) {
  __m512 acc[NV];
#pragma GCC unroll 8
  for (int c = 0; c < NV; ++c) acc[c] = _mm512_setzero_ps();
  for (int64_t j = 0; j < n; ++j) {
    if (v0 == 0 && j + kAhead < n) prefetch_slice(x + (j + kAhead) * ld, hd);
#pragma GCC unroll 8
    for (int c = 0; c < NV; ++c) {
      const int64_t d = 16 * (v0 + c);
      acc[c] = _mm512_add_ps(acc[c], _mm512_maskz_loadu_ps(mask16(hd - d), x + j * ld + d));
    }
  }
#pragma GCC unroll 8
  for (int c = 0; c < NV; ++c) _mm512_storeu_ps(mean + 16 * (v0 + c), _mm512_mul_ps(acc[c], _mm512_set1_ps(inv_n)));
}

// mean[d] = the f32 sum of x[j][d] over j < n in order, times 1 / n, for d <
// 16 ceil(hd / 16) (0 past hd); rows ld floats apart, prefetched ahead.
void column_mean(const float* x, size_t ld, int64_t n, int64_t hd, float* mean) {
  const int64_t nv = (hd + 15) / 16;
  const float inv_n = 1.0f / static_cast<float>(n);
  for (int64_t v0 = 0; v0 < nv; v0 += 6) {
    switch (nv - v0 < 6 ? nv - v0 : 6) {
      case 1: column_mean_tile<1>(x, ld, n, hd, v0, inv_n, mean); break;
      case 2: column_mean_tile<2>(x, ld, n, hd, v0, inv_n, mean); break;
      case 3: column_mean_tile<3>(x, ld, n, hd, v0, inv_n, mean); break;
      case 4: column_mean_tile<4>(x, ld, n, hd, v0, inv_n, mean); break;
      case 5: column_mean_tile<5>(x, ld, n, hd, v0, inv_n, mean); break;
      default: column_mean_tile<6>(x, ld, n, hd, v0, inv_n, mean); break;
    }
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
  column_mean(k, ld, n, hd, kmean);
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

// V less its mean over the keys (vmean[c]: the f32 sum over j in order, times
// 1 / n), each column to s8 with scale max_j |v - vmean| / 127 (vscale[c];
// round to nearest even), packed vp[s][c] = 4 bytes (keys 4s..4s+3 of column
// c): each step of P.V's sum holds 16 columns of four keys in a zmm. Columns
// hd..hv and keys n..4 n4 are zero.
void pack_v(const float* v, size_t ld, int64_t n, int64_t hd, const Dims& d, uint32_t* vp, float* vmean,
            float* vscale, float* vinv) {
  const int64_t nv = (hd + 15) / 16;  // = (hv + 15) / 16
  column_mean(v, ld, n, hd, vmean);
  for (int64_t c = 0; c < nv; ++c) {  // the rows are in L2 from the pass above
    const __mmask16 m = mask16(hd - 16 * c);
    const __m512 mean = _mm512_loadu_ps(vmean + 16 * c);
    __m512 mx = _mm512_setzero_ps();
    for (int64_t j = 0; j < n; ++j)
      mx = _mm512_max_ps(mx, _mm512_abs_ps(_mm512_maskz_sub_ps(m, _mm512_maskz_loadu_ps(m, v + j * ld + 16 * c), mean)));
    _mm512_storeu_ps(vscale + 16 * c, _mm512_div_ps(mx, _mm512_set1_ps(127.0f)));
    const __mmask16 pos = _mm512_cmp_ps_mask(mx, _mm512_setzero_ps(), _CMP_GT_OQ);
    _mm512_storeu_ps(vinv + 16 * c, _mm512_maskz_div_ps(pos, _mm512_set1_ps(127.0f), mx));
  }
  const __m512 zero = _mm512_setzero_ps();
  for (int64_t s = 0; s < d.n4; ++s) {
    for (int64_t c = 0; c < d.hv; c += 16) {
      const __mmask16 m = mask16(hd - c), ms = mask16(d.hv - c);
      const __m512 mean = _mm512_loadu_ps(vmean + c), inv = _mm512_loadu_ps(vinv + c);
      __m128i b[4];
      for (int i = 0; i < 4; ++i) {
        const int64_t j = 4 * s + i;
        const __m512 y = j < n ? _mm512_maskz_sub_ps(m, _mm512_maskz_loadu_ps(m, v + j * ld + c), mean) : zero;
        b[i] = _mm512_cvtsepi32_epi8(_mm512_cvtps_epi32(_mm512_mul_ps(y, inv)));
      }
      const __m128i k01l = _mm_unpacklo_epi8(b[0], b[1]), k01h = _mm_unpackhi_epi8(b[0], b[1]);
      const __m128i k23l = _mm_unpacklo_epi8(b[2], b[3]), k23h = _mm_unpackhi_epi8(b[2], b[3]);
      const __m512i q = _mm512_inserti64x4(
          _mm512_castsi256_si512(_mm256_setr_m128i(_mm_unpacklo_epi16(k01l, k23l), _mm_unpackhi_epi16(k01l, k23l))),
          _mm256_setr_m128i(_mm_unpacklo_epi16(k01h, k23h), _mm_unpackhi_epi16(k01h, k23h)), 1);
      _mm512_mask_storeu_epi32(vp + s * d.hv + c, ms, q);
    }
  }
}

// A head's packed keys: k8[s][j], ks[j], ksum[j] for j < np, of which n are keys.
struct Keys {
  const uint32_t* k8;
  const float* ks;
  const int32_t* ksum;
  int64_t np, n;
};

// The lanes of a vector of 16 keys of which `left` (any count) are keys.
inline __mmask16 key_mask(int64_t left) { return left <= 0 ? __mmask16(0) : mask16(left); }

// sc[t][16c + l] = float(sum_d u[t][d] k8[j][d] - zp[t] ksum[j]) * ks[j] for
// T queries and NV zmm of keys j = j0 + 16c + l (the query's scale qs[t] is
// applied in the softmax: scaling by qs[t] > 0 keeps the order of a row); mx[t]
// takes the max over those that are keys (the softmax's max, while in
// registers). The accumulators start at -zp[t] ksum[j] (exact in int32), so
// the epilogue is a convert and a multiply.
template <int T, int NV>
inline void score_tile(const uint8_t* qu, int64_t kq, const int32_t* qz, const Keys& K, int64_t j0, float* sc,
                       __m512 (&mx)[T]) {
  __m512i acc[T][NV];
  const int64_t steps = kq / 4, np = K.np;
  const uint32_t* k8 = K.k8 + j0;
#pragma GCC unroll 8
  for (int c = 0; c < NV; ++c) {
    const __m512i kw = _mm512_loadu_si512(K.ksum + j0 + 16 * c);
#pragma GCC unroll 8
    for (int t = 0; t < T; ++t) acc[t][c] = _mm512_mullo_epi32(_mm512_set1_epi32(-qz[t]), kw);
  }
  for (int64_t s = 0; s < steps; ++s) {
    __m512i kv[NV];
#pragma GCC unroll 8
    for (int c = 0; c < NV; ++c) kv[c] = _mm512_loadu_si512(k8 + s * np + 16 * c);
#pragma GCC unroll 8
    for (int t = 0; t < T; ++t) {
      const __m512i b = bcast4(qu + t * kq + 4 * s);
#pragma GCC unroll 8
      for (int c = 0; c < NV; ++c) acc[t][c] = dpbusd(acc[t][c], b, kv[c]);
    }
  }
#pragma GCC unroll 8
  for (int c = 0; c < NV; ++c) {
    const int64_t j = j0 + 16 * c;
    const __m512 kscale = _mm512_loadu_ps(K.ks + j);
    const __mmask16 keys = key_mask(K.n - j);
#pragma GCC unroll 8
    for (int t = 0; t < T; ++t) {
      const __m512 f = _mm512_mul_ps(_mm512_cvtepi32_ps(acc[t][c]), kscale);
      _mm512_storeu_ps(sc + t * np + j, f);
      mx[t] = _mm512_mask_max_ps(mx[t], keys, mx[t], f);
    }
  }
}

// T rows of scores; m[t] = each row's max.
template <int T>
void score_rows(const uint8_t* qu, int64_t kq, const int32_t* qz, const Keys& K, float* sc, float* m) {
  __m512 mx[T];
  for (int t = 0; t < T; ++t) mx[t] = _mm512_set1_ps(-INFINITY);
  int64_t j = 0;
  for (; j + 16 * kSV <= K.np; j += 16 * kSV) score_tile<T, kSV>(qu, kq, qz, K, j, sc, mx);
  static_assert(kSV == 6, "the remainder cases below");
  switch ((K.np - j) / 16) {
    case 5: score_tile<T, 5>(qu, kq, qz, K, j, sc, mx); break;
    case 4: score_tile<T, 4>(qu, kq, qz, K, j, sc, mx); break;
    case 3: score_tile<T, 3>(qu, kq, qz, K, j, sc, mx); break;
    case 2: score_tile<T, 2>(qu, kq, qz, K, j, sc, mx); break;
    case 1: score_tile<T, 1>(qu, kq, qz, K, j, sc, mx); break;
    default: break;
  }
  for (int t = 0; t < T; ++t) m[t] = _mm512_reduce_max_ps(mx[t]);
}

// 255 * 2^x for finite x <= 0: 2^round(x) (scalef: 0 or a subnormal far below
// 2^-126) times 255 p(f), p a degree-4 fit of 2^f on |f| <= 1/2 with p(0) = 1
// (relative error below 3e-6, so the largest weight is 255 exactly).
inline __m512 exp2_255(__m512 x) {
  const __m512 n = _mm512_roundscale_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m512 f = _mm512_sub_ps(x, n);
  __m512 p = _mm512_set1_ps(255.0f * 0.009582852944731712f);
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(255.0f * 0.055906426161527634f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(255.0f * 0.24024099111557007f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(255.0f * 0.6931241750717163f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(255.0f));
  return _mm512_scalef_ps(p, n);
}

// One row of scores f (log2 units once times qs), their max and the query's
// scale qs -> p[0, lp) = round(255 * 2^x) in u8, x = fma(f_j, qs, -(max * qs))
// (one rounding; <= 0 but for the max's own rounding error, where 255 * 2^x
// still rounds to 255), for j < n, 0 after; returns 1 / (the sum of those weights).
float softmax_row(const float* s, float max, float qs, int64_t n, uint8_t* p, int64_t lp) {
  const __m512 m = _mm512_set1_ps(-(max * qs)), q = _mm512_set1_ps(qs);
  __m512i sum = _mm512_setzero_si512();
  int64_t j = 0;
  for (; j + 16 <= n; j += 16) {
    const __m512i u = _mm512_cvtps_epi32(exp2_255(_mm512_fmadd_ps(_mm512_loadu_ps(s + j), q, m)));
    sum = _mm512_add_epi32(sum, u);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(p + j), _mm512_cvtusepi32_epi8(u));
  }
  for (; j < lp; j += 16) {
    const __mmask16 k = j < n ? mask16(n - j) : 0;
    const __m512i u = _mm512_maskz_cvtps_epi32(k, exp2_255(_mm512_fmadd_ps(_mm512_maskz_loadu_ps(k, s + j), q, m)));
    sum = _mm512_add_epi32(sum, u);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(p + j), _mm512_cvtusepi32_epi8(u));
  }
  return 1.0f / static_cast<float>(_mm512_reduce_add_epi32(sum));
}

// One block of qn queries: their u8 weights p (rows of lp) and inv (1 / each
// row's sum). Each group of kSQ score rows (sc: kSQ rows of np) goes through
// the softmax while it is in L1.
void weights(const uint8_t* qu, const int32_t* qz, const float* qs, int64_t qn, const Keys& K, const Dims& d,
             float* sc, float* m, uint8_t* p, float* inv) {
  for (int64_t t0 = 0; t0 < qn;) {
    const int64_t rows = qn - t0 >= kSQ ? kSQ : 1;
    if (rows == kSQ) score_rows<kSQ>(qu + t0 * d.kq, d.kq, qz + t0, K, sc, m + t0);
    else score_rows<1>(qu + t0 * d.kq, d.kq, qz + t0, K, sc, m + t0);
    for (int64_t r = 0; r < rows; ++r, ++t0)
      inv[t0] = softmax_row(sc + r * d.np, m[t0], qs[t0], K.n, p + t0 * d.lp, d.lp);
  }
}

// out[t][c] = vmean[c] + float(sum_j p[t][j] v8[j][c]) * (vscale[c] * inv[t])
// for T queries and the columns of NZ zmm (16 each) and, with HALF, one ymm
// (8) after them; the last vector's store is masked by `last`.
template <int T, int NZ, bool HALF>
inline void pv_tile(const uint8_t* p, int64_t lp, const uint32_t* vp, int64_t hv, int64_t n4, const float* vmean,
                    const float* vscale, const float* inv, float* out, size_t ld, __mmask16 last) {
  __m512i acc[T][NZ > 0 ? NZ : 1];
  __m256i acch[T];
#pragma GCC unroll 8
  for (int t = 0; t < T; ++t) {
#pragma GCC unroll 8
    for (int c = 0; c < NZ; ++c) acc[t][c] = _mm512_setzero_si512();
    acch[t] = _mm256_setzero_si256();
  }
  for (int64_t s = 0; s < n4; ++s) {
    const uint32_t* vs = vp + s * hv;
    __m512i vv[NZ > 0 ? NZ : 1];
#pragma GCC unroll 8
    for (int c = 0; c < NZ; ++c) vv[c] = _mm512_loadu_si512(vs + 16 * c);
    __m256i vh{};
    if constexpr (HALF) vh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(vs + 16 * NZ));
#pragma GCC unroll 8
    for (int t = 0; t < T; ++t) {
      const __m512i b = bcast4(p + t * lp + 4 * s);
#pragma GCC unroll 8
      for (int c = 0; c < NZ; ++c) acc[t][c] = dpbusd(acc[t][c], b, vv[c]);
      if constexpr (HALF) acch[t] = dpbusd(acch[t], _mm512_castsi512_si256(b), vh);
    }
  }
#pragma GCC unroll 8
  for (int t = 0; t < T; ++t) {
    const __m512 iv = _mm512_set1_ps(inv[t]);
    float* o = out + t * ld;
#pragma GCC unroll 8
    for (int c = 0; c < NZ; ++c) {
      const __m512 r = _mm512_add_ps(
          _mm512_mul_ps(_mm512_cvtepi32_ps(acc[t][c]), _mm512_mul_ps(_mm512_loadu_ps(vscale + 16 * c), iv)),
          _mm512_loadu_ps(vmean + 16 * c));
      if (c + 1 < NZ || HALF) _mm512_storeu_ps(o + 16 * c, r);
      else _mm512_mask_storeu_ps(o + 16 * c, last, r);
    }
    if constexpr (HALF) {
      const __m256 sh = _mm256_mul_ps(_mm256_loadu_ps(vscale + 16 * NZ), _mm512_castps512_ps256(iv));
      const __m256 r = _mm256_add_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(acch[t]), sh), _mm256_loadu_ps(vmean + 16 * NZ));
      _mm256_mask_storeu_ps(o + 16 * NZ, __mmask8(last), r);
    }
  }
}

// The columns from vp, vmean and vscale as given (offset to a column group).
struct PvCols {
  const uint32_t* vp;
  const float* vmean;
  const float* vscale;
};

template <int NZ, bool HALF>
void pv_rows(const uint8_t* p, int64_t lp, int64_t qn, const PvCols& v, int64_t hv, int64_t n4, const float* inv,
             float* out, size_t ld, __mmask16 last) {
  int64_t t = 0;
  for (; t + kPQ <= qn; t += kPQ)
    pv_tile<kPQ, NZ, HALF>(p + t * lp, lp, v.vp, hv, n4, v.vmean, v.vscale, inv + t, out + t * ld, ld, last);
  for (; t + 2 <= qn; t += 2)
    pv_tile<2, NZ, HALF>(p + t * lp, lp, v.vp, hv, n4, v.vmean, v.vscale, inv + t, out + t * ld, ld, last);
  for (; t < qn; ++t)
    pv_tile<1, NZ, HALF>(p + t * lp, lp, v.vp, hv, n4, v.vmean, v.vscale, inv + t, out + t * ld, ld, last);
}

// Columns in groups of 64 (4 zmm) while more than 72 remain, then one group of
// up to 72: whole zmm and, for a rest of at most 8, a ymm.
void pv(const uint8_t* p, int64_t lp, int64_t qn, const PvCols& cols, const Dims& d, int64_t hd, const float* inv,
        float* out, size_t ld) {
  for (int64_t c0 = 0; c0 < hd;) {
    const int64_t rem = hd - c0;
    const PvCols v{cols.vp + c0, cols.vmean + c0, cols.vscale + c0};
    float* o = out + c0;
    if (rem > 72) {
      pv_rows<4, false>(p, lp, qn, v, d.hv, d.n4, inv, o, ld, 0xFFFF);
      c0 += 64;
      continue;
    }
    int nz = static_cast<int>(rem / 16);
    const int64_t tail = rem % 16;
    const bool half = tail > 0 && tail <= 8;
    if (tail > 8) ++nz;
    const __mmask16 last = tail == 0 ? __mmask16(0xFFFF) : mask16(tail);
    switch (nz * 2 + (half ? 1 : 0)) {
      case 1: pv_rows<0, true>(p, lp, qn, v, d.hv, d.n4, inv, o, ld, last); break;
      case 2: pv_rows<1, false>(p, lp, qn, v, d.hv, d.n4, inv, o, ld, last); break;
      case 3: pv_rows<1, true>(p, lp, qn, v, d.hv, d.n4, inv, o, ld, last); break;
      case 4: pv_rows<2, false>(p, lp, qn, v, d.hv, d.n4, inv, o, ld, last); break;
      case 5: pv_rows<2, true>(p, lp, qn, v, d.hv, d.n4, inv, o, ld, last); break;
      case 6: pv_rows<3, false>(p, lp, qn, v, d.hv, d.n4, inv, o, ld, last); break;
      case 7: pv_rows<3, true>(p, lp, qn, v, d.hv, d.n4, inv, o, ld, last); break;
      case 8: pv_rows<4, false>(p, lp, qn, v, d.hv, d.n4, inv, o, ld, last); break;
      default: pv_rows<4, true>(p, lp, qn, v, d.hv, d.n4, inv, o, ld, last); break;
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
  const Keys keys{k8, ks, ksum, d.np, n};
  const PvCols cols{static_cast<uint32_t*>(at(d.vp)), static_cast<float*>(at(d.vmean)),
                    static_cast<float*>(at(d.vscale))};
  float* sc = static_cast<float*>(at(d.sc));
  uint8_t* p = static_cast<uint8_t*>(at(d.p));
  float* inv = static_cast<float*>(at(d.inv));
  float* mrow = static_cast<float*>(at(d.mrow));
  quantize_q(q, ld, n, hd, d.kq, qu, qs, qz);
  quantize_k(k, ld, n, hd, d, scale * kLog2e, k8, ks, ksum, static_cast<float*>(at(d.kmean)),
             static_cast<int8_t*>(at(d.krow)));
  pack_v(v, ld, n, hd, d, static_cast<uint32_t*>(at(d.vp)), static_cast<float*>(at(d.vmean)),
         static_cast<float*>(at(d.vscale)), static_cast<float*>(at(d.vinv)));
  for (int64_t q0 = 0; q0 < n; q0 += kQBlock) {
    const int64_t qn = n - q0 < kQBlock ? n - q0 : kQBlock;
    weights(qu + q0 * d.kq, qz + q0, qs + q0, qn, keys, d, sc, mrow, p, inv);
    pv(p, d.lp, qn, cols, d, hd, inv, out + q0 * ld, ld);
  }
}

}  // namespace

void fill_vision_attention(KernelTable& t) {
  t.vision.i8_attention = attention;
  t.vision.i8_attention_work = work_floats;
}

}  // namespace bluelm::kernels::avx512_bf16
