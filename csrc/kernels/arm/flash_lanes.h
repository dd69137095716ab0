// Four float lanes per NEON register for prompt-chunk attention
// (kernels/common/flash_attention.h): 4 vectors of queries per group, 6 keys
// per score tile, 6 columns per P.V tile. dot_i8 here widens with vmull_s8;
// neon_dotprod/flash.cpp overrides it with SDOT. Internal linkage, as
// arm/common.h.
#pragma once
#include <arm_neon.h>

#include <cstdint>
#include <cstring>

#include "kernels/arm/common.h"

namespace bluelm::kernels {
namespace {

struct Neon4 {
  static constexpr int W = 4, kB = 4, kJ = 6, kD = 6;
  using F = float32x4_t;
  static F zero() { return vdupq_n_f32(0.0f); }
  static F set1(float v) { return vdupq_n_f32(v); }
  static F load(const float* p) { return vld1q_f32(p); }
  static void store(float* p, F v) { vst1q_f32(p, v); }
  static F add(F a, F b) { return vaddq_f32(a, b); }
  static F sub(F a, F b) { return vsubq_f32(a, b); }
  static F mul(F a, F b) { return vmulq_f32(a, b); }
  static F div(F a, F b) { return vdivq_f32(a, b); }
  static F fmadd(F a, F b, F c) { return vfmaq_f32(c, a, b); }
  static F fnmadd(F a, F b, F c) { return vfmsq_f32(c, a, b); }
  // x86's operand rule (the second unless the first is larger / smaller)
  static F max(F a, F b) { return vbslq_f32(vcgtq_f32(a, b), a, b); }
  static F min(F a, F b) { return vbslq_f32(vcltq_f32(a, b), a, b); }
  static F round(F a) { return vrndnq_f32(a); }
  static F scale2n(F p, F n) {
    const int32x4_t e = vshlq_n_s32(vaddq_s32(vcvtq_s32_f32(n), vdupq_n_s32(127)), 23);
    return vmulq_f32(p, vreinterpretq_f32_s32(e));
  }
  static F select_in(F pos, F lo, F hi, F x, F y) { return vbslq_f32(vandq_u32(vcleq_f32(lo, pos), vcleq_f32(pos, hi)), x, y); }
  static F select_eq(F a, F b, F x, F y) { return vbslq_f32(vceqq_f32(a, b), x, y); }
  static F cvt_i32(const int32_t* p) { return vcvtq_f32_s32(vld1q_s32(p)); }

  static void f16_to_f32(const uint16_t* src, float* dst, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
      const float16x8_t h = vreinterpretq_f16_u16(vld1q_u16(src + i));
      vst1q_f32(dst + i, vcvt_f32_f16(vget_low_f16(h)));
      vst1q_f32(dst + i + 4, vcvt_high_f32_f16(h));
    }
    for (; i < n; ++i) dst[i] = h2f(src + i);
  }
  static void q8_0_to_f32(const BlockQ8_0* b, int64_t nb, float* dst) {
    for (int64_t k = 0; k < nb; ++k) {
      const float d = h2f(&b[k].d);
      for (int h = 0; h < 32; h += 8) {
        const int16x8_t q = vmovl_s8(vld1_s8(b[k].qs + h));
        vst1q_f32(dst + k * 32 + h, vmulq_n_f32(vcvtq_f32_s32(vmovl_s16(vget_low_s16(q))), d));
        vst1q_f32(dst + k * 32 + h + 4, vmulq_n_f32(vcvtq_f32_s32(vmovl_high_s16(q)), d));
      }
    }
  }
  static void k_quants(const BlockQ8_0* b, int64_t nb, int8_t* dst) {
    for (int64_t k = 0; k < nb; ++k) std::memcpy(dst + k * 32, b[k].qs, 32);
  }
  // Each lane's 4 bytes times the key's 4: vmull_s8, pairwise adds.
  template <int J, int B>
  static void dot_i8(const int8_t* k, int64_t ks, const int8_t* qb, int GL, const int32_t*, int32_t* out) {
    for (int j = 0; j < J; ++j) {
      int32x4_t acc[B];
      for (int b = 0; b < B; ++b) acc[b] = vdupq_n_s32(0);
      for (int c = 0; c < 8; ++c) {
        int32_t k4;
        std::memcpy(&k4, k + j * ks + 4 * c, 4);
        const int8x16_t kk = vreinterpretq_s8_s32(vdupq_n_s32(k4));
        for (int b = 0; b < B; ++b) {
          const int8x16_t q = vld1q_s8(qb + (c * GL + b * W) * 4);
          const int32x4_t lo = vpaddlq_s16(vmull_s8(vget_low_s8(q), vget_low_s8(kk)));
          const int32x4_t hi = vpaddlq_s16(vmull_high_s8(q, kk));
          acc[b] = vaddq_s32(acc[b], vpaddq_s32(lo, hi));
        }
      }
      for (int b = 0; b < B; ++b) vst1q_s32(out + j * GL + b * W, acc[b]);
    }
  }
};

}  // namespace
}  // namespace bluelm::kernels
