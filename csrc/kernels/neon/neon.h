// The NEON table's parts (csrc/kernels/neon/, the AArch64 baseline: ASIMD and
// fp16<->fp32 conversions): on top of the scalar table, each file fills its
// slots; dispatch.cpp calls them in order.
#pragma once
#include "kernels/kernels.h"

namespace bluelm::kernels::neon {

void fill_gemm(KernelTable& t);       // gemm.cpp: quantised and float tiles
void fill_convert(KernelTable& t);    // convert.cpp: activation rows
void fill_attention(KernelTable& t);  // attention.cpp: attend over F32 / F16 caches
void fill_vision(KernelTable& t);     // vision.cpp: the encoder's ops

// gemm.cpp's F32 gemm (gemm[W_F32]), which the vision attention builds on.
void gemm_f32(const void* W, size_t w_stride, const void* X, size_t x_stride, float* Y, size_t ldy, int64_t K,
              int64_t r0, int64_t r1, int64_t n_tok);

}  // namespace bluelm::kernels::neon
