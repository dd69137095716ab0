// Every kernel table this CPU can run, checked against the scalar reference.
//   test_kernels            test all runnable tables (or only $BLUELM_ISA when set)
//   test_kernels --active   print the table active() picks (ArgumentError -> exit 2)
//   test_kernels --bench    single-thread gemm figures, scalar vs each table
// Last line of a test run: "N passed, N failed"; exit status non-zero on failure.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "core/block_formats.h"
#include "core/errors.h"
#include "kernels/cpu_features.h"
#include "kernels/kernels.h"
#include "kernels/repack.h"

using namespace bluelm;
using namespace bluelm::kernels;

namespace {

int g_passed = 0, g_failed = 0, g_reported = 0;

void check(bool ok, const std::string& what) {
  if (ok) {
    ++g_passed;
    return;
  }
  ++g_failed;
  if (g_reported++ < 40) std::printf("FAIL %s\n", what.c_str());
}

std::mt19937 rng(12345);
float normal() { return std::normal_distribution<float>(0.0f, 1.0f)(rng); }
float uniform(float a, float b) { return std::uniform_real_distribution<float>(a, b)(rng); }
int irand(int a, int b) { return std::uniform_int_distribution<int>(a, b)(rng); }

const GgmlType kWeightTypes[] = {GgmlType::F32, GgmlType::F16, GgmlType::BF16,
                                 GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::Q4_1};

bool quantised(GgmlType t) { return type_info(uint32_t(t))->block_size > 1; }

// Random weight rows in type t; `extreme` saturates every quant (all 0/15, +-127/-128).
std::vector<uint8_t> make_weights(GgmlType t, int64_t rows, int64_t K, size_t stride, bool extreme) {
  std::vector<uint8_t> buf(rows * stride, 0xA5);
  for (int64_t r = 0; r < rows; ++r) {
    uint8_t* row = buf.data() + r * stride;
    const int64_t nb = K / QK;
    switch (t) {
      case GgmlType::F32:
        for (int64_t k = 0; k < K; ++k) {
          const float v = normal();
          std::memcpy(row + 4 * k, &v, 4);
        }
        break;
      case GgmlType::F16:
      case GgmlType::BF16:
        for (int64_t k = 0; k < K; ++k) {
          const uint16_t h = t == GgmlType::F16 ? fp32_to_fp16(normal()) : fp32_to_bf16(normal());
          std::memcpy(row + 2 * k, &h, 2);
        }
        break;
      case GgmlType::Q4_0: {
        BlockQ4_0* b = reinterpret_cast<BlockQ4_0*>(row);
        for (int64_t i = 0; i < nb; ++i) {
          b[i].d = fp32_to_fp16(uniform(0.001f, 0.05f) * (irand(0, 1) ? 1 : -1));
          const int e = irand(0, 1) ? 0x00 : 0xff;
          for (int j = 0; j < QK / 2; ++j) b[i].qs[j] = uint8_t(extreme ? e : irand(0, 255));
        }
        break;
      }
      case GgmlType::Q4_1: {
        BlockQ4_1* b = reinterpret_cast<BlockQ4_1*>(row);
        for (int64_t i = 0; i < nb; ++i) {
          b[i].d = fp32_to_fp16(uniform(0.001f, 0.05f));
          b[i].m = fp32_to_fp16(uniform(-0.4f, 0.1f));
          const int e = irand(0, 1) ? 0x00 : 0xff;
          for (int j = 0; j < QK / 2; ++j) b[i].qs[j] = uint8_t(extreme ? e : irand(0, 255));
        }
        break;
      }
      case GgmlType::Q8_0: {
        BlockQ8_0* b = reinterpret_cast<BlockQ8_0*>(row);
        for (int64_t i = 0; i < nb; ++i) {
          b[i].d = fp32_to_fp16(uniform(0.0005f, 0.01f) * (irand(0, 1) ? 1 : -1));
          for (int j = 0; j < QK; ++j)
            b[i].qs[j] = int8_t(extreme ? (irand(0, 1) ? 127 : -128) : irand(-128, 127));
        }
        break;
      }
      default: break;
    }
  }
  return buf;
}

// Activation rows as floats; `extreme` makes every quantised value +-127.
std::vector<float> make_acts(int64_t n, int64_t K, bool extreme) {
  std::vector<float> x(n * K);
  for (auto& v : x) {
    v = extreme ? (irand(0, 1) ? 1.0f : -1.0f) : normal();
    if (!extreme && irand(0, 200) == 0) v *= 30.0f;  // outliers as in real activations
  }
  return x;
}

// sum |w_i * x_i| of the dequantised rows: the scale of the float rounding error.
double magnitude(GgmlType wt, const uint8_t* w, GgmlType xt, const uint8_t* x, int64_t K) {
  std::vector<float> a(K), b(K);
  dequantize_row(wt, w, a.data(), K);
  dequantize_row(xt, x, b.data(), K);
  double s = 0.0;
  for (int64_t k = 0; k < K; ++k) s += std::fabs(double(a[k]) * b[k]);
  if (wt == GgmlType::Q4_1) {  // the m * s term is not covered by a dequantised product
    const BlockQ4_1* wb = reinterpret_cast<const BlockQ4_1*>(w);
    const BlockQ8_1* xb = reinterpret_cast<const BlockQ8_1*>(x);
    for (int64_t i = 0; i < K / QK; ++i) s += std::fabs(fp16_to_fp32(wb[i].m) * fp16_to_fp32(xb[i].s));
  }
  return s;
}

// x86 tables mirror the scalar reference's F16 attention (llama.cpp's order) bit for bit.
bool mirrors_llamacpp_order(const KernelTable& isa) {
  return std::strcmp(isa.isa, "avx2") == 0 || std::strcmp(isa.isa, "avx512") == 0;
}

void test_gemm(const KernelTable& isa, const KernelTable& ref, GgmlType wt, int64_t rows, int64_t K,
               int64_t n_tok, bool extreme) {
  const GgmlType xt = vec_dot_type(wt);
  const int ws_slot = weight_slot(wt), xs_slot = act_slot(xt);
  const size_t wbytes = row_bytes(wt, K), xbytes = row_bytes(xt, K);
  const size_t ws = wbytes + 32, xs = xbytes + 32;  // padded strides: kernels must use them
  const std::vector<uint8_t> W = make_weights(wt, rows, K, ws, extreme);
  const std::vector<float> xf = make_acts(n_tok, K, extreme);
  std::vector<uint8_t> X(n_tok * xs, 0x5A);
  for (int64_t t = 0; t < n_tok; ++t) ref.convert[xs_slot](xf.data() + t * K, X.data() + t * xs, K);

  const size_t ldy = rows + 3;
  std::vector<float> y_ref(n_tok * ldy, NAN), y(n_tok * ldy, NAN);
  ref.gemm[ws_slot](W.data(), ws, X.data(), xs, y_ref.data(), ldy, K, 0, rows, n_tok);
  // Two disjoint row ranges, as two pool threads would call it.
  const int64_t split = rows / 3;
  isa.gemm[ws_slot](W.data(), ws, X.data(), xs, y.data(), ldy, K, 0, split, n_tok);
  isa.gemm[ws_slot](W.data(), ws, X.data(), xs, y.data(), ldy, K, split, rows, n_tok);

  int bad = 0;
  double worst = 0.0;
  // x86 tables sum quantised dots in the scalar reference's (llama.cpp's) order: exact.
  const bool exact = quantised(wt) && mirrors_llamacpp_order(isa);
  const double rel = exact ? 0.0 : quantised(wt) ? 1e-5 : 1e-5 + 1e-8 * double(K);
  for (int64_t t = 0; t < n_tok; ++t) {
    for (int64_t r = 0; r < int64_t(ldy); ++r) {
      const float a = y[t * ldy + r], b = y_ref[t * ldy + r];
      if (r >= rows) {  // padding of Y must stay untouched
        if (!std::isnan(a)) ++bad;
        continue;
      }
      const double mag = magnitude(wt, W.data() + r * ws, xt, X.data() + t * xs, K);
      const double err = std::fabs(double(a) - b);
      if (exact ? std::memcmp(&a, &b, 4) != 0 : !(err <= rel * mag + 1e-30)) {
        ++bad;
        worst = std::fmax(worst, mag > 0 ? err / mag : err);
      }
    }
  }
  char what[200];
  std::snprintf(what, sizeof what, "%s gemm %s rows=%lld K=%lld n_tok=%lld%s: %d bad, worst rel %.3g",
                isa.isa, type_name(uint32_t(wt)), (long long)rows, (long long)K, (long long)n_tok,
                extreme ? " extreme" : "", bad, worst);
  check(bad == 0, what);
}

void test_convert(const KernelTable& isa, const KernelTable& ref, GgmlType at, int64_t K) {
  std::vector<float> x(K);
  const int64_t nb = (K + QK - 1) / QK;
  for (int64_t b = 0; b < nb; ++b) {
    const int kind = int(b % 6);
    for (int64_t j = b * QK; j < std::min<int64_t>(K, (b + 1) * QK); ++j) {
      float v = normal();
      if (kind == 1) v = 0.0f;                                     // all-zero block: d = 0
      if (kind == 2) v = (j % QK == 0) ? 127.0f : irand(-126, 126) + 0.5f;  // exact ties
      if (kind == 3) v *= 1e-6f;                                   // F16 subnormals
      if (kind == 4) v *= 3e4f;                                    // F16 overflow to inf
      if (kind == 5 && j % 7 == 0) v = -v * 50.0f;
      x[j] = v;
    }
  }
  const size_t bytes = row_bytes(at, K);
  std::vector<uint8_t> a(bytes + 16, 0x77), b(bytes + 16, 0x77);
  ref.convert[act_slot(at)](x.data(), b.data(), K);
  isa.convert[act_slot(at)](x.data(), a.data(), K);
  int first = -1;
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i] != b[i]) {
      first = int(i);
      break;
    }
  }
  char what[160];
  std::snprintf(what, sizeof what, "%s convert %s K=%lld: first differing byte %d", isa.isa,
                type_name(uint32_t(at)), (long long)K, first);
  check(first < 0, what);
}

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

