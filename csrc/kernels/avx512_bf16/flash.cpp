// Prompt-chunk attention for long prompts (KernelTable::attend_chunk_bf16) on
// F16 and Q8_0 caches, head_dim a multiple of 32: kernels/common/flash_attention.h's
// Flash<Zmm> for the lanes, key tiles at absolute positions, masks and output,
// with two faster products, each 32 multiply-adds per instruction where
// vfmadd231ps does 16:
//   scores  in exact int32 by vpdpwssd: per block of 32, the query (per lane)
//           and the key (per position) as integers round(x / d), d = max|x| / R:
//           an F16 key in 15 bits (R = 16383) and the query in 13 (R = 4095),
//           so 32 products of two stay inside int32; a Q8_0 key is its own
//           quants and scale, and the query then has 15 bits; then the
//           blocks' float sum s = sum_b float(isum_b) * (d_q,b * scale) * d_k,b;
//   P.V     weights and values rounded to bf16 (nearest even), by vdpbf16ps
//           over pairs of keys at even positions; the softmax's sum l is that
//           of the unrounded weights.
// The rounding errors are bounded in tests/cpp/test_flash.cpp (a score is off
// by at most scale * sum_d (|q_d| e_k + |k_d| e_q + e_q e_k) with e = d / 2,
// a bf16 rounding is relative 2^-9). bf16 scores (relative 2^-9 per operand)
// moved SmolLM2's long-prompt KL past llama.cpp's (tests/test_long_prompt_fidelity.py);
// so do keys in 13 bits (docs/ARCHITECTURE.md has the figures of each split).
// The softmax runs in base 2 (log2 e folded into the query's scale) with its own
// exp2: 2^n * p(f), n = round(y), f = y - n, p of degree 6 (relative 1.2e-7);
// masked keys are -inf, clamped to -200, whose 2^-200 is 0.
// K and V are converted once per chunk and layer (convert below, into a
// ChunkKv), not per lane group. A lane's result depends only on its own query
// and the positions it sees (bits equal in any chunking).
#include "kernels/avx512/zmm.h"  // first: immintrin.h without GCC 12's false warnings

#include "kernels/avx512/flash_zmm.h"
#include "kernels/avx512_bf16/avx512_bf16.h"

namespace bluelm::kernels::avx512_bf16 {
namespace {

using Base = Flash<Zmm>;
using Group = Base::Group;
constexpr int W = Zmm::W, GL = Base::GL, kD = Zmm::kD;
constexpr int kJ = 4;              // keys per score register tile
// Integer ranges per block of 32: an F16 key in 15 bits and the query in 13
// (32 * 16383 * 4095 < 2^31); with a Q8_0 key (|k| <= 127) the query in 15.
constexpr int32_t kKeyMax = 16383, kQueryMax = 4095, kQueryMaxQ8 = 16383;
constexpr float kLog2e = 1.44269504088896341f;

// 32 floats as integers (round to nearest even) of d = max|x| / range; returns d.
inline float quant_block(__m512 a, __m512 b, int32_t range, int16_t* out) {
  const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(a), _mm512_abs_ps(b)));
  const float d = amax / float(range), id = d != 0.0f ? 1.0f / d : 0.0f;
  const __m512 vid = _mm512_set1_ps(id);
  const __m512i lo = _mm512_set1_epi32(-range), hi = _mm512_set1_epi32(range);
  const __m512i ia = _mm512_min_epi32(_mm512_max_epi32(_mm512_cvtps_epi32(_mm512_mul_ps(a, vid)), lo), hi);
  const __m512i ib = _mm512_min_epi32(_mm512_max_epi32(_mm512_cvtps_epi32(_mm512_mul_ps(b, vid)), lo), hi);
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(out), _mm512_cvtepi32_epi16(ia));
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + 16), _mm512_cvtepi32_epi16(ib));
  return d;
}

