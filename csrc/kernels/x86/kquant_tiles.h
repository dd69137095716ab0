// The Q4_K, Q5_K and Q6_K gemm of the x86 tables on row-interleaved groups
// (kernels/kquant_pack.h): SIMD lanes are the R rows of a group (R = 16 in a
// zmm, 8 in a ymm), so no lane is ever folded. Per super-block and token:
//   each sub-block's products summed exactly in int32 per row (4 elements a
//   step, the token's 4 bytes broadcast; unsigned levels, Q6_K's -32 offset in
//   the start value -32 * bsum), times the row's integer sub-block scale,
//   added up: isum, exact;
//   acc = fma(d_w * d_x, (float)isum, acc);
//   Q4_K / Q5_K: imin = sum of min * (bsum pairs) by int16 pair dots, exact;
//   acc = fma(-(dmin_w * d_x), (float)imin, acc)
// which is the scalar reference's sequence (kernels/scalar/kquants.h), so the
// results are its bits. The ISA is a traits class V:
//   I, F: R int32 / float lanes; static constexpr int R; kMaxT: tokens per tile
//     (4 or 8: what the registers hold without spilling much)
//   I load(p): R*4 bytes;  I zero();  I set32(int32_t);  I add(I, I);  I mul(I, I) (low 32 bits)
//   I and_(I, I);  I or_(I, I);  I set8(char);  I shl16<n>(I), shr16<n>(I)
//   I shl32<n>(I), sar32<n>(I) (int32 lanes; used where kDot4Exact)
//   static constexpr bool kDot4Exact: whether dot4 is exact for any byte u
//     (else only for u <= 63)
//   I sel(I m, I a, I b): a's bits where m's are set, else b's
//   I dot4(I acc, I u, const int8_t* x): acc + per lane sum_k u.byte[k] * x[k]
//     (u <= 63, so pairs fit int16 for a vpmaddubsw emulation; any u where kDot4Exact)
//   I dot4_prompt(...): dot4 for prompt tiles (tile_dot4)
//   where !kDot4Exact: I dot4_i16(I part, I u, const int8_t* x): part + the int16 pairs of
//     u . x, added in int16;  I widen_i16(I part): its pairs summed to int32 (run_dot4)
//   I dot2(I acc, I pairs, int32_t xw): acc + lane's int16 pair . xw's pair
//   __m128i bytes(p): R bytes;  I widen_u8(__m128i), widen_s8(__m128i): R bytes to int32
//   I pairs(__m128i a, __m128i b): lane i = int16 pair (a[i], b[i]), zero-extended
//   F h2f(p): R fp16;  F set1(float);  F mul(F, F);  F cvt(I)
//   F fma(F a, F b, F c) = a*b + c;  F fnma(F a, F b, F c) = c - a*b (one rounding)
//   void store(float*, F)
#pragma once
#include <cstring>
#include <utility>
#include <vector>

#include "kernels/common/kquant_driver.h"
#include "kernels/x86/common.h"

