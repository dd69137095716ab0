// The small-batch gemv of the AVX-512 table (KernelTable::gemv_batch*): 2 to
// 16 tokens against weights read once, each token through the lanes of the
// one-token decode's tiles (packed Q4_1: q4_1_dtile.h's dtile; file-layout
// Q8_0: decode.cpp's dtile_q8), with the per-block work shared by up to 10
// (Q8_0: 8) tokens, so every output has the bits of a one-token call. A speculative
// round verifies its rows this way (llm/decoder.cpp, eval_as_steps).
#include <algorithm>
#include <type_traits>
#include <utility>
#include <vector>

#include "kernels/avx512/avx512.h"
#include "kernels/avx512/q4_1_dtile.h"
#include "kernels/avx512/q8_0_dtile.h"

namespace bluelm::kernels::avx512 {
namespace {

constexpr int kTokTile = 8;    // tokens per btile_q8 / btile_z call: 2 zmm accumulators each, in 32 registers
constexpr int kTokTileY = 10;  // tokens per btile call: 2 ymm accumulators each, in 32 registers
constexpr int kYmmFrom = 4;    // packed Q4_1 batches of fewer tokens take btile_z

// f(std::integral_constant<int, t>{}) for t = 0 .. T-1, unrolled in the source:
// accumulator arrays indexed by constants stay in registers (GCC's late
// unrolling left them in memory, a store per FMA).
template <int T, class Fn, int... I>
inline void each_token(Fn&& fn, std::integer_sequence<int, I...>) {
  (fn(std::integral_constant<int, I>{}), ...);
}
template <int T, class Fn>
inline void each_token(Fn&& fn) {
  each_token<T>(fn, std::make_integer_sequence<int, T>{});
}

// A token of the batch, prepared once per call: per block its quants as the
// decode lays them out, [q0-15, q0-15, q16-31, q16-31], and its scale d_x (two
// arrays: 64 bytes a block, so 8 tokens of a 1536-wide row stay in L1).
struct QuantsZ {  // (a struct: a vector of a bare vector type drops its alignment attribute)
  __m512i q;
};
struct SumsZ {
  __m512 s;
};

void prep_bat(const char* x, int64_t nb, QuantsZ* q, float* dx) {
  for (int64_t b = 0; b < nb; ++b) {
    const BlockQ8_1& xb = reinterpret_cast<const BlockQ8_1*>(x)[b];
    const __m512i zq = _mm512_castsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(xb.qs)));
    q[b].q = _mm512_shuffle_i64x2(zq, zq, _MM_SHUFFLE(1, 1, 0, 0));
    dx[b] = h2f(xb.d);
  }
}

// s_x of 4 tokens per block, each in 4 lanes: [s0 x4, s1 x4, s2 x4, s3 x4].
void prep_sums(const char* x, size_t xs, int64_t nb, int n, SumsZ* out) {
  for (int64_t b = 0; b < nb; ++b) {
    alignas(64) float v[16] = {};
    for (int t = 0; t < n; ++t) {
      const float sx = h2f(reinterpret_cast<const BlockQ8_1*>(x + t * xs)[b].s);
      for (int i = 0; i < 4; ++i) v[4 * t + i] = sx;
    }
    out[b].s = _mm512_load_ps(v);
  }
}

