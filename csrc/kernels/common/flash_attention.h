// Prompt-chunk attention, flash style (KernelTable::attend_chunk), written once
// over a lane type V: the scalar reference instantiates it with one float per
// lane, the SIMD tables with their vectors (16 lanes AVX-512, 8 AVX2, 4 NEON).
//
// Layout: a lane is one query (a row of the chunk and a head of the KV group);
// vectors run across queries, so every step is vertical: scores for a key are
// a vector of queries, the softmax's max, sum and rescale are element-wise, and
// no step adds across lanes. Each lane therefore performs the same operations
// in the same order whatever its vector width or neighbours, and every table
// gives the scalar reference's bits (fused multiply-adds everywhere; the files
// are built with -ffp-contract=off so the compiler adds none of its own).
//
// Per group of lanes (a task), keys go in tiles of kFlashKeys at absolute
// positions (multiples of 64), so a lane's sequence does not depend on the chunk:
//   scores  s_j = q'.k_j, q' = scale * q (F32/F16 cache: K rows widened to F32,
//           an FMA chain over d); INT8 cache: q quantised per block of 32 to
//           15 bits (d = max|q| / 16383, v = round(q / d)), held as two int8
//           digits v = 255 h + l (|l| <= 127, |h| <= 64) so the int8 dot
//           instructions serve, isum = 255 (h.k) + (l.k) exact in int32, then
//           s_j = sum_b fma(float(isum_b) * (d_q,b * scale), d_k,j,b, s_j);
//   exp     common/taylor_exp.h's (exp(0) is exactly 1, so unseen tiles are
//           exact no-ops);
//   soft-cap s = cap * (1 - 2 / (1 + exp(s * 2 / cap))) when cap > 0;
//   masked  s = -inf outside [lo, hi];
//   online  m' = max(m, max_j s_j), alpha = exp(m - m'), p_j = exp(s_j - m')
//           (0 where s_j = -inf), l = l * alpha + p_0 + p_1 + ...,
//           o = o * alpha, then o = fma(v_j, p_j, o) for j in order (V rows in F32);
//   finally out = o / l.
// A tile a lane does not see changes nothing (alpha = exp(0) = 1, p = 0), which
// is why lanes of different rows can share tiles.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "core/block_formats.h"
#include "kernels/common/taylor_exp.h"
#include "kernels/kernels.h"

namespace bluelm::kernels {
namespace {

constexpr int64_t kFlashKeys = 64;   // keys per tile
constexpr int64_t kFlashMaxLanes = 64;  // the most lanes a table runs at once
constexpr int32_t kFlashQMax = 16383;   // INT8 cache: the query's 15-bit range
constexpr int32_t kFlashDigit = 255;    // its int8 digits: v = 255 h + l

inline size_t flash_align(size_t n) { return (n + 63) & ~size_t(63); }

// The work buffer's parts, in bytes from its start (64-byte aligned each).
struct FlashWork {
  size_t qt, qt8, qsum, cq, lo, hi, m, l, o, s, kt, kx, dk, vt, isum, pp, total;
  explicit FlashWork(int64_t hd) {
    const size_t G = kFlashMaxLanes, K = kFlashKeys, nb = size_t(hd + 31) / 32;
    size_t at = 0;
    auto take = [&at](size_t bytes) { const size_t r = at; at += flash_align(bytes); return r; };
    qt = take(hd * G * 4);      // queries, transposed: [d][lane]
    qt8 = take(2 * nb * 32 * G);  // INT8 query digits h, then l: [block][4-byte group][lane][4]
    qsum = take(2 * nb * G * 4);  // their block sums (h, then l)
    cq = take(nb * G * 4);      // their block scales times `scale`
    lo = take(G * 4);
    hi = take(G * 4);
    m = take(G * 4);
    l = take(G * 4);
    o = take(hd * G * 4);       // output accumulators, transposed: [d][lane]
    s = take(K * G * 4);        // scores / weights of a tile: [key][lane]
    kt = take(K * hd * 4);      // K tile in F32: [key][d]
    kx = take(K * nb * 32);     // K tile quants (INT8 cache): [key][d]
    dk = take(K * nb * 4);      // K tile block scales: [key][block]
    vt = take(K * hd * 4);      // V tile in F32: [key][d]
    isum = take(2 * 16 * G * 4);  // int32 block dots of a register tile of keys (h, l)
    pp = take(K / 2 * G * 4);   // bf16 order: weights of key pairs, [pair][lane] as bf16 pairs
    total = at;
  }
};

// The high int8 digit h of v in [-16383, 16383]: v = 255 h + l, |l| <= 127.
inline int32_t flash_digit_hi(int32_t v) {
  return v >= 0 ? (v + 127) / kFlashDigit : -((127 - v) / kFlashDigit);
}

template <class V>
struct Flash {
  using F = typename V::F;
  static constexpr int W = V::W;
  static constexpr int GL = W * V::kB;  // lanes per group
  static_assert(GL <= kFlashMaxLanes, "lane group too wide for the work buffer");
  static_assert(V::kB >= 1 && V::kB <= 4 && V::kJ <= 16, "register tiles run() dispatches");

