// The Q4_K, Q5_K and Q6_K gemm of the NEON dotprod/i8mm tables on 4-row
// interleaved groups (kernels/kquant_pack.h with R = 4, the x86 tables' layout
// at a narrower width): one 16-byte load holds the same 4-byte word of 4 rows,
// so an int32x4 lane is a row and SDOT by element (vdotq_laneq_s32) adds 4
// products per row against 4 activation bytes, 16 activations per load. Per
// super-block and token:
//   each sub-block's products summed exactly per row (unsigned levels; Q6_K's
//   -32 offset in the start value -32 * bsum), times the row's integer
//   sub-block scale, added up: isum, exact;
//   acc = fma(d_w * d_x, (float)isum, acc);
//   Q4_K / Q5_K: imin = sum of min * (bsum pairs), exact;
//   acc = fma(-(dmin_w * d_x), (float)imin, acc)
// which is the scalar reference's sequence (kernels/scalar/kquants.h), so the
// results are its bits. The driver (groups, token chunks, file-layout calls)
// is common/kquant_driver.h's. Include only from files built with +dotprod.
#pragma once
#include "kernels/arm/common.h"
#include "kernels/common/kquant_driver.h"
#include "kernels/kernels.h"

namespace bluelm::kernels {
namespace {

constexpr int kRowsNeon = 4;  // rows per interleaved group: the int32x4 lanes

inline uint8x16_t ldu8(const char* p) { return vld1q_u8(reinterpret_cast<const uint8_t*>(p)); }
inline int8x16_t lds8(const void* p) { return vld1q_s8(static_cast<const int8_t*>(p)); }
// The 4 fp16 of 4 rows.
inline float32x4_t h4(const char* p) {
  return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(reinterpret_cast<const uint16_t*>(p))));
}

// Bytes 4j..4j+3 of v (byte k of 4 rows) widened to int32x4, j = 0..3.
inline void widen_u8(uint8x16_t v, int32x4_t* out) {
  const uint16x8_t lo = vmovl_u8(vget_low_u8(v)), hi = vmovl_high_u8(v);
  out[0] = vreinterpretq_s32_u32(vmovl_u16(vget_low_u16(lo)));
  out[1] = vreinterpretq_s32_u32(vmovl_high_u16(lo));
  out[2] = vreinterpretq_s32_u32(vmovl_u16(vget_low_u16(hi)));
  out[3] = vreinterpretq_s32_u32(vmovl_high_u16(hi));
}
inline void widen_s8(int8x16_t v, int32x4_t* out) {
  const int16x8_t lo = vmovl_s8(vget_low_s8(v)), hi = vmovl_high_s8(v);
  out[0] = vmovl_s16(vget_low_s16(lo));
  out[1] = vmovl_high_s16(lo);
  out[2] = vmovl_s16(vget_low_s16(hi));
  out[3] = vmovl_high_s16(hi);
}

// 4 words of 4 rows (16 consecutive elements per row) against 16 activations.
inline int32x4_t dot16(int32x4_t acc, const uint8x16_t* u, int8x16_t x) {
  acc = vdotq_laneq_s32(acc, vreinterpretq_s8_u8(u[0]), x, 0);
  acc = vdotq_laneq_s32(acc, vreinterpretq_s8_u8(u[1]), x, 1);
  acc = vdotq_laneq_s32(acc, vreinterpretq_s8_u8(u[2]), x, 2);
  return vdotq_laneq_s32(acc, vreinterpretq_s8_u8(u[3]), x, 3);
}

// Decode streams the weights once: the super-block group two ahead is asked
// for (a hint; never faults). Prompts reuse a group from cache and skip it.
template <size_t kBytes>
inline void k_prefetch(const char* gb) {
  for (size_t l = 0; l < kBytes; l += 64) __builtin_prefetch(gb + 2 * kBytes + l);
}

