// NEON i8mm Q4_K, Q5_K and Q6_K gemms on 4-row groups whose quant fields are
// interleaved in 8-byte words (kernels/kquant_pack.h, qword = 8): one 16-byte
// load is 8 consecutive quant bytes of rows 0,1 (and the next of rows 2,3),
// SMMLA's 2x8 operand as it lies. Prompts run token pairs whose Q8_K quants
// the call interleaves once the same way (interleave_pairs), so one SMMLA adds
// the 2 rows x 2 tokens x 8 products that SDOT by element needs two
// instructions for; a lone token (decode, an odd last one) runs the dotprod
// kernel of arm/kquant_tiles.h on this layout (each pair of loads unzipped
// into two 4-byte words of 4 rows, word4<8>). Sums are exact integers scaled
// and folded into floats as arm/kquant_tiles.h does (shared scales/finish),
// so the results are the scalar reference's bits (kernels/scalar/kquants.h).
#include <cstring>
#include <type_traits>
#include <vector>

#include "kernels/arm/kquant_tiles.h"
#include "kernels/neon_i8mm/neon_i8mm.h"

namespace bluelm::kernels::neon_i8mm {
namespace {

constexpr int R = kRowsNeon;
constexpr int kQWordMm = 8;  // the quant fields' word: 2 rows x 8 bytes per load

inline int8x16_t s8(uint8x16_t v) { return vreinterpretq_s8_u8(v); }

// The driver's token passes (k_group: chunks of V4Rows::kMaxT tokens from a
// multiple of it; KTileNeon runs passes of 2 from the first) give every pair
// tile tokens 2p, 2p+1 and a lone-token tile only an unpaired last token, so
// the pairs of interleave_pairs are the tiles'.
static_assert(V4Rows::kMaxT % 2 == 0, "token tiles start at even tokens");

// 8 activation bytes, elements e..e+7, of a token pair interleaved by
// interleave_pairs: [first token's, second's]. The pair's stream of 512 bytes
// lies in the first token's quants (elements 0..127) then the second's.
inline int8x16_t xpair(const KTok* const* tk, int64_t b, int e) {
  return vld1q_s8(e < 128 ? tk[0][b].x->qs + 2 * e : tk[1][b].x->qs + 2 * (e - 128));
}
// Tokens 2p, 2p+1 of X (n_tok rows of Q8_K, xs bytes apart) into out with
// their quants interleaved in 8-byte words (xpair's order); d and an unpaired
// last token as they are. With kPairBsums the bsums of sub-block s of the two
// tokens become neighbours too (s < 8 in the first token's bsums, at 2s, 2s+1;
// the rest in the second's), so a prep that maps bsums element-wise gives the
// pair's terms of a sub-block as 2 adjacent int32 (K6Mm's start values);
// otherwise the bsums stay as they are.
template <bool kPairBsums>
void interleave_pairs(const char* X, size_t xs, int64_t n_tok, int64_t nb, char* out) {
  std::memcpy(out, X, size_t(n_tok) * xs);
  for (int64_t t = 0; t + 1 < n_tok; t += 2)
    for (int64_t b = 0; b < nb; ++b) {
      const BlockQ8_K& a = reinterpret_cast<const BlockQ8_K*>(X + t * xs)[b];
      const BlockQ8_K& c = reinterpret_cast<const BlockQ8_K*>(X + (t + 1) * xs)[b];
      BlockQ8_K& oa = reinterpret_cast<BlockQ8_K*>(out + t * xs)[b];
      BlockQ8_K& oc = reinterpret_cast<BlockQ8_K*>(out + (t + 1) * xs)[b];
      for (int k = 0; k < 16; ++k) {  // elements 16k..16k+15: stream bytes 32k..32k+31
        const int64x2_t va = vreinterpretq_s64_s8(vld1q_s8(a.qs + 16 * k));
        const int64x2_t vc = vreinterpretq_s64_s8(vld1q_s8(c.qs + 16 * k));
        int8_t* o = k < 8 ? oa.qs + 32 * k : oc.qs + 32 * (k - 8);
        vst1q_s8(o, vreinterpretq_s8_s64(vzip1q_s64(va, vc)));
        vst1q_s8(o + 16, vreinterpretq_s8_s64(vzip2q_s64(va, vc)));
      }
      if constexpr (kPairBsums) {
        const int16x8x2_t lo = vzipq_s16(vld1q_s16(a.bsums), vld1q_s16(c.bsums));
        const int16x8x2_t hi = vzipq_s16(vld1q_s16(a.bsums + 8), vld1q_s16(c.bsums + 8));
        vst1q_s16(oa.bsums, lo.val[0]);
        vst1q_s16(oa.bsums + 8, lo.val[1]);
        vst1q_s16(oc.bsums, hi.val[0]);
        vst1q_s16(oc.bsums + 8, hi.val[1]);
      }
    }
}

// The 4 row sums of a token pair's SMMLA sums (rows 0,1 in p01 = [r0t0, r0t1,
// r1t0, r1t1], rows 2,3 in p23) as a lane per row, token 0 (Second = false) or 1.
template <bool Second>
inline int32x4_t rows_of(int32x4_t p01, int32x4_t p23) {
  return Second ? vuzp2q_s32(p01, p23) : vuzp1q_s32(p01, p23);
}

// Q4_K (kHigh = false) and Q5_K on the 8-byte layout.
template <bool kHigh>
struct K4Mm : KTileNeon<K4Mm<kHigh>> {
  using Base = K4Neon<kHigh, kQWordMm>;
  static constexpr GgmlType kType = Base::kType;
  static constexpr size_t kBlock = Base::kBlock;
  static constexpr int kQWord = kQWordMm;
  static void prep(const BlockQ8_K& x, int32_t* w) { Base::prep(x, w); }

