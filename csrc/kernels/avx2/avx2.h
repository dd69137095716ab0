// The AVX2 table's parts (csrc/kernels/avx2/, built with -mavx2 -mfma -mf16c):
// each file fills its slots; dispatch.cpp calls them in order. The functions below
// are also called by the AVX-512 table for the cases it does not cover.
#pragma once
#include "kernels/kernels.h"

namespace bluelm::kernels::avx2 {

void fill_gemm(KernelTable& t);       // gemm.cpp: quantised and float tiles
void fill_convert(KernelTable& t);    // convert.cpp: activation rows
void fill_attention(KernelTable& t);  // attention.cpp: attend, attend_rows, swiglu, geglu
void fill_vision(KernelTable& t);     // vision.cpp: the encoder's element-wise ops, attention
void fill_i8(KernelTable& t);         // i8.cpp (built with -ffp-contract=off): the int8 format, K4 panels
void fill_kquants(KernelTable& t);    // kquants.cpp: Q4_K, Q5_K, Q6_K on 8-row interleaved groups
void fill_kquants_lowbit(KernelTable& t);  // kquants_lowbit.cpp: Q2_K, Q3_K, IQ4_XS, IQ4_NL
void fill_flash(KernelTable& t);      // flash.cpp: prompt-chunk attention, 8 lanes

// gemm.cpp's F32 gemm (gemm[W_F32]), which the vision attention builds on.
void gemm_f32(const void* W, size_t w_stride, const void* X, size_t x_stride, float* Y, size_t ldy, int64_t K,
              int64_t r0, int64_t r1, int64_t n_tok);

void attend(const float* q, const void* K, const void* V, GgmlType kv_type, size_t kv_stride, int64_t head_dim,
            int64_t n_kv, float scale, float softcap, bool batched, float* scratch, float* out);
void attend_rows(const float* q, size_t q_stride, const void* K, const void* V, GgmlType kv_type,
                 size_t kv_stride, int64_t head_dim, int64_t n_kv0, int64_t m, float scale, float* scratch,
                 float* out, size_t out_stride);


}  // namespace bluelm::kernels::avx2
