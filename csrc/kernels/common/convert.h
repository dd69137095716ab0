// Activation-row conversion skeletons shared by the SIMD tables. The per-ISA
// policy Q supplies the vector parts:
//   int Q::block(const float* x, uint16_t* d, int8_t* qs, float* d_f32)
//       one block of 32 floats as the reference codec (d = amax / 127 as fp16,
//       q = round-to-nearest-even(x * 127 / amax)); returns sum(q), *d_f32 the
//       unrounded d;
//   Q::kF16 / Q::f16(x, o): that many floats to fp16 per step (round to nearest even);
//   Q::kBF16 / Q::bf16(x, o): the same for bfloat16;
//   uint16_t Q::f2h(float).
// Tails go through the scalar codecs, so every table writes the reference's bytes.
// Internal linkage: each ISA file instantiates its own copy.
#pragma once
#include <cstdint>

#include "core/block_formats.h"
#include "kernels/kernels.h"

namespace bluelm::kernels {
namespace {

template <class Q>
void convert_q8_0(const float* x, void* y, int64_t K) {
  BlockQ8_0* o = static_cast<BlockQ8_0*>(y);
  float d;
  for (int64_t b = 0; b < K / QK; ++b) Q::block(x + b * QK, &o[b].d, o[b].qs, &d);
}

template <class Q>
void convert_q8_1(const float* x, void* y, int64_t K) {
  BlockQ8_1* o = static_cast<BlockQ8_1*>(y);
  for (int64_t b = 0; b < K / QK; ++b) {
    float d;
    const int sum = Q::block(x + b * QK, &o[b].d, o[b].qs, &d);
    o[b].s = Q::f2h(static_cast<float>(sum) * d);  // from the unrounded d, as the reference
  }
}

template <class Q>
void convert_f16(const float* x, void* y, int64_t K) {
  uint16_t* o = static_cast<uint16_t*>(y);
  int64_t k = 0;
  for (; k + Q::kF16 <= K; k += Q::kF16) Q::f16(x + k, o + k);
  for (; k < K; ++k) o[k] = Q::f2h(x[k]);
}

template <class Q>
void convert_bf16(const float* x, void* y, int64_t K) {
  uint16_t* o = static_cast<uint16_t*>(y);
  int64_t k = 0;
  for (; k + Q::kBF16 <= K; k += Q::kBF16) Q::bf16(x + k, o + k);
  for (; k < K; ++k) o[k] = fp32_to_bf16(x[k]);
}

// Sets every converted format of a table from the policy.
template <class Q>
void set_converts(KernelTable& t) {
  t.convert[A_F16] = convert_f16<Q>;
  t.convert[A_BF16] = convert_bf16<Q>;
  t.convert[A_Q8_0] = convert_q8_0<Q>;
  t.convert[A_Q8_1] = convert_q8_1<Q>;
}

}  // namespace
}  // namespace bluelm::kernels