// dtile (q4_1_dtile.h) for T tokens with the per-block work shared wider
// (the route of tiles under kYmmFrom tokens, whose per-row setup btile below
// does not repay):
// every lane runs dtile's sequence (the same int32 sums, each block's
// d_w * d_x and m_w * s_x the same float products, the same FMA and adds in
// block order, the same fold), so the outputs have its bits, and thus the
// one-token decode's. The scales are laid out per block once (not per token),
// and the m_w * s_x sums of 4 tokens share one register.
template <int T>
void btile_z(const char* g, const QuantsZ* const* pq, const float* const* pd, const SumsZ* sums, int64_t nb,
           float* const* y) {
  constexpr int kBytes = 4 * sizeof(BlockQ4_1);
  constexpr int G = (T + 3) / 4;  // groups of 4 tokens for the m sums
  // d_w of row i (half 2i of the [d, m] dwords), in that row's quarters; m_w of rows 0..3 per token.
  const __m512i d01 = _mm512_setr_epi32(0, 0, 0, 0, 2, 2, 2, 2, 0, 0, 0, 0, 2, 2, 2, 2);
  const __m512i d23 = _mm512_setr_epi32(4, 4, 4, 4, 6, 6, 6, 6, 4, 4, 4, 4, 6, 6, 6, 6);
  const __m512i midx = _mm512_setr_epi32(1, 3, 5, 7, 1, 3, 5, 7, 1, 3, 5, 7, 1, 3, 5, 7);
  __m512 acc01[T], acc23[T], macc[G];
  for (int t = 0; t < T; ++t) acc01[t] = acc23[t] = _mm512_setzero_ps();
  for (int i = 0; i < G; ++i) macc[i] = _mm512_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    const GroupBlock blk = unpack_block(g + b * kBytes);
    const __m512 h = _mm512_castps256_ps512(blk.h);
    const __m512 hd01 = _mm512_permutexvar_ps(d01, h), hd23 = _mm512_permutexvar_ps(d23, h);
    const __m512 hm = _mm512_permutexvar_ps(midx, h);
    const __m512i u01 = blk.u01, u23 = blk.u23;
    const __m512i st = _mm512_setzero_si512();
    for (int i = 0; i < G; ++i) macc[i] = _mm512_add_ps(macc[i], _mm512_mul_ps(hm, sums[i * nb + b].s));
    for (int t = 0; t < T; ++t) {
      const __m512i xq = pq[t][b].q;
      const __m512 dx = _mm512_set1_ps(pd[t][b]);
      acc01[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dpbusd512(st, u01, xq)), _mm512_mul_ps(hd01, dx), acc01[t]);
      acc23[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dpbusd512(st, u23, xq)), _mm512_mul_ps(hd23, dx), acc23[t]);
    }
  }
  alignas(64) float m[4 * G * 4];
  for (int i = 0; i < G; ++i) _mm512_store_ps(m + 16 * i, macc[i]);
  for (int t = 0; t < T; ++t) _mm_storeu_ps(y[t], _mm_add_ps(fold4(acc01[t], acc23[t]), _mm_load_ps(m + 4 * t)));
}

// A tile's scales of tokens 0-7, per block one vector [v_0 .. v_7 | v_0 .. v_7]
// (d_x or s_x; lanes past the tile's tokens zero): times 2 rows' [w_a x8 | w_b x8]
// it gives 16 (row, token) products a multiply. Tokens 8 on: Tail8.
struct Lanes16 {  // (a struct: a vector of a bare vector type drops its alignment attribute)
  __m512 v;
};

// dtile's [d_x, s_x] of a tile's token 8 on, laid out [d_x x4, s_x x4] to
// meet [d0, d1, d2, d3, m0, m1, m2, m3] (per block, kTokTileY - 8 of them).
struct Tail8 {
  __m256 v;
};

void prep_tail(const char* x, size_t xs, int64_t nb, int E, Tail8* out) {
  for (int64_t b = 0; b < nb; ++b)
    for (int e = 0; e < E; ++e) {
      const BlockQ8_1& xb = reinterpret_cast<const BlockQ8_1*>(x + e * xs)[b];
      out[E * b + e].v = _mm256_insertf128_ps(_mm256_castps128_ps256(_mm_set1_ps(h2f(xb.d))), _mm_set1_ps(h2f(xb.s)), 1);
    }
}

// A tile's token quants per block, tokens side by side ([b][t], kTokTileY slots
// of 32 bytes a block): the hot loop reaches every token from one pointer.
struct Quants32 {
  __m256i q;
};

void prep_tok_quants(const char* x, size_t xs, int64_t nb, int T, Quants32* out) {
  for (int64_t b = 0; b < nb; ++b)
    for (int t = 0; t < T; ++t)
      out[b * kTokTileY + t].q = load32(reinterpret_cast<const BlockQ8_1*>(x + t * xs)[b].qs);
}

