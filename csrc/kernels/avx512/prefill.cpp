// AVX-512 Q8_0 / Q4_1 prefill: 512-bit tiles, two tokens per register. A zmm
// accumulator holds (row i, token 2p) in its low 256 bits and (row i, token
// 2p+1) in its high 256 bits: each half runs exactly the per-lane sequence of
// the 256-bit tiles (x86/tiles256.h: the same int32 lane sums, the same dw*dx,
// the same FMA per block), so results are bit-identical. A tile is R rows x
// 2*NP tokens. Per row chunk the weights are unpacked once (Wide) and 8
// tokens' activations are prepared at a time (a few KiB, stays in L1) while
// the chunk's rows sweep them from L2.
#include <vector>

#include "kernels/avx512/avx512.h"
#include "kernels/avx512/zmm.h"
#include "kernels/common/gemm_driver.h"

namespace bluelm::kernels::avx512 {
namespace {

constexpr int kPairs = 4;  // token pairs per prepared tile (8 tokens)

inline __m512i pair256(__m256i lo, __m256i hi) { return _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1); }

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

inline __m512i wide_u(const Wide& e) {
  return _mm512_broadcast_i64x4(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(e.u)));
}

// Q8_0 weights against Q8_0 activations; the weights' +128 offset is taken
// out in the prepared start term.
struct Q8_0Rows {
  static constexpr size_t kBlock = sizeof(BlockQ8_0);
  // One block of 8 tokens' activations, laid out once per token tile so every
  // row reuses it: quants as token pairs, the int32 offset term, the scales.
  struct Prep {
    __m512i q[kPairs];
    __m512i start[kPairs];  // -offset * (sum of each 4-element group): shared by all rows
    __m512 d[kPairs];       // [d_x(2p) x8 | d_x(2p+1) x8]
  };
  static __m256i unsigned_quants(const char* wb) {
    const __m256i q = load32(reinterpret_cast<const BlockQ8_0*>(wb)->qs);
    return _mm256_xor_si256(q, _mm256_set1_epi8(char(0x80)));
  }
  static constexpr bool kMin = false;