  struct Group {
    const ChunkAttention& a;
    const FlashWork& w;
    char* base;
    int64_t nq;        // real lanes
    int B;             // lane vectors (nq rounded up)
    int64_t hd, nb;
    template <typename T>
    T* at(size_t off) const { return reinterpret_cast<T*>(base + off); }
  };

  // ---- scores -------------------------------------------------------------------

  // Register tiles keep one array of J (or D) accumulators per lane vector:
  // small enough for GCC's scalar replacement (one J x B array is not, and
  // would live in memory).
  // s[j][lane] = sum_d k[j][d] * qt[d][lane] for J keys (rows ks floats apart).
  template <int J, int B>
  static void qk_f32(const float* k, int64_t ks, const float* qt, int64_t hd, float* s) {
    F a0[J], a1[J], a2[J], a3[J];
#pragma GCC unroll 16
    for (int j = 0; j < J; ++j) a0[j] = a1[j] = a2[j] = a3[j] = V::zero();
    for (int64_t d = 0; d < hd; ++d) {
      const float* qd = qt + d * GL;
      const F q0 = V::load(qd), q1 = B > 1 ? V::load(qd + W) : q0, q2 = B > 2 ? V::load(qd + 2 * W) : q0,
              q3 = B > 3 ? V::load(qd + 3 * W) : q0;
#pragma GCC unroll 16
      for (int j = 0; j < J; ++j) {
        const F kk = V::set1(k[j * ks + d]);
        a0[j] = V::fmadd(kk, q0, a0[j]);
        if constexpr (B > 1) a1[j] = V::fmadd(kk, q1, a1[j]);
        if constexpr (B > 2) a2[j] = V::fmadd(kk, q2, a2[j]);
        if constexpr (B > 3) a3[j] = V::fmadd(kk, q3, a3[j]);
      }
    }
#pragma GCC unroll 16
    for (int j = 0; j < J; ++j) {
      float* sj = s + j * GL;
      V::store(sj, a0[j]);
      if constexpr (B > 1) V::store(sj + W, a1[j]);
      if constexpr (B > 2) V::store(sj + 2 * W, a2[j]);
      if constexpr (B > 3) V::store(sj + 3 * W, a3[j]);
    }
  }

  // INT8 cache: the exact block dots of both digits from V::dot_i8, joined in
  // int32, then the float sum over blocks.
  template <int J, int B>
  static void qk_i8(const Group& g, const int8_t* kx, const float* dk, float* s) {
    const int8_t* qh = g.template at<int8_t>(g.w.qt8);
    const int8_t* ql = qh + g.nb * 32 * GL;
    const int32_t* sh = g.template at<int32_t>(g.w.qsum);
    const int32_t* sl = sh + g.nb * GL;
    const float* cq = g.template at<float>(g.w.cq);
    int32_t* isum = g.template at<int32_t>(g.w.isum);
    int32_t* isum_l = isum + 16 * GL;
    F acc[J][B];
    for (int j = 0; j < J; ++j)
      for (int b = 0; b < B; ++b) acc[j][b] = V::zero();
    for (int64_t blk = 0; blk < g.nb; ++blk) {
      V::template dot_i8<J, B>(kx + blk * 32, g.hd, qh + blk * 32 * GL, GL, sh + blk * GL, isum);
      V::template dot_i8<J, B>(kx + blk * 32, g.hd, ql + blk * 32 * GL, GL, sl + blk * GL, isum_l);
      for (int j = 0; j < J; ++j)
        for (int i = 0; i < B * W; ++i) isum[j * GL + i] = kFlashDigit * isum[j * GL + i] + isum_l[j * GL + i];
      for (int b = 0; b < B; ++b) {
        const F c = V::load(cq + blk * GL + b * W);
        for (int j = 0; j < J; ++j) {
          const F t = V::mul(V::cvt_i32(isum + j * GL + b * W), c);
          acc[j][b] = V::fmadd(t, V::set1(dk[j * g.nb + blk]), acc[j][b]);
        }
      }
    }
    for (int j = 0; j < J; ++j)
      for (int b = 0; b < B; ++b) V::store(s + j * GL + b * W, acc[j][b]);
  }

