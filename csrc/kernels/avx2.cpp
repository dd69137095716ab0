// AVX2 + FMA + F16C kernels. This file alone is compiled with -mavx2 -mfma -mf16c.
// Everything sits in an anonymous namespace, and the one project header with
// inline code (ggml_exp_avx2.h) keeps it in one too, so no AVX2-compiled copy of
// a shared inline function can be picked by the linker for code on older CPUs.
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "kernels/ggml_exp_avx2.h"
#include "kernels/kernels.h"

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

inline __m256i load32(const int8_t* p) {
  return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
}

// int16 pair sums -> 8 int32 lane sums -> scaled into acc. Lane sums are exact
// integers; only the float accumulation order differs from the reference.
inline __m256 acc_block(__m256 acc, __m256i pairs16, __m256 scale) {
  const __m256i s32 = _mm256_madd_epi16(pairs16, _mm256_set1_epi16(1));
  return _mm256_fmadd_ps(_mm256_cvtepi32_ps(s32), scale, acc);
}
inline __m256 acc_block(__m256 acc, __m256i pairs16, float scale) {
  return acc_block(acc, pairs16, _mm256_set1_ps(scale));
}

// ---- quantised tiles: R weight rows x T tokens, all K blocks ----------------
// w: block 0 of the first row; block b of row i is at w + i*rs + b*bs (file
// layout: rs = row bytes, bs = block bytes; packed: rs = block bytes, bs = R
// blocks). x: first token (stride xs), y: Y[t0*ldy + r0]. The arithmetic of an
// output never depends on the layout, R or T, so packed results are bit-identical.

// Q4_0: the order of the scalar reference (llama.cpp's repacked Q4_0 gemm):
// each block's products summed exactly, then one FMA per output. The 8 lane
// sums of 4 outputs are folded by hadd into one int32 per output, so 4 outputs
// share a conversion and an FMA.
inline __m128i fold4_epi32(__m256i a, __m256i b, __m256i c, __m256i d) {
  const __m256i h = _mm256_hadd_epi32(_mm256_hadd_epi32(a, b), _mm256_hadd_epi32(c, d));
  return _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
}

struct Q4_0Op {
  static constexpr size_t kBlock = sizeof(BlockQ4_0);
  template <int R, int T>
  static void tile(const char* w, size_t rs, size_t bs, const char* x, size_t xs, float* y,
                   size_t ldy, int64_t K) {
    constexpr int N = R * T, G = (N + 3) / 4;  // outputs o = i * T + t, in groups of 4
    const int64_t nb = K / QK;
    __m128 acc[G];
    for (int g = 0; g < G; ++g) acc[g] = _mm_setzero_ps();
    for (int64_t b = 0; b < nb; ++b) {
      __m256i q[T], c[T];
      float dx[T];
#pragma GCC unroll 4
      for (int t = 0; t < T; ++t) {
        const BlockQ8_0* xb = reinterpret_cast<const BlockQ8_0*>(x + t * xs) + b;
        q[t] = load32(xb->qs);
        dx[t] = _mm_cvtss_f32(head2(xb));
        // sum((n-8)*q) = sum(n*q) - sum(8*q): one maddubs per token block, shared by rows.
        c[t] = _mm256_maddubs_epi16(_mm256_set1_epi8(8), q[t]);
      }
      __m256i s32[4 * G];
      alignas(16) float sc[4 * G];
#pragma GCC unroll 8
      for (int i = 0; i < R; ++i) {
        const BlockQ4_0* wb = reinterpret_cast<const BlockQ4_0*>(w + i * rs + b * bs);
        const __m256i n = nibbles(wb->qs);
        const float dw = _mm_cvtss_f32(head2(wb));
#pragma GCC unroll 4
        for (int t = 0; t < T; ++t) {
          const __m256i p = _mm256_sub_epi16(_mm256_maddubs_epi16(n, q[t]), c[t]);
          s32[i * T + t] = _mm256_madd_epi16(p, _mm256_set1_epi16(1));
          sc[i * T + t] = dw * dx[t];
        }
      }
      for (int o = N; o < 4 * G; ++o) {
        s32[o] = _mm256_setzero_si256();
        sc[o] = 0.0f;
      }
#pragma GCC unroll 4
      for (int g = 0; g < G; ++g) {
        const __m128i isum = fold4_epi32(s32[4 * g], s32[4 * g + 1], s32[4 * g + 2], s32[4 * g + 3]);
        acc[g] = _mm_fmadd_ps(_mm_cvtepi32_ps(isum), _mm_load_ps(sc + 4 * g), acc[g]);
      }
    }
    alignas(16) float out[4 * G];
    for (int g = 0; g < G; ++g) _mm_store_ps(out + 4 * g, acc[g]);
    for (int i = 0; i < R; ++i)
      for (int t = 0; t < T; ++t) y[t * ldy + i] = out[i * T + t];
  }
};