  // Tokens x[0..nt) (nt <= 8; missing tokens read as zeros) -> nb prepared blocks.
  static void prep(const char* x, size_t xs, int nt, int64_t nb, Prep* out) {
    const __m512i offset = _mm512_set1_epi8(char(0x80));
    for (int64_t b = 0; b < nb; ++b) {
      for (int p = 0; p < kPairs; ++p) {
        __m256i q[2] = {_mm256_setzero_si256(), _mm256_setzero_si256()};
        float d[2] = {0.0f, 0.0f};
        for (int h = 0; h < 2; ++h) {
          if (2 * p + h >= nt) break;
          const BlockQ8_0* xb = reinterpret_cast<const BlockQ8_0*>(x + (2 * p + h) * xs) + b;
          q[h] = load32(xb->qs);
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

  template <int R, int NP>
  static void tile(const Wide* w, const Prep* px, int64_t nb, float* y, size_t ldy, int nt) {
    __m512 acc[R][NP];
    for (int i = 0; i < R; ++i)
      for (int p = 0; p < NP; ++p) acc[i][p] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; ++b) {
      const Prep& a = px[b];
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
};

// Q4_1 weights (unsigned nibbles) against Q8_1 activations, plus m_w * s_x.
struct Q4_1Rows {
  static constexpr size_t kBlock = sizeof(BlockQ4_1);
  struct Prep {
    __m512i q[kPairs];
    __m512 ds;  // [d_x0, s_x0, d_x1, s_x1, ..., d_x7, s_x7]
  };
  static __m256i unsigned_quants(const char* wb) { return nibbles(reinterpret_cast<const BlockQ4_1*>(wb)->qs); }
  static constexpr bool kMin = true;

  static void prep(const char* x, size_t xs, int nt, int64_t nb, Prep* out) {
    for (int64_t b = 0; b < nb; ++b) {
      alignas(64) float ds[16] = {};
      for (int p = 0; p < kPairs; ++p) {
        __m256i q[2] = {_mm256_setzero_si256(), _mm256_setzero_si256()};
        for (int h = 0; h < 2; ++h) {
          const int t = 2 * p + h;
          if (t >= nt) break;
          const BlockQ8_1* xb = reinterpret_cast<const BlockQ8_1*>(x + t * xs) + b;
          q[h] = load32(xb->qs);
          ds[2 * t] = h2f(xb->d);
          ds[2 * t + 1] = h2f(xb->s);
        }
        _mm512_storeu_si512(&out[b].q[p], pair256(q[0], q[1]));
      }
      _mm512_storeu_ps(&out[b].ds, _mm512_load_ps(ds));
    }
  }

  template <int R, int NP>
  static void tile(const Wide* w, const Prep* px, int64_t nb, float* y, size_t ldy, int nt) {
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
      const Prep& a = px[b];
#pragma GCC unroll 4
      for (int i = 0; i < R; ++i) {
        const Wide& e = w[4 * b + i];
        const __m512i u = wide_u(e);
        double dm;
        std::memcpy(&dm, e.s, 8);
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
};

template <class Fmt>
void expand_row(const char* w, size_t bs, int64_t nb, Wide* out) {
  for (int64_t b = 0; b < nb; ++b) {
    const char* wb = w + b * bs;
    Wide& o = out[4 * b];
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(o.u), Fmt::unsigned_quants(wb));
    const __m128 h = head2(wb);
    o.s[0] = _mm_cvtss_f32(h);
    o.s[1] = Fmt::kMin ? _mm_cvtss_f32(_mm_movehdup_ps(h)) : 0.0f;
  }
}

template <class Fmt, int R>
void tile_np(const Wide* w, const typename Fmt::Prep* px, int64_t nb, float* y, size_t ldy, int nt) {
  switch ((nt + 1) / 2) {
    case 1: Fmt::template tile<R, 1>(w, px, nb, y, ldy, nt); break;
    case 2: Fmt::template tile<R, 2>(w, px, nb, y, ldy, nt); break;
    case 3: Fmt::template tile<R, 3>(w, px, nb, y, ldy, nt); break;
    default: Fmt::template tile<R, 4>(w, px, nb, y, ldy, nt); break;
  }
}

template <class Fmt>
void prefill(const char* w, size_t ws, int P, const char* x, size_t xs, float* Y, size_t ldy, int64_t K, int64_t r0,
             int64_t r1, int64_t n_tok) {
  const RowLayout L{w, ws, Fmt::kBlock, P};
  const size_t bs = L.block_step();
  const int64_t nb = K / QK;
  std::vector<typename Fmt::Prep> prep(static_cast<size_t>(nb));
  // Rows in chunks of about 128 KiB of weights (a multiple of 4 rows): a chunk,
  // unpacked (2x for Q4_1), stays in L2 while every token tile sweeps it.
  int64_t rchunk = static_cast<int64_t>((128 * 1024) / (ws ? ws : 1));
  rchunk = rchunk < 4 ? 4 : rchunk - rchunk % 4;
  if (rchunk > r1 - r0) rchunk = (r1 - r0 + 3) / 4 * 4;
  std::vector<Wide> wide(static_cast<size_t>(rchunk * nb));
  for (int64_t c0 = r0; c0 < r1; c0 += rchunk) {
    const int64_t n = c0 + rchunk < r1 ? rchunk : r1 - c0;
    for (int64_t i = 0; i < n; ++i) expand_row<Fmt>(L.row(c0 + i), bs, nb, &wide[((i / 4) * nb) * 4 + i % 4]);
    for (int64_t t0 = 0; t0 < n_tok; t0 += 2 * kPairs) {
      const int nt = static_cast<int>(n_tok - t0 < 2 * kPairs ? n_tok - t0 : 2 * kPairs);
      Fmt::prep(x + t0 * xs, xs, nt, nb, prep.data());
      for (int64_t i = 0; i < n;) {
        const Wide* wt = &wide[((i / 4) * nb) * 4 + i % 4];
        float* y = Y + t0 * ldy + c0 + i;
        if (i + 4 <= n) {
          tile_np<Fmt, 4>(wt, prep.data(), nb, y, ldy, nt);
          i += 4;
        } else {
          tile_np<Fmt, 1>(wt, prep.data(), nb, y, ldy, nt);
          ++i;
        }
      }
    }
  }
}

}  // namespace

void prefill_q8_0(const char* w, size_t ws, int P, const char* x, size_t xs, float* Y, size_t ldy, int64_t K,
                  int64_t r0, int64_t r1, int64_t n_tok) {
  prefill<Q8_0Rows>(w, ws, P, x, xs, Y, ldy, K, r0, r1, n_tok);
}

void prefill_q4_1(const char* w, size_t ws, int P, const char* x, size_t xs, float* Y, size_t ldy, int64_t K,
                  int64_t r0, int64_t r1, int64_t n_tok) {
  prefill<Q4_1Rows>(w, ws, P, x, xs, Y, ldy, K, r0, r1, n_tok);
}

}  // namespace bluelm::kernels::avx512
