#include "core/block_formats.h"

#include <algorithm>
#include <cmath>
#include <cstddef>

#include "core/block_unpack.h"
#include "core/no_fp_contract.h"  // last: no FMA contraction below

namespace bluelm {

namespace {
constexpr uint8_t kNone = 0xff;
const TypeInfo kF32{"F32", 1, 4, {kNone, kNone}};
const TypeInfo kF16{"F16", 1, 2, {kNone, kNone}};
const TypeInfo kBF16{"BF16", 1, 2, {kNone, kNone}};
const TypeInfo kQ4_0{"Q4_0", QK, sizeof(BlockQ4_0), {offsetof(BlockQ4_0, d), kNone}};
const TypeInfo kQ4_1{"Q4_1", QK, sizeof(BlockQ4_1), {offsetof(BlockQ4_1, d), offsetof(BlockQ4_1, m)}};
const TypeInfo kQ5_0{"Q5_0", QK, sizeof(BlockQ5_0), {offsetof(BlockQ5_0, d), kNone}};
const TypeInfo kQ5_1{"Q5_1", QK, sizeof(BlockQ5_1), {offsetof(BlockQ5_1, d), offsetof(BlockQ5_1, m)}};
const TypeInfo kQ8_0{"Q8_0", QK, sizeof(BlockQ8_0), {offsetof(BlockQ8_0, d), kNone}};
const TypeInfo kQ8_1{"Q8_1", QK, sizeof(BlockQ8_1), {offsetof(BlockQ8_1, d), offsetof(BlockQ8_1, s)}};
const TypeInfo kQ2_K{"Q2_K", QK_K, sizeof(BlockQ2_K), {offsetof(BlockQ2_K, d), offsetof(BlockQ2_K, dmin)}};
const TypeInfo kQ3_K{"Q3_K", QK_K, sizeof(BlockQ3_K), {offsetof(BlockQ3_K, d), kNone}};
const TypeInfo kQ4_K{"Q4_K", QK_K, sizeof(BlockQ4_K), {offsetof(BlockQ4_K, d), offsetof(BlockQ4_K, dmin)}};
const TypeInfo kQ5_K{"Q5_K", QK_K, sizeof(BlockQ5_K), {offsetof(BlockQ5_K, d), offsetof(BlockQ5_K, dmin)}};
const TypeInfo kQ6_K{"Q6_K", QK_K, sizeof(BlockQ6_K), {offsetof(BlockQ6_K, d), kNone}};
const TypeInfo kQ8_K{"Q8_K", QK_K, sizeof(BlockQ8_K), {kNone, kNone}};  // float d, checked apart
const TypeInfo kIQ4_NL{"IQ4_NL", QK, sizeof(BlockIQ4_NL), {offsetof(BlockIQ4_NL, d), kNone}};
const TypeInfo kIQ4_XS{"IQ4_XS", QK_K, sizeof(BlockIQ4_XS), {offsetof(BlockIQ4_XS, d), kNone}};

// Names of ggml types this runtime cannot compute with, for error messages.
const char* other_type_name(uint32_t t) {
  switch (t) {
    case 16: return "IQ2_XXS";
    case 17: return "IQ2_XS";
    case 18: return "IQ3_XXS";
    case 19: return "IQ1_S";
    case 21: return "IQ3_S";
    case 22: return "IQ2_S";
    case 24: return "I8";
    case 25: return "I16";
    case 26: return "I32";
    case 27: return "I64";
    case 28: return "F64";
    case 29: return "IQ1_M";
    case 34: return "TQ1_0";
    case 35: return "TQ2_0";
    case 39: return "MXFP4";
    default: return "unknown";
  }
}
}  // namespace

const TypeInfo* type_info(uint32_t type) {
  switch (static_cast<GgmlType>(type)) {
    case GgmlType::F32: return &kF32;
    case GgmlType::F16: return &kF16;
    case GgmlType::BF16: return &kBF16;
    case GgmlType::Q4_0: return &kQ4_0;
    case GgmlType::Q4_1: return &kQ4_1;
    case GgmlType::Q8_0: return &kQ8_0;
    case GgmlType::Q8_1: return &kQ8_1;
    case GgmlType::Q5_0: return &kQ5_0;
    case GgmlType::Q5_1: return &kQ5_1;
    case GgmlType::Q2_K: return &kQ2_K;
    case GgmlType::Q3_K: return &kQ3_K;
    case GgmlType::Q4_K: return &kQ4_K;
    case GgmlType::Q5_K: return &kQ5_K;
    case GgmlType::Q6_K: return &kQ6_K;
    case GgmlType::Q8_K: return &kQ8_K;
    case GgmlType::IQ4_NL: return &kIQ4_NL;
    case GgmlType::IQ4_XS: return &kIQ4_XS;
  }
  return nullptr;
}

const char* supported_type_names() {
  return "F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_NL, IQ4_XS";
}

int64_t first_nonfinite_block(GgmlType t, const void* blocks, int64_t n_blocks) {
  const TypeInfo* ti = type_info(static_cast<uint32_t>(t));
  if (!ti) return -1;
  const uint8_t* p = static_cast<const uint8_t*>(blocks);
  for (int64_t i = 0; i < n_blocks; ++i, p += ti->block_bytes) {
    if (t == GgmlType::Q8_K) {
      float d;
      std::memcpy(&d, p, 4);
      if (!std::isfinite(d)) return i;
      continue;
    }
    for (uint8_t off : ti->scale_offsets) {
      if (off == kNone) continue;
      uint16_t h;
      std::memcpy(&h, p + off, 2);
      if ((h & 0x7c00) == 0x7c00) return i;  // fp16 exponent all ones: inf or NaN
    }
  }
  return -1;
}

const char* type_name(uint32_t type) {
  const TypeInfo* ti = type_info(type);
  return ti ? ti->name : other_type_name(type);
}

size_t row_bytes(GgmlType t, int64_t n) {
  const TypeInfo* ti = type_info(static_cast<uint32_t>(t));
  return static_cast<size_t>(n / ti->block_size) * ti->block_bytes;
}

GgmlType vec_dot_type(GgmlType weight) {
  switch (weight) {
    case GgmlType::Q4_0:
    case GgmlType::Q5_0:
    case GgmlType::IQ4_NL:
    case GgmlType::Q8_0: return GgmlType::Q8_0;
    case GgmlType::Q4_1:
    case GgmlType::Q5_1: return GgmlType::Q8_1;
    case GgmlType::Q2_K:
    case GgmlType::Q3_K:
    case GgmlType::Q4_K:
    case GgmlType::Q5_K:
    case GgmlType::Q6_K:
    case GgmlType::IQ4_XS: return GgmlType::Q8_K;
    default: return weight;  // F32, F16, BF16 dot against their own type
  }
}

uint16_t fp32_to_fp16(float f) {
  const uint32_t x = fp32_to_bits(f);
  const uint16_t sign = static_cast<uint16_t>((x >> 16) & 0x8000);
  const uint32_t ax = x & 0x7fffffffu;
  if (ax >= 0x7f800000u) return sign | 0x7c00 | (ax > 0x7f800000u ? 0x200 : 0);  // inf/nan
  if (ax >= 0x477ff000u) return sign | 0x7c00;  // rounds to >= 65520: overflow to inf
  if (ax < 0x38800000u) {
    // Result is subnormal or zero: round ax * 2^24 to nearest even integer.
    const float v = fp32_from_bits(ax) * 16777216.0f;
    return sign | static_cast<uint16_t>(std::nearbyint(v));
  }
  // Normal: drop 13 mantissa bits with round to nearest even.
  const uint32_t rounded = ax + 0xfffu + ((ax >> 13) & 1u);
  return sign | static_cast<uint16_t>((rounded - 0x38000000u) >> 13);
}

uint16_t fp32_to_bf16(float f) {
  uint32_t x = fp32_to_bits(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((x >> 16) | 64);  // quiet nan
  x += 0x7fffu + ((x >> 16) & 1u);
  return static_cast<uint16_t>(x >> 16);
}

namespace {

// value = (d * sc) * q [- dmin * mn], each product rounded (as gguf-py and ggml).
template <typename Block>
void dequantize_k(const void* src, float* dst, int64_t n) {
  const Block* b = static_cast<const Block*>(src);
  UnpackedK u;
  for (int64_t i = 0; i < n / QK_K; ++i) {
    unpack_block(b[i], &u);
    float* y = dst + i * QK_K;
    for (int e = 0; e < QK_K; ++e) {
      const int j = e / u.sub;
      const float dl = u.d * static_cast<float>(u.sc[j]);
      if (u.has_min) {
        const float ml = u.dmin * static_cast<float>(u.mn[j]);
        y[e] = dl * static_cast<float>(u.q[e]) - ml;
      } else {
        y[e] = dl * static_cast<float>(u.q[e]);
      }
    }
  }
}

// 32-element blocks: value = d * q (+ m).
template <typename Block>
void dequantize_32(const void* src, float* dst, int64_t n) {
  const Block* b = static_cast<const Block*>(src);
  int8_t q[QK];
  for (int64_t i = 0; i < n / QK; ++i) {
    unpack_block(b[i], q);
    const float d = fp16_to_fp32(b[i].d);
    for (int j = 0; j < QK; ++j) dst[i * QK + j] = d * static_cast<float>(q[j]);
  }
}

void dequantize_q5_1(const void* src, float* dst, int64_t n) {
  const BlockQ5_1* b = static_cast<const BlockQ5_1*>(src);
  int8_t q[QK];
  for (int64_t i = 0; i < n / QK; ++i) {
    unpack_block(b[i], q);
    const float d = fp16_to_fp32(b[i].d), m = fp16_to_fp32(b[i].m);
    for (int j = 0; j < QK; ++j) dst[i * QK + j] = d * static_cast<float>(q[j]) + m;
  }
}

}  // namespace

void dequantize_row(GgmlType t, const void* src, float* dst, int64_t n) {
  switch (t) {
    case GgmlType::Q5_0: dequantize_32<BlockQ5_0>(src, dst, n); return;
    case GgmlType::Q5_1: dequantize_q5_1(src, dst, n); return;
    case GgmlType::IQ4_NL: dequantize_32<BlockIQ4_NL>(src, dst, n); return;
    case GgmlType::Q2_K: dequantize_k<BlockQ2_K>(src, dst, n); return;
    case GgmlType::Q3_K: dequantize_k<BlockQ3_K>(src, dst, n); return;
    case GgmlType::Q4_K: dequantize_k<BlockQ4_K>(src, dst, n); return;
    case GgmlType::Q5_K: dequantize_k<BlockQ5_K>(src, dst, n); return;
    case GgmlType::Q6_K: dequantize_k<BlockQ6_K>(src, dst, n); return;
    case GgmlType::IQ4_XS: dequantize_k<BlockIQ4_XS>(src, dst, n); return;
    case GgmlType::Q8_K: {
      const BlockQ8_K* b = static_cast<const BlockQ8_K*>(src);
      for (int64_t i = 0; i < n / QK_K; ++i)
        for (int j = 0; j < QK_K; ++j) dst[i * QK_K + j] = b[i].d * static_cast<float>(b[i].qs[j]);
      return;
    }
    case GgmlType::F32: std::memcpy(dst, src, n * sizeof(float)); return;
    case GgmlType::F16: {
      const uint16_t* s = static_cast<const uint16_t*>(src);
      for (int64_t i = 0; i < n; ++i) dst[i] = fp16_to_fp32(s[i]);
      return;
    }
    case GgmlType::BF16: {
      const uint16_t* s = static_cast<const uint16_t*>(src);
      for (int64_t i = 0; i < n; ++i) dst[i] = bf16_to_fp32(s[i]);
      return;
    }
    case GgmlType::Q4_0: {
      const BlockQ4_0* b = static_cast<const BlockQ4_0*>(src);
      for (int64_t i = 0; i < n / QK; ++i) {
        const float d = fp16_to_fp32(b[i].d);
        for (int j = 0; j < QK / 2; ++j) {
          dst[i * QK + j] = ((b[i].qs[j] & 0x0f) - 8) * d;
          dst[i * QK + j + QK / 2] = ((b[i].qs[j] >> 4) - 8) * d;
        }
      }
      return;
    }
    case GgmlType::Q4_1: {
      const BlockQ4_1* b = static_cast<const BlockQ4_1*>(src);
      for (int64_t i = 0; i < n / QK; ++i) {
        const float d = fp16_to_fp32(b[i].d), m = fp16_to_fp32(b[i].m);
        for (int j = 0; j < QK / 2; ++j) {
          dst[i * QK + j] = (b[i].qs[j] & 0x0f) * d + m;
          dst[i * QK + j + QK / 2] = (b[i].qs[j] >> 4) * d + m;
        }
      }
      return;
    }
    case GgmlType::Q8_0: {
      const BlockQ8_0* b = static_cast<const BlockQ8_0*>(src);
      for (int64_t i = 0; i < n / QK; ++i) {
        const float d = fp16_to_fp32(b[i].d);
        for (int j = 0; j < QK; ++j) dst[i * QK + j] = b[i].qs[j] * d;
      }
      return;
    }
    case GgmlType::Q8_1: {
      const BlockQ8_1* b = static_cast<const BlockQ8_1*>(src);
      for (int64_t i = 0; i < n / QK; ++i) {
        const float d = fp16_to_fp32(b[i].d);
        for (int j = 0; j < QK; ++j) dst[i * QK + j] = b[i].qs[j] * d;
      }
      return;
    }
  }
}

// Activation quantisers follow ggml's x86 SIMD path (scale 127/amax, round half
// to even), which is what llama.cpp runs on x86; its scalar reference differs
// in the last bit for rare ties.
void quantize_row_q8_0_ref(const float* x, BlockQ8_0* y, int64_t n) {
  for (int64_t i = 0; i < n / QK; ++i) {
    float amax = 0.0f;
    for (int j = 0; j < QK; ++j) amax = std::fmax(amax, std::fabs(x[i * QK + j]));
    const float d = amax / 127.0f;
    const float id = amax != 0.0f ? 127.0f / amax : 0.0f;
    y[i].d = fp32_to_fp16(d);
    for (int j = 0; j < QK; ++j) y[i].qs[j] = static_cast<int8_t>(std::nearbyint(x[i * QK + j] * id));
  }
}

void quantize_row_q8_1_ref(const float* x, BlockQ8_1* y, int64_t n) {
  for (int64_t i = 0; i < n / QK; ++i) {
    float amax = 0.0f;
    for (int j = 0; j < QK; ++j) amax = std::fmax(amax, std::fabs(x[i * QK + j]));
    const float d = amax / 127.0f;
    const float id = amax != 0.0f ? 127.0f / amax : 0.0f;
    int sum = 0;
    for (int j = 0; j < QK; ++j) {
      const int q = static_cast<int>(std::nearbyint(x[i * QK + j] * id));
      y[i].qs[j] = static_cast<int8_t>(q);
      sum += q;
    }
    y[i].d = fp32_to_fp16(d);
    y[i].s = fp32_to_fp16(static_cast<float>(sum) * d);
  }
}

void quantize_row_q4_0_ref(const float* x, BlockQ4_0* y, int64_t n) {
  for (int64_t i = 0; i < n / QK; ++i) {
    const float* xb = x + i * QK;
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < QK; ++j) {
      if (std::fabs(xb[j]) > amax) {
        amax = std::fabs(xb[j]);
        max = xb[j];
      }
    }
    const float d = max / -8.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y[i].d = fp32_to_fp16(d);
    for (int j = 0; j < QK / 2; ++j) {
      const int q0 = std::min(15, static_cast<int>(xb[j] * id + 8.5f));
      const int q1 = std::min(15, static_cast<int>(xb[j + QK / 2] * id + 8.5f));
      y[i].qs[j] = static_cast<uint8_t>(q0 | (q1 << 4));
    }
  }
}

void quantize_row_q4_1_ref(const float* x, BlockQ4_1* y, int64_t n) {
  for (int64_t i = 0; i < n / QK; ++i) {
    const float* xb = x + i * QK;
    float mn = xb[0], mx = xb[0];
    for (int j = 1; j < QK; ++j) {
      mn = std::fmin(mn, xb[j]);
      mx = std::fmax(mx, xb[j]);
    }
    const float d = (mx - mn) / 15.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y[i].d = fp32_to_fp16(d);
    y[i].m = fp32_to_fp16(mn);
    for (int j = 0; j < QK / 2; ++j) {
      const int q0 = std::min(15, static_cast<int>((xb[j] - mn) * id + 0.5f));
      const int q1 = std::min(15, static_cast<int>((xb[j + QK / 2] - mn) * id + 0.5f));
      y[i].qs[j] = static_cast<uint8_t>(q0 | (q1 << 4));
    }
  }
}

}  // namespace bluelm