struct Q4_1Op {
  static constexpr size_t kBlock = sizeof(BlockQ4_1);
  template <int R, int T>
  static void tile(const char* w, size_t rs, size_t bs, const char* x, size_t xs, float* y,
                   size_t ldy, int64_t K) {
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
      q[0] = load32(x0->qs);
      if (T == 1) {
        xds = head2(x0);
      } else {
        const BlockQ8_1* x1 = reinterpret_cast<const BlockQ8_1*>(x + xs) + b;
        q[T - 1] = load32(x1->qs);
        uint32_t h0, h1;
        memcpy(&h0, x0, 4);
        memcpy(&h1, x1, 4);
        xds = _mm_cvtph_ps(_mm_cvtsi64_si128(int64_t(uint64_t(h1) << 32 | h0)));
      }
#pragma GCC unroll 8
      for (int i = 0; i < R; ++i) {
        const BlockQ4_1* wb = reinterpret_cast<const BlockQ4_1*>(w + i * rs + b * bs);
        // Nibbles are unsigned, activations signed: maddubs takes them as they are.
        const __m256i n = nibbles(wb->qs);
        __m128 wdm = head2(wb);  // [d_w, m_w, ...]
        if (T == 2) wdm = _mm_movelh_ps(wdm, wdm);
        const __m128 prod = _mm_mul_ps(wdm, xds);  // [d_w*d_x0, m_w*s_x0, d_w*d_x1, m_w*s_x1]
        macc[i] = _mm_add_ps(macc[i], prod);
        acc[i][0] = acc_block(acc[i][0], _mm256_maddubs_epi16(n, q[0]), _mm256_broadcastss_ps(prod));
        if (T == 2)
          acc[i][T - 1] = acc_block(acc[i][T - 1], _mm256_maddubs_epi16(n, q[T - 1]),
                                    _mm256_broadcastss_ps(_mm_movehl_ps(prod, prod)));
      }
    }
    for (int i = 0; i < R; ++i) {
      alignas(16) float m[4];
      _mm_store_ps(m, macc[i]);
      for (int t = 0; t < T; ++t) y[t * ldy + i] = hsum(acc[i][t]) + m[1 + 2 * t];
    }
  }
};

struct Q8_0Op {
  static constexpr size_t kBlock = sizeof(BlockQ8_0);
  template <int R, int T>
  static void tile(const char* w, size_t rs, size_t bs, const char* x, size_t xs, float* y,
                   size_t ldy, int64_t K) {
    const int64_t nb = K / QK;
    __m256 acc[R][T];
    for (int i = 0; i < R; ++i)
      for (int t = 0; t < T; ++t) acc[i][t] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; ++b) {
      __m256i q[T];
      float dx[T];
#pragma GCC unroll 4
      for (int t = 0; t < T; ++t) {
        const BlockQ8_0* xb = reinterpret_cast<const BlockQ8_0*>(x + t * xs) + b;
        q[t] = load32(xb->qs);
        dx[t] = _mm_cvtss_f32(head2(xb));
      }
#pragma GCC unroll 8
      for (int i = 0; i < R; ++i) {
        const BlockQ8_0* wb = reinterpret_cast<const BlockQ8_0*>(w + i * rs + b * bs);
        const __m256i s = load32(wb->qs);
        const __m256i a = _mm256_sign_epi8(s, s);  // |w|, -128 reads as 128 unsigned
        const float dw = _mm_cvtss_f32(head2(wb));
#pragma GCC unroll 4
        for (int t = 0; t < T; ++t) {
          const __m256i p = _mm256_maddubs_epi16(a, _mm256_sign_epi8(q[t], s));
          acc[i][t] = acc_block(acc[i][t], p, dw * dx[t]);
        }
      }
    }
    for (int i = 0; i < R; ++i)
      for (int t = 0; t < T; ++t) y[t * ldy + i] = hsum(acc[i][t]);
  }
};

// ---- float tiles (F32 / F16 / BF16 weights against the same activation type) --

struct F32Load {
  using E = float;
  static __m256 load8(const float* p) { return _mm256_loadu_ps(p); }
  static float load1(const float* p) { return *p; }
};
struct F16Load {
  using E = uint16_t;
  static __m256 load8(const uint16_t* p) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  }
  static float load1(const uint16_t* p) { return h2f(*p); }
};
struct BF16Load {
  using E = uint16_t;
  static __m256 load8(const uint16_t* p) {
    const __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    return _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
  }
  static float load1(const uint16_t* p) {
    const uint32_t u = uint32_t(*p) << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
  }
};

