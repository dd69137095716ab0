// Scalar reference attention and SwiGLU: llama.cpp's x86 arithmetic written
// out lane by lane (the F16 cache), the INT8 and F32 caches plainly.
#include <cmath>
#include <cstring>

#include "kernels/common/attend_f32.h"
#include "kernels/scalar/scalar.h"

namespace bluelm::kernels::scalar {
namespace {


// ---- llama.cpp's x86 arithmetic, written out lane by lane ---------------------
// ggml's AVX2 code does every multiply-add as one FMA and reduces vector lanes in
// fixed trees; these reproduce the same roundings so SIMD tables can match them
// bit for bit (tests/cpp checks that).

float bits_to_f32(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
uint32_t f32_to_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

// exp(x) = 2^n * e^b with n = round(x / ln2) found by adding 1.5 * 2^23, b = x - n*ln2
// in two FMA steps, e^b - 1 by a degree-5 polynomial; |n| > 126 scales in two steps
// so large arguments neither overflow early nor lose subnormals.
float exp_ggml(float x) {
  const float shift = 0x1.8p23f;
  const float z = std::fma(x, 0x1.715476p+0f, shift);
  const float n = z - shift;
  const float b = std::fma(-n, 0x1.7f7d1cp-20f, std::fma(-n, 0x1.62e4p-1f, x));
  const uint32_t e = f32_to_bits(z) << 23;
  const float k = bits_to_f32(e + f32_to_bits(1.0f));
  const float u = b * b;
  const float p = std::fma(std::fma(std::fma(0x1.0e4020p-7f, b, 0x1.573e2ep-5f), u,
                                    std::fma(0x1.555e66p-3f, b, 0x1.fffdb6p-2f)),
                           u, 0x1.ffffecp-1f * b);
  if (!(std::fabs(n) > 126.0f)) return std::fma(p, k, k);
  const uint32_t g = n <= 0.0f ? 0x82000000u : 0u;
  const float s1 = bits_to_f32(g + 0x7f000000u);
  if (std::fabs(n) > 192.0f) return s1 * s1;
  const float s2 = bits_to_f32(e - g);
  return std::fma(s2, p, s2) * s1;
}

// One row: groups of 8 through the vector exp, a tail of n % 8 through libm's expf.
void swiglu(const float* gate, const float* up, float* y, int64_t n) {
  const int64_t nv = n & ~int64_t(7);
  for (int64_t i = 0; i < nv; ++i) y[i] = gate[i] / (1.0f + exp_ggml(0.0f - gate[i])) * up[i];
  for (int64_t i = nv; i < n; ++i) y[i] = gate[i] / (1.0f + std::exp(-gate[i])) * up[i];
}

// gelu_tanh(g) * u as g / (1 + exp(-2 sqrt(2/pi) g (1 + 0.044715 g^2))) * u: the
// vector exp on every element, so the SIMD tables can match it bit for bit.
float geglu_one(float g, float u) {
  constexpr float kCoefA = 0.044715f;
  constexpr float kMinus2C = -1.5957691216057308f;  // -2 sqrt(2/pi)
  const float inner = g * std::fma(kCoefA, g * g, 1.0f);
  return g / (1.0f + exp_ggml(kMinus2C * inner)) * u;
}

void geglu(const float* gate, const float* up, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = geglu_one(gate[i], up[i]);
}

}  // namespace

// Attention logit soft-cap: cap * tanh(s / cap), tanh as 1 - 2 / (1 + exp(2x)).
void softcap_scores(float* s, int64_t n, float cap) {
  if (!(cap > 0.0f)) return;
  const float k = 2.0f / cap;
  for (int64_t j = 0; j < n; ++j) s[j] = cap * (1.0f - 2.0f / (1.0f + exp_ggml(k * s[j])));
}

namespace {

// ggml_vec_dot_f16's order: 4 x 8 FMA lanes over steps of 32, folded (0+2)+(1+3),
// then lo + hi and two horizontal adds; a tail of n % 32 summed in double.
float sum32_tree(const float* a) {
  float x[8];
  for (int l = 0; l < 8; ++l) x[l] = (a[l] + a[16 + l]) + (a[8 + l] + a[24 + l]);
  return ((x[0] + x[4]) + (x[1] + x[5])) + ((x[2] + x[6]) + (x[3] + x[7]));
}

float dot_f16_vec_order(const uint16_t* a, const float* b, int64_t n) {
  float acc[32] = {};
  const int64_t np = n & ~int64_t(31);
  for (int64_t i = 0; i < np; i += 32)
    for (int l = 0; l < 32; ++l) acc[l] = std::fma(fp16_to_fp32(a[i + l]), b[i + l], acc[l]);
  double s = sum32_tree(acc);
  for (int64_t i = np; i < n; ++i) s += static_cast<double>(fp16_to_fp32(a[i]) * b[i]);
  return static_cast<float>(s);
}

// tinyBLAS's order (llamafile sgemm, used by ggml for F16 batches): one 8-lane FMA
// accumulator over k (a multiple of 8), then the 8-lane tree.
float dot_f16_tile_order(const uint16_t* a, const float* b, int64_t n) {
  float acc[8] = {};
  for (int64_t i = 0; i < n; i += 8)
    for (int l = 0; l < 8; ++l) acc[l] = std::fma(fp16_to_fp32(a[i + l]), b[i + l], acc[l]);
  return sum8_tree(acc);
}

// ggml's soft_max: scaled scores, max, exp in groups of 8 (the padded KV positions
// beyond n add exact zeros), each group summed by the 8-lane tree into a double.
void softmax_ggml(float* s, int64_t n) {
  float mx = -INFINITY;
  for (int64_t j = 0; j < n; ++j) mx = std::fmax(mx, s[j]);
  double sum = 0.0;
  for (int64_t j0 = 0; j0 < n; j0 += 8) {
    float v[8];
    for (int l = 0; l < 8; ++l) v[l] = j0 + l < n ? exp_ggml(s[j0 + l] - mx) : 0.0f;
    for (int l = 0; l < 8 && j0 + l < n; ++l) s[j0 + l] = v[l];
    sum += sum8_tree(v);
  }
  const float inv = static_cast<float>(1.0 / sum);
  for (int64_t j = 0; j < n; ++j) s[j] *= inv;
}

void attend_f16(const float* q, const uint16_t* k, const uint16_t* v, size_t kv_stride,
                int64_t head_dim, int64_t n_kv, float scale, float softcap, bool batched,
                float* scratch, float* out) {
  // ggml converts the query and the softmax weights to F16 for its F16 matmuls.
  float qh[512];
  for (int64_t d = 0; d < head_dim; ++d) qh[d] = fp16_to_fp32(fp32_to_fp16(q[d]));
  const bool tile_kq = batched && head_dim % 8 == 0;  // tinyBLAS needs k % 8 == 0
  for (int64_t j = 0; j < n_kv; ++j) {
    const uint16_t* kj = k + j * kv_stride;
    const float dot = tile_kq ? dot_f16_tile_order(kj, qh, head_dim) : dot_f16_vec_order(kj, qh, head_dim);
    scratch[j] = dot * scale;
  }
  softcap_scores(scratch, n_kv, softcap);
  softmax_ggml(scratch, n_kv);
  for (int64_t j = 0; j < n_kv; ++j) scratch[j] = fp16_to_fp32(fp32_to_fp16(scratch[j]));
  // P.V over the KV length padded to 256: lanes by position (j % 8 tiled, j % 32 dot);
  // padded positions have weight 0 and change nothing.
  const int lanes = batched ? 8 : 32;
  for (int64_t d = 0; d < head_dim; ++d) {
    float acc[32] = {};
    for (int64_t j = 0; j < n_kv; ++j)
      acc[j % lanes] = std::fma(fp16_to_fp32(v[j * kv_stride + d]), scratch[j], acc[j % lanes]);
    out[d] = batched ? sum8_tree(acc) : sum32_tree(acc);
  }
}

// INT8 cache: rows of Q8_0 blocks; each block's int dot scaled by its d.
void attend_q8_0(const float* q, const BlockQ8_0* k, const BlockQ8_0* v, size_t kv_stride,
                 int64_t head_dim, int64_t n_kv, float scale, float softcap, float* scratch,
                 float* out) {
  for (int64_t d = 0; d < head_dim; ++d) out[d] = 0.0f;
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
  softcap_scores(scratch, n_kv, softcap);
  softmax_sum_double(scratch, n_kv);
  for (int64_t j = 0; j < n_kv; ++j) {
    const BlockQ8_0* vj = v + j * row_blocks;
    for (int64_t b = 0; b < nb; ++b) {
      const float pd = scratch[j] * fp16_to_fp32(vj[b].d);
      for (int i = 0; i < QK; ++i) out[b * QK + i] += pd * vj[b].qs[i];
    }
  }
}

}  // namespace

void attend(const float* q, const void* K, const void* V, GgmlType kv_type, size_t kv_stride,
            int64_t head_dim, int64_t n_kv, float scale, float softcap, bool batched,
            float* scratch, float* out) {
  if (kv_type == GgmlType::F16) {
    attend_f16(q, static_cast<const uint16_t*>(K), static_cast<const uint16_t*>(V), kv_stride,
               head_dim, n_kv, scale, softcap, batched, scratch, out);
    return;
  }
  if (kv_type == GgmlType::Q8_0) {
    attend_q8_0(q, static_cast<const BlockQ8_0*>(K), static_cast<const BlockQ8_0*>(V), kv_stride,
                head_dim, n_kv, scale, softcap, scratch, out);
    return;
  }
  for (int64_t d = 0; d < head_dim; ++d) out[d] = 0.0f;
  const float* k = static_cast<const float*>(K);
  const float* v = static_cast<const float*>(V);
  for (int64_t j = 0; j < n_kv; ++j) scratch[j] = scale * dot_f32(k + j * kv_stride, q, head_dim);
  softcap_scores(scratch, n_kv, softcap);
  softmax_sum_double(scratch, n_kv);
  for (int64_t j = 0; j < n_kv; ++j) {
    const float p = scratch[j];
    const float* vj = v + j * kv_stride;
    for (int64_t d = 0; d < head_dim; ++d) out[d] += p * vj[d];
  }
}

void fill_attention(KernelTable& t) {
  t.attend = attend;
  t.swiglu = swiglu;
  t.geglu = geglu;
  // attend_rows stays nullptr: the caller loops attend.
}

}  // namespace bluelm::kernels::scalar
