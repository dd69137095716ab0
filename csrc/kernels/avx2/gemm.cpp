// AVX2 gemm tiles: Q4_0, Q8_0 and Q4_1, Q5_0 (as Q8_0) and Q5_1 (as Q4_1)
// (x86/tiles256.h, the lane sums by vpmaddubsw), float rows (common/float_tile.h); all
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
  t.gemm[W_Q4_0] = gemm_tiles<Q4_0Tile<>, 0>;
  t.gemm[W_Q4_1] = gemm_tiles<Q4_1Tile<Maddubs>, 0>;
  t.pack_rows[W_Q8_0] = t.pack_rows[W_Q4_0] = t.pack_rows[W_Q4_1] = kGroup;
  t.gemm_packed[W_Q8_0] = gemm_tiles<Q8_0Tile<Maddubs>, kGroup>;
  t.gemm_packed[W_Q4_0] = gemm_tiles<Q4_0Tile<>, kGroup>;
  t.gemm_packed[W_Q4_1] = gemm_tiles<Q4_1Tile<Maddubs>, kGroup>;
  using Q5_0Tile = Q8_0Tile<Maddubs, Q5_0Blk>;
  using Q5_1Tile = Q4_1Tile<Maddubs, Q5_1Blk>;
  t.gemm[W_Q5_0] = gemm_tiles<Q5_0Tile, 0>;
  t.gemm[W_Q5_1] = gemm_tiles<Q5_1Tile, 0>;
  t.pack_rows[W_Q5_0] = t.pack_rows[W_Q5_1] = kGroup;
  t.gemm_packed[W_Q5_0] = gemm_tiles<Q5_0Tile, kGroup>;
  t.gemm_packed[W_Q5_1] = gemm_tiles<Q5_1Tile, kGroup>;
}

}  // namespace bluelm::kernels::avx2