template <class L>
struct FloatOp {
  using E = typename L::E;
  static constexpr size_t kBlock = 0;  // never packed; rs is the row stride
  template <int R, int T>
  static void tile(const char* w, size_t rs, size_t /*bs*/, const char* x, size_t xs, float* y,
                   size_t ldy, int64_t K) {
    __m256 acc[R][T];
    for (int i = 0; i < R; ++i)
      for (int t = 0; t < T; ++t) acc[i][t] = _mm256_setzero_ps();
    int64_t k = 0;
    for (; k + 8 <= K; k += 8) {
      __m256 xv[T];
#pragma GCC unroll 4
      for (int t = 0; t < T; ++t) xv[t] = L::load8(reinterpret_cast<const E*>(x + t * xs) + k);
#pragma GCC unroll 8
      for (int i = 0; i < R; ++i) {
        const __m256 wv = L::load8(reinterpret_cast<const E*>(w + i * rs) + k);
#pragma GCC unroll 4
        for (int t = 0; t < T; ++t) acc[i][t] = _mm256_fmadd_ps(wv, xv[t], acc[i][t]);
      }
    }
    for (int i = 0; i < R; ++i) {
      const E* wr = reinterpret_cast<const E*>(w + i * rs);
      for (int t = 0; t < T; ++t) {
        const E* xr = reinterpret_cast<const E*>(x + t * xs);
        float s = hsum(acc[i][t]);
        for (int64_t j = k; j < K; ++j) s += L::load1(wr + j) * L::load1(xr + j);
        y[t * ldy + i] = s;
      }
    }
  }
};

// ---- gemm drivers ------------------------------------------------------------

constexpr int kDecodeRows = 4;  // decode: rows streamed 4 at a time
constexpr int kRows = 4;        // prefill tile: 4 rows x 2 tokens
constexpr int kToks = 2;

// P = rows per packed group (see kernels/repack.h), 0 = the file layout.
template <class Op, int P>
void gemm(const void* W, size_t ws, const void* X, size_t xs, float* Y, size_t ldy, int64_t K,
          int64_t r0, int64_t r1, int64_t n_tok) {
  static_assert(P == 0 || P == kRows, "a packed group is one row tile");
  const char* w = static_cast<const char*>(W);
  const char* x = static_cast<const char*>(X);
  const size_t bb = Op::kBlock;
  // Where row r's block 0 is, and the block step of a lone row.
  auto row = [&](int64_t r) { return P ? w + (r - r % P) * ws + (r % P) * bb : w + r * ws; };
  const size_t rs = P ? bb : ws, bs = P ? P * bb : bb;
  auto full_tile = [&](int64_t r, int R) { return r + R <= r1 && (P == 0 || r % P == 0); };
  if (n_tok == 1) {
    for (int64_t r = r0; r < r1;) {
      if (full_tile(r, kDecodeRows)) {
        Op::template tile<kDecodeRows, 1>(row(r), rs, bs, x, xs, Y + r, ldy, K);
        r += kDecodeRows;
      } else {
        Op::template tile<1, 1>(row(r), rs, bs, x, xs, Y + r, ldy, K);
        ++r;
      }
    }
    return;
  }
  // Token chunks small enough to stay in L2 while every row tile sweeps them;
  // each row tile's weights are then reused from L1 across the chunk's tokens.
  int64_t chunk = static_cast<int64_t>((192 * 1024) / (xs ? xs : 1));
  chunk = chunk < kToks ? kToks : chunk - chunk % kToks;
  for (int64_t t0 = 0; t0 < n_tok; t0 += chunk) {
    const int64_t t1 = t0 + chunk < n_tok ? t0 + chunk : n_tok;
    for (int64_t r = r0; r < r1;) {
      const bool full = full_tile(r, kRows);
      const char* wr = row(r);
      int64_t t = t0;
      for (; t + kToks <= t1; t += kToks) {
        const char* xt = x + t * xs;
        float* yt = Y + t * ldy + r;
        if (full) Op::template tile<kRows, kToks>(wr, rs, bs, xt, xs, yt, ldy, K);
        else Op::template tile<1, kToks>(wr, rs, bs, xt, xs, yt, ldy, K);
      }
      for (; t < t1; ++t) {
        if (full) Op::template tile<kRows, 1>(wr, rs, bs, x + t * xs, xs, Y + t * ldy + r, ldy, K);
        else Op::template tile<1, 1>(wr, rs, bs, x + t * xs, xs, Y + t * ldy + r, ldy, K);
      }
      r += full ? kRows : 1;
    }
  }
}

// ---- activation conversion ---------------------------------------------------