// field: the block's d (BlockQ8_1::d) or its d * sum (BlockQ8_1::s).
void prep_tok_scales(const char* x, size_t xs, int64_t nb, int T, uint16_t BlockQ8_1::*field, Lanes16* out) {
  for (int64_t b = 0; b < nb; ++b) {
    alignas(64) float v[16] = {};
    for (int t = 0; t < T && t < 8; ++t) {
      const BlockQ8_1& xb = reinterpret_cast<const BlockQ8_1*>(x + t * xs)[b];
      v[t] = v[8 + t] = h2f(xb.*field);
    }
    out[b].v = _mm512_load_ps(v);
  }
}

// Lane sums started at the bits of 1.5 * 2^23 (kMagic in btile) are the bits
// of the float 1.5 * 2^23 + sum while |sum| < 2^22 (Q4_1: |sum| <= 4 * 15 * 128):
// subtracting 1.5 * 2^23 gives float(sum) exactly, vcvtdq2ps's value, by a
// subtract (an FADD pipe) instead of a convert.
inline __m256 exact_float(__m256i magic_plus_sum) {
  return _mm256_sub_ps(_mm256_castsi256_ps(magic_plus_sum), _mm256_set1_ps(12582912.0f));
}

// dtile (q4_1_dtile.h) for 4 rows x T tokens (kYmmFrom <= T <= kTokTileY),
// each (row, token) in one ymm of 8 lanes: the decode's lanes of that row (u8
// nibbles [q0-15 | q16-31] against the token's q0-31, one vpdpbusd of 4
// products a lane, the exact float of the sum, one FMA by d_w * d_x), folded by
// hsum (fold4's adds), plus the m_w * s_x sum kept apart and added last: the
// same operations in the same order, so the one-token bits. A pre-pass makes
// the products d_w * d_x (the same float products) 16 a multiply and the m
// sums; the hot loop then holds per (row, token) only vpdpbusd, subtract and
// an FMA whose d_w * d_x is an embedded broadcast, and per (row, block) one
// nibble unpack shared by the T tokens. Two passes over the group's blocks
// (rows 0-1, then 2-3) keep 2T accumulators in registers.
template <int T>
void btile(const char* g, const Quants32* xq, const Lanes16* dx, const Lanes16* sx, const Tail8* tx, int64_t nb,
           Lanes16* prod, float* const* y) {
  constexpr int kBytes = 4 * sizeof(BlockQ4_1);
  // Halves d_i at 10i, m_i at 10i + 1 of a group's block (BlockQ4_1 is 10 halves): [a x8, b x8, c x8, d x8].
  auto idx = [](int a, int b, int c, int d) {
    alignas(64) int16_t v[32];
    for (int i = 0; i < 8; ++i) v[i] = int16_t(a), v[8 + i] = int16_t(b), v[16 + i] = int16_t(c), v[24 + i] = int16_t(d);
    return _mm512_load_si512(v);
  };
  const __m512i di = idx(0, 10, 20, 30), mi = idx(1, 11, 21, 31);
  // Pre-pass: per block the products of rows (0, 1) and (2, 3) for tokens
  // 0-7, 16 a multiply, and the m_w * s_x sums in block order; tokens 8 on
  // (E of them) take dtile's own [d_w, m_w] x [d_x, s_x] step, 8 products a
  // multiply (16-lane products there would be mostly idle lanes).
  constexpr int E = T > 8 ? T - 8 : 0;
  static_assert(E <= 2, "tokens 8 on: their products fill one Lanes16 of prod a block, their m sums m[32..48)");
  // The halves as dtile's h but rows apart from scales: [d0, d1, d2, d3, m0, m1, m2, m3].
  const __m512i ti = _mm512_castsi128_si512(_mm_setr_epi16(0, 10, 20, 30, 1, 11, 21, 31));
  __m512 m01a = _mm512_setzero_ps(), m23a = m01a;
  __m256 mt[E > 0 ? E : 1];
  for (int e = 0; e < E; ++e) mt[e] = _mm256_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    _mm_prefetch(g + b * kBytes + 2048, _MM_HINT_T0);  // as unpack_block: the stream 2 KiB ahead
    _mm_prefetch(g + b * kBytes + 2048 + 64, _MM_HINT_T0);
    const __m512i z = _mm512_loadu_si512(g + b * kBytes);
    const __m512i hd = _mm512_permutexvar_epi16(di, z), hm = _mm512_permutexvar_epi16(mi, z);
    const __m512 d01 = _mm512_cvtph_ps(_mm512_castsi512_si256(hd)), d23 = _mm512_cvtph_ps(_mm512_extracti64x4_epi64(hd, 1));
    const __m512 w01 = _mm512_cvtph_ps(_mm512_castsi512_si256(hm)), w23 = _mm512_cvtph_ps(_mm512_extracti64x4_epi64(hm, 1));
    prod[3 * b].v = _mm512_mul_ps(d01, dx[b].v);
    prod[3 * b + 1].v = _mm512_mul_ps(d23, dx[b].v);
    m01a = _mm512_add_ps(m01a, _mm512_mul_ps(w01, sx[b].v));
    m23a = _mm512_add_ps(m23a, _mm512_mul_ps(w23, sx[b].v));
    if constexpr (E > 0) {  // into prod[3b + 2]: 8 floats a token
      const __m256 h = _mm256_cvtph_ps(_mm512_castsi512_si128(_mm512_permutexvar_epi16(ti, z)));
      for (int e = 0; e < E; ++e) {
        const __m256 p = _mm256_mul_ps(h, tx[E * b + e].v);
        mt[e] = _mm256_add_ps(mt[e], p);
        _mm256_store_ps(reinterpret_cast<float*>(&prod[3 * b + 2]) + 8 * e, p);
      }
    }
  }
  alignas(64) float m[32 + 16];  // [pair 0 | pair 1] for tokens 0-7, then per token 8 on [x4 | m sums of rows 0-3]
  _mm512_store_ps(m, m01a);
  _mm512_store_ps(m + 16, m23a);
  for (int e = 0; e < E; ++e) _mm256_store_ps(m + 32 + 8 * e, mt[e]);
  const float* pf = reinterpret_cast<const float*>(prod);
  const __m256i kMagic = _mm256_set1_epi32(0x4B400000);
  for (int pair = 0; pair < 2; ++pair) {
    __m256 acc0[T], acc1[T];  // rows 2 * pair and 2 * pair + 1
    each_token<T>([&](auto t) { acc0[t] = acc1[t] = _mm256_setzero_ps(); });
    for (int64_t b = 0; b < nb; ++b) {
      const char* gb = g + b * kBytes + 2 * pair * sizeof(BlockQ4_1);
      if (pair == 0) {  // the next group's block b (the pre-pass of the next call then reads cache)
        _mm_prefetch(g + (nb + b) * kBytes, _MM_HINT_T0);
        _mm_prefetch(g + (nb + b) * kBytes + 64, _MM_HINT_T0);
      }
      const __m256i w0 = nibbles(reinterpret_cast<const BlockQ4_1*>(gb)->qs);
      const __m256i w1 = nibbles(reinterpret_cast<const BlockQ4_1*>(gb + sizeof(BlockQ4_1))->qs);
      // token t < 8: p[t], the second row p[t + 8]; t >= 8: pt[8 * (t - 8)], pt[8 * (t - 8) + 1]
      const float* p = pf + (3 * b + pair) * 16;
      const float* pt = pf + (3 * b + 2) * 16 + 2 * pair;
      each_token<T>([&](auto t) {
        const float* pp = t < 8 ? p + t : pt + 8 * (t - 8);
        const int o2 = t < 8 ? 8 : 1;
        __m256i q = xq[b * kTokTileY + t].q;
        __asm__("" : "+v"(q));  // one load for both rows (GCC would fold it into each vpdpbusd)
        acc0[t] = _mm256_fmadd_ps(exact_float(_mm256_dpbusd_epi32(kMagic, w0, q)), _mm256_set1_ps(pp[0]), acc0[t]);
        acc1[t] = _mm256_fmadd_ps(exact_float(_mm256_dpbusd_epi32(kMagic, w1, q)), _mm256_set1_ps(pp[o2]), acc1[t]);
      });
    }
    each_token<T>([&](auto t) {
      const float* mp = t < 8 ? m + 16 * pair + t : m + 32 + 8 * (t - 8) + 4 + 2 * pair;
      const int o2 = t < 8 ? 8 : 1;
      y[t][2 * pair] = hsum(acc0[t]) + mp[0];
      y[t][2 * pair + 1] = hsum(acc1[t]) + mp[o2];
    });
  }
}

