// KernelTable::gemv_fast for file-layout Q8_0 (SmolLM2's tied output matrix):
// 1 to kGemvBatchMax tokens in a faster order than the one-token decode, for
// screening a greedy round's rows (llm/output_argmax.h), not for their bits.
// 16 rows x T tokens a tile: per block the 16 rows' quants are transposed once
// (lane j = a row, register g = its dword g), so a token's block is 8
// vpdpbusd against its own dwords broadcast, giving each row's exact int32
// block sum in one lane; then one convert and one FMA by d_w * d_x per 16 rows
// (the decode: 8 lanes a row, a convert, multiply and FMA each). Each output is
// sum_b fl(isum_b * d_w,b * d_x,b) by nb FMAs in block order: within
// gamma(nb) * sum_b |isum_b * d_w,b * d_x,b| of the exact sum (the products
// d_w * d_x of two halves are exact floats; |isum| < 2^24 converts exactly).
#include <algorithm>
#include <cstring>
#include <type_traits>
#include <utility>
#include <vector>

#include "kernels/avx512/avx512.h"
#include "kernels/avx512/zmm.h"
#include "kernels/x86/common.h"

namespace bluelm::kernels::avx512 {
namespace {

constexpr int kRows = 16;
constexpr int kTok = 12;  // tokens per tile: 8 W_g + 12 accumulators + temporaries in 32 registers

// A token's block, prepared once per call: -128 * sum(q) (the start that
// takes vpdpbusd's unsigned weights w ^ 0x80 = w + 128 back to w) and d_x.
struct TokBlock {
  int32_t start;
  float dx;
};

void prep_tok(const char* x, int64_t nb, TokBlock* out) {
  for (int64_t b = 0; b < nb; ++b) {
    const BlockQ8_0& xb = reinterpret_cast<const BlockQ8_0*>(x)[b];
    int32_t s = 0;
    for (int i = 0; i < QK; ++i) s += xb.qs[i];
    out[b] = {-128 * s, h2f(xb.d)};
  }
}

using I32u = int32_t __attribute__((may_alias, aligned(1)));  // an unaligned dword of a token's quants

// Lane j holds row kLane[j] of the tile (the transpose's order; self-inverse).
alignas(64) constexpr int32_t kLane[16] = {0, 1, 2, 3, 8, 9, 10, 11, 4, 5, 6, 7, 12, 13, 14, 15};

template <int T>
void ftile(const char* w, size_t ws, const char* const* xq, const TokBlock* const* tb, int64_t nb, float* const* y) {
  constexpr size_t bb = sizeof(BlockQ8_0);
  const __m512i lane = _mm512_load_si512(kLane);
  const __m512i doff = _mm512_mullo_epi32(lane, _mm512_set1_epi32(static_cast<int32_t>(ws)));
  const __m512i flip = _mm512_set1_epi8(char(0x80));
  __m512 acc[T];
  for (int t = 0; t < T; ++t) acc[t] = _mm512_setzero_ps();
  // The tile's 16 rows are 16 interleaved streams the hardware prefetcher
  // does not follow: the next tile (the next 16 * ws bytes) is fetched in
  // order, a share of its lines per block.
  const char* next = w + kRows * ws;
  const int64_t lines = static_cast<int64_t>(kRows * ws + 63) / 64, per_block = (lines + nb - 1) / nb;
  for (int64_t b = 0; b < nb; ++b) {
    const char* wb = w + b * bb;
    for (int64_t i = b * per_block; i < std::min(lines, (b + 1) * per_block); ++i) _mm_prefetch(next + 64 * i, _MM_HINT_T0);
    // d_w of the 16 rows in lane order (a dword from each block's start: d and qs[0..1]).
    const __m512i dd = _mm512_i32gather_epi32(doff, wb, 1);
    const __m512 dw = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(dd));
    __m512i Z[8];
    for (int k = 0; k < 8; ++k) {
      const __m256i lo = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wb + k * ws + 2));
      const __m256i hi = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wb + (k + 8) * ws + 2));
      Z[k] = _mm512_xor_si512(_mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1), flip);
    }
    // Per 128-bit chunk: 4x4 dword transposes, then chunks regrouped.
    __m512i t4[8], u[8], W[8];
    for (int k = 0; k < 4; ++k) {
      t4[2 * k] = _mm512_unpacklo_epi32(Z[2 * k], Z[2 * k + 1]);
      t4[2 * k + 1] = _mm512_unpackhi_epi32(Z[2 * k], Z[2 * k + 1]);
    }
    for (int h = 0; h < 2; ++h) {  // rows 0-3 (h = 0) and 4-7 (h = 1) of each half
      const __m512i a0 = t4[4 * h], a1 = t4[4 * h + 1], a2 = t4[4 * h + 2], a3 = t4[4 * h + 3];
      u[4 * h + 0] = _mm512_unpacklo_epi64(a0, a2);
      u[4 * h + 1] = _mm512_unpackhi_epi64(a0, a2);
      u[4 * h + 2] = _mm512_unpacklo_epi64(a1, a3);
      u[4 * h + 3] = _mm512_unpackhi_epi64(a1, a3);
    }
    for (int m = 0; m < 4; ++m) {
      W[m] = _mm512_shuffle_i32x4(u[m], u[4 + m], 0x88);
      W[m + 4] = _mm512_shuffle_i32x4(u[m], u[4 + m], 0xDD);
    }
    for (int t = 0; t < T; ++t) {
      // The token's dword g in every lane: a broadcast from memory (from a
      // register it would cost a move and a shuffle).
      const I32u* xd = reinterpret_cast<const I32u*>(xq[t] + b * bb + 2);
      __m512i s0 = _mm512_set1_epi32(tb[t][b].start), s1 = _mm512_setzero_si512();
      s0 = _mm512_dpbusd_epi32(s0, W[0], _mm512_set1_epi32(xd[0]));
      s1 = _mm512_dpbusd_epi32(s1, W[1], _mm512_set1_epi32(xd[1]));
      s0 = _mm512_dpbusd_epi32(s0, W[2], _mm512_set1_epi32(xd[2]));
      s1 = _mm512_dpbusd_epi32(s1, W[3], _mm512_set1_epi32(xd[3]));
      s0 = _mm512_dpbusd_epi32(s0, W[4], _mm512_set1_epi32(xd[4]));
      s1 = _mm512_dpbusd_epi32(s1, W[5], _mm512_set1_epi32(xd[5]));
      s0 = _mm512_dpbusd_epi32(s0, W[6], _mm512_set1_epi32(xd[6]));
      s1 = _mm512_dpbusd_epi32(s1, W[7], _mm512_set1_epi32(xd[7]));
      const __m512 f = _mm512_cvtepi32_ps(_mm512_add_epi32(s0, s1));
      acc[t] = _mm512_fmadd_ps(f, _mm512_mul_ps(dw, _mm512_set1_ps(tb[t][b].dx)), acc[t]);
    }
  }
  for (int t = 0; t < T; ++t) _mm512_storeu_ps(y[t], _mm512_permutexvar_ps(lane, acc[t]));
}