namespace bluelm::kernels {
namespace {

// Decode streams the weights once: every line of the super-block group kAhead
// groups ahead is asked for (a hint; never faults), so enough loads are in
// flight for DRAM. A prompt's token tiles reuse a group from cache, but the
// first reads it from DRAM: Q4_K/Q5_K prompts on 16 lanes ask for the next
// super-block into L2 (1B at 2 threads, pp512, 10 alternated pairs: Q4_K_M
// 1.049x, 7 faster; Q5_K_M 1.033x, whose word order alone cost 0.945x). Q6_K's,
// in read order, gained nothing (1.001x).
// Q4_K, Q5_K and Q6_K (their 16-row groups stored in the one-token tile's read
// order, K4Fmt::chunk and K6Fmt::chunk) read a group in order; there the hints
// only get in the hardware prefetcher's way (test_kernels --bench-decode, one Zen 4 core, CPU
// time, loaded machine: Q4_K 25-27 GB/s with none against 15-17 with L1 2
// ahead and 20-25 with L2 3 ahead; Q5_K 20-21 against 14-15; Q6_K, the
// 128256 x 2048 output on huge pages: 20.6 with none against 17.1 with L2 4
// ahead, the same 17.1 as the old field order with L2 4 ahead, 9.5 with none
// there). The 8-row (AVX2) groups of Q4_K/Q5_K, in word order, take none
// either (L1 2 ahead: 81-85% and 71-73% of a core's probe against 95-98% and
// 95-96% with none); Q6_K's keep L2 4 ahead (96-99% against 75-78% without).
enum class PrefetchTo { L1, L2 };

// Unrolled: as a loop (add, compare, branch a line) it was about 210 of the
// about 690 instructions of a Q6_K decode group (16 rows).
template <size_t kBytes, int kAhead, PrefetchTo kTo>
inline void k_prefetch(const char* gb) {
#pragma GCC unroll 64
  for (size_t l = 0; l < kBytes; l += 64) {
    const char* p = gb + kAhead * kBytes + l;
    if constexpr (kTo == PrefetchTo::L1) _mm_prefetch(p, _MM_HINT_T0);
    else _mm_prefetch(p, _MM_HINT_T1);
  }
}

// Whether a one-token tile keeps each quant vector it splits in a register
// (in_register: one load, where GCC would fold one into each use). AVX-512
// (32 registers), one core, from L2: Q4_K 47 -> 62, Q5_K 34 -> 47, Q6_K 53 ->
// 66 GB/s; AVX2 (16): Q4_K and Q6_K 6% slower, so not there. Prompts leave it to
// GCC: their registers are full, and a group's loads serve every token.
template <class V, int T>
constexpr bool kOneLoad = T == 1 && V::R == 16;

// V::load(p), kept in a register where kOneLoad<V, T>.
template <class V, int T>
inline typename V::I load_once(const char* p) {
  if constexpr (kOneLoad<V, T>) return in_register(V::load(p));
  else return V::load(p);
}

// dot4 in a tile of T tokens. Prompts take V::dot4_prompt, on AVX-512 the
// token's bytes as vpdpbusd's embedded broadcast (zmm.h; 1B Q4_K_M pp512
// 1.055x, 10 alternated pairs, 9 faster); decode keeps V::dot4 (with the
// broadcast embedded there, the 1B's 2-thread decode lost 2-3 points of the
// probe in 10 of 10 alternated pairs).
template <class V, int T>
inline typename V::I tile_dot4(typename V::I acc, typename V::I u, const int8_t* x) {
  if constexpr (T > 1) return V::dot4_prompt(acc, u, x);
  else return V::dot4(acc, u, x);
}

// Runs of dot4 steps. AVX2's vpmaddubsw gives int16 pairs: a run's pairs are
// added in int16 (V::dot4_i16) and widened once (V::widen_i16, vpmaddwd by
// ones), not once a step, while they cannot overflow: kRunSteps<V, kUMax>
// steps of levels <= kUMax against tokens of |x| <= 128. With an exact dot4
// (vpdpbusd) a run is the int32 sum itself and the code is unchanged. The sums
// are the same integers either way, so the same bits.
//   part = run_begin<V>(acc); part = run_dot4<V, T>(part, u, x) ...; acc = run_end<V>(acc, part);
template <class V, int kUMax>
constexpr int kRunSteps = V::kDot4Exact ? 1 << 16 : 32767 / (2 * 128 * kUMax);

template <class V>
inline typename V::I run_begin(typename V::I acc) {
  if constexpr (V::kDot4Exact) return acc;
  else return V::zero();
}

// The int16 sum is pinned in a register after each step: left free, GCC
// reassociated a run into a tree whose products it spilled (AVX2 Q5_K prompt
// tile: 365 vmovdqa for 256 vpmaddubsw a group). Pinned, the 1B's pp512 on the
// AVX2 table: Q4_K_M 1.211x, Q5_K_M 1.105x (6 alternated pairs each, 5 faster);
// decode 76.4% -> 83.2% of the probes (5 of 6 pairs better).
template <class V, int T>
inline typename V::I run_dot4(typename V::I part, typename V::I u, const int8_t* x) {
  if constexpr (V::kDot4Exact) return tile_dot4<V, T>(part, u, x);
  else return in_register(V::dot4_i16(part, u, x));
}

template <class V>
inline typename V::I run_end(typename V::I acc, typename V::I part) {
  if constexpr (V::kDot4Exact) return part;
  else return V::add(acc, V::widen_i16(part));
}

// Scale k (0..7) of Q4_K/Q5_K (scale_min_k4) of the R rows as int32 lanes, from
// the 12 interleaved scale bytes: cut as R bytes in an xmm (one uop an op, where
// the int32 lanes of a zmm take two), then widened, in registers where the
// tile needs it.
template <class V, int k>
inline typename V::I k4_scale(const char* s) {
  if constexpr (k < 4) {
    return V::widen_u8(_mm_and_si128(V::bytes(s + k * V::R), _mm_set1_epi8(0x3f)));
  } else {  // low 4 bits in byte k+4, the high 2 bits the top bits of byte k-4
    const __m128i lo = _mm_and_si128(V::bytes(s + (k + 4) * V::R), _mm_set1_epi8(0x0f));
    const __m128i hi = _mm_and_si128(_mm_srli_epi16(V::bytes(s + (k - 4) * V::R), 2), _mm_set1_epi8(0x30));
    return V::widen_u8(_mm_or_si128(lo, hi));
  }
}

// The 8 mins of Q4_K/Q5_K as 4 words of int16 pairs (sub-blocks 2p, 2p+1) of
// the R rows, from the 12 interleaved scale bytes.
template <class V>
inline void k4_mins(const char* s, typename V::I* mnp) {
  const __m128i m6 = _mm_set1_epi8(0x3f), m4 = _mm_set1_epi8(0x0f), top = _mm_set1_epi8(0x30);
  __m128i mn[8];
#pragma GCC unroll 4
  for (int j = 0; j < 4; ++j) {
    const __m128i b4 = V::bytes(s + (j + 4) * V::R), b8 = V::bytes(s + (j + 8) * V::R);
    mn[j] = _mm_and_si128(b4, m6);
    // the high 2 bits of mins 4..7 are the top bits of bytes 4..7
    mn[j + 4] = _mm_or_si128(_mm_and_si128(_mm_srli_epi16(b8, 4), m4), _mm_and_si128(_mm_srli_epi16(b4, 2), top));
  }
#pragma GCC unroll 4
  for (int p = 0; p < 4; ++p) mnp[p] = V::pairs(mn[2 * p], mn[2 * p + 1]);
}

// Q4_K (kHigh = false) and Q5_K: 8 sub-blocks of 32, unsigned levels, mins.
template <class V, bool kHigh>
struct K4Fmt {
  static constexpr GgmlType kType = kHigh ? GgmlType::Q5_K : GgmlType::Q4_K;
  static constexpr size_t kBlock = kHigh ? sizeof(BlockQ5_K) : sizeof(BlockQ4_K);
  static constexpr int kQs = kHigh ? 48 : 16;  // offset of qs in the block
  // Q4_K where dot4 is exact for any unsigned byte (V::kDot4Exact: VNNI's
  // vpdpbusd, not AVX2's saturating vpmaddubsw): a high nibble is dotted in
  // place as 16 * level (one AND, no shift), the low nibbles' scales take the
  // factor 16 too, and the super-block's integer sum, 16 times the exact one
  // (|16 * isum| <= 16 * 256 * 15 * 63 * 128 < 2^31), is shifted back: the
  // same integers, so the same bits.
  static constexpr bool kHigh16 = !kHigh && V::kDot4Exact;
  // The largest byte dotted, and the words (m) a run of sums takes: AVX2 Q4_K 8, Q5_K 4.
  static constexpr int kUMax = kHigh16 ? 0xf0 : kHigh ? 31 : 15;
  static constexpr int kRun = kRunSteps<V, kUMax> < 8 ? kRunSteps<V, kUMax> : 8;
  static_assert(kRun == 8 || kRun == 4, "runs of whole halves of the 8 words");

