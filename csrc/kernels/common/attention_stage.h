// The staging of the tiled vision attentions (AVX-512, NEON): one head's K
// transposed, hd x np with the keys past n zero, and V copied to contiguous
// rows, n x hp with the columns past hd zero, so the score and P.V tiles read
// whole padded vectors. Internal linkage.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>

namespace bluelm::kernels {
namespace {

inline void stage_head(const float* k, const float* v, size_t ld, int64_t n, int64_t hd, int64_t np, int64_t hp,
                       float* kt, float* vc) {
  for (int64_t d = 0; d < hd; ++d) {
    float* row = kt + d * np;
    for (int64_t j = 0; j < n; ++j) row[j] = k[j * ld + d];
    for (int64_t j = n; j < np; ++j) row[j] = 0.0f;
  }
  for (int64_t j = 0; j < n; ++j) {
    std::memcpy(vc + j * hp, v + j * ld, sizeof(float) * hd);
    for (int64_t d = hd; d < hp; ++d) vc[j * hp + d] = 0.0f;
  }
}

}  // namespace
}  // namespace bluelm::kernels
