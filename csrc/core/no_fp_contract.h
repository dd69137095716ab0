// Included last by the files whose float results must be reproducible to the
// bit (quantisers, dequantisers, scalar reference kernels): every product and
// sum below the include rounds on its own, never fused into a multiply-add
// (AArch64 compilers, and x86 ones with FMA enabled, contract a * b + c by
// default). Explicit std::fma calls are unaffected.
#pragma once

#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif
