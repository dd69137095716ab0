// The NEON table's parts (csrc/kernels/neon/, the AArch64 baseline: ASIMD and
// fp16<->fp32 conversions): on top of the scalar table, each file fills its
// slots; dispatch.cpp calls them in order.
#pragma once
#include "kernels/kernels.h"

namespace bluelm::kernels::neon {

void fill_gemm(KernelTable& t);       // gemm.cpp: quantised and float tiles
void fill_convert(KernelTable& t);    // convert.cpp: activation rows
void fill_attention(KernelTable& t);  // attention.cpp: attend over F32 / F16 caches
void fill_vision(KernelTable& t);     // vision.cpp: the encoder's element-wise ops
void fill_vision_attention(KernelTable& t);  // vision_attention.cpp: its F32 attention
void fill_i8(KernelTable& t);         // i8.cpp: the int8 format (widening multiplies, K4 panels), quantiser

// vision.cpp's softmax rows (VisionKernels::softmax), for vision_attention.cpp.
void softmax(float* s, int64_t n, float scale);

}  // namespace bluelm::kernels::neon
