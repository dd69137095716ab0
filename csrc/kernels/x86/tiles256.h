// The 256-bit quantised tiles of the AVX2 and AVX-512 tables: R weight rows x
// T tokens over all K blocks. Q8_0 and Q4_1 in the order of ggml's x86 vec_dot (each
// block's products summed exactly in 8 int32 lanes of 4 consecutive elements,
// each lane scaled into its own float accumulator by one FMA, the lanes folded
// by hsum; Q4_1's m * s term summed apart and added last). Only how the int32
// lane sums are formed differs per table, in the Dot policy:
//   __m256i start(__m256i q)          per token block: the lane sums' start value
//   Dot::W prep_w(__m256i s)          per Q8_0 weight block (shared by the tokens)
//   __m256i dot_ss(const W&, __m256i q, __m256i start)  signed x signed lane sums (Q8_0)
//   __m256i dot_us(__m256i u, __m256i q) unsigned nibbles x signed lane sums (Q4_1)
// The sums are exact integers, so every policy gives the same bits.
// The weight block is a second policy (Blk, below): Q8_0Tile also runs Q5_0
// (signed levels q - 16: ggml's x86 vec_dot order is Q8_0's), Q4_1Tile also
// Q5_1 (unsigned levels 0..31, [d, m] at the head as Q4_1's).
// Block b of tile row i is at w + i*rs + b*bs (common/gemm_driver.h).
#pragma once
#include <cstring>

#include "kernels/x86/common.h"

namespace bluelm::kernels {
namespace {

// The 32 high bits of a Q5_0/Q5_1 block as bytes in element order: 0x10 where set.
inline __m256i q5_high(const uint8_t* qh) {
  uint32_t h;
  std::memcpy(&h, qh, 4);
  const __m256i spread = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1,  //
                                          2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
  const __m256i bytes = _mm256_shuffle_epi8(_mm256_set1_epi32(int(h)), spread);
  const __m256i bit = _mm256_set1_epi64x(int64_t(0x8040201008040201ull));
  return _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(bytes, bit), bit), _mm256_set1_epi8(0x10));
}

// Weight blocks of 32 as the tiles read them: `quants` gives the 32 levels in
// element order (signed for Q8_0Tile, unsigned for Q4_1Tile); the fp16 d (and
// m) lead the block.
struct Q8_0Blk {
  using Block = BlockQ8_0;
  static __m256i quants(const char* wb) { return load32(reinterpret_cast<const Block*>(wb)->qs); }
};
struct Q5_0Blk {
  using Block = BlockQ5_0;
  static __m256i quants(const char* wb) {
    const Block* b = reinterpret_cast<const Block*>(wb);
    return _mm256_sub_epi8(_mm256_or_si256(nibbles(b->qs), q5_high(b->qh)), _mm256_set1_epi8(16));
  }
};
struct Q4_1Blk {
  using Block = BlockQ4_1;
  static __m256i quants(const char* wb) { return nibbles(reinterpret_cast<const Block*>(wb)->qs); }
};
struct Q5_1Blk {
  using Block = BlockQ5_1;
  static __m256i quants(const char* wb) {
    const Block* b = reinterpret_cast<const Block*>(wb);
    return _mm256_or_si256(nibbles(b->qs), q5_high(b->qh));
  }
};

