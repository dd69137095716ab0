// Scalar reference kernels: the truth every SIMD table is tested against.
// Written plainly so the compiler can vectorise the inner loops.
#include <cmath>

#include "kernels/kernels.h"

namespace bluelm::kernels {
namespace {

float dot_f32(const void* w, const void* x, int64_t k) {
  const float* a = static_cast<const float*>(w);
  const float* b = static_cast<const float*>(x);
  float s = 0.0f;
  for (int64_t i = 0; i < k; ++i) s += a[i] * b[i];
  return s;
}

float dot_f16(const void* w, const void* x, int64_t k) {
  const uint16_t* a = static_cast<const uint16_t*>(w);
  const uint16_t* b = static_cast<const uint16_t*>(x);
  float s = 0.0f;
  for (int64_t i = 0; i < k; ++i) s += fp16_to_fp32(a[i]) * fp16_to_fp32(b[i]);
  return s;
}

float dot_bf16(const void* w, const void* x, int64_t k) {
  const uint16_t* a = static_cast<const uint16_t*>(w);
  const uint16_t* b = static_cast<const uint16_t*>(x);
  float s = 0.0f;
  for (int64_t i = 0; i < k; ++i) s += bf16_to_fp32(a[i]) * bf16_to_fp32(b[i]);
  return s;
}

float dot_q8_0(const void* w, const void* x, int64_t k) {
  const BlockQ8_0* a = static_cast<const BlockQ8_0*>(w);
  const BlockQ8_0* b = static_cast<const BlockQ8_0*>(x);
  float s = 0.0f;
  for (int64_t i = 0; i < k / QK; ++i) {
    int sum = 0;
    for (int j = 0; j < QK; ++j) sum += a[i].qs[j] * b[i].qs[j];
    s += sum * (fp16_to_fp32(a[i].d) * fp16_to_fp32(b[i].d));
  }
  return s;
}

float dot_q4_0(const void* w, const void* x, int64_t k) {
  const BlockQ4_0* a = static_cast<const BlockQ4_0*>(w);
  const BlockQ8_0* b = static_cast<const BlockQ8_0*>(x);
  float s = 0.0f;
  for (int64_t i = 0; i < k / QK; ++i) {
    int sum = 0;
    for (int j = 0; j < QK / 2; ++j) {
      sum += ((a[i].qs[j] & 0x0f) - 8) * b[i].qs[j];
      sum += ((a[i].qs[j] >> 4) - 8) * b[i].qs[j + QK / 2];
    }
    s += sum * (fp16_to_fp32(a[i].d) * fp16_to_fp32(b[i].d));
  }
  return s;
}

float dot_q4_1(const void* w, const void* x, int64_t k) {
  const BlockQ4_1* a = static_cast<const BlockQ4_1*>(w);
  const BlockQ8_1* b = static_cast<const BlockQ8_1*>(x);
  float s = 0.0f;
  for (int64_t i = 0; i < k / QK; ++i) {
    int sum = 0;
    for (int j = 0; j < QK / 2; ++j) {
      sum += (a[i].qs[j] & 0x0f) * b[i].qs[j];
      sum += (a[i].qs[j] >> 4) * b[i].qs[j + QK / 2];
    }
    s += sum * (fp16_to_fp32(a[i].d) * fp16_to_fp32(b[i].d)) +
         fp16_to_fp32(a[i].m) * fp16_to_fp32(b[i].s);
  }
  return s;
}

template <float (*Dot)(const void*, const void*, int64_t)>
void gemm_rows(const void* W, size_t w_stride, const void* X, size_t x_stride, float* Y, size_t ldy,
               int64_t K, int64_t r0, int64_t r1, int64_t n_tok) {
  const char* w = static_cast<const char*>(W);
  const char* x = static_cast<const char*>(X);
  for (int64_t r = r0; r < r1; ++r) {
    for (int64_t t = 0; t < n_tok; ++t) {
      Y[t * ldy + r] = Dot(w + r * w_stride, x + t * x_stride, K);
    }
  }
}

void convert_f32(const float* x, void* y, int64_t k) { std::memcpy(y, x, k * sizeof(float)); }
void convert_f16(const float* x, void* y, int64_t k) {
  uint16_t* o = static_cast<uint16_t*>(y);
  for (int64_t i = 0; i < k; ++i) o[i] = fp32_to_fp16(x[i]);
}
void convert_bf16(const float* x, void* y, int64_t k) {
  uint16_t* o = static_cast<uint16_t*>(y);
  for (int64_t i = 0; i < k; ++i) o[i] = fp32_to_bf16(x[i]);
}
void convert_q8_0(const float* x, void* y, int64_t k) {
  quantize_row_q8_0_ref(x, static_cast<BlockQ8_0*>(y), k);
}
void convert_q8_1(const float* x, void* y, int64_t k) {
  quantize_row_q8_1_ref(x, static_cast<BlockQ8_1*>(y), k);
}

// Softmax in place over n scores, summing in double as ggml does.
void softmax(float* s, int64_t n) {
  float mx = -INFINITY;
  for (int64_t j = 0; j < n; ++j) mx = std::fmax(mx, s[j]);
  double sum = 0.0;
  for (int64_t j = 0; j < n; ++j) {
    s[j] = std::exp(s[j] - mx);
    sum += s[j];
  }
  const float inv = static_cast<float>(1.0 / sum);
  for (int64_t j = 0; j < n; ++j) s[j] *= inv;
}

void attend(const float* q, const void* K, const void* V, GgmlType kv_type, size_t kv_stride,
            int64_t head_dim, int64_t n_kv, float scale, float* scratch, float* out) {
  for (int64_t d = 0; d < head_dim; ++d) out[d] = 0.0f;
  if (kv_type == GgmlType::F32) {
    const float* k = static_cast<const float*>(K);
    const float* v = static_cast<const float*>(V);
    for (int64_t j = 0; j < n_kv; ++j) scratch[j] = scale * dot_f32(k + j * kv_stride, q, head_dim);
    softmax(scratch, n_kv);
    for (int64_t j = 0; j < n_kv; ++j) {
      const float p = scratch[j];
      const float* vj = v + j * kv_stride;
      for (int64_t d = 0; d < head_dim; ++d) out[d] += p * vj[d];
    }
    return;
  }
  if (kv_type == GgmlType::Q8_0) {
    // INT8 cache: rows of Q8_0 blocks; each block's int dot scaled by its d.
    const BlockQ8_0* k = static_cast<const BlockQ8_0*>(K);
    const BlockQ8_0* v = static_cast<const BlockQ8_0*>(V);
    const size_t row_blocks = kv_stride / QK;
    const int64_t nb = head_dim / QK;
    for (int64_t j = 0; j < n_kv; ++j) {
      const BlockQ8_0* kj = k + j * row_blocks;
      float s = 0.0f;
      for (int64_t b = 0; b < nb; ++b) {
        float sb = 0.0f;
        for (int i = 0; i < QK; ++i) sb += kj[b].qs[i] * q[b * QK + i];
        s += fp16_to_fp32(kj[b].d) * sb;
      }
      scratch[j] = scale * s;
    }
    softmax(scratch, n_kv);
    for (int64_t j = 0; j < n_kv; ++j) {
      const BlockQ8_0* vj = v + j * row_blocks;
      for (int64_t b = 0; b < nb; ++b) {
        const float pd = scratch[j] * fp16_to_fp32(vj[b].d);
        for (int i = 0; i < QK; ++i) out[b * QK + i] += pd * vj[b].qs[i];
      }
    }
    return;
  }
  // F16 cache: like ggml's F16 matmul, the query and the softmax weights are
  // rounded to F16 before each product, and products accumulate in F32.
  const uint16_t* k = static_cast<const uint16_t*>(K);
  const uint16_t* v = static_cast<const uint16_t*>(V);
  float qh[512];
  for (int64_t d = 0; d < head_dim; ++d) qh[d] = fp16_to_fp32(fp32_to_fp16(q[d]));
  for (int64_t j = 0; j < n_kv; ++j) {
    const uint16_t* kj = k + j * kv_stride;
    float s = 0.0f;
    for (int64_t d = 0; d < head_dim; ++d) s += fp16_to_fp32(kj[d]) * qh[d];
    scratch[j] = scale * s;
  }
  softmax(scratch, n_kv);
  for (int64_t j = 0; j < n_kv; ++j) {
    const float p = fp16_to_fp32(fp32_to_fp16(scratch[j]));
    const uint16_t* vj = v + j * kv_stride;
    for (int64_t d = 0; d < head_dim; ++d) out[d] += p * fp16_to_fp32(vj[d]);
  }
}

const KernelTable kScalar = {
    "scalar",
    {gemm_rows<dot_f32>, gemm_rows<dot_f16>, gemm_rows<dot_bf16>, gemm_rows<dot_q8_0>,
     gemm_rows<dot_q4_0>, gemm_rows<dot_q4_1>},
    {convert_f32, convert_f16, convert_bf16, convert_q8_0, convert_q8_1},
    attend,
    {0, 0, 0, 0, 0, 0},  // the reference reads the file layout
    {nullptr, nullptr, nullptr, nullptr, nullptr, nullptr},
};

}  // namespace

const KernelTable& scalar_table() { return kScalar; }

}  // namespace bluelm::kernels