// One block of 32 floats -> d and 32 int8 as the reference codec; returns sum(q)
// and the unrounded d in *d_f32.
inline int quantize_block(const float* x, uint16_t* d_out, int8_t* qs, float* d_f32) {
  const __m256 sign = _mm256_set1_ps(-0.0f);
  __m256 v[4];
  __m256 amax = _mm256_setzero_ps();
  for (int j = 0; j < 4; ++j) {
    v[j] = _mm256_loadu_ps(x + 8 * j);
    amax = _mm256_max_ps(amax, _mm256_andnot_ps(sign, v[j]));
  }
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(amax), _mm256_extractf128_ps(amax, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  m = _mm_max_ss(m, _mm_movehdup_ps(m));
  const float amax_s = _mm_cvtss_f32(m);
  const float d = amax_s / 127.0f;
  const float id = amax_s != 0.0f ? 127.0f / amax_s : 0.0f;  // as the reference codec
  *d_out = f2h(d);
  *d_f32 = d;
  const __m256 idv = _mm256_set1_ps(id);
  __m256i i32[4];
  for (int j = 0; j < 4; ++j) i32[j] = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(v[j], idv), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  const __m256i sum = _mm256_add_epi32(_mm256_add_epi32(i32[0], i32[1]), _mm256_add_epi32(i32[2], i32[3]));
  // packs interleave 128-bit lanes; the permute restores element order.
  const __m256i p16a = _mm256_packs_epi32(i32[0], i32[1]);
  const __m256i p16b = _mm256_packs_epi32(i32[2], i32[3]);
  const __m256i p8 = _mm256_packs_epi16(p16a, p16b);
  const __m256i q = _mm256_permutevar8x32_epi32(p8, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(qs), q);
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(sum), _mm256_extracti128_si256(sum, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
  return _mm_cvtsi128_si32(s);
}

void convert_q8_0(const float* x, void* y, int64_t K) {
  BlockQ8_0* o = static_cast<BlockQ8_0*>(y);
  float d;
  for (int64_t b = 0; b < K / QK; ++b) quantize_block(x + b * QK, &o[b].d, o[b].qs, &d);
}

void convert_q8_1(const float* x, void* y, int64_t K) {
  BlockQ8_1* o = static_cast<BlockQ8_1*>(y);
  for (int64_t b = 0; b < K / QK; ++b) {
    float d;
    const int sum = quantize_block(x + b * QK, &o[b].d, o[b].qs, &d);
    o[b].s = f2h(static_cast<float>(sum) * d);  // from the unrounded d, as the reference
  }
}

void convert_f16(const float* x, void* y, int64_t K) {
  uint16_t* o = static_cast<uint16_t*>(y);
  int64_t k = 0;
  for (; k + 8 <= K; k += 8)
    _mm_storeu_si128(reinterpret_cast<__m128i*>(o + k),
                     _mm256_cvtps_ph(_mm256_loadu_ps(x + k), _MM_FROUND_TO_NEAREST_INT));
  for (; k < K; ++k) o[k] = f2h(x[k]);
}

inline uint16_t bf16_one(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 64);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

void convert_bf16(const float* x, void* y, int64_t K) {
  uint16_t* o = static_cast<uint16_t*>(y);
  const __m256i abs_mask = _mm256_set1_epi32(0x7fffffff);
  const __m256i inf = _mm256_set1_epi32(0x7f800000);
  int64_t k = 0;
  for (; k + 8 <= K; k += 8) {
    const __m256i u = _mm256_castps_si256(_mm256_loadu_ps(x + k));
    const __m256i nan = _mm256_cmpgt_epi32(_mm256_and_si256(u, abs_mask), inf);
    const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
    const __m256i r = _mm256_srli_epi32(_mm256_add_epi32(u, _mm256_add_epi32(lsb, _mm256_set1_epi32(0x7fff))), 16);
    const __m256i qn = _mm256_or_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(64));
    const __m256i v = _mm256_blendv_epi8(r, qn, nan);
    const __m256i p = _mm256_permute4x64_epi64(_mm256_packus_epi32(v, v), 0x08);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(o + k), _mm256_castsi256_si128(p));
  }
  for (; k < K; ++k) o[k] = bf16_one(x[k]);
}

// ---- attention ---------------------------------------------------------------

template <class L>
inline float dot_rows(const typename L::E* a, const float* b, int64_t n) {
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    acc0 = _mm256_fmadd_ps(L::load8(a + i), _mm256_loadu_ps(b + i), acc0);
    acc1 = _mm256_fmadd_ps(L::load8(a + i + 8), _mm256_loadu_ps(b + i + 8), acc1);
  }
  for (; i + 8 <= n; i += 8) acc0 = _mm256_fmadd_ps(L::load8(a + i), _mm256_loadu_ps(b + i), acc0);
  float s = hsum(_mm256_add_ps(acc0, acc1));
  for (; i < n; ++i) s += L::load1(a + i) * b[i];
  return s;
}

// out[d] = sum_j p_j V_j[d]; j in order per element, as the reference.
template <class L>
void weighted_sum(const float* p, const typename L::E* v, size_t stride, int64_t hd, int64_t n,
                  float* out) {
  int64_t d = 0;
  for (; d + 32 <= hd; d += 32) {
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    for (int64_t j = 0; j < n; ++j) {
      const typename L::E* vj = v + j * stride + d;
      const __m256 pj = _mm256_set1_ps(p[j]);
      a0 = _mm256_fmadd_ps(pj, L::load8(vj), a0);
      a1 = _mm256_fmadd_ps(pj, L::load8(vj + 8), a1);
      a2 = _mm256_fmadd_ps(pj, L::load8(vj + 16), a2);
      a3 = _mm256_fmadd_ps(pj, L::load8(vj + 24), a3);
    }
    _mm256_storeu_ps(out + d, a0);
    _mm256_storeu_ps(out + d + 8, a1);
    _mm256_storeu_ps(out + d + 16, a2);
    _mm256_storeu_ps(out + d + 24, a3);
  }
  for (; d + 8 <= hd; d += 8) {
    __m256 a = _mm256_setzero_ps();
    for (int64_t j = 0; j < n; ++j) a = _mm256_fmadd_ps(_mm256_set1_ps(p[j]), L::load8(v + j * stride + d), a);
    _mm256_storeu_ps(out + d, a);
  }
  for (; d < hd; ++d) {
    float a = 0.0f;
    for (int64_t j = 0; j < n; ++j) a += p[j] * L::load1(v + j * stride + d);
    out[d] = a;
  }
}