  // Chunk J (qs words 4J..4J+3) of 4 rows: lo[2m + p] / hi[2m + p] are word
  // 4J+m of rows 2p, 2p+1, elements 64J + 8m (low nibbles) and 64J + 32 + 8m.
  template <int J>
  __attribute__((always_inline)) static void quants(const char* gb, uint8x16_t* lo, uint8x16_t* hi) {
    const uint8x16_t m4 = vdupq_n_u8(0x0f);
#pragma GCC unroll 8
    for (int k = 0; k < 8; ++k) {
      const int m = k / 2, p = k % 2;
      const uint8x16_t v = ldu8(gb + Base::kQs * R + (4 * J + m) * 8 * R + 16 * p);
      lo[k] = vandq_u8(v, m4);
      hi[k] = vshrq_n_u8(v, 4);
      if constexpr (kHigh) {
        const uint8x16_t h = ldu8(gb + 16 * R + m * 8 * R + 16 * p);
        lo[k] = vorrq_u8(lo[k], bit_to_16<2 * J>(h));
        hi[k] = vorrq_u8(hi[k], bit_to_16<2 * J + 1>(h));
      }
    }
  }

  // Chunk J of a token pair into isum[0..1].
  template <int J>
  __attribute__((always_inline)) static void chunk(const char* gb, const KTok* const* tk, int64_t b,
                                                    const int32x4_t* sc, int32x4_t* isum) {
    uint8x16_t lo[8], hi[8];
    quants<J>(gb, lo, hi);
    int32x4_t a01 = vdupq_n_s32(0), a23 = a01, c01 = a01, c23 = a01;
#pragma GCC unroll 4
    for (int m = 0; m < 4; ++m) {
      const int8x16_t xl = xpair(tk, b, 64 * J + 8 * m), xh = xpair(tk, b, 64 * J + 32 + 8 * m);
      a01 = vmmlaq_s32(a01, s8(lo[2 * m]), xl);
      a23 = vmmlaq_s32(a23, s8(lo[2 * m + 1]), xl);
      c01 = vmmlaq_s32(c01, s8(hi[2 * m]), xh);
      c23 = vmmlaq_s32(c23, s8(hi[2 * m + 1]), xh);
    }
    isum[0] = vmlaq_s32(vmlaq_s32(isum[0], rows_of<false>(a01, a23), sc[2 * J]), rows_of<false>(c01, c23),
                        sc[2 * J + 1]);
    isum[1] = vmlaq_s32(vmlaq_s32(isum[1], rows_of<true>(a01, a23), sc[2 * J]), rows_of<true>(c01, c23),
                        sc[2 * J + 1]);
  }