// A repacked gemm must equal the same table's file-layout gemm bit for bit, for
// any split of the rows between threads (aligned to the groups or not).
void test_packed(const KernelTable& isa, GgmlType wt, int64_t groups, int64_t K, int64_t n_tok) {
  const int slot = weight_slot(wt);
  const int R = isa.pack_rows[slot];
  if (R <= 0) return;
  const int64_t rows = groups * R;
  const GgmlType xt = vec_dot_type(wt);
  const size_t ws = row_bytes(wt, K), xs = row_bytes(xt, K);
  const size_t bb = type_info(uint32_t(wt))->block_bytes;
  const std::vector<uint8_t> W = make_weights(wt, rows, K, ws, false);
  std::vector<uint8_t> P(W.size()), U(W.size());
  if (isa.pack[slot]) {
    isa.pack[slot](W.data(), P.data(), ws, rows);
    isa.unpack[slot](P.data(), U.data(), ws, rows);
  } else {
    repack_rows(W.data(), P.data(), ws, bb, rows, R);
    unpack_rows(P.data(), U.data(), ws, bb, rows, R);
  }
  check(U == W, std::string(isa.isa) + " unpack_rows(repack_rows(W)) == W");
  const std::vector<float> xf = make_acts(n_tok, K, false);
  std::vector<uint8_t> X(n_tok * xs);
  for (int64_t t = 0; t < n_tok; ++t) isa.convert[act_slot(xt)](xf.data() + t * K, X.data() + t * xs, K);
  std::vector<float> y0(n_tok * rows, NAN), y1(n_tok * rows, NAN), y2(n_tok * rows, NAN);
  isa.gemm[slot](W.data(), ws, X.data(), xs, y0.data(), rows, K, 0, rows, n_tok);
  const int64_t aligned = rows / 2 - (rows / 2) % R, odd = rows / 3;
  isa.gemm_packed[slot](P.data(), ws, X.data(), xs, y1.data(), rows, K, 0, aligned, n_tok);
  isa.gemm_packed[slot](P.data(), ws, X.data(), xs, y1.data(), rows, K, aligned, rows, n_tok);
  isa.gemm_packed[slot](P.data(), ws, X.data(), xs, y2.data(), rows, K, 0, odd, n_tok);
  isa.gemm_packed[slot](P.data(), ws, X.data(), xs, y2.data(), rows, K, odd, rows, n_tok);
  const size_t n = y0.size() * sizeof(float);
  char what[200];
  std::snprintf(what, sizeof what, "%s packed gemm %s rows=%lld K=%lld n_tok=%lld bit-identical",
                isa.isa, type_name(uint32_t(wt)), (long long)rows, (long long)K, (long long)n_tok);
  check(std::memcmp(y0.data(), y1.data(), n) == 0 && std::memcmp(y0.data(), y2.data(), n) == 0, what);
}