// Softmax in place, summing in double as the reference (and ggml) does.
void softmax(float* s, int64_t n) {
  float mx = -INFINITY;
  for (int64_t j = 0; j < n; ++j) mx = fmaxf(mx, s[j]);
  double sum = 0.0;
  for (int64_t j = 0; j < n; ++j) {
    s[j] = expf(s[j] - mx);
    sum += s[j];
  }
  const __m256 inv = _mm256_set1_ps(static_cast<float>(1.0 / sum));
  int64_t j = 0;
  for (; j + 8 <= n; j += 8) _mm256_storeu_ps(s + j, _mm256_mul_ps(_mm256_loadu_ps(s + j), inv));
  for (; j < n; ++j) s[j] *= _mm256_cvtss_f32(inv);
}

// ---- llama.cpp's x86 arithmetic (see scalar.cpp for the lane-by-lane reference) --


void swiglu(const float* gate, const float* up, float* y, int64_t n) {
  const __m256 one = _mm256_set1_ps(1.0f);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 g = _mm256_loadu_ps(gate + i);
    const __m256 silu = _mm256_div_ps(g, _mm256_add_ps(one, exp8(_mm256_sub_ps(_mm256_setzero_ps(), g))));
    _mm256_storeu_ps(y + i, _mm256_mul_ps(silu, _mm256_loadu_ps(up + i)));
  }
  for (; i < n; ++i) y[i] = gate[i] / (1.0f + expf(-gate[i])) * up[i];  // as ggml's tail
}

// gelu_tanh(g) * u, 8 lanes: the scalar reference's operations (kernels.h).
inline __m256 geglu8(__m256 g, __m256 u) {
  const __m256 one = _mm256_set1_ps(1.0f);
  const __m256 inner = _mm256_mul_ps(g, _mm256_fmadd_ps(_mm256_set1_ps(0.044715f), _mm256_mul_ps(g, g), one));
  const __m256 e = exp8(_mm256_mul_ps(_mm256_set1_ps(-1.5957691216057308f), inner));
  return _mm256_mul_ps(_mm256_div_ps(g, _mm256_add_ps(one, e)), u);
}

// A row tail of n < 8 through the same 8-lane code, so every element matches the reference.
template <typename Fn>
inline void tail8(float* y, int64_t n, Fn&& fn) {
  alignas(32) float buf[8] = {};
  for (int64_t i = 0; i < n; ++i) buf[i] = y[i];
  _mm256_store_ps(buf, fn(_mm256_load_ps(buf)));
  for (int64_t i = 0; i < n; ++i) y[i] = buf[i];
}

void geglu(const float* gate, const float* up, float* y, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, geglu8(_mm256_loadu_ps(gate + i), _mm256_loadu_ps(up + i)));
  if (i == n) return;
  alignas(32) float g[8] = {}, u[8] = {}, r[8];
  for (int64_t k = i; k < n; ++k) g[k - i] = gate[k], u[k - i] = up[k];
  _mm256_store_ps(r, geglu8(_mm256_load_ps(g), _mm256_load_ps(u)));
  for (int64_t k = i; k < n; ++k) y[k] = r[k - i];
}

// Attention logit soft-cap cap * tanh(s / cap), tanh as 1 - 2 / (1 + exp(2x)) (the reference's).
void softcap_scores(float* s, int64_t n, float cap) {
  if (!(cap > 0.0f)) return;
  const __m256 k = _mm256_set1_ps(2.0f / cap), c = _mm256_set1_ps(cap), one = _mm256_set1_ps(1.0f),
               two = _mm256_set1_ps(2.0f);
  auto cap8 = [&](__m256 x) {
    return _mm256_mul_ps(c, _mm256_sub_ps(one, _mm256_div_ps(two, _mm256_add_ps(one, exp8(_mm256_mul_ps(k, x))))));
  };
  int64_t j = 0;
  for (; j + 8 <= n; j += 8) _mm256_storeu_ps(s + j, cap8(_mm256_loadu_ps(s + j)));
  if (j < n) tail8(s + j, n - j, cap8);
}

