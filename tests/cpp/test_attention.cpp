// Attention over the F32, F16 and INT8 KV caches, attend_rows and SwiGLU of a
// table against the scalar one: F16 attention and SwiGLU bit for bit on x86
// (llama.cpp's order), the rest within the stated bounds; everything also
// against plain double-precision arithmetic.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>

#include "harness.h"

using namespace bluelm;
using namespace bluelm::kernels;

namespace harness {
namespace {

void test_attend(const KernelTable& isa, const KernelTable& ref, GgmlType kv, int64_t hd, int64_t n_kv,
                 bool batched, float softcap = 0.0f) {
  const size_t stride = hd * 3 + 4;  // several heads interleaved, odd padding
  const size_t esz = kv == GgmlType::F32 ? 4 : 2;
  std::vector<uint8_t> Kb(n_kv * stride * esz), Vb(n_kv * stride * esz);
  float vmax = 0.0f;
  for (int64_t j = 0; j < n_kv * int64_t(stride); ++j) {
    const float kval = normal() * 2.0f, vval = normal();
    vmax = std::fmax(vmax, std::fabs(kv == GgmlType::F32 ? vval : fp16_to_fp32(fp32_to_fp16(vval))));
    if (kv == GgmlType::F32) {
      std::memcpy(&Kb[j * 4], &kval, 4);
      std::memcpy(&Vb[j * 4], &vval, 4);
    } else {
      const uint16_t kh = fp32_to_fp16(kval), vh = fp32_to_fp16(vval);
      std::memcpy(&Kb[j * 2], &kh, 2);
      std::memcpy(&Vb[j * 2], &vh, 2);
    }
  }
  std::vector<float> q(hd), s1(n_kv), s2(n_kv), o1(hd, NAN), o2(hd, NAN);
  for (auto& v : q) v = normal();
  const float scale = 1.0f / std::sqrt(float(hd));
  ref.attend(q.data(), Kb.data(), Vb.data(), kv, stride, hd, n_kv, scale, softcap, batched, s1.data(), o1.data());
  isa.attend(q.data(), Kb.data(), Vb.data(), kv, stride, hd, n_kv, scale, softcap, batched, s2.data(), o2.data());
  // F16: a softmax weight may round to the neighbouring F16 value (relative 2^-11).
  const bool exact = kv == GgmlType::F16 && mirrors_llamacpp_order(isa);
  const double tol = exact ? 0.0 : (kv == GgmlType::F32 ? 2e-5 : 1e-3) * vmax;
  int bad = 0;
  for (int64_t d = 0; d < hd; ++d) bad += !(std::fabs(double(o1[d]) - o2[d]) <= tol);
  // and against plain double-precision attention on the same F16 inputs
  std::vector<double> sc(n_kv);
  double mx = -1e300, sum = 0.0;
  for (int64_t j = 0; j < n_kv; ++j) {
    double dot = 0.0;
    for (int64_t d = 0; d < hd; ++d) {
      float kval;
      if (kv == GgmlType::F32) std::memcpy(&kval, &Kb[(j * stride + d) * 4], 4);
      else { uint16_t h; std::memcpy(&h, &Kb[(j * stride + d) * 2], 2); kval = fp16_to_fp32(h); }
      dot += double(kval) * q[d];
    }
    sc[j] = softcap > 0.0f ? softcap * std::tanh(dot * scale / softcap) : dot * scale;
    mx = std::max(mx, sc[j]);
  }
  for (int64_t j = 0; j < n_kv; ++j) sum += (sc[j] = std::exp(sc[j] - mx));
  int far = 0;
  for (int64_t d = 0; d < hd; ++d) {
    double o = 0.0;
    for (int64_t j = 0; j < n_kv; ++j) {
      float vval;
      if (kv == GgmlType::F32) std::memcpy(&vval, &Vb[(j * stride + d) * 4], 4);
      else { uint16_t h; std::memcpy(&h, &Vb[(j * stride + d) * 2], 2); vval = fp16_to_fp32(h); }
      o += sc[j] / sum * vval;
    }
    far += !(std::fabs(o - o2[d]) <= (kv == GgmlType::F32 ? 2e-5 : 2e-3) * vmax);
  }
  char what[200];
  std::snprintf(what, sizeof what, "%s attend %s head_dim=%lld n_kv=%lld batched=%d softcap=%g: %d differ from scalar, %d far from double",
                isa.isa, type_name(uint32_t(kv)), (long long)hd, (long long)n_kv, int(batched), double(softcap), bad, far);
  bad += far;
  check(bad == 0, what);
}

// SwiGLU rows (odd lengths too, large |x| for the exp's scaled branch): every table
// equals the scalar reference bit for bit, and both stay within 4 ulp-ish of double.
void test_swiglu(const KernelTable& isa, const KernelTable& ref, int64_t n) {
  std::vector<float> g(n), u(n), y1(n), y2(n);
  for (int64_t i = 0; i < n; ++i) {
    g[i] = i % 7 == 3 ? uniform(-120.0f, 120.0f) : normal() * 4.0f;
    u[i] = normal();
  }
  ref.swiglu(g.data(), u.data(), y1.data(), n);
  isa.swiglu(g.data(), u.data(), y2.data(), n);
  int differ = 0, far = 0;
  for (int64_t i = 0; i < n; ++i) {
    differ += std::memcmp(&y1[i], &y2[i], 4) != 0;
    const double want = double(g[i]) / (1.0 + std::exp(-double(g[i]))) * u[i];
    far += !(std::fabs(want - y2[i]) <= 4e-7 * std::fabs(want) + 1e-30);
  }
  char what[160];
  std::snprintf(what, sizeof what, "%s swiglu n=%lld: %d differ from scalar, %d far from double",
                isa.isa, (long long)n, differ, far);
  check(differ == 0 && far == 0, what);
}

// attend_rows (where a table has it) must equal one attend(batched) per row of the scalar table.
void test_attend_rows(const KernelTable& isa, const KernelTable& ref, int64_t hd, int64_t n0, int64_t m) {
  if (!isa.attend_rows) return;
  const size_t stride = hd * 3 + 16;
  const int64_t n_kv = n0 + m - 1;
  std::vector<uint16_t> Kb(n_kv * stride), Vb(n_kv * stride);
  for (size_t j = 0; j < Kb.size(); ++j) {
    Kb[j] = fp32_to_fp16(normal() * 2.0f);
    Vb[j] = fp32_to_fp16(normal());
  }
  const size_t qs = hd + 8;
  std::vector<float> q(m * qs), o1(m * qs, NAN), o2(m * qs, NAN), s1(n_kv), s2(4 * n_kv);
  for (auto& v : q) v = normal();
  const float scale = 1.0f / std::sqrt(float(hd));
  for (int64_t t = 0; t < m; ++t)
    ref.attend(q.data() + t * qs, Kb.data(), Vb.data(), GgmlType::F16, stride, hd, n0 + t, scale, 0.0f, true,
               s1.data(), o1.data() + t * qs);
  isa.attend_rows(q.data(), qs, Kb.data(), Vb.data(), GgmlType::F16, stride, hd, n0, m, scale, s2.data(),
                  o2.data(), qs);
  int bad = 0;
  for (int64_t t = 0; t < m; ++t)
    for (int64_t d = 0; d < hd; ++d)
      bad += std::memcmp(&o1[t * qs + d], &o2[t * qs + d], 4) != 0;
  char what[160];
  std::snprintf(what, sizeof what, "%s attend_rows head_dim=%lld n_kv0=%lld m=%lld: %d differ from scalar",
                isa.isa, (long long)hd, (long long)n0, (long long)m, bad);
  check(bad == 0, what);
}

// GELU(tanh)-gated rows: every table equals the scalar reference bit for bit,
// and both stay close to double precision's 0.5 g (1 + tanh(sqrt(2/pi)(g + 0.044715 g^3))) u.
void test_geglu(const KernelTable& isa, const KernelTable& ref, int64_t n) {
  std::vector<float> g(n), u(n), y1(n), y2(n);
  for (int64_t i = 0; i < n; ++i) {
    g[i] = i % 7 == 3 ? uniform(-60.0f, 60.0f) : normal() * 3.0f;
    u[i] = normal();
  }
  ref.geglu(g.data(), u.data(), y1.data(), n);
  isa.geglu(g.data(), u.data(), y2.data(), n);
  int differ = 0, far = 0;
  for (int64_t i = 0; i < n; ++i) {
    differ += std::memcmp(&y1[i], &y2[i], 4) != 0;
    const double x = g[i];
    const double want = 0.5 * x * (1.0 + std::tanh(0.7978845608028654 * (x + 0.044715 * x * x * x))) * u[i];
    far += !(std::fabs(want - y2[i]) <= 2e-6 * std::fabs(x * u[i]) + 1e-30);
  }
  char what[160];
  std::snprintf(what, sizeof what, "%s geglu n=%lld: %d differ from scalar, %d far from double",
                isa.isa, (long long)n, differ, far);
  check(differ == 0 && far == 0, what);
}

// INT8 (Q8_0) KV cache: the table's attention over quantised rows against the
// reference attention in F32 over the same rows dequantised.
void test_attend_q8(const KernelTable& isa, const KernelTable& ref, int64_t hd, int64_t n_kv) {
  const int64_t stride = hd * 3 + QK;  // elements; several heads, padding of one block
  const size_t rb = row_bytes(GgmlType::Q8_0, stride);
  std::vector<uint8_t> Kq(n_kv * rb), Vq(n_kv * rb);
  std::vector<float> Kf(n_kv * stride), Vf(n_kv * stride), row(stride);
  for (int64_t j = 0; j < n_kv; ++j) {
    for (auto& v : row) v = normal() * 2.0f;
    quantize_row_q8_0_ref(row.data(), reinterpret_cast<BlockQ8_0*>(Kq.data() + j * rb), stride);
    for (auto& v : row) v = normal();
    quantize_row_q8_0_ref(row.data(), reinterpret_cast<BlockQ8_0*>(Vq.data() + j * rb), stride);
    dequantize_row(GgmlType::Q8_0, Kq.data() + j * rb, Kf.data() + j * stride, stride);
    dequantize_row(GgmlType::Q8_0, Vq.data() + j * rb, Vf.data() + j * stride, stride);
  }
  float vmax = 0.0f;
  for (float v : Vf) vmax = std::fmax(vmax, std::fabs(v));
  std::vector<float> q(hd), s1(n_kv), s2(n_kv), o1(hd, NAN), o2(hd, NAN);
  for (auto& v : q) v = normal();
  const float scale = 1.0f / std::sqrt(float(hd));
  // The second head of each row: a block-aligned offset inside the row.
  const size_t off = row_bytes(GgmlType::Q8_0, hd);
  ref.attend(q.data(), Kf.data() + hd, Vf.data() + hd, GgmlType::F32, stride, hd, n_kv, scale, 0.0f,
             false, s1.data(), o1.data());
  isa.attend(q.data(), Kq.data() + off, Vq.data() + off, GgmlType::Q8_0, stride, hd, n_kv, scale, 0.0f,
             false, s2.data(), o2.data());
  // Only the order of float sums differs (per block, then scaled by d).
  const double tol = 1e-4 * vmax;
  int bad = 0;
  for (int64_t d = 0; d < hd; ++d) bad += !(std::fabs(double(o1[d]) - o2[d]) <= tol);
  char what[160];
  std::snprintf(what, sizeof what, "%s attend Q8_0 head_dim=%lld n_kv=%lld: %d bad", isa.isa,
                (long long)hd, (long long)n_kv, bad);
  check(bad == 0, what);
}

// attend_rows on the INT8 cache must equal the same table's attend row by row,
// bit for bit (it only shares the K/V widening among the rows).
void test_attend_rows_q8(const KernelTable& isa, int64_t hd, int64_t n0, int64_t m) {
  if (!isa.attend_rows) return;
  const int64_t stride = hd * 3 + QK;
  const size_t rb = row_bytes(GgmlType::Q8_0, stride);
  const int64_t n_kv = n0 + m - 1;
  std::vector<uint8_t> Kq(n_kv * rb), Vq(n_kv * rb);
  std::vector<float> row(stride);
  for (int64_t j = 0; j < n_kv; ++j) {
    for (auto& v : row) v = normal() * 2.0f;
    quantize_row_q8_0_ref(row.data(), reinterpret_cast<BlockQ8_0*>(Kq.data() + j * rb), stride);
    for (auto& v : row) v = normal();
    quantize_row_q8_0_ref(row.data(), reinterpret_cast<BlockQ8_0*>(Vq.data() + j * rb), stride);
  }
  const size_t qs = hd + 8, off = row_bytes(GgmlType::Q8_0, hd);
  std::vector<float> q(m * qs), o1(m * qs, NAN), o2(m * qs, NAN), s1(n_kv), s2(4 * n_kv);
  for (auto& v : q) v = normal();
  const float scale = 1.0f / std::sqrt(float(hd));
  for (int64_t t = 0; t < m; ++t)
    isa.attend(q.data() + t * qs, Kq.data() + off, Vq.data() + off, GgmlType::Q8_0, stride, hd, n0 + t, scale, 0.0f,
               true, s1.data(), o1.data() + t * qs);
  isa.attend_rows(q.data(), qs, Kq.data() + off, Vq.data() + off, GgmlType::Q8_0, stride, hd, n0, m, scale,
                  s2.data(), o2.data(), qs);
  int bad = 0;
  for (int64_t t = 0; t < m; ++t)
    for (int64_t d = 0; d < hd; ++d) bad += std::memcmp(&o1[t * qs + d], &o2[t * qs + d], 4) != 0;
  char what[160];
  std::snprintf(what, sizeof what, "%s attend_rows Q8_0 head_dim=%lld n_kv0=%lld m=%lld: %d differ from attend",
                isa.isa, (long long)hd, (long long)n0, (long long)m, bad);
  check(bad == 0, what);
}

// attend_steps (where a table has it): lanes [lane0, lane1) of m rows x group
// query heads over one KV head of a cache holding two, each lane bit for bit the
// same table's attend(batched = false) on the positions its row sees
// (pos0 + t + 1, the last `window` of them when window > 0).
void test_attend_steps(const KernelTable& isa, GgmlType kv, int64_t hd, int64_t pos0, int64_t m, int64_t group,
                       int64_t window, int64_t lane0, int64_t lane1, float softcap = 0.0f) {
  if (!isa.attend_steps) return;
  const int64_t n_kv = pos0 + m, stride = 2 * hd + QK;  // elements per position: two heads and a block of padding
  const size_t rb = row_bytes(kv, stride);
  std::vector<uint8_t> Kb(n_kv * rb), Vb(n_kv * rb);
  std::vector<float> row(stride);
  for (int64_t j = 0; j < n_kv; ++j)
    for (auto* c : {&Kb, &Vb}) {
      for (auto& v : row) v = normal() * (c == &Kb ? 2.0f : 1.0f);
      uint8_t* dst = c->data() + j * rb;
      if (kv == GgmlType::F32) std::memcpy(dst, row.data(), rb);
      else if (kv == GgmlType::F16)
        for (int64_t d = 0; d < stride; ++d) {
          const uint16_t h = fp32_to_fp16(row[d]);
          std::memcpy(dst + 2 * d, &h, 2);
        }
      else quantize_row_q8_0_ref(row.data(), reinterpret_cast<BlockQ8_0*>(dst), stride);
    }
  const size_t qs = group * hd + 8, off = row_bytes(kv, hd);  // the second KV head
  std::vector<float> q(m * qs), o1(m * qs, NAN), o2(m * qs, NAN), s1(n_kv);
  std::vector<float> s2(std::min<int64_t>(lane1 - lane0, kStepLanes) * (pos0 + m + 16));
  for (auto& v : q) v = normal();
  ChunkAttention a{};
  a.q = q.data();
  a.q_stride = qs;
  a.k = Kb.data() + off;
  a.v = Vb.data() + off;
  a.kv_type = kv;
  a.kv_stride = stride;
  a.head_dim = hd;
  a.n_group = group;
  a.pos0 = pos0;
  a.window = window;
  a.scale = 1.0f / std::sqrt(float(hd));
  a.softcap = softcap;
  a.out = o2.data();
  a.out_stride = qs;
  isa.attend_steps(a, lane0, lane1, s2.data());
  int bad = 0;
  for (int64_t L = lane0; L < lane1; ++L) {
    const int64_t t = L / group, g = L % group, hi = pos0 + t + 1;
    const int64_t lo = window ? std::max<int64_t>(0, hi - window) : 0;
    float* o = o1.data() + t * qs + g * hd;
    isa.attend(q.data() + t * qs + g * hd, Kb.data() + off + lo * rb, Vb.data() + off + lo * rb, kv, stride, hd,
               hi - lo, a.scale, softcap, false, s1.data(), o);
    for (int64_t d = 0; d < hd; ++d) bad += std::memcmp(&o[d], &o2[t * qs + g * hd + d], 4) != 0;
  }
  // and nothing outside the lanes written
  for (int64_t L = 0; L < m * group; ++L)
    if (L < lane0 || L >= lane1)
      for (int64_t d = 0; d < hd; ++d) bad += !std::isnan(o2[L / group * qs + L % group * hd + d]);
  char what[320];
  std::snprintf(what, sizeof what,
                "%s attend_steps %s head_dim=%lld pos0=%lld rows=%lld group=%lld window=%lld lanes [%lld, %lld) softcap=%g: %d differ from attend",
                isa.isa, type_name(uint32_t(kv)), (long long)hd, (long long)pos0, (long long)m, (long long)group,
                (long long)window, (long long)lane0, (long long)lane1, double(softcap), bad);
  check(bad == 0, what);
}

}  // namespace

void test_attention(const KernelTable& isa) {
  const KernelTable& ref = scalar_table();
  for (GgmlType kv : {GgmlType::F32, GgmlType::F16})
    for (int64_t hd : {32, 64, 72, 128})
      for (int64_t n_kv : {1, 2, 7, 33, 130})
        for (bool batched : {false, true}) test_attend(isa, ref, kv, hd, n_kv, batched);
  for (GgmlType kv : {GgmlType::F32, GgmlType::F16})  // gemma2's attention soft-cap
    for (int64_t n_kv : {1, 9, 130})
      for (bool batched : {false, true}) test_attend(isa, ref, kv, 64, n_kv, batched, 5.0f);
  for (int64_t n : {1, 7, 8, 576, 1536, 1541}) test_swiglu(isa, ref, n);
  for (int64_t n : {1, 7, 8, 13, 576, 1541}) test_geglu(isa, ref, n);
  for (int64_t hd : {32, 64, 72, 128})
    for (int64_t n0 : {1, 6, 33})
      for (int64_t m : {1, 2, 3, 4, 5, 11}) test_attend_rows(isa, ref, hd, n0, m);
  for (int64_t hd : {32, 64, 128})
    for (int64_t n_kv : {1, 7, 130, 1001}) test_attend_q8(isa, ref, hd, n_kv);
  for (int64_t hd : {32, 128})
    for (int64_t n0 : {1, 6, 129})
      for (int64_t m : {1, 2, 3, 4, 5, 11}) test_attend_rows_q8(isa, hd, n0, m);
  for (GgmlType kv : {GgmlType::F16, GgmlType::F32, GgmlType::Q8_0})
    for (int64_t hd : {32, 64, 128})
      for (int64_t pos0 : {0, 5, 37, 300})
        for (int64_t m : {1, 2, 3, 6, 9, 10})
          for (int64_t group : {1, 2, 3, 4}) test_attend_steps(isa, kv, hd, pos0, m, group, 0, 0, m * group);
  for (int64_t group : {1, 3, 4})  // a thread's share: lanes cut inside rows and KV heads
    for (int64_t m : {3, 8}) {
      test_attend_steps(isa, GgmlType::F16, 64, 40, m, group, 0, 1, m * group - 1);
      test_attend_steps(isa, GgmlType::F16, 64, 40, m, group, 0, m * group / 2, m * group);
    }
  for (int64_t window : {1, 4, 16, 40})  // sliding-window layers
    for (int64_t pos0 : {0, 3, 50}) test_attend_steps(isa, GgmlType::F16, 64, pos0, 7, 3, window, 0, 21);
  test_attend_steps(isa, GgmlType::F16, 64, 20, 4, 3, 0, 0, 12, 5.0f);  // soft-capped: attend's route
  test_attend_steps(isa, GgmlType::F16, 72, 20, 4, 3, 0, 0, 12);        // head_dim not a multiple of 32
  test_attend_steps(isa, GgmlType::F16, 64, 700, 10, 4, 0, 0, 40);      // more lanes than kStepLanes
}

}  // namespace harness