void test_table(const KernelTable& isa) {
  const KernelTable& ref = scalar_table();
  const int before = g_failed;
  bool complete = isa.attend != nullptr && isa.swiglu != nullptr && isa.geglu != nullptr;
  for (int i = 0; i < W_COUNT; ++i) complete = complete && isa.gemm[i];
  for (int i = 0; i < A_COUNT; ++i) complete = complete && isa.convert[i];
  check(complete, std::string(isa.isa) + " table has every entry");

  const int64_t q_ks[] = {32, 64, 576, 1152, 1536, 4320};
  const int64_t f_ks[] = {5, 32, 64, 576, 588, 1152, 1536, 4304};
  const int64_t toks[] = {1, 2, 3, 5, 17, 64};
  const int64_t rows_list[] = {1, 5, 13, 19, 37};
  int pick = 0;
  for (GgmlType wt : kWeightTypes) {
    const bool q = quantised(wt);
    for (int64_t K : q ? std::vector<int64_t>(std::begin(q_ks), std::end(q_ks))
                       : std::vector<int64_t>(std::begin(f_ks), std::end(f_ks))) {
      for (int64_t n : toks) {
        int64_t rows = rows_list[pick++ % 5];
        if (n == 64 && K >= 1536) rows = std::min<int64_t>(rows, 13);  // keep qemu runs short
        test_gemm(isa, ref, wt, rows, K, n, false);
      }
      if (q) test_gemm(isa, ref, wt, 9, K, K <= 576 ? 5 : 1, true);
    }
  }
  for (GgmlType at : {GgmlType::Q8_0, GgmlType::Q8_1, GgmlType::F16, GgmlType::BF16, GgmlType::F32}) {
    for (int64_t K : {32, 64, 576, 1152, 1536, 4320}) test_convert(isa, ref, at, K);
    if (at == GgmlType::F16 || at == GgmlType::BF16 || at == GgmlType::F32)
      for (int64_t K : {1, 5, 588, 4304}) test_convert(isa, ref, at, K);
  }
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
  for (GgmlType wt : {GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q8_0})
    for (int64_t K : {32, 576, 1152, 4320})
      for (int64_t n : {1, 2, 3, 9, 17}) test_packed(isa, wt, n == 17 ? 3 : 9, K, n);
  std::printf("%-13s %s\n", isa.isa, g_failed == before ? "ok" : "FAILED");
}

