// AVX-512 Q5_0 / Q5_1 on 16-row interleaved groups (repack_q5_0_x16 /
// repack_q5_1_x16, kernels/repack.h): lanes are rows, as q4_0_x16.cpp. The
// scalar reference (kernels/scalar/kquants.h) keeps 8 float accumulators per
// output, one per group of 4 consecutive products; here accumulator register
// (t, j) holds that lane j of token t for 16 rows at once, so each vpdpbusd
// result (4 products of 16 rows) needs one conversion and one FMA, and d_w * d_x
// is one multiply per block for 16 rows (the file-layout tiles pay it per row).
// A prompt's call unpacks each row chunk once (bytes and float scales, in L2)
// for all its token tiles; decode unpacks in registers.
// Lanes fold in the reference's tree at the end; Q5_1's m_w * s_x products are
// rounded, then added in block order (this file is built with
// -ffp-contract=off). Results are the reference's bits.
#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/avx512/avx512.h"
#include "kernels/avx512/zmm.h"

namespace bluelm::kernels::avx512 {
namespace {

constexpr int kR = kQ5x16Rows;
constexpr int kTokTile = 3;  // tokens per register tile: 8 accumulators each
// From this many tokens a call unpacks its row chunks once instead of per tile.
constexpr int64_t kWideTokens = 12;

// Q5_0 (signed, q - 16, against Q8_0) or Q5_1 (q in 0..31 and a min, against Q8_1).
template <bool Min>
struct Q5Fmt {
  static constexpr int kHeads = Min ? 2 : 1;                      // fp16 fields before qh
  static constexpr size_t kRowBlock = 2 * kHeads + 4 + 16;        // file block bytes
  static constexpr size_t kBits = 2 * kR * kHeads;                // qh words in a group block
  static constexpr size_t kQuants = kBits + 4 * kR;               // the 4 quant chunks
  static constexpr size_t kBlock = kR * kRowBlock;                // a group block
  static constexpr size_t kActBlock = Min ? sizeof(BlockQ8_1) : sizeof(BlockQ8_0);
  static const int8_t* qs(const char* x, int64_t b) {
    return reinterpret_cast<const int8_t*>(x + b * kActBlock + (Min ? 4 : 2));
  }
};

struct X5Tok {  // one block of one token
  int32_t start[8];  // Q5_0: -16 * (sum of lane j's 4 activations), the weights' offset
  float dx, sx;
};

template <bool Min>
void prep(const char* x, size_t xs, int64_t n_tok, int64_t nb, X5Tok* out) {
  using F = Q5Fmt<Min>;
  for (int64_t t = 0; t < n_tok; ++t) {
    const char* row = x + t * xs;
    for (int64_t b = 0; b < nb; ++b) {
      X5Tok& o = out[t * nb + b];
      const int8_t* q = F::qs(row, b);
      for (int j = 0; j < 8; ++j)
        o.start[j] = Min ? 0 : -16 * (q[4 * j] + q[4 * j + 1] + q[4 * j + 2] + q[4 * j + 3]);
      uint16_t h[2];
      std::memcpy(h, row + b * F::kActBlock, 4);
      o.dx = h2f(h[0]);
      o.sx = Min ? h2f(h[1]) : 0.0f;
    }
  }
}

// Where a tile reads a group block: the packed weights, unpacked in registers
// (decode and short calls), or a row chunk's copy unpacked once per call into
// unsigned bytes and float scales (prompts: every token tile reuses it from
// L2). Both give the same values, so the same bits.
template <bool Min>
struct FromPacked {
  using F = Q5Fmt<Min>;
  static constexpr bool kStream = true;
  const char* g;
  const char* gb = nullptr;
  void at(int64_t b) { gb = g + b * F::kBlock; }
  __m512 dw() const { return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(gb))); }
  __m512 mw() const { return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(gb + 2 * kR))); }
  // Lane J (elements 4J..4J+3) of the 16 rows: the chunk's low (J < 4) or high
  // nibbles, bit 4 from the permuted high-bit words.
  template <int J>
  __m512i u() const {
    const __m512i v = _mm512_loadu_si512(gb + F::kQuants + 64 * (J % 4));
    const __m512i hb = _mm512_loadu_si512(gb + F::kBits);
    const __m512i nib = J < 4 ? v : _mm512_srli_epi16(v, 4);
    const __m512i hj = J < 4 ? _mm512_slli_epi32(hb, 4 - J) : _mm512_srli_epi32(hb, J - 4);
    // (nib & 0x0f) | (hj & 0x10)
    return _mm512_ternarylogic_epi32(nib, _mm512_and_si512(hj, _mm512_set1_epi8(0x10)), _mm512_set1_epi8(0x0f),
                                     0xEC);
  }
};

