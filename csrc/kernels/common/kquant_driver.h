// The driver of the row-interleaved K-quant gemms (kernels/kquant_pack.h),
// ISA-neutral: per call, each token's super-block terms are prepared once
// (Fmt::prep into a KTok), then every R-row group sweeps token chunks that
// stay in L2, 1..V::kMaxT (4 or 8) tokens per Fmt::tile call. Fmt (an ISA's format class, as
// x86/kquant_tiles.h and arm/kquant_tiles.h define) gives kType, kBlock,
// prep(const BlockQ8_K&, int32_t*) and template <int T> tile(group, tokens, nb,
// y, ldy) writing R rows x T tokens. Internal linkage: each ISA file gets its
// own copy with its own flags.
#pragma once
#include <cstddef>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "core/block_formats.h"
#include "kernels/kernels.h"
#include "kernels/kquant_pack.h"

namespace bluelm::kernels {
namespace {

// Per token and super-block, what every row shares: the activation block and
// the integer terms of the bsums (Q4_K/Q5_K: 4 words of two int16 sub-block
// sums; Q6_K: -32 * bsum of each of the 16 sub-blocks).
struct KTok {
  const BlockQ8_K* x;
  int32_t w[16];
};

// The word size of Fmt's quant fields in its layout (kquant_pack.h's qword):
// Fmt::kQWord where given, else 4.
template <class Fmt, class = void>
struct QWordOf {
  static constexpr int value = 4;
};
template <class Fmt>
struct QWordOf<Fmt, std::void_t<decltype(Fmt::kQWord)>> {
  static constexpr int value = Fmt::kQWord;
};

// Whether Fmt stores the first Fmt::kOrdered chunks of 4*R bytes of each
// interleaved super-block group (kquant_pack.h's layout) in its tile's read
// order, so decode streams the group in address order (the hardware prefetcher
// follows one rising stream, not several): position p holds the layout's
// chunk Fmt::chunk(p).
template <class Fmt, class = void>
struct KReorders : std::false_type {};
template <class Fmt>
struct KReorders<Fmt, std::void_t<decltype(Fmt::kOrdered)>> : std::bool_constant<(Fmt::kOrdered > 0)> {};

// One super-block group of R rows in place: the layout's order to Fmt's
// (Forward) or back.
template <class Fmt, int R, bool Forward>
void k_reorder(char* blk) {
  constexpr size_t C = size_t(4) * R;
  char tmp[Fmt::kOrdered * C];
  std::memcpy(tmp, blk, sizeof tmp);
  for (int p = 0; p < Fmt::kOrdered; ++p) {
    if (Forward) std::memcpy(blk + p * C, tmp + Fmt::chunk(p) * C, C);
    else std::memcpy(blk + Fmt::chunk(p) * C, tmp + p * C, C);
  }
}

// The PackFn entries (kernels.h): kquant_pack.h's groups, then Fmt's order.
template <class Fmt, class V>
void k_pack(const void* src, void* dst, size_t row_bytes, int64_t rows) {
  kquant_pack(Fmt::kType, V::R, src, dst, row_bytes, rows, QWordOf<Fmt>::value);
  if constexpr (KReorders<Fmt>::value) {
    const size_t blk = size_t(V::R) * Fmt::kBlock, n = row_bytes * size_t(rows);
    for (size_t o = 0; o + blk <= n; o += blk) k_reorder<Fmt, V::R, true>(static_cast<char*>(dst) + o);
  }
}
template <class Fmt, class V>
void k_unpack(const void* src, void* dst, size_t row_bytes, int64_t rows) {
  if constexpr (KReorders<Fmt>::value) {
    const size_t blk = size_t(V::R) * Fmt::kBlock, n = row_bytes * size_t(rows);
    std::vector<char> groups(static_cast<const char*>(src), static_cast<const char*>(src) + n);
    for (size_t o = 0; o + blk <= n; o += blk) k_reorder<Fmt, V::R, false>(groups.data() + o);
    kquant_unpack(Fmt::kType, V::R, groups.data(), dst, row_bytes, rows, QWordOf<Fmt>::value);
  } else {
    kquant_unpack(Fmt::kType, V::R, src, dst, row_bytes, rows, QWordOf<Fmt>::value);
  }
}

// A group's R rows x T tokens (T <= V::kMaxT, 8 at most) into y (row stride 1,
// token stride ldy).
template <class Fmt, class V>
void k_group(const char* g, const KTok* const* tk, int T, int64_t nb, float* y, size_t ldy) {
  static_assert(V::kMaxT == 4 || V::kMaxT == 8, "tiles of 4 or 8 tokens");
  if constexpr (V::kMaxT == 8) {
    switch (T) {
      case 5: return Fmt::template tile<5>(g, tk, nb, y, ldy);
      case 6: return Fmt::template tile<6>(g, tk, nb, y, ldy);
      case 7: return Fmt::template tile<7>(g, tk, nb, y, ldy);
      case 8: return Fmt::template tile<8>(g, tk, nb, y, ldy);
      default: break;
    }
  }
  switch (T) {
    case 1: return Fmt::template tile<1>(g, tk, nb, y, ldy);
    case 2: return Fmt::template tile<2>(g, tk, nb, y, ldy);
    case 3: return Fmt::template tile<3>(g, tk, nb, y, ldy);
    default: return Fmt::template tile<4>(g, tk, nb, y, ldy);
  }
}

// The gemm (kernels.h GemmFn) on interleaved groups (Packed) or the file
// layout (each R rows from r0 on interleaved into a scratch group first, a
// short last group padded with zero rows). Rows of [r0, r1) that fill a packed
// group only in part are computed with their whole group into scratch outputs.
template <class Fmt, class V, bool Packed>
void k_gemm(const void* W, size_t ws, const void* X, size_t xs, float* Y, size_t ldy, int64_t K, int64_t r0,
            int64_t r1, int64_t n_tok) {
  constexpr int R = V::R;
  const char* w = static_cast<const char*>(W);
  const char* x = static_cast<const char*>(X);
  const int64_t nb = K / QK_K;
  // Decode calls this per matmul and thread for every token: its terms fit on
  // the stack (K up to 16384), so only prompts allocate.
  constexpr int64_t kStackTerms = 64;
  KTok stack[kStackTerms];
  std::vector<KTok> heap;
  if (n_tok * nb > kStackTerms) heap.resize(static_cast<size_t>(n_tok * nb));
  KTok* const prep = heap.empty() ? stack : heap.data();
  for (int64_t t = 0; t < n_tok; ++t) {
    const BlockQ8_K* xb = reinterpret_cast<const BlockQ8_K*>(x + t * xs);
    for (int64_t b = 0; b < nb; ++b) {
      KTok& k = prep[size_t(t * nb + b)];
      k.x = xb + b;
      Fmt::prep(xb[b], k.w);
    }
  }
  std::vector<char> scratch;  // one interleaved group (file layout only)
  if (!Packed) scratch.resize(size_t(R) * size_t(nb) * Fmt::kBlock + 64);
  std::vector<float> part;  // outputs of a group only partly in [r0, r1)
  // Token chunks of about 128 KiB of activations stay in L2 while every group sweeps them.
  int64_t tchunk = static_cast<int64_t>((128 * 1024) / (xs ? xs : 1));
  constexpr int kMaxT = V::kMaxT;
  tchunk = tchunk < kMaxT ? kMaxT : tchunk - tchunk % kMaxT;
  for (int64_t t0 = 0; t0 < n_tok; t0 += tchunk) {
    const int64_t t1 = t0 + tchunk < n_tok ? t0 + tchunk : n_tok;
    for (int64_t g0 = Packed ? r0 - r0 % R : r0; g0 < r1; g0 += R) {
      const char* g = w + g0 * ws;
      if (!Packed) {
        const int n = static_cast<int>(r1 - g0 < R ? r1 - g0 : R);
        for (int64_t b = 0; b < nb; ++b) {
          char* blk = scratch.data() + b * R * Fmt::kBlock;
          kquant_gather(Fmt::kType, R, w + g0 * ws, ws, n, b, blk, QWordOf<Fmt>::value);
          if constexpr (KReorders<Fmt>::value) k_reorder<Fmt, R, true>(blk);
        }
        g = scratch.data();
      }
      const int64_t lo = g0 < r0 ? r0 : g0, hi = g0 + R < r1 ? g0 + R : r1;
      const bool whole = lo == g0 && hi == g0 + R;
      if (!whole) part.assign(size_t(t1 - t0) * R, 0.0f);
      for (int64_t t = t0; t < t1; t += kMaxT) {
        const int T = static_cast<int>(t1 - t < kMaxT ? t1 - t : kMaxT);
        const KTok* tk[kMaxT];
        for (int i = 0; i < T; ++i) tk[i] = &prep[size_t((t + i) * nb)];
        if (whole) k_group<Fmt, V>(g, tk, T, nb, Y + t * ldy + g0, ldy);
        else k_group<Fmt, V>(g, tk, T, nb, part.data() + (t - t0) * R, R);
      }
      if (!whole)
        for (int64_t t = t0; t < t1; ++t)
          for (int64_t r = lo; r < hi; ++r) Y[t * ldy + r] = part[size_t((t - t0) * R + (r - g0))];
    }
  }
}

// A table's entries of one super-block type (Fmt::kType): the gemms over the
// file layout and over groups of V::R interleaved rows, and the packers of those groups.
template <class Fmt, class V>
void set_kquant_entry(KernelTable& t) {
  const int s = weight_slot(Fmt::kType);
  t.gemm[s] = k_gemm<Fmt, V, false>;
  t.gemm_packed[s] = k_gemm<Fmt, V, true>;
  t.pack_rows[s] = V::R;
  t.pack[s] = k_pack<Fmt, V>;
  t.unpack[s] = k_unpack<Fmt, V>;
}

// A table's Q4_K, Q5_K and Q6_K entries.
template <class Q4K, class Q5K, class Q6K, class V>
void set_kquant_entries(KernelTable& t) {
  set_kquant_entry<Q4K, V>(t);
  set_kquant_entry<Q5K, V>(t);
  set_kquant_entry<Q6K, V>(t);
}

}  // namespace
}  // namespace bluelm::kernels
