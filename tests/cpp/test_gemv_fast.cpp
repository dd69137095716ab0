// KernelTable::gemv_fast (a faster order of a Q8_0 gemm, not its bits) and
// the greedy screening built on it (llm/output_argmax.h):
//  - every output within gemv_fast_error() of the table's one-token gemm, on
//    random and saturated (every quant +-127 / -128) weights and activations;
//  - the screening's token equals the first maximum of the exact gemm on rows
//    built to tie or nearly tie: copies of one row with its blocks and their
//    4-quant groups permuted against a token whose blocks are all alike (the
//    same exact sum, different float roundings in both orders), exact
//    duplicates (a tie: the first must win), rows one quant step apart, the
//    rows split across two "threads" as Context::step_argmax splits them.
// Tables without the entry (the decoder then computes the logits) have nothing to check.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <numeric>

#include "core/block_formats.h"
#include "harness.h"
#include "llm/output_argmax.h"

using namespace bluelm;
using namespace bluelm::kernels;

namespace harness {
namespace {

Matrix q8_matrix(const std::vector<uint8_t>& W, int64_t rows, int64_t K) {
  Matrix m;
  m.data = W.data();
  m.type = GgmlType::Q8_0;
  m.rows = rows;
  m.cols = K;
  m.row_stride = row_bytes(GgmlType::Q8_0, K);
  return m;
}

std::vector<uint8_t> convert_acts(const KernelTable& isa, const std::vector<float>& xf, int64_t n, int64_t K) {
  const size_t xs = row_bytes(GgmlType::Q8_0, K);
  std::vector<uint8_t> X(n * xs);
  for (int64_t t = 0; t < n; ++t) isa.convert[act_slot(GgmlType::Q8_0)](xf.data() + t * K, X.data() + t * xs, K);
  return X;
}

void check_error(const KernelTable& isa, int64_t rows, int64_t K, int64_t n_tok, bool extreme) {
  const GemmFn fast = isa.gemv_fast[weight_slot(GgmlType::Q8_0)], one = isa.gemm[weight_slot(GgmlType::Q8_0)];
  const size_t ws = row_bytes(GgmlType::Q8_0, K), xs = row_bytes(GgmlType::Q8_0, K);
  const std::vector<uint8_t> W = make_weights(GgmlType::Q8_0, rows, K, ws, extreme);
  const std::vector<uint8_t> X = convert_acts(isa, make_acts(n_tok, K, extreme), n_tok, K);
  const float max_dw = max_block_scale_q8_0(q8_matrix(W, rows, K));
  std::vector<float> want(n_tok * rows), got(n_tok * rows);
  for (int64_t t = 0; t < n_tok; ++t) one(W.data(), ws, X.data() + t * xs, xs, want.data() + t * rows, rows, K, 0, rows, 1);
  const int64_t split = rows / 3 | 1;  // as threads split: any row
  fast(W.data(), ws, X.data(), xs, got.data(), rows, K, 0, split, n_tok);
  fast(W.data(), ws, X.data(), xs, got.data(), rows, K, split, rows, n_tok);
  bool ok = true;
  double worst = 0.0, scale = 0.0;  // the largest |got - want| / err seen; the largest |want| / err
  for (int64_t t = 0; t < n_tok; ++t) {
    const float err = gemv_fast_error(X.data() + t * xs, K, max_dw);
    for (int64_t r = 0; r < rows; ++r) {
      const double diff = std::fabs(double(got[t * rows + r]) - double(want[t * rows + r]));
      ok = ok && diff <= err;
      worst = std::max(worst, diff / err);
      scale = std::max(scale, std::fabs(double(want[t * rows + r])) / err);
    }
  }
  char what[200];
  std::snprintf(what, sizeof what, "%s gemv_fast Q8_0 rows=%lld K=%lld n_tok=%lld%s within gemv_fast_error (worst %.3g of it)",
                isa.isa, (long long)rows, (long long)K, (long long)n_tok, extreme ? " (saturated)" : "", worst);
  check(ok, what);
  // The bound is useful: far below the values it separates.
  std::snprintf(what, sizeof what, "%s gemv_fast_error rows=%lld K=%lld%s under 1%% of the largest value (%.3g)",
                isa.isa, (long long)rows, (long long)K, extreme ? " (saturated)" : "", 1.0 / scale);
  check(scale > 100.0, what);
}

// Rows that tie or nearly tie at the top, for n_tok tokens whose blocks are each all alike.
struct TieCase {
  std::vector<uint8_t> W, X;
  int64_t rows, K;
};

TieCase tie_case(const KernelTable& isa, int64_t rows, int64_t K, int64_t n_tok) {
  const int64_t nb = K / QK;
  const size_t ws = row_bytes(GgmlType::Q8_0, K);
  TieCase c{make_weights(GgmlType::Q8_0, rows, K, ws, false), {}, rows, K};
  // Tokens: one random group of 4 values repeated over every block (so
  // permuting a row's blocks and a block's 4-quant groups keeps its exact
  // sum), every token's of the same signs.
  float sign[QK];
  for (int i = 0; i < QK; ++i) sign[i] = i < 4 ? (irand(0, 1) ? 1.0f : -1.0f) : sign[i % 4];
  std::vector<float> xf(n_tok * K);
  for (int64_t t = 0; t < n_tok; ++t) {
    float blk[QK];
    for (int i = 0; i < QK; ++i) blk[i] = i < 4 ? sign[i] * (0.1f + std::fabs(normal())) : blk[i % 4];
    for (int64_t b = 0; b < nb; ++b) std::memcpy(&xf[t * K + b * QK], blk, sizeof blk);
  }
  c.X = convert_acts(isa, xf, n_tok, K);
  // The base row (the family's source): quants of the tokens' signs, so its
  // value is the largest; every other row's scales a quarter of make_weights'.
  auto block = [&](int64_t r, int64_t b) { return reinterpret_cast<BlockQ8_0*>(c.W.data() + r * ws) + b; };
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t b = 0; b < nb; ++b) block(r, b)->d = fp32_to_fp16(fp16_to_fp32(block(r, b)->d) * 0.25f);
  const int64_t base = rows / 2;
  for (int64_t b = 0; b < nb; ++b) {
    block(base, b)->d = fp32_to_fp16(uniform(0.002f, 0.02f));
    for (int i = 0; i < QK; ++i) block(base, b)->qs[i] = int8_t(sign[i] * float(irand(1, 127)));
  }
  std::vector<int> order(nb), groups(8);
  for (int64_t r = 0; r < rows; ++r) {
    const int kind = irand(0, 9);
    if (r == base || kind > 5) continue;  // about 6 in 10 rows join the family
    if (kind == 0) {  // an exact copy: a tie the first row must win
      std::memcpy(c.W.data() + r * ws, c.W.data() + base * ws, ws);
      continue;
    }
    // The base row's blocks in another order, each block's 4-quant groups permuted.
    std::iota(order.begin(), order.end(), 0);
    std::shuffle(order.begin(), order.end(), rng());
    for (int64_t b = 0; b < nb; ++b) {
      const BlockQ8_0& from = *block(base, order[b]);
      BlockQ8_0& to = *block(r, b);
      to.d = from.d;
      std::iota(groups.begin(), groups.end(), 0);
      std::shuffle(groups.begin(), groups.end(), rng());
      for (int g = 0; g < 8; ++g) std::memcpy(to.qs + 4 * g, from.qs + 4 * groups[g], 4);
    }
    if (kind == 1) {  // one quant a step apart: near, not equal
      int8_t& q = block(r, irand(0, int(nb) - 1))->qs[irand(0, QK - 1)];
      q = int8_t(q == 127 ? 126 : q + 1);
    }
  }
  return c;
}

void check_ties(const KernelTable& isa, int64_t rows, int64_t K, int64_t n_tok) {
  const GemmFn fast = isa.gemv_fast[weight_slot(GgmlType::Q8_0)], one = isa.gemm[weight_slot(GgmlType::Q8_0)];
  const size_t xs = row_bytes(GgmlType::Q8_0, K);
  const TieCase c = tie_case(isa, rows, K, n_tok);
  const Matrix M = q8_matrix(c.W, rows, K);
  const float max_dw = max_block_scale_q8_0(M);
  std::vector<float> err(n_tok), exact(rows), Y(n_tok * rows);
  for (int64_t t = 0; t < n_tok; ++t) err[t] = gemv_fast_error(c.X.data() + t * xs, K, max_dw);
  // Two "threads", the first ending on a tile of 16 as step_argmax splits.
  const int64_t mid = (rows / 16 / 2) * 16;
  std::vector<RowMax> best(2 * n_tok);
  std::vector<int64_t> scratch;
  bool ok = argmax_rows(fast, one, M, c.X.data(), xs, n_tok, err.data(), 0, mid, Y.data(), rows, scratch, best.data());
  ok = ok && argmax_rows(fast, one, M, c.X.data(), xs, n_tok, err.data(), mid, rows, Y.data(), rows, scratch,
                         best.data() + n_tok);
  int near_ties = 0, ties = 0;
  for (int64_t t = 0; ok && t < n_tok; ++t) {
    one(c.W.data(), M.row_stride, c.X.data() + t * xs, xs, exact.data(), rows, K, 0, rows, 1);
    const int64_t want = std::max_element(exact.begin(), exact.end()) - exact.begin();  // the first maximum
    RowMax got;
    for (int i = 0; i < 2; ++i)
      if (best[i * n_tok + t].row >= 0) got.take(best[i * n_tok + t].value, best[i * n_tok + t].row);
    ok = got.row == want && got.value == exact[want];
    // rows within a few ulps of the top but not equal to it: the case the screening must get right
    for (int64_t r = 0; r < rows; ++r)
      near_ties += exact[r] != exact[want] && std::fabs(exact[r] - exact[want]) <= 1e-6f * std::fabs(exact[want]);
    for (int64_t r = want + 1; r < rows; ++r) ties += exact[r] == exact[want];
  }
  char what[200];
  std::snprintf(what, sizeof what,
                "%s greedy screening rows=%lld K=%lld n_tok=%lld: the exact first maximum (%d ties, %d within 1e-6)",
                isa.isa, (long long)rows, (long long)K, (long long)n_tok, ties, near_ties);
  check(ok, what);
}

// On random rows the screening keeps few rows for the exact pass.
void check_few_kept(const KernelTable& isa) {
  const int64_t rows = 4099, K = 576;
  const GemmFn fast = isa.gemv_fast[weight_slot(GgmlType::Q8_0)];
  const size_t ws = row_bytes(GgmlType::Q8_0, K), xs = row_bytes(GgmlType::Q8_0, K);
  const std::vector<uint8_t> W = make_weights(GgmlType::Q8_0, rows, K, ws, false);
  const std::vector<uint8_t> X = convert_acts(isa, make_acts(1, K, false), 1, K);
  std::vector<float> Y(rows);
  fast(W.data(), ws, X.data(), xs, Y.data(), rows, K, 0, rows, 1);
  std::vector<int64_t> kept;
  const bool ok = screen_rows(Y.data(), 0, rows, gemv_fast_error(X.data(), K, max_block_scale_q8_0(q8_matrix(W, rows, K))), kept);
  check(ok && !kept.empty() && kept.size() <= 4, std::string(isa.isa) + " greedy screening keeps at most 4 of 4099 random rows");
}

}  // namespace

void test_gemv_fast(const KernelTable& isa) {
  if (!isa.gemv_fast[weight_slot(GgmlType::Q8_0)]) return;
  for (int64_t K : {32, 576, 1536})
    for (int64_t n : {1, 2, 3, 5, 8, 9, 12, 13, 16}) check_error(isa, K >= 1536 ? 45 : 101, K, n, false);
  for (int64_t n : {1, 9, 16}) check_error(isa, 67, 576, n, true);
  for (int64_t n : {1, 3, 9}) check_ties(isa, 611, 576, n);
  check_ties(isa, 203, 64, 16);
  check_few_kept(isa);
  // Not finite: a NaN value refuses.
  std::vector<float> y(40, 1.0f);
  y[17] = NAN;
  std::vector<int64_t> kept;
  check(!screen_rows(y.data(), 0, 40, 0.01f, kept) && kept.empty(), std::string(isa.isa) + " greedy screening refuses NaN values");
  y[17] = INFINITY;
  check(!screen_rows(y.data(), 0, 40, 0.01f, kept) && kept.empty(), std::string(isa.isa) + " greedy screening refuses infinite values");
}

}  // namespace harness
