// The Q2_K, Q3_K and IQ4_XS gemm of the x86 tables on row-interleaved groups
// (kernels/kquant_pack.h), in the design of x86/kquant_tiles.h (read it first:
// rows in SIMD lanes, common/kquant_driver.h drives, the same traits class V).
// Per super-block and token, each sub-block's products are summed exactly in
// int32 per row, times the row's integer sub-block scale, added up (isum), then
//   acc = fma(d_w * d_x, (float)isum, acc)
//   Q2_K: imin = sum of min * bsum by int16 pair dots;  acc = fma(-(dmin_w * d_x), (float)imin, acc)
// which is the scalar reference's sequence (kernels/scalar/kquants.h), so the
// results are its bits. Levels as the dots take them:
//   Q2_K: 0..3 (dot4);  Q3_K: q + 4 in 0..7 (dot4), the -4 in the start value
//   -4 * bsum;  IQ4_XS: the signed table values (sdot4 of |w| and w's signs),
//   on AVX-512 the values plus 128 (IQ4XSBiasedFmt, at the end).
// Prompt tiles take tile_dot4 (the embedded broadcast on AVX-512: the 1B's
// Q3_K_M and Q2_K pp512 1.06-1.16x, two runs of 10 alternated pairs each).
// Besides x86/kquant_tiles.h's traits, IQ4XSFmt needs (V::R == 8 only):
//   I table16(const int8_t* p): 16 bytes in each 128-bit half;  I lookup(I table, I nib)
//   I abs8(I);  I sdot4(I acc, I aw, I w, const int8_t* x): acc + per lane
//     sum_k w.byte[k] * x[k] (aw = abs8(w), |w|, |x| <= 127)
#pragma once
#include <cstring>

#include "kernels/x86/kquant_tiles.h"

namespace bluelm::kernels {
namespace {

// v shifted by d bits (d > 0 left, constant after unrolling) per 16-bit lane:
// a field or bit of each byte moved to where its use takes it.
template <class V>
inline typename V::I shift16(typename V::I v, int d) {
  switch (d) {
    case -7: return V::template shr16<7>(v);
    case -6: return V::template shr16<6>(v);
    case -5: return V::template shr16<5>(v);
    case -4: return V::template shr16<4>(v);
    case -3: return V::template shr16<3>(v);
    case -2: return V::template shr16<2>(v);
    case -1: return V::template shr16<1>(v);
    case 0: return v;
    case 1: return V::template shl16<1>(v);
    case 2: return V::template shl16<2>(v);
    case 3: return V::template shl16<3>(v);
    case 4: return V::template shl16<4>(v);
    case 5: return V::template shl16<5>(v);
    case 6: return V::template shl16<6>(v);
    default: return V::template shl16<7>(v);
  }
}

// Q3_K sub-block scale j (0..15, constant after unrolling) of the R rows, signed
// (sc - 32), as R bytes, from the 12 interleaved scale bytes at s (low 4 bits:
// bytes 0..7, low then high nibble; high 2 bits: bytes 8..11, 2 bits per group
// of 4 sub-blocks).
template <class V>
inline __m128i q3k_scale(const char* s, int j) {
  const __m128i m4 = _mm_set1_epi8(0x0f);
  const __m128i lo = j < 8 ? _mm_and_si128(V::bytes(s + j * V::R), m4)
                           : _mm_and_si128(_mm_srli_epi16(V::bytes(s + (j - 8) * V::R), 4), m4);
  const __m128i h = V::bytes(s + (8 + j % 4) * V::R);
  __m128i hi;
  switch (j / 4) {  // bits 2(j/4)..+1 to bits 4..5
    case 0: hi = _mm_slli_epi16(h, 4); break;
    case 1: hi = _mm_slli_epi16(h, 2); break;
    case 2: hi = h; break;
    default: hi = _mm_srli_epi16(h, 2); break;
  }
  return _mm_sub_epi8(_mm_or_si128(lo, _mm_and_si128(hi, _mm_set1_epi8(0x30))), _mm_set1_epi8(32));
}

// Q2_K (kQ3 = false) and Q3_K: 16 sub-blocks of 16; the 2-bit field s of qs
// byte l of half n is element 128n + 32s + l; Q3_K's high bit of that element
// is bit 4n + s of hmask byte l.
template <class V, bool kQ3>
struct K23Fmt {
  static constexpr GgmlType kType = kQ3 ? GgmlType::Q3_K : GgmlType::Q2_K;
  static constexpr size_t kBlock = kQ3 ? sizeof(BlockQ3_K) : sizeof(BlockQ2_K);
  static constexpr int kQs = kQ3 ? 32 : 16, kScales = kQ3 ? 96 : 0, kD = kQ3 ? 108 : 80;