  // One token is decoded word by word (decode_word_order): Q5_K's qh word m,
  // then the 4 qs words 8j+m (j: sub-block pair) whose levels it completes.
  // The group is stored in that read order (kquant_driver.h KReorders).
  // Chunks of 4*R bytes: 0 d and dmin, 1-3 the scales, then the layout's qh
  // (4 + m, Q5_K) and qs (kQs / 4 + 8j + m).
  static constexpr int kWord = kHigh ? 5 : 4;  // chunks a word m takes
  static constexpr int kOrdered = 4 + 8 * kWord;
  static constexpr int chunk(int p) {
    const int m = (p - 4) / kWord, e = (p - 4) % kWord - (kHigh ? 1 : 0);
    return p < 4 ? p : e < 0 ? 4 + m : kQs / 4 + 8 * e + m;
  }
  // Where the qh word m and the qs word 8j+m of a group are, in chunks.
  static constexpr int qh_at(int m) { return 4 + kWord * m; }
  static constexpr int qs_at(int j, int m) { return 4 + kWord * m + kWord - 4 + j; }

  static void prep(const BlockQ8_K& x, int32_t* w) {
    for (int p = 0; p < 4; ++p) {
      const int a = x.bsums[4 * p] + x.bsums[4 * p + 1], b = x.bsums[4 * p + 2] + x.bsums[4 * p + 3];
      w[p] = int32_t(uint32_t(uint16_t(int16_t(a))) | (uint32_t(uint16_t(int16_t(b))) << 16));
    }
  }

