// AVX-512 VNNI kernels (compiled with -mavx2 -mfma -mf16c -mavx512f/bw/vl/vnni).
// The int8 gemms use vpdpbusd (u8 x s8 -> int32 in one instruction). Q4_0 runs
// on 16-row interleaved groups with one row per lane (prefill and decode); Q4_1
// and Q8_0 prefill on 512-bit tiles with two tokens per register, Q4_1 decode
// with two rows per register from 4-row packed groups; the 256-bit tiles remain
// for decode of lone rows. F16 attention of prompt chunks is vectorised across keys; float
// gemms, conversions and the rest come from the AVX2 table (a CPU with these
// features always runs AVX2). Every output keeps the scalar reference's per-lane
// sequence, so results are bit-identical to it. Everything sits in an anonymous
// namespace so no inline function compiled with these flags can leak to other code.
// GCC 12's AVX-512 headers self-initialise "undefined" vectors, which
// -Wuninitialized flags inside the header (GCC bug 105593): silence it there only.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#ifndef __clang__
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"  // a GCC-only group
#endif
#include <immintrin.h>
#pragma GCC diagnostic pop
#include <math.h>
#include <cmath>
#include <string.h>

#include <initializer_list>
#include <vector>

#include "kernels/ggml_exp_avx2.h"
#include "kernels/kernels.h"

namespace bluelm::kernels {

const KernelTable* avx2_table();

namespace {

// 16 bytes of packed nibbles -> 32 bytes 0..15 in element order: low nibbles
// are elements 0..15 (low lane), high nibbles elements 16..31 (high lane).
inline __m256i nibbles(const uint8_t* qs) {
  const __m256i y = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(qs)));
  return _mm256_and_si256(_mm256_srlv_epi64(y, _mm256_setr_epi64x(0, 0, 4, 4)), _mm256_set1_epi8(0x0f));
}

// The two fp16 at the head of a block (d, and m or s) as floats in lanes 0 and 1.
// Reads 8 bytes, always inside the block; one vcvtph2ps with a memory operand.
inline __m128 head2(const void* block) {
  return _mm_cvtph_ps(_mm_loadl_epi64(static_cast<const __m128i*>(block)));
}

// acc[j] += sum of u8 * s8 over bytes 4j..4j+3, wrapping (never near the limits here).
inline __m256i dpbusd(__m256i acc, __m256i u, __m256i s) { return _mm256_dpbusd_epi32(acc, u, s); }

inline __m256 scale_add(__m256 acc, __m256i s32, __m256 scale) {
  return _mm256_fmadd_ps(_mm256_cvtepi32_ps(s32), scale, acc);
}

// Kind 2: Q8_0 x Q8_0 (the kind numbers of gemm<>; Q4_0 has its own kernels
// below). Signed weights become unsigned by w ^ 0x80 = w + 128; 128 * sum(q) is
// subtracted in the integer start value, per token, shared by rows.
template <int Kind, int R, int T>
void qtile(const char* w, size_t ws, const char* x, size_t xs, float* y, size_t ldy, int64_t K) {
  const int64_t nb = K / QK;
  __m256 acc[R][T];
  for (int i = 0; i < R; ++i)
    for (int t = 0; t < T; ++t) acc[i][t] = _mm256_setzero_ps();
  static_assert(Kind == 2, "Q8_0 only");
  const __m256i offset = _mm256_set1_epi8(char(0x80));
  for (int64_t b = 0; b < nb; ++b) {
    __m256i q[T], start[T];
    float dx[T];
#pragma GCC unroll 4
    for (int t = 0; t < T; ++t) {
      const BlockQ8_0* xb = reinterpret_cast<const BlockQ8_0*>(x + t * xs) + b;
      q[t] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xb->qs));
      dx[t] = _mm_cvtss_f32(head2(xb));
      start[t] = _mm256_sub_epi32(_mm256_setzero_si256(), dpbusd(_mm256_setzero_si256(), offset, q[t]));
    }
#pragma GCC unroll 8
    for (int i = 0; i < R; ++i) {
      const BlockQ8_0* wb = reinterpret_cast<const BlockQ8_0*>(w + i * ws) + b;
      const __m256i u = _mm256_xor_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(wb->qs)), offset);
      const float dw = _mm_cvtss_f32(head2(wb));
#pragma GCC unroll 4
      for (int t = 0; t < T; ++t)
        acc[i][t] = scale_add(acc[i][t], dpbusd(start[t], u, q[t]), _mm256_set1_ps(dw * dx[t]));
    }
  }
  for (int i = 0; i < R; ++i)
    for (int t = 0; t < T; ++t) y[t * ldy + i] = hsum(acc[i][t]);
}

// Q4_1 x Q8_1: unsigned nibbles times signed activations, plus m_w * s_x.
template <int R, int T>
void q41tile(const char* w, size_t ws, const char* x, size_t xs, float* y, size_t ldy, int64_t K) {
  static_assert(T <= 2, "the [d, s] pairs of T tokens share one __m128");
  const int64_t nb = K / QK;
  __m256 acc[R][T];
  __m128 macc[R];  // lanes 1 and 3: sums of m_w * s_x for tokens 0 and 1
  for (int i = 0; i < R; ++i) {
    macc[i] = _mm_setzero_ps();
    for (int t = 0; t < T; ++t) acc[i][t] = _mm256_setzero_ps();
  }
  for (int64_t b = 0; b < nb; ++b) {
    __m256i q[T];
    __m128 xds;  // [d_x0, s_x0, d_x1, s_x1]
    const BlockQ8_1* x0 = reinterpret_cast<const BlockQ8_1*>(x) + b;
    q[0] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x0->qs));
    if (T == 1) {
      xds = head2(x0);
    } else {
      const BlockQ8_1* x1 = reinterpret_cast<const BlockQ8_1*>(x + xs) + b;
      q[T - 1] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x1->qs));
      uint32_t h0, h1;
      memcpy(&h0, x0, 4);
      memcpy(&h1, x1, 4);
      xds = _mm_cvtph_ps(_mm_cvtsi64_si128(int64_t(uint64_t(h1) << 32 | h0)));
    }