// Packed Q4_1 (groups of 4 rows): per group of rows, the tokens in tiles of
// at most kTokTileY (as even as they split) by btile; fewer than kYmmFrom
// tokens by btile_z, whose per-row setup is cheaper there.
void gemv_batch_q4_1_packed(const void* W, size_t ws, const void* X, size_t xs, float* Y, size_t ldy, int64_t K,
                            int64_t r0, int64_t r1, int64_t n_tok) {
  constexpr int P = 4;
  const char* w = static_cast<const char*>(W);
  const char* x = static_cast<const char*>(X);
  const int64_t nb = K / QK;
  const bool ymm = n_tok >= kYmmFrom;
  const int64_t n_tiles = ymm ? (n_tok + kTokTileY - 1) / kTokTileY : 0;
  auto tile_size = [&](int64_t i, int64_t t0) { return static_cast<int>((n_tok - t0) / (n_tiles - i)); };
  constexpr int kTail = kTokTileY - 8;
  std::vector<Lanes16> dx(static_cast<size_t>(n_tiles * nb)), sx(dx.size()), prod(static_cast<size_t>(3 * nb));
  std::vector<Quants32> xq(static_cast<size_t>(n_tiles * nb * kTokTileY));
  std::vector<Tail8> tx(static_cast<size_t>(n_tiles * nb * kTail));
  for (int64_t i = 0, t0 = 0; i < n_tiles; t0 += tile_size(i, t0), ++i) {
    const int T = tile_size(i, t0);
    prep_tok_quants(x + t0 * xs, xs, nb, T, xq.data() + i * nb * kTokTileY);
    prep_tok_scales(x + t0 * xs, xs, nb, T, &BlockQ8_1::d, dx.data() + i * nb);
    prep_tok_scales(x + t0 * xs, xs, nb, T, &BlockQ8_1::s, sx.data() + i * nb);
    if (T > 8) prep_tail(x + (t0 + 8) * xs, xs, nb, T - 8, tx.data() + i * nb * kTail);
  }
  const int n_z = ymm ? 0 : static_cast<int>(n_tok);
  std::vector<QuantsZ> zq(static_cast<size_t>(n_z * nb));
  std::vector<float> zd(zq.size());
  std::vector<SumsZ> zs(static_cast<size_t>(nb));
  for (int t = 0; t < n_z; ++t) prep_bat(x + t * xs, nb, zq.data() + t * nb, zd.data() + t * nb);
  if (n_z) prep_sums(x, xs, nb, n_z, zs.data());
  for (int64_t r = r0; r < r1;) {
    if (r + P > r1 || r % P != 0) {  // a row outside whole groups: the decode's own route
      for (int64_t t = 0; t < n_tok; ++t) decode_q4_1_packed(w, ws, x + t * xs, xs, Y + t * ldy, ldy, K, r, r + 1);
      ++r;
      continue;
    }
    const char* g = w + r * ws;
    float* y[kTokTileY];
    for (int64_t i = 0, t0 = 0; i < n_tiles; t0 += tile_size(i, t0), ++i) {
      const int T = tile_size(i, t0);
      for (int t = 0; t < T; ++t) y[t] = Y + (t0 + t) * ldy + r;
      with_tokens<kTokTileY>(T, [&](auto n) {  // T >= kYmmFrom: tiles split evenly from n_tok >= kYmmFrom
        constexpr int N = decltype(n)::value;
        if constexpr (N >= kYmmFrom)
          btile<N>(g, xq.data() + i * nb * kTokTileY, dx.data() + i * nb, sx.data() + i * nb,
                   tx.data() + i * nb * kTail, nb, prod.data(), y);
      });
    }
    if (n_z) {
      const QuantsZ* pq[kYmmFrom];
      const float* pd[kYmmFrom];
      for (int t = 0; t < n_z; ++t) {
        pq[t] = zq.data() + t * nb;
        pd[t] = zd.data() + t * nb;
        y[t] = Y + t * ldy + r;
      }
      with_tokens<kYmmFrom - 1>(n_z, [&](auto n) { btile_z<decltype(n)::value>(g, pq, pd, zs.data(), nb, y); });
    }
    r += P;
  }
}

