// The vision encoder's Q8_0 matrix-matrix product: weights and activations in
// ggml's Q8_0 blocks plus their block scales as floats in side arrays (filled
// once at load for weights, per matmul for activations).
#pragma once
#include <cstddef>
#include <cstdint>

#include "core/block_formats.h"

namespace bluelm::vision {

struct Q8Matrix {
  const void* blocks = nullptr;  // rows of k / 32 BlockQ8_0
  size_t stride = 0;             // bytes per row
  const float* scales = nullptr;  // rows x (k / 32)
  int64_t k = 0;
};

struct Q8Activations {
  const void* blocks = nullptr;
  size_t stride = 0;
  const float* scales = nullptr;  // n x (k / 32)
  int64_t n = 0;                  // tokens
};

// Y[t * ldy + r] = dot(W row r, X row t) for r in [r0, r1), every token.
using Q8GemmFn = void (*)(const Q8Matrix& W, const Q8Activations& X, float* Y, size_t ldy, int64_t r0, int64_t r1);

// Scalar reference (same block order of summation per output as the SIMD one).
void q8_gemm_scalar(const Q8Matrix& W, const Q8Activations& X, float* Y, size_t ldy, int64_t r0, int64_t r1);

}  // namespace bluelm::vision
