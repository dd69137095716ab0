// Prompt-chunk attention (kernels/common/flash_attention.h) with the lane type
// of avx512/flash_zmm.h.
#include "kernels/avx512/zmm.h"  // first: immintrin.h without GCC 12's false warnings

#include "kernels/avx512/avx512.h"
#include "kernels/avx512/flash_zmm.h"

namespace bluelm::kernels::avx512 {

void fill_flash(KernelTable& t) { set_flash_entries<Zmm>(t); }

}  // namespace bluelm::kernels::avx512
