// Prompt-chunk attention on NEON lanes with the INT8 cache's block dots by
// SDOT: a key's 16 bytes loaded once feed four 4-byte groups (vdotq_laneq_s32).
#include "kernels/arm/flash_lanes.h"
#include "kernels/common/flash_attention.h"
#include "kernels/neon_dotprod/neon_dotprod.h"

namespace bluelm::kernels::neon_dotprod {
namespace {

struct Neon4Dot : Neon4 {
  template <int J, int B>
  static void dot_i8(const int8_t* k, int64_t ks, const int8_t* qb, int GL, const int32_t*, int32_t* out) {
    int32x4_t acc[J][B];
    for (int j = 0; j < J; ++j)
      for (int b = 0; b < B; ++b) acc[j][b] = vdupq_n_s32(0);
    for (int c = 0; c < 8; c += 4) {
      int8x16_t kk[J];
      for (int j = 0; j < J; ++j) kk[j] = vld1q_s8(k + j * ks + 4 * c);
      for (int b = 0; b < B; ++b) {
        const int8_t* q = qb + (c * GL + b * W) * 4;
        const int8x16_t q0 = vld1q_s8(q), q1 = vld1q_s8(q + GL * 4), q2 = vld1q_s8(q + 2 * GL * 4),
                        q3 = vld1q_s8(q + 3 * GL * 4);
        for (int j = 0; j < J; ++j) {
          acc[j][b] = vdotq_laneq_s32(acc[j][b], q0, kk[j], 0);
          acc[j][b] = vdotq_laneq_s32(acc[j][b], q1, kk[j], 1);
          acc[j][b] = vdotq_laneq_s32(acc[j][b], q2, kk[j], 2);
          acc[j][b] = vdotq_laneq_s32(acc[j][b], q3, kk[j], 3);
        }
      }
    }
    for (int j = 0; j < J; ++j)
      for (int b = 0; b < B; ++b) vst1q_s32(out + j * GL + b * W, acc[j][b]);
  }
};

}  // namespace

void fill_flash(KernelTable& t) { set_flash_entries<Neon4Dot>(t); }

}  // namespace bluelm::kernels::neon_dotprod
