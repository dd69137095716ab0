// The float-row tile (F32 / F16 / BF16 weights against activations of the same
// type) of the AVX2 and NEON tables: R rows x T tokens; per output one 8-lane
// FMA accumulator over K in steps of 8 elements, summed by the ISA's lane
// tree, then the K % 8 tail one product at a time. L, the element loader:
//   L::E             the element type
//   L::Vec::F8       8 elements as floats;      F8 L::load8(const E*)
//   float L::load1(const E*)
//   L::Vec::Acc      the accumulator;  Acc zero(); Acc fma(Acc, F8 w, F8 x)
//                    (lane by lane, in lane order); float sum(Acc) (the lane tree)
// Internal linkage: each ISA file instantiates its own copy.
#pragma once
#include <cstddef>
#include <cstdint>

namespace bluelm::kernels {
namespace {

template <class L>
struct FloatTile {
  static constexpr size_t kBlock = 0;  // never packed; rs is the row stride
  template <int R, int T>
  static void tile(const char* w, size_t rs, size_t /*bs*/, const char* x, size_t xs, float* y, size_t ldy,
                   int64_t K) {
    using E = typename L::E;
    using V = typename L::Vec;
    typename V::Acc acc[R][T];
    for (int i = 0; i < R; ++i)
      for (int t = 0; t < T; ++t) acc[i][t] = V::zero();
    int64_t k = 0;
    for (; k + 8 <= K; k += 8) {
      typename V::F8 xv[T];
#pragma GCC unroll 4
      for (int t = 0; t < T; ++t) xv[t] = L::load8(reinterpret_cast<const E*>(x + t * xs) + k);
#pragma GCC unroll 8
      for (int i = 0; i < R; ++i) {
        const typename V::F8 wv = L::load8(reinterpret_cast<const E*>(w + i * rs) + k);
#pragma GCC unroll 4
        for (int t = 0; t < T; ++t) acc[i][t] = V::fma(acc[i][t], wv, xv[t]);
      }
    }
    for (int i = 0; i < R; ++i) {
      const E* wr = reinterpret_cast<const E*>(w + i * rs);
      for (int t = 0; t < T; ++t) {
        const E* xr = reinterpret_cast<const E*>(x + t * xs);
        float s = V::sum(acc[i][t]);
        for (int64_t j = k; j < K; ++j) s += L::load1(wr + j) * L::load1(xr + j);
        y[t * ldy + i] = s;
      }
    }
  }
};

}  // namespace
}  // namespace bluelm::kernels