  // On 16 lanes one token is decoded word by word (decode_isum): Q3_K's hmask
  // word m, then qs word m of each half n. The group is stored in that read
  // order (kquant_driver.h KReorders), Q3_K's scales first. Chunks of 4*R
  // bytes: Q2_K 0-3 scales, 4 + 8n + m qs; Q3_K m hmask, 8 + 8n + m qs, 24-26
  // scales; d (and dmin) after them, where they were.
  static constexpr bool kWordOrder = V::R == 16;
  static constexpr int kOrdered = kWordOrder ? (kQ3 ? 27 : 20) : 0;
  static constexpr int chunk(int p) {
    if constexpr (kQ3) {
      const int m = (p - 3) / 3, f = (p - 3) % 3;
      return p < 3 ? 24 + p : f == 0 ? m : 8 + 8 * (f - 1) + m;
    } else {
      return p < 4 ? p : 4 + 8 * ((p - 4) % 2) + (p - 4) / 2;
    }
  }
  // Where Q3_K's hmask word m, the qs word m of half n and the scales are, in chunks.
  static constexpr int hmask_at(int m) { return kWordOrder ? 3 + 3 * m : m; }
  static constexpr int qs_at(int n, int m) {
    return !kWordOrder ? kQs / 4 + 8 * n + m : kQ3 ? 4 + 3 * m + n : 4 + 2 * m + n;
  }
  static constexpr int kScalesAt = kWordOrder && kQ3 ? 0 : kScales / 4;

  static void prep(const BlockQ8_K& x, int32_t* w) {
    if constexpr (kQ3) {
      for (int s = 0; s < 16; ++s) w[s] = -4 * x.bsums[s];
    } else {
      for (int p = 0; p < 8; ++p)
        w[p] = int32_t(uint32_t(uint16_t(x.bsums[2 * p])) | (uint32_t(uint16_t(x.bsums[2 * p + 1])) << 16));
    }
  }

  // Sub-block j's scale of the R rows as int32 lanes (Q2_K: the low nibble of byte j).
  static typename V::I scale(const char* gb, int j) {
    if constexpr (kQ3) return V::widen_s8(q3k_scale<V>(gb + kScalesAt * 4 * V::R, j));
    else return V::widen_u8(_mm_and_si128(V::bytes(gb + j * V::R), _mm_set1_epi8(0x0f)));
  }

