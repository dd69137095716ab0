// The driver of the SIMD int8 gemms of the vision format (i8_format.h): token
// chunks whose activations stay in L2, each in register tiles of up to
// K::kPanels panels x K::kTok tokens; a tile's tokens stay in L1 while the
// panels of [p0, p1) sweep them (the caller keeps [p0, p1) small enough for
// those panels to stay in L2).
// Which tile computes an output never changes its bits (exact int32 sums, the
// same epilogue), so the chunking is free. K supplies:
//   static constexpr int kTok, kPanels;  static constexpr size_t kChunkBytes;
//   template <int R, int T> static void tile(const I8Tile&)  (R panels x T tokens)
// Internal linkage: each ISA file instantiates its own copy.
#pragma once
#include <cstddef>
#include <cstdint>

#include "kernels/i8_format.h"

namespace bluelm::kernels {
namespace {

constexpr int kI8MaxTok = 16;

// One register tile's operands: panels p, p+1, ... (w, w + pstride, ...) against
// tokens xt[0..T) (rows xs bytes apart when they are consecutive); outputs to
// y[t * ldy + r] for the rows r of those panels.
struct I8Tile {
  const int8_t* w;
  size_t pstride;
  const uint8_t* xt[kI8MaxTok];
  size_t xs;
  float* y;
  size_t ldy;
  const I8Matrix* W;
  const float* xscale;  // of token 0 of the tile
  const int32_t* zp;
  int64_t p;
  const float* bias;
  bool accumulate;
};

template <class K, int R, int T = K::kTok>
inline void i8_tile_of(int nt, const I8Tile& a) {
  if constexpr (T >= 1) {
    if (nt == T) return K::template tile<R, T>(a);
    i8_tile_of<K, R, T - 1>(nt, a);
  }
}

template <class K>
void i8_gemm_tiles(const I8Matrix& W, const I8Acts& X, float* Y, size_t ldy, const float* bias, bool accumulate,
                   int64_t p0, int64_t p1) {
  static_assert(K::kTok <= kI8MaxTok && (K::kPanels == 1 || K::kPanels == 2), "tile shape");
  const int64_t n = X.n;
  int64_t chunk = static_cast<int64_t>(K::kChunkBytes / X.stride);
  chunk = chunk < K::kTok ? K::kTok : chunk - chunk % K::kTok;
  I8Tile a{};
  a.pstride = static_cast<size_t>(kI8Panel * W.kp);
  a.xs = X.stride;
  a.ldy = ldy;
  a.W = &W;
  a.bias = bias;
  a.accumulate = accumulate;
  for (int64_t t0 = 0; t0 < n; t0 += chunk) {
    const int64_t t1 = t0 + chunk < n ? t0 + chunk : n;
    for (int64_t t = t0; t < t1; t += K::kTok) {
      const int nt = t1 - t < K::kTok ? static_cast<int>(t1 - t) : K::kTok;
      for (int i = 0; i < nt; ++i) a.xt[i] = X.q + (t + i) * X.stride;
      a.y = Y + t * ldy;
      a.xscale = X.scale + t;
      a.zp = X.zp + t;
      for (int64_t p = p0; p < p1;) {
        const bool two = K::kPanels == 2 && p + 2 <= p1;
        a.w = W.panels + p * a.pstride;
        a.p = p;
        if (two) i8_tile_of<K, 2>(nt, a);
        else i8_tile_of<K, 1>(nt, a);
        p += two ? 2 : 1;
      }
    }
  }
}

}  // namespace
}  // namespace bluelm::kernels