// Per dword i: bf16(a[i]) low, bf16(b[i]) high (vdpbf16ps's pair), nearest even.
inline __m512i bf16_pair(__m512 a, __m512 b) {
  const __m512i idx = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7, 22, 6,
                                       21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
  return _mm512_permutexvar_epi16(idx, (__m512i)_mm512_cvtne2ps_pbh(b, a));
}

// 16 values of a cache row from element e as floats.
inline __m512 row16(const ChunkAttention& a, const void* rows, int64_t p, int64_t e) {
  if (a.kv_type == GgmlType::F16) {
    const uint16_t* r = static_cast<const uint16_t*>(rows) + p * a.kv_stride + e;
    return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(r)));
  }
  const BlockQ8_0& b = static_cast<const BlockQ8_0*>(rows)[(p * a.kv_stride + e) / 32];
  const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b.qs + e % 32));
  return _mm512_mul_ps(_mm512_set1_ps(_cvtsh_ss(b.d)), _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q)));
}

void convert(const ChunkAttention& a, int64_t p0, int64_t p1, const ChunkKv& kv) {
  const int64_t hd = a.head_dim, nb = hd / 32;
  for (int64_t p = p0; p < p1; ++p)
    for (int64_t blk = 0; blk < nb; ++blk) {
      int16_t* k = kv.k + p * hd + blk * 32;
      if (a.kv_type == GgmlType::Q8_0) {  // exact: the block's own quants and scale
        const BlockQ8_0& b = static_cast<const BlockQ8_0*>(a.k)[(p * a.kv_stride) / 32 + blk];
        _mm512_storeu_si512(k, _mm512_cvtepi8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.qs))));
        kv.kd[p * nb + blk] = _cvtsh_ss(b.d);
        continue;
      }
      kv.kd[p * nb + blk] = quant_block(row16(a, a.k, p, blk * 32), row16(a, a.k, p, blk * 32 + 16), kKeyMax, k);
    }
  for (int64_t p = p0; p < p1; p += 2) {
    uint32_t* dst = kv.v + p / 2 * hd;
    const bool two = p + 1 < p1;
    for (int64_t e = 0; e < hd; e += 16)
      _mm512_storeu_si512(dst + e, bf16_pair(row16(a, a.v, p, e), two ? row16(a, a.v, p + 1, e) : _mm512_setzero_ps()));
  }
}