void gemv_fast_q8_0(const void* W, size_t ws, const void* X, size_t xs, float* Y, size_t ldy, int64_t K, int64_t r0,
                    int64_t r1, int64_t n_tok) {
  const char* w = static_cast<const char*>(W);
  const char* x = static_cast<const char*>(X);
  const int64_t nb = K / QK;
  std::vector<TokBlock> tb(static_cast<size_t>(n_tok * nb));
  for (int64_t t = 0; t < n_tok; ++t) prep_tok(x + t * xs, nb, tb.data() + t * nb);
  const int64_t n_tiles = (n_tok + kTok - 1) / kTok;
  int64_t r = r0;
  for (; r + kRows <= r1; r += kRows) {
    for (int64_t i = 0, t0 = 0; i < n_tiles; ++i) {
      const int T = static_cast<int>((n_tok - t0) / (n_tiles - i));  // tiles as even as they split
      const char* xq[kTok];
      const TokBlock* pt[kTok];
      float* y[kTok];
      for (int j = 0; j < T; ++j) {
        xq[j] = x + (t0 + j) * xs;
        pt[j] = tb.data() + (t0 + j) * nb;
        y[j] = Y + (t0 + j) * ldy + r;
      }
      with_tokens<kTok>(T, [&](auto n) { ftile<decltype(n)::value>(w + r * ws, ws, xq, pt, nb, y); });
      t0 += T;
    }
  }
  if (r < r1)  // the rows left: the decode's own values (within any bound)
    for (int64_t t = 0; t < n_tok; ++t) decode_q8_0(w, ws, x + t * xs, xs, Y + t * ldy, ldy, K, r, r1);
}

}  // namespace

void fill_gemv_fast(KernelTable& t) {
  if (t.pack_rows[W_Q8_0] == 0) t.gemv_fast[W_Q8_0] = gemv_fast_q8_0;  // the file layout ftile reads
}

}  // namespace bluelm::kernels::avx512
