// The driver of the SIMD int8 gemms of the vision format (i8_format.h): token
// chunks whose activations stay in L2, each in register tiles of up to
// K::kPanels panels x K::kTok tokens; a tile's tokens stay in L1 while the
// panels of [p0, p1) sweep them (the caller keeps [p0, p1) small enough for
// those panels to stay in L2).
// Which tile computes an output never changes its bits (exact int32 sums, the
// same epilogue), so the chunking is free. K supplies:
//   static constexpr int kTok, kPanels;
//   template <int R, int T> static void tile(const I8Tile&)  (R panels x T tokens)
// Internal linkage: each ISA file instantiates its own copy.
#pragma once
#include <cstddef>
#include <cstdint>

#include "kernels/common/intrinsics.h"

#include "kernels/kernels.h"

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
  bool gelu;  // GELU-tanh on each output (K tiles that set VisionKernels::i8_gemm_gelu)
};

template <class K, int R, int T = K::kTok>
inline void i8_tile_of(int nt, const I8Tile& a) {
  if constexpr (T >= 1) {
    if (nt == T) return K::template tile<R, T>(a);
    i8_tile_of<K, R, T - 1>(nt, a);
  }
}

template <class K, size_t kChunkBytes = 256 * 1024, bool kGelu = false>
void i8_gemm_tiles(const I8Matrix& W, const I8Acts& X, float* Y, size_t ldy, const float* bias, bool accumulate,
                   int64_t p0, int64_t p1) {
  static_assert(K::kTok <= kI8MaxTok && (K::kPanels == 1 || K::kPanels == 2), "tile shape");
  const int64_t n = X.n;
  int64_t chunk = static_cast<int64_t>(kChunkBytes / X.stride);
  chunk = chunk < K::kTok ? K::kTok : chunk - chunk % K::kTok;
  I8Tile a{};
  a.pstride = static_cast<size_t>(kI8Panel * W.kp);
  a.xs = X.stride;
  a.ldy = ldy;
  a.W = &W;
  a.bias = bias;
  a.accumulate = accumulate;
  a.gelu = kGelu;
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

// A table's int8 gemm: this driver over K's tiles, reading panels in `layout`.
template <class K, size_t kChunkBytes = 256 * 1024>
void set_i8_gemm(VisionKernels& v, I8Layout layout) {
  v.i8_layout = layout;
  v.i8_gemm = i8_gemm_tiles<K, kChunkBytes>;
}

// The epilogue of the tiles, on the exact int32 sums of one panel: the scalar
// reference's float operations in its order (files built with
// -ffp-contract=off). acc: T tokens' sums for the 16 rows of panel a.p (token
// t at acc + 16 t), each acc_true - shift * wsum (tiles that multiply q = u -
// 128 as signed bytes leave shift = 128; those that take u unsigned, 0).
// Writes y = float(acc_true - zp * wsum) * (scale * x_scale) (+ bias) (+ y)
// for the panel's rows below W.rows. V, the ISA's lanes: kLanes, I and F
// (int32 and float vectors), loadi, loadf, storef, set1, cvt, mul, add and
// mla(acc, s, w) = acc + s * w (exact int32).
template <class V, int T>
inline void i8_store(const int32_t* acc, int32_t shift, const I8Tile& a) {
  constexpr int L = V::kLanes;
  const I8Matrix& W = *a.W;
  const int64_t row0 = a.p * kI8Panel;
  const int64_t left = W.rows - row0 < kI8Panel ? W.rows - row0 : kI8Panel;
  float b[kI8Panel] = {};
  if (a.bias)
    for (int64_t i = 0; i < left; ++i) b[i] = a.bias[row0 + i];
  for (int r = 0; r < kI8Panel; r += L) {  // scale and wsum are padded to whole panels
    const typename V::F sw = V::loadf(W.scale + row0 + r), bv = V::loadf(b + r);
    const typename V::I wsum = V::loadi(W.wsum + row0 + r);
    for (int t = 0; t < T; ++t) {
      // acc_true - zp * wsum = acc + (shift - zp) * wsum, exactly in int32.
      const typename V::I c = V::mla(V::loadi(acc + 16 * t + r), shift - a.zp[t], wsum);
      typename V::F v = V::mul(V::cvt(c), V::mul(sw, V::set1(a.xscale[t])));
      if (a.bias) v = V::add(v, bv);
      float* y = a.y + t * a.ldy + row0 + r;
      if (left >= r + L) {
        if (a.accumulate) v = V::add(V::loadf(y), v);
        V::storef(y, v);
      } else {
        float tmp[L];
        V::storef(tmp, v);
        for (int i = 0; r + i < left; ++i) y[i] = a.accumulate ? y[i] + tmp[i] : tmp[i];
      }
    }
  }
}

// The lanes of i8_store per ISA (each compiled only where its instructions are).
#if defined(__AVX2__)
struct I8Lanes8 {
  static constexpr int kLanes = 8;
  using I = __m256i;
  using F = __m256;
  static I loadi(const int32_t* p) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)); }
  static F loadf(const float* p) { return _mm256_loadu_ps(p); }
  static void storef(float* p, F v) { _mm256_storeu_ps(p, v); }
  static F set1(float v) { return _mm256_set1_ps(v); }
  static F cvt(I v) { return _mm256_cvtepi32_ps(v); }
  static F mul(F a, F b) { return _mm256_mul_ps(a, b); }
  static F add(F a, F b) { return _mm256_add_ps(a, b); }
  static I mla(I acc, int32_t s, I w) { return _mm256_add_epi32(acc, _mm256_mullo_epi32(_mm256_set1_epi32(s), w)); }
};
#endif
#if defined(__aarch64__)
struct I8Lanes4 {
  static constexpr int kLanes = 4;
  using I = int32x4_t;
  using F = float32x4_t;
  static I loadi(const int32_t* p) { return vld1q_s32(p); }
  static F loadf(const float* p) { return vld1q_f32(p); }
  static void storef(float* p, F v) { vst1q_f32(p, v); }
  static F set1(float v) { return vdupq_n_f32(v); }
  static F cvt(I v) { return vcvtq_f32_s32(v); }
  static F mul(F a, F b) { return vmulq_f32(a, b); }
  static F add(F a, F b) { return vaddq_f32(a, b); }
  static I mla(I acc, int32_t s, I w) { return vmlaq_s32(acc, vdupq_n_s32(s), w); }
};
#endif

}  // namespace
}  // namespace bluelm::kernels