// 2^y for y <= 0 or -inf (then 0).
inline __m512 exp2_neg(__m512 y) {
  y = _mm512_max_ps(y, _mm512_set1_ps(-200.0f));
  const __m512 n = _mm512_roundscale_ps(y, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m512 f = _mm512_sub_ps(y, n);
  __m512 p = _mm512_set1_ps(1.5403530393381606e-4f);  // ln2^k / k!, k = 6 .. 0
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.3333558146428443e-3f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(9.6181291076284772e-3f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(5.5504108664821580e-2f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(2.4022650695910071e-1f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(6.9314718055994531e-1f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.0f));
  return _mm512_scalef_ps(p, n);
}

// The lanes' queries as int16 pairs ([block][pair][lane] dwords in w.qt) and
// their block scales times scale (and log2 e, unless soft-capped) in w.cq;
// visible ranges and softmax state.
void setup(const Group& g, int64_t lane0) {
  const ChunkAttention& a = g.a;
  uint32_t* qp = g.at<uint32_t>(g.w.qt);
  float* cq = g.at<float>(g.w.cq);
  float* lo = g.at<float>(g.w.lo);
  float* hi = g.at<float>(g.w.hi);
  const float sc = a.scale * (a.softcap > 0.0f ? 1.0f : kLog2e);
  const int32_t qmax = a.kv_type == GgmlType::Q8_0 ? kQueryMaxQ8 : kQueryMax;
  alignas(64) int16_t v[32];
  for (int64_t i = 0; i < int64_t(g.B) * W; ++i) {
    const float* q = Base::lane_range(g, lane0, i, lo, hi);
    for (int64_t blk = 0; blk < g.nb; ++blk) {
      float d = 0.0f;
      if (i < g.nq) d = quant_block(_mm512_loadu_ps(q + blk * 32), _mm512_loadu_ps(q + blk * 32 + 16), qmax, v);
      else std::fill(v, v + 32, int16_t(0));
      for (int e = 0; e < 16; ++e)
        qp[(blk * 16 + e) * GL + i] = uint32_t(uint16_t(v[2 * e])) | uint32_t(uint16_t(v[2 * e + 1])) << 16;
      cq[blk * GL + i] = d * sc;
    }
  }
  Base::init_state(g);
}

// s[j][lane] for J keys from k (int16 rows of head_dim, block scales kd).
template <int J, int B>
void qk(const Group& g, const int16_t* k, const float* kd, float* s) {
  const uint32_t* qp = g.at<uint32_t>(g.w.qt);
  const float* cq = g.at<float>(g.w.cq);
  __m512 f[J][B];
  for (int64_t blk = 0; blk < g.nb; ++blk) {
    __m512i acc[J][B];
#pragma GCC unroll 8
    for (int j = 0; j < J; ++j)
#pragma GCC unroll 4
      for (int b = 0; b < B; ++b) acc[j][b] = _mm512_setzero_si512();
    const uint32_t* qb = qp + blk * 16 * GL;
    const int16_t* kb = k + blk * 32;
#pragma GCC unroll 16
    for (int e = 0; e < 16; ++e) {
      __m512i q[B];
#pragma GCC unroll 4
      for (int b = 0; b < B; ++b) q[b] = _mm512_loadu_si512(qb + e * GL + b * W);
#pragma GCC unroll 8
      for (int j = 0; j < J; ++j) {
        int32_t kk;
        std::memcpy(&kk, kb + j * g.hd + 2 * e, 4);
        const __m512i kv = _mm512_set1_epi32(kk);
#pragma GCC unroll 4
        for (int b = 0; b < B; ++b) acc[j][b] = _mm512_dpwssd_epi32(acc[j][b], q[b], kv);
      }
    }
#pragma GCC unroll 4
    for (int b = 0; b < B; ++b) {
      const __m512 c = _mm512_loadu_ps(cq + blk * GL + b * W);
#pragma GCC unroll 8
      for (int j = 0; j < J; ++j) {
        const __m512 t = _mm512_mul_ps(c, _mm512_set1_ps(kd[j * g.nb + blk]));
        const __m512 x = _mm512_cvtepi32_ps(acc[j][b]);
        f[j][b] = blk == 0 ? _mm512_mul_ps(x, t) : _mm512_fmadd_ps(x, t, f[j][b]);
      }
    }
  }
#pragma GCC unroll 8
  for (int j = 0; j < J; ++j)
#pragma GCC unroll 4
    for (int b = 0; b < B; ++b) _mm512_storeu_ps(s + j * GL + b * W, f[j][b]);
}

template <int B>
void scores(const Group& g, int64_t a0, int64_t nk, float* s) {
  const ChunkKv& kv = *g.a.kv;
  const int16_t* k = kv.k + a0 * g.hd;
  const float* kd = kv.kd + a0 * g.nb;
  int64_t j = 0;
  for (; j + kJ <= nk; j += kJ) qk<kJ, B>(g, k + j * g.hd, kd + j * g.nb, s + j * GL);
  for (; j < nk; ++j) qk<1, B>(g, k + j * g.hd, kd + j * g.nb, s + j * GL);
}

// Soft-cap (then base 2), mask and online softmax for keys [j0, j0 + nk) (j0
// even): the weights as bf16 pairs of keys in w.pp, alpha[b] the rescale of
// the accumulators.
template <int B>
void softmax(const Group& g, int64_t j0, int64_t nk, bool masked, __m512* alpha) {
  float* s = g.at<float>(g.w.s);
  uint32_t* pp = g.at<uint32_t>(g.w.pp);
  float* m = g.at<float>(g.w.m);
  float* l = g.at<float>(g.w.l);
  const float* lo = g.at<float>(g.w.lo);
  const float* hi = g.at<float>(g.w.hi);
  const __m512 neg_inf = _mm512_set1_ps(-INFINITY);
  const float cap = g.a.softcap;
  for (int b = 0; b < B; ++b) {
    const __m512 vlo = _mm512_loadu_ps(lo + b * W), vhi = _mm512_loadu_ps(hi + b * W);
    const __m512 m_old = _mm512_loadu_ps(m + b * W);
    __m512 mx = m_old;
    for (int64_t j = 0; j < nk; ++j) {
      float* sj = s + j * GL + b * W;
      __m512 x = _mm512_loadu_ps(sj);
      if (cap > 0.0f) {
        const __m512 t = taylor_exp<Zmm>(Zmm::mul(x, Zmm::set1(2.0f / cap)));
        x = Zmm::mul(Zmm::set1(cap), Zmm::sub(Zmm::set1(1.0f), Zmm::div(Zmm::set1(2.0f), Zmm::add(Zmm::set1(1.0f), t))));
        x = _mm512_mul_ps(x, _mm512_set1_ps(kLog2e));
      }
      if (masked) x = Zmm::select_in(Zmm::set1(static_cast<float>(j0 + j)), vlo, vhi, x, neg_inf);
      if (cap > 0.0f || masked) _mm512_storeu_ps(sj, x);
      mx = _mm512_max_ps(mx, x);
    }
    // A lane that has seen nothing yet keeps m = -inf; it uses 0 so no -inf - -inf.
    const __m512 m_use = Zmm::select_eq(mx, neg_inf, _mm512_setzero_ps(), mx);
    alpha[b] = exp2_neg(_mm512_sub_ps(m_old, m_use));
    __m512 sum = _mm512_mul_ps(_mm512_loadu_ps(l + b * W), alpha[b]);
    for (int64_t j = 0; j < nk; j += 2) {
      const __m512 p0 = exp2_neg(_mm512_sub_ps(_mm512_loadu_ps(s + j * GL + b * W), m_use));
      sum = _mm512_add_ps(sum, p0);
      __m512 p1 = _mm512_setzero_ps();
      if (j + 1 < nk) {
        p1 = exp2_neg(_mm512_sub_ps(_mm512_loadu_ps(s + (j + 1) * GL + b * W), m_use));
        sum = _mm512_add_ps(sum, p1);
      }
      _mm512_storeu_si512(pp + j / 2 * GL + b * W, bf16_pair(p0, p1));
    }
    _mm512_storeu_ps(l + b * W, sum);
    _mm512_storeu_ps(m + b * W, mx);
  }
}

// o[c][lane] = o * alpha + sum over key pairs of the tile (bf16 pairs of V from
// vp, rows of head_dim), D columns from c. Not inlined: its registers are its
// own (inlined, GCC kept the caller's constants live and reloaded operands for
// every product).
template <int D, int B>
__attribute__((noinline)) void pv(const Group& g, const uint32_t* vp, int64_t n2, int64_t c, const __m512* alpha) {
  const uint32_t* pp = g.at<uint32_t>(g.w.pp);
  vp += c;
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
  Base::for_tiles(g, [&](int64_t a0, int64_t nk, bool masked) {
    // Key pairs at even positions, whatever the group's first key (a lane's bits
    // must not depend on its neighbours): an odd start takes the key before it,
    // which no lane sees.
    if (a0 % 2) {
      --a0;
      ++nk;
      masked = true;
    }
    scores<B>(g, a0, nk, s);
    __m512 alpha[B];
    softmax<B>(g, a0, nk, masked, alpha);
    const uint32_t* vp = g.a.kv->v + a0 / 2 * g.hd;
    const int64_t n2 = (nk + 1) / 2;
    int64_t c = 0;
    for (; c + kD <= g.hd; c += kD) pv<kD, B>(g, vp, n2, c, alpha);
    for (; c < g.hd; ++c) pv<1, B>(g, vp, n2, c, alpha);
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

void fill_flash(KernelTable& t) {
  t.attend_chunk_bf16 = run;
  t.convert_chunk_kv = convert;
}

}  // namespace bluelm::kernels::avx512_bf16
