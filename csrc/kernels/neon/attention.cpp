// NEON attention over the F32 and F16 KV caches (its own summation order,
// within the kernel tests' tolerance of the scalar reference); the INT8 cache
// goes to the scalar code.
#include <math.h>

#include "kernels/arm/common.h"
#include "kernels/common/attend_f32.h"
#include "kernels/neon/neon.h"
#include "kernels/scalar/scalar.h"

namespace bluelm::kernels::neon {
namespace {

template <class L>  // F32Load or F16Load rows
float dot_row(const typename L::E* a, const float* b, int64_t n) {
  float32x4_t s0 = vdupq_n_f32(0.0f), s1 = s0;
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const F32x8 v = L::load8(a + i);
    s0 = vfmaq_f32(s0, v.lo, vld1q_f32(b + i));
    s1 = vfmaq_f32(s1, v.hi, vld1q_f32(b + i + 4));
  }
  float s = vaddvq_f32(vaddq_f32(s0, s1));
  for (; i < n; ++i) s += L::load1(a + i) * b[i];
  return s;
}

// out[d] = sum_j p_j V_j[d], j in order for each element as the reference.
template <class L>
void weighted_sum(const float* p, const typename L::E* v, size_t stride, int64_t hd, int64_t n, float* out) {
  int64_t d = 0;
  for (; d + 16 <= hd; d += 16) {
    float32x4_t a0 = vdupq_n_f32(0.0f), a1 = a0, a2 = a0, a3 = a0;
    for (int64_t j = 0; j < n; ++j) {
      const typename L::E* vj = v + j * stride + d;
      const F32x8 v0 = L::load8(vj), v1 = L::load8(vj + 8);
      a0 = vfmaq_n_f32(a0, v0.lo, p[j]);
      a1 = vfmaq_n_f32(a1, v0.hi, p[j]);
      a2 = vfmaq_n_f32(a2, v1.lo, p[j]);
      a3 = vfmaq_n_f32(a3, v1.hi, p[j]);
    }
    vst1q_f32(out + d, a0);
    vst1q_f32(out + d + 4, a1);
    vst1q_f32(out + d + 8, a2);
    vst1q_f32(out + d + 12, a3);
  }
  for (; d < hd; ++d) {
    float a = 0.0f;
    for (int64_t j = 0; j < n; ++j) a += p[j] * L::load1(v + j * stride + d);
    out[d] = a;
  }
}

void attend(const float* q, const void* K, const void* V, GgmlType kv_type, size_t kv_stride,
            int64_t head_dim, int64_t n_kv, float scale, float softcap,
            bool batched /* NEON keeps its own order */, float* scratch, float* out) {
  if (kv_type == GgmlType::Q8_0) {  // INT8 cache: the reference code path
    scalar::attend(q, K, V, kv_type, kv_stride, head_dim, n_kv, scale, softcap, batched, scratch, out);
    return;
  }
  if (kv_type == GgmlType::F32) {
    attend_f32<dot_row<F32Load>, weighted_sum<F32Load>, scalar::softcap_scores>(q, static_cast<const float*>(K), static_cast<const float*>(V),
                                                         kv_stride, head_dim, n_kv, scale, softcap, scratch, out);
    return;
  }
  const uint16_t* k = static_cast<const uint16_t*>(K);
  // F16 cache: query and softmax weights rounded to F16, as the reference.
  float qh[512];
  int64_t d = 0;
  for (; d + 4 <= head_dim; d += 4) vst1q_f32(qh + d, vcvt_f32_f16(vcvt_f16_f32(vld1q_f32(q + d))));
  for (; d < head_dim; ++d) {
    const uint16_t h = f2h(q[d]);
    qh[d] = h2f(&h);
  }
  for (int64_t j = 0; j < n_kv; ++j) scratch[j] = scale * dot_row<F16Load>(k + j * kv_stride, qh, head_dim);
  scalar::softcap_scores(scratch, n_kv, softcap);
  softmax_sum_double(scratch, n_kv);
  int64_t j = 0;
  for (; j + 4 <= n_kv; j += 4) vst1q_f32(scratch + j, vcvt_f32_f16(vcvt_f16_f32(vld1q_f32(scratch + j))));
  for (; j < n_kv; ++j) {
    const uint16_t h = f2h(scratch[j]);
    scratch[j] = h2f(&h);
  }
  weighted_sum<F16Load>(scratch, static_cast<const uint16_t*>(V), kv_stride, head_dim, n_kv, out);
}

}  // namespace

void fill_attention(KernelTable& t) { t.attend = attend; }

}  // namespace bluelm::kernels::neon
