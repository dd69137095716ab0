// The AVX512_BF16 table's parts (csrc/kernels/avx512_bf16/, built with the
// AVX-512 table's flags and -mavx512bf16): on top of the AVX-512 table, the
// int8 vision encoder's attention (int8 throughout, VNNI) and long prompt
// chunks' attention (attend_chunk_bf16) with vdpbf16ps. Everything else is
// inherited.
#pragma once
#include "kernels/kernels.h"

namespace bluelm::kernels::avx512_bf16 {

void fill_vision_attention(KernelTable& t);  // vision_attention.cpp
void fill_flash(KernelTable& t);             // flash.cpp

}  // namespace bluelm::kernels::avx512_bf16
