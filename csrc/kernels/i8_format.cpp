#include "kernels/i8_format.h"

#include <cmath>
#include <cstring>

#include "kernels/common/round.h"

namespace bluelm::kernels {

namespace {
int64_t round16(int64_t n) { return (n + kI8Panel - 1) / kI8Panel * kI8Panel; }

// Offset of w[16p + i][c] inside its panel.
size_t panel_offset(I8Layout layout, int64_t i, int64_t c) {
  if (layout == I8Layout::K8) return static_cast<size_t>(((c / 8) * 8 + i / 2) * 16 + (i % 2) * 8 + c % 8);
  return static_cast<size_t>(((c / 4) * kI8Panel + i) * 4 + c % 4);
}
}  // namespace

int64_t i8_k_pad(int64_t k, I8Layout layout) {
  const int64_t step = layout == I8Layout::K8 ? 8 : 4;
  return (k + step - 1) / step * step;
}

void i8_alloc(I8Packed& p, int64_t rows, int64_t k, I8Layout layout) {
  const int64_t rp = round16(rows);
  p.rows = rows;
  p.kp = i8_k_pad(k, layout);
  p.layout = layout;
  const size_t bytes = static_cast<size_t>(rp * p.kp);
  p.panels.reset(static_cast<int8_t*>(alloc_huge(bytes)));
  std::memset(p.panels.get(), 0, bytes);
  p.scale.assign(static_cast<size_t>(rp), 0.0f);
  p.wsum.assign(static_cast<size_t>(rp), 0);
}

void i8_pack_rows(I8Packed& p, int64_t k, int64_t r0, int64_t r1, const float* rows_f, int64_t ld) {
  for (int64_t r = r0; r < r1; ++r) {
    const float* w = rows_f + (r - r0) * ld;
    float amax = 0.0f;
    for (int64_t i = 0; i < k; ++i) amax = std::fmax(amax, std::fabs(w[i]));
    const float d = amax / 127.0f, id = amax > 0.0f ? 127.0f / amax : 0.0f;
    int8_t* panel = p.panels.get() + (r / kI8Panel) * kI8Panel * p.kp;
    const int64_t i = r % kI8Panel;
    int32_t sum = 0;
    for (int64_t c = 0; c < k; ++c) {
      const int32_t q = round_even(w[c] * id);
      panel[panel_offset(p.layout, i, c)] = static_cast<int8_t>(q);
      sum += q;
    }
    p.scale[r] = d;
    p.wsum[r] = sum;
  }
}

}  // namespace bluelm::kernels