struct alignas(64) Wide5 {  // one group block, unpacked
  uint8_t u[8][64];
  float dw[16], mw[16];
};

struct FromWide {
  static constexpr bool kStream = false;
  const Wide5* w;
  const Wide5* cur = nullptr;
  void at(int64_t b) { cur = w + b; }
  __m512 dw() const { return _mm512_load_ps(cur->dw); }
  __m512 mw() const { return _mm512_load_ps(cur->mw); }
  template <int J>
  __m512i u() const {
    return _mm512_load_si512(cur->u[J]);
  }
};

template <bool Min>
void expand(const char* g, int64_t nb, Wide5* out) {
  FromPacked<Min> src{g};
  for (int64_t b = 0; b < nb; ++b) {
    src.at(b);
    Wide5& o = out[b];
    _mm512_store_ps(o.dw, src.dw());
    _mm512_store_ps(o.mw, Min ? src.mw() : _mm512_setzero_ps());
    _mm512_store_si512(o.u[0], src.template u<0>());
    _mm512_store_si512(o.u[1], src.template u<1>());
    _mm512_store_si512(o.u[2], src.template u<2>());
    _mm512_store_si512(o.u[3], src.template u<3>());
    _mm512_store_si512(o.u[4], src.template u<4>());
    _mm512_store_si512(o.u[5], src.template u<5>());
    _mm512_store_si512(o.u[6], src.template u<6>());
    _mm512_store_si512(o.u[7], src.template u<7>());
  }
}

// Lane J of a block for 16 rows x T tokens: one exact int32 sum of 4 products
// per row and token, one FMA into that lane's accumulator.
template <bool Min, int T, int J, class Src>
__attribute__((always_inline)) inline void lane(__m512 (&acc)[T][8], const Src& src, const __m512 (&dd)[T],
                                                const int8_t* const (&q)[T], const X5Tok* const (&k)[T]) {
  const __m512i u = src.template u<J>();
#pragma GCC unroll 4
  for (int t = 0; t < T; ++t) {
    const __m512i s0 = Min ? _mm512_setzero_si512() : _mm512_set1_epi32(k[t]->start[J]);
    const __m512i s = dpbusd512(s0, u, bcast4(q[t] + 4 * J));
    acc[t][J] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), dd[t], acc[t][J]);
  }
}

