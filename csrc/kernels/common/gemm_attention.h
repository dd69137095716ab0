// One (image, head) of the vision encoder's attention (VisionKernels::attention)
// built from a table's F32 gemm and softmax: for tables without a tiled
// attention kernel. Scores for 64 queries at a time (they stay in L2), then P.V
// against V transposed. Each output's arithmetic is that of the gemm and the
// softmax, so it does not depend on the tiling. Included by ISA files: internal
// linkage, one copy per file.
#pragma once
#include <cstddef>
#include <cstdint>

#include "kernels/kernels.h"

namespace bluelm::kernels {
namespace {

constexpr int64_t kGemmAttnQueries = 64;  // query rows whose scores are live at once

inline size_t gemm_attention_work(int64_t n, int64_t hd) {
  return static_cast<size_t>(kGemmAttnQueries * n + hd * n);
}

template <GemmFn Gemm, void (*Softmax)(float*, int64_t, float)>
void gemm_attention(const float* q, const float* k, const float* v, size_t ld, int64_t n, int64_t hd,
                    float scale, float* out, float* work) {
  float* sc = work;                       // kGemmAttnQueries x n scores
  float* vt = work + kGemmAttnQueries * n;  // hd x n: V transposed
  const size_t row = ld * sizeof(float);
  for (int64_t j = 0; j < n; ++j)
    for (int64_t d = 0; d < hd; ++d) vt[d * n + j] = v[j * ld + d];
  for (int64_t q0 = 0; q0 < n; q0 += kGemmAttnQueries) {
    const int64_t qb = n - q0 < kGemmAttnQueries ? n - q0 : kGemmAttnQueries;
    // scores[t][j] = q_t . k_j, keys as the weight rows.
    Gemm(k, row, q + q0 * ld, row, sc, n, hd, 0, n, qb);
    for (int64_t t = 0; t < qb; ++t) Softmax(sc + t * n, n, scale);
    // out[t][d] = sum_j p[t][j] v_j[d], V transposed as the weight rows.
    Gemm(vt, n * sizeof(float), sc, n * sizeof(float), out + q0 * ld, ld, n, 0, hd, qb);
  }
}

// A table's attention entries from its F32 gemm and softmax.
template <GemmFn Gemm, void (*Softmax)(float*, int64_t, float)>
void set_gemm_attention(VisionKernels& v) {
  v.attention = gemm_attention<Gemm, Softmax>;
  v.attention_work = gemm_attention_work;
}

}  // namespace
}  // namespace bluelm::kernels
