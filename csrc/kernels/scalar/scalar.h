// The scalar reference table's parts (csrc/kernels/scalar/): each file fills
// its slots (dispatch.cpp calls them in order). Plain C++, no ISA flags.
#pragma once
#include "kernels/kernels.h"

namespace bluelm::kernels::scalar {

void fill_gemm(KernelTable& t);       // gemm.cpp: dots and activation conversion
void fill_attention(KernelTable& t);  // attention.cpp: attend, swiglu, geglu
void fill_vision(KernelTable& t);     // vision.cpp: the encoder's element-wise ops, attention
void fill_i8(KernelTable& t);         // i8.cpp: the int8 format's reference

// gemm.cpp's F32 gemm (gemm[W_F32]), which the vision attention builds on.
void gemm_f32(const void* W, size_t w_stride, const void* X, size_t x_stride, float* Y, size_t ldy, int64_t K,
              int64_t r0, int64_t r1, int64_t n_tok);

// attention.cpp's attend (the NEON table's INT8 cache path).
void attend(const float* q, const void* K, const void* V, GgmlType kv_type, size_t kv_stride, int64_t head_dim,
            int64_t n_kv, float scale, float softcap, bool batched, float* scratch, float* out);
// attention.cpp's logit soft-cap cap * tanh(s / cap) (a no-op for cap <= 0).
void softcap_scores(float* s, int64_t n, float cap);

inline float dot_f32(const void* w, const void* x, int64_t k) {
  const float* a = static_cast<const float*>(w);
  const float* b = static_cast<const float*>(x);
  float s = 0.0f;
  for (int64_t i = 0; i < k; ++i) s += a[i] * b[i];
  return s;
}

// The 8 lanes of an AVX register summed as (lo + hi), then movehl, then movehdup.
inline float sum8_tree(const float* v) {
  return ((v[0] + v[4]) + (v[2] + v[6])) + ((v[1] + v[5]) + (v[3] + v[7]));
}

}  // namespace bluelm::kernels::scalar