  // Super-block b (its group at gb) of T = 1 (the dotprod kernel on this
  // layout) or 2 tokens into acc.
  template <int T>
  __attribute__((always_inline)) static void block(const char* gb, const KTok* const* tk, int64_t b,
                                                    float32x4_t* acc) {
    if constexpr (T == 1) {
      Base::template block<1>(gb, tk, b, acc);
    } else {
      int32x4_t sc[8], mn[8];
      Base::scales(gb, sc, mn);
      int32x4_t isum[2] = {vdupq_n_s32(0), vdupq_n_s32(0)};
      chunk<0>(gb, tk, b, sc, isum);
      chunk<1>(gb, tk, b, sc, isum);
      chunk<2>(gb, tk, b, sc, isum);
      chunk<3>(gb, tk, b, sc, isum);
      Base::template finish<2>(gb, tk, b, mn, isum, acc);
    }
  }
};

// Q6_K on the 8-byte layout: levels 0..63 against the activations, the -32
// offset as each sub-block's -32 bsum term (prep) in the exact int32 isum:
// token pairs start each sub-block's SMMLA at it (the pair's two terms are
// adjacent, interleave_pairs<true>: one LD1R).
struct K6Mm : KTileNeon<K6Mm> {
  using Base = K6Neon<kQWordMm>;
  static constexpr GgmlType kType = Base::kType;
  static constexpr size_t kBlock = Base::kBlock;
  static constexpr int kQWord = kQWordMm;
  static constexpr bool kPairBsums = true;
  static void prep(const BlockQ8_K& x, int32_t* w) { Base::prep(x, w); }

  // [first token's start, second's] twice for sub-block s of the pair tk.
  static int32x4_t start2(const KTok* const* tk, int64_t b, int s) {
    const int32_t* w = s < 8 ? tk[0][b].w + 2 * s : tk[1][b].w + 2 * (s - 8);
    return vreinterpretq_s32_s64(vld1q_dup_s64(reinterpret_cast<const int64_t*>(w)));
  }

