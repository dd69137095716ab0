// Scalar reference kernels: the truth every SIMD table is tested against.
// Written plainly so the compiler can vectorise the inner loops.
#include <cmath>
#include <cstring>

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

// The 8 lanes of an AVX register summed as (lo + hi), then movehl, then movehdup.
float sum8_tree(const float* v) {
  return ((v[0] + v[4]) + (v[2] + v[6])) + ((v[1] + v[5]) + (v[3] + v[7]));
}

// Q8_0 and Q4_1 dots in the order of ggml's x86 vec_dot: each block's integer
// products summed in 8 lanes of 4 consecutive elements, each lane scaled into
// its own float accumulator by one FMA, the lanes folded by the 8-lane tree.

float dot_q8_0(const void* w, const void* x, int64_t k) {
  const BlockQ8_0* a = static_cast<const BlockQ8_0*>(w);
  const BlockQ8_0* b = static_cast<const BlockQ8_0*>(x);
  float acc[8] = {};
  for (int64_t i = 0; i < k / QK; ++i) {
    const float d = fp16_to_fp32(a[i].d) * fp16_to_fp32(b[i].d);
    for (int l = 0; l < 8; ++l) {
      int sum = 0;
      for (int j = 4 * l; j < 4 * l + 4; ++j) sum += a[i].qs[j] * b[i].qs[j];
      acc[l] = std::fma(static_cast<float>(sum), d, acc[l]);
    }
  }
  return sum8_tree(acc);
}

// Element j of a 4-bit block: low nibbles hold 0..15, high nibbles 16..31.
inline int nibble(const uint8_t* qs, int j) { return j < QK / 2 ? qs[j] & 0x0f : qs[j - QK / 2] >> 4; }

// Q4_0 in the order of llama.cpp's repacked x86 Q4_0 gemm/gemv (the path it
// takes for Q4_0 on any AVX2 machine): each block's 32 products summed exactly
// as an integer, then one FMA with d_w * d_x into a single accumulator.
float dot_q4_0(const void* w, const void* x, int64_t k) {
  const BlockQ4_0* a = static_cast<const BlockQ4_0*>(w);
  const BlockQ8_0* b = static_cast<const BlockQ8_0*>(x);
  float acc = 0.0f;
  for (int64_t i = 0; i < k / QK; ++i) {
    const float d = fp16_to_fp32(a[i].d) * fp16_to_fp32(b[i].d);
    int sum = 0;
    for (int j = 0; j < QK; ++j) sum += (nibble(a[i].qs, j) - 8) * b[i].qs[j];
    acc = std::fma(static_cast<float>(sum), d, acc);
  }
  return acc;
}

// The min term m_w * s_x is summed on its own, block by block, and added last.
float dot_q4_1(const void* w, const void* x, int64_t k) {
  const BlockQ4_1* a = static_cast<const BlockQ4_1*>(w);
  const BlockQ8_1* b = static_cast<const BlockQ8_1*>(x);
  float acc[8] = {};
  float mins = 0.0f;
  for (int64_t i = 0; i < k / QK; ++i) {
    const float d = fp16_to_fp32(a[i].d) * fp16_to_fp32(b[i].d);
    mins += fp16_to_fp32(a[i].m) * fp16_to_fp32(b[i].s);
    for (int l = 0; l < 8; ++l) {
      int sum = 0;
      for (int j = 4 * l; j < 4 * l + 4; ++j) sum += nibble(a[i].qs, j) * b[i].qs[j];
      acc[l] = std::fma(static_cast<float>(sum), d, acc[l]);
    }
  }
  return sum8_tree(acc) + mins;
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
                int64_t head_dim, int64_t n_kv, float scale, bool batched, float* scratch,
                float* out) {
  // ggml converts the query and the softmax weights to F16 for its F16 matmuls.
  float qh[512];
  for (int64_t d = 0; d < head_dim; ++d) qh[d] = fp16_to_fp32(fp32_to_fp16(q[d]));
  const bool tile_kq = batched && head_dim % 8 == 0;  // tinyBLAS needs k % 8 == 0
  for (int64_t j = 0; j < n_kv; ++j) {
    const uint16_t* kj = k + j * kv_stride;
    const float dot = tile_kq ? dot_f16_tile_order(kj, qh, head_dim) : dot_f16_vec_order(kj, qh, head_dim);
    scratch[j] = dot * scale;
  }
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
                 int64_t head_dim, int64_t n_kv, float scale, float* scratch, float* out) {
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
  softmax(scratch, n_kv);
  for (int64_t j = 0; j < n_kv; ++j) {
    const BlockQ8_0* vj = v + j * row_blocks;
    for (int64_t b = 0; b < nb; ++b) {
      const float pd = scratch[j] * fp16_to_fp32(vj[b].d);
      for (int i = 0; i < QK; ++i) out[b * QK + i] += pd * vj[b].qs[i];
    }
  }
}

void attend(const float* q, const void* K, const void* V, GgmlType kv_type, size_t kv_stride,
            int64_t head_dim, int64_t n_kv, float scale, bool batched, float* scratch, float* out) {
  if (kv_type == GgmlType::F16) {
    attend_f16(q, static_cast<const uint16_t*>(K), static_cast<const uint16_t*>(V), kv_stride,
               head_dim, n_kv, scale, batched, scratch, out);
    return;
  }
  if (kv_type == GgmlType::Q8_0) {
    attend_q8_0(q, static_cast<const BlockQ8_0*>(K), static_cast<const BlockQ8_0*>(V), kv_stride,
                head_dim, n_kv, scale, scratch, out);
    return;
  }
  for (int64_t d = 0; d < head_dim; ++d) out[d] = 0.0f;
  const float* k = static_cast<const float*>(K);
  const float* v = static_cast<const float*>(V);
  for (int64_t j = 0; j < n_kv; ++j) scratch[j] = scale * dot_f32(k + j * kv_stride, q, head_dim);
  softmax(scratch, n_kv);
  for (int64_t j = 0; j < n_kv; ++j) {
    const float p = scratch[j];
    const float* vj = v + j * kv_stride;
    for (int64_t d = 0; d < head_dim; ++d) out[d] += p * vj[d];
  }
}

const KernelTable kScalar = {
    "scalar",
    {gemm_rows<dot_f32>, gemm_rows<dot_f16>, gemm_rows<dot_bf16>, gemm_rows<dot_q8_0>,
     gemm_rows<dot_q4_0>, gemm_rows<dot_q4_1>},
    {convert_f32, convert_f16, convert_bf16, convert_q8_0, convert_q8_1},
    attend,
    swiglu,
    {0, 0, 0, 0, 0, 0},  // the reference reads the file layout
    {nullptr, nullptr, nullptr, nullptr, nullptr, nullptr},
    nullptr,  // attend_rows: the caller loops attend
    {},       // pack: repack_rows (unused: pack_rows are 0)
    {},       // unpack: unpack_rows
};

}  // namespace

const KernelTable& scalar_table() { return kScalar; }

}  // namespace bluelm::kernels