// ggml_vec_dot_f16's lane fold: (a0 + a2) + (a1 + a3), lo + hi, two hadds.
inline float fold32(__m256 a0, __m256 a1, __m256 a2, __m256 a3) {
  const __m256 x = _mm256_add_ps(_mm256_add_ps(a0, a2), _mm256_add_ps(a1, a3));
  __m128 t = _mm_add_ps(_mm256_castps256_ps128(x), _mm256_extractf128_ps(x, 1));
  t = _mm_hadd_ps(t, t);
  t = _mm_hadd_ps(t, t);
  return _mm_cvtss_f32(t);
}

float dot_f16_vec_order(const uint16_t* a, const float* b, int64_t n) {
  __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
  const int64_t np = n & ~int64_t(31);
  for (int64_t i = 0; i < np; i += 32)
    for (int c = 0; c < 4; ++c)
      acc[c] = _mm256_fmadd_ps(F16Load::load8(a + i + 8 * c), _mm256_loadu_ps(b + i + 8 * c), acc[c]);
  double s = fold32(acc[0], acc[1], acc[2], acc[3]);
  for (int64_t i = np; i < n; ++i) s += static_cast<double>(h2f(a[i]) * b[i]);
  return static_cast<float>(s);
}

float dot_f16_tile_order(const uint16_t* a, const float* b, int64_t n) {
  __m256 acc = _mm256_setzero_ps();
  for (int64_t i = 0; i < n; i += 8)
    acc = _mm256_fmadd_ps(F16Load::load8(a + i), _mm256_loadu_ps(b + i), acc);
  return hsum(acc);
}

// P.V with lanes by position: 8 (tiled matmul) or 32 (dot product) accumulators
// per 8 output elements; positions past n_kv (llama.cpp's padding) weigh zero.
void weighted_sum_lanes(const float* p, const uint16_t* v, size_t stride, int64_t hd, int64_t n,
                        bool batched, float* out) {
  int64_t d = 0;
  for (; d + 8 <= hd; d += 8) {
    __m256 acc[32];
    for (int l = 0; l < 32; ++l) acc[l] = _mm256_setzero_ps();
    const int64_t lanes = batched ? 8 : 32;
    for (int64_t j = 0; j < n; ++j) {
      __m256& a = acc[j % lanes];
      a = _mm256_fmadd_ps(F16Load::load8(v + j * stride + d), _mm256_set1_ps(p[j]), a);
    }
    __m256 r;
    if (batched) {
      r = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(acc[0], acc[4]), _mm256_add_ps(acc[2], acc[6])),
                        _mm256_add_ps(_mm256_add_ps(acc[1], acc[5]), _mm256_add_ps(acc[3], acc[7])));
    } else {
      __m256 x[8];
      for (int l = 0; l < 8; ++l)
        x[l] = _mm256_add_ps(_mm256_add_ps(acc[l], acc[16 + l]), _mm256_add_ps(acc[8 + l], acc[24 + l]));
      r = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(x[0], x[4]), _mm256_add_ps(x[1], x[5])),
                        _mm256_add_ps(_mm256_add_ps(x[2], x[6]), _mm256_add_ps(x[3], x[7])));
    }
    _mm256_storeu_ps(out + d, r);
  }
  for (; d < hd; ++d) {
    float acc[32] = {};
    const int64_t lanes = batched ? 8 : 32;
    for (int64_t j = 0; j < n; ++j) acc[j % lanes] = fmaf(h2f(v[j * stride + d]), p[j], acc[j % lanes]);
    float x[8];
    if (batched) {
      out[d] = ((acc[0] + acc[4]) + (acc[2] + acc[6])) + ((acc[1] + acc[5]) + (acc[3] + acc[7]));
    } else {
      for (int l = 0; l < 8; ++l) x[l] = (acc[l] + acc[16 + l]) + (acc[8 + l] + acc[24 + l]);
      out[d] = ((x[0] + x[4]) + (x[1] + x[5])) + ((x[2] + x[6]) + (x[3] + x[7]));
    }
  }
}

// 8 int8 values widened to float.
inline __m256 widen8(const int8_t* p) {
  return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))));
}