// The 4-byte word w of 4 rows of a quant field at byte offset off of the file
// block, in a group whose quant fields move in words of kQWord bytes
// (kquant_pack.h): 4, one load; 8 (the i8mm layout), words w & ~1 of rows
// 0,1 and 2,3 unzipped (the pair's two loads are shared by w and w + 1).
template <int kQWord>
inline uint8x16_t word4(const char* gb, int off, int w) {
  if constexpr (kQWord == 4) {
    return ldu8(gb + off * kRowsNeon + w * 4 * kRowsNeon);
  } else {
    const char* p = gb + off * kRowsNeon + (w / 2) * 8 * kRowsNeon;
    const uint32x4_t a = vreinterpretq_u32_u8(ldu8(p)), b = vreinterpretq_u32_u8(ldu8(p + 16));
    return vreinterpretq_u8_u32(w % 2 ? vuzp2q_u32(a, b) : vuzp1q_u32(a, b));
  }
}

// Bit s of each byte of h, as 0x10 (Q5_K's fifth bit of sub-block s).
template <int s>
inline uint8x16_t bit_to_16(uint8x16_t h) {
  if constexpr (s < 4) return vandq_u8(vshlq_n_u8(h, 4 - s), vdupq_n_u8(0x10));
  else if constexpr (s == 4) return vandq_u8(h, vdupq_n_u8(0x10));
  else return vandq_u8(vshrq_n_u8(h, s - 4), vdupq_n_u8(0x10));
}

// The loop both formats share: a group's R rows x T tokens over nb
// super-blocks, Fmt::block adding each into a float32x4 per token.
template <class Fmt>
struct KTileNeon {
  static constexpr int R = kRowsNeon;
  template <int T>
  static void tile(const char* g, const KTok* const* tk, int64_t nb, float* y, size_t ldy) {
    // 3-4 tokens at once spill the 32 vector registers (gcc: 991 instructions, 258
    // stack accesses per Q4_K super-block at 4 tokens): passes of 2, the group in L1.
    if constexpr (T > 2) {
      tile<2>(g, tk, nb, y, ldy);
      tile<T - 2>(g, tk + 2, nb, y + 2 * ldy, ldy);
      return;
    }
    float32x4_t acc[T];
    for (int t = 0; t < T; ++t) acc[t] = vdupq_n_f32(0.0f);
    for (int64_t b = 0; b < nb; ++b) {
      const char* gb = g + b * R * Fmt::kBlock;
      if constexpr (T == 1) k_prefetch<R * Fmt::kBlock>(gb);
      Fmt::template block<T>(gb, tk, b, acc);
    }
    for (int t = 0; t < T; ++t) vst1q_f32(y + t * ldy, acc[t]);
  }
};

// Q4_K (kHigh = false) and Q5_K: 8 sub-blocks of 32, unsigned levels, mins;
// quant fields in words of kQWord bytes (word4).
template <bool kHigh, int kQWord = 4>
struct K4Neon : KTileNeon<K4Neon<kHigh, kQWord>> {
  static constexpr GgmlType kType = kHigh ? GgmlType::Q5_K : GgmlType::Q4_K;
  static constexpr size_t kBlock = kHigh ? sizeof(BlockQ5_K) : sizeof(BlockQ4_K);
  static constexpr int kQs = kHigh ? 48 : 16;  // offset of qs in the block
  static constexpr int R = kRowsNeon;

  static void prep(const BlockQ8_K& x, int32_t* w) {  // activation sum of each sub-block
    for (int s = 0; s < 8; ++s) w[s] = x.bsums[2 * s] + x.bsums[2 * s + 1];
  }

  // Chunk J (sub-block 2J from low nibbles, 2J+1 from high) of T tokens into isum.
  template <int J, int T>
  static void chunk(const char* gb, const KTok* const* tk, int64_t b, const int32x4_t* sc, int32x4_t* isum) {
    const uint8x16_t m4 = vdupq_n_u8(0x0f);
    uint8x16_t lo[8], hi[8];
#pragma GCC unroll 8
    for (int m = 0; m < 8; ++m) {
      const uint8x16_t v = word4<kQWord>(gb, kQs, 8 * J + m);
      lo[m] = vandq_u8(v, m4);
      hi[m] = vshrq_n_u8(v, 4);
      if constexpr (kHigh) {
        const uint8x16_t h = word4<kQWord>(gb, 16, m);
        lo[m] = vorrq_u8(lo[m], bit_to_16<2 * J>(h));
        hi[m] = vorrq_u8(hi[m], bit_to_16<2 * J + 1>(h));
      }
    }
#pragma GCC unroll 4
    for (int t = 0; t < T; ++t) {
      const int8_t* xq = tk[t][b].x->qs + 64 * J;
      const int32x4_t z = vdupq_n_s32(0);
      const int32x4_t a = dot16(dot16(z, lo, lds8(xq)), lo + 4, lds8(xq + 16));
      const int32x4_t c = dot16(dot16(z, hi, lds8(xq + 32)), hi + 4, lds8(xq + 48));
      isum[t] = vmlaq_s32(vmlaq_s32(isum[t], a, sc[2 * J]), c, sc[2 * J + 1]);
    }
  }

