// NEON dotprod gemms of the K-quant and 5-bit types, each bit-identical to the
// scalar reference (kernels/scalar/kquants.h): Q4_K, Q5_K, Q6_K on 4-row
// interleaved groups by SDOT by element (arm/kquant_tiles.h), repacked at load
// or interleaved per call from the file layout; Q5_0, Q5_1 (x86's 8-lane
// order) and IQ4_NL (one accumulator) on the file layout (arm/block_tile.h);
// Q2_K, Q3_K and IQ4_XS on the file layout, each super-block unpacked by NEON
// once per row tile (arm/superblock_tile.h).
#include "kernels/arm/block_tile.h"
#include "kernels/arm/kquant_tiles.h"
#include "kernels/arm/superblock_tile.h"
#include "kernels/common/gemm_driver.h"
#include "kernels/neon_dotprod/neon_dotprod.h"

namespace bluelm::kernels::neon_dotprod {
namespace {

void gemm_q5_0(const void* W, size_t ws, const void* X, size_t xs, float* Y, size_t ldy, int64_t K, int64_t r0,
               int64_t r1, int64_t n_tok) {
  gemm_tiles<OrderTile<Lanes8, Q5Blocks<false>>, 0>(W, ws, X, xs, Y, ldy, K, r0, r1, n_tok);
}
void gemm_q5_1(const void* W, size_t ws, const void* X, size_t xs, float* Y, size_t ldy, int64_t K, int64_t r0,
               int64_t r1, int64_t n_tok) {
  gemm_tiles<OrderTile<Lanes8, Q5Blocks<true>>, 0>(W, ws, X, xs, Y, ldy, K, r0, r1, n_tok);
}
void gemm_iq4_nl(const void* W, size_t ws, const void* X, size_t xs, float* Y, size_t ldy, int64_t K, int64_t r0,
                 int64_t r1, int64_t n_tok) {
  gemm_tiles<OrderTile<OneAcc, IQ4_NLBlocks>, 0>(W, ws, X, xs, Y, ldy, K, r0, r1, n_tok);
}
template <class Fmt>
void gemm_super(const void* W, size_t ws, const void* X, size_t xs, float* Y, size_t ldy, int64_t K, int64_t r0,
                int64_t r1, int64_t n_tok) {
  gemm_tiles<SuperTile<Fmt>, 0>(W, ws, X, xs, Y, ldy, K, r0, r1, n_tok);
}

}  // namespace

void fill_kquants(KernelTable& t) {
  fill_kquant_tiles(t);
  t.gemm[W_Q5_0] = gemm_q5_0;
  t.gemm[W_Q5_1] = gemm_q5_1;
  t.gemm[W_IQ4_NL] = gemm_iq4_nl;
  t.gemm[W_Q2_K] = gemm_super<Q2KUnpack>;
  t.gemm[W_Q3_K] = gemm_super<Q3KUnpack>;
  t.gemm[W_IQ4_XS] = gemm_super<IQ4XSUnpack>;
}

}  // namespace bluelm::kernels::neon_dotprod