  // ---- P.V ------------------------------------------------------------------------

  // o[d][lane] = o * alpha, then += v[j][d] * p[j][lane] for j < nk, D columns.
  template <int D, int B>
  static void pv(const float* p, int64_t nk, const float* v, int64_t vs, const F* alpha, float* o) {
    F a0[D], a1[D], a2[D], a3[D];
#pragma GCC unroll 16
    for (int c = 0; c < D; ++c) {
      const float* oc = o + c * GL;
      a0[c] = V::mul(V::load(oc), alpha[0]);
      if constexpr (B > 1) a1[c] = V::mul(V::load(oc + W), alpha[1]);
      if constexpr (B > 2) a2[c] = V::mul(V::load(oc + 2 * W), alpha[2]);
      if constexpr (B > 3) a3[c] = V::mul(V::load(oc + 3 * W), alpha[3]);
    }
    for (int64_t j = 0; j < nk; ++j) {
      const float* pj = p + j * GL;
      const F p0 = V::load(pj), p1 = B > 1 ? V::load(pj + W) : p0, p2 = B > 2 ? V::load(pj + 2 * W) : p0,
              p3 = B > 3 ? V::load(pj + 3 * W) : p0;
#pragma GCC unroll 16
      for (int c = 0; c < D; ++c) {
        const F vv = V::set1(v[j * vs + c]);
        a0[c] = V::fmadd(vv, p0, a0[c]);
        if constexpr (B > 1) a1[c] = V::fmadd(vv, p1, a1[c]);
        if constexpr (B > 2) a2[c] = V::fmadd(vv, p2, a2[c]);
        if constexpr (B > 3) a3[c] = V::fmadd(vv, p3, a3[c]);
      }
    }
#pragma GCC unroll 16
    for (int c = 0; c < D; ++c) {
      float* oc = o + c * GL;
      V::store(oc, a0[c]);
      if constexpr (B > 1) V::store(oc + W, a1[c]);
      if constexpr (B > 2) V::store(oc + 2 * W, a2[c]);
      if constexpr (B > 3) V::store(oc + 3 * W, a3[c]);
    }
  }

  template <int B>
  static void pv_all(const float* p, int64_t nk, const float* v, int64_t vs, int64_t hd, const F* alpha,
                     float* o) {
    int64_t c = 0;
    for (; c + V::kD <= hd; c += V::kD) pv<V::kD, B>(p, nk, v + c, vs, alpha, o + c * GL);
    for (; c < hd; ++c) pv<1, B>(p, nk, v + c, vs, alpha, o + c * GL);
  }

  // ---- one tile of keys -------------------------------------------------------

  template <int B>
  static void scores(const Group& g, const float* k, int64_t ks, const int8_t* kx, const float* dk,
                     int64_t nk, float* s) {
    const float* qt = g.template at<float>(g.w.qt);
    const bool i8 = g.a.kv_type == GgmlType::Q8_0;
    int64_t j = 0;
    for (; j + V::kJ <= nk; j += V::kJ) {
      if (i8) qk_i8<V::kJ, B>(g, kx + j * g.hd, dk + j * g.nb, s + j * GL);
      else qk_f32<V::kJ, B>(k + j * ks, ks, qt, g.hd, s + j * GL);
    }
    for (; j < nk; ++j) {
      if (i8) qk_i8<1, B>(g, kx + j * g.hd, dk + j * g.nb, s + j * GL);
      else qk_f32<1, B>(k + j * ks, ks, qt, g.hd, s + j * GL);
    }
  }

