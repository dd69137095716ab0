// Element-wise hot ops of the vision encoder (softmax rows, GELU), one
// implementation per instruction set like the kernel table, chosen to follow
// kernels::active() (so BLUELM_ISA=scalar also selects the scalar ops here).
#pragma once
#include <cstdint>

#include "vision/vision_i8.h"

namespace bluelm::vision {

struct VisionOps {
  const char* isa;
  // s[j] = softmax(scale * s)[j] over j in [0, n), in place.
  void (*softmax)(float* s, int64_t n, float scale);
  // x = x * sigmoid(2 * sqrt(2/pi) * (x + 0.044715 x^3)), i.e. GELU's tanh form.
  void (*gelu_tanh)(float* x, int64_t n);
  // y = (x - mean) / sqrt(var + eps) * w + b over one row of d (sums in double;
  // y may be x).
  void (*layer_norm)(const float* x, int64_t d, const float* w, const float* b, float eps, float* y);
  // The int8 format of vision_i8.h (Q8_0 files' matrices are re-packed to it at load).
  I8GemmFn i8_gemm;
  I8QuantFn i8_quant;
  // One (image, head) of non-causal attention, or nullptr (the encoder then
  // uses the kernel table's F32 gemm): out[t][:hd] = softmax_j(scale q_t . k_j) v_j
  // for t, j < n; rows of q, k, v, out are ld floats apart; work holds
  // attention_work(n, hd) floats.
  void (*attention)(const float* q, const float* k, const float* v, size_t ld, int64_t n, int64_t hd, float scale,
                    float* out, float* work);
  size_t (*attention_work)(int64_t n, int64_t hd);
};

const VisionOps& scalar_ops();
void layer_norm(const float* x, int64_t d, const float* w, const float* b, float eps, float* y);  // portable
const VisionOps& ops();  // the set matching kernels::active()

}  // namespace bluelm::vision
