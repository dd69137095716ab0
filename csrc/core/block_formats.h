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
  Q5_0 = 6,
  Q5_1 = 7,
  Q8_0 = 8,
  Q8_1 = 9,
  Q2_K = 10,
  Q3_K = 11,
  Q4_K = 12,
  Q5_K = 13,
  Q6_K = 14,
  Q8_K = 15,
  IQ4_NL = 20,
  IQ4_XS = 23,
  BF16 = 30,
};

constexpr int QK = 32;     // elements per block of the 32-element types
constexpr int QK_K = 256;  // elements per super-block of the K-quants, IQ4_XS and Q8_K

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
// 5-bit: element j's low 4 bits as in Q4_0, its 5th bit is bit j of qh.
struct BlockQ5_0 {
  uint16_t d;        // fp16 scale; value = (q - 16) * d
  uint8_t qh[4];     // little-endian uint32 of the 32 high bits
  uint8_t qs[QK / 2];
};
struct BlockQ5_1 {
  uint16_t d;  // fp16 scale; value = q * d + m
  uint16_t m;  // fp16 minimum
  uint8_t qh[4];
  uint8_t qs[QK / 2];
};
// IQ4_NL: 4-bit indices into kIQ4NLValues; value = kIQ4NLValues[q] * d.
struct BlockIQ4_NL {
  uint16_t d;
  uint8_t qs[QK / 2];
};

// Super-blocks of 256 (see each struct for its sub-blocks). Which bits hold
// which element is spelled out by the unpackers in core/block_unpack.h.
// Q2_K: 16 sub-blocks of 16; value = d * (sc & 15) * q - dmin * (sc >> 4), q in 0..3.
struct BlockQ2_K {
  uint8_t scales[QK_K / 16];  // low nibble scale, high nibble min
  uint8_t qs[QK_K / 4];       // 2 bits each
  uint16_t d;                 // fp16 scale of the scales
  uint16_t dmin;              // fp16 scale of the mins
};
// Q3_K: 16 sub-blocks of 16; value = d * (sc - 32) * q, q in -4..3, sc 6 bits.
struct BlockQ3_K {
  uint8_t hmask[QK_K / 8];  // high bit of each q (set: q >= 0)
  uint8_t qs[QK_K / 4];     // low 2 bits
  uint8_t scales[12];       // 16 scales of 6 bits (unpack_q3_k_scales)
  uint16_t d;
};
// Q4_K: 8 sub-blocks of 32; value = d * sc * q - dmin * m, q in 0..15, sc/m 6 bits.
struct BlockQ4_K {
  uint16_t d;
  uint16_t dmin;
  uint8_t scales[12];  // 8 scales and 8 mins of 6 bits (scale_min_k4)
  uint8_t qs[QK_K / 2];
};
// Q5_K: as Q4_K with a 5th bit per element in qh; q in 0..31.
struct BlockQ5_K {
  uint16_t d;
  uint16_t dmin;
  uint8_t scales[12];
  uint8_t qh[QK_K / 8];
  uint8_t qs[QK_K / 2];
};
// Q6_K: 16 sub-blocks of 16; value = d * sc * q, q in -32..31, sc int8.
struct BlockQ6_K {
  uint8_t ql[QK_K / 2];  // low 4 bits
  uint8_t qh[QK_K / 4];  // high 2 bits
  int8_t scales[QK_K / 16];
  uint16_t d;
};
// Q8_K: the activation format the K-quants and IQ4_XS dot against.
struct BlockQ8_K {
  float d;                  // value = q * d
  int8_t qs[QK_K];
  int16_t bsums[QK_K / 16];  // sum of each 16 consecutive qs
};
// IQ4_XS: 8 sub-blocks of 32; value = d * (ls - 32) * kIQ4NLValues[q], ls 6 bits.
struct BlockIQ4_XS {
  uint16_t d;
  uint16_t scales_h;            // high 2 bits of ls, 2 per sub-block
  uint8_t scales_l[QK_K / 64];  // low 4 bits of ls, a nibble per sub-block
  uint8_t qs[QK_K / 2];
};

static_assert(sizeof(BlockQ4_0) == 18, "ggml layout");
static_assert(sizeof(BlockQ4_1) == 20, "ggml layout");
static_assert(sizeof(BlockQ8_0) == 34, "ggml layout");
static_assert(sizeof(BlockQ8_1) == 36, "ggml layout");
static_assert(sizeof(BlockQ5_0) == 22, "ggml layout");
static_assert(sizeof(BlockQ5_1) == 24, "ggml layout");
static_assert(sizeof(BlockIQ4_NL) == 18, "ggml layout");
static_assert(sizeof(BlockQ2_K) == 84, "ggml layout");
static_assert(sizeof(BlockQ3_K) == 110, "ggml layout");
static_assert(sizeof(BlockQ4_K) == 144, "ggml layout");
static_assert(sizeof(BlockQ5_K) == 176, "ggml layout");
static_assert(sizeof(BlockQ6_K) == 210, "ggml layout");
static_assert(sizeof(BlockQ8_K) == 292, "ggml layout");
static_assert(sizeof(BlockIQ4_XS) == 136, "ggml layout");

