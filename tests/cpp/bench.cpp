// Single-thread figures, scalar against each table: test_kernels --bench (LLM
// gemms) and --bench-vision (the int8 vision gemm and attention).
#include <chrono>
#include <cstdio>
#include <ctime>
#include <vector>

#include "harness.h"

using namespace bluelm;
using namespace bluelm::kernels;

namespace harness {
namespace {

double now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

}  // namespace

void bench_gemm(const std::vector<const KernelTable*>& tables) {
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


namespace {

// CPU time of this thread (the machine is shared: wall time counts other jobs).
double thread_seconds() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

}  // namespace

// The so400m shapes: per call, the activations quantised and the int8 gemm
// over 729 tokens; one (image, head) of attention.
void bench_vision(const std::vector<const KernelTable*>& tables) {
  std::printf("single thread, CPU time; GMAC/s = rows*k*tokens/time (quantisation included)\n");
  const int64_t shapes[][3] = {{1152, 1152, 729}, {4304, 1152, 729}, {1152, 4304, 729}};
  for (const KernelTable* tb : tables) {
    const VisionKernels& v = tb->vision;
    for (const auto& s : shapes) {
      const int64_t rows = s[0], k = s[1], n = s[2];
      std::vector<float> w(rows * k), x(n * k), bias(rows);
      for (float& e : w) e = 0.05f * normal();
      for (float& e : x) e = normal();
      for (float& e : bias) e = normal();
      I8Packed p;
      i8_alloc(p, rows, k, v.i8_layout);
      i8_pack_rows(p, k, 0, rows, w.data(), k);
      const size_t xs = i8_act_stride(p.kp);
      std::vector<uint8_t> q(xs * n);
      std::vector<float> sx(n), y(n * rows);
      std::vector<int32_t> zp(n);
      auto run = [&] {
        for (int64_t t = 0; t < n; ++t) sx[t] = v.i8_quant(x.data() + t * k, k, p.kp, q.data() + t * xs, zp.data() + t);
        const I8Acts X{q.data(), xs, sx.data(), zp.data(), n};
        v.i8_gemm(p.view(), X, y.data(), rows, bias.data(), false, 0, (rows + kI8Panel - 1) / kI8Panel);
      };
      run();
      const int reps = 3;
      const double t0 = thread_seconds();
      for (int i = 0; i < reps; ++i) run();
      const double sec = (thread_seconds() - t0) / reps;
      std::printf("%-12s rows %5lld k %5lld tokens %4lld: %8.2f ms, %6.1f GMAC/s\n", tb->isa, (long long)rows,
                  (long long)k, (long long)n, sec * 1e3, double(rows) * k * n / sec * 1e-9);
      std::fflush(stdout);
    }
    const int64_t n = 729, hd = 72, ld = 1152;  // one so400m (image, head)
    std::vector<float> q(n * ld, 0.01f), k(n * ld, 0.02f), vv(n * ld, 0.03f), out(n * ld),
        work(v.attention_work(n, hd));
    const int reps = 5;
    const double t0 = thread_seconds();
    for (int i = 0; i < reps; ++i) v.attention(q.data(), k.data(), vv.data(), ld, n, hd, 0.1f, out.data(), work.data());
    const double sec = (thread_seconds() - t0) / reps;
    std::printf("%-12s attention 729 x 72: %8.2f ms, %6.1f GMAC/s (QK and PV)\n", tb->isa, sec * 1e3,
                2.0 * n * n * hd / sec * 1e-9);
  }
}

}  // namespace harness
