// The vision encoder's int8 matmul format (docs/ARCHITECTURE.md, "Vision"):
// weights re-quantised at load to int8 with one float scale per output row,
// packed into panels of 16 rows in the layout the active table's gemm reads
// (VisionKernels::i8_layout); activations quantised per token row to u8 with one scale and a
// zero point (x ~ scale * (u - zp), the range [min(x, 0), max(x, 0)] over
// 0..255). Dot products are exact int32 sums over the whole K; each output is
//   y = float(acc - zp[t] * wsum[r]) * (w_scale[r] * x_scale[t]) (+ bias[r]) (+ y),
// with acc = sum_k u[t][k] * w[r][k] and wsum[r] = sum_k w[r][k], the same
// float operations in the same order on every ISA (so the scalar reference and
// the SIMD kernels agree bit for bit, whatever panel layout a table packs).
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "core/huge_pages.h"

namespace bluelm::kernels {

constexpr int64_t kI8Panel = 16;  // output rows per panel

// Bytes of one quantised activation row of kp bytes (padded to a 64-byte multiple).
inline size_t i8_act_stride(int64_t kp) { return static_cast<size_t>((kp + 63) / 64 * 64); }

// Packed weights as a kernel reads them. Panel p holds rows [16p, 16p+16) and
// is 16 * kp bytes; the order of its bytes is the packer's (I8Layout). Rows past
// `rows` are zero, as are the columns past K (K <= kp).
struct I8Matrix {
  const int8_t* panels = nullptr;
  const float* scale = nullptr;   // per row (padded to a multiple of 16)
  const int32_t* wsum = nullptr;  // sum_k w[r][k], per row (padded)
  int64_t rows = 0;
  int64_t kp = 0;
};

struct I8Acts {
  const uint8_t* q = nullptr;  // n rows of kp bytes, `stride` apart: round(x / scale) + zp
  size_t stride = 0;
  const float* scale = nullptr;  // per token
  const int32_t* zp = nullptr;   // per token, in [0, 255]
  int64_t n = 0;
};

// Y[t * ldy + r] (=|+=) the formula above for rows of panels [p0, p1) and every
// token; bias may be null; accumulate adds the result to what Y holds.
using I8GemmFn = void (*)(const I8Matrix& W, const I8Acts& X, float* Y, size_t ldy, const float* bias,
                          bool accumulate, int64_t p0, int64_t p1);
// One activation row: x[0, k) -> q[0, kp) and *zp (columns past k get zp: the
// weights there are zero); with lo = min(x, 0), hi = max(x, 0): scale =
// (hi - lo) / 255, inv = 255 / (hi - lo) (0 for an all-zero row),
// *zp = round(-lo * inv), q = clamp(round(x * inv) + *zp, 0, 255), rounding to
// nearest even. Returns the scale.
using I8QuantFn = float (*)(const float* x, int64_t k, int64_t kp, uint8_t* q, int32_t* zp);

// Where the packer puts w[16p + i][c] inside panel p (and how far K is padded):
// each table's gemm reads the layout its table's packer writes.
enum class I8Layout {
  K4,  // byte (c / 4 * 16 + i) * 4 + c % 4: 16 rows x 4 K-bytes per step (kp: K rounded to 4)
  K8,  // byte (c / 8 * 8 + i / 2) * 16 + i % 2 * 8 + c % 8: row pairs x 8 K-bytes (kp: K rounded to 8)
};

// K padded for a layout (the extra columns are zero).
int64_t i8_k_pad(int64_t k, I8Layout layout);

// Owned packed weights: from float rows (rows x k, `ld` floats apart). The
// panels are on huge pages: a gemm sweeps a matrix's panels once per token
// chunk; with 4 KiB pages the so400m encoder ran about 5% slower (ARCHITECTURE.md).
struct I8Packed {
  std::unique_ptr<int8_t, HugeFree> panels;
  std::vector<float> scale;
  std::vector<int32_t> wsum;
  int64_t rows = 0, kp = 0;
  I8Layout layout = I8Layout::K4;
  I8Matrix view() const { return {panels.get(), scale.data(), wsum.data(), rows, kp}; }
};
// Sizes `p` for rows x k in `layout` (zero-filled).
void i8_alloc(I8Packed& p, int64_t rows, int64_t k, I8Layout layout);
// Quantises rows [r0, r1) (r0 a multiple of 16; r1 a multiple of 16 or = rows)
// of `rows_f` (row r at rows_f + (r - r0) * ld, k floats) into `p`: scale
// max|w| / 127, q = round-to-nearest-even(w * 127 / max|w|).
void i8_pack_rows(I8Packed& p, int64_t k, int64_t r0, int64_t r1, const float* rows_f, int64_t ld);

}  // namespace bluelm::kernels
