// AVX-512 VNNI kernels: the int8 gemms use vpdpbusd (u8 x s8 -> int32 in one
// instruction) on 256-bit vectors (AVX512VL), which also avoids the clock drop of
// 512-bit code on older Xeons. Compiled with -mavx2 -mfma -mf16c -mavx512f/bw/vl/vnni;
// float gemms, conversions and attention come from the AVX2 table (a CPU with
// these features always runs AVX2). Everything sits in an anonymous namespace so
// no inline function compiled with these flags can leak to other code.
// BLUELM_VNNI_EMULATE swaps vpdpbusd for an exact AVX2 sequence so the logic can
// be checked on a CPU without VNNI (build it with AVX2 flags only).
#include <immintrin.h>
#include <string.h>

#include <initializer_list>

#include "kernels/kernels.h"

namespace bluelm::kernels {

const KernelTable* avx2_table();

namespace {

inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

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

#ifdef BLUELM_VNNI_EMULATE
inline __m256i dpbusd(__m256i acc, __m256i u, __m256i s) {
  const __m256i z = _mm256_setzero_si256();
  const __m256i lo = _mm256_madd_epi16(_mm256_unpacklo_epi8(u, z), _mm256_srai_epi16(_mm256_unpacklo_epi8(s, s), 8));
  const __m256i hi = _mm256_madd_epi16(_mm256_unpackhi_epi8(u, z), _mm256_srai_epi16(_mm256_unpackhi_epi8(s, s), 8));
  return _mm256_add_epi32(acc, _mm256_hadd_epi32(lo, hi));
}
#else
// acc[j] += sum of u8 * s8 over bytes 4j..4j+3, wrapping (never near the limits here).
inline __m256i dpbusd(__m256i acc, __m256i u, __m256i s) { return _mm256_dpbusd_epi32(acc, u, s); }
#endif

inline __m256 scale_add(__m256 acc, __m256i s32, __m256 scale) {
  return _mm256_fmadd_ps(_mm256_cvtepi32_ps(s32), scale, acc);
}

// Kind 0: Q4_0 x Q8_0, 2: Q8_0 x Q8_0. Signed weights become unsigned by an
// offset (n for Q4_0 nibbles, w ^ 0x80 = w + 128 for Q8_0); the offset times
// sum(q) is subtracted in the integer start value, per token, shared by rows.
template <int Kind, int R, int T>
void qtile(const char* w, size_t ws, const char* x, size_t xs, float* y, size_t ldy, int64_t K) {
  const int64_t nb = K / QK;
  __m256 acc[R][T];
  for (int i = 0; i < R; ++i)
    for (int t = 0; t < T; ++t) acc[i][t] = _mm256_setzero_ps();
  const __m256i offset = _mm256_set1_epi8(Kind == 0 ? 8 : char(0x80));
  for (int64_t b = 0; b < nb; ++b) {
    __m256i q[T], start[T];
    float dx[T];
#pragma GCC unroll 4
    for (int t = 0; t < T; ++t) {
      const BlockQ8_0* xb = reinterpret_cast<const BlockQ8_0*>(x + t * xs) + b;
      q[t] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xb->qs));
      dx[t] = _mm_cvtss_f32(head2(xb));
      start[t] = _mm256_sub_epi32(_mm256_setzero_si256(), dpbusd(_mm256_setzero_si256(), offset, q[t]));
    }
#pragma GCC unroll 8
    for (int i = 0; i < R; ++i) {
      __m256i u;
      float dw;
      if (Kind == 0) {
        const BlockQ4_0* wb = reinterpret_cast<const BlockQ4_0*>(w + i * ws) + b;
        u = nibbles(wb->qs);
        dw = _mm_cvtss_f32(head2(wb));
      } else {
        const BlockQ8_0* wb = reinterpret_cast<const BlockQ8_0*>(w + i * ws) + b;
        u = _mm256_xor_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(wb->qs)), offset);
        dw = _mm_cvtss_f32(head2(wb));
      }
#pragma GCC unroll 4
      for (int t = 0; t < T; ++t)
        acc[i][t] = scale_add(acc[i][t], dpbusd(start[t], u, q[t]), _mm256_set1_ps(dw * dx[t]));
    }
  }
  for (int i = 0; i < R; ++i)
    for (int t = 0; t < T; ++t) y[t * ldy + i] = hsum(acc[i][t]);
}

