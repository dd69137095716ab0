// Prompt-chunk attention (kernels/common/flash_attention.h) on NEON lanes
// (kernels/arm/flash_lanes.h).
#include "kernels/arm/flash_lanes.h"
#include "kernels/common/flash_attention.h"
#include "kernels/neon/neon.h"

namespace bluelm::kernels::neon {

void fill_flash(KernelTable& t) { set_flash_entries<Neon4>(t); }

}  // namespace bluelm::kernels::neon
