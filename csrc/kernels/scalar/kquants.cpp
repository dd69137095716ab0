// Scalar reference kernels of the 5-bit, IQ4 and K-quant weight types; the
// order of arithmetic is specified in kquants.h. Blocks are unpacked once per
// tile of tokens (core/block_unpack.h) and dotted with each token's block.
#include "kernels/scalar/kquants.h"

#include <algorithm>
#include <cmath>

#include "core/block_unpack.h"
#include "core/quantize.h"
#include "kernels/scalar/scalar.h"
#include "core/no_fp_contract.h"  // last: no FMA contraction below

namespace bluelm::kernels::scalar {
namespace {

constexpr int64_t kTokTile = 16;  // tokens sharing one unpacking of a weight block

inline int32_t dot_i8(const int8_t* a, const int8_t* b, int n) {
  int32_t s = 0;
  for (int i = 0; i < n; ++i) s += int32_t(a[i]) * int32_t(b[i]);
  return s;
}

// One super-block's contribution to one output (kquants.h).
inline float accumulate_k(const UnpackedK& u, const BlockQ8_K& x, float acc) {
  const int nsub = QK_K / u.sub;
  int32_t isum = 0;
  for (int s = 0; s < nsub; ++s) isum += u.sc[s] * dot_i8(u.q + s * u.sub, x.qs + s * u.sub, u.sub);
  acc = std::fma(u.d * x.d, static_cast<float>(isum), acc);
  if (u.has_min) {
    const int per = u.sub / 16;  // bsums (16 values each) per sub-block
    int32_t imin = 0;
    for (int s = 0; s < nsub; ++s) {
      int32_t bs = 0;
      for (int k = 0; k < per; ++k) bs += x.bsums[s * per + k];
      imin += u.mn[s] * bs;
    }
    acc = std::fma(-(u.dmin * x.d), static_cast<float>(imin), acc);
  }
  return acc;
}

template <typename Block>
void gemm_k(const void* W, size_t w_stride, const void* X, size_t x_stride, float* Y, size_t ldy,
            int64_t K, int64_t r0, int64_t r1, int64_t n_tok) {
  const int64_t nb = K / QK_K;
  const char* xbase = static_cast<const char*>(X);
  UnpackedK u;
  float acc[kTokTile];
  for (int64_t r = r0; r < r1; ++r) {
    const Block* w = reinterpret_cast<const Block*>(static_cast<const char*>(W) + r * w_stride);
    for (int64_t t0 = 0; t0 < n_tok; t0 += kTokTile) {
      const int64_t nt = std::min(kTokTile, n_tok - t0);
      std::fill(acc, acc + nt, 0.0f);
      for (int64_t b = 0; b < nb; ++b) {
        unpack_block(w[b], &u);
        for (int64_t t = 0; t < nt; ++t) {
          const BlockQ8_K* x = reinterpret_cast<const BlockQ8_K*>(xbase + (t0 + t) * x_stride);
          acc[t] = accumulate_k(u, x[b], acc[t]);
        }
      }
      for (int64_t t = 0; t < nt; ++t) Y[(t0 + t) * ldy + r] = acc[t];
    }
  }
}

// The 8 sums of 4 consecutive products of a block (products first: a loop the
// compiler vectorises).
inline void lane_sums(const int8_t* a, const int8_t* b, int32_t* lane) {
  int16_t p[QK];
  for (int j = 0; j < QK; ++j) p[j] = static_cast<int16_t>(a[j] * b[j]);
  for (int l = 0; l < 8; ++l) lane[l] = int32_t(p[4 * l]) + p[4 * l + 1] + p[4 * l + 2] + p[4 * l + 3];
}

// Q5_0 (against Q8_0) and Q5_1 (against Q8_1) in the order of ggml's x86 vec_dot,
// as gemm.cpp's Q8_0 and Q4_1: per block, 8 lanes of 4 consecutive products
// summed exactly, each lane's sum into its own accumulator by one FMA with
// d_w * d_x; lanes folded at the end; Q5_1's m_w * s_x summed apart, added last.
// Blocks are unpacked once per tile of tokens.
template <typename Block, typename ActBlock, bool kHasMin>
void gemm_5bit(const void* W, size_t w_stride, const void* X, size_t x_stride, float* Y, size_t ldy,
               int64_t K, int64_t r0, int64_t r1, int64_t n_tok) {
  const int64_t nb = K / QK;
  const char* xbase = static_cast<const char*>(X);
  int8_t q[QK];
  float acc[kTokTile][8], mins[kTokTile];
  for (int64_t r = r0; r < r1; ++r) {
    const Block* w = reinterpret_cast<const Block*>(static_cast<const char*>(W) + r * w_stride);
    for (int64_t t0 = 0; t0 < n_tok; t0 += kTokTile) {
      const int64_t nt = std::min(kTokTile, n_tok - t0);
      for (int64_t t = 0; t < nt; ++t) {
        std::fill(acc[t], acc[t] + 8, 0.0f);
        mins[t] = 0.0f;
      }
      for (int64_t b = 0; b < nb; ++b) {
        unpack_block(w[b], q);
        const float dw = fp16_to_fp32(w[b].d);
        for (int64_t t = 0; t < nt; ++t) {
          const ActBlock& x = reinterpret_cast<const ActBlock*>(xbase + (t0 + t) * x_stride)[b];
          const float d = dw * fp16_to_fp32(x.d);
          if constexpr (kHasMin) mins[t] += fp16_to_fp32(w[b].m) * fp16_to_fp32(x.s);
          int32_t lane[8];
          lane_sums(q, x.qs, lane);
          for (int l = 0; l < 8; ++l) acc[t][l] = std::fma(static_cast<float>(lane[l]), d, acc[t][l]);
        }
      }
      for (int64_t t = 0; t < nt; ++t) Y[(t0 + t) * ldy + r] = sum8_tree(acc[t]) + mins[t];
    }
  }
}

// IQ4_NL against Q8_0 in the order of llama.cpp's repacked x86 IQ4_NL (and Q4_0)
// gemm: each block's 32 products summed exactly, one FMA with d_w * d_x into a
// single accumulator per output. Blocks are unpacked once per tile of tokens.
void gemm_iq4_nl(const void* W, size_t w_stride, const void* X, size_t x_stride, float* Y, size_t ldy,
                 int64_t K, int64_t r0, int64_t r1, int64_t n_tok) {
  const int64_t nb = K / QK;
  const char* xbase = static_cast<const char*>(X);
  int8_t q[QK];
  float acc[kTokTile];
  for (int64_t r = r0; r < r1; ++r) {
    const BlockIQ4_NL* w = reinterpret_cast<const BlockIQ4_NL*>(static_cast<const char*>(W) + r * w_stride);
    for (int64_t t0 = 0; t0 < n_tok; t0 += kTokTile) {
      const int64_t nt = std::min(kTokTile, n_tok - t0);
      std::fill(acc, acc + nt, 0.0f);
      for (int64_t b = 0; b < nb; ++b) {
        unpack_block(w[b], q);
        const float dw = fp16_to_fp32(w[b].d);
        for (int64_t t = 0; t < nt; ++t) {
          const BlockQ8_0& x = reinterpret_cast<const BlockQ8_0*>(xbase + (t0 + t) * x_stride)[b];
          acc[t] = std::fma(dw * fp16_to_fp32(x.d), static_cast<float>(dot_i8(q, x.qs, QK)), acc[t]);
        }
      }
      for (int64_t t = 0; t < nt; ++t) Y[(t0 + t) * ldy + r] = acc[t];
    }
  }
}

void convert_q8_k(const float* x, void* y, int64_t k) { quantize_row_q8_k(x, static_cast<BlockQ8_K*>(y), k); }

}  // namespace

void fill_kquants(KernelTable& t) {
  t.gemm[W_Q5_0] = gemm_5bit<BlockQ5_0, BlockQ8_0, false>;
  t.gemm[W_Q5_1] = gemm_5bit<BlockQ5_1, BlockQ8_1, true>;
  t.gemm[W_IQ4_NL] = gemm_iq4_nl;
  t.gemm[W_Q2_K] = gemm_k<BlockQ2_K>;
  t.gemm[W_Q3_K] = gemm_k<BlockQ3_K>;
  t.gemm[W_Q4_K] = gemm_k<BlockQ4_K>;
  t.gemm[W_Q5_K] = gemm_k<BlockQ5_K>;
  t.gemm[W_Q6_K] = gemm_k<BlockQ6_K>;
  t.gemm[W_IQ4_XS] = gemm_k<BlockIQ4_XS>;
  t.convert[A_Q8_K] = convert_q8_k;
}

}  // namespace bluelm::kernels::scalar
