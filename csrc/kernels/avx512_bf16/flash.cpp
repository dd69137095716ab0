// Prompt-chunk attention in bf16 (KernelTable::attend_chunk_bf16) for F16 and
// Q8_0 caches: the lanes, key tiles, masks and online softmax of
// kernels/common/flash_attention.h (its Flash<Zmm> pieces), with both products
// by vdpbf16ps, which multiplies pairs of bf16 and adds them into F32, so a
// zmm does 32 multiply-adds where vfmadd231ps does 16:
//   scores  s_j = sum over pairs of d of q'(d) k_j(d), q' = bf16(scale * q),
//           k_j = bf16 of the cache row (F16 or Q8_0 widened to F32 first);
//   P.V     o += sum over pairs of keys of bf16(p_j) bf16(v_j), the softmax's
//           sum l of the unrounded p_j.
// Every rounding is relative 2^-9 at most; tests/cpp/test_flash.cpp bounds the
// result against the scalar reference with them. A lane's result still depends
// only on its own query and the positions it sees (bits equal in any chunking):
// keys are paired at even positions.
#include "kernels/avx512/zmm.h"  // first: immintrin.h without GCC 12's false warnings

#include "kernels/avx512/flash_zmm.h"
#include "kernels/avx512_bf16/avx512_bf16.h"

