// Element-wise hot ops of the vision encoder (softmax rows, GELU), one
// implementation per instruction set like the kernel table, chosen to follow
// kernels::active() (so BLUELM_ISA=scalar also selects the scalar ops here).
#pragma once
#include <cstdint>

#include "vision/vision_gemm.h"

namespace bluelm::vision {

struct VisionOps {
  const char* isa;
  // s[j] = softmax(scale * s)[j] over j in [0, n), in place.
  void (*softmax)(float* s, int64_t n, float scale);
  // x = x * sigmoid(2 * sqrt(2/pi) * (x + 0.044715 x^3)), i.e. GELU's tanh form.
  void (*gelu_tanh)(float* x, int64_t n);
  Q8GemmFn q8_gemm;  // nullptr: use the kernel table's Q8_0 gemm
};

const VisionOps& scalar_ops();
const VisionOps& ops();  // the set matching kernels::active()

}  // namespace bluelm::vision
