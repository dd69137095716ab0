// The AVX-512 gemm entries: which kernel runs a call. Q4_0 runs on 16-row
// interleaved groups with one row per lane (prefill and decode, q4_0_x16.cpp);
// Q4_1 and Q8_0 prefill on 512-bit tiles with two tokens per register
// (prefill.cpp), decode two rows per register where the layout allows
// (decode.cpp); Q5_0 and Q5_1 run on 16-row interleaved groups too
// (q5_x16.cpp), and on the file layout (rows not a multiple of 16) Q8_0's and
// Q4_1's kernels with their own block readers. Float gemms, the file-layout
// Q4_0 gemm and the conversions stay the AVX2 table's. Every output keeps the scalar reference's per-lane
// sequence, so results are bit-identical to it.
#include "kernels/avx512/avx512.h"

namespace bluelm::kernels::avx512 {
namespace {

using DecodeFn = void (*)(const char*, size_t, const char*, size_t, float*, size_t, int64_t, int64_t, int64_t);
using PrefillFn = void (*)(const char*, size_t, int, const char*, size_t, float*, size_t, int64_t, int64_t, int64_t,
                           int64_t);

// A file-layout gemm: decode for one token, the prefill tiles otherwise.
template <DecodeFn Decode, PrefillFn Prefill>
void gemm_file(const void* W, size_t ws, const void* X, size_t xs, float* Y, size_t ldy, int64_t K, int64_t r0,
               int64_t r1, int64_t n_tok) {
  const char* w = static_cast<const char*>(W);
  const char* x = static_cast<const char*>(X);
  if (n_tok == 1) return Decode(w, ws, x, xs, Y, ldy, K, r0, r1);
  Prefill(w, ws, 0, x, xs, Y, ldy, K, r0, r1, n_tok);
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
  t.gemm[W_Q8_0] = gemm_file<decode_q8_0, prefill_q8_0>;
  t.gemm[W_Q5_0] = gemm_file<decode_q5_0, prefill_q5_0>;
  t.gemm[W_Q5_1] = gemm_file<decode_q5_1, prefill_q5_1>;
  t.gemm[W_Q4_1] = gemm_q4_1<0>;
  // Q4_0 reads 16-row interleaved groups, Q4_1 decode 4-row packed groups; Q8_0
  // keeps the file layout (its decode reads two rows per register there).
  t.pack_rows[W_Q4_0] = kQ4x16Rows;
  t.gemm_packed[W_Q4_0] = gemm_q4_0_x16;
  t.pack[W_Q4_0] = repack_q4_0_x16;
  t.unpack[W_Q4_0] = unpack_q4_0_x16;
  t.pack_rows[W_Q4_1] = 4;
  t.gemm_packed[W_Q4_1] = gemm_q4_1<4>;
  t.packed_name[W_Q4_0] = "q4_0_x16 (16 rows in lanes)";
  t.packed_name[W_Q5_0] = "q5_0_x16 (16 rows in lanes)";
  t.packed_name[W_Q5_1] = "q5_1_x16 (16 rows in lanes)";
  t.pack_rows[W_Q5_0] = t.pack_rows[W_Q5_1] = kQ5x16Rows;
  t.gemm_packed[W_Q5_0] = gemm_q5_0_x16;
  t.pack[W_Q5_0] = repack_q5_0_x16;
  t.unpack[W_Q5_0] = unpack_q5_0_x16;
  t.gemm_packed[W_Q5_1] = gemm_q5_1_x16;
  t.pack[W_Q5_1] = repack_q5_1_x16;
  t.unpack[W_Q5_1] = unpack_q5_1_x16;
  t.pack_rows[W_Q8_0] = 0;  // decode reads the file layout
  t.gemm_packed[W_Q8_0] = nullptr;
}

}  // namespace bluelm::kernels::avx512