// dtile_q8 (decode.cpp: Q8_0 in the file layout, 4 rows) for T tokens: the
// rows' quants and d_w read once per block; every lane keeps dtile_q8's
// sequence (the same d_w * d_x products, laid out per block before the
// multiply instead of after), so the outputs have the one-token decode's bits.
template <int T>
void btile_q8(const char* w, size_t ws, const DecQ8* const* px, int64_t nb, float* const* y) {
  const __m512i s01 = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
  const __m512i s23 = _mm512_setr_epi32(2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
  __m512 acc01[T], acc23[T];
  for (int t = 0; t < T; ++t) acc01[t] = acc23[t] = _mm512_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    const Q8Rows r = load_rows4<Q8_0U>(w, ws, b);
    const __m512 hz = _mm512_castps128_ps512(r.dw);
    const __m512 hw01 = _mm512_permutexvar_ps(s01, hz), hw23 = _mm512_permutexvar_ps(s23, hz);
    for (int t = 0; t < T; ++t) {
      const DecQ8& x = px[t][b];
      const __m512 dx = _mm512_broadcast_f32x4(x.dx);
      acc01[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dpbusd512(x.start, r.u01, x.q)), _mm512_mul_ps(hw01, dx), acc01[t]);
      acc23[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dpbusd512(x.start, r.u23, x.q)), _mm512_mul_ps(hw23, dx), acc23[t]);
    }
  }
  for (int t = 0; t < T; ++t) {
    y[t][0] = hsum(_mm512_castps512_ps256(acc01[t]));
    y[t][1] = hsum(hi256(acc01[t]));
    y[t][2] = hsum(_mm512_castps512_ps256(acc23[t]));
    y[t][3] = hsum(hi256(acc23[t]));
  }
}

