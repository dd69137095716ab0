// The gemm driver shared by the SIMD tables whose quantised and float tiles
// are R weight rows x T tokens (AVX2, NEON, NEON dotprod): decode streams rows
// 4 at a time; prefill runs 4-row x 2-token tiles over token chunks small
// enough to stay in L2, so each row tile's weights are reused from L1. An
// output's arithmetic never depends on the tile that computes it, so every
// split of rows (threads, packed groups) gives the same bits. Internal linkage:
// each ISA file instantiates its own copy with its own flags.
#pragma once
#include <cstddef>
#include <cstdint>

namespace bluelm::kernels {
namespace {

// Where a weight row's blocks are: the file layout (P = 0), or groups of P
// rows whose blocks are interleaved (kernels/repack.h: block b of row g*P + i
// at slot b*P + i of group g).
struct RowLayout {
  const char* w;
  size_t ws;  // bytes per row
  size_t bb;  // bytes per block
  int P;
  // Block 0 of row r.
  const char* row(int64_t r) const { return P ? w + (r - r % P) * ws + (r % P) * bb : w + r * ws; }
  size_t row_step() const { return P ? bb : ws; }        // row i of a tile -> row i + 1
  size_t block_step() const { return P ? P * bb : bb; }  // block b of a row -> block b + 1
};

constexpr int kTileRows = 4, kTileToks = 2;  // decode: 4 rows; prefill tile: 4 rows x 2 tokens

// Prefill's token chunk: as many tokens as keep their activations within 192 KiB (L2).
inline int64_t token_chunk(size_t xs) {
  const int64_t chunk = static_cast<int64_t>((192 * 1024) / (xs ? xs : 1));
  return chunk < kTileToks ? kTileToks : chunk - chunk % kTileToks;
}

// Whether the tile at row r (of rows up to r1) has kTileRows rows; else it runs one row.
inline bool full_row_tile(int64_t r, int64_t r1, int P) { return r + kTileRows <= r1 && (P == 0 || r % P == 0); }

// Tokens [t0, t1) of the row tile at row r (kTileRows rows where full, else
// one), whose block b of tile row i is at wr + i*rs + b*bs: kTileToks-token
// tiles, then an odd token alone.
template <class Op>
void row_tile_tokens(bool full, const char* wr, size_t rs, size_t bs, const char* x, size_t xs, float* Y,
                     size_t ldy, int64_t K, int64_t r, int64_t t0, int64_t t1) {
  int64_t t = t0;
  for (; t + kTileToks <= t1; t += kTileToks) {
    const char* xt = x + t * xs;
    float* yt = Y + t * ldy + r;
    if (full) Op::template tile<kTileRows, kTileToks>(wr, rs, bs, xt, xs, yt, ldy, K);
    else Op::template tile<1, kTileToks>(wr, rs, bs, xt, xs, yt, ldy, K);
  }
  for (; t < t1; ++t) {
    if (full) Op::template tile<kTileRows, 1>(wr, rs, bs, x + t * xs, xs, Y + t * ldy + r, ldy, K);
    else Op::template tile<1, 1>(wr, rs, bs, x + t * xs, xs, Y + t * ldy + r, ldy, K);
  }
}

// Op: static constexpr size_t kBlock (bytes per block; 0 for float rows, which
// are never packed) and template <int R, int T> static void tile(w, rs, bs, x,
// xs, y, ldy, K): block b of tile row i at w + i*rs + b*bs, token t at x + t*xs,
// output (i, t) to y[t*ldy + i]. P: rows per packed group (0 = file layout).
template <class Op, int P>
void gemm_tiles(const void* W, size_t ws, const void* X, size_t xs, float* Y, size_t ldy, int64_t K,
                int64_t r0, int64_t r1, int64_t n_tok) {
  constexpr int kRows = kTileRows;
  static_assert(P == 0 || P == kRows, "a packed group is one row tile");
  const RowLayout L{static_cast<const char*>(W), ws, Op::kBlock, P};
  const char* x = static_cast<const char*>(X);
  const size_t rs = L.row_step(), bs = L.block_step();
  if (n_tok == 1) {
    for (int64_t r = r0; r < r1;) {
      if (full_row_tile(r, r1, P)) {
        Op::template tile<kRows, 1>(L.row(r), rs, bs, x, xs, Y + r, ldy, K);
        r += kRows;
      } else {
        Op::template tile<1, 1>(L.row(r), rs, bs, x, xs, Y + r, ldy, K);
        ++r;
      }
    }
    return;
  }
  const int64_t chunk = token_chunk(xs);
  for (int64_t t0 = 0; t0 < n_tok; t0 += chunk) {
    const int64_t t1 = t0 + chunk < n_tok ? t0 + chunk : n_tok;
    for (int64_t r = r0; r < r1;) {
      const bool full = full_row_tile(r, r1, P);
      row_tile_tokens<Op>(full, L.row(r), rs, bs, x, xs, Y, ldy, K, r, t0, t1);
      r += full ? kRows : 1;
    }
  }
}

}  // namespace
}  // namespace bluelm::kernels