  // isum[t] of super-block b for each of the T tokens (prompts, and 8-lane
  // decode): field s of each qs byte shifted to bits 0..1 (Q3_K's high bit
  // or-ed in at bit 2), its level vectors serving every token.
  template <int T>
  __attribute__((always_inline)) static void tokens_isum(const char* gb, const KTok* const* tk, int64_t b,
                                                         typename V::I* isum) {
    using I = typename V::I;
    constexpr int R = V::R;
    for (int t = 0; t < T; ++t) isum[t] = V::zero();
#pragma GCC unroll 2
    for (int n = 0; n < 2; ++n) {
#pragma GCC unroll 4
      for (int s = 0; s < 4; ++s) {  // elements 128n + 32s + 4m .. +3 in word m: sub-blocks s0 (m < 4), s0 + 1
        I u[8];
#pragma GCC unroll 8
        for (int m = 0; m < 8; ++m) {
          u[m] = V::and_(shift16<V>(V::load(gb + qs_at(n, m) * 4 * R), -2 * s), V::set8(0x03));
          if constexpr (kQ3)  // bit 4n + s of the hmask byte to bit 2
            u[m] = V::or_(u[m], V::and_(shift16<V>(V::load(gb + hmask_at(m) * 4 * R), 2 - (4 * n + s)),
                                        V::set8(0x04)));
        }
        const int s0 = 8 * n + 2 * s;
        const I sc0 = scale(gb, s0), sc1 = scale(gb, s0 + 1);
#pragma GCC unroll 8
        for (int t = 0; t < T; ++t) {
          const KTok& k = tk[t][b];
          const int8_t* xq = k.x->qs + 128 * n + 32 * s;
          // Q3_K's -4 * bsum start values; after an int16 run (kquant_tiles.h), not held through it
          static_assert(kRunSteps<V, kQ3 ? 7 : 3> >= 4, "one run per sub-block");
          constexpr bool kStartFirst = kQ3 && V::kDot4Exact;
          I a = kStartFirst ? V::set32(k.w[s0]) : V::zero(), c = kStartFirst ? V::set32(k.w[s0 + 1]) : V::zero();
          I ar = run_begin<V>(a), cr = run_begin<V>(c);
#pragma GCC unroll 4
          for (int m = 0; m < 4; ++m) {
            ar = run_dot4<V, T>(ar, u[m], xq + 4 * m);
            cr = run_dot4<V, T>(cr, u[m + 4], xq + 16 + 4 * m);
          }
          a = run_end<V>(a, ar);
          c = run_end<V>(c, cr);
          if constexpr (kQ3 && !kStartFirst) {
            a = V::add(a, V::set32(k.w[s0]));
            c = V::add(c, V::set32(k.w[s0 + 1]));
          }
          isum[t] = V::add(isum[t], V::add(V::mul(a, sc0), V::mul(c, sc1)));
        }
      }
    }
  }

  // The same isum for one token on 16 rows (kOneLoad), word by word
  // (kWordOrder): each quant word is loaded once, in the group's address
  // order, and its 4 fields (8 with Q3_K's two halves of hmask bits) are
  // dotted into the sums of their 16 sub-blocks, which stay in registers until
  // the scales. Field s is dotted where it lies, as 4^e times its level (e =
  // s; Q3_K's field 3, whose high bit would land on bit 8, is shifted to field
  // 2's place, e = 2), one mask and no shift; Q3_K's high bit is moved to just
  // above it (one shift, one ternlog). The sums of each e, times their scales,
  // are exactly 4^e times their share, brought down by an exact shift at the
  // end. No int32 overflow: the largest, Q3_K's e = 2 sum, is at most 8
  // sub-blocks x 32 x (16 x 112 x 128 + 16 x 8192), under 2^27. One core from
  // DRAM against the tile that held whole halves (and spilled 124 times a
  // group): Q3_K 15 -> 28 GB/s, Q2_K 20 -> 22 (test_kernels --bench-decode).
  static typename V::I decode_isum(const char* gb, const KTok& k) {
    // levels up to 7 << 4: AVX2's vpmaddubsw pairs would saturate int16 (and measured no faster)
    static_assert(V::kDot4Exact, "dot4 must be exact for levels above 63");
    using I = typename V::I;
    constexpr int R = V::R;
    I p[16];  // sub-block sb's products, 4^e(sb) times
#pragma GCC unroll 16
    for (int sb = 0; sb < 16; ++sb)
      p[sb] = kQ3 ? V::set32(k.w[sb] * (1 << (2 * field_e(sb % 8 / 2)))) : V::zero();
#pragma GCC unroll 8
    for (int m = 0; m < 8; ++m) {
      I h = V::zero();
      if constexpr (kQ3) h = load_once<V, 1>(gb + hmask_at(m) * 4 * R);
#pragma GCC unroll 2
      for (int n = 0; n < 2; ++n) {
        const I q = load_once<V, 1>(gb + qs_at(n, m) * 4 * R);
#pragma GCC unroll 4
        for (int s = 0; s < 4; ++s) {  // elements 128n + 32s + 4m .. +3: sub-block 8n + 2s + m / 4
          const int e = field_e(s);
          I u;
          if (kQ3 && s == 3) u = V::and_(V::template shr16<2>(q), V::set8(0x30));
          else u = V::and_(q, V::set8(static_cast<char>(3 << (2 * s))));
          if constexpr (kQ3) {  // bit 4n + s of the hmask byte to bit 2e + 2
            const I hb = shift16<V>(h, 2 * e + 2 - (4 * n + s));
            u = V::or_(u, V::and_(hb, V::set8(static_cast<char>(4 << (2 * e)))));
          }
          const int sb = 8 * n + 2 * s + m / 4;
          p[sb] = V::dot4(p[sb], u, k.x->qs + 128 * n + 32 * s + 4 * m);
        }
      }
    }
    I sums[4] = {V::zero(), V::zero(), V::zero(), V::zero()};
#pragma GCC unroll 16
    for (int sb = 0; sb < 16; ++sb) {
      const int e = field_e(sb % 8 / 2);
      sums[e] = V::add(sums[e], V::mul(p[sb], scale(gb, sb)));
    }
    const I isum = V::add(V::add(sums[0], V::template sar32<2>(sums[1])), V::template sar32<4>(sums[2]));
    return kQ3 ? isum : V::add(isum, V::template sar32<6>(sums[3]));
  }

