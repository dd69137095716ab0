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
  v.i8_layout = layout;
  v.i8_gemm = i8_gemm_tiles<Tiles>;
  v.i8_quant = i8_quant_row<Q>;
}

}  // namespace
}  // namespace bluelm::kernels