#pragma GCC unroll 8
    for (int i = 0; i < R; ++i) {
      const BlockQ4_1* wb = reinterpret_cast<const BlockQ4_1*>(w + i * ws) + b;
      const __m256i n = nibbles(wb->qs);
      __m128 wdm = head2(wb);  // [d_w, m_w, ...]
      if (T == 2) wdm = _mm_movelh_ps(wdm, wdm);
      const __m128 prod = _mm_mul_ps(wdm, xds);  // [d_w*d_x0, m_w*s_x0, d_w*d_x1, m_w*s_x1]
      macc[i] = _mm_add_ps(macc[i], prod);
      const __m256i z = _mm256_setzero_si256();
      acc[i][0] = scale_add(acc[i][0], dpbusd(z, n, q[0]), _mm256_broadcastss_ps(prod));
      if (T == 2)
        acc[i][T - 1] = scale_add(acc[i][T - 1], dpbusd(z, n, q[T - 1]),
                                  _mm256_broadcastss_ps(_mm_movehl_ps(prod, prod)));
    }
  }
  for (int i = 0; i < R; ++i) {
    alignas(16) float m[4];
    _mm_store_ps(m, macc[i]);
    for (int t = 0; t < T; ++t) y[t * ldy + i] = hsum(acc[i][t]) + m[1 + 2 * t];
  }
}

using TileFn = void (*)(const char*, size_t, const char*, size_t, float*, size_t, int64_t);

// ---- prefill: 512-bit tiles, two tokens per register -------------------------
// A zmm accumulator holds (row i, token 2p) in its low 256 bits and (row i,
// token 2p+1) in its high 256 bits: each half runs exactly the per-lane sequence
// of the 256-bit tiles above (same int32 lane sums, same dw*dx, same FMA per
// block), so results are bit-identical. A tile is R rows x 2*NP tokens.

constexpr int kPairs = 4;  // token pairs per prepared tile (8 tokens)

// One block of 8 tokens' activations, laid out once per token tile so every
// row reuses it: quants as token pairs, the int32 offset term, the scales.
struct PrepQ8 {
  __m512i q[kPairs];
  __m512i start[kPairs];  // -offset * (sum of each 4-element group): shared by all rows
  __m512 d[kPairs];       // [d_x(2p) x8 | d_x(2p+1) x8]
};
struct PrepQ81 {
  __m512i q[kPairs];
  __m512 ds;  // [d_x0, s_x0, d_x1, s_x1, ..., d_x7, s_x7]
};

inline __m512i dpbusd512(__m512i acc, __m512i u, __m512i s) { return _mm512_dpbusd_epi32(acc, u, s); }

inline __m512i pair256(__m256i lo, __m256i hi) {
  return _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
}
inline __m256 hi256(__m512 v) { return _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)); }

inline float h2f(uint16_t h) { return _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(h))); }

// Tokens x[0..nt) (nt <= 8; missing tokens read as zeros) -> nb prepared blocks.
template <int Kind>
void prep_q8(const char* x, size_t xs, int nt, int64_t nb, PrepQ8* out) {
  static_assert(Kind == 2, "Q8_0 only");
  const __m512i offset = _mm512_set1_epi8(char(0x80));
  for (int64_t b = 0; b < nb; ++b) {
    for (int p = 0; p < kPairs; ++p) {
      __m256i q[2] = {_mm256_setzero_si256(), _mm256_setzero_si256()};
      float d[2] = {0.0f, 0.0f};
      for (int h = 0; h < 2; ++h) {
        if (2 * p + h >= nt) break;
        const BlockQ8_0* xb = reinterpret_cast<const BlockQ8_0*>(x + (2 * p + h) * xs) + b;
        q[h] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xb->qs));
        d[h] = h2f(xb->d);
      }
      const __m512i qq = pair256(q[0], q[1]);
      _mm512_storeu_si512(&out[b].q[p], qq);
      _mm512_storeu_si512(&out[b].start[p],
                          _mm512_sub_epi32(_mm512_setzero_si512(), dpbusd512(_mm512_setzero_si512(), offset, qq)));
      _mm512_storeu_ps(&out[b].d[p], _mm512_castpd_ps(_mm512_insertf64x4(
                                         _mm512_castpd256_pd512(_mm256_castps_pd(_mm256_set1_ps(d[0]))),
                                         _mm256_castps_pd(_mm256_set1_ps(d[1])), 1)));
    }
  }
}

void prep_q81(const char* x, size_t xs, int nt, int64_t nb, PrepQ81* out) {
  for (int64_t b = 0; b < nb; ++b) {
    alignas(64) float ds[16] = {};
    for (int p = 0; p < kPairs; ++p) {
      __m256i q[2] = {_mm256_setzero_si256(), _mm256_setzero_si256()};
      for (int h = 0; h < 2; ++h) {
        const int t = 2 * p + h;
        if (t >= nt) break;
        const BlockQ8_1* xb = reinterpret_cast<const BlockQ8_1*>(x + t * xs) + b;
        q[h] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xb->qs));
        ds[2 * t] = h2f(xb->d);
        ds[2 * t + 1] = h2f(xb->s);
      }
      _mm512_storeu_si512(&out[b].q[p], pair256(q[0], q[1]));
    }
    _mm512_storeu_ps(&out[b].ds, _mm512_load_ps(ds));
  }
}

