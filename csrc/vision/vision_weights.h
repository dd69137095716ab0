// The vision tower's tensors (v.* and mm.*), bound by the names of
// docs/vision_format.md. Matrices stay in the file mapping, except in a Q8_0
// file: there every matrix the encoder multiplies in int8 (the Q8_0 ones and
// the F16 ones whose row length is not a multiple of 32) is re-quantised at
// load to the row-scaled int8 panels of kernels/i8_format.h.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "core/gguf_file.h"
#include "vision/vision_config.h"
#include "kernels/i8_format.h"

namespace bluelm {

// rows x k weights (ggml ne1 x ne0); rows are stored k_pad long (k_pad >= k,
// the extra columns zero), so activations must be padded to k_pad as well.
struct VisionMatrix {
  const void* data = nullptr;
  GgmlType type = GgmlType::F32;
  int64_t rows = 0;
  int64_t k = 0;
  int64_t k_pad = 0;
  size_t row_stride = 0;  // bytes
  // In a Q8_0 file: the int8 panels of kernels/i8_format.h in the active
  // table's layout (i8.panels null otherwise); the encoder then uses only these
  // (k padded to i8.kp).
  kernels::I8Matrix i8;
};

struct VisionVector {
  const float* data = nullptr;
  int64_t n = 0;
};

struct VisionLayer {
  VisionVector ln1_w, ln1_b, ln2_w, ln2_b;
  VisionMatrix wq, wk, wv, wo, up, down;
  VisionVector bq, bk, bv, bo, b_up, b_down;
};

class VisionWeights {
 public:
  // Binds the tensors of `f`, which must outlive this object.
  VisionWeights(const GGUFFile& f, const VisionConfig& c);
  VisionWeights(const VisionWeights&) = delete;
  VisionWeights& operator=(const VisionWeights&) = delete;

  VisionMatrix patch_embd;  // C x (3*P*P)
  VisionVector patch_bias, pos_embd;  // pos_embd: n_tokens * C
  std::vector<VisionLayer> layers;
  VisionVector post_ln_w, post_ln_b;  // absent (null) when the file has none
  VisionVector mm_norm_w, mm_norm_b;  // mlp_downsample only
  VisionMatrix mm0, mm2;
  VisionVector mm0_b, mm2_b;
  VisionVector image_newline;  // LLaVA-OneVision only (v.image_newline or the legacy model.image_newline); may be absent
  GgmlType main_type = GgmlType::F32;  // type of the attention matrices

 private:
  std::vector<std::unique_ptr<std::vector<float>>> widened_;  // F16/BF16 vectors as F32
  std::vector<std::unique_ptr<kernels::I8Packed>> packed_;     // int8 panels
  friend class VisionBinder;
};

}  // namespace bluelm