template <class Dot, class Blk = Q8_0Blk>
struct Q8_0Tile {
  static constexpr size_t kBlock = sizeof(typename Blk::Block);
  template <int R, int T>
  static void tile(const char* w, size_t rs, size_t bs, const char* x, size_t xs, float* y, size_t ldy,
                   int64_t K) {
    const int64_t nb = K / QK;
    __m256 acc[R][T];
    for (int i = 0; i < R; ++i)
      for (int t = 0; t < T; ++t) acc[i][t] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; ++b) {
      __m256i q[T], start[T];
      float dx[T];
#pragma GCC unroll 4
      for (int t = 0; t < T; ++t) {
        const BlockQ8_0* xb = reinterpret_cast<const BlockQ8_0*>(x + t * xs) + b;
        q[t] = load32(xb->qs);
        start[t] = Dot::start(q[t]);
        dx[t] = _mm_cvtss_f32(head2(xb));
      }
#pragma GCC unroll 8
      for (int i = 0; i < R; ++i) {
        const char* wb = w + i * rs + b * bs;
        const typename Dot::W s = Dot::prep_w(Blk::quants(wb));
        const float dw = _mm_cvtss_f32(head2(wb));
#pragma GCC unroll 4
        for (int t = 0; t < T; ++t)
          acc[i][t] = scale_add(acc[i][t], Dot::dot_ss(s, q[t], start[t]), _mm256_set1_ps(dw * dx[t]));
      }
    }
    for (int i = 0; i < R; ++i)
      for (int t = 0; t < T; ++t) y[t * ldy + i] = hsum(acc[i][t]);
  }
};

template <class Dot, class Blk = Q4_1Blk>
struct Q4_1Tile {
  static constexpr size_t kBlock = sizeof(typename Blk::Block);
  template <int R, int T>
  static void tile(const char* w, size_t rs, size_t bs, const char* x, size_t xs, float* y, size_t ldy,
                   int64_t K) {
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
      q[0] = load32(x0->qs);
      if (T == 1) {
        xds = head2(x0);
      } else {
        const BlockQ8_1* x1 = reinterpret_cast<const BlockQ8_1*>(x + xs) + b;
        q[T - 1] = load32(x1->qs);
        uint32_t h0, h1;
        std::memcpy(&h0, x0, 4);
        std::memcpy(&h1, x1, 4);
        xds = _mm_cvtph_ps(_mm_cvtsi64_si128(int64_t(uint64_t(h1) << 32 | h0)));
      }
#pragma GCC unroll 8
      for (int i = 0; i < R; ++i) {
        const char* wb = w + i * rs + b * bs;
        const __m256i n = Blk::quants(wb);
        __m128 wdm = head2(wb);  // [d_w, m_w, ...]
        if (T == 2) wdm = _mm_movelh_ps(wdm, wdm);
        const __m128 prod = _mm_mul_ps(wdm, xds);  // [d_w*d_x0, m_w*s_x0, d_w*d_x1, m_w*s_x1]
        macc[i] = _mm_add_ps(macc[i], prod);
        acc[i][0] = scale_add(acc[i][0], Dot::dot_us(n, q[0]), _mm256_broadcastss_ps(prod));
        if (T == 2)
          acc[i][T - 1] = scale_add(acc[i][T - 1], Dot::dot_us(n, q[T - 1]),
                                    _mm256_broadcastss_ps(_mm_movehl_ps(prod, prod)));
      }
    }
    for (int i = 0; i < R; ++i) {
      alignas(16) float m[4];
      _mm_store_ps(m, macc[i]);
      for (int t = 0; t < T; ++t) y[t * ldy + i] = hsum(acc[i][t]) + m[1 + 2 * t];
    }
  }
};

// Q4_0 and IQ4_NL in the order of the scalar reference (llama.cpp's repacked
// Q4_0 / IQ4_NL gemm): each block's products summed exactly (Lv, below), then
// one FMA per output. The 8 lane sums of 4 outputs are folded by hadd into one
// int32 per output, so 4 outputs share a conversion and an FMA. (The AVX2
// table's; AVX-512 reads Q4_0 in 16-row groups.)
inline __m128i fold4_epi32(__m256i a, __m256i b, __m256i c, __m256i d) {
  const __m256i h = _mm256_hadd_epi32(_mm256_hadd_epi32(a, b), _mm256_hadd_epi32(c, d));
  return _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
}