// INT8 cache (this project's format: no llama.cpp order to mirror, so the sums
// are free to vectorise; tested against the F32 reference within a tolerance).
void attend_q8_0(const float* q, const BlockQ8_0* k, const BlockQ8_0* v, size_t kv_stride,
                 int64_t head_dim, int64_t n_kv, float scale, float softcap, float* scratch,
                 float* out) {
  const size_t row_blocks = kv_stride / QK;
  const int64_t nb = head_dim / QK;
  for (int64_t j = 0; j < n_kv; ++j) {
    const BlockQ8_0* kj = k + j * row_blocks;
    __m256 acc = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; ++b) {
      const int8_t* qs = kj[b].qs;
      const float* qb = q + b * QK;
      __m256 s = _mm256_mul_ps(widen8(qs), _mm256_loadu_ps(qb));
      s = _mm256_fmadd_ps(widen8(qs + 8), _mm256_loadu_ps(qb + 8), s);
      s = _mm256_fmadd_ps(widen8(qs + 16), _mm256_loadu_ps(qb + 16), s);
      s = _mm256_fmadd_ps(widen8(qs + 24), _mm256_loadu_ps(qb + 24), s);
      acc = _mm256_fmadd_ps(s, _mm256_set1_ps(h2f(kj[b].d)), acc);
    }
    scratch[j] = scale * hsum(acc);
  }
  softcap_scores(scratch, n_kv, softcap);
  softmax_ggml(scratch, n_kv);
  for (int64_t d = 0; d < head_dim; ++d) out[d] = 0.0f;
  for (int64_t j = 0; j < n_kv; ++j) {
    const BlockQ8_0* vj = v + j * row_blocks;
    for (int64_t b = 0; b < nb; ++b) {
      const __m256 pd = _mm256_set1_ps(scratch[j] * h2f(vj[b].d));
      float* ob = out + b * QK;
      for (int c = 0; c < QK; c += 8)
        _mm256_storeu_ps(ob + c, _mm256_fmadd_ps(widen8(vj[b].qs + c), pd, _mm256_loadu_ps(ob + c)));
    }
  }
}

// attend_q8_0 for up to 4 consecutive query rows of one head (row r sees one
// position more than row r-1): each K/V block is widened once for all rows,
// and every row keeps attend_q8_0's sequence of operations, so the results
// are identical to it. scratch: 4 rows of `room` scores.
void attend_rows_q8_0(const float* q, size_t q_stride, const BlockQ8_0* k, const BlockQ8_0* v,
                      size_t kv_stride, int64_t head_dim, const int64_t* n, int R, float scale,
                      float* scratch, size_t room, float* out, size_t out_stride) {
  const size_t row_blocks = kv_stride / QK;
  const int64_t nb = head_dim / QK, nmax = n[R - 1];
  float* s[4];
  for (int r = 0; r < R; ++r) s[r] = scratch + r * room;
  for (int64_t j = 0; j < nmax; ++j) {
    const BlockQ8_0* kj = k + j * row_blocks;
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    for (int64_t b = 0; b < nb; ++b) {
      const int8_t* qs = kj[b].qs;
      const __m256 w0 = widen8(qs), w1 = widen8(qs + 8), w2 = widen8(qs + 16), w3 = widen8(qs + 24);
      const __m256 dk = _mm256_set1_ps(h2f(kj[b].d));
      for (int r = 0; r < R; ++r) {
        const float* qb = q + r * q_stride + b * QK;
        __m256 sv = _mm256_mul_ps(w0, _mm256_loadu_ps(qb));
        sv = _mm256_fmadd_ps(w1, _mm256_loadu_ps(qb + 8), sv);
        sv = _mm256_fmadd_ps(w2, _mm256_loadu_ps(qb + 16), sv);
        sv = _mm256_fmadd_ps(w3, _mm256_loadu_ps(qb + 24), sv);
        acc[r] = _mm256_fmadd_ps(sv, dk, acc[r]);
      }
    }
    for (int r = 0; r < R; ++r)
      if (j < n[r]) s[r][j] = scale * hsum(acc[r]);
  }
  for (int r = 0; r < R; ++r) softmax_ggml(s[r], n[r]);
  // P.V 16 columns at a time: 2 accumulators per row stay in registers.
  for (int64_t d0 = 0; d0 < head_dim; d0 += 16) {
    const int64_t b = d0 / QK, c = d0 % QK;
    __m256 acc[4][2];
    for (int r = 0; r < 4; ++r) acc[r][0] = acc[r][1] = _mm256_setzero_ps();
    for (int64_t j = 0; j < nmax; ++j) {
      const BlockQ8_0& vb = v[j * row_blocks + b];
      const __m256 w0 = widen8(vb.qs + c), w1 = widen8(vb.qs + c + 8);
      const float dv = h2f(vb.d);
      for (int r = 0; r < R; ++r) {
        if (j >= n[r]) continue;
        const __m256 pd = _mm256_set1_ps(s[r][j] * dv);
        acc[r][0] = _mm256_fmadd_ps(w0, pd, acc[r][0]);
        acc[r][1] = _mm256_fmadd_ps(w1, pd, acc[r][1]);
      }
    }
    for (int r = 0; r < R; ++r) {
      _mm256_storeu_ps(out + r * out_stride + d0, acc[r][0]);
      _mm256_storeu_ps(out + r * out_stride + d0 + 8, acc[r][1]);
    }
  }
}

