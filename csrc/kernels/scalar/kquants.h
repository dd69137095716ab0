// Scalar reference kernels of the weight types Q5_0, Q5_1, IQ4_NL (32-element
// blocks) and Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_XS (super-blocks of 256), and
// the Q8_K activation converter. Every table starts from these (scalar_table()),
// so a table without its own kernel for a type runs this one.
//
// Order of arithmetic (what a SIMD kernel reproduces to be bit-identical):
// each output y = dot(W row, X row) has ONE float accumulator, starting at
// +0.0f, updated block by block in increasing block order:
//   32-element types against Q8_0 / Q8_1 activations (d_x, s_x their fp16 fields):
//     isum = sum_j qw_j * qx_j  (exact int32; qw = q - 16 for Q5_0, q in 0..31
//                                for Q5_1, the IQ4 level -127..113 for IQ4_NL)
//     acc  = fma(d_w * d_x, (float)isum, acc)
//     Q5_1 only, then: acc = fma(m_w, s_x, acc)
//   super-block types against Q8_K (float d_x, int8 qx, int16 bsums):
//     isum = sum_s sc_s * (sum_{j in s} qw_j * qx_j)   (exact int32; sub-blocks
//            s of 16 or 32, sc_s the integer sub-block scale, block_unpack.h)
//     acc  = fma(d_w * d_x, (float)isum, acc)
//     Q2_K, Q4_K, Q5_K, then: imin = sum_s mn_s * (sum of the bsums of s)  (exact)
//                             acc  = fma(-(dmin_w * d_x), (float)imin, acc)
// d_w * d_x and dmin_w * d_x are float products (fp16 scales widened first);
// (float)isum rounds to nearest for |isum| > 2^24. No other rounding happens,
// so the integer sums may be formed in any order or lane layout. The int32
// sums cannot overflow for any block contents and |qx| <= 128 (largest: Q6_K,
// |isum| <= 2^27).
#pragma once

#include "kernels/kernels.h"

namespace bluelm::kernels {

// Sets t's gemm slots of those weight types and its Q8_K converter slot.
void add_kquant_reference(KernelTable& t);

}  // namespace bluelm::kernels
