// ggml's tensor types and block layouts (facts of the GGUF format), plus
// scalar conversions. Values of GgmlType are the numbers stored in GGUF files.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>

namespace bluelm {

enum class GgmlType : uint32_t {
  F32 = 0,
  F16 = 1,
  Q4_0 = 2,
  Q4_1 = 3,
  Q8_0 = 8,
  Q8_1 = 9,
  BF16 = 30,
};

constexpr int QK = 32;  // elements per quantised block for every Q type here

struct BlockQ4_0 {
  uint16_t d;         // fp16 scale
  uint8_t qs[QK / 2]; // element j in low nibble of qs[j], element j+16 in high nibble
};
struct BlockQ4_1 {
  uint16_t d;  // fp16 scale
  uint16_t m;  // fp16 minimum
  uint8_t qs[QK / 2];
};
struct BlockQ8_0 {
  uint16_t d;
  int8_t qs[QK];
};
struct BlockQ8_1 {
  uint16_t d;
  uint16_t s;  // fp16 of d * sum(qs)
  int8_t qs[QK];
};
static_assert(sizeof(BlockQ4_0) == 18, "ggml layout");
static_assert(sizeof(BlockQ4_1) == 20, "ggml layout");
static_assert(sizeof(BlockQ8_0) == 34, "ggml layout");
static_assert(sizeof(BlockQ8_1) == 36, "ggml layout");

struct TypeInfo {
  const char* name;
  int64_t block_size;  // elements per block
  size_t block_bytes;  // bytes per block
};

// nullptr for a type number this runtime does not know.
const TypeInfo* type_info(uint32_t type);
const char* type_name(uint32_t type);  // "type 17" style fallback kept in a static buffer-free way
// Bytes of a row of n elements; n must be a multiple of the block size.
size_t row_bytes(GgmlType t, int64_t n);
// The activation format a weight type is dotted against (as ggml's vec_dot_type).
GgmlType vec_dot_type(GgmlType weight);

// IEEE half and bfloat16 conversions (round to nearest even).
inline float fp32_from_bits(uint32_t w) { float f; std::memcpy(&f, &w, 4); return f; }
inline uint32_t fp32_to_bits(float f) { uint32_t w; std::memcpy(&w, &f, 4); return w; }
float fp16_to_fp32(uint16_t h);
uint16_t fp32_to_fp16(float f);
inline float bf16_to_fp32(uint16_t h) { return fp32_from_bits(uint32_t(h) << 16); }
uint16_t fp32_to_bf16(float f);

// Scalar reference codecs. n is a multiple of the block size where it applies.
void dequantize_row(GgmlType t, const void* src, float* dst, int64_t n);
void quantize_row_q8_0_ref(const float* x, BlockQ8_0* y, int64_t n);
void quantize_row_q8_1_ref(const float* x, BlockQ8_1* y, int64_t n);
void quantize_row_q4_0_ref(const float* x, BlockQ4_0* y, int64_t n);
void quantize_row_q4_1_ref(const float* x, BlockQ4_1* y, int64_t n);

}  // namespace bluelm