  // The power of 4 at which decode_isum dots field s.
  static constexpr int field_e(int s) { return kQ3 && s == 3 ? 2 : s; }

  template <int T>
  static void tile(const char* g, const KTok* const* tk, int64_t nb, float* y, size_t ldy) {
    using I = typename V::I;
    using F = typename V::F;
    constexpr int R = V::R;
    F acc[T];
    for (int t = 0; t < T; ++t) acc[t] = V::set1(0.0f);
    for (int64_t b = 0; b < nb; ++b) {
      const char* gb = g + b * R * kBlock;
      // 8-row decode only: the 16-row groups read in order, which the hints slowed
      if constexpr (T == 1 && R < 16) k_prefetch<R * kBlock, 2, PrefetchTo::L1>(gb);
      // Prompts on 16 lanes: the next super-block group to L2 (as K4Fmt's)
      if constexpr (T > 1 && R == 16) k_prefetch<R * kBlock, 1, PrefetchTo::L2>(gb);
      I isum[T];
      if constexpr (kOneLoad<V, T>) isum[0] = decode_isum(gb, tk[0][b]);
      else tokens_isum<T>(gb, tk, b, isum);
      const F dw = V::h2f(gb + kD * R);
      I mnp[8];  // Q2_K: the mins of sub-blocks 2p, 2p + 1 (high nibbles) as int16 pairs
      if constexpr (!kQ3) {
        const __m128i m4 = _mm_set1_epi8(0x0f);
#pragma GCC unroll 8
        for (int p = 0; p < 8; ++p)
          mnp[p] = V::pairs(_mm_and_si128(_mm_srli_epi16(V::bytes(gb + 2 * p * R), 4), m4),
                            _mm_and_si128(_mm_srli_epi16(V::bytes(gb + (2 * p + 1) * R), 4), m4));
      }
#pragma GCC unroll 8
      for (int t = 0; t < T; ++t) {
        const KTok& k = tk[t][b];
        const F dx = V::set1(k.x->d);
        acc[t] = V::fma(V::mul(dw, dx), V::cvt(isum[t]), acc[t]);
        if constexpr (!kQ3) {
          I im = V::zero();
#pragma GCC unroll 8
          for (int p = 0; p < 8; ++p) im = V::dot2(im, mnp[p], k.w[p]);
          acc[t] = V::fnma(V::mul(V::h2f(gb + (kD + 2) * R), dx), V::cvt(im), acc[t]);
        }
      }
    }
    for (int t = 0; t < T; ++t) V::store(y + t * ldy, acc[t]);
  }
};

// IQ4_XS: 8 sub-blocks of 32, each 16 qs bytes (low nibbles elements 0..15,
// high 16..31) indexing kIQ4NLValues; scale ls - 32, ls = 4 bits of scales_l
// (byte j / 2, low nibble first) | 2 bits of the 16-bit scales_h (bits 2j) << 4.
template <class V>
struct IQ4XSFmt {
  static_assert(V::R == 8, "scales_h of 8 rows is one 16-byte load");
  static constexpr GgmlType kType = GgmlType::IQ4_XS;
  static constexpr size_t kBlock = sizeof(BlockIQ4_XS);

  static void prep(const BlockQ8_K&, int32_t*) {}

