// The vision encoder's ops of a table against the scalar one: the int8 gemm
// and activation quantisation bit for bit (exact int32 sums, the same
// epilogue; weights packed in each table's own panel layout), on odd shapes (K
// not a multiple of 64, rows not a multiple of 32, token counts not multiples
// of the tiles); softmax, GELU-tanh and LayerNorm within 1e-5 of the largest
// output; attention within 1e-5 of double-precision arithmetic; the int8
// encoder's reduced-precision attention (i8_attention) within the bounds stated
// at test_i8_attention_head.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "harness.h"

using namespace bluelm;
using namespace bluelm::kernels;

namespace harness {
namespace {

// Weights, activations and bias of one int8 matmul; quantised and packed per table.
struct I8Case {
  std::vector<float> w, x, bias;
  int64_t rows, k, n;
};

I8Case make_case(int64_t rows, int64_t k, int64_t n) {
  I8Case c{{}, {}, {}, rows, k, n};
  c.w.resize(static_cast<size_t>(rows * k));
  for (float& v : c.w) v = 0.05f * normal();
  if (rows > 3) std::fill(c.w.begin() + 3 * k, c.w.begin() + 4 * k, 0.0f);  // an all-zero row
  c.x.resize(static_cast<size_t>(n * k));
  for (float& v : c.x) v = normal();
  for (int64_t t = 0; t < n; ++t)  // skewed rows, as after GELU; all positive; all negative
    for (int64_t i = 0; i < k; ++i) {
      float& v = c.x[t * k + i];
      if (t % 4 == 1) v = v < -0.17f ? -0.17f : 2.0f * v;
      if (t % 4 == 3) v = std::fabs(v) + (t % 8 == 3 ? 1.0f : 0.0f);
      if (t == 1 && n > 8) v = -std::fabs(v);
    }
  if (n > 2) std::fill(c.x.begin() + 2 * k, c.x.begin() + 3 * k, 0.0f);  // an all-zero token
  c.bias.resize(static_cast<size_t>(rows));
  for (float& v : c.bias) v = normal();
  return c;
}

// One table's run: its packer's layout, its quantiser, its gemm.
struct I8Run {
  I8Packed p;
  std::vector<uint8_t> q;
  std::vector<float> sx, y;
  std::vector<int32_t> zp;
  size_t xs = 0;
};

void run_i8(const VisionKernels& v, const I8Case& c, I8Run& r, const float* bias, bool acc, int64_t split) {
  i8_alloc(r.p, c.rows, c.k, v.i8_layout);
  i8_pack_rows(r.p, c.k, 0, c.rows, c.w.data(), c.k);
  const int64_t kp = r.p.kp;
  r.xs = i8_act_stride(kp);
  r.q.assign(r.xs * c.n, 0);
  r.sx.resize(static_cast<size_t>(c.n));
  r.zp.resize(static_cast<size_t>(c.n));
  for (int64_t t = 0; t < c.n; ++t)
    r.sx[t] = v.i8_quant(c.x.data() + t * c.k, c.k, kp, r.q.data() + t * r.xs, r.zp.data() + t);
  const I8Matrix W = r.p.view();
  const I8Acts X{r.q.data(), r.xs, r.sx.data(), r.zp.data(), c.n};
  const int64_t panels = (c.rows + kI8Panel - 1) / kI8Panel;
  r.y.assign(static_cast<size_t>(c.n * c.rows), 0.5f);
  // Two calls over panel ranges, as the thread pool splits them.
  v.i8_gemm(W, X, r.y.data(), c.rows, bias, acc, 0, split < panels ? split : panels);
  if (split < panels) v.i8_gemm(W, X, r.y.data(), c.rows, bias, acc, split, panels);
}

void test_i8(const KernelTable& isa, const KernelTable& ref, int64_t rows, int64_t k, int64_t n) {
  const I8Case c = make_case(rows, k, n);
  const std::string name = std::string(isa.isa) + " i8 rows " + std::to_string(rows) + " k " + std::to_string(k) +
                           " tokens " + std::to_string(n);
  for (int mode = 0; mode < 3; ++mode) {  // no bias; bias; bias and accumulate
    const float* bias = mode >= 1 ? c.bias.data() : nullptr;
    I8Run want, got;
    run_i8(ref.vision, c, want, bias, mode == 2, 1);
    run_i8(isa.vision, c, got, bias, mode == 2, 3);
    bool same_q = want.sx == got.sx && want.zp == got.zp;
    for (int64_t t = 0; t < n; ++t) {
      same_q = same_q && std::memcmp(want.q.data() + t * want.xs, got.q.data() + t * got.xs, k) == 0;
      for (int64_t i = k; i < got.p.kp; ++i) same_q = same_q && got.q[t * got.xs + i] == uint8_t(got.zp[t]);
    }
    if (mode == 0) check(same_q, name + ": quantised activations");
    check(std::memcmp(want.y.data(), got.y.data(), sizeof(float) * want.y.size()) == 0,
          name + " mode " + std::to_string(mode) + ": outputs");
    if (mode == 1 && isa.vision.i8_gemm_gelu) {  // GELU in the epilogue: the bits of the gemm, then gelu_tanh
      VisionKernels fused = isa.vision;
      fused.i8_gemm = isa.vision.i8_gemm_gelu;
      I8Run g;
      run_i8(fused, c, g, bias, false, 3);
      for (int64_t t = 0; t < n; ++t) isa.vision.gelu_tanh(got.y.data() + t * rows, rows);
      check(std::memcmp(g.y.data(), got.y.data(), sizeof(float) * got.y.size()) == 0, name + ": i8_gemm_gelu");
    }
  }
}

// One (image, head) against a double-precision reference; q, k, v rows ld apart.
void test_attention_head(const KernelTable& isa, int64_t n, int64_t hd, int64_t ld) {
  const VisionKernels& o = isa.vision;
  std::vector<float> q(n * ld), k(n * ld), v(n * ld), out(n * ld, 7.0f), work(o.attention_work(n, hd));
  for (auto* a : {&q, &k, &v})
    for (float& x : *a) x = 2.0f * normal();
  const float scale = 1.0f / std::sqrt(float(hd));
  o.attention(q.data(), k.data(), v.data(), ld, n, hd, scale, out.data(), work.data());
  double err = 0, mx = 0;
  bool untouched = true;
  std::vector<double> p(n);
  for (int64_t t = 0; t < n; ++t) {
    double m = -1e300, sum = 0;
    for (int64_t j = 0; j < n; ++j) {
      double s = 0;
      for (int64_t d = 0; d < hd; ++d) s += double(q[t * ld + d]) * k[j * ld + d];
      p[j] = scale * s;
      m = std::max(m, p[j]);
    }
    for (int64_t j = 0; j < n; ++j) sum += p[j] = std::exp(p[j] - m);
    for (int64_t d = 0; d < hd; ++d) {
      double o_ = 0;
      for (int64_t j = 0; j < n; ++j) o_ += p[j] / sum * v[j * ld + d];
      err = std::max(err, std::fabs(o_ - out[t * ld + d]));
      mx = std::max(mx, std::fabs(o_));
    }
    for (int64_t d = hd; d < ld; ++d) untouched = untouched && out[t * ld + d] == 7.0f;
  }
  check(err <= 1e-5 * mx && untouched, std::string(isa.isa) + " vision attention n " + std::to_string(n) + " hd " +
                                           std::to_string(hd) + ": max error " + std::to_string(err / mx));
}

// The exponents of i8_attention's weights as its contract computes them
// (kernels.h), in the same float operations: each query row to u8 as
// i8_quant, K less its f32 mean over the keys to s8 per key, exact int32 sums,
// f = float(sum - zp * ksum) * (scale_k * c), c = scale * log2(e); then per
// query x = fma(f, scale_q, -(max_j f * scale_q)), the weight being 255 * 2^x.
std::vector<float> i8_attention_scores(const std::vector<float>& q, const std::vector<float>& k, int64_t n,
                                       int64_t hd, int64_t ld, float c) {
  std::vector<float> mean(hd, 0.0f), s(n * n);
  for (int64_t j = 0; j < n; ++j)
    for (int64_t d = 0; d < hd; ++d) mean[d] += k[j * ld + d];
  const float inv_n = 1.0f / float(n);
  for (float& m : mean) m *= inv_n;
  std::vector<int32_t> k8(n * hd), ksum(n, 0);
  std::vector<float> ks(n);
  for (int64_t j = 0; j < n; ++j) {
    float amax = 0.0f;
    for (int64_t d = 0; d < hd; ++d) amax = std::max(amax, std::fabs(k[j * ld + d] - mean[d]));
    const float inv = amax > 0.0f ? 127.0f / amax : 0.0f;
    for (int64_t d = 0; d < hd; ++d) ksum[j] += k8[j * hd + d] = int32_t(std::nearbyint((k[j * ld + d] - mean[d]) * inv));
    ks[j] = amax / 127.0f * c;
  }
std::vector<int32_t> u(hd);
  for (int64_t t = 0; t < n; ++t) {
    float lo = 0.0f, hi = 0.0f;
    for (int64_t d = 0; d < hd; ++d) lo = std::min(lo, q[t * ld + d]), hi = std::max(hi, q[t * ld + d]);
    const float range = hi - lo, inv = range > 0.0f ? 255.0f / range : 0.0f, qs = range / 255.0f;
    const int32_t z = int32_t(std::nearbyint(-lo * inv));
    for (int64_t d = 0; d < hd; ++d) u[d] = std::min(255, std::max(0, int32_t(std::nearbyint(q[t * ld + d] * inv)) + z));
    float m = -INFINITY;
    for (int64_t j = 0; j < n; ++j) {
      int32_t acc = 0;
      for (int64_t d = 0; d < hd; ++d) acc += u[d] * k8[j * hd + d];
      m = std::max(m, s[t * n + j] = float(acc - z * ksum[j]) * ks[j]);
    }
    for (int64_t j = 0; j < n; ++j) s[t * n + j] = std::fma(s[t * n + j], qs, -(m * qs));
  }
  return s;
}

// V as i8_attention's contract packs it (kernels.h), in the same float
// operations: per column c the f32 mean over the keys in order, scale
// sv = max_j |v - mean| / 127, v8 = round((v - mean) * (127 / max)).
struct I8V {
  std::vector<float> mean, sv;
  std::vector<int32_t> v8;  // n x hd
};

I8V i8_attention_v(const std::vector<float>& v, int64_t n, int64_t hd, int64_t ld) {
  I8V r{std::vector<float>(hd, 0.0f), std::vector<float>(hd), std::vector<int32_t>(n * hd)};
  for (int64_t j = 0; j < n; ++j)
    for (int64_t d = 0; d < hd; ++d) r.mean[d] += v[j * ld + d];
  const float inv_n = 1.0f / float(n);
  for (int64_t d = 0; d < hd; ++d) {
    r.mean[d] *= inv_n;
    float amax = 0.0f;
    for (int64_t j = 0; j < n; ++j) amax = std::max(amax, std::fabs(v[j * ld + d] - r.mean[d]));
    const float inv = amax > 0.0f ? 127.0f / amax : 0.0f;
    r.sv[d] = amax / 127.0f;
    for (int64_t j = 0; j < n; ++j) r.v8[j * hd + d] = int32_t(std::nearbyint((v[j * ld + d] - r.mean[d]) * inv));
  }
  return r;
}

// A table's i8_attention, one (image, head), against two references in
// double precision:
// - its own arithmetic (kernels.h), replayed: the exponents x_j in the same
//   float operations (i8_attention_scores), a_j = 255 * 2^x_j rounded to u8 (p_j), V as
//   i8_attention_v, out = mean + sv * sum_j p_j v8_j / sum_j p_j. The exp2
//   polynomial (relative error 3e-6) can round a_j the other way only where
//   a_j is within 2e-5 a_j + 1e-6 of a half (the "near" keys); each such key
//   moves sum_j p_j v8_j by at most 127 and sum_j p_j by 1, so |out - replay|
//   <= sv (254 near / (sum p - near)) + 1e-5 (max|v - mean| + |mean|) (f32
//   epilogue);
// - exact arithmetic. A u8 query value is within its row's scale s_q of q_d
//   (rounding, or clamping at 255), an s8 key value within its key's scale
//   s_k of k_d - mean_d (the mean shifts all scores of a query alike), so a
//   score (log2 units) moves by at most D = c (s_q sum_d |k'_jd| + s_k sum_d
//   |q_d|) (1 + 1e-4) + c 1e-5 sum_d |q_d k'_jd|, and a weight, against the
//   exact a_j, by a factor within [1/r, r], r = 2^(2 D) (1 + 1e-5), and then
//   by rounding: |p_j - a_j| <= a_j (r - 1) + 0.5 + 1e-3 =: e_j. With E =
//   sum e_j and A = sum a_j the normalised weights differ by at most 2 E / A
//   in L1, and mean + sv v8 is within sv / 2 of v, so |out - exact| <= sv / 2
//   + (E / A) (max_j v_jd - min_j v_jd) + 1e-5 max|v|: loose where one key
//   dominates (A near 255; the 2 N(0, 1) data), a guard for the 0.5 N(0, 1)
//   data, whose weights are spread.
void test_i8_attention_head(const KernelTable& isa, int64_t n, int64_t hd, int64_t ld, float sigma) {
  const VisionKernels& o = isa.vision;
  std::vector<float> q(n * ld), k(n * ld), v(n * ld), out(n * ld, 7.0f), work(o.i8_attention_work(n, hd));
  for (auto* a : {&q, &k, &v})
    for (float& x : *a) x = sigma * normal();
  for (int64_t j = 0; j < n; ++j)  // a shared offset in K and V, as a bias gives: the means remove it
    for (int64_t d = 0; d < hd; ++d) {
      k[j * ld + d] += 0.5f * sigma * float(d % 3);
      v[j * ld + d] += 0.5f * sigma * float(d % 5);
    }
  const float scale = 1.0f / std::sqrt(float(hd)), c = scale * 1.44269504088896341f;
  o.i8_attention(q.data(), k.data(), v.data(), ld, n, hd, scale, out.data(), work.data());
  const std::vector<float> sr = i8_attention_scores(q, k, n, hd, ld, c);
  const I8V vq = i8_attention_v(v, n, hd, ld);
  std::vector<double> vmax(hd, 0.0), vlo(hd, 1e300), vhi(hd, -1e300), mean(hd, 0.0), a(n), pe(n);
  for (int64_t j = 0; j < n; ++j)
    for (int64_t d = 0; d < hd; ++d) {
      const double x = v[j * ld + d];
      vmax[d] = std::max(vmax[d], std::fabs(x));
      vlo[d] = std::min(vlo[d], x);
      vhi[d] = std::max(vhi[d], x);
      mean[d] += double(k[j * ld + d]) / n;
    }
  std::vector<double> sk(n, 0.0), l1k(n, 0.0);  // per key: scale, sum |k - mean|
  for (int64_t j = 0; j < n; ++j)
    for (int64_t d = 0; d < hd; ++d) {
      const double kd = k[j * ld + d] - mean[d];
      sk[j] = std::max(sk[j], std::fabs(kd) / 127);
      l1k[j] += std::fabs(kd);
    }
  double worst_exact = 0, worst_replay = 0, err_exact = 0, err_replay = 0;
  bool untouched = true;
  for (int64_t t = 0; t < n; ++t) {
    double lo = 0, hi = 0, l1q = 0, m = -1e300, D = 0;
    for (int64_t d = 0; d < hd; ++d) {
      lo = std::min(lo, double(q[t * ld + d]));
      hi = std::max(hi, double(q[t * ld + d]));
      l1q += std::fabs(q[t * ld + d]);
    }
    const double sq = (hi - lo) / 255;
    for (int64_t j = 0; j < n; ++j) {
      double s = 0, ab = 0;
      for (int64_t d = 0; d < hd; ++d) {
        s += double(q[t * ld + d]) * (k[j * ld + d] - mean[d]);
        ab += std::fabs(double(q[t * ld + d]) * (k[j * ld + d] - mean[d]));
      }
      a[j] = s * c;  // log2 units
      pe[j] = sr[t * n + j];
      m = std::max(m, a[j]);
      D = std::max(D, c * (sq * (l1k[j] + hd * sk[j]) + sk[j] * l1q) * (1 + 1e-4) + c * 1e-5 * ab);
    }
    const double r = std::exp2(2 * D) * (1 + 1e-5);
    double A = 0, E = 0, S = 0;
    int64_t near = 0;
    for (int64_t j = 0; j < n; ++j) {
      A += a[j] = 255 * std::exp2(a[j] - m);
      E += a[j] * (r - 1) + 0.5 + 1e-3;
      const double x = 255 * std::exp2(pe[j]);
      S += pe[j] = std::nearbyint(x);
      near += std::fabs(x - std::floor(x) - 0.5) < 2e-5 * x + 1e-6;
    }
    for (int64_t d = 0; d < hd; ++d) {
      double ex = 0, num = 0;
      for (int64_t j = 0; j < n; ++j) {
        ex += a[j] / A * v[j * ld + d];
        num += pe[j] * vq.v8[j * hd + d];
      }
      const double em = vq.mean[d] + double(vq.sv[d]) * num / S, sv = vq.sv[d];
      const double got = out[t * ld + d];
      const double b_replay = sv * 254 * near / (S - near) + 1e-5 * (127 * sv + std::fabs(vq.mean[d]));
      const double b_exact = sv / 2 + E / A * (vhi[d] - vlo[d]) + 1e-5 * vmax[d];
      worst_exact = std::max(worst_exact, std::fabs(got - ex) / b_exact);
      worst_replay = std::max(worst_replay, std::fabs(got - em) / b_replay);
      err_exact = std::max(err_exact, std::fabs(got - ex) / vmax[d]);
      err_replay = std::max(err_replay, std::fabs(got - em) / vmax[d]);
    }
    for (int64_t d = hd; d < ld; ++d) untouched = untouched && out[t * ld + d] == 7.0f;
  }
  const std::string name = std::string(isa.isa) + " i8_attention n " + std::to_string(n) + " hd " +
                           std::to_string(hd) + " sigma " + std::to_string(sigma);
  if (std::getenv("BLUELM_TEST_VERBOSE"))
    std::printf("%s: largest error / max|v| %.5f against exact, %.6f against the replay; worst error / bound "
                "%.3f, %.3f\n",
                name.c_str(), err_exact, err_replay, worst_exact, worst_replay);
  check(worst_exact <= 1.0 && untouched, name + ": error / bound against exact " + std::to_string(worst_exact));
  check(worst_replay <= 1.0, name + ": error / bound against the replay " + std::to_string(worst_replay));
}

// LayerNorm, GELU and softmax rows against the scalar table's.
void test_elementwise(const KernelTable& isa, const KernelTable& ref) {
  const VisionKernels &o = isa.vision, &r = ref.vision;
  for (const int64_t d : {1, 7, 37, 1152, 4304, 4608}) {
    std::vector<float> x(d), w(d), b(d), y(d), want(d), g(d), gw(d), sm(d), sw(d);
    for (int64_t i = 0; i < d; ++i) {
      x[i] = 3.0f * normal() + 0.5f;
      w[i] = normal();
      b[i] = normal();
    }
    if (d > 7) x[5] = -40.0f, x[6] = 30.0f;  // GELU's saturated ends
    r.layer_norm(x.data(), d, w.data(), b.data(), 1e-6f, want.data());
    o.layer_norm(x.data(), d, w.data(), b.data(), 1e-6f, y.data());
    g = x;
    gw = x;
    r.gelu_tanh(gw.data(), d);
    o.gelu_tanh(g.data(), d);
    sm = x;
    sw = x;
    r.softmax(sw.data(), d, 0.3f);
    o.softmax(sm.data(), d, 0.3f);
    double e_ln = 0, e_g = 0, e_s = 0, m_ln = 0, m_g = 0, m_s = 0;
    for (int64_t i = 0; i < d; ++i) {
      e_ln = std::max(e_ln, double(std::fabs(y[i] - want[i])));
      m_ln = std::max(m_ln, double(std::fabs(want[i])));
      e_g = std::max(e_g, double(std::fabs(g[i] - gw[i])));
      m_g = std::max(m_g, double(std::fabs(gw[i])));
      e_s = std::max(e_s, double(std::fabs(sm[i] - sw[i])));
      m_s = std::max(m_s, double(std::fabs(sw[i])));
    }
    const std::string name = std::string(isa.isa) + " d " + std::to_string(d);
    check(d == 1 || e_ln <= 1e-5 * m_ln, name + ": layer_norm error " + std::to_string(e_ln / m_ln));
    check(e_g <= 1e-5 * m_g + 1e-30, name + ": gelu_tanh error " + std::to_string(e_g / m_g));
    check(e_s <= 1e-5 * m_s, name + ": softmax error " + std::to_string(e_s / m_s));
  }
}

}  // namespace

void test_vision(const KernelTable& isa) {
  const KernelTable& ref = scalar_table();
  test_elementwise(isa, ref);
  for (const auto& s : {std::vector<int64_t>{729, 72, 144}, {37, 16, 40}, {130, 100, 101}, {1, 8, 8}, {20, 64, 64},
                        {45, 13, 17}})
    test_attention_head(isa, s[0], s[1], s[2]);
  if (isa.vision.i8_attention)
    for (const auto& s : {std::vector<int64_t>{729, 72, 1152}, {37, 16, 40}, {130, 100, 101}, {1, 8, 8},
                          {20, 64, 64}, {45, 13, 17}, {33, 136, 140}})
      for (const float sigma : {0.5f, 2.0f}) test_i8_attention_head(isa, s[0], s[1], s[2], sigma);
  const int64_t shapes[][3] = {{120, 108, 7},   {1152, 588, 29}, {64, 1152, 13}, {1152, 1152, 25},
                               {272, 4304, 37}, {48, 4320, 12},  {16, 608, 1},   {40, 7, 30},
                               {33, 13, 5}};
  for (const auto& s : shapes) test_i8(isa, ref, s[0], s[1], s[2]);
}

}  // namespace harness