void attend(const float* q, const void* K, const void* V, GgmlType kv_type, size_t kv_stride,
            int64_t head_dim, int64_t n_kv, float scale, float softcap, bool batched,
            float* scratch, float* out) {
  if (kv_type == GgmlType::Q8_0) {
    attend_q8_0(q, static_cast<const BlockQ8_0*>(K), static_cast<const BlockQ8_0*>(V), kv_stride,
                head_dim, n_kv, scale, softcap, scratch, out);
    return;
  }
  if (kv_type == GgmlType::F32) {
    const float* k = static_cast<const float*>(K);
    for (int64_t j = 0; j < n_kv; ++j)
      scratch[j] = scale * dot_rows<F32Load>(k + j * kv_stride, q, head_dim);
    softcap_scores(scratch, n_kv, softcap);
    softmax(scratch, n_kv);
    weighted_sum<F32Load>(scratch, static_cast<const float*>(V), kv_stride, head_dim, n_kv, out);
    return;
  }
  // F16 cache: llama.cpp's F16 matmuls see the query and the softmax weights in F16.
  const uint16_t* k = static_cast<const uint16_t*>(K);
  float qh[512];
  int64_t d = 0;
  for (; d + 8 <= head_dim; d += 8)
    _mm256_storeu_ps(qh + d, _mm256_cvtph_ps(_mm256_cvtps_ph(_mm256_loadu_ps(q + d), _MM_FROUND_TO_NEAREST_INT)));
  for (; d < head_dim; ++d) qh[d] = h2f(f2h(q[d]));
  const bool tile_kq = batched && head_dim % 8 == 0;
  for (int64_t j = 0; j < n_kv; ++j) {
    const uint16_t* kj = k + j * kv_stride;
    scratch[j] = (tile_kq ? dot_f16_tile_order(kj, qh, head_dim) : dot_f16_vec_order(kj, qh, head_dim)) * scale;
  }
  softcap_scores(scratch, n_kv, softcap);
  softmax_ggml(scratch, n_kv);
  int64_t j = 0;
  for (; j + 8 <= n_kv; j += 8)
    _mm256_storeu_ps(scratch + j, _mm256_cvtph_ps(_mm256_cvtps_ph(_mm256_loadu_ps(scratch + j), _MM_FROUND_TO_NEAREST_INT)));
  for (; j < n_kv; ++j) scratch[j] = h2f(f2h(scratch[j]));
  weighted_sum_lanes(scratch, static_cast<const uint16_t*>(V), kv_stride, head_dim, n_kv, batched, out);
}

// Prompt-chunk attention 4 rows at a time for the INT8 cache; other caches
// loop attend (the F16 order has no shared work here).
void attend_rows(const float* q, size_t q_stride, const void* K, const void* V, GgmlType kv_type,
                 size_t kv_stride, int64_t head_dim, int64_t n_kv0, int64_t m, float scale,
                 float* scratch, float* out, size_t out_stride) {
  if (kv_type != GgmlType::Q8_0) {
    for (int64_t t = 0; t < m; ++t)
      attend(q + t * q_stride, K, V, kv_type, kv_stride, head_dim, n_kv0 + t, scale, 0.0f, true, scratch,
             out + t * out_stride);
    return;
  }
  const size_t room = static_cast<size_t>(n_kv0 + m - 1);
  for (int64_t t0 = 0; t0 < m; t0 += 4) {
    const int R = static_cast<int>(m - t0 < 4 ? m - t0 : 4);
    int64_t n[4];
    for (int r = 0; r < R; ++r) n[r] = n_kv0 + t0 + r;
    attend_rows_q8_0(q + t0 * q_stride, q_stride, static_cast<const BlockQ8_0*>(K),
                     static_cast<const BlockQ8_0*>(V), kv_stride, head_dim, n, R, scale, scratch,
                     room, out + t0 * out_stride, out_stride);
  }
}

KernelTable make_table() {
  KernelTable t = scalar_table();
  t.isa = "avx2";
  t.gemm[W_F32] = gemm<FloatOp<F32Load>, 0>;
  t.gemm[W_F16] = gemm<FloatOp<F16Load>, 0>;
  t.gemm[W_BF16] = gemm<FloatOp<BF16Load>, 0>;
  t.gemm[W_Q8_0] = gemm<Q8_0Op, 0>;
  t.gemm[W_Q4_0] = gemm<Q4_0Op, 0>;
  t.gemm[W_Q4_1] = gemm<Q4_1Op, 0>;
  // Row tiles stream one interleaved group instead of four rows.
  t.pack_rows[W_Q8_0] = t.pack_rows[W_Q4_0] = t.pack_rows[W_Q4_1] = kRows;
  t.gemm_packed[W_Q8_0] = gemm<Q8_0Op, kRows>;
  t.gemm_packed[W_Q4_0] = gemm<Q4_0Op, kRows>;
  t.gemm_packed[W_Q4_1] = gemm<Q4_1Op, kRows>;
  t.convert[A_F16] = convert_f16;
  t.convert[A_BF16] = convert_bf16;
  t.convert[A_Q8_0] = convert_q8_0;
  t.convert[A_Q8_1] = convert_q8_1;
  t.attend = attend;
  t.attend_rows = attend_rows;
  t.swiglu = swiglu;
  t.geglu = geglu;
  return t;
}

}  // namespace

const KernelTable* avx2_table() {
  static const KernelTable t = make_table();
  return &t;
}

}  // namespace bluelm::kernels
