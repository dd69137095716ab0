// NEON F32 attention of the vision encoder, one (image, head) at a time: K
// transposed and V copied to contiguous rows once per head (padded to 16
// columns with zeros), then both products as tiles of 4 rows x 16 columns
// (16 accumulators, FMLA by element): scores for 64 queries at a time (they
// stay in L2), the table's softmax, P.V. Within 1e-5 of double precision
// (tests/cpp/test_vision.cpp).
#include <arm_neon.h>

#include <cstring>

#include "kernels/common/attention_stage.h"
#include "kernels/neon/neon.h"

namespace bluelm::kernels::neon {
namespace {

constexpr int64_t kCols = 16;    // output columns per tile (4 registers)
constexpr int kRows = 4;         // rows per tile
constexpr int64_t kQBlock = 64;  // queries whose scores are live at once

int64_t pad16(int64_t n) { return (n + kCols - 1) / kCols * kCols; }

size_t work_floats(int64_t n, int64_t hd) {
  return static_cast<size_t>(pad16(n) * (hd + kQBlock) + n * pad16(hd));
}

// acc[t][c] += a_t[d + L] * B[d + L][4c .. 4c+3] for the 4 columns of each register.
template <int L, int T>
inline void fma_lane(const float* b, const float32x4_t* av, float32x4_t (*acc)[4]) {
  const float32x4_t b0 = vld1q_f32(b), b1 = vld1q_f32(b + 4), b2 = vld1q_f32(b + 8), b3 = vld1q_f32(b + 12);
#pragma GCC unroll 16
  for (int t = 0; t < T; ++t) {
    acc[t][0] = vfmaq_laneq_f32(acc[t][0], b0, av[t], L);
    acc[t][1] = vfmaq_laneq_f32(acc[t][1], b1, av[t], L);
    acc[t][2] = vfmaq_laneq_f32(acc[t][2], b2, av[t], L);
    acc[t][3] = vfmaq_laneq_f32(acc[t][3], b3, av[t], L);
  }
}

// out[t][c] = sum_d a[t][d] * B[d][c] for t < T and c < 16 (the first `ncols`
// stored); rows of a are lda floats apart, of B ldb, of out ldo.
template <int T>
void tile(const float* a, size_t lda, const float* B, size_t ldb, int64_t depth, float* out, size_t ldo,
          int64_t ncols) {
  float32x4_t acc[T][4] = {};  // zeros
  int64_t d = 0;
  for (; d + 4 <= depth; d += 4) {
    float32x4_t av[T];
#pragma GCC unroll 16
    for (int t = 0; t < T; ++t) av[t] = vld1q_f32(a + t * lda + d);
    fma_lane<0, T>(B + d * ldb, av, acc);
    fma_lane<1, T>(B + (d + 1) * ldb, av, acc);
    fma_lane<2, T>(B + (d + 2) * ldb, av, acc);
    fma_lane<3, T>(B + (d + 3) * ldb, av, acc);
  }
  for (; d < depth; ++d) {
    const float* b = B + d * ldb;
#pragma GCC unroll 16
    for (int t = 0; t < T; ++t)
#pragma GCC unroll 16
      for (int c = 0; c < 4; ++c) acc[t][c] = vfmaq_n_f32(acc[t][c], vld1q_f32(b + 4 * c), a[t * lda + d]);
  }
#pragma GCC unroll 16
  for (int t = 0; t < T; ++t) {
    float* o = out + t * ldo;
    if (ncols == kCols) {
#pragma GCC unroll 16
      for (int c = 0; c < 4; ++c) vst1q_f32(o + 4 * c, acc[t][c]);
    } else {
      float tmp[kCols];
#pragma GCC unroll 16
      for (int c = 0; c < 4; ++c) vst1q_f32(tmp + 4 * c, acc[t][c]);
      std::memcpy(o, tmp, sizeof(float) * ncols);
    }
  }
}

// Rows [0, m) of a times B, all column blocks of `width` columns.
void rows_times(const float* a, size_t lda, const float* B, size_t ldb, int64_t depth, int64_t m, int64_t width,
                float* out, size_t ldo) {
  for (int64_t c0 = 0; c0 < width; c0 += kCols) {
    const int64_t nc = width - c0 < kCols ? width - c0 : kCols;
    int64_t t = 0;
    for (; t + kRows <= m; t += kRows) tile<kRows>(a + t * lda, lda, B + c0, ldb, depth, out + t * ldo + c0, ldo, nc);
    for (; t < m; ++t) tile<1>(a + t * lda, lda, B + c0, ldb, depth, out + t * ldo + c0, ldo, nc);
  }
}

void attention(const float* q, const float* k, const float* v, size_t ld, int64_t n, int64_t hd, float scale,
               float* out, float* work) {
  const int64_t np = pad16(n), hp = pad16(hd);
  float* kt = work;               // hd x np: K transposed, keys past n zero
  float* sc = kt + hd * np;       // kQBlock x np scores
  float* vc = sc + kQBlock * np;  // n x hp: V with contiguous rows, columns past hd zero
  stage_head(k, v, ld, n, hd, np, hp, kt, vc);
  for (int64_t q0 = 0; q0 < n; q0 += kQBlock) {
    const int64_t qb = n - q0 < kQBlock ? n - q0 : kQBlock;
    rows_times(q + q0 * ld, ld, kt, np, hd, qb, np, sc, np);  // scores of keys [0, np)
    for (int64_t t = 0; t < qb; ++t) softmax(sc + t * np, n, scale);
    rows_times(sc, np, vc, hp, n, qb, hd, out + q0 * ld, ld);  // P.V over the n keys
  }
}

}  // namespace

void fill_vision_attention(KernelTable& t) {
  t.vision.attention = attention;
  t.vision.attention_work = work_floats;
}

}  // namespace bluelm::kernels::neon