  // Soft-cap, mask and online softmax update for keys [j0, j0 + nk): the
  // scores in w.s become weights, alpha[b] the rescale of the accumulators.
  template <int B>
  static void softmax(const Group& g, int64_t j0, int64_t nk, bool masked, F* alpha) {
    float* s = g.template at<float>(g.w.s);
    float* m = g.template at<float>(g.w.m);
    float* l = g.template at<float>(g.w.l);
    const float* lo = g.template at<float>(g.w.lo);
    const float* hi = g.template at<float>(g.w.hi);
    const F neg_inf = V::set1(-INFINITY), zero = V::zero();
    const float cap = g.a.softcap;
    for (int b = 0; b < B; ++b) {
      const F vlo = V::load(lo + b * W), vhi = V::load(hi + b * W);
      F mx = V::load(m + b * W);
      const F m_old = mx;
      for (int64_t j = 0; j < nk; ++j) {
        float* sj = s + j * GL + b * W;
        F x = V::load(sj);
        if (cap > 0.0f) {
          const F t = taylor_exp<V>(V::mul(x, V::set1(2.0f / cap)));
          x = V::mul(V::set1(cap), V::sub(V::set1(1.0f), V::div(V::set1(2.0f), V::add(V::set1(1.0f), t))));
        }
        if (masked) x = V::select_in(V::set1(static_cast<float>(j0 + j)), vlo, vhi, x, neg_inf);
        V::store(sj, x);
        mx = V::max(mx, x);
      }
      // A lane that has seen nothing yet keeps m = -inf; it uses 0 so no -inf - -inf.
      const F m_use = V::select_eq(mx, neg_inf, zero, mx);
      alpha[b] = taylor_exp<V>(V::sub(m_old, m_use));
      F sum = V::mul(V::load(l + b * W), alpha[b]);
      for (int64_t j = 0; j < nk; ++j) {
        float* sj = s + j * GL + b * W;
        const F x = V::load(sj);
        const F p = V::select_eq(x, neg_inf, zero, taylor_exp<V>(V::sub(x, m_use)));
        V::store(sj, p);
        sum = V::add(sum, p);
      }
      V::store(l + b * W, sum);
      V::store(m + b * W, mx);
    }
  }

  // Softmax and P.V for keys [j0, j0 + nk).
  template <int B>
  static void tile(const Group& g, int64_t j0, int64_t nk, bool masked, const float* v, int64_t vs) {
    F alpha[B];
    softmax<B>(g, j0, nk, masked, alpha);
    pv_all<B>(g.template at<float>(g.w.s), nk, v, vs, g.hd, alpha, g.template at<float>(g.w.o));
  }

  // ---- a group of lanes ----------------------------------------------------------

  // Lane i's visible range [lo[i], hi[i]] and its query. Padding lanes repeat
  // the last real lane's range (with a zero query).
  static const float* lane_range(const Group& g, int64_t lane0, int64_t i, float* lo, float* hi) {
    const ChunkAttention& a = g.a;
    const int64_t L = lane0 + std::min(i, g.nq - 1);
    const int64_t t = L / a.n_group, h = L % a.n_group, pos = a.pos0 + t;
    hi[i] = static_cast<float>(pos);
    lo[i] = static_cast<float>(a.window > 0 ? std::max<int64_t>(0, pos + 1 - a.window) : 0);
    return a.q + t * a.q_stride + h * g.hd;
  }

