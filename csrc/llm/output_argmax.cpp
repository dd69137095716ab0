#include "llm/output_argmax.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "core/block_formats.h"

namespace bluelm {

namespace {
constexpr double kU = 1.0 / 16777216.0;  // 2^-24, float's unit roundoff
double gamma(int64_t n) { return static_cast<double>(n) * kU / (1.0 - static_cast<double>(n) * kU); }
constexpr int64_t kChunk = 64;  // rows per chunk of the screening's first pass
}  // namespace

float max_block_scale_q8_0(const Matrix& W) {
  const int64_t nb = W.cols / QK;
  float m = 0.0f;
  for (int64_t r = 0; r < W.rows; ++r) {
    const BlockQ8_0* b = reinterpret_cast<const BlockQ8_0*>(W.row(r));
    for (int64_t i = 0; i < nb; ++i) {
      const float d = std::fabs(fp16_to_fp32(b[i].d));
      if (d > m) m = d;  // NaN never wins
    }
  }
  return m;
}

float gemv_fast_error(const void* x, int64_t K, float max_dw) {
  const int64_t nb = K / QK;
  const BlockQ8_0* xb = static_cast<const BlockQ8_0*>(x);
  double m = 0.0;
  for (int64_t b = 0; b < nb; ++b) {
    int64_t l1 = 0;
    for (int i = 0; i < QK; ++i) l1 += std::abs(static_cast<int>(xb[b].qs[i]));
    m += std::fabs(static_cast<double>(fp16_to_fp32(xb[b].d))) * static_cast<double>(l1);
  }
  const double err = (gamma(K) + gamma(nb)) * 128.0 * static_cast<double>(max_dw) * m * 1.01;
  if (!(err < static_cast<double>(std::numeric_limits<float>::max()))) return std::numeric_limits<float>::infinity();
  return std::nextafter(static_cast<float>(err), std::numeric_limits<float>::infinity());
}

bool screen_rows(const float* y, int64_t r0, int64_t r1, float err, std::vector<int64_t>& rows) {
  auto chunk = [&](int64_t c, int64_t& n) {
    n = std::min(kChunk, r1 - r0 - c * kChunk);
    return y + r0 + c * kChunk;
  };
  auto largest = [](const float* v, int64_t n) {
    float hi = v[0];
    for (int64_t i = 1; i < n; ++i) hi = v[i] > hi ? v[i] : hi;
    return hi;
  };
  // First pass: the largest value, and whether every value is finite (a NaN
  // or an infinity makes the sum of value * 0 NaN).
  const int64_t n_chunks = (r1 - r0 + kChunk - 1) / kChunk;
  float top = -std::numeric_limits<float>::infinity(), nan_check = 0.0f;
  for (int64_t c = 0; c < n_chunks; ++c) {
    int64_t n;
    const float* v = chunk(c, n);
    top = std::max(top, largest(v, n));
    for (int64_t i = 0; i < n; ++i) nan_check += v[i] * 0.0f;
  }
  const double threshold = static_cast<double>(top) - 2.0 * static_cast<double>(err);
  if (nan_check != 0.0f || !std::isfinite(top) || !std::isfinite(threshold)) return false;
  // Second pass: the rows of the chunks whose largest value reaches the threshold.
  for (int64_t c = 0; c < n_chunks; ++c) {
    int64_t n;
    const float* v = chunk(c, n);
    if (static_cast<double>(largest(v, n)) < threshold) continue;
    for (int64_t i = 0; i < n; ++i)
      if (static_cast<double>(v[i]) >= threshold) rows.push_back(r0 + c * kChunk + i);
  }
  return true;
}

bool argmax_rows(kernels::GemmFn fast, kernels::GemmFn gemm, const Matrix& W, const uint8_t* act, size_t xs,
                 int64_t n_tok, const float* err, int64_t r0, int64_t r1, float* Y, size_t ldy,
                 std::vector<int64_t>& rows, RowMax* best) {
  if (r0 >= r1) return true;
  fast(W.data, W.row_stride, act, xs, Y, ldy, W.cols, r0, r1, n_tok);
  for (int64_t t = 0; t < n_tok; ++t) {
    float* y = Y + t * ldy;
    rows.clear();
    if (!screen_rows(y, r0, r1, err[t], rows)) return false;
    for (int64_t r : rows) {  // increasing: the first maximum stays
      gemm(W.data, W.row_stride, act + t * xs, xs, y, ldy, W.cols, r, r + 1, 1);
      best[t].take(y[r], r);
    }
  }
  return true;
}

}  // namespace bluelm