// Q4_1 x Q8_1: unsigned nibbles times signed activations, plus m_w * s_x.
template <int R, int T>
void q41tile(const char* w, size_t ws, const char* x, size_t xs, float* y, size_t ldy, int64_t K) {
  static_assert(T <= 2, "the [d, s] pairs of T tokens share one __m128");
  const int64_t nb = K / QK;
  __m256 acc[R][T];
  __m128 macc[R];  // lanes 1 and 3: sums of m_w * s_x for tokens 0 and 1
  for (int i = 0; i < R; ++i) {
    macc[i] = _mm_setzero_ps();
    for (int t = 0; t < T; ++t) acc[i][t] = _mm256_setzero_ps();
  }
  for (int64_t b = 0; b < nb; ++b) {
    __m256i q[T];
    __m128 xds;  // [d_x0, s_x0, d_x1, s_x1]
    const BlockQ8_1* x0 = reinterpret_cast<const BlockQ8_1*>(x) + b;
    q[0] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x0->qs));
    if (T == 1) {
      xds = head2(x0);
    } else {
      const BlockQ8_1* x1 = reinterpret_cast<const BlockQ8_1*>(x + xs) + b;
      q[T - 1] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x1->qs));
      uint32_t h0, h1;
      memcpy(&h0, x0, 4);
      memcpy(&h1, x1, 4);
      xds = _mm_cvtph_ps(_mm_cvtsi64_si128(int64_t(uint64_t(h1) << 32 | h0)));
    }
#pragma GCC unroll 8
    for (int i = 0; i < R; ++i) {
      const BlockQ4_1* wb = reinterpret_cast<const BlockQ4_1*>(w + i * ws) + b;
      const __m256i n = nibbles(wb->qs);
      __m128 wdm = head2(wb);  // [d_w, m_w, ...]
      if (T == 2) wdm = _mm_movelh_ps(wdm, wdm);
      const __m128 prod = _mm_mul_ps(wdm, xds);  // [d_w*d_x0, m_w*s_x0, d_w*d_x1, m_w*s_x1]
      macc[i] = _mm_add_ps(macc[i], prod);
      const __m256i z = _mm256_setzero_si256();
      acc[i][0] = scale_add(acc[i][0], dpbusd(z, n, q[0]), _mm256_broadcastss_ps(prod));
      if (T == 2)
        acc[i][T - 1] = scale_add(acc[i][T - 1], dpbusd(z, n, q[T - 1]),
                                  _mm256_broadcastss_ps(_mm_movehl_ps(prod, prod)));
    }
  }
  for (int i = 0; i < R; ++i) {
    alignas(16) float m[4];
    _mm_store_ps(m, macc[i]);
    for (int t = 0; t < T; ++t) y[t * ldy + i] = hsum(acc[i][t]) + m[1 + 2 * t];
  }
}

using TileFn = void (*)(const char*, size_t, const char*, size_t, float*, size_t, int64_t);

// Decode streams rows 4 at a time; prefill tiles 4 rows x 2 tokens over token
// chunks that stay in L2, so each tile's weights are reused from L1.
template <TileFn R4T1, TileFn R1T1, TileFn R4T2, TileFn R1T2>
void gemm(const void* W, size_t ws, const void* X, size_t xs, float* Y, size_t ldy, int64_t K,
          int64_t r0, int64_t r1, int64_t n_tok) {
  const char* w = static_cast<const char*>(W);
  const char* x = static_cast<const char*>(X);
  if (n_tok == 1) {
    int64_t r = r0;
    for (; r + 4 <= r1; r += 4) R4T1(w + r * ws, ws, x, xs, Y + r, ldy, K);
    for (; r < r1; ++r) R1T1(w + r * ws, ws, x, xs, Y + r, ldy, K);
    return;
  }
  int64_t chunk = static_cast<int64_t>((192 * 1024) / (xs ? xs : 1));
  chunk = chunk < 2 ? 2 : chunk - chunk % 2;
  for (int64_t t0 = 0; t0 < n_tok; t0 += chunk) {
    const int64_t t1 = t0 + chunk < n_tok ? t0 + chunk : n_tok;
    for (int64_t r = r0; r < r1;) {
      const bool full = r + 4 <= r1;
      int64_t t = t0;
      for (; t + 2 <= t1; t += 2)
        (full ? R4T2 : R1T2)(w + r * ws, ws, x + t * xs, xs, Y + t * ldy + r, ldy, K);
      if (t < t1) (full ? R4T1 : R1T1)(w + r * ws, ws, x + t * xs, xs, Y + t * ldy + r, ldy, K);
      r += full ? 4 : 1;
    }
  }
}

KernelTable make_table() {
  KernelTable t = *avx2_table();
  t.isa = "avx512";
  t.gemm[W_Q4_0] = gemm<qtile<0, 4, 1>, qtile<0, 1, 1>, qtile<0, 4, 2>, qtile<0, 1, 2>>;
  t.gemm[W_Q8_0] = gemm<qtile<2, 4, 1>, qtile<2, 1, 1>, qtile<2, 4, 2>, qtile<2, 1, 2>>;
  t.gemm[W_Q4_1] = gemm<q41tile<4, 1>, q41tile<1, 1>, q41tile<4, 2>, q41tile<1, 2>>;
  // AVX2's packed kernels would not match these gemms bit for bit: read the file layout.
  for (const int w : {int(W_Q4_0), int(W_Q8_0), int(W_Q4_1)}) {
    t.pack_rows[w] = 0;
    t.gemm_packed[w] = nullptr;
  }
  return t;
}

}  // namespace

const KernelTable* avx512_table() {
  static const KernelTable t = make_table();
  return &t;
}

}  // namespace bluelm::kernels