  // The 5th bit of sub-block s from the interleaved qh word, as 0x10.
  template <int s>
  static typename V::I high(typename V::I qh) {
    if constexpr (s <= 4) return V::and_(V::template shl16<4 - s>(qh), V::set8(0x10));
    else return V::and_(V::template shr16<s - 4>(qh), V::set8(0x10));
  }

  // One token's isum, word m outer: the group is read in address order
  // (chunk), each Q5_K qh word once, and the 8 sub-block sums stay in
  // registers until the scales. The j-outer tile read a Q5_K group's qh words
  // 4 times and spilled about 115 times a group (16 level vectors live).
  // test_kernels --bench-decode, one core from DRAM, alternated, % of the
  // core's probe: AVX-512 Q5_K 60-68 -> 95-101, Q4_K 81-91 -> 84-99; AVX2
  // (8 lanes, no hints now) Q5_K 64-66 -> 95-96, Q4_K 73-75 -> 95-98.
  template <int... r>
  __attribute__((always_inline)) static typename V::I decode_word_order(const char* gb, const int8_t* xq,
                                                                        std::integer_sequence<int, r...>) {
    using I = typename V::I;
    I p[8];
#pragma GCC unroll 8
    for (int s = 0; s < 8; ++s) p[s] = V::zero();
    (decode_run<r * kRun>(gb, xq, p, std::make_integer_sequence<int, kRun>()), ...);  // run r
    if constexpr (kHigh16)  // the low nibbles' sums to the high ones' scale of 16
      for (int j = 0; j < 4; ++j) p[2 * j] = V::template shl32<4>(p[2 * j]);
    const char* sc = gb + 4 * V::R;
    const I e = V::add(V::add(V::mul(p[0], k4_scale<V, 0>(sc)), V::mul(p[2], k4_scale<V, 2>(sc))),
                       V::add(V::mul(p[4], k4_scale<V, 4>(sc)), V::mul(p[6], k4_scale<V, 6>(sc))));
    const I o = V::add(V::add(V::mul(p[1], k4_scale<V, 1>(sc)), V::mul(p[3], k4_scale<V, 3>(sc))),
                       V::add(V::mul(p[5], k4_scale<V, 5>(sc)), V::mul(p[7], k4_scale<V, 7>(sc))));
    return V::add(e, o);
  }

  // Words m0 .. m0 + kRun - 1, one run of each sub-block's sum.
  template <int m0, int... m>
  __attribute__((always_inline)) static void decode_run(const char* gb, const int8_t* xq, typename V::I* p,
                                                        std::integer_sequence<int, m...>) {
    typename V::I q[8];
#pragma GCC unroll 8
    for (int s = 0; s < 8; ++s) q[s] = run_begin<V>(p[s]);
    (decode_word<m0 + m>(gb, xq, q), ...);
#pragma GCC unroll 8
    for (int s = 0; s < 8; ++s) p[s] = run_end<V>(p[s], q[s]);
  }

  // qh word m and the 4 qs words whose levels it completes: p[s] += their products.
  template <int m>
  __attribute__((always_inline)) static void decode_word(const char* gb, const int8_t* xq, typename V::I* p) {
    typename V::I h = V::zero();
    if constexpr (kHigh) h = load_once<V, 1>(gb + qh_at(m) * 4 * V::R);
    decode_chunk<m, 0>(gb, xq, h, p);
    decode_chunk<m, 1>(gb, xq, h, p);
    decode_chunk<m, 2>(gb, xq, h, p);
    decode_chunk<m, 3>(gb, xq, h, p);
  }

  // The levels of qs word 8j+m (h: qh word m, Q5_K): sub-block 2j's in lo, 2j+1's in hi.
  template <int j, int T>
  __attribute__((always_inline)) static void word_levels(const char* gb, int m, typename V::I h, typename V::I& lo,
                                                         typename V::I& hi) {
    using I = typename V::I;
    const I v = load_once<V, T>(gb + qs_at(j, m) * 4 * V::R), m4 = V::set8(0x0f);
    lo = V::and_(v, m4);
    if constexpr (kHigh16) {  // Q4_K: the high nibbles in place (16 * level)
      hi = V::and_(v, V::set8(char(0xf0)));
    } else if constexpr (!kHigh) {
      hi = V::and_(V::template shr16<4>(v), m4);
    } else {
      lo = V::or_(lo, high<2 * j>(h));
      hi = V::or_(V::and_(V::template shr16<4>(v), m4), high<2 * j + 1>(h));
    }
  }