// A 4-bit block's levels as Q4_0Tile dots them: W prep(qs) per weight block,
// __m256i bias(q) per token block, __m256i dot(W, q, bias): int16 pair sums.
// Q4_0: vpmaddubsw of the nibbles against the activations, minus 8 * sum(q).
struct Q4_0Lv {
  using Block = BlockQ4_0;
  using W = __m256i;
  static W prep(const uint8_t* qs) { return nibbles(qs); }
  static __m256i bias(__m256i q) { return _mm256_maddubs_epi16(_mm256_set1_epi8(8), q); }
  static __m256i dot(const W& n, __m256i q, __m256i c) { return _mm256_sub_epi16(_mm256_maddubs_epi16(n, q), c); }
};
// IQ4_NL: the nibbles index kIQ4NLValues; |w| against q with w's signs (|w|, |q| <= 127).
struct IQ4_NLLv {
  using Block = BlockIQ4_NL;
  struct W {
    __m256i v, a;  // the levels, their magnitudes
  };
  static W prep(const uint8_t* qs) {
    const __m256i t = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(kIQ4NLValues)));
    const __m256i v = _mm256_shuffle_epi8(t, nibbles(qs));
    return {v, _mm256_abs_epi8(v)};
  }
  static __m256i bias(__m256i) { return _mm256_setzero_si256(); }
  static __m256i dot(const W& w, __m256i q, __m256i) { return _mm256_maddubs_epi16(w.a, _mm256_sign_epi8(q, w.v)); }
};

template <class Lv = Q4_0Lv>
struct Q4_0Tile {
  static constexpr size_t kBlock = sizeof(typename Lv::Block);
  template <int R, int T>
  static void tile(const char* w, size_t rs, size_t bs, const char* x, size_t xs, float* y,
                   size_t ldy, int64_t K) {
    constexpr int N = R * T, G = (N + 3) / 4;  // outputs o = i * T + t, in groups of 4
    const int64_t nb = K / QK;
    __m128 acc[G];
    for (int g = 0; g < G; ++g) acc[g] = _mm_setzero_ps();
    for (int64_t b = 0; b < nb; ++b) {
      __m256i q[T], c[T];
      float dx[T];
#pragma GCC unroll 4
      for (int t = 0; t < T; ++t) {
        const BlockQ8_0* xb = reinterpret_cast<const BlockQ8_0*>(x + t * xs) + b;
        q[t] = load32(xb->qs);
        dx[t] = _mm_cvtss_f32(head2(xb));
        c[t] = Lv::bias(q[t]);  // shared by the rows
      }
      __m256i s32[4 * G];
      alignas(16) float sc[4 * G];
#pragma GCC unroll 8
      for (int i = 0; i < R; ++i) {
        const typename Lv::Block* wb = reinterpret_cast<const typename Lv::Block*>(w + i * rs + b * bs);
        const typename Lv::W n = Lv::prep(wb->qs);
        const float dw = _mm_cvtss_f32(head2(wb));
#pragma GCC unroll 4
        for (int t = 0; t < T; ++t) {
          const __m256i p = Lv::dot(n, q[t], c[t]);
          s32[i * T + t] = _mm256_madd_epi16(p, _mm256_set1_epi16(1));
          sc[i * T + t] = dw * dx[t];
        }
      }
      for (int o = N; o < 4 * G; ++o) {
        s32[o] = _mm256_setzero_si256();
        sc[o] = 0.0f;
      }
#pragma GCC unroll 4
      for (int g = 0; g < G; ++g) {
        const __m128i isum = fold4_epi32(s32[4 * g], s32[4 * g + 1], s32[4 * g + 2], s32[4 * g + 3]);
        acc[g] = _mm_fmadd_ps(_mm_cvtepi32_ps(isum), _mm_load_ps(sc + 4 * g), acc[g]);
      }
    }
    alignas(16) float out[4 * G];
    for (int g = 0; g < G; ++g) _mm_store_ps(out + 4 * g, acc[g]);
    for (int i = 0; i < R; ++i)
      for (int t = 0; t < T; ++t) y[t * ldy + i] = out[i * T + t];
  }
};

}  // namespace
}  // namespace bluelm::kernels
