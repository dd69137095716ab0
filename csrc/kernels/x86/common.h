// Small helpers of the x86 kernel files (AVX2 and AVX-512). Everything here
// sits in an anonymous namespace, so each including file (compiled with its
// own ISA flags) gets a private copy: none can be picked by the linker for
// code meant for an older CPU. Include only from files compiled with at least
// -mavx2 -mfma -mf16c.
#pragma once
#include <immintrin.h>

#include <cstdint>

#include "core/block_formats.h"

namespace bluelm::kernels {
namespace {

inline float h2f(uint16_t h) { return _cvtsh_ss(h); }
inline uint16_t f2h(float f) { return static_cast<uint16_t>(_cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT)); }

// 16 bytes of packed nibbles -> 32 bytes 0..15 in element order: low nibbles
// are elements 0..15 (low lane), high nibbles elements 16..31 (high lane).
inline __m256i nibbles(const uint8_t* qs) {
  const __m256i y = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(qs)));
  return _mm256_and_si256(_mm256_srlv_epi64(y, _mm256_setr_epi64x(0, 0, 4, 4)), _mm256_set1_epi8(0x0f));
}

// The two fp16 at the head of a block (d, and m or s) as floats in lanes 0 and 1.
// Reads 8 bytes, always inside the block; one vcvtph2ps with a memory operand.
inline __m128 head2(const void* block) {
  return _mm_cvtph_ps(_mm_loadl_epi64(static_cast<const __m128i*>(block)));
}

// v as it is, kept in a register: GCC otherwise may fold its load into every
// instruction that uses it, reading the same bytes again for each (see
// kquant_tiles.h kOneLoad).
template <class I>
inline I in_register(I v) {
  __asm__("" : "+v"(v));
  return v;
}

inline __m256i load32(const int8_t* p) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)); }

// The 8 lanes summed as (lo + hi), then movehl, then movehdup (the AVX tree).
inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// 8 int32 lane sums (exact integers) scaled into acc by one FMA.
inline __m256 scale_add(__m256 acc, __m256i s32, __m256 scale) {
  return _mm256_fmadd_ps(_mm256_cvtepi32_ps(s32), scale, acc);
}

// 8 float lanes (common/float_tile.h's Vec).
struct Avx8 {
  using F8 = __m256;
  using Acc = __m256;
  static Acc zero() { return _mm256_setzero_ps(); }
  static Acc fma(Acc acc, F8 w, F8 x) { return _mm256_fmadd_ps(w, x, acc); }
  static float sum(Acc acc) { return hsum(acc); }
};

// 8 elements of a float row type as floats (F32, F16, BF16 rows).
struct F32Load {
  using E = float;
  using Vec = Avx8;
  static __m256 load8(const float* p) { return _mm256_loadu_ps(p); }
  static float load1(const float* p) { return *p; }
};
struct F16Load {
  using E = uint16_t;
  using Vec = Avx8;
  static __m256 load8(const uint16_t* p) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  }
  static float load1(const uint16_t* p) { return h2f(*p); }
};
struct BF16Load {
  using E = uint16_t;
  using Vec = Avx8;
  static __m256 load8(const uint16_t* p) {
    const __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    return _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
  }
  static float load1(const uint16_t* p) { return bf16_to_fp32(*p); }
};

}  // namespace
}  // namespace bluelm::kernels
