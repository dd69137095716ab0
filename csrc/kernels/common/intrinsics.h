// The intrinsics header of the ISA the including file is compiled for (none
// in a baseline x86 file). The AVX-512 files include avx512/zmm.h first.
#pragma once
#if defined(__AVX2__)
#include <immintrin.h>
#endif
#if defined(__aarch64__)
#include <arm_neon.h>
#endif
