// Prompt-chunk attention (kernels/common/flash_attention.h) on NEON lanes
// (kernels/arm/flash_lanes.h).
#include "kernels/arm/flash_lanes.h"
#include "kernels/common/flash_attention.h"
#include "kernels/neon/neon.h"

namespace bluelm::kernels::neon {
namespace {

void attend_chunk(const ChunkAttention& a, int64_t lane0, int64_t lane1, void* work) {
  Flash<Neon4>::run(a, lane0, lane1, work);
}

}  // namespace

void fill_flash(KernelTable& t) {
  t.attend_chunk = attend_chunk;
  t.chunk_lanes = Flash<Neon4>::GL;
}

}  // namespace bluelm::kernels::neon