  // qs word 8j+m: sub-block 2j's levels in its low nibbles, 2j+1's in the high.
  template <int m, int j>
  __attribute__((always_inline)) static void decode_chunk(const char* gb, const int8_t* xq, typename V::I h,
                                                          typename V::I* p) {
    typename V::I lo, hi;
    word_levels<j, 1>(gb, m, h, lo, hi);
    p[2 * j] = run_dot4<V, 1>(p[2 * j], lo, xq + 64 * j + 4 * m);
    p[2 * j + 1] = run_dot4<V, 1>(p[2 * j + 1], hi, xq + 64 * j + 32 + 4 * m);
  }

  // Prompts: isum[t] += the super-block group's sums of T tokens, j outer,
  // each sub-block pair's level vectors serving every token.
  template <int T>
  __attribute__((always_inline)) static void chunk_sums(const char* gb, const KTok* const* tk, int64_t b,
                                                        typename V::I* isum) {
    using I = typename V::I;
    constexpr int R = V::R;
#pragma GCC unroll 4
    for (int j = 0; j < 4; ++j) {  // qs words 8j..8j+7: sub-block 2j low nibbles, 2j+1 high
      I lo[8], hi[8];
#pragma GCC unroll 8
      for (int m = 0; m < 8; ++m) {
        const I v = V::load(gb + qs_at(j, m) * 4 * R);
        lo[m] = V::and_(v, V::set8(0x0f));
        // Q4_K on an exact dot4: the high nibbles in place (16 * level)
        if constexpr (kHigh16) hi[m] = V::and_(v, V::set8(char(0xf0)));
        else hi[m] = V::and_(V::template shr16<4>(v), V::set8(0x0f));
        if constexpr (kHigh) {
          const I h = V::load(gb + qh_at(m) * 4 * R);
          switch (j) {  // constant after unrolling
            case 0: lo[m] = V::or_(lo[m], high<0>(h)); hi[m] = V::or_(hi[m], high<1>(h)); break;
            case 1: lo[m] = V::or_(lo[m], high<2>(h)); hi[m] = V::or_(hi[m], high<3>(h)); break;
            case 2: lo[m] = V::or_(lo[m], high<4>(h)); hi[m] = V::or_(hi[m], high<5>(h)); break;
            default: lo[m] = V::or_(lo[m], high<6>(h)); hi[m] = V::or_(hi[m], high<7>(h)); break;
          }
        }
      }
      I sc0, sc1;
      switch (j) {  // constant after unrolling
        case 0: sc0 = k4_scale<V, 0>(gb + 4 * R); sc1 = k4_scale<V, 1>(gb + 4 * R); break;
        case 1: sc0 = k4_scale<V, 2>(gb + 4 * R); sc1 = k4_scale<V, 3>(gb + 4 * R); break;
        case 2: sc0 = k4_scale<V, 4>(gb + 4 * R); sc1 = k4_scale<V, 5>(gb + 4 * R); break;
        default: sc0 = k4_scale<V, 6>(gb + 4 * R); sc1 = k4_scale<V, 7>(gb + 4 * R); break;
      }
      // the low nibbles' sums to the high ones' scale of 16 (bits 0-5 of a scale: no overflow)
      if constexpr (kHigh16) sc0 = V::template shl32<4>(sc0);
#pragma GCC unroll 8
      for (int t = 0; t < T; ++t) {
        const int8_t* xq = tk[t][b].x->qs + 64 * j;
        I a = V::zero(), c = V::zero();
#pragma GCC unroll 2
        for (int m0 = 0; m0 < 8; m0 += kRun) {
          I ar = run_begin<V>(a), cr = run_begin<V>(c);
#pragma GCC unroll 8
          for (int m = m0; m < m0 + kRun; ++m) {
            ar = run_dot4<V, T>(ar, lo[m], xq + 4 * m);
            cr = run_dot4<V, T>(cr, hi[m], xq + 32 + 4 * m);
          }
          a = run_end<V>(a, ar);
          c = run_end<V>(c, cr);
        }
        isum[t] = V::add(isum[t], V::add(V::mul(a, sc0), V::mul(c, sc1)));
      }
    }
  }

