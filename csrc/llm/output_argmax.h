// The greedy token of a speculative round's rows without their logits
// (Context::step_argmax): the output product in a faster order
// (KernelTable::gemv_fast) gives every vocabulary row a screening value within
// a proven distance of its exact logit; only the rows whose screening value
// comes within twice that distance of the largest can hold the largest exact
// logit, and only they are computed by the one-token gemm. The token is the
// first of the largest exact values: the sampler's greedy argmax, by
// construction.
//
// The bound (gemv_fast_error), for a Q8_0 matrix row w and a Q8_0 token x of
// K columns in nb = K / 32 blocks: the exact value is V = sum_b p_b S_b with
// p_b = d_w,b * d_x,b (a product of two halves: at most 22 significant bits,
// exponents within float's normal range, so an exact float) and S_b the
// block's integer dot. Both kernels form exact integer partial sums of a
// block (|partial| < 2^24: exact floats), multiply each by p_b (exactly, in an
// FMA, or with one rounding) and add the terms in some order:
//  - the one-token gemm (gemm[]): at most K terms (at least one column each),
//    so in any order of additions (Higham, Accuracy and Stability of
//    Numerical Algorithms, 2nd ed., (4.4) and Lemma 3.1, with one rounding
//    for the product) |E - V| <= gamma(K) * sum |p_b * partial|;
//  - gemv_fast: nb terms p_b S_b by nb FMAs: |F - V| <= gamma(nb) * sum_b |p_b S_b|.
// Every |p_b * partial| sum is at most M = sum_b |p_b| sum_i |q_w,i| |q_x,i|
// <= 128 * max_b |d_w,b| * sum_b |d_x,b| * ||q_x,b||_1 (|q_w| <= 128), so
// |F - E| <= (gamma(K) + gamma(nb)) * M, gamma(n) = n u / (1 - n u), u = 2^-24.
// M is summed in double and rounded up with a 1% margin. Rows where a kernel
// keeps the decode's values (a tail under 16 rows) are within any bound.
// Non-finite values anywhere: the caller falls back to the logits.
#pragma once
#include <cstdint>
#include <vector>

#include "kernels/kernels.h"
#include "llm/llm_weights.h"

namespace bluelm {

// The largest |d| of a file-layout Q8_0 matrix's block scales (NaN scales skipped).
float max_block_scale_q8_0(const Matrix& W);

// An upper bound of |gemv_fast - gemm| for every row of a Q8_0 matrix whose
// block scales are at most max_dw in magnitude, for the Q8_0 activation row
// x (K columns). Infinite where that bound overflows.
float gemv_fast_error(const void* x, int64_t K, float max_dw);

// The first largest exact value among rows [r0, r1) of one token.
struct RowMax {
  float value = 0.0f;
  int64_t row = -1;  // -1: none yet
  // Takes (v, r) for rows scanned in increasing order: the first maximum stays.
  void take(float v, int64_t r) {
    if (row < 0 || v > value) value = v, row = r;
  }
};

// The rows of [r0, r1) that may hold one token's largest exact value: y[r]
// holds gemv_fast's values (each within err of the exact one); appended to
// `rows` in increasing order. False (nothing appended) where a value or the
// threshold is not finite.
bool screen_rows(const float* y, int64_t r0, int64_t r1, float err, std::vector<int64_t>& rows);

// One thread's part of Context::step_argmax: rows [r0, r1) of W (file
// layout) for n_tok tokens (activations `act`, xs bytes apart, err[t] each
// one's gemv_fast_error): gemv_fast into Y (token t at Y + t * ldy, row r at
// [r]), then per token the rows screen_rows keeps computed by the one-token
// gemm into their own slots and the first largest into best[t] (unchanged
// when the range is empty). False where screen_rows refuses a token.
bool argmax_rows(kernels::GemmFn fast, kernels::GemmFn gemm, const Matrix& W, const uint8_t* act, size_t xs,
                 int64_t n_tok, const float* err, int64_t r0, int64_t r1, float* Y, size_t ldy,
                 std::vector<int64_t>& rows, RowMax* best);

}  // namespace bluelm
