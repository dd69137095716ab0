// The NEON dotprod table's parts (csrc/kernels/neon_dotprod/, built with
// -march=armv8.2-a+fp16+dotprod): on top of the NEON table.
#pragma once
#include "kernels/kernels.h"

namespace bluelm::kernels::neon_dotprod {

void fill_gemm(KernelTable& t);  // gemm.cpp: SDOT int8 gemms
void fill_i8(KernelTable& t);    // i8.cpp: the vision int8 gemm by SDOT (K4 panels)
void fill_kquants(KernelTable& t);  // kquants.cpp: K-quant, Q5_0/Q5_1, IQ4_NL gemms by SDOT
void fill_flash(KernelTable& t);  // flash.cpp: prompt-chunk attention, SDOT block dots

// The SDOT gemms, also the i8mm table's edges (one token, ragged rows).
void gemm_q4_0(const void* W, size_t ws, const void* X, size_t xs, float* Y, size_t ldy, int64_t K, int64_t r0,
               int64_t r1, int64_t n_tok);
void gemm_q4_1(const void* W, size_t ws, const void* X, size_t xs, float* Y, size_t ldy, int64_t K, int64_t r0,
               int64_t r1, int64_t n_tok);
void gemm_q8_0(const void* W, size_t ws, const void* X, size_t xs, float* Y, size_t ldy, int64_t K, int64_t r0,
               int64_t r1, int64_t n_tok);

}  // namespace bluelm::kernels::neon_dotprod

