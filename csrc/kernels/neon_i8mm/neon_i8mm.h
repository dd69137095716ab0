// The NEON i8mm table's parts (csrc/kernels/neon_i8mm/, built with
// -march=armv8.6-a+fp16+dotprod+i8mm): on top of the NEON dotprod table.
#pragma once
#include "kernels/kernels.h"

namespace bluelm::kernels::neon_i8mm {

void fill_gemm(KernelTable& t);  // gemm.cpp: SMMLA prefill gemms
void fill_i8(KernelTable& t);    // i8.cpp: the vision int8 gemm by USMMLA (K8 panels)
void fill_kquants(KernelTable& t);  // kquants.cpp: Q4_K/Q5_K/Q6_K by SMMLA on the 8-byte-word layout

}  // namespace bluelm::kernels::neon_i8mm