  // Q5_K prompts where dot4 is not exact (AVX2): word m outer, tokens inner,
  // so a level vector is made once and used by every token at once, where
  // chunk_sums holds a sub-block pair's 16 (all of AVX2's registers); each run
  // of sums (kRun = 4 words) is scaled into isum as it ends. The 1B's Q5_K_M
  // pp512 1.095x and 1.065x (two runs of 6 alternated pairs, 4 and 5 faster);
  // Q4_K (one run of 8 words, two int16 sums a token in chunk_sums) measured
  // 0.958x this way, so keeps chunk_sums.
  template <int T, int... j>
  __attribute__((always_inline)) static void word_sums(const char* gb, const KTok* const* tk, int64_t b,
                                                       typename V::I* isum, std::integer_sequence<int, j...>) {
    (pair_word_sums<T, j>(gb, tk, b, isum), ...);
  }

  template <int T, int j>
  __attribute__((always_inline)) static void pair_word_sums(const char* gb, const KTok* const* tk, int64_t b,
                                                            typename V::I* isum) {
    static_assert(!kHigh16, "no factor 16 on the low nibbles' scales here (chunk_sums has it)");
    using I = typename V::I;
    constexpr int R = V::R;
#pragma GCC unroll 2
    for (int m0 = 0; m0 < 8; m0 += kRun) {
      I a[T], c[T];
#pragma GCC unroll 8
      for (int t = 0; t < T; ++t) a[t] = c[t] = run_begin<V>(V::zero());
#pragma GCC unroll 8
      for (int m = m0; m < m0 + kRun; ++m) {
        I h = V::zero(), lo, hi;
        if constexpr (kHigh) h = V::load(gb + qh_at(m) * 4 * R);
        word_levels<j, T>(gb, m, h, lo, hi);
#pragma GCC unroll 8
        for (int t = 0; t < T; ++t) {
          const int8_t* xq = tk[t][b].x->qs + 64 * j + 4 * m;
          a[t] = run_dot4<V, T>(a[t], lo, xq);
          c[t] = run_dot4<V, T>(c[t], hi, xq + 32);
        }
      }
      const I sc0 = k4_scale<V, 2 * j>(gb + 4 * R), sc1 = k4_scale<V, 2 * j + 1>(gb + 4 * R);
#pragma GCC unroll 8
      for (int t = 0; t < T; ++t) {
        const I e = run_end<V>(V::zero(), a[t]), o = run_end<V>(V::zero(), c[t]);
        isum[t] = V::add(isum[t], V::add(V::mul(e, sc0), V::mul(o, sc1)));
      }
    }
  }

  template <int T>
  static void tile(const char* g, const KTok* const* tk, int64_t nb, float* y, size_t ldy) {
    using I = typename V::I;
    using F = typename V::F;
    constexpr int R = V::R;
    F acc[T];
    for (int t = 0; t < T; ++t) acc[t] = V::set1(0.0f);
    for (int64_t b = 0; b < nb; ++b) {
      const char* gb = g + b * R * kBlock;
      // Prompts on 16 lanes: the next super-block group to L2 (k_prefetch).
      if constexpr (T > 1 && R == 16) k_prefetch<R * kBlock, 1, PrefetchTo::L2>(gb);
      I isum[T];
      for (int t = 0; t < T; ++t) isum[t] = V::zero();
      if constexpr (T == 1) {
        isum[0] = decode_word_order(gb, tk[0][b].x->qs, std::make_integer_sequence<int, 8 / kRun>());
      } else if constexpr (V::kDot4Exact || !kHigh) {
        chunk_sums<T>(gb, tk, b, isum);
      } else {
        word_sums<T>(gb, tk, b, isum, std::make_integer_sequence<int, 4>());
      }
      if constexpr (kHigh16)  // isum was 16 * isum, exactly
        for (int t = 0; t < T; ++t) isum[t] = V::template sar32<4>(isum[t]);
      I mnp[4];
      k4_mins<V>(gb + 4 * R, mnp);
      const F dw = V::h2f(gb), dm = V::h2f(gb + 2 * R);
#pragma GCC unroll 8
      for (int t = 0; t < T; ++t) {
        const KTok& k = tk[t][b];
        const F dx = V::set1(k.x->d);
        acc[t] = V::fma(V::mul(dw, dx), V::cvt(isum[t]), acc[t]);
        I im = V::zero();
#pragma GCC unroll 4
        for (int p = 0; p < 4; ++p) im = V::dot2(im, mnp[p], k.w[p]);
        acc[t] = V::fnma(V::mul(dm, dx), V::cvt(im), acc[t]);
      }
    }
    for (int t = 0; t < T; ++t) V::store(y + t * ldy, acc[t]);
  }
};

// Q6_K: 16 sub-blocks of 16, levels 0..63 less 32, signed int8 scales.
template <class V>
struct K6Fmt {
  static constexpr GgmlType kType = GgmlType::Q6_K;
  static constexpr size_t kBlock = sizeof(BlockQ6_K);
  // The 4 steps of a sub-block's sum in runs (kRunSteps): AVX2 2, levels up to 63.
  static constexpr int kRun = kRunSteps<V, 63> < 4 ? kRunSteps<V, 63> : 4;
  static_assert(kRun == 4 || kRun == 2, "runs of whole halves of the 4 steps");