  // Super-block b (its group at gb) of T = 1 (the dotprod kernel on this
  // layout) or 2 tokens into acc.
  template <int T>
  __attribute__((always_inline)) static void block(const char* gb, const KTok* const* tk, int64_t b,
                                                    float32x4_t* acc) {
    if constexpr (T == 1) {
      Base::template block<1>(gb, tk, b, acc);
      return;
    }
    const char* ql = gb;
    const char* qh = gb + 128 * R;
    int32x4_t sc[16];
    Base::scales(gb, sc);
    int32x4_t isum[2] = {vdupq_n_s32(0), vdupq_n_s32(0)};
    // ql word 8h + 4gp + m: elements 128h + 32gp + 8m (low nibbles; qh bits
    // 2gp) and 64 further (high nibbles; qh bits 2gp + 4) of qh word 4h + m;
    // words m = 2a, 2a + 1 are sub-blocks s0 (low) and s0 + 4 (high).
#pragma GCC unroll 2
    for (int h = 0; h < 2; ++h)
#pragma GCC unroll 2
      for (int gp = 0; gp < 2; ++gp)
#pragma GCC unroll 2
        for (int a = 0; a < 2; ++a) {
          uint8x16_t u0[4], u1[4];  // [2j + p]: word 2a + j of rows 2p, 2p+1
#pragma GCC unroll 4
          for (int k = 0; k < 4; ++k) {
            const int m = 2 * a + k / 2, p = k % 2;
            q6_levels(ldu8(ql + (8 * h + 4 * gp + m) * 8 * R + 16 * p), ldu8(qh + (4 * h + m) * 8 * R + 16 * p), gp,
                      &u0[k], &u1[k]);
          }
          const int e0 = 128 * h + 32 * gp + 16 * a, e1 = e0 + 64;
          const int s0 = e0 / 16, s1 = e1 / 16;
          const int8x16_t xa = xpair(tk, b, e0), xb = xpair(tk, b, e0 + 8);
          const int8x16_t xc = xpair(tk, b, e1), xd = xpair(tk, b, e1 + 8);
          const int32x4_t o0 = start2(tk, b, s0), o1 = start2(tk, b, s1);
          const int32x4_t p01 = vmmlaq_s32(vmmlaq_s32(o0, s8(u0[0]), xa), s8(u0[2]), xb);
          const int32x4_t p23 = vmmlaq_s32(vmmlaq_s32(o0, s8(u0[1]), xa), s8(u0[3]), xb);
          const int32x4_t q01 = vmmlaq_s32(vmmlaq_s32(o1, s8(u1[0]), xc), s8(u1[2]), xd);
          const int32x4_t q23 = vmmlaq_s32(vmmlaq_s32(o1, s8(u1[1]), xc), s8(u1[3]), xd);
          isum[0] = vmlaq_s32(vmlaq_s32(isum[0], rows_of<false>(p01, p23), sc[s0]), rows_of<false>(q01, q23),
                              sc[s1]);
          isum[1] = vmlaq_s32(vmlaq_s32(isum[1], rows_of<true>(p01, p23), sc[s0]), rows_of<true>(q01, q23),
                              sc[s1]);
        }
    Base::template finish<2>(gb, tk, b, isum, acc);
  }
};

// Whether Fmt wants the pair's bsums interleaved (K6Mm::kPairBsums).
template <class Fmt, class = void>
struct PairBsums : std::false_type {};
template <class Fmt>
struct PairBsums<Fmt, std::void_t<decltype(Fmt::kPairBsums)>> : std::bool_constant<Fmt::kPairBsums> {};

// The gemm: a prompt's activations interleaved in token pairs first (a copy
// of the call's activations, freed on return), then common/kquant_driver.h.
template <class Fmt, bool Packed>
void gemm_mm(const void* W, size_t ws, const void* X, size_t xs, float* Y, size_t ldy, int64_t K, int64_t r0,
             int64_t r1, int64_t n_tok) {
  if (n_tok < 2) return k_gemm<Fmt, V4Rows, Packed>(W, ws, X, xs, Y, ldy, K, r0, r1, n_tok);
  std::vector<char> xi(size_t(n_tok) * xs);
  interleave_pairs<PairBsums<Fmt>::value>(static_cast<const char*>(X), xs, n_tok, K / QK_K, xi.data());
  k_gemm<Fmt, V4Rows, Packed>(W, ws, xi.data(), xs, Y, ldy, K, r0, r1, n_tok);
}

template <GgmlType T, class Fmt>
void set_entries(KernelTable& t) {
  const int slot = weight_slot(T);
  t.gemm[slot] = gemm_mm<Fmt, false>;
  t.gemm_packed[slot] = gemm_mm<Fmt, true>;
  t.pack_rows[slot] = R;
  t.pack[slot] = kquant_pack_rows<T, R, Fmt::kQWord>;
  t.unpack[slot] = kquant_unpack_rows<T, R, Fmt::kQWord>;
}

}  // namespace

void fill_kquants(KernelTable& t) {
  set_entries<GgmlType::Q4_K, K4Mm<false>>(t);
  set_entries<GgmlType::Q5_K, K4Mm<true>>(t);
  set_entries<GgmlType::Q6_K, K6Mm>(t);
}

}  // namespace bluelm::kernels::neon_i8mm
