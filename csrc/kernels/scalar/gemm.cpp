// Scalar reference gemms and activation conversion: the truth every SIMD
// table is tested against. Written plainly so the compiler can vectorise the
// inner loops.
#include <cmath>
#include <cstring>

#include "kernels/scalar/scalar.h"

namespace bluelm::kernels::scalar {
namespace {

float dot_f16(const void* w, const void* x, int64_t k) {
  const uint16_t* a = static_cast<const uint16_t*>(w);
  const uint16_t* b = static_cast<const uint16_t*>(x);
  float s = 0.0f;
  for (int64_t i = 0; i < k; ++i) s += fp16_to_fp32(a[i]) * fp16_to_fp32(b[i]);
  return s;
}

float dot_bf16(const void* w, const void* x, int64_t k) {
  const uint16_t* a = static_cast<const uint16_t*>(w);
  const uint16_t* b = static_cast<const uint16_t*>(x);
  float s = 0.0f;
  for (int64_t i = 0; i < k; ++i) s += bf16_to_fp32(a[i]) * bf16_to_fp32(b[i]);
  return s;
}

// Q8_0 and Q4_1 dots in the order of ggml's x86 vec_dot: each block's integer
// products summed in 8 lanes of 4 consecutive elements, each lane scaled into
// its own float accumulator by one FMA, the lanes folded by the 8-lane tree.

float dot_q8_0(const void* w, const void* x, int64_t k) {
  const BlockQ8_0* a = static_cast<const BlockQ8_0*>(w);
  const BlockQ8_0* b = static_cast<const BlockQ8_0*>(x);
  float acc[8] = {};
  for (int64_t i = 0; i < k / QK; ++i) {
    const float d = fp16_to_fp32(a[i].d) * fp16_to_fp32(b[i].d);
    for (int l = 0; l < 8; ++l) {
      int sum = 0;
      for (int j = 4 * l; j < 4 * l + 4; ++j) sum += a[i].qs[j] * b[i].qs[j];
      acc[l] = std::fma(static_cast<float>(sum), d, acc[l]);
    }
  }
  return sum8_tree(acc);
}

// Element j of a 4-bit block: low nibbles hold 0..15, high nibbles 16..31.
inline int nibble(const uint8_t* qs, int j) { return j < QK / 2 ? qs[j] & 0x0f : qs[j - QK / 2] >> 4; }

// Q4_0 in the order of llama.cpp's repacked x86 Q4_0 gemm/gemv (the path it
// takes for Q4_0 on any AVX2 machine): each block's 32 products summed exactly
// as an integer, then one FMA with d_w * d_x into a single accumulator.
float dot_q4_0(const void* w, const void* x, int64_t k) {
  const BlockQ4_0* a = static_cast<const BlockQ4_0*>(w);
  const BlockQ8_0* b = static_cast<const BlockQ8_0*>(x);
  float acc = 0.0f;
  for (int64_t i = 0; i < k / QK; ++i) {
    const float d = fp16_to_fp32(a[i].d) * fp16_to_fp32(b[i].d);
    int sum = 0;
    for (int j = 0; j < QK; ++j) sum += (nibble(a[i].qs, j) - 8) * b[i].qs[j];
    acc = std::fma(static_cast<float>(sum), d, acc);
  }
  return acc;
}

// The min term m_w * s_x is summed on its own, block by block, and added last.
float dot_q4_1(const void* w, const void* x, int64_t k) {
  const BlockQ4_1* a = static_cast<const BlockQ4_1*>(w);
  const BlockQ8_1* b = static_cast<const BlockQ8_1*>(x);
  float acc[8] = {};
  float mins = 0.0f;
  for (int64_t i = 0; i < k / QK; ++i) {
    const float d = fp16_to_fp32(a[i].d) * fp16_to_fp32(b[i].d);
    mins += fp16_to_fp32(a[i].m) * fp16_to_fp32(b[i].s);
    for (int l = 0; l < 8; ++l) {
      int sum = 0;
      for (int j = 4 * l; j < 4 * l + 4; ++j) sum += nibble(a[i].qs, j) * b[i].qs[j];
      acc[l] = std::fma(static_cast<float>(sum), d, acc[l]);
    }
  }
  return sum8_tree(acc) + mins;
}

template <float (*Dot)(const void*, const void*, int64_t)>
void gemm_rows(const void* W, size_t w_stride, const void* X, size_t x_stride, float* Y, size_t ldy,
               int64_t K, int64_t r0, int64_t r1, int64_t n_tok) {
  const char* w = static_cast<const char*>(W);
  const char* x = static_cast<const char*>(X);
  for (int64_t r = r0; r < r1; ++r) {
    for (int64_t t = 0; t < n_tok; ++t) {
      Y[t * ldy + r] = Dot(w + r * w_stride, x + t * x_stride, K);
    }
  }
}

void convert_f32(const float* x, void* y, int64_t k) { std::memcpy(y, x, k * sizeof(float)); }
void convert_f16(const float* x, void* y, int64_t k) {
  uint16_t* o = static_cast<uint16_t*>(y);
  for (int64_t i = 0; i < k; ++i) o[i] = fp32_to_fp16(x[i]);
}
void convert_bf16(const float* x, void* y, int64_t k) {
  uint16_t* o = static_cast<uint16_t*>(y);
  for (int64_t i = 0; i < k; ++i) o[i] = fp32_to_bf16(x[i]);
}
void convert_q8_0(const float* x, void* y, int64_t k) {
  quantize_row_q8_0_ref(x, static_cast<BlockQ8_0*>(y), k);
}
void convert_q8_1(const float* x, void* y, int64_t k) {
  quantize_row_q8_1_ref(x, static_cast<BlockQ8_1*>(y), k);
}

}  // namespace

void gemm_f32(const void* W, size_t w_stride, const void* X, size_t x_stride, float* Y, size_t ldy, int64_t K,
              int64_t r0, int64_t r1, int64_t n_tok) {
  gemm_rows<dot_f32>(W, w_stride, X, x_stride, Y, ldy, K, r0, r1, n_tok);
}

void fill_gemm(KernelTable& t) {
  t.gemm[W_F32] = gemm_f32;
  t.gemm[W_F16] = gemm_rows<dot_f16>;
  t.gemm[W_BF16] = gemm_rows<dot_bf16>;
  t.gemm[W_Q8_0] = gemm_rows<dot_q8_0>;
  t.gemm[W_Q4_0] = gemm_rows<dot_q4_0>;
  t.gemm[W_Q4_1] = gemm_rows<dot_q4_1>;
  t.convert[A_F32] = convert_f32;
  t.convert[A_F16] = convert_f16;
  t.convert[A_BF16] = convert_bf16;
  t.convert[A_Q8_0] = convert_q8_0;
  t.convert[A_Q8_1] = convert_q8_1;
  // pack_rows stay 0: the reference reads the file layout.
}

}  // namespace bluelm::kernels::scalar
