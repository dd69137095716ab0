// The AVX-512 gemm entries: which kernel runs a call. Q4_0 runs on 16-row
// interleaved groups with one row per lane (prefill and decode, q4_0_x16.cpp);
// Q4_1 and Q8_0 prefill on 512-bit tiles with two tokens per register
// (prefill.cpp), decode two rows per register where the layout allows
// (decode.cpp). Float gemms, the file-layout Q4_0 gemm and the conversions
// stay the AVX2 table's. Every output keeps the scalar reference's per-lane
// sequence, so results are bit-identical to it.
#include "kernels/avx512/avx512.h"

namespace bluelm::kernels::avx512 {
namespace {

void gemm_q8_0(const void* W, size_t ws, const void* X, size_t xs, float* Y, size_t ldy, int64_t K, int64_t r0,
               int64_t r1, int64_t n_tok) {
  const char* w = static_cast<const char*>(W);
  const char* x = static_cast<const char*>(X);
  if (n_tok == 1) return decode_q8_0(w, ws, x, xs, Y, ldy, K, r0, r1);
  prefill_q8_0(w, ws, 0, x, xs, Y, ldy, K, r0, r1, n_tok);
}

// P: rows per packed group (0 = file layout).
template <int P>
void gemm_q4_1(const void* W, size_t ws, const void* X, size_t xs, float* Y, size_t ldy, int64_t K, int64_t r0,
               int64_t r1, int64_t n_tok) {
  const char* w = static_cast<const char*>(W);
  const char* x = static_cast<const char*>(X);
  if (n_tok == 1) {
    if (P) decode_q4_1_packed(w, ws, x, xs, Y, ldy, K, r0, r1);
    else decode_q4_1(w, ws, x, xs, Y, ldy, K, r0, r1);
    return;
  }
  prefill_q4_1(w, ws, P, x, xs, Y, ldy, K, r0, r1, n_tok);
}

}  // namespace

void fill_gemm(KernelTable& t) {
  t.gemm[W_Q8_0] = gemm_q8_0;
  t.gemm[W_Q4_1] = gemm_q4_1<0>;
  // Q4_0 reads 16-row interleaved groups, Q4_1 decode 4-row packed groups; Q8_0
  // keeps the file layout (its decode reads two rows per register there).
  t.pack_rows[W_Q4_0] = kQ4x16Rows;
  t.gemm_packed[W_Q4_0] = gemm_q4_0_x16;
  t.pack[W_Q4_0] = repack_q4_0_x16;
  t.unpack[W_Q4_0] = unpack_q4_0_x16;
  t.pack_rows[W_Q4_1] = 4;
  t.gemm_packed[W_Q4_1] = gemm_q4_1<4>;
  t.pack_rows[W_Q8_0] = 0;
  t.gemm_packed[W_Q8_0] = nullptr;
}

}  // namespace bluelm::kernels::avx512