  // Super-block b (its group at gb) of T tokens into acc.
  template <int T>
  __attribute__((always_inline)) static void block(const char* gb, const KTok* const* tk, int64_t b,
                                                    float32x4_t* acc) {
    int32x4_t sc[8], mn[8];
    scales(gb, sc, mn);
    int32x4_t isum[T];
    for (int t = 0; t < T; ++t) isum[t] = vdupq_n_s32(0);
    chunk<0, T>(gb, tk, b, sc, isum);
    chunk<1, T>(gb, tk, b, sc, isum);
    chunk<2, T>(gb, tk, b, sc, isum);
    chunk<3, T>(gb, tk, b, sc, isum);
    finish<T>(gb, tk, b, mn, isum, acc);
  }

  // scale_min_k4 of 4 rows at once (the group's scales, byte k of the rows at
  // bytes 4k..4k+3) as int32x4 per sub-block, a lane per row.
  __attribute__((always_inline)) static void scales(const char* gb, int32x4_t* sc, int32x4_t* mn) {
    const uint8x16_t b0 = ldu8(gb + 4 * R), b1 = ldu8(gb + 4 * R + 16), b2 = ldu8(gb + 4 * R + 32);
    const uint8x16_t m6 = vdupq_n_u8(0x3f), top = vdupq_n_u8(0x30);
    widen_u8(vandq_u8(b0, m6), sc);
    widen_u8(vorrq_u8(vandq_u8(b2, vdupq_n_u8(0x0f)), vandq_u8(vshrq_n_u8(b0, 2), top)), sc + 4);
    widen_u8(vandq_u8(b1, m6), mn);
    widen_u8(vorrq_u8(vshrq_n_u8(b2, 4), vandq_u8(vshrq_n_u8(b1, 2), top)), mn + 4);
  }

  // The float steps of super-block b: the scaled sums isum and the mins.
  template <int T>
  __attribute__((always_inline)) static void finish(const char* gb, const KTok* const* tk, int64_t b,
                                                     const int32x4_t* mn, const int32x4_t* isum, float32x4_t* acc) {
    const float32x4_t dw = h4(gb), dm = h4(gb + 2 * R);
#pragma GCC unroll 4
    for (int t = 0; t < T; ++t) {
      const KTok& k = tk[t][b];
      const float32x4_t dx = vdupq_n_f32(k.x->d);
      acc[t] = vfmaq_f32(acc[t], vmulq_f32(dw, dx), vcvtq_f32_s32(isum[t]));
      int32x4_t im = vmulq_n_s32(mn[0], k.w[0]);
#pragma GCC unroll 8
      for (int s = 1; s < 8; ++s) im = vmlaq_n_s32(im, mn[s], k.w[s]);
      acc[t] = vfmsq_f32(acc[t], vmulq_f32(dm, dx), vcvtq_f32_s32(im));
    }
  }
};

// Q6_K levels 0..63 of 16 ql bytes L and their qh bytes H: low nibbles with
// qh bits 2gp (u0) and high nibbles with bits 2gp + 4 (u1), gp = 0 or 1.
inline void q6_levels(uint8x16_t L, uint8x16_t H, int gp, uint8x16_t* u0, uint8x16_t* u1) {
  const uint8x16_t m4 = vdupq_n_u8(0x0f), top = vdupq_n_u8(0x30);
  const uint8x16_t h0 = gp ? vshlq_n_u8(H, 2) : vshlq_n_u8(H, 4);
  const uint8x16_t h1 = gp ? vshrq_n_u8(H, 2) : H;
  *u0 = vorrq_u8(vandq_u8(L, m4), vandq_u8(h0, top));
  *u1 = vorrq_u8(vshrq_n_u8(L, 4), vandq_u8(h1, top));
}

