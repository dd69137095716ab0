// Helpers of the NEON kernel files (neon, neon_dotprod, neon_i8mm). Everything
// here sits in an anonymous namespace, so each including file (compiled with
// its own -march) gets a private copy: none can be picked by the linker for
// code meant for an older CPU. Include only from AArch64 kernel files.
#pragma once
#include <arm_neon.h>

#include <cstdint>
#include <cstring>

#include "core/block_formats.h"

namespace bluelm::kernels {
namespace {

inline float h2f(const void* p) {
  __fp16 h;
  std::memcpy(&h, p, 2);
  return static_cast<float>(h);
}
inline uint16_t f2h(float f) {
  const __fp16 h = static_cast<__fp16>(f);  // FCVT, round to nearest even
  uint16_t u;
  std::memcpy(&u, &h, 2);
  return u;
}

// ---- quantised blocks, by weight format ----------------------------------------
// Each tag names a weight block format and the activation block it is dotted
// against: XBlock's quants at byte kXq, its d at 0 (and Q8_1's s at 2).
// weights() gives a block's 32 quants as int8 in element order.

struct Q4_0Blocks {
  static constexpr size_t kBlock = sizeof(BlockQ4_0), kXBlock = sizeof(BlockQ8_0), kXq = 2;
  static constexpr bool kMin = false;
  static void weights(const char* wb, int8x16_t* w0, int8x16_t* w1) {
    // Low nibbles are elements 0..15, high nibbles 16..31, shifted to -8..7.
    const uint8x16_t v = vld1q_u8(reinterpret_cast<const uint8_t*>(wb + 2));
    *w0 = vsubq_s8(vreinterpretq_s8_u8(vandq_u8(v, vdupq_n_u8(0x0f))), vdupq_n_s8(8));
    *w1 = vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8(v, 4)), vdupq_n_s8(8));
  }
};

struct Q4_1Blocks {
  static constexpr size_t kBlock = sizeof(BlockQ4_1), kXBlock = sizeof(BlockQ8_1), kXq = 4;
  static constexpr bool kMin = true;  // m_w at byte 2, s_x at byte 2 of the activations
  static void weights(const char* wb, int8x16_t* w0, int8x16_t* w1) {
    // Unsigned nibbles 0..15 fit int8 as they are.
    const uint8x16_t v = vld1q_u8(reinterpret_cast<const uint8_t*>(wb + 4));
    *w0 = vreinterpretq_s8_u8(vandq_u8(v, vdupq_n_u8(0x0f)));
    *w1 = vreinterpretq_s8_u8(vshrq_n_u8(v, 4));
  }
};

struct Q8_0Blocks {
  static constexpr size_t kBlock = sizeof(BlockQ8_0), kXBlock = sizeof(BlockQ8_0), kXq = 2;
  static constexpr bool kMin = false;
  static void weights(const char* wb, int8x16_t* w0, int8x16_t* w1) {
    *w0 = vld1q_s8(reinterpret_cast<const int8_t*>(wb + 2));
    *w1 = vld1q_s8(reinterpret_cast<const int8_t*>(wb + 18));
  }
};

// ---- float rows, by element type -------------------------------------------------

// 8 float lanes as two float32x4 (common/float_tile.h's Vec): one accumulator,
// two FMAs per 8 elements.
struct F32x8 {
  float32x4_t lo, hi;
};
struct Neon8 {
  using F8 = F32x8;
  using Acc = float32x4_t;
  static Acc zero() { return vdupq_n_f32(0.0f); }
  static Acc fma(Acc acc, F8 w, F8 x) { return vfmaq_f32(vfmaq_f32(acc, w.lo, x.lo), w.hi, x.hi); }
  static float sum(Acc acc) { return vaddvq_f32(acc); }
};

// load8: 8 elements as floats; load1: one element.
struct F32Load {
  using E = float;
  using Vec = Neon8;
  static F32x8 load8(const float* p) { return {vld1q_f32(p), vld1q_f32(p + 4)}; }
  static float load1(const float* p) { return *p; }
};

struct F16Load {
  using E = uint16_t;
  using Vec = Neon8;
  static F32x8 load8(const uint16_t* p) {
    const float16x8_t h = vreinterpretq_f16_u16(vld1q_u16(p));
    return {vcvt_f32_f16(vget_low_f16(h)), vcvt_high_f32_f16(h)};
  }
  static float load1(const uint16_t* p) { return h2f(p); }
};

struct BF16Load {
  using E = uint16_t;
  using Vec = Neon8;
  static F32x8 load8(const uint16_t* p) {
    const uint16x8_t h = vld1q_u16(p);
    return {vreinterpretq_f32_u32(vshll_n_u16(vget_low_u16(h), 16)), vreinterpretq_f32_u32(vshll_high_n_u16(h, 16))};
  }
  static float load1(const uint16_t* p) { return bf16_to_fp32(*p); }
};

}  // namespace
}  // namespace bluelm::kernels
