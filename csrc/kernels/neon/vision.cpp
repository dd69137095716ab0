// The NEON table's vision entries: the scalar element-wise ops and int8
// reference, attention from this table's F32 gemm.
#include "kernels/common/gemm_attention.h"
#include "kernels/neon/neon.h"
#include "kernels/scalar/scalar.h"

namespace bluelm::kernels::neon {

void fill_vision(KernelTable& t) {
  set_gemm_attention<gemm_f32, scalar::vision_softmax>(t.vision);
}

}  // namespace bluelm::kernels::neon