  // The lanes' queries (F32: transposed and scaled; INT8: quantised per block),
  // visible ranges and softmax state.
  static void setup(const Group& g, int64_t lane0) {
    const ChunkAttention& a = g.a;
    float* qt = g.template at<float>(g.w.qt);
    float* lo = g.template at<float>(g.w.lo);
    float* hi = g.template at<float>(g.w.hi);
    int8_t* qt8 = g.template at<int8_t>(g.w.qt8);
    int32_t* qsum = g.template at<int32_t>(g.w.qsum);
    float* cq = g.template at<float>(g.w.cq);
    const bool i8 = a.kv_type == GgmlType::Q8_0;
    for (int64_t i = 0; i < int64_t(g.B) * W; ++i) {
      const float* q = lane_range(g, lane0, i, lo, hi);
      const bool real = i < g.nq;
      if (!i8) {
        for (int64_t d = 0; d < g.hd; ++d) qt[d * GL + i] = real ? q[d] * a.scale : 0.0f;
        continue;
      }
      int8_t* ql = qt8 + g.nb * 32 * GL;
      for (int64_t blk = 0; blk < g.nb; ++blk) {
        const float* qb = q + blk * 32;
        float amax = 0.0f;
        for (int e = 0; e < 32 && real; ++e) amax = std::max(amax, std::fabs(qb[e]));
        const float dq = amax / float(kFlashQMax), id = dq != 0.0f ? 1.0f / dq : 0.0f;
        int32_t sum_h = 0, sum_l = 0;
        for (int e = 0; e < 32; ++e) {
          const int32_t v = real ? static_cast<int32_t>(std::nearbyint(qb[e] * id)) : 0;
          const int32_t h = flash_digit_hi(v), l = v - kFlashDigit * h;
          const int64_t at = ((blk * 8 + e / 4) * GL + i) * 4 + e % 4;
          qt8[at] = static_cast<int8_t>(h);
          ql[at] = static_cast<int8_t>(l);
          sum_h += h;
          sum_l += l;
        }
        qsum[blk * GL + i] = sum_h;
        qsum[(g.nb + blk) * GL + i] = sum_l;
        cq[blk * GL + i] = dq * a.scale;
      }
    }
    init_state(g);
  }

  // Softmax state and accumulators of a fresh group.
  static void init_state(const Group& g) {
    float* m = g.template at<float>(g.w.m);
    float* l = g.template at<float>(g.w.l);
    std::fill(m, m + GL, -INFINITY);
    std::fill(l, l + GL, 0.0f);
    float* o = g.template at<float>(g.w.o);
    std::fill(o, o + g.hd * GL, 0.0f);
  }

  // K/V rows [j0, j0 + nk) of the cache as the score and P.V loops read them.
  static void load_tile(const Group& g, int64_t j0, int64_t nk, const float** k, int64_t* ks, const float** v,
                        int64_t* vs) {
    const ChunkAttention& a = g.a;
    const size_t stride = a.kv_stride;
    if (a.kv_type == GgmlType::F32) {  // read in place
      *k = static_cast<const float*>(a.k) + j0 * stride;
      *v = static_cast<const float*>(a.v) + j0 * stride;
      *ks = *vs = static_cast<int64_t>(stride);
      return;
    }
    float* vt = g.template at<float>(g.w.vt);
    *v = vt;
    *vs = g.hd;
    if (a.kv_type == GgmlType::F16) {
      float* kt = g.template at<float>(g.w.kt);
      const uint16_t* kc = static_cast<const uint16_t*>(a.k) + j0 * stride;
      const uint16_t* vc = static_cast<const uint16_t*>(a.v) + j0 * stride;
      for (int64_t j = 0; j < nk; ++j) {
        V::f16_to_f32(kc + j * stride, kt + j * g.hd, g.hd);
        V::f16_to_f32(vc + j * stride, vt + j * g.hd, g.hd);
      }
      *k = kt;
      *ks = g.hd;
      return;
    }
    const size_t rb = stride / 32;  // blocks per cache row
    const BlockQ8_0* kc = static_cast<const BlockQ8_0*>(a.k) + j0 * rb;
    const BlockQ8_0* vc = static_cast<const BlockQ8_0*>(a.v) + j0 * rb;
    int8_t* kx = g.template at<int8_t>(g.w.kx);
    float* dk = g.template at<float>(g.w.dk);
    for (int64_t j = 0; j < nk; ++j) {
      V::k_quants(kc + j * rb, g.nb, kx + j * g.hd);
      for (int64_t blk = 0; blk < g.nb; ++blk) dk[j * g.nb + blk] = fp16_to_fp32(kc[j * rb + blk].d);
      V::q8_0_to_f32(vc + j * rb, g.nb, vt + j * g.hd);
    }
    *k = nullptr;
    *ks = 0;
  }

  // The keys the group's lanes see, [first, last], and those all of them see
  // (no mask needed): [lo_max, hi_min].
  static void key_range(const Group& g, int64_t* first, int64_t* last, float* lo_max, float* hi_min) {
    const float* lo = g.template at<float>(g.w.lo);
    const float* hi = g.template at<float>(g.w.hi);
    float lo_min = lo[0], hi_max = hi[0];
    *lo_max = lo[0];
    *hi_min = hi[0];
    for (int64_t i = 1; i < g.nq; ++i) {
      lo_min = std::min(lo_min, lo[i]);
      *lo_max = std::max(*lo_max, lo[i]);
      *hi_min = std::min(*hi_min, hi[i]);
      hi_max = std::max(hi_max, hi[i]);
    }
    *first = static_cast<int64_t>(lo_min);
    *last = static_cast<int64_t>(hi_max);
  }