// Q6_K: 16 sub-blocks of 16, levels 0..63 less 32, signed int8 scales.
template <int kQWord = 4>
struct K6Neon : KTileNeon<K6Neon<kQWord>> {
  static constexpr GgmlType kType = GgmlType::Q6_K;
  static constexpr size_t kBlock = sizeof(BlockQ6_K);
  static constexpr int R = kRowsNeon;

  static void prep(const BlockQ8_K& x, int32_t* w) {
    for (int s = 0; s < 16; ++s) w[s] = -32 * x.bsums[s];
  }

  // Super-block b (its group at gb) of T tokens into acc.
  template <int T>
  __attribute__((always_inline)) static void block(const char* gb, const KTok* const* tk, int64_t b,
                                                    float32x4_t* acc) {
    int32x4_t sc[16];
    scales(gb, sc);
    int32x4_t isum[T];
    for (int t = 0; t < T; ++t) isum[t] = vdupq_n_s32(0);
    // half h, quads 4a..4a+3 of each 32, low nibbles (group gp) then high (gp + 2)
#pragma GCC unroll 2
    for (int h = 0; h < 2; ++h)
#pragma GCC unroll 2
      for (int a = 0; a < 2; ++a)
#pragma GCC unroll 2
        for (int gp = 0; gp < 2; ++gp) {
          uint8x16_t u0[4], u1[4];
#pragma GCC unroll 4
          for (int m = 0; m < 4; ++m) {
            const int lq = 4 * a + m;
            q6_levels(word4<kQWord>(gb, 0, 16 * h + 8 * gp + lq), word4<kQWord>(gb, 128, 8 * h + lq), gp, &u0[m],
                      &u1[m]);
          }
          const int s0 = 8 * h + 2 * gp + a, s1 = s0 + 4;  // sub-blocks of groups gp, gp + 2
#pragma GCC unroll 4
          for (int t = 0; t < T; ++t) {
            const KTok& k = tk[t][b];
            const int32x4_t p0 = dot16(vdupq_n_s32(k.w[s0]), u0, lds8(k.x->qs + 16 * s0));
            const int32x4_t p1 = dot16(vdupq_n_s32(k.w[s1]), u1, lds8(k.x->qs + 16 * s1));
            isum[t] = vmlaq_s32(vmlaq_s32(isum[t], p0, sc[s0]), p1, sc[s1]);
          }
        }
    finish<T>(gb, tk, b, isum, acc);
  }

  // The 16 int8 sub-block scales of 4 rows as int32x4 per sub-block, a lane per row.
  __attribute__((always_inline)) static void scales(const char* gb, int32x4_t* sc) {
#pragma GCC unroll 4
    for (int v = 0; v < 4; ++v) widen_s8(lds8(gb + 192 * R + 16 * v), sc + 4 * v);
  }

  // acc += d_w * d_x * isum per token.
  template <int T>
  __attribute__((always_inline)) static void finish(const char* gb, const KTok* const* tk, int64_t b,
                                                     const int32x4_t* isum, float32x4_t* acc) {
    const float32x4_t dw = h4(gb + 208 * R);
    for (int t = 0; t < T; ++t)
      acc[t] = vfmaq_f32(acc[t], vmulq_f32(dw, vdupq_n_f32(tk[t][b].x->d)), vcvtq_f32_s32(isum[t]));
  }
};

// Q4_K, Q5_K, Q6_K entries of a table: file layout and 4-row packed.
struct V4Rows {
  static constexpr int R = kRowsNeon;
  static constexpr int kMaxT = 4;  // tokens per k_group call (tile<T> runs them in passes of 2)
};
inline void fill_kquant_tiles(KernelTable& t) {
  set_kquant_entries<K4Neon<false>, K4Neon<true>, K6Neon<>, V4Rows>(t);
}

}  // namespace
}  // namespace bluelm::kernels