  // The 8 signed sub-block scales of the 8 rows.
  static void scales(const char* gb, typename V::I* sc) {
    constexpr int R = V::R;
    // scales_h: low bytes (sub-blocks 0..3) of the 8 rows, then high bytes (4..7)
    const __m128i h = _mm_shuffle_epi8(_mm_loadu_si128(reinterpret_cast<const __m128i*>(gb + 2 * R)),
                                       _mm_setr_epi8(0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15));
    const __m128i m4 = _mm_set1_epi8(0x0f), top = _mm_set1_epi8(0x30);
    for (int j = 0; j < 8; ++j) {
      const __m128i l = V::bytes(gb + 4 * R + (j / 2) * R);
      const __m128i lo = j % 2 ? _mm_and_si128(_mm_srli_epi16(l, 4), m4) : _mm_and_si128(l, m4);
      const __m128i hb = j < 4 ? h : _mm_srli_si128(h, 8);
      __m128i hi;
      switch (j % 4) {  // bits 2(j%4)..+1 to bits 4..5
        case 0: hi = _mm_slli_epi16(hb, 4); break;
        case 1: hi = _mm_slli_epi16(hb, 2); break;
        case 2: hi = hb; break;
        default: hi = _mm_srli_epi16(hb, 2); break;
      }
      sc[j] = V::add(V::widen_u8(_mm_or_si128(lo, _mm_and_si128(hi, top))), V::set32(-32));
    }
  }

  template <int T>
  static void tile(const char* g, const KTok* const* tk, int64_t nb, float* y, size_t ldy) {
    using I = typename V::I;
    using F = typename V::F;
    constexpr int R = V::R;
    const I table = V::table16(kIQ4NLValues);
    F acc[T];
    for (int t = 0; t < T; ++t) acc[t] = V::set1(0.0f);
    for (int64_t b = 0; b < nb; ++b) {
      const char* gb = g + b * R * kBlock;
      if constexpr (T == 1) k_prefetch<R * kBlock, 2, PrefetchTo::L1>(gb);
      I sc[8], isum[T];
      scales(gb, sc);
      for (int t = 0; t < T; ++t) isum[t] = V::zero();
      const char* qs = gb + 8 * R;
#pragma GCC unroll 8
      for (int j = 0; j < 8; ++j) {
        I w[8], aw[8];  // words m < 4: elements 32j + 4m (low nibbles); m >= 4: 32j + 16 + 4(m - 4)
#pragma GCC unroll 4
        for (int m = 0; m < 4; ++m) {
          const I v = V::load(qs + (4 * j + m) * 4 * R);
          w[m] = V::lookup(table, V::and_(v, V::set8(0x0f)));
          w[m + 4] = V::lookup(table, V::and_(V::template shr16<4>(v), V::set8(0x0f)));
        }
        for (int m = 0; m < 8; ++m) aw[m] = V::abs8(w[m]);
#pragma GCC unroll 8
        for (int t = 0; t < T; ++t) {
          const int8_t* xq = tk[t][b].x->qs + 32 * j;
          I p = V::zero();
#pragma GCC unroll 8
          for (int m = 0; m < 8; ++m) p = V::sdot4(p, aw[m], w[m], xq + 4 * m);
          isum[t] = V::add(isum[t], V::mul(p, sc[j]));
        }
      }
      const F dw = V::h2f(gb);
#pragma GCC unroll 8
      for (int t = 0; t < T; ++t)
        acc[t] = V::fma(V::mul(dw, V::set1(tk[t][b].x->d)), V::cvt(isum[t]), acc[t]);
    }
    for (int t = 0; t < T; ++t) V::store(y + t * ldy, acc[t]);
  }
};

// IQ4_XS where dot4 is exact (vpdpbusd: u8 x s8 summed in int32) and a group
// is 16 rows: the table's levels plus 128 (1..241) are the unsigned operand, so
// one lookup gives what the dot takes (AVX2's form takes |w|, sign(x, w) and a
// 16-bit stage); the 128 * sum(x) this adds is taken off by each sub-block's
// start value, -128 times its two bsums (prep). Its scales' high bits, 16 rows
// of 16-bit scales_h, are one 32-byte load widened to int32 lanes once a block.
// In int32: |sum| <= 32 x 127 x 127 a sub-block, times |ls - 32| <= 32, 8 of
// them: under 2^28. Besides the traits of x86/kquant_tiles.h, V needs:
//   I table16(const int8_t* p): 16 bytes in each 128-bit lane;  I lookup(I table, I nib)
//   I xor_(I, I);  I widen_u16(const char* p): R uint16 to int32;  template <int n> I sar32(I)
template <class V>
struct IQ4XSBiasedFmt {
  static_assert(V::R == 16 && V::kDot4Exact, "16-row groups on an exact dot4");
  static constexpr GgmlType kType = GgmlType::IQ4_XS;
  static constexpr size_t kBlock = sizeof(BlockIQ4_XS);