// hsum() of 8 vectors at once, by transposing: lane i of the result is
// hsum(a[i]) (lo+hi, then lanes 0+2 / 1+3, then 0+1, the same adds).
inline __m256 hsum8(const __m256 (&a)[8]) {
  __m256 s[4], v[2];
  for (int i = 0; i < 4; ++i)
    s[i] = _mm256_add_ps(_mm256_permute2f128_ps(a[2 * i], a[2 * i + 1], 0x20),
                         _mm256_permute2f128_ps(a[2 * i], a[2 * i + 1], 0x31));
  for (int i = 0; i < 2; ++i)
    v[i] = _mm256_add_ps(_mm256_shuffle_ps(s[2 * i], s[2 * i + 1], _MM_SHUFFLE(1, 0, 1, 0)),
                         _mm256_shuffle_ps(s[2 * i], s[2 * i + 1], _MM_SHUFFLE(3, 2, 3, 2)));
  const __m256 r = _mm256_add_ps(_mm256_shuffle_ps(v[0], v[1], _MM_SHUFFLE(2, 0, 2, 0)),
                                 _mm256_shuffle_ps(v[0], v[1], _MM_SHUFFLE(3, 1, 3, 1)));
  // r holds keys [0, 2, 4, 6 | 1, 3, 5, 7]
  return _mm256_permutevar8x32_ps(r, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

// Writes the 2*NP token results of row i (only tokens < nt); m: Q4_1's m*s sums
// (lane 2t+1 for token t) or nullptr.
template <int NP>
inline void store_row(const __m512 (&acc)[NP], const float* m, float* y, size_t ldy, int nt) {
  if constexpr (NP == 4) {  // all 8 trees at once
    const __m256 a[8] = {_mm512_castps512_ps256(acc[0]), hi256(acc[0]), _mm512_castps512_ps256(acc[1]), hi256(acc[1]),
                         _mm512_castps512_ps256(acc[2]), hi256(acc[2]), _mm512_castps512_ps256(acc[3]), hi256(acc[3])};
    __m256 r = hsum8(a);
    if (m) r = _mm256_add_ps(r, _mm256_setr_ps(m[1], m[3], m[5], m[7], m[9], m[11], m[13], m[15]));
    alignas(32) float v[8];
    _mm256_store_ps(v, r);
    for (int t = 0; t < nt; ++t) y[t * ldy] = v[t];
    return;
  }
  for (int p = 0; p < NP; ++p) {
    const int t = 2 * p;
    // No "+ 0.0f" without m: it would turn a -0.0 sum into +0.0.
    if (t < nt) {
      const float v = hsum(_mm512_castps512_ps256(acc[p]));
      y[t * ldy] = m ? v + m[2 * t + 1] : v;
    }
    if (t + 1 < nt) {
      const float v = hsum(hi256(acc[p]));
      y[(t + 1) * ldy] = m ? v + m[2 * t + 3] : v;
    }
  }
}

// A row chunk's weights, unpacked once per gemm call and then reused by every
// token tile: the 32 unsigned quants of a block as vpdpbusd takes them
// (Q4_1 nibbles in element order, Q8_0 + 128) and its scales as floats,
// so a tile's per-row work is two broadcast loads. Blocks of a group of 4 rows
// sit together: entry (g * nb + b) * 4 + i is block b of row 4g + i.
struct Wide {
  uint8_t u[32];
  float s[2];  // d_w, and m_w for Q4_1
};

template <int Kind>
void expand_row(const char* w, size_t bs, int64_t nb, Wide* out) {
  for (int64_t b = 0; b < nb; ++b) {
    const char* wb = w + b * bs;
    Wide& o = out[4 * b];
    __m256i u;
    if (Kind == 2) {
      const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(reinterpret_cast<const BlockQ8_0*>(wb)->qs));
      u = _mm256_xor_si256(q, _mm256_set1_epi8(char(0x80)));
    } else {
      u = nibbles(reinterpret_cast<const uint8_t*>(wb) + 4);  // Q4_1
    }
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(o.u), u);
    const __m128 h = head2(wb);
    o.s[0] = _mm_cvtss_f32(h);
    o.s[1] = Kind == 1 ? _mm_cvtss_f32(_mm_movehdup_ps(h)) : 0.0f;
  }
}

inline __m512i wide_u(const Wide& e) {
  return _mm512_broadcast_i64x4(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(e.u)));
}

// Q8_0 weights (the offset is in the prepared start term).
template <int R, int NP>
void ptile_q8(const Wide* w, const PrepQ8* px, int64_t nb, float* y, size_t ldy, int nt) {
  __m512 acc[R][NP];
  for (int i = 0; i < R; ++i)
    for (int p = 0; p < NP; ++p) acc[i][p] = _mm512_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    const PrepQ8& a = px[b];
#pragma GCC unroll 4
    for (int i = 0; i < R; ++i) {
      const Wide& e = w[4 * b + i];
      const __m512i u = wide_u(e);
      const __m512 dw = _mm512_set1_ps(e.s[0]);
#pragma GCC unroll 4
      for (int p = 0; p < NP; ++p) {
        const __m512i s = dpbusd512(_mm512_loadu_si512(&a.start[p]), u, _mm512_loadu_si512(&a.q[p]));
        acc[i][p] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_mul_ps(dw, _mm512_loadu_ps(&a.d[p])), acc[i][p]);
      }
    }
  }
  for (int i = 0; i < R; ++i) store_row<NP>(acc[i], nullptr, y + i, ldy, nt);
}

template <int R, int NP>
void ptile_q41(const Wide* w, const PrepQ81* px, int64_t nb, float* y, size_t ldy, int nt) {
  __m512 acc[R][NP];
  __m512 macc[R];  // lane 2t+1: sum of m_w * s_x for token t
  for (int i = 0; i < R; ++i) {
    macc[i] = _mm512_setzero_ps();
    for (int p = 0; p < NP; ++p) acc[i][p] = _mm512_setzero_ps();
  }
  const __m512i sel[kPairs] = {
      _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 2, 2, 2, 2, 2, 2, 2, 2),
      _mm512_setr_epi32(4, 4, 4, 4, 4, 4, 4, 4, 6, 6, 6, 6, 6, 6, 6, 6),
      _mm512_setr_epi32(8, 8, 8, 8, 8, 8, 8, 8, 10, 10, 10, 10, 10, 10, 10, 10),
      _mm512_setr_epi32(12, 12, 12, 12, 12, 12, 12, 12, 14, 14, 14, 14, 14, 14, 14, 14)};
  for (int64_t b = 0; b < nb; ++b) {
    const PrepQ81& a = px[b];
#pragma GCC unroll 4
    for (int i = 0; i < R; ++i) {
      const Wide& e = w[4 * b + i];
      const __m512i u = wide_u(e);
      double dm;
      memcpy(&dm, e.s, 8);
      const __m512 wdm = _mm512_castpd_ps(_mm512_set1_pd(dm));        // [d_w, m_w] x 8
      const __m512 prod = _mm512_mul_ps(wdm, _mm512_loadu_ps(&a.ds));  // [dw*dx_t, mw*sx_t] pairs
      macc[i] = _mm512_add_ps(macc[i], prod);
#pragma GCC unroll 4
      for (int p = 0; p < NP; ++p) {
        const __m512i s = dpbusd512(_mm512_setzero_si512(), u, _mm512_loadu_si512(&a.q[p]));
        acc[i][p] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_permutexvar_ps(sel[p], prod), acc[i][p]);
      }
    }
  }
  for (int i = 0; i < R; ++i) {
    alignas(64) float m[16];
    _mm512_store_ps(m, macc[i]);
    store_row<NP>(acc[i], m, y + i, ldy, nt);
  }
}

