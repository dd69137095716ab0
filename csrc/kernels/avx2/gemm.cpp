// AVX2 gemm tiles: Q4_0, Q8_0 and Q4_1, Q5_0 (as Q8_0) and Q5_1 (as Q4_1)
// (x86/tiles256.h, the lane sums by vpmaddubsw), float rows (common/float_tile.h); all
// driven by common/gemm_driver.h (Q5 prompts: gemm_q5_staged, below), in the file
// layout or in packed groups of 4 rows (the same bits either way).
#include <algorithm>
#include <cstddef>
#include <cstring>

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

// Q5_0 / Q5_1 prompts: a row tile's 5-bit levels are unpacked once per token
// chunk into 8-bit blocks (BlockQ8_0: d and q - 16; BlockQ8_1's layout: d, m and
// q), which every token pair then reads through the Q8_0 / Q4_1 tile. The
// levels are the same, so the exact lane sums and the bits are those of the
// tiles on the file's blocks, which unpack (q5_high, nibbles: about 10
// instructions a row block) again for every 2 tokens.
struct U8Blk {  // unsigned levels in a BlockQ8_1-shaped block, [d, m] at its head
  using Block = BlockQ8_1;
  static __m256i quants(const char* wb) { return load32(reinterpret_cast<const Block*>(wb)->qs); }
};
template <class Blk, class Staged>
void stage_block(const char* wb, char* out) {
  std::memcpy(out, wb, 4);  // d (and Q5_1's m): the head both layouts share; BlockQ8_0's levels overwrite the rest
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + offsetof(Staged, qs)), Blk::quants(wb));
}

template <class Blk, class Staged, class Tile, class FileTile, int P>
void gemm_q5_staged(const void* W, size_t ws, const void* X, size_t xs, float* Y, size_t ldy, int64_t K,
                    int64_t r0, int64_t r1, int64_t n_tok) {
  constexpr size_t kStageBytes = 64 << 10;  // 4 rows of K up to 14560 (BlockQ8_1); longer: unstaged
  const int64_t nb = K / QK;
  const size_t srs = static_cast<size_t>(nb) * sizeof(Staged);
  if (n_tok < 2 * kTileToks || kTileRows * srs > kStageBytes)
    return gemm_tiles<FileTile, P>(W, ws, X, xs, Y, ldy, K, r0, r1, n_tok);
  alignas(32) char stage[kStageBytes];
  const RowLayout L{static_cast<const char*>(W), ws, sizeof(typename Blk::Block), P};
  const size_t rs = L.row_step(), bs = L.block_step();
  const int64_t chunk = token_chunk(xs);
  for (int64_t t0 = 0; t0 < n_tok; t0 += chunk) {
    const int64_t t1 = std::min(n_tok, t0 + chunk);
    for (int64_t r = r0; r < r1;) {
      const bool full = full_row_tile(r, r1, P);
      const int rows = full ? kTileRows : 1;
      const char* wr = L.row(r);
      for (int i = 0; i < rows; ++i)
        for (int64_t b = 0; b < nb; ++b)
          stage_block<Blk, Staged>(wr + i * rs + b * bs, stage + i * srs + b * sizeof(Staged));
      row_tile_tokens<Tile>(full, stage, srs, sizeof(Staged), static_cast<const char*>(X), xs, Y, ldy, K, r, t0,
                            t1);
      r += rows;
    }
  }
}
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
  using Q5_0Staged = Q8_0Tile<Maddubs>;
  using Q5_1Staged = Q4_1Tile<Maddubs, U8Blk>;
  t.gemm[W_Q5_0] = gemm_q5_staged<Q5_0Blk, BlockQ8_0, Q5_0Staged, Q5_0Tile, 0>;
  t.gemm[W_Q5_1] = gemm_q5_staged<Q5_1Blk, BlockQ8_1, Q5_1Staged, Q5_1Tile, 0>;
  t.pack_rows[W_Q5_0] = t.pack_rows[W_Q5_1] = kGroup;
  t.gemm_packed[W_Q5_0] = gemm_q5_staged<Q5_0Blk, BlockQ8_0, Q5_0Staged, Q5_0Tile, kGroup>;
  t.gemm_packed[W_Q5_1] = gemm_q5_staged<Q5_1Blk, BlockQ8_1, Q5_1Staged, Q5_1Tile, kGroup>;
}

}  // namespace bluelm::kernels::avx2
