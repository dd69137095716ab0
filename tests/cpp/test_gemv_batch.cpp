// The small-batch gemv (KernelTable::gemv_batch, gemv_batch_packed) against
// the table's own one-token gemm: every token's outputs bit for bit, for 2 to
// kGemvBatchMax tokens, row ranges split off packed-group boundaries (as pool
// threads split them), in the file layout and the packed one. Tables without
// the entry (the decoder then runs the one-token gemm per row) have nothing to check.
#include <cstdio>
#include <cstring>

#include "harness.h"
#include "kernels/repack.h"

using namespace bluelm;
using namespace bluelm::kernels;

namespace harness {
namespace {

// `extreme`: every quant saturated (the lane sums at their largest, e.g. the
// AVX-512 btile's exact-float bias range).
void check_batch(const KernelTable& isa, GgmlType wt, bool packed, int64_t rows, int64_t K, int64_t n_tok,
                 bool extreme = false) {
  const int slot = weight_slot(wt);
  if (packed) rows = (rows + isa.pack_rows[slot] - 1) / isa.pack_rows[slot] * isa.pack_rows[slot];  // whole groups, as at load
  const GemmFn batch = packed ? isa.gemv_batch_packed[slot] : isa.gemv_batch[slot];
  const GemmFn one = packed ? isa.gemm_packed[slot] : isa.gemm[slot];
  const GgmlType xt = vec_dot_type(wt);
  const size_t ws = row_bytes(wt, K), xs = row_bytes(xt, K) + 32;  // padded activation stride
  std::vector<uint8_t> W = make_weights(wt, rows, K, ws, extreme);
  if (packed) {
    std::vector<uint8_t> P(W.size());
    if (isa.pack[slot]) isa.pack[slot](W.data(), P.data(), ws, rows);
    else repack_rows(W.data(), P.data(), ws, type_info(uint32_t(wt))->block_bytes, rows, isa.pack_rows[slot]);
    W.swap(P);
  }
  const std::vector<float> xf = make_acts(n_tok, K, extreme);
  std::vector<uint8_t> X(n_tok * xs, 0x5A);
  for (int64_t t = 0; t < n_tok; ++t) isa.convert[act_slot(xt)](xf.data() + t * K, X.data() + t * xs, K);
  const size_t ldy = rows + 3;
  std::vector<float> want(n_tok * ldy, NAN), got(n_tok * ldy, NAN);
  for (int64_t t = 0; t < n_tok; ++t) one(W.data(), ws, X.data() + t * xs, xs, want.data() + t * ldy, ldy, K, 0, rows, 1);
  const int64_t split = rows / 3 | 1;  // odd: off a group boundary for any group of 2 or more rows
  batch(W.data(), ws, X.data(), xs, got.data(), ldy, K, 0, split, n_tok);
  batch(W.data(), ws, X.data(), xs, got.data(), ldy, K, split, rows, n_tok);
  char what[200];
  std::snprintf(what, sizeof what, "%s gemv_batch%s %s rows=%lld K=%lld n_tok=%lld%s bit-identical to one-token gemm",
                isa.isa, packed ? "_packed" : "", type_name(uint32_t(wt)), (long long)rows, (long long)K,
                (long long)n_tok, extreme ? " (saturated)" : "");
  check(std::memcmp(want.data(), got.data(), want.size() * sizeof(float)) == 0, what);
}

}  // namespace

void test_gemv_batch(const KernelTable& isa) {
  for (GgmlType wt : {GgmlType::F16, GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q5_0, GgmlType::Q5_1}) {
    const int slot = weight_slot(wt);
    for (bool packed : {false, true}) {
      if (!(packed ? isa.gemv_batch_packed[slot] : isa.gemv_batch[slot])) continue;
      for (int64_t K : {32, 576, 1536, 4320})
        for (int64_t n : {2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 16}) check_batch(isa, wt, packed, K >= 1536 ? 13 : 37, K, n);
      for (int64_t n : {3, 9, 16}) check_batch(isa, wt, packed, 37, 576, n, true);
    }
  }
}

}  // namespace harness
