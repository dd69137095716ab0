// AVX-512 Q4_0 on 16-row interleaved groups (kernels/repack.h): lanes are
// rows. Each block's 32 products are summed exactly in int32 by vpdpbusd
// (nibbles as unsigned against the activations; the -8 offset and a conversion
// bias sit in the start value), then one FMA per row with d_w * d_x: the
// scalar reference's order (llama.cpp's repacked Q4_0 gemm), bit for bit.
#include <cmath>
#include <vector>

#include "kernels/avx512/avx512.h"
#include "kernels/avx512/zmm.h"

namespace bluelm::kernels::avx512 {
namespace {

constexpr int kX16 = kQ4x16Rows;
constexpr size_t kX16Block = kX16 * sizeof(BlockQ4_0);  // 288 bytes: 16 scales, 4 quant chunks
// 0x4B400000 is 1.5 * 2^23 as a float. Its bits plus an int32 n (|n| < 2^22; a
// Q4_0 block sum is at most 32 * 8 * 128) are the float 1.5 * 2^23 + n exactly,
// so one subtraction converts n: a port-5 op instead of vcvtdq2ps on port 0,
// which vpdpbusd already saturates.
constexpr int32_t kMagicBits = 0x4B400000;
constexpr float kMagic = 12582912.0f;

struct X16Tok {   // one block of one token
  int32_t start;  // kMagicBits - 8 * sum(q)
  float dx;
};

void prep_x16(const char* x, size_t xs, int64_t n_tok, int64_t nb, X16Tok* out) {
  for (int64_t t = 0; t < n_tok; ++t) {
    const BlockQ8_0* xb = reinterpret_cast<const BlockQ8_0*>(x + t * xs);
    for (int64_t b = 0; b < nb; ++b) {
      int s = 0;
      for (int j = 0; j < QK; ++j) s += xb[b].qs[j];
      out[t * nb + b] = {kMagicBits - 8 * s, h2f(xb[b].d)};
    }
  }
}

// 16 rows x 1 token: the 8 products of each block run as two independent chains.
void x16_gemv(const char* g, const BlockQ8_0* x, const X16Tok* tk, int64_t nb, float* y) {
  const __m512i m4 = _mm512_set1_epi8(0x0f);
  const __m512 magic = _mm512_set1_ps(kMagic);
  __m512 acc = _mm512_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    const char* gb = g + b * kX16Block;
    _mm_prefetch(gb + 4096, _MM_HINT_T0);  // see decode.cpp; 288 bytes a block: 4.5 lines
    _mm_prefetch(gb + 4096 + 128, _MM_HINT_T0);
    _mm_prefetch(gb + 4096 + 256, _MM_HINT_T0);
    const int8_t* q = x[b].qs;
    __m512i lo = _mm512_set1_epi32(tk[b].start), hi = _mm512_setzero_si512();
#pragma GCC unroll 4
    for (int c = 0; c < 4; ++c) {
      // chunk c: low nibbles are elements 4c..4c+3, high nibbles 16+4c..16+4c+3
      const __m512i v = _mm512_loadu_si512(gb + 2 * kX16 + 64 * c);
      lo = dpbusd512(lo, _mm512_and_si512(v, m4), bcast4(q + 4 * c));
      hi = dpbusd512(hi, _mm512_and_si512(_mm512_srli_epi16(v, 4), m4), bcast4(q + 16 + 4 * c));
    }
    const __m512 f = _mm512_sub_ps(_mm512_castsi512_ps(_mm512_add_epi32(lo, hi)), magic);
    const __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(gb)));
    acc = _mm512_fmadd_ps(f, _mm512_mul_ps(dw, _mm512_set1_ps(tk[b].dx)), acc);
  }
  _mm512_storeu_ps(y, acc);
}

// 16 rows x T tokens (T <= 8): a block's weights are unpacked once for the T
// tokens, one dependency chain per token.
template <int T>
void x16_tile(const char* g, const char* x, size_t xs, const X16Tok* tk, int64_t nb, float* y, size_t ldy) {
  const __m512i m4 = _mm512_set1_epi8(0x0f);
  const __m512 magic = _mm512_set1_ps(kMagic);
  __m512 acc[T];
  for (int t = 0; t < T; ++t) acc[t] = _mm512_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    const char* gb = g + b * kX16Block;
    __m512i u[8];  // u[j]: elements 4j..4j+3 of the 16 rows
#pragma GCC unroll 4
    for (int c = 0; c < 4; ++c) {
      const __m512i v = _mm512_loadu_si512(gb + 2 * kX16 + 64 * c);
      u[c] = _mm512_and_si512(v, m4);
      u[4 + c] = _mm512_and_si512(_mm512_srli_epi16(v, 4), m4);
    }
    const __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(gb)));