template <int Kind, int R, int NP>
void ptile(const Wide* w, const PrepQ8* px, int64_t nb, float* y, size_t ldy, int nt) {
  ptile_q8<R, NP>(w, px, nb, y, ldy, nt);
}
template <int Kind, int R, int NP>
void ptile(const Wide* w, const PrepQ81* px, int64_t nb, float* y, size_t ldy, int nt) {
  ptile_q41<R, NP>(w, px, nb, y, ldy, nt);
}

// ---- per-kind activation preparation -----------------------------------------

// Kind 1: Q4_1 (Q8_1 activations), 2: Q8_0 (the kind of q41tile / qtile).
template <int Kind>
struct Ops;
template <>
struct Ops<2> {
  using Prep = PrepQ8;
  static constexpr size_t kBlock = sizeof(BlockQ8_0);
  static void prep(const char* x, size_t xs, int nt, int64_t nb, Prep* o) { prep_q8<2>(x, xs, nt, nb, o); }
};
template <>
struct Ops<1> {
  using Prep = PrepQ81;
  static constexpr size_t kBlock = sizeof(BlockQ4_1);
  static void prep(const char* x, size_t xs, int nt, int64_t nb, Prep* o) { prep_q81(x, xs, nt, nb, o); }
};

template <int Kind, int R>
void ptile_np(const Wide* w, const typename Ops<Kind>::Prep* px, int64_t nb, float* y, size_t ldy, int nt) {
  switch ((nt + 1) / 2) {
    case 1: ptile<Kind, R, 1>(w, px, nb, y, ldy, nt); break;
    case 2: ptile<Kind, R, 2>(w, px, nb, y, ldy, nt); break;
    case 3: ptile<Kind, R, 3>(w, px, nb, y, ldy, nt); break;
    default: ptile<Kind, R, 4>(w, px, nb, y, ldy, nt); break;
  }
}

// ---- decode on packed groups: 2 rows per 512-bit register -------------------
// A packed group holds block b of 4 rows back to back (kernels/repack.h). One
// zmm carries rows i and i+1 as quarters [i lanes 0-3, i+1 lanes 0-3, i lanes
// 4-7, i+1 lanes 4-7] against the token's quants laid out [q0-15, q0-15,
// q16-31, q16-31]; a row's 8 lanes run the same sequence as in the 256-bit
// tiles and are folded by the same tree at the end.

// The token, prepared once per call and shared by every row group.
struct DecQ {
  __m512i q;  // [q0-15, q0-15, q16-31, q16-31]
  __m256 xd;  // [d_x, s_x] x 4
};

void prep_dec(const char* x, int64_t nb, DecQ* out) {
  for (int64_t b = 0; b < nb; ++b) {
    const char* xb = x + b * sizeof(BlockQ8_1);
    const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xb + 4));
    const __m512i zq = _mm512_castsi256_si512(q);
    out[b].q = _mm512_shuffle_i64x2(zq, zq, _MM_SHUFFLE(1, 1, 0, 0));
    uint32_t h = 0;
    memcpy(&h, xb, 4);
    const __m128 ds = _mm_cvtph_ps(_mm_cvtsi32_si128(int(h)));
    out[b].xd = _mm256_castpd_ps(_mm256_broadcastsd_pd(_mm_castps_pd(ds)));
  }
}

// Folds the accumulators of rows (0,1) and (2,3) to their 4 hsum() values.
inline __m128 fold4(__m512 a01, __m512 a23) {
  // lo + hi: quarters 0+2 and 1+3 -> [row0 | row1] and [row2 | row3], 4 lanes each
  const __m256 s01 = _mm256_add_ps(_mm512_castps512_ps256(a01), hi256(a01));
  const __m256 s23 = _mm256_add_ps(_mm512_castps512_ps256(a23), hi256(a23));
  // lanes 0+2, 1+3: [r0 r0 r2 r2 | r1 r1 r3 r3]
  const __m256 v = _mm256_add_ps(_mm256_shuffle_ps(s01, s23, _MM_SHUFFLE(1, 0, 1, 0)),
                                 _mm256_shuffle_ps(s01, s23, _MM_SHUFFLE(3, 2, 3, 2)));
  // lanes 0+1: [r0 r2 | r1 r3] in lanes 0, 2, 4, 6
  const __m256 r = _mm256_add_ps(v, _mm256_movehdup_ps(v));
  const __m256 g = _mm256_permutevar8x32_ps(r, _mm256_setr_epi32(0, 4, 2, 6, 0, 0, 0, 0));
  return _mm256_castps256_ps128(g);
}

