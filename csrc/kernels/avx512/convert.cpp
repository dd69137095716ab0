// AVX-512 Q8_0 / Q8_1 activation rows, 16 blocks of 32 at a time: the 16
// blocks' absolute maxima (and Q8_1's sums) are folded into one vector by a
// transpose-reduce (four levels of two vpermt2ps and a max), so d = amax / 127,
// id = 127 / amax and the fp16 conversions take one vector instruction for all
// 16 blocks, where the per-block AVX2 path waits on two scalar divisions a
// block. Each value takes the reference codec's IEEE operations (a maximum is
// exact in any order for finite values; x * id rounded to nearest even;
// saturating narrowing as the packs), so the bytes are the scalar codec's. The
// blocks past the last whole 16 go one at a time (a padded group would cost 16).
#include <cstring>

#include "core/block_formats.h"
#include "kernels/avx512/avx512.h"
#include "kernels/avx512/zmm.h"

namespace bluelm::kernels::avx512 {
namespace {

constexpr int kGroup = 16;  // blocks per step

// One transpose-reduce level: lanes of a and b picked by lo / hi, combined.
template <class Op>
inline __m512 fold(__m512 a, __m512 b, __m512i lo, __m512i hi, Op op) {
  return op(_mm512_permutex2var_ps(a, lo, b), _mm512_permutex2var_ps(a, hi, b));
}

// v[j] holds block j's 16 partial values; returns lane j = op over v[j]'s lanes.
template <class Op>
inline __m512 reduce16(__m512* v, Op op) {
  const __m512i l1 = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23);
  const __m512i h1 = _mm512_setr_epi32(8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31);
  const __m512i l2 = _mm512_setr_epi32(0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27);
  const __m512i h2 = _mm512_setr_epi32(4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22, 23, 28, 29, 30, 31);
  const __m512i l3 = _mm512_setr_epi32(0, 1, 4, 5, 8, 9, 12, 13, 16, 17, 20, 21, 24, 25, 28, 29);
  const __m512i h3 = _mm512_setr_epi32(2, 3, 6, 7, 10, 11, 14, 15, 18, 19, 22, 23, 26, 27, 30, 31);
  const __m512i l4 = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  const __m512i h4 = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
  // After level 1 each vector holds 2 blocks x 8 lanes, then 4 x 4, 8 x 2, 16 x 1, in block order.
  for (int j = 0; j < 8; ++j) v[j] = fold(v[2 * j], v[2 * j + 1], l1, h1, op);
  for (int j = 0; j < 4; ++j) v[j] = fold(v[2 * j], v[2 * j + 1], l2, h2, op);
  for (int j = 0; j < 2; ++j) v[j] = fold(v[2 * j], v[2 * j + 1], l3, h3, op);
  return fold(v[0], v[1], l4, h4, op);
}

struct Max {
  __m512 operator()(__m512 a, __m512 b) const { return _mm512_max_ps(a, b); }
};
struct AddI {  // int32 lanes carried in float registers
  __m512 operator()(__m512 a, __m512 b) const {
    return _mm512_castsi512_ps(_mm512_add_epi32(_mm512_castps_si512(a), _mm512_castps_si512(b)));
  }
};

// 16 values of x times id, rounded to nearest even.
inline __m512i quant16(const float* x, __m512 id) {
  return _mm512_cvt_roundps_epi32(_mm512_mul_ps(_mm512_loadu_ps(x), id), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
}

// A block's q (two halves) as int32 lanes to sum: the bytes as stored, each q
// clamped to [-128, 127] as the saturating narrowing wrote it (for finite x,
// |q| <= 127 anyway).
inline __m512i stored_q(__m512i q0, __m512i q1) {
  const __m512i lo = _mm512_set1_epi32(-128), hi = _mm512_set1_epi32(127);
  return _mm512_add_epi32(_mm512_min_epi32(_mm512_max_epi32(q0, lo), hi), _mm512_min_epi32(_mm512_max_epi32(q1, lo), hi));
}

// Blocks [0, 16) of x: each one's d (fp16 and float) and 32 int8; with kSums
// also each one's sum of q as int32.
template <bool kSums>
inline void group(const float* x, uint16_t* d16, float* d32, int8_t (*qs)[32], int32_t* sums) {
  __m512 a[kGroup];
  for (int j = 0; j < kGroup; ++j)
    a[j] = _mm512_max_ps(_mm512_abs_ps(_mm512_loadu_ps(x + 32 * j)), _mm512_abs_ps(_mm512_loadu_ps(x + 32 * j + 16)));
  const __m512 amax = reduce16(a, Max());
  const __m512 d = _mm512_div_ps(amax, _mm512_set1_ps(127.0f));
  const __mmask16 nz = _mm512_cmp_ps_mask(amax, _mm512_setzero_ps(), _CMP_NEQ_UQ);
  const __m512 id = _mm512_maskz_div_ps(nz, _mm512_set1_ps(127.0f), amax);
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(d16), _mm512_cvtps_ph(d, _MM_FROUND_TO_NEAREST_INT));
  _mm512_storeu_ps(d32, d);
  alignas(64) float ids[kGroup];
  _mm512_store_ps(ids, id);
  __m512 s[kGroup];
  for (int j = 0; j < kGroup; ++j) {
    const __m512 m = _mm512_set1_ps(ids[j]);
    const __m512i q0 = quant16(x + 32 * j, m), q1 = quant16(x + 32 * j + 16, m);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(qs[j]), _mm512_cvtsepi32_epi8(q0));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(qs[j] + 16), _mm512_cvtsepi32_epi8(q1));
    if constexpr (kSums) s[j] = _mm512_castsi512_ps(stored_q(q0, q1));
  }
  if constexpr (kSums) _mm512_storeu_si512(sums, _mm512_castps_si512(reduce16(s, AddI())));
}