// ---- benchmark ---------------------------------------------------------------

double now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

void bench(const std::vector<const KernelTable*>& tables) {
  struct Shape {
    int64_t K, rows, n_tok;
  } shapes[] = {{576, 1536, 1}, {2560, 6912, 1}, {576, 1536, 128}, {2560, 6912, 128}};
  std::printf("single thread, best of 3; GFLOP/s = 2*K*rows*n_tok/time; weights GB/s for n_tok=1\n");
  for (GgmlType wt : {GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q8_0, GgmlType::F16}) {
    for (const Shape& s : shapes) {
      const GgmlType xt = vec_dot_type(wt);
      const size_t ws = row_bytes(wt, s.K), xs = row_bytes(xt, s.K);
      const std::vector<uint8_t> W = make_weights(wt, s.rows, s.K, ws, false);
      const std::vector<float> xf = make_acts(s.n_tok, s.K, false);
      std::vector<uint8_t> X(s.n_tok * xs);
      for (int64_t t = 0; t < s.n_tok; ++t)
        scalar_table().convert[act_slot(xt)](xf.data() + t * s.K, X.data() + t * xs, s.K);
      std::vector<float> Y(s.n_tok * s.rows);
      std::printf("%-5s K=%-5lld rows=%-5lld n_tok=%-4lld", type_name(uint32_t(wt)), (long long)s.K,
                  (long long)s.rows, (long long)s.n_tok);
      double base = 0.0;
      for (const KernelTable* tb : tables) {
        const GemmFn f = tb->gemm[weight_slot(wt)];
        f(W.data(), ws, X.data(), xs, Y.data(), s.rows, s.K, 0, s.rows, s.n_tok);  // warm up
        // Best of 3 trials of >= 0.15 s: the machine may be shared.
        double sec = 1e30;
        for (int trial = 0; trial < 3; ++trial) {
          int reps = 0;
          const double t0 = now();
          double t1 = t0;
          while (reps < 1 || t1 - t0 < 0.15) {
            f(W.data(), ws, X.data(), xs, Y.data(), s.rows, s.K, 0, s.rows, s.n_tok);
            ++reps;
            t1 = now();
          }
          sec = std::fmin(sec, (t1 - t0) / reps);
        }
        const double gflops = 2.0 * s.K * s.rows * s.n_tok / sec * 1e-9;
        if (!base) base = gflops;
        std::printf(" | %s %7.2f GF/s", tb->isa, gflops);
        if (s.n_tok == 1) std::printf(" %5.1f GB/s", double(W.size()) / sec * 1e-9);
        if (tb != tables.front()) std::printf(" (x%.1f)", gflops / base);
      }
      std::printf("\n");
      std::fflush(stdout);
    }
  }
}