// One packed Q4_1 group of 4 rows x 1 token (20-byte blocks).
void dtile(const char* g, const DecQ* px, int64_t nb, float* y) {
  constexpr int kBytes = 4 * sizeof(BlockQ4_1);
  // Quants of row i are dwords 1+5i..4+5i, [d, m] dword 5i; indices >= 16 read the group's tail.
  const __m512i qidx = _mm512_setr_epi32(1, 2, 3, 4, 6, 7, 8, 9, 11, 12, 13, 14, 16, 17, 18, 19);
  const __m512i hidx = _mm512_setr_epi32(0, 5, 10, 15, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0);
  // Scale of row i: lane 2i of prod, in that row's quarters.
  const __m512i s01 = _mm512_setr_epi32(0, 0, 0, 0, 2, 2, 2, 2, 0, 0, 0, 0, 2, 2, 2, 2);
  const __m512i s23 = _mm512_setr_epi32(4, 4, 4, 4, 6, 6, 6, 6, 4, 4, 4, 4, 6, 6, 6, 6);
  const __m512i m4 = _mm512_set1_epi8(0x0f);
  __m512 acc01 = _mm512_setzero_ps(), acc23 = _mm512_setzero_ps();
  __m256 macc = _mm256_setzero_ps();  // lane 2i+1 sums m_w * s_x of row i
  for (int64_t b = 0; b < nb; ++b) {
    const char* gb = g + b * kBytes;
    // The loop's few bytes per instruction leave too few loads in flight for
    // DRAM: ask for the stream 2 KiB ahead (a hint; never faults). Two lines
    // per 80-byte step so none is skipped.
    _mm_prefetch(gb + 2048, _MM_HINT_T0);
    _mm_prefetch(gb + 2048 + 64, _MM_HINT_T0);
    const __m512i z0 = _mm512_loadu_si512(gb);
    const __m512i z1 = _mm512_maskz_loadu_epi32(0x000f, gb + 64);
    const __m512i qs = _mm512_permutex2var_epi32(z0, qidx, z1);
    const __m256 h = _mm256_cvtph_ps(_mm512_castsi512_si128(_mm512_permutexvar_epi32(hidx, z0)));
    const __m256 prod = _mm256_mul_ps(h, px[b].xd);  // [dw*dx, mw*sx] per row
    macc = _mm256_add_ps(macc, prod);
    const __m512i lo = _mm512_and_si512(qs, m4);
    const __m512i hi = _mm512_and_si512(_mm512_srli_epi16(qs, 4), m4);
    const __m512i u01 = _mm512_shuffle_i64x2(lo, hi, _MM_SHUFFLE(1, 0, 1, 0));
    const __m512i u23 = _mm512_shuffle_i64x2(lo, hi, _MM_SHUFFLE(3, 2, 3, 2));
    const __m512i st = _mm512_setzero_si512();
    const __m512 pz = _mm512_castps256_ps512(prod);
    acc01 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dpbusd512(st, u01, px[b].q)), _mm512_permutexvar_ps(s01, pz), acc01);
    acc23 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dpbusd512(st, u23, px[b].q)), _mm512_permutexvar_ps(s23, pz), acc23);
  }
  const __m128 r = fold4(acc01, acc23);
  // m sums of rows 0..3 from lanes 1, 3, 5, 7
  const __m128 m = _mm256_castps256_ps128(_mm256_permutevar8x32_ps(macc, _mm256_setr_epi32(1, 3, 5, 7, 0, 0, 0, 0)));
  _mm_storeu_ps(y, _mm_add_ps(r, m));
}

// Q8_0 decode in the file layout: rows (i, i+1) as the two 256-bit halves of a
// zmm, each half the sequence of qtile<2, 1, 1>.
struct DecQ8 {
  __m512i q;      // [q | q]
  __m512i start;  // -128 * (4-element group sums)
  __m128 dx;      // d_x in every lane
};

void prep_dec8(const char* x, int64_t nb, DecQ8* out) {
  for (int64_t b = 0; b < nb; ++b) {
    const BlockQ8_0* xb = reinterpret_cast<const BlockQ8_0*>(x) + b;
    out[b].q = _mm512_broadcast_i64x4(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(xb->qs)));
    out[b].start = _mm512_sub_epi32(_mm512_setzero_si512(),
                                    dpbusd512(_mm512_setzero_si512(), _mm512_set1_epi8(char(0x80)), out[b].q));
    out[b].dx = _mm_set1_ps(h2f(xb->d));
  }
}

void dtile_q8(const char* w, size_t ws, const DecQ8* px, int64_t nb, float* y) {
  const __m512i flip = _mm512_set1_epi8(char(0x80));
  const __m512i s01 = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
  const __m512i s23 = _mm512_setr_epi32(2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
  __m512 acc01 = _mm512_setzero_ps(), acc23 = _mm512_setzero_ps();
  auto qs = [&](int i, int64_t b) {
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(reinterpret_cast<const BlockQ8_0*>(w + i * ws)[b].qs));
  };
  auto d = [&](int i, int64_t b) { return reinterpret_cast<const BlockQ8_0*>(w + i * ws)[b].d; };
  for (int64_t b = 0; b < nb; ++b) {
    if (b % 2 == 0)  // four row streams, 2 KiB ahead each (see dtile)
      for (int i = 0; i < 4; ++i) _mm_prefetch(w + i * ws + b * sizeof(BlockQ8_0) + 2048, _MM_HINT_T0);
    __m128i h = _mm_cvtsi32_si128(d(0, b));
    h = _mm_insert_epi16(h, d(1, b), 1);
    h = _mm_insert_epi16(h, d(2, b), 2);
    h = _mm_insert_epi16(h, d(3, b), 3);
    const __m512 prod = _mm512_castps128_ps512(_mm_mul_ps(_mm_cvtph_ps(h), px[b].dx));
    const __m512i u01 = _mm512_xor_si512(_mm512_inserti64x4(_mm512_castsi256_si512(qs(0, b)), qs(1, b), 1), flip);
    const __m512i u23 = _mm512_xor_si512(_mm512_inserti64x4(_mm512_castsi256_si512(qs(2, b)), qs(3, b), 1), flip);
    acc01 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dpbusd512(px[b].start, u01, px[b].q)), _mm512_permutexvar_ps(s01, prod), acc01);
    acc23 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dpbusd512(px[b].start, u23, px[b].q)), _mm512_permutexvar_ps(s23, prod), acc23);
  }
  y[0] = hsum(_mm512_castps512_ps256(acc01));
  y[1] = hsum(hi256(acc01));
  y[2] = hsum(_mm512_castps512_ps256(acc23));
  y[3] = hsum(hi256(acc23));
}

// ---- Q4_0 on 16-row interleaved groups (kernels/repack.h): lanes are rows ----
// Each block's 32 products are summed exactly in int32 by vpdpbusd (nibbles as
// unsigned against the activations; the -8 offset and a conversion bias sit in
// the start value), then one FMA per row with d_w * d_x: the scalar reference's
// order (llama.cpp's repacked Q4_0 gemm), bit for bit.

