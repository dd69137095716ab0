// The vision encoder's ops of a table against the scalar one: the int8 gemm
// and activation quantisation bit for bit (exact int32 sums, the same
// epilogue; weights packed in each table's own panel layout), on odd shapes (K
// not a multiple of 64, rows not a multiple of 32, token counts not multiples
// of the tiles); softmax, GELU-tanh and LayerNorm within 1e-5 of the largest
// output; attention within 1e-5 of double-precision arithmetic.
#include <algorithm>
#include <cmath>
#include <cstdio>
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
  const int64_t shapes[][3] = {{120, 108, 7},   {1152, 588, 29}, {64, 1152, 13}, {1152, 1152, 25},
                               {272, 4304, 37}, {48, 4320, 12},  {16, 608, 1},   {40, 7, 30},
                               {33, 13, 5}};
  for (const auto& s : shapes) test_i8(isa, ref, s[0], s[1], s[2]);
}

}  // namespace harness
