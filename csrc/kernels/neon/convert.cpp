// NEON activation conversion: Q8_0 / Q8_1 blocks, F16, BF16, each byte as the
// scalar codecs write it.
#include "kernels/arm/common.h"
#include "kernels/common/convert.h"
#include "kernels/neon/neon.h"

namespace bluelm::kernels::neon {
namespace {

struct Quantizer {
  // One block as the reference codec: d = amax/127, q = round-to-nearest-even(x * 127/amax)
  // (ggml's x86 rule); FCVTNS rounds to nearest even. Returns sum(q).
  static int block(const float* x, uint16_t* d_out, int8_t* qs, float* d_f32) {
    float32x4_t v[8];
    float32x4_t amax = vdupq_n_f32(0.0f);
    for (int j = 0; j < 8; ++j) {
      v[j] = vld1q_f32(x + 4 * j);
      amax = vmaxq_f32(amax, vabsq_f32(v[j]));
    }
    const float amax_s = vmaxvq_f32(amax);
    const float d = amax_s / 127.0f;
    const float id = amax_s != 0.0f ? 127.0f / amax_s : 0.0f;  // as the reference codec
    *d_out = kernels::f2h(d);
    *d_f32 = d;
    int32x4_t sum = vdupq_n_s32(0);
    int16x8_t h[4];
    for (int j = 0; j < 4; ++j) {
      const int32x4_t a = vcvtnq_s32_f32(vmulq_n_f32(v[2 * j], id));
      const int32x4_t b = vcvtnq_s32_f32(vmulq_n_f32(v[2 * j + 1], id));
      sum = vaddq_s32(sum, vaddq_s32(a, b));
      h[j] = vcombine_s16(vqmovn_s32(a), vqmovn_s32(b));
    }
    vst1q_s8(qs, vcombine_s8(vqmovn_s16(h[0]), vqmovn_s16(h[1])));
    vst1q_s8(qs + 16, vcombine_s8(vqmovn_s16(h[2]), vqmovn_s16(h[3])));
    return vaddvq_s32(sum);
  }

  static uint16_t f2h(float f) { return kernels::f2h(f); }

  static constexpr int kF16 = 8;
  static void f16(const float* x, uint16_t* o) {
    const float16x8_t h = vcvt_high_f16_f32(vcvt_f16_f32(vld1q_f32(x)), vld1q_f32(x + 4));
    vst1q_u16(o, vreinterpretq_u16_f16(h));
  }

  static constexpr int kBF16 = 4;
  static void bf16(const float* x, uint16_t* o) {
    const uint32x4_t u = vreinterpretq_u32_f32(vld1q_f32(x));
    const uint32x4_t nan = vcgtq_u32(vandq_u32(u, vdupq_n_u32(0x7fffffff)), vdupq_n_u32(0x7f800000));
    const uint32x4_t lsb = vandq_u32(vshrq_n_u32(u, 16), vdupq_n_u32(1));
    const uint32x4_t r = vshrq_n_u32(vaddq_u32(u, vaddq_u32(lsb, vdupq_n_u32(0x7fff))), 16);
    const uint32x4_t qn = vorrq_u32(vshrq_n_u32(u, 16), vdupq_n_u32(64));
    vst1_u16(o, vmovn_u32(vbslq_u32(nan, qn, r)));
  }
};

}  // namespace

void fill_convert(KernelTable& t) { set_converts<Quantizer>(t); }

}  // namespace bluelm::kernels::neon