constexpr int kX16 = kQ4x16Rows;
constexpr size_t kX16Block = kX16 * sizeof(BlockQ4_0);  // 288 bytes: 16 scales, 4 quant chunks
// 0x4B400000 is 1.5 * 2^23 as a float. Its bits plus an int32 n (|n| < 2^22; a
// Q4_0 block sum is at most 32 * 8 * 128) are the float 1.5 * 2^23 + n exactly,
// so one subtraction converts n: a port-5 op instead of vcvtdq2ps on port 0,
// which vpdpbusd already saturates.
constexpr int32_t kMagicBits = 0x4B400000;
constexpr float kMagic = 12582912.0f;

struct X16Tok {   // one block of one token
  int32_t start;  // kMagicBits - 8 * sum(q)
  float dx;
};

void prep_x16(const char* x, size_t xs, int64_t n_tok, int64_t nb, X16Tok* out) {
  for (int64_t t = 0; t < n_tok; ++t) {
    const BlockQ8_0* xb = reinterpret_cast<const BlockQ8_0*>(x + t * xs);
    for (int64_t b = 0; b < nb; ++b) {
      int s = 0;
      for (int j = 0; j < QK; ++j) s += xb[b].qs[j];
      out[t * nb + b] = {kMagicBits - 8 * s, h2f(xb[b].d)};
    }
  }
}

inline __m512i bcast4(const int8_t* p) {
  int32_t v;
  memcpy(&v, p, 4);
  return _mm512_set1_epi32(v);
}

// 16 rows x 1 token: the 8 products of each block run as two independent chains.
void x16_gemv(const char* g, const BlockQ8_0* x, const X16Tok* tk, int64_t nb, float* y) {
  const __m512i m4 = _mm512_set1_epi8(0x0f);
  const __m512 magic = _mm512_set1_ps(kMagic);
  __m512 acc = _mm512_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    const char* gb = g + b * kX16Block;
    _mm_prefetch(gb + 4096, _MM_HINT_T0);  // see dtile; 288 bytes a block: 4.5 lines
    _mm_prefetch(gb + 4096 + 128, _MM_HINT_T0);
    _mm_prefetch(gb + 4096 + 256, _MM_HINT_T0);
    const int8_t* q = x[b].qs;
    __m512i lo = _mm512_set1_epi32(tk[b].start), hi = _mm512_setzero_si512();
#pragma GCC unroll 4
    for (int c = 0; c < 4; ++c) {
      // chunk c: low nibbles are elements 4c..4c+3, high nibbles 16+4c..16+4c+3
      const __m512i v = _mm512_loadu_si512(gb + 2 * kX16 + 64 * c);
      lo = dpbusd512(lo, _mm512_and_si512(v, m4), bcast4(q + 4 * c));
      hi = dpbusd512(hi, _mm512_and_si512(_mm512_srli_epi16(v, 4), m4), bcast4(q + 16 + 4 * c));
    }
    const __m512 f = _mm512_sub_ps(_mm512_castsi512_ps(_mm512_add_epi32(lo, hi)), magic);
    const __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(gb)));
    acc = _mm512_fmadd_ps(f, _mm512_mul_ps(dw, _mm512_set1_ps(tk[b].dx)), acc);
  }
  _mm512_storeu_ps(y, acc);
}

// 16 rows x T tokens (T <= 8): a block's weights are unpacked once for the T
// tokens, one dependency chain per token.
template <int T>
void x16_tile(const char* g, const char* x, size_t xs, const X16Tok* tk, int64_t nb, float* y, size_t ldy) {
  const __m512i m4 = _mm512_set1_epi8(0x0f);
  const __m512 magic = _mm512_set1_ps(kMagic);
  __m512 acc[T];
  for (int t = 0; t < T; ++t) acc[t] = _mm512_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    const char* gb = g + b * kX16Block;
    __m512i u[8];  // u[j]: elements 4j..4j+3 of the 16 rows
#pragma GCC unroll 4
    for (int c = 0; c < 4; ++c) {
      const __m512i v = _mm512_loadu_si512(gb + 2 * kX16 + 64 * c);
      u[c] = _mm512_and_si512(v, m4);
      u[4 + c] = _mm512_and_si512(_mm512_srli_epi16(v, 4), m4);
    }
    const __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(gb)));
#pragma GCC unroll 8
    for (int t = 0; t < T; ++t) {
      const int8_t* q = reinterpret_cast<const BlockQ8_0*>(x + t * xs)[b].qs;
      const X16Tok& k = tk[t * nb + b];
      __m512i s = _mm512_set1_epi32(k.start);
#pragma GCC unroll 8
      for (int j = 0; j < 8; ++j) s = dpbusd512(s, u[j], bcast4(q + 4 * j));
      const __m512 f = _mm512_sub_ps(_mm512_castsi512_ps(s), magic);
      acc[t] = _mm512_fmadd_ps(f, _mm512_mul_ps(dw, _mm512_set1_ps(k.dx)), acc[t]);
    }
  }
  for (int t = 0; t < T; ++t) _mm512_storeu_ps(y + t * ldy, acc[t]);
}

using X16TileFn = void (*)(const char*, const char*, size_t, const X16Tok*, int64_t, float*, size_t);
constexpr X16TileFn kX16Tiles[8] = {x16_tile<1>, x16_tile<2>, x16_tile<3>, x16_tile<4>,
                                    x16_tile<5>, x16_tile<6>, x16_tile<7>, x16_tile<8>};

// Row i of a group outside whole groups of [r0, r1) (a thread split inside a
// group): the scalar reference's arithmetic, read from the packed layout.
void x16_row(const char* g, int i, const char* x, size_t xs, int64_t nb, int64_t n_tok, float* y, size_t ldy) {
  for (int64_t t = 0; t < n_tok; ++t) {
    const BlockQ8_0* xb = reinterpret_cast<const BlockQ8_0*>(x + t * xs);
    float acc = 0.0f;
    for (int64_t b = 0; b < nb; ++b) {
      const uint8_t* gb = reinterpret_cast<const uint8_t*>(g + b * kX16Block);
      uint16_t d;
      memcpy(&d, gb + 2 * i, 2);
      int sum = 0;
      for (int c = 0; c < 4; ++c)
        for (int k = 0; k < 4; ++k) {
          const uint8_t byte = gb[2 * kX16 + 64 * c + 4 * i + k];
          const int e = 4 * c + k;
          sum += ((byte & 0x0f) - 8) * xb[b].qs[e] + ((byte >> 4) - 8) * xb[b].qs[e + 16];
        }
      acc = std::fma(static_cast<float>(sum), h2f(d) * h2f(xb[b].d), acc);
    }
    y[t * ldy] = acc;
  }
}

