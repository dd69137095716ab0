// Unpacking of the 5-bit, IQ4 and K-quant blocks into signed levels and
// integer sub-block scales: one decoding shared by the dequantisers
// (block_formats.cpp) and the scalar reference kernels (kernels/scalar/kquants.cpp),
// so both read every format the same way. Layout facts follow ggml-common.h.
#pragma once
#include <cstdint>
#include <cstring>

#include "core/block_formats.h"

namespace bluelm {

// One super-block of 256 values: value[e] = d * sc[e / sub] * q[e] - dmin * mn[e / sub]
// (mn only for the types with mins; all zero otherwise).
struct UnpackedK {
  int8_t q[QK_K];  // the level that multiplies (signed, offsets removed)
  int sc[16];      // integer sub-block scales
  int mn[16];      // integer sub-block mins (Q2_K, Q4_K, Q5_K)
  float d = 0.0f, dmin = 0.0f;
  int sub = 16;    // elements per sub-block: 16 or 32
  bool has_min = false;
};

inline void unpack_block(const BlockQ2_K& b, UnpackedK* u) {
  u->d = fp16_to_fp32(b.d);
  u->dmin = fp16_to_fp32(b.dmin);
  u->sub = 16;
  u->has_min = true;
  for (int j = 0; j < 16; ++j) {
    u->sc[j] = b.scales[j] & 0x0f;
    u->mn[j] = b.scales[j] >> 4;
  }
  // Each 128 elements share 32 bytes: element 32g + l of the half is bits 2g of byte l.
  for (int e = 0; e < QK_K; ++e) {
    const int half = e / 128, g = (e % 128) / 32, l = e % 32;
    u->q[e] = static_cast<int8_t>((b.qs[half * 32 + l] >> (2 * g)) & 3);
  }
}

inline void unpack_block(const BlockQ3_K& b, UnpackedK* u) {
  u->d = fp16_to_fp32(b.d);
  u->dmin = 0.0f;
  u->sub = 16;
  u->has_min = false;
  unpack_q3_k_scales(b.scales, u->sc);
  std::memset(u->mn, 0, sizeof u->mn);
  // Low 2 bits as Q2_K; the high bit of element e is bit e / 32 of hmask[e % 32],
  // set meaning "no -4".
  for (int e = 0; e < QK_K; ++e) {
    const int half = e / 128, g = (e % 128) / 32, l = e % 32;
    const int lo = (b.qs[half * 32 + l] >> (2 * g)) & 3;
    const int hi = (b.hmask[l] >> (e / 32)) & 1;
    u->q[e] = static_cast<int8_t>(lo - (hi ? 0 : 4));
  }
}

inline void unpack_block(const BlockQ4_K& b, UnpackedK* u) {
  u->d = fp16_to_fp32(b.d);
  u->dmin = fp16_to_fp32(b.dmin);
  u->sub = 32;
  u->has_min = true;
  for (int j = 0; j < 8; ++j) scale_min_k4(j, b.scales, &u->sc[j], &u->mn[j]);
  // Each 64 elements share 32 bytes: the first 32 in the low nibbles.
  for (int e = 0; e < QK_K; ++e) {
    const uint8_t byte = b.qs[(e / 64) * 32 + e % 32];
    u->q[e] = static_cast<int8_t>((e % 64) < 32 ? byte & 0x0f : byte >> 4);
  }
}

inline void unpack_block(const BlockQ5_K& b, UnpackedK* u) {
  u->d = fp16_to_fp32(b.d);
  u->dmin = fp16_to_fp32(b.dmin);
  u->sub = 32;
  u->has_min = true;
  for (int j = 0; j < 8; ++j) scale_min_k4(j, b.scales, &u->sc[j], &u->mn[j]);
  // Low nibbles as Q4_K; the 5th bit of element e is bit e / 32 of qh[e % 32].
  for (int e = 0; e < QK_K; ++e) {
    const uint8_t byte = b.qs[(e / 64) * 32 + e % 32];
    const int lo = (e % 64) < 32 ? byte & 0x0f : byte >> 4;
    const int hi = (b.qh[e % 32] >> (e / 32)) & 1;
    u->q[e] = static_cast<int8_t>(lo | (hi << 4));
  }
}

inline void unpack_block(const BlockQ6_K& b, UnpackedK* u) {
  u->d = fp16_to_fp32(b.d);
  u->dmin = 0.0f;
  u->sub = 16;
  u->has_min = false;
  for (int j = 0; j < 16; ++j) u->sc[j] = b.scales[j];
  std::memset(u->mn, 0, sizeof u->mn);
  // Per 128 elements: 64 ql bytes and 32 qh bytes. Element 32g + l (g = 0..3)
  // takes the low (g < 2) or high nibble of ql[l + 32 * (g % 2)] and bits 2g of qh[l].
  for (int e = 0; e < QK_K; ++e) {
    const int half = e / 128, g = (e % 128) / 32, l = e % 32;
    const uint8_t lb = b.ql[half * 64 + l + 32 * (g % 2)];
    const int lo = g < 2 ? lb & 0x0f : lb >> 4;
    const int hi = (b.qh[half * 32 + l] >> (2 * g)) & 3;
    u->q[e] = static_cast<int8_t>((lo | (hi << 4)) - 32);
  }
}

inline void unpack_block(const BlockIQ4_XS& b, UnpackedK* u) {
  u->d = fp16_to_fp32(b.d);
  u->dmin = 0.0f;
  u->sub = 32;
  u->has_min = false;
  for (int j = 0; j < 8; ++j) u->sc[j] = iq4_xs_scale(b, j);
  std::memset(u->mn, 0, sizeof u->mn);
  // Each sub-block of 32 as one IQ4_NL block: 16 bytes, low nibbles first.
  for (int e = 0; e < QK_K; ++e) {
    const uint8_t byte = b.qs[(e / 32) * 16 + e % 16];
    u->q[e] = kIQ4NLValues[(e % 32) < 16 ? byte & 0x0f : byte >> 4];
  }
}

// The 32 levels of a 32-element block (element j low nibble of qs[j], j + 16 high).
inline int nibble32(const uint8_t* qs, int j) { return j < 16 ? qs[j] & 0x0f : qs[j - 16] >> 4; }

inline uint32_t q5_high_bits(const uint8_t* qh) {
  uint32_t h;
  std::memcpy(&h, qh, 4);
  return h;
}

// Q5_0: q - 16 in -16..15.
inline void unpack_block(const BlockQ5_0& b, int8_t* q) {
  const uint32_t h = q5_high_bits(b.qh);
  for (int j = 0; j < QK; ++j) q[j] = static_cast<int8_t>((nibble32(b.qs, j) | (((h >> j) & 1) << 4)) - 16);
}

// Q5_1: q in 0..31 (the min is added apart).
inline void unpack_block(const BlockQ5_1& b, int8_t* q) {
  const uint32_t h = q5_high_bits(b.qh);
  for (int j = 0; j < QK; ++j) q[j] = static_cast<int8_t>(nibble32(b.qs, j) | (((h >> j) & 1) << 4));
}

inline void unpack_block(const BlockIQ4_NL& b, int8_t* q) {
  for (int j = 0; j < QK; ++j) q[j] = kIQ4NLValues[nibble32(b.qs, j)];
}

}  // namespace bluelm
