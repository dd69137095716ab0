// Prompt-chunk attention with P.V in bf16 (KernelTable::attend_chunk_bf16) for
// F16 and Q8_0 caches: kernels/common/flash_attention.h's Flash<Zmm> for the
// lanes, key tiles, scores (the reference's, bit for bit), masks and online
// softmax; then the weights and the V tile rounded to bf16 (nearest even) and
// P.V by vdpbf16ps, which multiplies pairs of bf16 (here two keys) and adds
// them into F32, so a zmm does 32 multiply-adds where vfmadd231ps does 16. The
// softmax's sum l is that of the unrounded weights. Rounding the scores'
// operands to bf16 as well doubled the score speed but moved SmolLM2's
// long-prompt KL past llama.cpp's (tests/test_long_prompt_fidelity.py), so
// the scores stay exact. Each rounding is relative 2^-9 at most;
// tests/cpp/test_flash.cpp bounds the result against the reference with them.
// A lane's result still depends only on its own query and the positions it
// sees (bits equal in any chunking): keys are paired at even positions.
#include "kernels/avx512/zmm.h"  // first: immintrin.h without GCC 12's false warnings

#include "kernels/avx512/flash_zmm.h"
#include "kernels/avx512_bf16/avx512_bf16.h"

namespace bluelm::kernels::avx512_bf16 {
namespace {

using Base = Flash<Zmm>;
using Group = Base::Group;
constexpr int W = Zmm::W, GL = Base::GL, kD = Zmm::kD;

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

// The V tile's rows (F32, vs floats apart) as bf16 pairs of keys [pair][d] in
// w.vp, an odd last key paired with zeros.
void pack_v(const Group& g, const float* v, int64_t vs, int64_t nk) {
  uint32_t* vp = g.at<uint32_t>(g.w.vp);
  const int64_t hd = g.hd;
  for (int64_t j = 0; j < nk; j += 2) {
    const float* r0 = v + j * vs;
    const bool two = j + 1 < nk;
    const float* r1 = two ? r0 + vs : r0;
    uint32_t* dst = vp + j / 2 * hd;
    int64_t d = 0;
    for (; d + 16 <= hd; d += 16)
      _mm512_storeu_si512(dst + d, bf16_pair(_mm512_loadu_ps(r0 + d), two ? _mm512_loadu_ps(r1 + d) : _mm512_setzero_ps()));
    for (; d < hd; ++d) dst[d] = bf16_bits(r0[d]) | (two ? bf16_bits(r1[d]) << 16 : 0u);
  }
}

// o[c][lane] = o * alpha + sum over key pairs, D columns from c. Not inlined:
// its registers are its own (inlined, GCC kept the caller's constants live and
// reloaded operands for every product).
template <int D, int B>
__attribute__((noinline)) void pv(const Group& g, int64_t n2, int64_t c, const __m512* alpha) {
  const uint32_t* pp = g.at<uint32_t>(g.w.pp);
  const uint32_t* vp = g.at<uint32_t>(g.w.vp) + c;
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
  Base::setup(g, lane0);
  float* s = g.at<float>(g.w.s);
  uint32_t* pp = g.at<uint32_t>(g.w.pp);
  const int8_t* kx = g.at<int8_t>(g.w.kx);
  const float* dk = g.at<float>(g.w.dk);
  Base::for_tiles(g, [&](int64_t a0, int64_t nk, bool masked) {
    // Key pairs at even positions, whatever the group's first key (a lane's bits
    // must not depend on its neighbours): an odd start takes the key before it,
    // which no lane sees.
    if (a0 % 2) {
      --a0;
      ++nk;
      masked = true;
    }
    const float *k, *v;
    int64_t ks, vs;
    Base::load_tile(g, a0, nk, &k, &ks, &v, &vs);
    Base::scores<B>(g, k, ks, kx, dk, nk, s);
    __m512 alpha[B];
    Base::softmax<B>(g, a0, nk, masked, alpha);
    const int64_t n2 = (nk + 1) / 2;
    for (int64_t j2 = 0; j2 < n2; ++j2)
      for (int b = 0; b < B; ++b) {
        const __m512 p0 = _mm512_loadu_ps(s + 2 * j2 * GL + b * W);
        const __m512 p1 = 2 * j2 + 1 < nk ? _mm512_loadu_ps(s + (2 * j2 + 1) * GL + b * W) : _mm512_setzero_ps();
        _mm512_storeu_si512(pp + j2 * GL + b * W, bf16_pair(p0, p1));
      }
    pack_v(g, v, vs, nk);
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
