// NEON + dotprod (SDOT) int8 gemms: the tiles of arm/qtile.h with SDOT lane
// sums (lane l sums elements 4l..4l+3 of each 16-element half).
#include "kernels/arm/qtile.h"
#include "kernels/common/gemm_driver.h"
#include "kernels/neon_dotprod/neon_dotprod.h"

namespace bluelm::kernels::neon_dotprod {
namespace {

struct Sdot {
  static int32x4_t dot32(int8x16_t w0, int8x16_t w1, int8x16_t x0, int8x16_t x1) {
    return vdotq_s32(vdotq_s32(vdupq_n_s32(0), w0, x0), w1, x1);
  }
};

}  // namespace

void gemm_q4_0(const void* W, size_t ws, const void* X, size_t xs, float* Y, size_t ldy, int64_t K, int64_t r0,
               int64_t r1, int64_t n_tok) {
  gemm_tiles<QTile<Sdot, Q4_0Blocks>, 0>(W, ws, X, xs, Y, ldy, K, r0, r1, n_tok);
}
void gemm_q4_1(const void* W, size_t ws, const void* X, size_t xs, float* Y, size_t ldy, int64_t K, int64_t r0,
               int64_t r1, int64_t n_tok) {
  gemm_tiles<QTile<Sdot, Q4_1Blocks>, 0>(W, ws, X, xs, Y, ldy, K, r0, r1, n_tok);
}
void gemm_q8_0(const void* W, size_t ws, const void* X, size_t xs, float* Y, size_t ldy, int64_t K, int64_t r0,
               int64_t r1, int64_t n_tok) {
  gemm_tiles<QTile<Sdot, Q8_0Blocks>, 0>(W, ws, X, xs, Y, ldy, K, r0, r1, n_tok);
}

void fill_gemm(KernelTable& t) {
  t.gemm[W_Q4_0] = gemm_q4_0;
  t.gemm[W_Q4_1] = gemm_q4_1;
  t.gemm[W_Q8_0] = gemm_q8_0;
}

}  // namespace bluelm::kernels::neon_dotprod