// The 16 non-linear levels of IQ4_NL and IQ4_XS (ggml's kvalues_iq4nl).
constexpr int8_t kIQ4NLValues[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                     1,    13,   25,  38,  53,  69,  89,  113};

// Scale and min (6 bits each) of sub-block j of a Q4_K/Q5_K block's 12 bytes:
// j < 4 in the low 6 bits of bytes j and j+4; j >= 4 in the nibbles of byte
// j+4 plus the top 2 bits of bytes j-4 (scale) and j (min).
inline void scale_min_k4(int j, const uint8_t* s, int* sc, int* m) {
  if (j < 4) {
    *sc = s[j] & 63;
    *m = s[j + 4] & 63;
  } else {
    *sc = (s[j + 4] & 0x0f) | ((s[j - 4] >> 6) << 4);
    *m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
  }
}

// The 16 signed 6-bit scales of a Q3_K block (sc - 32): low nibbles of bytes
// 0..7 for j < 8, high nibbles for j >= 8, the top 2 bits from bytes 8..11.
inline void unpack_q3_k_scales(const uint8_t* s, int* out) {
  for (int j = 0; j < 16; ++j) {
    const int lo = j < 8 ? s[j] & 0x0f : s[j - 8] >> 4;
    const int hi = (s[8 + j % 4] >> (2 * (j / 4))) & 3;
    out[j] = (lo | (hi << 4)) - 32;
  }
}

// The 6-bit scale of IQ4_XS sub-block j, minus 32.
inline int iq4_xs_scale(const BlockIQ4_XS& b, int j) {
  return (((b.scales_l[j / 2] >> (4 * (j % 2))) & 0x0f) | (((b.scales_h >> (2 * j)) & 3) << 4)) - 32;
}

struct TypeInfo {
  const char* name;
  int64_t block_size;  // elements per block
  size_t block_bytes;  // bytes per block
  uint8_t scale_offsets[2];  // byte offsets of the block's fp16 scales (0xff: none)
};

// nullptr for a type number this runtime does not know.
const TypeInfo* type_info(uint32_t type);
const char* type_name(uint32_t type);  // "type 17" style fallback kept in a static buffer-free way
// "F32, F16, ..." : the types a GGUF tensor may have here (for error messages).
const char* supported_type_names();
// True when the type's blocks carry fp16/float scales (every block type but F32/F16/BF16).
inline bool is_block_type(GgmlType t) {
  return t != GgmlType::F32 && t != GgmlType::F16 && t != GgmlType::BF16;
}
// Index of the first block among n whose scale fields (d, dmin, m, s) are not
// finite, or -1. Weight data with such a block gives NaN logits.
int64_t first_nonfinite_block(GgmlType t, const void* blocks, int64_t n_blocks);
// Bytes of a row of n elements; n must be a multiple of the block size.
size_t row_bytes(GgmlType t, int64_t n);
// The activation format a weight type is dotted against (as ggml's vec_dot_type).
GgmlType vec_dot_type(GgmlType weight);

// IEEE half and bfloat16 conversions (round to nearest even).
inline float fp32_from_bits(uint32_t w) { float f; std::memcpy(&f, &w, 4); return f; }
inline uint32_t fp32_to_bits(float f) { uint32_t w; std::memcpy(&w, &f, 4); return w; }
// Inline: the scalar kernels widen a block scale per block and token.
inline float fp16_to_fp32(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000) << 16;
  const uint32_t exp = (h >> 10) & 0x1f;
  const uint32_t mant = h & 0x3ff;
  if (exp == 0x1f) return fp32_from_bits(sign | 0x7f800000u | (mant << 13));  // inf/nan
  if (exp == 0) {
    if (mant == 0) return fp32_from_bits(sign);
    const float v = static_cast<float>(mant) * 5.9604644775390625e-8f;  // subnormal: mant * 2^-24
    return sign ? -v : v;
  }
  return fp32_from_bits(sign | ((exp + 112) << 23) | (mant << 13));
}
uint16_t fp32_to_fp16(float f);
inline float bf16_to_fp32(uint16_t h) { return fp32_from_bits(uint32_t(h) << 16); }
uint16_t fp32_to_bf16(float f);

// Scalar reference codecs. n is a multiple of the block size where it applies.
// dequantize_row matches gguf-py's gguf.quants.dequantize bit for bit (each
// value's products rounded one at a time, no fused multiply-add).
void dequantize_row(GgmlType t, const void* src, float* dst, int64_t n);
void quantize_row_q8_0_ref(const float* x, BlockQ8_0* y, int64_t n);
void quantize_row_q8_1_ref(const float* x, BlockQ8_1* y, int64_t n);
void quantize_row_q4_0_ref(const float* x, BlockQ4_0* y, int64_t n);
void quantize_row_q4_1_ref(const float* x, BlockQ4_1* y, int64_t n);

}  // namespace bluelm