namespace bluelm::kernels::avx512_bf16 {
namespace {

using Base = Flash<Zmm>;
using Group = Base::Group;
constexpr int W = Zmm::W, GL = Base::GL, kJ = Zmm::kJ, kD = Zmm::kD;

// Round to bf16, nearest even (finite inputs), kept in the high half of each dword.
inline __m512i bf16_high(__m512 x) {
  const __m512i b = _mm512_castps_si512(x);
  const __m512i odd = _mm512_and_si512(_mm512_srli_epi32(b, 16), _mm512_set1_epi32(1));
  const __m512i r = _mm512_add_epi32(b, _mm512_add_epi32(odd, _mm512_set1_epi32(0x7fff)));
  return _mm512_and_si512(r, _mm512_set1_epi32(static_cast<int32_t>(0xffff0000u)));
}
// Per dword: bf16(a) in the low half, bf16(b) in the high half (vdpbf16ps's pair).
inline __m512i bf16_pair(__m512 a, __m512 b) { return _mm512_or_si512(_mm512_srli_epi32(bf16_high(a), 16), bf16_high(b)); }
inline uint32_t bf16_bits(float x) {
  uint32_t b;
  std::memcpy(&b, &x, 4);
  return (b + 0x7fffu + ((b >> 16) & 1u)) >> 16;
}

// Work buffer parts (FlashWork's, reused): qt holds the queries as bf16 pairs
// [d / 2][lane]; kt the K tile as bf16 pairs [key][d / 2]; vt the V tile as
// pairs of keys [key / 2][d]; pp the weights as pairs of keys [key / 2][lane].
void setup(const Group& g, int64_t lane0) {
  const ChunkAttention& a = g.a;
  uint32_t* qp = g.at<uint32_t>(g.w.qt);
  float* lo = g.at<float>(g.w.lo);
  float* hi = g.at<float>(g.w.hi);
  for (int64_t i = 0; i < int64_t(g.B) * W; ++i) {
    const float* q = Base::lane_range(g, lane0, i, lo, hi);
    const bool real = i < g.nq;
    for (int64_t d = 0; d < g.hd; d += 2) {
      const uint32_t q0 = real ? bf16_bits(q[d] * a.scale) : 0, q1 = real ? bf16_bits(q[d + 1] * a.scale) : 0;
      qp[d / 2 * GL + i] = q0 | (q1 << 16);
    }
  }
  Base::init_state(g);
}

// One cache row (position p) in F32.
void row_f32(const Group& g, const void* cache, int64_t p, float* dst) {
  const ChunkAttention& a = g.a;
  if (a.kv_type == GgmlType::F16) Zmm::f16_to_f32(static_cast<const uint16_t*>(cache) + p * a.kv_stride, dst, g.hd);
  else Zmm::q8_0_to_f32(static_cast<const BlockQ8_0*>(cache) + p * (a.kv_stride / 32), g.nb, dst);
}

// Keys [j0, j0 + nk) into kt and vt (an odd last key paired with a zero row).
void load_tile(const Group& g, int64_t j0, int64_t nk) {
  float* r0 = g.at<float>(g.w.rows);
  float* r1 = r0 + g.hd;
  uint32_t* kp = g.at<uint32_t>(g.w.kt);
  uint32_t* vp = g.at<uint32_t>(g.w.vt);
  const int64_t hd = g.hd;
  for (int64_t j = 0; j < nk; ++j) {
    row_f32(g, g.a.k, j0 + j, r0);
    int64_t d = 0;
    for (; d + 32 <= hd; d += 32) {
      const __m512 x0 = _mm512_loadu_ps(r0 + d), x1 = _mm512_loadu_ps(r0 + d + 16);
      const __m512bh b = _mm512_cvtne2ps_pbh(x1, x0);  // dword e: (d + 2e, d + 2e + 1)
      _mm512_storeu_si512(kp + j * hd / 2 + d / 2, (__m512i)b);
    }
    for (; d < hd; d += 2) kp[j * hd / 2 + d / 2] = bf16_bits(r0[d]) | (bf16_bits(r0[d + 1]) << 16);
  }
  for (int64_t j = 0; j < nk; j += 2) {
    row_f32(g, g.a.v, j0 + j, r0);
    if (j + 1 < nk) row_f32(g, g.a.v, j0 + j + 1, r1);
    else std::fill(r1, r1 + hd, 0.0f);
    uint32_t* dst = vp + j / 2 * hd;
    int64_t d = 0;
    for (; d + 16 <= hd; d += 16)
      _mm512_storeu_si512(dst + d, bf16_pair(_mm512_loadu_ps(r0 + d), _mm512_loadu_ps(r1 + d)));
    for (; d < hd; ++d) dst[d] = bf16_bits(r0[d]) | (bf16_bits(r1[d]) << 16);
  }
}

// s[j][lane] for J keys from key j. Not inlined: its registers are its own
// (inlined, GCC kept constants of the caller live and reloaded the queries).
template <int J, int B>
__attribute__((noinline)) void qk(const Group& g, int64_t j, float* s) {
  const int64_t h2 = g.hd / 2;
  const uint32_t* qp = g.at<uint32_t>(g.w.qt);
  const uint32_t* kp = g.at<uint32_t>(g.w.kt) + j * h2;
  __m512 acc[J][B];
#pragma GCC unroll 16
  for (int jj = 0; jj < J; ++jj)
#pragma GCC unroll 4
    for (int b = 0; b < B; ++b) acc[jj][b] = _mm512_setzero_ps();
  for (int64_t d2 = 0; d2 < h2; ++d2) {
    __m512bh q[B];
#pragma GCC unroll 4
    for (int b = 0; b < B; ++b) q[b] = (__m512bh)_mm512_loadu_si512(qp + d2 * GL + b * W);
#pragma GCC unroll 16
    for (int jj = 0; jj < J; ++jj) {
      const __m512bh k = (__m512bh)_mm512_set1_epi32(static_cast<int32_t>(kp[jj * h2 + d2]));
#pragma GCC unroll 4
      for (int b = 0; b < B; ++b) acc[jj][b] = _mm512_dpbf16_ps(acc[jj][b], q[b], k);
    }
  }
#pragma GCC unroll 16
  for (int jj = 0; jj < J; ++jj)
#pragma GCC unroll 4
    for (int b = 0; b < B; ++b) _mm512_storeu_ps(s + (j + jj) * GL + b * W, acc[jj][b]);
}

// o[c][lane] = o * alpha + sum over key pairs, D columns from c.
template <int D, int B>
__attribute__((noinline)) void pv(const Group& g, int64_t n2, int64_t c, const __m512* alpha) {
  const uint32_t* pp = g.at<uint32_t>(g.w.pp);
  const uint32_t* vp = g.at<uint32_t>(g.w.vt) + c;
  float* o = g.at<float>(g.w.o) + c * GL;
  __m512 acc[D][B];
#pragma GCC unroll 16
  for (int cc = 0; cc < D; ++cc)
#pragma GCC unroll 4
    for (int b = 0; b < B; ++b) acc[cc][b] = _mm512_mul_ps(_mm512_loadu_ps(o + cc * GL + b * W), alpha[b]);
  for (int64_t j2 = 0; j2 < n2; ++j2) {
    __m512bh p[B];
#pragma GCC unroll 4
    for (int b = 0; b < B; ++b) p[b] = (__m512bh)_mm512_loadu_si512(pp + j2 * GL + b * W);
#pragma GCC unroll 16
    for (int cc = 0; cc < D; ++cc) {
      const __m512bh v = (__m512bh)_mm512_set1_epi32(static_cast<int32_t>(vp[j2 * g.hd + cc]));
#pragma GCC unroll 4
      for (int b = 0; b < B; ++b) acc[cc][b] = _mm512_dpbf16_ps(acc[cc][b], p[b], v);
    }
  }
#pragma GCC unroll 16
  for (int cc = 0; cc < D; ++cc)
#pragma GCC unroll 4
    for (int b = 0; b < B; ++b) _mm512_storeu_ps(o + cc * GL + b * W, acc[cc][b]);
}

template <int B>
void run_group(const Group& g, int64_t lane0) {
  setup(g, lane0);
  float* s = g.at<float>(g.w.s);
  uint32_t* pp = g.at<uint32_t>(g.w.pp);
  Base::for_tiles(g, [&](int64_t a0, int64_t nk, bool masked) {
    // Key pairs at even positions, whatever the group's first key (a lane's bits
    // must not depend on its neighbours): an odd start takes the key before it,
    // which no lane sees.
    if (a0 % 2) {
      --a0;
      ++nk;
      masked = true;
    }
    load_tile(g, a0, nk);
    int64_t j = 0;
    for (; j + kJ <= nk; j += kJ) qk<kJ, B>(g, j, s);
    for (; j < nk; ++j) qk<1, B>(g, j, s);
    __m512 alpha[B];
    Base::softmax<B>(g, a0, nk, masked, alpha);
    const int64_t n2 = (nk + 1) / 2;
    for (int64_t j2 = 0; j2 < n2; ++j2)
      for (int b = 0; b < B; ++b) {
        const __m512 p0 = _mm512_loadu_ps(s + 2 * j2 * GL + b * W);
        const __m512 p1 = 2 * j2 + 1 < nk ? _mm512_loadu_ps(s + (2 * j2 + 1) * GL + b * W) : _mm512_setzero_ps();
        _mm512_storeu_si512(pp + j2 * GL + b * W, bf16_pair(p0, p1));
      }
    int64_t c = 0;
    for (; c + kD <= g.hd; c += kD) pv<kD, B>(g, n2, c, alpha);
    for (; c < g.hd; ++c) pv<1, B>(g, n2, c, alpha);
  });
  Base::finish(g, lane0);
}

void run(const ChunkAttention& a, int64_t lane0, int64_t lane1, void* work) {
  Base::for_groups(a, lane0, lane1, work, [](const Group& g, int64_t L) {
    switch (g.B) {
      case 1: run_group<1>(g, L); break;
      case 2: run_group<2>(g, L); break;
      case 3: run_group<3>(g, L); break;
      default: break;
    }
  });
}

}  // namespace

void fill_flash(KernelTable& t) { t.attend_chunk_bf16 = run; }

}  // namespace bluelm::kernels::avx512_bf16