void gemm_q4_0_x16(const void* W, size_t ws, const void* X, size_t xs, float* Y, size_t ldy, int64_t K,
                   int64_t r0, int64_t r1, int64_t n_tok) {
  const char* w = static_cast<const char*>(W);
  const char* x = static_cast<const char*>(X);
  const int64_t nb = K / QK;
  // Per-token block terms: on the stack for decode, on the heap for a prompt.
  constexpr int64_t kStack = 1024;
  X16Tok stack[kStack];
  std::vector<X16Tok> heap;
  X16Tok* tk = stack;
  if (n_tok * nb > kStack) {
    heap.resize(static_cast<size_t>(n_tok * nb));
    tk = heap.data();
  }
  prep_x16(x, xs, n_tok, nb, tk);
  auto group = [&](int64_t r) { return w + (r - r % kX16) * ws; };
  // Rows of partial groups at either end of the range.
  int64_t a = r0, e = r1;
  while (a < e && a % kX16 != 0) {
    x16_row(group(a), int(a % kX16), x, xs, nb, n_tok, Y + a, ldy);
    ++a;
  }
  while (e > a && e % kX16 != 0) {
    --e;
    x16_row(group(e), int(e % kX16), x, xs, nb, n_tok, Y + e, ldy);
  }
  if (n_tok == 1) {
    for (int64_t r = a; r < e; r += kX16) x16_gemv(group(r), reinterpret_cast<const BlockQ8_0*>(x), tk, nb, Y + r);
    return;
  }
  // Row chunks of about 128 KiB of weights stay in L2 while every 8-token tile
  // sweeps them.
  int64_t rchunk = static_cast<int64_t>((128 * 1024) / (ws ? ws : 1));
  rchunk = rchunk < kX16 ? kX16 : rchunk - rchunk % kX16;
  for (int64_t c0 = a; c0 < e; c0 += rchunk) {
    const int64_t c1 = c0 + rchunk < e ? c0 + rchunk : e;
    for (int64_t t0 = 0; t0 < n_tok; t0 += 8) {
      const int nt = static_cast<int>(n_tok - t0 < 8 ? n_tok - t0 : 8);
      for (int64_t r = c0; r < c1; r += kX16)
        kX16Tiles[nt - 1](group(r), x + t0 * xs, xs, tk + t0 * nb, nb, Y + t0 * ldy + r, ldy);
    }
  }
}

// Decode: packed Q4_1 groups by dtile, Q8_0 by dtile_q8, file-layout
// Q4_1 / Q8_0 by the 256-bit tiles R4T1/R1T1. Prefill: per row chunk (unpacked once),
// 8 tokens' activations are prepared at a time (a few KiB, stays in L1) and the
// chunk's rows sweep them from L2. P = rows per packed group (0 = file layout).
template <int Kind, int P, TileFn R4T1, TileFn R1T1>
void gemm(const void* W, size_t ws, const void* X, size_t xs, float* Y, size_t ldy, int64_t K,
          int64_t r0, int64_t r1, int64_t n_tok) {
  static_assert(P == 0 || P == 4, "a packed group is one row tile");
  const char* w = static_cast<const char*>(W);
  const char* x = static_cast<const char*>(X);
  const size_t bb = Ops<Kind>::kBlock;
  auto row = [&](int64_t r) { return P ? w + (r - r % P) * ws + (r % P) * bb : w + r * ws; };
  const size_t bs = P ? P * bb : bb;  // block step of one row
  auto full_tile = [&](int64_t r) { return r + 4 <= r1 && (P == 0 || r % P == 0); };
  const int64_t nb = K / QK;
  if (n_tok == 1 && P == 0 && Kind == 2) {
    std::vector<DecQ8> dq(static_cast<size_t>(nb));
    prep_dec8(x, nb, dq.data());
    int64_t r = r0;
    for (; r + 4 <= r1; r += 4) dtile_q8(w + r * ws, ws, dq.data(), nb, Y + r);
    for (; r < r1; ++r) R1T1(w + r * ws, ws, x, xs, Y + r, ldy, K);
    return;
  }
  if (n_tok == 1 && P == 0) {
    int64_t r = r0;
    for (; r + 4 <= r1; r += 4) R4T1(w + r * ws, ws, x, xs, Y + r, ldy, K);
    for (; r < r1; ++r) R1T1(w + r * ws, ws, x, xs, Y + r, ldy, K);
    return;
  }
  if (n_tok == 1 && Kind == 1) {
    std::vector<DecQ> dq(static_cast<size_t>(nb));
    prep_dec(x, nb, dq.data());
    int64_t r = r0;
    std::vector<typename Ops<Kind>::Prep> prep;  // rows outside whole groups (rare)
    std::vector<Wide> one;
    while (r < r1) {
      if (full_tile(r)) {
        dtile(row(r), dq.data(), nb, Y + r);
        r += 4;
      } else {
        if (prep.empty()) {
          prep.resize(static_cast<size_t>(nb));
          Ops<Kind>::prep(x, xs, 1, nb, prep.data());
          one.resize(static_cast<size_t>(4 * nb));
        }
        expand_row<Kind>(row(r), bs, nb, one.data());
        ptile_np<Kind, 1>(one.data(), prep.data(), nb, Y + r, ldy, 1);
        ++r;
      }
    }
    return;
  }
  std::vector<typename Ops<Kind>::Prep> prep(static_cast<size_t>(nb));
  // Rows in chunks of about 128 KiB of weights (a multiple of 4 rows): a chunk,
  // unpacked (2x for Q4_1), stays in L2 while every token tile sweeps it.
  int64_t rchunk = static_cast<int64_t>((128 * 1024) / (ws ? ws : 1));
  rchunk = rchunk < 4 ? 4 : rchunk - rchunk % 4;
  if (rchunk > r1 - r0) rchunk = (r1 - r0 + 3) / 4 * 4;
  std::vector<Wide> wide(static_cast<size_t>(rchunk * nb));
  for (int64_t c0 = r0; c0 < r1; c0 += rchunk) {
    const int64_t n = c0 + rchunk < r1 ? rchunk : r1 - c0;
    for (int64_t i = 0; i < n; ++i) expand_row<Kind>(row(c0 + i), bs, nb, &wide[((i / 4) * nb) * 4 + i % 4]);
    for (int64_t t0 = 0; t0 < n_tok; t0 += 2 * kPairs) {
      const int nt = static_cast<int>(n_tok - t0 < 2 * kPairs ? n_tok - t0 : 2 * kPairs);
      Ops<Kind>::prep(x + t0 * xs, xs, nt, nb, prep.data());
      for (int64_t i = 0; i < n;) {
        const Wide* wt = &wide[((i / 4) * nb) * 4 + i % 4];
        float* y = Y + t0 * ldy + c0 + i;
        if (i + 4 <= n) {
          ptile_np<Kind, 4>(wt, prep.data(), nb, y, ldy, nt);
          i += 4;
        } else {
          ptile_np<Kind, 1>(wt, prep.data(), nb, y, ldy, nt);
          ++i;
        }
      }
    }
  }
}