// 16 rows x T tokens. Not inlined: inside the driver GCC kept the 8T
// accumulators worse (measured 0.7x).
template <bool Min, int T, class Src>
__attribute__((noinline)) void x16_tile(Src src, const char* x, size_t xs, const X5Tok* tk, int64_t nb, float* y,
                                        size_t ldy) {
  using F = Q5Fmt<Min>;
  __m512 acc[T][8], mn[T];
  for (int t = 0; t < T; ++t) {
    mn[t] = _mm512_setzero_ps();
    for (int j = 0; j < 8; ++j) acc[t][j] = _mm512_setzero_ps();
  }
  for (int64_t b = 0; b < nb; ++b) {
    src.at(b);
    if constexpr (Src::kStream && T == 1) {  // decode streams the weights once: prefetch as decode.cpp does
      const char* gb = src.gb;
      _mm_prefetch(gb + 4096, _MM_HINT_T0);
      _mm_prefetch(gb + 4096 + 128, _MM_HINT_T0);
      _mm_prefetch(gb + 4096 + 256, _MM_HINT_T0);
    }
    const __m512 dw = src.dw();
    __m512 dd[T];
    const int8_t* q[T];
    const X5Tok* k[T];
    for (int t = 0; t < T; ++t) {
      k[t] = tk + t * nb + b;
      dd[t] = _mm512_mul_ps(dw, _mm512_set1_ps(k[t]->dx));
      q[t] = F::qs(x + t * xs, b);
      if constexpr (Min) mn[t] = _mm512_add_ps(mn[t], _mm512_mul_ps(src.mw(), _mm512_set1_ps(k[t]->sx)));
    }
    lane<Min, T, 0>(acc, src, dd, q, k);
    lane<Min, T, 1>(acc, src, dd, q, k);
    lane<Min, T, 2>(acc, src, dd, q, k);
    lane<Min, T, 3>(acc, src, dd, q, k);
    lane<Min, T, 4>(acc, src, dd, q, k);
    lane<Min, T, 5>(acc, src, dd, q, k);
    lane<Min, T, 6>(acc, src, dd, q, k);
    lane<Min, T, 7>(acc, src, dd, q, k);
  }
  for (int t = 0; t < T; ++t) {
    const __m512* a = acc[t];
    const __m512 r = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(a[0], a[4]), _mm512_add_ps(a[2], a[6])),
                                   _mm512_add_ps(_mm512_add_ps(a[1], a[5]), _mm512_add_ps(a[3], a[7])));
    _mm512_storeu_ps(y + t * ldy, _mm512_add_ps(r, mn[t]));  // + 0.0f for Q5_0, as the reference
  }
}

template <bool Min, class Src>
void tile_n(int nt, const Src& src, const char* x, size_t xs, const X5Tok* tk, int64_t nb, float* y, size_t ldy) {
  switch (nt) {
    case 1: return x16_tile<Min, 1>(src, x, xs, tk, nb, y, ldy);
    case 2: return x16_tile<Min, 2>(src, x, xs, tk, nb, y, ldy);
    default: return x16_tile<Min, 3>(src, x, xs, tk, nb, y, ldy);
  }
}

// Row i of a group outside whole groups of [r0, r1) (a thread split inside a
// group): the scalar reference's arithmetic, read from the packed layout.
template <bool Min>
void x16_row(const char* g, int i, const char* x, size_t xs, int64_t nb, int64_t n_tok, float* y, size_t ldy) {
  using F = Q5Fmt<Min>;
  for (int64_t t = 0; t < n_tok; ++t) {
    const char* xr = x + t * xs;
    float acc[8] = {}, mins = 0.0f;
    for (int64_t b = 0; b < nb; ++b) {
      const uint8_t* gb = reinterpret_cast<const uint8_t*>(g + b * F::kBlock);
      uint16_t xh[2], d, m = 0;
      std::memcpy(xh, xr + b * F::kActBlock, 4);
      std::memcpy(&d, gb + 2 * i, 2);
      if (Min) std::memcpy(&m, gb + 2 * kR + 2 * i, 2);
      uint32_t hp;
      std::memcpy(&hp, gb + F::kBits + 4 * i, 4);
      const uint32_t h = q5_x16_unbits(hp);
      const int8_t* q = F::qs(xr, b);
      const float dd = h2f(d) * h2f(xh[0]);
      if (Min) mins += h2f(m) * h2f(xh[1]);
      for (int l = 0; l < 8; ++l) {
        int32_t s = 0;
        for (int k = 0; k < 4; ++k) {
          const int e = 4 * l + k;
          const uint8_t byte = gb[F::kQuants + 64 * (e % 16 / 4) + 4 * i + e % 4];
          const int w = ((e < 16 ? byte & 0x0f : byte >> 4) | (((h >> e) & 1) << 4)) - (Min ? 0 : 16);
          s += w * q[e];
        }
        acc[l] = std::fma(static_cast<float>(s), dd, acc[l]);
      }
    }
    y[t * ldy] = ((acc[0] + acc[4]) + (acc[2] + acc[6])) + ((acc[1] + acc[5]) + (acc[3] + acc[7])) + mins;
  }
}

