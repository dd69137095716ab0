// The vision encoder's int8 kernels (csrc/vision/vision_i8.h) against the
// scalar reference: every output bit for bit, on odd shapes (K not a multiple
// of 64, rows not a multiple of 32, token counts not multiples of the tile).
//   test_vision_i8           check every kernel set this CPU can run
//   test_vision_i8 --bench   single-thread GMAC/s (per CPU-second) of the so400m shapes
// Last line: "N passed, N failed"; exit status non-zero on failure.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "kernels/cpu_features.h"
#include "vision/vision_i8.h"
#include "vision/vision_ops.h"

using namespace bluelm::vision;

namespace bluelm::vision {
#if defined(__x86_64__) || defined(_M_X64)
const VisionOps* avx2_ops();
const VisionOps* avx512_ops();
#endif
}  // namespace bluelm::vision

namespace {

int g_passed = 0, g_failed = 0;

void check(bool ok, const std::string& what) {
  if (ok) {
    ++g_passed;
  } else {
    ++g_failed;
    std::printf("FAIL %s\n", what.c_str());
  }
}

struct Case {
  I8Packed p;
  std::vector<float> x;
  std::vector<uint8_t> q;
  std::vector<float> sx, bias;
  std::vector<int32_t> zp;
  int64_t rows, k, kp, n;
  size_t xs;
};

Case make(int64_t rows, int64_t k, int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  Case c;
  c.rows = rows;
  c.k = k;
  c.kp = i8_k_pad(k);
  c.n = n;
  std::vector<float> w(static_cast<size_t>(rows * k));
  for (float& v : w) v = 0.05f * nd(rng);
  if (rows > 3) std::fill(w.begin() + 3 * k, w.begin() + 4 * k, 0.0f);  // an all-zero row
  i8_alloc(c.p, rows, k);
  i8_pack_rows(c.p, k, 0, rows, w.data(), k);
  c.x.resize(static_cast<size_t>(n * k));
  for (float& v : c.x) v = nd(rng);
  for (int64_t t = 0; t < n; ++t)  // skewed rows, as after GELU; all positive; all negative
    for (int64_t i = 0; i < k; ++i) {
      float& v = c.x[t * k + i];
      if (t % 4 == 1) v = v < -0.17f ? -0.17f : 2.0f * v;
      if (t % 4 == 3) v = std::fabs(v) + (t % 8 == 3 ? 1.0f : 0.0f);
      if (t == 1 && n > 8) v = -std::fabs(v);
    }
  if (n > 2) std::fill(c.x.begin() + 2 * k, c.x.begin() + 3 * k, 0.0f);  // an all-zero token
  c.bias.resize(static_cast<size_t>(rows));
  for (float& v : c.bias) v = nd(rng);
  c.xs = i8_act_stride(c.kp);
  c.q.assign(c.xs * n, 0);
  c.sx.resize(static_cast<size_t>(n));
  c.zp.resize(static_cast<size_t>(n));
  return c;
}

void run(const VisionOps& o, Case& c, std::vector<float>& y, const float* bias, bool acc, int64_t split) {
  for (int64_t t = 0; t < c.n; ++t)
    c.sx[t] = o.i8_quant(c.x.data() + t * c.k, c.k, c.kp, c.q.data() + t * c.xs, c.zp.data() + t);
  const I8Matrix W = c.p.view(c.rows, c.kp);
  const I8Acts X{c.q.data(), c.xs, c.sx.data(), c.zp.data(), c.n};
  const int64_t panels = (c.rows + kI8Panel - 1) / kI8Panel;
  // Two calls over panel ranges, as the thread pool splits them.
  o.i8_gemm(W, X, y.data(), c.rows, bias, acc, 0, split < panels ? split : panels);
  if (split < panels) o.i8_gemm(W, X, y.data(), c.rows, bias, acc, split, panels);
}

// One (image, head) against a double-precision reference; q, k, v rows ld apart.
void test_attention(const VisionOps& o, int64_t n, int64_t hd, int64_t ld, uint32_t seed) {
  if (!o.attention) return;
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> q(n * ld), k(n * ld), v(n * ld), out(n * ld, 7.0f), work(o.attention_work(n, hd));
  for (auto* a : {&q, &k, &v})
    for (float& x : *a) x = 2.0f * nd(rng);
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
  check(err <= 1e-5 * mx && untouched, std::string(o.isa) + " attention n " + std::to_string(n) + " hd " +
                                           std::to_string(hd) + ": max error " + std::to_string(err / mx));
}

// LayerNorm, GELU and softmax rows against the portable versions.
void test_elementwise(const VisionOps& o) {
  const VisionOps& ref = scalar_ops();
  std::mt19937 rng(9);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  for (const int64_t d : {1, 37, 1152, 4304, 4608}) {
    std::vector<float> x(d), w(d), b(d), y(d), want(d), g(d), gw(d), sm(d), sw(d);
    for (int64_t i = 0; i < d; ++i) {
      x[i] = 3.0f * nd(rng) + 0.5f;
      w[i] = nd(rng);
      b[i] = nd(rng);
    }
    ref.layer_norm(x.data(), d, w.data(), b.data(), 1e-6f, want.data());
    o.layer_norm(x.data(), d, w.data(), b.data(), 1e-6f, y.data());
    g = x;
    gw = x;
    ref.gelu_tanh(gw.data(), d);
    o.gelu_tanh(g.data(), d);
    sm = x;
    sw = x;
    ref.softmax(sw.data(), d, 0.3f);
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
    const std::string name = std::string(o.isa) + " d " + std::to_string(d);
    check(d == 1 || e_ln <= 1e-5 * m_ln, name + ": layer_norm error " + std::to_string(e_ln / m_ln));
    check(e_g <= 1e-5 * m_g + 1e-30, name + ": gelu_tanh error " + std::to_string(e_g / m_g));
    check(e_s <= 1e-5 * m_s, name + ": softmax error " + std::to_string(e_s / m_s));
  }
}

void test_ops(const VisionOps& o) {
  test_elementwise(o);
  test_attention(o, 729, 72, 1152 / 8, 1);
  test_attention(o, 37, 16, 40, 2);
  test_attention(o, 130, 100, 101, 3);
  test_attention(o, 1, 8, 8, 4);
  const VisionOps& ref = scalar_ops();
  const int64_t shapes[][3] = {{120, 108, 7},   {1152, 588, 29}, {64, 1152, 13}, {1152, 1152, 25},
                               {272, 4304, 37}, {48, 4320, 12},  {16, 608, 1},   {40, 7, 30}};
  uint32_t seed = 1;
  for (const auto& s : shapes) {
    Case c = make(s[0], s[1], s[2], seed++);
    const std::string name = std::string(o.isa) + " rows " + std::to_string(s[0]) + " k " + std::to_string(s[1]) +
                             " tokens " + std::to_string(s[2]);
    for (int mode = 0; mode < 3; ++mode) {
      const float* bias = mode >= 1 ? c.bias.data() : nullptr;
      const bool acc = mode == 2;
      std::vector<float> want(static_cast<size_t>(c.n * c.rows), 0.5f), got = want;
      run(ref, c, want, bias, acc, 1);
      const std::vector<uint8_t> q_ref = c.q;
      const std::vector<float> s_ref = c.sx;
      const std::vector<int32_t> z_ref = c.zp;
      run(o, c, got, bias, acc, 3);
      check(c.q == q_ref && c.sx == s_ref && c.zp == z_ref, name + ": quantised activations");
      check(std::memcmp(want.data(), got.data(), sizeof(float) * want.size()) == 0,
            name + " mode " + std::to_string(mode) + ": outputs");
    }
  }
}

// CPU time of this thread (the machine is shared: wall time counts other jobs).
double thread_seconds() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

void bench(const VisionOps& o) {
  const int64_t shapes[][3] = {{1152, 1152, 729}, {4304, 1152, 729}, {1152, 4304, 729}};
  for (const auto& s : shapes) {
    Case c = make(s[0], s[1], s[2], 7);
    std::vector<float> y(static_cast<size_t>(c.n * c.rows));
    run(o, c, y, c.bias.data(), false, 1 << 30);
    const int reps = 3;
    const double t0 = thread_seconds();
    for (int i = 0; i < reps; ++i) run(o, c, y, c.bias.data(), false, 1 << 30);
    const double sec = (thread_seconds() - t0) / reps;
    std::printf("%-7s rows %5lld k %5lld tokens %4lld: %7.2f ms, %6.1f GMAC/s\n", o.isa, (long long)s[0],
                (long long)s[1], (long long)s[2], sec * 1e3, double(s[0]) * s[1] * s[2] / sec * 1e-9);
  }
  if (o.attention) {  // one so400m (image, head): 729 tokens, head_dim 72, rows 1152 apart
    const int64_t n = 729, hd = 72, ld = 1152;
    std::vector<float> q(n * ld, 0.01f), k(n * ld, 0.02f), v(n * ld, 0.03f), out(n * ld), work(o.attention_work(n, hd));
    const int reps = 10;
    const double t0 = thread_seconds();
    for (int i = 0; i < reps; ++i) o.attention(q.data(), k.data(), v.data(), ld, n, hd, 0.1f, out.data(), work.data());
    const double sec = (thread_seconds() - t0) / reps;
    std::printf("%-7s attention 729 x 72: %7.2f ms, %6.1f GMAC/s (QK and PV)\n", o.isa, sec * 1e3,
                2.0 * n * n * hd / sec * 1e-9);
  }
}

}  // namespace

int main(int argc, char** argv) {
  const bool do_bench = argc > 1 && std::strcmp(argv[1], "--bench") == 0;
  std::vector<const VisionOps*> sets = {&scalar_ops()};
#if defined(__x86_64__) || defined(_M_X64)
  const auto& f = bluelm::kernels::cpu_features();
  if (f.avx2 && f.fma && f.f16c) sets.push_back(avx2_ops());
  if (f.avx2 && f.avx512f && f.avx512bw && f.avx512vl && f.avx512vnni) sets.push_back(avx512_ops());
#endif
  for (const VisionOps* o : sets) {
    if (do_bench) bench(*o);
    else test_ops(*o);
  }
  if (!do_bench) std::printf("%d passed, %d failed\n", g_passed, g_failed);
  return g_failed ? 1 : 0;
}
