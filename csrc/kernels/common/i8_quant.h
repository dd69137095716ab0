// The activation quantiser of the int8 vision format (i8_format.h: I8QuantFn)
// around a per-ISA vector part Q:
//   Q::F, Q::kLanes, F Q::zero(), F Q::load(const float*), F Q::min(F, F),
//   F Q::max(F, F), float Q::hmin(F), float Q::hmax(F)   (the row's range)
//   int64_t Q::body(const float* x, int64_t k, float inv, int32_t z, uint8_t* q)
//       q = clamp(round(x * inv) + z, 0, 255) for a prefix of the row; returns its length
//   int32_t Q::round(float v)   to nearest, ties to even
// Include only from files built with -ffp-contract=off (products rounded
// before the conversion, as the scalar reference). Internal linkage.
#pragma once
#include <cstdint>

#include "kernels/common/i8_driver.h"
#include "kernels/common/intrinsics.h"
#include "kernels/kernels.h"

namespace bluelm::kernels {
namespace {

template <class Q>
float i8_quant_row(const float* x, int64_t k, int64_t kp, uint8_t* q, int32_t* zp) {
  typename Q::F lo_v = Q::zero(), hi_v = lo_v;
  int64_t i = 0;
  for (; i + Q::kLanes <= k; i += Q::kLanes) {
    const typename Q::F v = Q::load(x + i);
    lo_v = Q::min(lo_v, v);
    hi_v = Q::max(hi_v, v);
  }
  float lo = Q::hmin(lo_v), hi = Q::hmax(hi_v);  // min(x, 0), max(x, 0)
  for (; i < k; ++i) {
    lo = x[i] < lo ? x[i] : lo;
    hi = x[i] > hi ? x[i] : hi;
  }
  const float range = hi - lo, inv = range > 0.0f ? 255.0f / range : 0.0f;
  const int32_t z = Q::round(-lo * inv);
  for (i = Q::body(x, k, inv, z, q); i < k; ++i) {
    const int32_t u = Q::round(x[i] * inv) + z;
    q[i] = static_cast<uint8_t>(u < 0 ? 0 : u > 255 ? 255 : u);
  }
  for (; i < kp; ++i) q[i] = static_cast<uint8_t>(z);
  *zp = z;
  return range / 255.0f;
}

// A table's int8 entries: the gemm of i8_driver.h over Tiles (reading
// `layout`) and the quantiser over Q.
template <class Tiles, class Q>
void set_i8(VisionKernels& v, I8Layout layout) {
  set_i8_gemm<Tiles>(v, layout);
  v.i8_quant = i8_quant_row<Q>;
}

// The vector parts per ISA (each compiled only where its instructions are).
#if defined(__AVX2__)
struct I8Quant8 {
  static int32_t round(float v) { return _mm_cvtss_si32(_mm_set_ss(v)); }
  using F = __m256;
  static constexpr int kLanes = 8;
  static F zero() { return _mm256_setzero_ps(); }
  static F load(const float* p) { return _mm256_loadu_ps(p); }
  static F min(F a, F b) { return _mm256_min_ps(a, b); }
  static F max(F a, F b) { return _mm256_max_ps(a, b); }
  static float hmin(F v) {  // lanes <= 0
    float l[8], lo = 0.0f;
    _mm256_storeu_ps(l, v);
    for (int j = 0; j < 8; ++j) lo = l[j] < lo ? l[j] : lo;
    return lo;
  }
  static float hmax(F v) {  // lanes >= 0
    float h[8], hi = 0.0f;
    _mm256_storeu_ps(h, v);
    for (int j = 0; j < 8; ++j) hi = h[j] > hi ? h[j] : hi;
    return hi;
  }
  static int64_t body(const float* x, int64_t k, float inv, int32_t z, uint8_t* q) {
    const __m256 vinv = _mm256_set1_ps(inv);
    const __m256i off = _mm256_set1_epi32(z), perm = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    auto cvt = [&](const float* p) {
      return _mm256_add_epi32(_mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(p), vinv)), off);
    };
    int64_t i = 0;
    for (; i + 32 <= k; i += 32) {  // packus saturates to [0, 255], as the reference's clamp
      const __m256i ab = _mm256_packus_epi32(cvt(x + i), cvt(x + i + 8));
      const __m256i cd = _mm256_packus_epi32(cvt(x + i + 16), cvt(x + i + 24));
      const __m256i b = _mm256_permutevar8x32_epi32(_mm256_packus_epi16(ab, cd), perm);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(q + i), b);
    }
    return i;
  }
};
#endif
#if defined(__AVX512F__)
struct I8Quant16 {
  static int32_t round(float v) { return _mm_cvtss_si32(_mm_set_ss(v)); }
  using F = __m512;
  static constexpr int kLanes = 16;
  static F zero() { return _mm512_setzero_ps(); }
  static F load(const float* p) { return _mm512_loadu_ps(p); }
  static F min(F a, F b) { return _mm512_min_ps(a, b); }
  static F max(F a, F b) { return _mm512_max_ps(a, b); }
  static float hmin(F v) { return _mm512_reduce_min_ps(v); }
  static float hmax(F v) { return _mm512_reduce_max_ps(v); }
  static int64_t body(const float* x, int64_t k, float inv, int32_t z, uint8_t* q) {
    const __m512 vinv = _mm512_set1_ps(inv);
    const __m512i off = _mm512_set1_epi32(z), zero = _mm512_setzero_si512();
    int64_t i = 0;
    for (; i + 16 <= k; i += 16) {
      const __m512i v = _mm512_add_epi32(_mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(x + i), vinv)), off);
      _mm_storeu_si128(reinterpret_cast<__m128i*>(q + i), _mm512_cvtusepi32_epi8(_mm512_max_epi32(v, zero)));
    }
    return i;
  }
};
#endif
#if defined(__aarch64__)
struct I8Quant4 {
  using F = float32x4_t;
  static constexpr int kLanes = 4;
  static F zero() { return vdupq_n_f32(0.0f); }
  static F load(const float* p) { return vld1q_f32(p); }
  static F min(F a, F b) { return vminq_f32(a, b); }
  static F max(F a, F b) { return vmaxq_f32(a, b); }
  static float hmin(F v) { return vminvq_f32(v); }
  static float hmax(F v) { return vmaxvq_f32(v); }
  static int32_t round(float v) { return vcvtns_s32_f32(v); }  // FCVTNS: nearest, ties to even
  static int64_t body(const float* x, int64_t k, float inv, int32_t z, uint8_t* q) {
    const int32x4_t off = vdupq_n_s32(z);
    auto cvt = [&](const float* p) { return vaddq_s32(vcvtnq_s32_f32(vmulq_n_f32(vld1q_f32(p), inv)), off); };
    int64_t i = 0;
    for (; i + 16 <= k; i += 16) {  // saturating narrows clamp to [0, 255], as the reference
      const uint16x8_t lo = vcombine_u16(vqmovun_s32(cvt(x + i)), vqmovun_s32(cvt(x + i + 4)));
      const uint16x8_t hi = vcombine_u16(vqmovun_s32(cvt(x + i + 8)), vqmovun_s32(cvt(x + i + 12)));
      vst1q_u8(q + i, vcombine_u8(vqmovn_u16(lo), vqmovn_u16(hi)));
    }
    return i;
  }
};
#endif

}  // namespace
}  // namespace bluelm::kernels