  static void prep(const BlockQ8_K& x, int32_t* w) {
    for (int j = 0; j < 8; ++j) w[j] = -128 * (int32_t(x.bsums[2 * j]) + int32_t(x.bsums[2 * j + 1]));
  }

  // Sub-block j's scale ls - 32 of the 16 rows as int32 lanes; hs: scales_h widened.
  static typename V::I scale(const char* gb, typename V::I hs, int j) {
    using I = typename V::I;
    constexpr int R = V::R;
    const __m128i l = V::bytes(gb + 4 * R + (j / 2) * R), m4 = _mm_set1_epi8(0x0f);
    const __m128i lo = j % 2 ? _mm_and_si128(_mm_srli_epi16(l, 4), m4) : _mm_and_si128(l, m4);
    I hi;  // bits 2j, 2j + 1 of scales_h to bits 4, 5
    switch (j) {
      case 0: hi = V::template shl32<4>(hs); break;
      case 1: hi = V::template shl32<2>(hs); break;
      case 2: hi = hs; break;
      case 3: hi = V::template sar32<2>(hs); break;
      case 4: hi = V::template sar32<4>(hs); break;
      case 5: hi = V::template sar32<6>(hs); break;
      case 6: hi = V::template sar32<8>(hs); break;
      default: hi = V::template sar32<10>(hs); break;
    }
    return V::add(V::or_(V::widen_u8(lo), V::and_(hi, V::set32(0x30))), V::set32(-32));
  }

  template <int T>
  static void tile(const char* g, const KTok* const* tk, int64_t nb, float* y, size_t ldy) {
    using I = typename V::I;
    using F = typename V::F;
    constexpr int R = V::R;
    const I table = V::xor_(V::table16(kIQ4NLValues), V::set8(static_cast<char>(0x80)));  // level + 128
    F acc[T];
    for (int t = 0; t < T; ++t) acc[t] = V::set1(0.0f);
    for (int64_t b = 0; b < nb; ++b) {
      const char* gb = g + b * R * kBlock;
      const I hs = V::widen_u16(gb + 2 * R);
      I isum[T];
      for (int t = 0; t < T; ++t) isum[t] = V::zero();
      const char* qs = gb + 8 * R;
#pragma GCC unroll 8
      for (int j = 0; j < 8; ++j) {
        I u[8];  // words m < 4: elements 32j + 4m (low nibbles); m >= 4: 32j + 16 + 4(m - 4)
#pragma GCC unroll 4
        for (int m = 0; m < 4; ++m) {
          const I v = load_once<V, T>(qs + (4 * j + m) * 4 * R);  // one load for both nibbles
          u[m] = V::lookup(table, V::and_(v, V::set8(0x0f)));
          u[m + 4] = V::lookup(table, V::and_(V::template shr16<4>(v), V::set8(0x0f)));
        }
        const I sc = scale(gb, hs, j);
#pragma GCC unroll 8
        for (int t = 0; t < T; ++t) {
          const KTok& k = tk[t][b];
          const int8_t* xq = k.x->qs + 32 * j;
          I p = V::set32(k.w[j]);
#pragma GCC unroll 8
          for (int m = 0; m < 8; ++m) p = tile_dot4<V, T>(p, u[m], xq + 4 * m);
          isum[t] = V::add(isum[t], V::mul(p, sc));
        }
      }
      const F dw = V::h2f(gb);
#pragma GCC unroll 8
      for (int t = 0; t < T; ++t)
        acc[t] = V::fma(V::mul(dw, V::set1(tk[t][b].x->d)), V::cvt(isum[t]), acc[t]);
    }
    for (int t = 0; t < T; ++t) V::store(y + t * ldy, acc[t]);
  }
};

}  // namespace
}  // namespace bluelm::kernels