  static void prep(const BlockQ8_K& x, int32_t* w) {
    for (int s = 0; s < 16; ++s) w[s] = -32 * x.bsums[s];
  }

  // A group's 48 quant chunks of 4*R bytes (kquant_pack.h: ql words 0..31 are
  // chunks 0..31, qh words 0..15 chunks 32..47) stored as tile reads them: per
  // (h, a), 12 chunks: ql of gp 0, qh, ql of gp 1 (kquant_driver.h KReorders).
  static constexpr int kOrdered = 48;
  static constexpr int chunk(int p) {
    const int h = p / 24, a = p / 12 % 2, k = p % 12;
    return k < 4 ? 16 * h + 4 * a + k : k < 8 ? 32 + 8 * h + 4 * a + (k - 4) : 16 * h + 8 + 4 * a + (k - 8);
  }

  // The first sub-block of step j (below); the second is kSub0<j> + 4.
  template <int j>
  static constexpr int kSub0 = 8 * (j / 4) + 2 * (j % 2) + j / 2 % 2;

  // Step j = 4h + 2a + gp of a super-block group (half h, quads 4a..4a+3 of
  // each 32, low nibbles (g = gp) then high (g = gp + 2)): its 8 level vectors,
  // u[m] of sub-block s0 = 8h + 2gp + a, u[4 + m] of s1 = s0 + 4.
  template <int j>
  __attribute__((always_inline)) static void levels(const char* gb, typename V::I* u) {
    using I = typename V::I;
    constexpr int R = V::R, h = j / 4, a = j / 2 % 2, gp = j % 2;
#pragma GCC unroll 4
    for (int m = 0; m < 4; ++m) {
      const char* c = gb + (12 * (2 * h + a) + m) * 4 * R;  // chunk(p) order
      // one load for both nibbles; in prompts too (a level vector serves every
      // token there; the 1B's pp512 1.016x, 8 alternated pairs)
      const I L = load_once<V, 1>(c + (gp ? 8 : 0) * 4 * R);
      const I H = V::load(c + 4 * 4 * R);
      // This gp's two 2-bit fields of each qh byte (bits 0-1, 4-5 or
      // 2-3, 6-7), moved to bits 4-5; the shifts' spill into a
      // neighbouring byte lands in its low nibble, which sel takes from L.
      const I hm = V::and_(H, V::set8(gp ? char(0xcc) : char(0x33)));
      const I h0 = gp ? V::template shl16<2>(hm) : V::template shl16<4>(hm);
      const I h1 = gp ? V::template shr16<2>(hm) : hm;
      const I m4 = V::set8(0x0f);
      u[m] = V::sel(m4, L, h0);
      u[4 + m] = V::sel(m4, V::template shr16<4>(L), h1);
    }
  }

  // Prompts (and 8-lane decode): isum[t] += step j's two sub-block sums of
  // token t times the rows' scales, while its level vectors serve every token.
  template <int T, int j>
  __attribute__((always_inline)) static void step_tokens(const char* gb, const KTok* const* tk, int64_t b,
                                                         typename V::I* isum) {
    using I = typename V::I;
    constexpr int R = V::R, s0 = kSub0<j>, s1 = s0 + 4;
    I u[8];
    levels<j>(gb, u);
    const char* scales = gb + 192 * R;
    const I sc0 = V::widen_s8(V::bytes(scales + s0 * R));
    const I sc1 = V::widen_s8(V::bytes(scales + s1 * R));
#pragma GCC unroll 8
    for (int t = 0; t < T; ++t) {
      const KTok& k = tk[t][b];
      const int8_t* x0 = k.x->qs + 16 * s0;
      const int8_t* x1 = k.x->qs + 16 * s1;
      // the -32 * bsum start values; in int16 runs added last, not held through them
      constexpr bool kStartFirst = V::kDot4Exact;
      I p0 = kStartFirst ? V::set32(k.w[s0]) : V::zero(), p1 = kStartFirst ? V::set32(k.w[s1]) : V::zero();
#pragma GCC unroll 2
      for (int m0 = 0; m0 < 4; m0 += kRun) {
        I r0 = run_begin<V>(p0), r1 = run_begin<V>(p1);
#pragma GCC unroll 4
        for (int m = m0; m < m0 + kRun; ++m) {
          r0 = run_dot4<V, T>(r0, u[m], x0 + 4 * m);
          r1 = run_dot4<V, T>(r1, u[4 + m], x1 + 4 * m);
        }
        p0 = run_end<V>(p0, r0);
        p1 = run_end<V>(p1, r1);
      }
      if constexpr (!kStartFirst) {
        p0 = V::add(p0, V::set32(k.w[s0]));
        p1 = V::add(p1, V::set32(k.w[s1]));
      }
      isum[t] = V::add(isum[t], V::add(V::mul(p0, sc0), V::mul(p1, sc1)));
    }
  }