// Q8_0 in the file layout: rows 4 at a time from r0 (as the decode groups
// them; any grouping gives each row the same bits), the tokens 8 at a time.
void gemv_batch_q8_0(const void* W, size_t ws, const void* X, size_t xs, float* Y, size_t ldy, int64_t K, int64_t r0,
                     int64_t r1, int64_t n_tok) {
  const char* w = static_cast<const char*>(W);
  const char* x = static_cast<const char*>(X);
  const int64_t nb = K / QK;
  std::vector<DecQ8> dq(static_cast<size_t>(n_tok * nb));
  for (int64_t t = 0; t < n_tok; ++t) prep_dec8<Q8_0U>(x + t * xs, nb, dq.data() + t * nb);
  int64_t r = r0;
  for (; r + 4 <= r1; r += 4) {
    for (int64_t t0 = 0; t0 < n_tok; t0 += kTokTile) {
      const DecQ8* px[kTokTile];
      float* y[kTokTile];
      const int T = static_cast<int>(n_tok - t0 < kTokTile ? n_tok - t0 : kTokTile);
      for (int i = 0; i < T; ++i) {
        px[i] = dq.data() + (t0 + i) * nb;
        y[i] = Y + (t0 + i) * ldy + r;
      }
      const char* g = w + r * ws;
      with_tokens<kTokTile>(T, [&](auto n) { btile_q8<decltype(n)::value>(g, ws, px, nb, y); });
    }
  }
  for (; r < r1; ++r)  // the decode's own route for the rows left
    for (int64_t t = 0; t < n_tok; ++t) decode_q8_0(w, ws, x + t * xs, xs, Y + t * ldy, ldy, K, r, r + 1);
}

}  // namespace

void fill_gemv_batch(KernelTable& t) {
  // Only where the gemm_packed layout is the one dtile reads (fill_gemm: Q4_1 in groups of 4).
  if (t.pack_rows[W_Q4_1] == 4) t.gemv_batch_packed[W_Q4_1] = gemv_batch_q4_1_packed;
  // Q8_0 keeps the file layout (fill_gemm), which dtile_q8 reads.
  if (t.pack_rows[W_Q8_0] == 0) t.gemv_batch[W_Q8_0] = gemv_batch_q8_0;
}

}  // namespace bluelm::kernels::avx512
