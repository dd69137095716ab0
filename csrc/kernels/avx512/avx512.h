// The AVX-512 table's parts (csrc/kernels/avx512/, built with -mavx2 -mfma
// -mf16c -mavx512f/bw/vl/vnni): on top of the AVX2 table (a CPU with these
// features always runs AVX2), each file fills its slots; dispatch.cpp calls
// them in order. The gemm driver (gemm.cpp) picks among the decode, prefill and Q4_0 x16
// kernels exported here. Weights: rows `ws` bytes apart, in the file layout
// (P = 0) or in groups of P rows whose blocks are interleaved (kernels/repack.h).
#pragma once
#include "kernels/kernels.h"

namespace bluelm::kernels::avx512 {

void fill_gemm(KernelTable& t);       // gemm.cpp
void fill_convert(KernelTable& t);    // convert.cpp: Q8_0 / Q8_1 activation rows, 16 blocks at a time
void fill_attention(KernelTable& t);  // attention.cpp: F16 attention of prompt chunks
void fill_vision(KernelTable& t);     // vision.cpp: the encoder's element-wise ops
void fill_vision_attention(KernelTable& t);  // vision_attention.cpp: its F32 attention
void fill_i8(KernelTable& t);         // i8.cpp: the int8 format, K4 panels
void fill_kquants(KernelTable& t);    // kquants.cpp: Q4_K, Q5_K, Q6_K on 16-row interleaved groups
void fill_flash(KernelTable& t);      // flash.cpp: prompt-chunk attention, 16 lanes, VNNI block dots
void fill_gemv_batch(KernelTable& t);  // gemv_batch.cpp: 2-16 tokens in the decode's arithmetic
void fill_gemv_fast(KernelTable& t);   // gemv_fast.cpp: Q8_0 rows in a faster order (greedy screening)

// prefill.cpp: 512-bit tiles, two tokens per register, rows [r0, r1).
void prefill_q8_0(const char* w, size_t ws, int P, const char* x, size_t xs, float* Y, size_t ldy, int64_t K,
                  int64_t r0, int64_t r1, int64_t n_tok);
void prefill_q4_1(const char* w, size_t ws, int P, const char* x, size_t xs, float* Y, size_t ldy, int64_t K,
                  int64_t r0, int64_t r1, int64_t n_tok);
void prefill_q5_0(const char* w, size_t ws, int P, const char* x, size_t xs, float* Y, size_t ldy, int64_t K,
                  int64_t r0, int64_t r1, int64_t n_tok);
void prefill_q5_1(const char* w, size_t ws, int P, const char* x, size_t xs, float* Y, size_t ldy, int64_t K,
                  int64_t r0, int64_t r1, int64_t n_tok);

// decode.cpp: one token, rows [r0, r1).
void decode_q8_0(const char* w, size_t ws, const char* x, size_t xs, float* Y, size_t ldy, int64_t K, int64_t r0,
                 int64_t r1);  // file layout
void decode_q4_1(const char* w, size_t ws, const char* x, size_t xs, float* Y, size_t ldy, int64_t K, int64_t r0,
                 int64_t r1);  // file layout
void decode_q5_0(const char* w, size_t ws, const char* x, size_t xs, float* Y, size_t ldy, int64_t K, int64_t r0,
                 int64_t r1);  // file layout
void decode_q5_1(const char* w, size_t ws, const char* x, size_t xs, float* Y, size_t ldy, int64_t K, int64_t r0,
                 int64_t r1);  // file layout
void decode_q4_1_packed(const char* w, size_t ws, const char* x, size_t xs, float* Y, size_t ldy, int64_t K,
                        int64_t r0, int64_t r1);  // groups of 4 rows

// q4_0_x16.cpp: Q4_0 on 16-row interleaved groups (repack_q4_0_x16), any n_tok.
void gemm_q4_0_x16(const void* W, size_t ws, const void* X, size_t xs, float* Y, size_t ldy, int64_t K, int64_t r0,
                   int64_t r1, int64_t n_tok);

// q5_x16.cpp: Q5_0 / Q5_1 on 16-row interleaved groups (repack_q5_0_x16 /
// repack_q5_1_x16), any n_tok.
void gemm_q5_0_x16(const void* W, size_t ws, const void* X, size_t xs, float* Y, size_t ldy, int64_t K, int64_t r0,
                   int64_t r1, int64_t n_tok);
void gemm_q5_1_x16(const void* W, size_t ws, const void* X, size_t xs, float* Y, size_t ldy, int64_t K, int64_t r0,
                   int64_t r1, int64_t n_tok);

void softmax16(float* s, int64_t n, float scale);  // vision.cpp, for vision_attention.cpp
// attend_step.cpp: the one-token F16 attention (false where head_dim is not a multiple of 32 up to 512).
bool attend_step_f16(const float* q, const uint16_t* k, const uint16_t* v, size_t kv_stride, int64_t hd,
                     int64_t n_kv, float scale, float* scratch, float* out);
// attend_step.cpp: the table's attend_steps (F16 lanes by the multi-lane kernel, others by attend).
void attend_steps(const ChunkAttention& a, int64_t lane0, int64_t lane1, float* scratch);

}  // namespace bluelm::kernels::avx512
