// Round to nearest, ties to even (as cvtps2dq and FCVTNS), for |v| < 2^22,
// without a libm call: 1.5 * 2^23 + v has an ulp of 1. Files using it with a
// product argument are built with -ffp-contract=off (kernels.cmake), so the
// product is rounded before the sum, as in the SIMD code.
#pragma once
#include <cstdint>

namespace bluelm::kernels {
namespace {

inline int32_t round_even(float v) {
  constexpr float m = 12582912.0f;
  return static_cast<int32_t>((v + m) - m);
}

}  // namespace
}  // namespace bluelm::kernels