#pragma GCC unroll 8
    for (int t = 0; t < T; ++t) {
      const int8_t* q = reinterpret_cast<const BlockQ8_0*>(x + t * xs)[b].qs;
      const X16Tok& k = tk[t * nb + b];
      __m512i s = _mm512_set1_epi32(k.start);
#pragma GCC unroll 8
      for (int j = 0; j < 8; ++j) s = dpbusd512(s, u[j], bcast4(q + 4 * j));
      const __m512 f = _mm512_sub_ps(_mm512_castsi512_ps(s), magic);
      acc[t] = _mm512_fmadd_ps(f, _mm512_mul_ps(dw, _mm512_set1_ps(k.dx)), acc[t]);
    }
  }
  for (int t = 0; t < T; ++t) _mm512_storeu_ps(y + t * ldy, acc[t]);
}

using X16TileFn = void (*)(const char*, const char*, size_t, const X16Tok*, int64_t, float*, size_t);
constexpr X16TileFn kX16Tiles[8] = {x16_tile<1>, x16_tile<2>, x16_tile<3>, x16_tile<4>,
                                    x16_tile<5>, x16_tile<6>, x16_tile<7>, x16_tile<8>};

// Row i of a group outside whole groups of [r0, r1) (a thread split inside a
// group): the scalar reference's arithmetic, read from the packed layout.
void x16_row(const char* g, int i, const char* x, size_t xs, int64_t nb, int64_t n_tok, float* y, size_t ldy) {
  for (int64_t t = 0; t < n_tok; ++t) {
    const BlockQ8_0* xb = reinterpret_cast<const BlockQ8_0*>(x + t * xs);
    float acc = 0.0f;
    for (int64_t b = 0; b < nb; ++b) {
      const uint8_t* gb = reinterpret_cast<const uint8_t*>(g + b * kX16Block);
      uint16_t d;
      std::memcpy(&d, gb + 2 * i, 2);
      int sum = 0;
      for (int c = 0; c < 4; ++c)
        for (int k = 0; k < 4; ++k) {
          const uint8_t byte = gb[2 * kX16 + 64 * c + 4 * i + k];
          const int e = 4 * c + k;
          sum += ((byte & 0x0f) - 8) * xb[b].qs[e] + ((byte >> 4) - 8) * xb[b].qs[e + 16];
        }
      acc = std::fma(static_cast<float>(sum), h2f(d) * h2f(xb[b].d), acc);
    }
    y[t * ldy] = acc;
  }
}

}  // namespace

void gemm_q4_0_x16(const void* W, size_t ws, const void* X, size_t xs, float* Y, size_t ldy, int64_t K,
                   int64_t r0, int64_t r1, int64_t n_tok) {
  const char* w = static_cast<const char*>(W);
  const char* x = static_cast<const char*>(X);
  const int64_t nb = K / QK;
  // Per-token block terms: on the stack for decode, on the heap for a prompt.
  constexpr int64_t kStack = 1024;
  X16Tok stack[kStack];
  std::vector<X16Tok> heap;
  X16Tok* tk = stack;
  if (n_tok * nb > kStack) {
    heap.resize(static_cast<size_t>(n_tok * nb));
    tk = heap.data();
  }
  prep_x16(x, xs, n_tok, nb, tk);
  auto group = [&](int64_t r) { return w + (r - r % kX16) * ws; };
  // Rows of partial groups at either end of the range.
  int64_t a = r0, e = r1;
  while (a < e && a % kX16 != 0) {
    x16_row(group(a), int(a % kX16), x, xs, nb, n_tok, Y + a, ldy);
    ++a;
  }
  while (e > a && e % kX16 != 0) {
    --e;
    x16_row(group(e), int(e % kX16), x, xs, nb, n_tok, Y + e, ldy);
  }
  if (n_tok == 1) {
    for (int64_t r = a; r < e; r += kX16) x16_gemv(group(r), reinterpret_cast<const BlockQ8_0*>(x), tk, nb, Y + r);
    return;
  }
  // Row chunks of about 128 KiB of weights stay in L2 while every 8-token tile
  // sweeps them.
  int64_t rchunk = static_cast<int64_t>((128 * 1024) / (ws ? ws : 1));
  rchunk = rchunk < kX16 ? kX16 : rchunk - rchunk % kX16;
  for (int64_t c0 = a; c0 < e; c0 += rchunk) {
    const int64_t c1 = c0 + rchunk < e ? c0 + rchunk : e;
    for (int64_t t0 = 0; t0 < n_tok; t0 += 8) {
      const int nt = static_cast<int>(n_tok - t0 < 8 ? n_tok - t0 : 8);
      for (int64_t r = c0; r < c1; r += kX16)
        kX16Tiles[nt - 1](group(r), x + t0 * xs, xs, tk + t0 * nb, nb, Y + t0 * ldy + r, ldy);
    }
  }
}


}  // namespace bluelm::kernels::avx512