  // Decode with 32 registers: p[s] += step j's products of sub-block s (all 16
  // sums live, scaled once the quants are done).
  template <int j>
  __attribute__((always_inline)) static void step_sums(const char* gb, const int8_t* xq, typename V::I* p) {
    constexpr int s0 = kSub0<j>, s1 = s0 + 4;
    typename V::I u[8];
    levels<j>(gb, u);
#pragma GCC unroll 4
    for (int m = 0; m < 4; ++m) {
      p[s0] = V::dot4(p[s0], u[m], xq + 16 * s0 + 4 * m);
      p[s1] = V::dot4(p[s1], u[4 + m], xq + 16 * s1 + 4 * m);
    }
  }

  // One super-block group's isum of T tokens. Decode (T = 1, 16 lanes) reads
  // the group in address order: the quant chunks, then the scales. Scaling
  // each sub-block's sum right after it, as prompts do, reads the scales at
  // the group's end before its quants, and the stream from DRAM was 10-15%
  // slower (test_kernels-style gemv of the 128256 x 2048 output, one Zen 4
  // core, CPU time, interleaved runs: 27-28 against 31.6 GB/s).
  template <int T, int... j>
  __attribute__((always_inline)) static void group_sums(const char* gb, const KTok* const* tk, int64_t b,
                                                        typename V::I* isum, std::integer_sequence<int, j...>) {
    using I = typename V::I;
    constexpr int R = V::R;
    if constexpr (T == 1 && R == 16) {
      const KTok& k = tk[0][b];
      I p[16];
#pragma GCC unroll 16
      for (int s = 0; s < 16; ++s) p[s] = V::set32(k.w[s]);
      (step_sums<j>(gb, k.x->qs, p), ...);
      const char* scales = gb + 192 * R;
      I e = V::zero(), o = V::zero();
#pragma GCC unroll 8
      for (int s = 0; s < 16; s += 2) {
        e = V::add(e, V::mul(p[s], V::widen_s8(V::bytes(scales + s * R))));
        o = V::add(o, V::mul(p[s + 1], V::widen_s8(V::bytes(scales + (s + 1) * R))));
      }
      isum[0] = V::add(e, o);
    } else {
      (step_tokens<T, j>(gb, tk, b, isum), ...);
    }
  }

  template <int T>
  static void tile(const char* g, const KTok* const* tk, int64_t nb, float* y, size_t ldy) {
    using I = typename V::I;
    using F = typename V::F;
    constexpr int R = V::R;
    F acc[T];
    for (int t = 0; t < T; ++t) acc[t] = V::set1(0.0f);
    for (int64_t b = 0; b < nb; ++b) {
      const char* gb = g + b * R * kBlock;
      if constexpr (T == 1 && R < 16) k_prefetch<R * kBlock, 4, PrefetchTo::L2>(gb);
      I isum[T];
      for (int t = 0; t < T; ++t) isum[t] = V::zero();
      group_sums<T>(gb, tk, b, isum, std::make_integer_sequence<int, 8>());
      const F dw = V::h2f(gb + 208 * R);
#pragma GCC unroll 8
      for (int t = 0; t < T; ++t)
        acc[t] = V::fma(V::mul(dw, V::set1(tk[t][b].x->d)), V::cvt(isum[t]), acc[t]);
    }
    for (int t = 0; t < T; ++t) V::store(y + t * ldy, acc[t]);
  }
};

}  // namespace
}  // namespace bluelm::kernels
