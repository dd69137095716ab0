// AVX2 gemm tiles: Q4_0 (the exact block sums of the scalar reference),
// Q8_0 and Q4_1 (x86/tiles256.h with vpmaddubsw lane sums), float rows
// (common/float_tile.h); all
// driven by common/gemm_driver.h, in the file layout or in packed groups of 4
// rows (the same bits either way).
#include "kernels/avx2/avx2.h"
#include "kernels/common/float_tile.h"
#include "kernels/common/gemm_driver.h"
#include "kernels/x86/common.h"
#include "kernels/x86/tiles256.h"

namespace bluelm::kernels::avx2 {
namespace {

// Exact int32 lane sums of 4 products from vpmaddubsw (u8 x s8 pairs to int16)
// and vpmaddwd (pairs to int32).
struct Maddubs {
  struct W {
    __m256i s, a;  // the quants, and |w| (-128 reads as 128 unsigned)
  };
  static __m256i start(__m256i) { return _mm256_setzero_si256(); }  // unused: the sums start at 0
  static W prep_w(__m256i s) { return {s, _mm256_sign_epi8(s, s)}; }
  static __m256i dot_ss(const W& w, __m256i q, __m256i) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(w.a, _mm256_sign_epi8(q, w.s)), _mm256_set1_epi16(1));
  }
  static __m256i dot_us(__m256i u, __m256i q) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(u, q), _mm256_set1_epi16(1));
  }
};

// Q4_0: the order of the scalar reference (llama.cpp's repacked Q4_0 gemm):
// each block's products summed exactly, then one FMA per output. The 8 lane
// sums of 4 outputs are folded by hadd into one int32 per output, so 4 outputs
// share a conversion and an FMA.
inline __m128i fold4_epi32(__m256i a, __m256i b, __m256i c, __m256i d) {
  const __m256i h = _mm256_hadd_epi32(_mm256_hadd_epi32(a, b), _mm256_hadd_epi32(c, d));
  return _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
}

struct Q4_0Op {
  static constexpr size_t kBlock = sizeof(BlockQ4_0);
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
        // sum((n-8)*q) = sum(n*q) - sum(8*q): one maddubs per token block, shared by rows.
        c[t] = _mm256_maddubs_epi16(_mm256_set1_epi8(8), q[t]);
      }
      __m256i s32[4 * G];
      alignas(16) float sc[4 * G];
#pragma GCC unroll 8
      for (int i = 0; i < R; ++i) {
        const BlockQ4_0* wb = reinterpret_cast<const BlockQ4_0*>(w + i * rs + b * bs);
        const __m256i n = nibbles(wb->qs);
        const float dw = _mm_cvtss_f32(head2(wb));
#pragma GCC unroll 4
        for (int t = 0; t < T; ++t) {
          const __m256i p = _mm256_sub_epi16(_mm256_maddubs_epi16(n, q[t]), c[t]);
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

void gemm_f32(const void* W, size_t w_stride, const void* X, size_t x_stride, float* Y, size_t ldy, int64_t K,
              int64_t r0, int64_t r1, int64_t n_tok) {
  gemm_tiles<FloatTile<F32Load>, 0>(W, w_stride, X, x_stride, Y, ldy, K, r0, r1, n_tok);
}

void fill_gemm(KernelTable& t) {
  constexpr int kGroup = 4;  // packed rows: a row tile streams one interleaved group
  t.gemm[W_F32] = gemm_f32;
  t.gemm[W_F16] = gemm_tiles<FloatTile<F16Load>, 0>;
  t.gemm[W_BF16] = gemm_tiles<FloatTile<BF16Load>, 0>;
  t.gemm[W_Q8_0] = gemm_tiles<Q8_0Tile<Maddubs>, 0>;
  t.gemm[W_Q4_0] = gemm_tiles<Q4_0Op, 0>;
  t.gemm[W_Q4_1] = gemm_tiles<Q4_1Tile<Maddubs>, 0>;
  t.pack_rows[W_Q8_0] = t.pack_rows[W_Q4_0] = t.pack_rows[W_Q4_1] = kGroup;
  t.gemm_packed[W_Q8_0] = gemm_tiles<Q8_0Tile<Maddubs>, kGroup>;
  t.gemm_packed[W_Q4_0] = gemm_tiles<Q4_0Op, kGroup>;
  t.gemm_packed[W_Q4_1] = gemm_tiles<Q4_1Tile<Maddubs>, kGroup>;
}

}  // namespace bluelm::kernels::avx2