// One block the same way, its maximum and sum by in-register reductions.
template <class Block, bool kSums>
inline void one(const float* x, Block& o) {
  const __m512 v0 = _mm512_loadu_ps(x), v1 = _mm512_loadu_ps(x + 16);
  const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v0), _mm512_abs_ps(v1)));
  const float d = amax / 127.0f;
  const float id = amax != 0.0f ? 127.0f / amax : 0.0f;
  o.d = static_cast<uint16_t>(_cvtss_sh(d, _MM_FROUND_TO_NEAREST_INT));
  const __m512 m = _mm512_set1_ps(id);
  const __m512i q0 = quant16(x, m), q1 = quant16(x + 16, m);
  _mm_storeu_si128(reinterpret_cast<__m128i*>(o.qs), _mm512_cvtsepi32_epi8(q0));
  _mm_storeu_si128(reinterpret_cast<__m128i*>(o.qs + 16), _mm512_cvtsepi32_epi8(q1));
  if constexpr (kSums) {
    const int sum = _mm512_reduce_add_epi32(stored_q(q0, q1));
    o.s = static_cast<uint16_t>(_cvtss_sh(static_cast<float>(sum) * d, _MM_FROUND_TO_NEAREST_INT));
  }
}

template <class Block, bool kSums>
void convert_q8(const float* x, void* y, int64_t K) {
  Block* o = static_cast<Block*>(y);
  const int64_t nb = K / QK;
  int64_t b = 0;
  alignas(64) uint16_t d16[kGroup];
  alignas(64) float d32[kGroup];
  alignas(64) int32_t sums[kGroup];
  int8_t qs[kGroup][32];
  for (; b + kGroup <= nb; b += kGroup) {
    group<kSums>(x + b * QK, d16, d32, qs, sums);
    alignas(64) uint16_t s16[kGroup];
    if constexpr (kSums) {
      const __m512 s = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_load_si512(sums)), _mm512_load_ps(d32));
      _mm256_store_si256(reinterpret_cast<__m256i*>(s16), _mm512_cvtps_ph(s, _MM_FROUND_TO_NEAREST_INT));
    }
    for (int j = 0; j < kGroup; ++j) {
      o[b + j].d = d16[j];
      if constexpr (kSums) o[b + j].s = s16[j];
      std::memcpy(o[b + j].qs, qs[j], 32);
    }
  }
  for (; b < nb; ++b) one<Block, kSums>(x + b * QK, o[b]);
}

void convert_q8_0(const float* x, void* y, int64_t K) { convert_q8<BlockQ8_0, false>(x, y, K); }
void convert_q8_1(const float* x, void* y, int64_t K) { convert_q8<BlockQ8_1, true>(x, y, K); }

}  // namespace

void fill_convert(KernelTable& t) {
  t.convert[A_Q8_0] = convert_q8_0;
  t.convert[A_Q8_1] = convert_q8_1;
}

}  // namespace bluelm::kernels::avx512