template <bool Min>
void gemm_q5_x16(const void* W, size_t ws, const void* X, size_t xs, float* Y, size_t ldy, int64_t K, int64_t r0,
                 int64_t r1, int64_t n_tok) {
  const char* w = static_cast<const char*>(W);
  const char* x = static_cast<const char*>(X);
  const int64_t nb = K / QK;
  // Per-token block terms: on the stack for decode, on the heap for a prompt.
  constexpr int64_t kStack = 256;
  X5Tok stack[kStack];
  std::vector<X5Tok> heap;
  X5Tok* tk = stack;
  if (n_tok * nb > kStack) {
    heap.resize(static_cast<size_t>(n_tok * nb));
    tk = heap.data();
  }
  prep<Min>(x, xs, n_tok, nb, tk);
  auto group = [&](int64_t r) { return w + (r - r % kR) * ws; };
  int64_t a = r0, e = r1;  // rows of partial groups at either end of the range
  while (a < e && a % kR != 0) {
    x16_row<Min>(group(a), int(a % kR), x, xs, nb, n_tok, Y + a, ldy);
    ++a;
  }
  while (e > a && e % kR != 0) {
    --e;
    x16_row<Min>(group(e), int(e % kR), x, xs, nb, n_tok, Y + e, ldy);
  }
  if (n_tok < kWideTokens) {  // decode, a speculative draft's check: unpack in registers
    for (int64_t t0 = 0; t0 < n_tok; t0 += kTokTile) {
      const int nt = static_cast<int>(n_tok - t0 < kTokTile ? n_tok - t0 : kTokTile);
      for (int64_t r = a; r < e; r += kR)
        tile_n<Min>(nt, FromPacked<Min>{group(r)}, x + t0 * xs, xs, tk + t0 * nb, nb, Y + t0 * ldy + r, ldy);
    }
    return;
  }
  // Row chunks of about 128 KiB of weights, unpacked once (1.7x the bytes),
  // stay in L2 while every token tile sweeps them.
  int64_t rchunk = static_cast<int64_t>((128 * 1024) / (ws ? ws : 1));
  rchunk = rchunk < kR ? kR : rchunk - rchunk % kR;
  std::vector<Wide5> wide(static_cast<size_t>(std::min(rchunk, e - a) / kR * nb));
  for (int64_t c0 = a; c0 < e; c0 += rchunk) {
    const int64_t c1 = c0 + rchunk < e ? c0 + rchunk : e;
    for (int64_t r = c0; r < c1; r += kR) expand<Min>(group(r), nb, &wide[(r - c0) / kR * nb]);
    for (int64_t t0 = 0; t0 < n_tok; t0 += kTokTile) {
      const int nt = static_cast<int>(n_tok - t0 < kTokTile ? n_tok - t0 : kTokTile);
      for (int64_t r = c0; r < c1; r += kR)
        tile_n<Min>(nt, FromWide{&wide[(r - c0) / kR * nb]}, x + t0 * xs, xs, tk + t0 * nb, nb,
                    Y + t0 * ldy + r, ldy);
    }
  }
}

}  // namespace

void gemm_q5_0_x16(const void* W, size_t ws, const void* X, size_t xs, float* Y, size_t ldy, int64_t K, int64_t r0,
                   int64_t r1, int64_t n_tok) {
  gemm_q5_x16<false>(W, ws, X, xs, Y, ldy, K, r0, r1, n_tok);
}

void gemm_q5_1_x16(const void* W, size_t ws, const void* X, size_t xs, float* Y, size_t ldy, int64_t K, int64_t r0,
                   int64_t r1, int64_t n_tok) {
  gemm_q5_x16<true>(W, ws, X, xs, Y, ldy, K, r0, r1, n_tok);
}

}  // namespace bluelm::kernels::avx512