const char* const kAllIsas[] = {"avx2", "avx512", "neon", "neon_dotprod", "neon_i8mm"};

bool built_for_this_arch(const char* isa) {
#if defined(__x86_64__)
  return std::strncmp(isa, "avx", 3) == 0;
#elif defined(__aarch64__)
  return std::strncmp(isa, "neon", 4) == 0;
#else
  (void)isa;
  return false;
#endif
}

}  // namespace

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "";
  if (mode == "--active") {
    try {
      std::printf("%s\n", active().isa);
      return 0;
    } catch (const ArgumentError& e) {
      std::printf("ArgumentError: %s\n", e.what());
      return 2;
    }
  }
  std::printf("CPU features: %s\n", cpu_features_string().c_str());
  const char* forced = std::getenv("BLUELM_ISA");
  std::vector<const KernelTable*> tables;
  if (forced && *forced) {
    try {
      tables.push_back(&active());
    } catch (const ArgumentError& e) {
      std::printf("ArgumentError: %s\n", e.what());
      std::printf("0 passed, 1 failed\n");
      return 1;
    }
    check(std::strcmp(active().isa, forced) == 0, std::string("active() is ") + forced);
  } else {
    const KernelTable* all[8];
    const int n = available(all, 8);
    for (int i = 0; i < n; ++i) tables.push_back(all[i]);
    for (const char* name : kAllIsas) {
      if (!built_for_this_arch(name)) continue;
      if (!by_name(name))
        std::printf("note: %s is compiled in but this CPU cannot run it; not tested here\n", name);
    }
    check(by_name("no_such_isa") == nullptr, "unknown ISA name gives nullptr");
  }
  if (mode == "--bench") {
    std::vector<const KernelTable*> b{&scalar_table()};
    for (const KernelTable* t : tables)
      if (t != &scalar_table()) b.push_back(t);
    bench(b);
    return 0;
  }
  for (const KernelTable* t : tables) test_table(*t);
  std::printf("%d passed, %d failed\n", g_passed, g_failed);
  return g_failed ? 1 : 0;
}