// ---- attention (F16 cache, prompt chunks) ------------------------------------
// The sums of avx2.cpp's tinyBLAS-order path, vectorised across keys and over
// wider P.V columns; every lane keeps its own sequence, so results are identical.
// exp8, hsum and softmax_ggml are kernels/ggml_exp_avx2.h's, shared with avx2.cpp.

inline __m256 f16x8(const uint16_t* p) { return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))); }
inline __m256 round_f16(__m256 v) { return _mm256_cvtph_ps(_mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT)); }

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
            int64_t head_dim, int64_t n_kv, float scale, bool batched, float* scratch, float* out) {
  if (kv_type != GgmlType::F16 || !batched || head_dim % 8 != 0 || head_dim > 512) {
    avx2_table()->attend(q, K, V, kv_type, kv_stride, head_dim, n_kv, scale, batched, scratch, out);
    return;
  }
  // llama.cpp's F16 matmuls see the query and the softmax weights in F16.
  alignas(64) float qh[512];
  for (int64_t d = 0; d < head_dim; d += 8) _mm256_store_ps(qh + d, round_f16(_mm256_loadu_ps(q + d)));
  scores_tile_order(static_cast<const uint16_t*>(K), kv_stride, qh, head_dim, n_kv, scale, scratch);
  softmax_ggml(scratch, n_kv);
  int64_t j = 0;
  for (; j + 8 <= n_kv; j += 8) _mm256_storeu_ps(scratch + j, round_f16(_mm256_loadu_ps(scratch + j)));
  for (; j < n_kv; ++j) scratch[j] = _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtps_ph(_mm_set_ss(scratch[j]), _MM_FROUND_TO_NEAREST_INT)));
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
    avx2_table()->attend_rows(q, q_stride, K, V, kv_type, kv_stride, head_dim, n_kv0, m, scale, scratch, out,
                              out_stride);
    return;
  }
  if (kv_type != GgmlType::F16 || head_dim % 16 != 0 || head_dim > 512) {
    for (int64_t t = 0; t < m; ++t)
      attend(q + t * q_stride, K, V, kv_type, kv_stride, head_dim, n_kv0 + t, scale, true, scratch,
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
      for (int64_t d = 0; d < head_dim; d += 8) _mm256_store_ps(qh[r] + d, round_f16(_mm256_loadu_ps(qr + d)));
    }
    scores_rows4(k, kv_stride, qh, head_dim, n[3], scale, s);
    for (int r = 0; r < R; ++r) {
      softmax_ggml(s[r], n[r]);
      int64_t j = 0;
      for (; j + 8 <= n[r]; j += 8) _mm256_storeu_ps(s[r] + j, round_f16(_mm256_loadu_ps(s[r] + j)));
      for (; j < n[r]; ++j) s[r][j] = _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtps_ph(_mm_set_ss(s[r][j]), _MM_FROUND_TO_NEAREST_INT)));
    }
    int r = 0;
    for (; r + 2 <= R; r += 2)
      pv_rows2(s[r], n[r], s[r + 1], n[r + 1], v, kv_stride, head_dim, out + (t0 + r) * out_stride,
               out + (t0 + r + 1) * out_stride);
    if (r < R) pv_tile_order(s[r], v, kv_stride, head_dim, n[r], out + (t0 + r) * out_stride);
  }
}

KernelTable make_table() {
  KernelTable t = *avx2_table();
  t.isa = "avx512";
  t.attend = attend;
  t.attend_rows = attend_rows;
  // Q4_0 in the file layout: avx2's (the same arithmetic as the packed kernel).
  t.gemm[W_Q8_0] = gemm<2, 0, qtile<2, 4, 1>, qtile<2, 1, 1>>;
  t.gemm[W_Q4_1] = gemm<1, 0, q41tile<4, 1>, q41tile<1, 1>>;
  // Q4_0 reads 16-row interleaved groups, Q4_1 decode 4-row packed groups; Q8_0
  // keeps the file layout.
  t.pack_rows[W_Q4_0] = kX16;
  t.gemm_packed[W_Q4_0] = gemm_q4_0_x16;
  t.pack[W_Q4_0] = repack_q4_0_x16;
  t.unpack[W_Q4_0] = unpack_q4_0_x16;
  t.pack_rows[W_Q4_1] = 4;
  t.gemm_packed[W_Q4_1] = gemm<1, 4, q41tile<4, 1>, q41tile<1, 1>>;
  t.pack_rows[W_Q8_0] = 0;
  t.gemm_packed[W_Q8_0] = nullptr;
  return t;
}

}  // namespace

const KernelTable* avx512_table() {
  static const KernelTable t = make_table();
  return &t;
}

}  // namespace bluelm::kernels
