// Scalar reference kernels of the weight types Q5_0, Q5_1, IQ4_NL (32-element
// blocks) and Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_XS (super-blocks of 256), and
// the Q8_K activation converter. Every table is built on the scalar one, so a
// table without its own kernel for a type runs this one.
//
// Order of arithmetic (what a SIMD kernel reproduces to be bit-identical):
// each output y = dot(W row, X row), blocks in increasing order.
//   Q5_0 against Q8_0, Q5_1 against Q8_1 (d_x, s_x their fp16 fields): ggml's x86
//   vec_dot order, as scalar/gemm.cpp's Q8_0 / Q4_1: per block, 8 lanes of 4
//   consecutive products (qw = q - 16 for Q5_0, q in 0..31 for Q5_1) summed
//   exactly; lane l: acc_l = fma((float)lane_sum, d_w * d_x, acc_l); at the end
//   y = ((acc0 + acc4) + (acc2 + acc6)) + ((acc1 + acc5) + (acc3 + acc7)), and for
//   Q5_1 plus mins = sum over blocks of (m_w * s_x) (each product rounded, then
//   added in block order). On x86 this is llama.cpp's own order for these types.
//   IQ4_NL against Q8_0: ONE float accumulator per output (llama.cpp's repacked
//   x86 IQ4_NL/Q4_0 gemm): isum = sum_j level_j * qx_j (exact int32, levels
//   -127..113); acc = fma(d_w * d_x, (float)isum, acc).
//   super-block types against Q8_K (float d_x, int8 qx, int16 bsums): ONE float
//   accumulator per output, starting at +0.0f:
//     isum = sum_s sc_s * (sum_{j in s} qw_j * qx_j)   (exact int32; sub-blocks
//            s of 16 or 32, sc_s the integer sub-block scale, block_unpack.h)
//     acc  = fma(d_w * d_x, (float)isum, acc)
//     Q2_K, Q4_K, Q5_K, then: imin = sum_s mn_s * (sum of the bsums of s)  (exact)
//                             acc  = fma(-(dmin_w * d_x), (float)imin, acc)
//   (not llama.cpp's order: its K-quant dots fold float lanes per super-block).
// d_w * d_x and dmin_w * d_x are float products (fp16 scales widened first);
// (float)isum rounds to nearest for |isum| > 2^24. No other rounding happens,
// so the integer sums may be formed in any order or lane layout. The int32
// sums cannot overflow for any block contents and |qx| <= 128 (largest: Q6_K,
// |isum| <= 2^27).
// The scalar part is scalar::fill_kquants (scalar.h); SIMD kernels of these
// slots include this header for the contract above.
#pragma once