  // out = o / l (W lanes at a time: a division is correctly rounded, so the
  // bits of a scalar one), back to rows.
  static void finish(const Group& g, int64_t lane0) {
    const ChunkAttention& a = g.a;
    float* o = g.template at<float>(g.w.o);
    const float* l = g.template at<float>(g.w.l);
    for (int b = 0; b < g.B; ++b) {
      const F lb = V::load(l + b * W);
      for (int64_t d = 0; d < g.hd; ++d) V::store(o + d * GL + b * W, V::div(V::load(o + d * GL + b * W), lb));
    }
    for (int64_t i = 0; i < g.nq; ++i) {
      const int64_t L = lane0 + i, t = L / a.n_group, h = L % a.n_group;
      float* out = a.out + t * a.out_stride + h * g.hd;
      for (int64_t d = 0; d < g.hd; ++d) out[d] = o[d * GL + i];
    }
  }

  // Tiles of kFlashKeys keys at absolute positions: fn(a0, nk, masked) for
  // keys [a0, a0 + nk) of the group's range.
  template <typename Fn>
  static void for_tiles(const Group& g, Fn&& fn) {
    int64_t first, last;
    float lo_max, hi_min;
    key_range(g, &first, &last, &lo_max, &hi_min);
    for (int64_t j0 = first / kFlashKeys * kFlashKeys; j0 <= last; j0 += kFlashKeys) {
      const int64_t a0 = std::max(j0, first), nk = std::min(j0 + kFlashKeys, last + 1) - a0;
      // Keys every lane sees need no mask.
      fn(a0, nk, !(float(a0) >= lo_max && float(a0 + nk - 1) <= hi_min));
    }
  }

  template <int B>
  static void run_group(const Group& g, int64_t lane0) {
    setup(g, lane0);
    const int8_t* kx = g.template at<int8_t>(g.w.kx);
    const float* dk = g.template at<float>(g.w.dk);
    for_tiles(g, [&](int64_t a0, int64_t nk, bool masked) {
      const float *k, *v;
      int64_t ks, vs;
      load_tile(g, a0, nk, &k, &ks, &v, &vs);
      scores<B>(g, k, ks, kx, dk, nk, g.template at<float>(g.w.s));
      tile<B>(g, a0, nk, masked, v, vs);
    });
    finish(g, lane0);
  }

  // Lanes [lane0, lane1) in groups of up to GL: run_group<B>(g, L) through fn.
  template <typename Fn>
  static void for_groups(const ChunkAttention& a, int64_t lane0, int64_t lane1, void* work, Fn&& fn) {
    const FlashWork w(a.head_dim);
    for (int64_t L = lane0; L < lane1; L += GL) {
      const int64_t nq = std::min<int64_t>(GL, lane1 - L);
      const Group g{a, w, static_cast<char*>(work), nq, static_cast<int>((nq + W - 1) / W), a.head_dim,
                    a.head_dim / 32};
      fn(g, L);
    }
  }

  static void run(const ChunkAttention& a, int64_t lane0, int64_t lane1, void* work) {
    for_groups(a, lane0, lane1, work, [](const Group& g, int64_t L) {
      switch (g.B) {
        case 1: run_group<1>(g, L); break;
        case 2: if constexpr (V::kB >= 2) run_group<2>(g, L); break;
        case 3: if constexpr (V::kB >= 3) run_group<3>(g, L); break;
        case 4: if constexpr (V::kB >= 4) run_group<4>(g, L); break;
        default: break;
      }
    });
  }
};

// A table's prompt-chunk attention entries for lane type V.
template <class V>
void set_flash_entries(KernelTable& t) {
  t.attend_chunk = [](const ChunkAttention& a, int64_t lane0, int64_t lane1, void* work) {
    Flash<V>::run(a, lane0, lane1, work);
  };
  t.chunk_lanes = Flash<V>::GL;
}

}  // namespace
}  // namespace bluelm::kernels
