// NEON kernels for the AArch64 baseline (ASIMD; fp16<->fp32 conversions are
// baseline too). neon_dotprod.cpp and neon_i8mm.cpp reuse this table's float,
// conversion and attention entries and replace the int8 gemms.
// Everything sits in an anonymous namespace so no inline function compiled here
// can be picked by the linker for another translation unit.
#include <arm_neon.h>
#include <math.h>
#include <string.h>

#include "kernels/kernels.h"

namespace bluelm::kernels {
namespace {

inline float h2f(const void* p) {
  __fp16 h;
  memcpy(&h, p, 2);
  return static_cast<float>(h);
}
inline uint16_t f2h(float f) {
  const __fp16 h = static_cast<__fp16>(f);  // FCVT, round to nearest even
  uint16_t u;
  memcpy(&u, &h, 2);
  return u;
}

// Low nibbles are elements 0..15, high nibbles 16..31.
inline void nibbles(const uint8_t* qs, int8x16_t* lo, int8x16_t* hi) {
  const uint8x16_t v = vld1q_u8(qs);
  *lo = vreinterpretq_s8_u8(vandq_u8(v, vdupq_n_u8(0x0f)));
  *hi = vreinterpretq_s8_u8(vshrq_n_u8(v, 4));
}

// Exact int32 lane sums of 32 int8 products. Each int16 lane holds two products,
// at most 128*127*2 in magnitude (activations are within +-127), so no overflow.
inline int32x4_t dot32(int8x16_t w0, int8x16_t w1, int8x16_t x0, int8x16_t x1) {
  int16x8_t p0 = vmull_s8(vget_low_s8(w0), vget_low_s8(x0));
  p0 = vmlal_high_s8(p0, w0, x0);
  int16x8_t p1 = vmull_s8(vget_low_s8(w1), vget_low_s8(x1));
  p1 = vmlal_high_s8(p1, w1, x1);
  return vpadalq_s16(vpaddlq_s16(p0), p1);
}

// ---- quantised tiles: R weight rows x T tokens --------------------------------
// Kind 0: Q4_0 x Q8_0, 1: Q4_1 x Q8_1, 2: Q8_0 x Q8_0.
template <int Kind, int R, int T>
void qtile(const char* w, size_t ws, const char* x, size_t xs, float* y, size_t ldy, int64_t K) {
  const int64_t nb = K / QK;
  float32x4_t acc[R][T];
  float macc[R][T];
  for (int i = 0; i < R; ++i)
    for (int t = 0; t < T; ++t) {
      acc[i][t] = vdupq_n_f32(0.0f);
      macc[i][t] = 0.0f;
    }
  const size_t wbs = Kind == 0 ? sizeof(BlockQ4_0) : Kind == 1 ? sizeof(BlockQ4_1) : sizeof(BlockQ8_0);
  const size_t xbs = Kind == 1 ? sizeof(BlockQ8_1) : sizeof(BlockQ8_0);
  const size_t xq = Kind == 1 ? 4 : 2;  // offset of qs in the activation block
  for (int64_t b = 0; b < nb; ++b) {
    int8x16_t x0[T], x1[T];
    float dx[T], sx[T];
    for (int t = 0; t < T; ++t) {
      const char* xb = x + t * xs + b * xbs;
      x0[t] = vld1q_s8(reinterpret_cast<const int8_t*>(xb + xq));
      x1[t] = vld1q_s8(reinterpret_cast<const int8_t*>(xb + xq + 16));
      dx[t] = h2f(xb);
      sx[t] = Kind == 1 ? h2f(xb + 2) : 0.0f;
    }
    for (int i = 0; i < R; ++i) {
      const char* wb = w + i * ws + b * wbs;
      int8x16_t w0, w1;
      if (Kind == 2) {
        w0 = vld1q_s8(reinterpret_cast<const int8_t*>(wb + 2));
        w1 = vld1q_s8(reinterpret_cast<const int8_t*>(wb + 18));
      } else {
        nibbles(reinterpret_cast<const uint8_t*>(wb + (Kind == 1 ? 4 : 2)), &w0, &w1);
        if (Kind == 0) {
          w0 = vsubq_s8(w0, vdupq_n_s8(8));
          w1 = vsubq_s8(w1, vdupq_n_s8(8));
        }
      }
      const float dw = h2f(wb);
      const float mw = Kind == 1 ? h2f(wb + 2) : 0.0f;
      for (int t = 0; t < T; ++t) {
        const int32x4_t s = dot32(w0, w1, x0[t], x1[t]);
        acc[i][t] = vfmaq_n_f32(acc[i][t], vcvtq_f32_s32(s), dw * dx[t]);
        if (Kind == 1) macc[i][t] += mw * sx[t];
      }
    }
  }
  for (int i = 0; i < R; ++i)
    for (int t = 0; t < T; ++t) y[t * ldy + i] = vaddvq_f32(acc[i][t]) + macc[i][t];
}

// ---- float tiles --------------------------------------------------------------
// Kind 0: F32, 1: F16, 2: BF16; 8 elements per step as two float32x4.
template <int Kind>
inline void load8(const char* p, float32x4_t* a, float32x4_t* b) {
  if (Kind == 0) {
    *a = vld1q_f32(reinterpret_cast<const float*>(p));
    *b = vld1q_f32(reinterpret_cast<const float*>(p) + 4);
  } else if (Kind == 1) {
    const float16x8_t h = vreinterpretq_f16_u16(vld1q_u16(reinterpret_cast<const uint16_t*>(p)));
    *a = vcvt_f32_f16(vget_low_f16(h));
    *b = vcvt_high_f32_f16(h);
  } else {
    const uint16x8_t h = vld1q_u16(reinterpret_cast<const uint16_t*>(p));
    *a = vreinterpretq_f32_u32(vshll_n_u16(vget_low_u16(h), 16));
    *b = vreinterpretq_f32_u32(vshll_high_n_u16(h, 16));
  }
}
template <int Kind>
inline float load1(const char* p) {
  if (Kind == 0) {
    float f;
    memcpy(&f, p, 4);
    return f;
  }
  if (Kind == 1) return h2f(p);
  uint16_t h;
  memcpy(&h, p, 2);
  const uint32_t u = uint32_t(h) << 16;
  float f;
  memcpy(&f, &u, 4);
  return f;
}

template <int Kind, int R, int T>
void ftile(const char* w, size_t ws, const char* x, size_t xs, float* y, size_t ldy, int64_t K) {
  const size_t es = Kind == 0 ? 4 : 2;
  float32x4_t acc[R][T];
  for (int i = 0; i < R; ++i)
    for (int t = 0; t < T; ++t) acc[i][t] = vdupq_n_f32(0.0f);
  int64_t k = 0;
  for (; k + 8 <= K; k += 8) {
    float32x4_t xa[T], xb[T];
    for (int t = 0; t < T; ++t) load8<Kind>(x + t * xs + k * es, &xa[t], &xb[t]);
    for (int i = 0; i < R; ++i) {
      float32x4_t wa, wb;
      load8<Kind>(w + i * ws + k * es, &wa, &wb);
      for (int t = 0; t < T; ++t) {
        acc[i][t] = vfmaq_f32(acc[i][t], wa, xa[t]);
        acc[i][t] = vfmaq_f32(acc[i][t], wb, xb[t]);
      }
    }
  }
  for (int i = 0; i < R; ++i)
    for (int t = 0; t < T; ++t) {
      float s = vaddvq_f32(acc[i][t]);
      for (int64_t j = k; j < K; ++j) s += load1<Kind>(w + i * ws + j * es) * load1<Kind>(x + t * xs + j * es);
      y[t * ldy + i] = s;
    }
}

// ---- drivers --------------------------------------------------------------------

using TileFn = void (*)(const char*, size_t, const char*, size_t, float*, size_t, int64_t);

// Decode streams rows 4 at a time; prefill tiles 4 rows x 2 tokens over token
// chunks that stay in L2, so each tile's weights are reused from L1.
template <TileFn R4T1, TileFn R1T1, TileFn R4T2, TileFn R1T2>
void gemm(const void* W, size_t ws, const void* X, size_t xs, float* Y, size_t ldy, int64_t K,
          int64_t r0, int64_t r1, int64_t n_tok) {
  const char* w = static_cast<const char*>(W);
  const char* x = static_cast<const char*>(X);
  if (n_tok == 1) {
    int64_t r = r0;
    for (; r + 4 <= r1; r += 4) R4T1(w + r * ws, ws, x, xs, Y + r, ldy, K);
    for (; r < r1; ++r) R1T1(w + r * ws, ws, x, xs, Y + r, ldy, K);
    return;
  }
  int64_t chunk = static_cast<int64_t>((192 * 1024) / (xs ? xs : 1));
  chunk = chunk < 2 ? 2 : chunk - chunk % 2;
  for (int64_t t0 = 0; t0 < n_tok; t0 += chunk) {
    const int64_t t1 = t0 + chunk < n_tok ? t0 + chunk : n_tok;
    for (int64_t r = r0; r < r1;) {
      const bool full = r + 4 <= r1;
      int64_t t = t0;
      for (; t + 2 <= t1; t += 2)
        (full ? R4T2 : R1T2)(w + r * ws, ws, x + t * xs, xs, Y + t * ldy + r, ldy, K);
      if (t < t1) (full ? R4T1 : R1T1)(w + r * ws, ws, x + t * xs, xs, Y + t * ldy + r, ldy, K);
      r += full ? 4 : 1;
    }
  }
}

template <int Kind>
constexpr GemmFn qgemm = gemm<qtile<Kind, 4, 1>, qtile<Kind, 1, 1>, qtile<Kind, 4, 2>, qtile<Kind, 1, 2>>;
template <int Kind>
constexpr GemmFn fgemm = gemm<ftile<Kind, 4, 1>, ftile<Kind, 1, 1>, ftile<Kind, 4, 2>, ftile<Kind, 1, 2>>;

// ---- activation conversion ------------------------------------------------------

// One block as the reference codec: d = amax/127, q = round-to-nearest-even(x * 127/amax)
// (ggml's x86 rule); FCVTNS rounds to nearest even. Returns sum(q).
inline int quantize_block(const float* x, uint16_t* d_out, int8_t* qs, float* d_f32) {
  float32x4_t v[8];
  float32x4_t amax = vdupq_n_f32(0.0f);
  for (int j = 0; j < 8; ++j) {
    v[j] = vld1q_f32(x + 4 * j);
    amax = vmaxq_f32(amax, vabsq_f32(v[j]));
  }
  const float amax_s = vmaxvq_f32(amax);
  const float d = amax_s / 127.0f;
  const float id = amax_s != 0.0f ? 127.0f / amax_s : 0.0f;  // as the reference codec
  *d_out = f2h(d);
  *d_f32 = d;
  int32x4_t sum = vdupq_n_s32(0);
  int16x8_t h[4];
  for (int j = 0; j < 4; ++j) {
    const int32x4_t a = vcvtnq_s32_f32(vmulq_n_f32(v[2 * j], id));
    const int32x4_t b = vcvtnq_s32_f32(vmulq_n_f32(v[2 * j + 1], id));
    sum = vaddq_s32(sum, vaddq_s32(a, b));
    h[j] = vcombine_s16(vqmovn_s32(a), vqmovn_s32(b));
  }
  vst1q_s8(qs, vcombine_s8(vqmovn_s16(h[0]), vqmovn_s16(h[1])));
  vst1q_s8(qs + 16, vcombine_s8(vqmovn_s16(h[2]), vqmovn_s16(h[3])));
  return vaddvq_s32(sum);
}

void convert_q8_0(const float* x, void* y, int64_t K) {
  BlockQ8_0* o = static_cast<BlockQ8_0*>(y);
  float d;
  for (int64_t b = 0; b < K / QK; ++b) quantize_block(x + b * QK, &o[b].d, o[b].qs, &d);
}

void convert_q8_1(const float* x, void* y, int64_t K) {
  BlockQ8_1* o = static_cast<BlockQ8_1*>(y);
  for (int64_t b = 0; b < K / QK; ++b) {
    float d;
    const int sum = quantize_block(x + b * QK, &o[b].d, o[b].qs, &d);
    o[b].s = f2h(static_cast<float>(sum) * d);  // from the unrounded d, as the reference
  }
}

void convert_f16(const float* x, void* y, int64_t K) {
  uint16_t* o = static_cast<uint16_t*>(y);
  int64_t k = 0;
  for (; k + 8 <= K; k += 8) {
    const float16x8_t h = vcvt_high_f16_f32(vcvt_f16_f32(vld1q_f32(x + k)), vld1q_f32(x + k + 4));
    vst1q_u16(o + k, vreinterpretq_u16_f16(h));
  }
  for (; k < K; ++k) o[k] = f2h(x[k]);
}

inline uint16_t bf16_one(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 64);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

void convert_bf16(const float* x, void* y, int64_t K) {
  uint16_t* o = static_cast<uint16_t*>(y);
  int64_t k = 0;
  for (; k + 4 <= K; k += 4) {
    const uint32x4_t u = vreinterpretq_u32_f32(vld1q_f32(x + k));
    const uint32x4_t nan = vcgtq_u32(vandq_u32(u, vdupq_n_u32(0x7fffffff)), vdupq_n_u32(0x7f800000));
    const uint32x4_t lsb = vandq_u32(vshrq_n_u32(u, 16), vdupq_n_u32(1));
    const uint32x4_t r = vshrq_n_u32(vaddq_u32(u, vaddq_u32(lsb, vdupq_n_u32(0x7fff))), 16);
    const uint32x4_t qn = vorrq_u32(vshrq_n_u32(u, 16), vdupq_n_u32(64));
    vst1_u16(o + k, vmovn_u32(vbslq_u32(nan, qn, r)));
  }
  for (; k < K; ++k) o[k] = bf16_one(x[k]);
}

// ---- attention --------------------------------------------------------------------

template <int Kind>  // 0: F32 rows, 1: F16 rows
float dot_row(const char* a, const float* b, int64_t n) {
  float32x4_t s0 = vdupq_n_f32(0.0f), s1 = s0;
  int64_t i = 0;
  const size_t es = Kind == 0 ? 4 : 2;
  for (; i + 8 <= n; i += 8) {
    float32x4_t a0, a1;
    load8<Kind>(a + i * es, &a0, &a1);
    s0 = vfmaq_f32(s0, a0, vld1q_f32(b + i));
    s1 = vfmaq_f32(s1, a1, vld1q_f32(b + i + 4));
  }
  float s = vaddvq_f32(vaddq_f32(s0, s1));
  for (; i < n; ++i) s += load1<Kind>(a + i * es) * b[i];
  return s;
}

// out[d] = sum_j p_j V_j[d], j in order for each element as the reference.
template <int Kind>
void weighted_sum(const float* p, const char* v, size_t stride, int64_t hd, int64_t n, float* out) {
  const size_t es = Kind == 0 ? 4 : 2;
  int64_t d = 0;
  for (; d + 16 <= hd; d += 16) {
    float32x4_t a0 = vdupq_n_f32(0.0f), a1 = a0, a2 = a0, a3 = a0;
    for (int64_t j = 0; j < n; ++j) {
      const char* vj = v + (j * stride + d) * es;
      float32x4_t v0, v1, v2, v3;
      load8<Kind>(vj, &v0, &v1);
      load8<Kind>(vj + 8 * es, &v2, &v3);
      a0 = vfmaq_n_f32(a0, v0, p[j]);
      a1 = vfmaq_n_f32(a1, v1, p[j]);
      a2 = vfmaq_n_f32(a2, v2, p[j]);
      a3 = vfmaq_n_f32(a3, v3, p[j]);
    }
    vst1q_f32(out + d, a0);
    vst1q_f32(out + d + 4, a1);
    vst1q_f32(out + d + 8, a2);
    vst1q_f32(out + d + 12, a3);
  }
  for (; d < hd; ++d) {
    float a = 0.0f;
    for (int64_t j = 0; j < n; ++j) a += p[j] * load1<Kind>(v + (j * stride + d) * es);
    out[d] = a;
  }
}

// Softmax in place, summing in double as the reference (and ggml) does.
void softmax(float* s, int64_t n) {
  float mx = -INFINITY;
  for (int64_t j = 0; j < n; ++j) mx = fmaxf(mx, s[j]);
  double sum = 0.0;
  for (int64_t j = 0; j < n; ++j) {
    s[j] = expf(s[j] - mx);
    sum += s[j];
  }
  const float inv = static_cast<float>(1.0 / sum);
  for (int64_t j = 0; j < n; ++j) s[j] *= inv;
}

// Attention logit soft-cap cap * tanh(s / cap) (tanh as 1 - 2 / (1 + exp(2x)), as the reference).
void softcap_scores(float* s, int64_t n, float cap) {
  if (!(cap > 0.0f)) return;
  const float k = 2.0f / cap;
  for (int64_t j = 0; j < n; ++j) s[j] = cap * (1.0f - 2.0f / (1.0f + expf(k * s[j])));
}

void attend(const float* q, const void* K, const void* V, GgmlType kv_type, size_t kv_stride,
            int64_t head_dim, int64_t n_kv, float scale, float softcap,
            bool batched /* NEON keeps its own order */, float* scratch, float* out) {
  if (kv_type == GgmlType::Q8_0) {  // INT8 cache: the reference code path
    scalar_table().attend(q, K, V, kv_type, kv_stride, head_dim, n_kv, scale, softcap, batched, scratch, out);
    return;
  }
  const char* k = static_cast<const char*>(K);
  const char* v = static_cast<const char*>(V);
  if (kv_type == GgmlType::F32) {
    for (int64_t j = 0; j < n_kv; ++j) scratch[j] = scale * dot_row<0>(k + j * kv_stride * 4, q, head_dim);
    softcap_scores(scratch, n_kv, softcap);
    softmax(scratch, n_kv);
    weighted_sum<0>(scratch, v, kv_stride, head_dim, n_kv, out);
    return;
  }
  // F16 cache: query and softmax weights rounded to F16, as the reference.
  float qh[512];
  int64_t d = 0;
  for (; d + 4 <= head_dim; d += 4) vst1q_f32(qh + d, vcvt_f32_f16(vcvt_f16_f32(vld1q_f32(q + d))));
  for (; d < head_dim; ++d) {
    const uint16_t h = f2h(q[d]);
    qh[d] = h2f(&h);
  }
  for (int64_t j = 0; j < n_kv; ++j) scratch[j] = scale * dot_row<1>(k + j * kv_stride * 2, qh, head_dim);
  softcap_scores(scratch, n_kv, softcap);
  softmax(scratch, n_kv);
  int64_t j = 0;
  for (; j + 4 <= n_kv; j += 4) vst1q_f32(scratch + j, vcvt_f32_f16(vcvt_f16_f32(vld1q_f32(scratch + j))));
  for (; j < n_kv; ++j) {
    const uint16_t h = f2h(scratch[j]);
    scratch[j] = h2f(&h);
  }
  weighted_sum<1>(scratch, v, kv_stride, head_dim, n_kv, out);
}

KernelTable make_table() {
  KernelTable t = scalar_table();
  t.isa = "neon";
  t.gemm[W_F32] = fgemm<0>;
  t.gemm[W_F16] = fgemm<1>;
  t.gemm[W_BF16] = fgemm<2>;
  t.gemm[W_Q4_0] = qgemm<0>;
  t.gemm[W_Q4_1] = qgemm<1>;
  t.gemm[W_Q8_0] = qgemm<2>;
  t.convert[A_F16] = convert_f16;
  t.convert[A_BF16] = convert_bf16;
  t.convert[A_Q8_0] = convert_q8_0;
  t.convert[A_Q8_1] = convert_q8_1;
  t.attend = attend;
  return t;
}

}  // namespace

const KernelTable* neon_table() {
  static const KernelTable t = make_table();
  return &t;
}

}  // namespace bluelm::kernels
