// test_kernels --bench-batch: the speculative verification's matrix work on
// SmolLM2-135M's shapes (30 layers of packed Q4_1 q, k, v, o, gate, up, down,
// then the Q8_0 output matrix), per token count: the one-token gemm for 1,
// the table's small-batch gemv (gemv_batch*) for 2 to 9; and the greedy
// route's work on the output matrix (argmax_rows: gemv_fast, the screening,
// the exact rows kept) where the table has gemv_fast. Single thread,
// thread CPU time, best of 5 sweeps; the weights are 30 distinct copies (as
// a model's layers: past L2, as decode reads them). What a verified row adds
// over the one-token step is the figure to cut (bench_speculative's ratio).
#include <algorithm>
#include <cstdio>
#include <vector>

#include "harness.h"
#include "kernels/repack.h"
#include "llm/output_argmax.h"

using namespace bluelm;
using namespace bluelm::kernels;

namespace harness {
namespace {

struct Mat {
  std::vector<uint8_t> w;
  int64_t rows, K;
  size_t ws;
  bool packed;
};

Mat make_mat(const KernelTable& tb, GgmlType wt, int64_t rows, int64_t K) {
  const int slot = weight_slot(wt), R = tb.pack_rows[slot];
  Mat m{make_weights(wt, rows, K, row_bytes(wt, K), false), rows, K, row_bytes(wt, K), R > 0 && rows % R == 0};
  if (m.packed) {
    std::vector<uint8_t> P(m.w.size());
    if (tb.pack[slot]) tb.pack[slot](m.w.data(), P.data(), m.ws, rows);
    else repack_rows(m.w.data(), P.data(), m.ws, type_info(uint32_t(wt))->block_bytes, rows, R);
    m.w.swap(P);
  }
  return m;
}

}  // namespace

void bench_batch(const std::vector<const KernelTable*>& tables) {
  const int64_t d = 576, kv = 192, ff = 1536, vocab = 49152, layers = 30, max_tok = 9;
  std::printf("single thread, thread CPU time, best of 5; SmolLM2-135M shapes, %lld layers of packed Q4_1, "
              "Q8_0 output %lld x %lld\n", (long long)layers, (long long)vocab, (long long)d);
  for (const KernelTable* tb : tables) {
    if (tb == &scalar_table()) continue;
    const int s4 = weight_slot(GgmlType::Q4_1), s8 = weight_slot(GgmlType::Q8_0);
    std::vector<Mat> lay;
    for (int64_t l = 0; l < layers; ++l)
      for (auto rk : {std::pair<int64_t, int64_t>{d, d}, {kv, d}, {kv, d}, {d, d}, {ff, d}, {ff, d}, {d, ff}})
        lay.push_back(make_mat(*tb, GgmlType::Q4_1, rk.first, rk.second));
    const Mat out = make_mat(*tb, GgmlType::Q8_0, vocab, d);
    std::vector<uint8_t> X4(max_tok * row_bytes(GgmlType::Q8_1, ff)), X8(max_tok * row_bytes(GgmlType::Q8_0, d));
    const std::vector<float> xf = make_acts(max_tok, ff, false);
    std::vector<float> Y(max_tok * vocab);
    auto gemm = [&](const Mat& m, GgmlType wt, int64_t n) {
      const int slot = weight_slot(wt);
      GemmFn f = m.packed ? tb->gemm_packed[slot] : tb->gemm[slot];
      if (n > 1) f = m.packed ? tb->gemv_batch_packed[slot] : tb->gemv_batch[slot];
      return f;
    };
    std::printf("%s: tokens | layers ms (per extra token) | output ms (per extra token) | output argmax ms "
                "(per extra token)\n", tb->isa);
    double base_l = 0.0, base_o = 0.0, base_a = 0.0;
    for (int64_t n = 1; n <= max_tok; ++n) {
      if (n > 1 && (!tb->gemv_batch_packed[s4] || !tb->gemv_batch[s8])) break;
      const GgmlType x4 = vec_dot_type(GgmlType::Q4_1), x8 = vec_dot_type(GgmlType::Q8_0);
      auto layers_run = [&] {
        for (const Mat& m : lay) {
          const size_t xs = row_bytes(x4, m.K);
          for (int64_t t = 0; t < n; ++t) tb->convert[act_slot(x4)](xf.data() + t * ff, X4.data() + t * xs, m.K);
          gemm(m, GgmlType::Q4_1, n)(m.w.data(), m.ws, X4.data(), xs, Y.data(), m.rows, m.K, 0, m.rows, n);
        }
      };
      auto out_run = [&] {
        const size_t xs = row_bytes(x8, d);
        for (int64_t t = 0; t < n; ++t) tb->convert[act_slot(x8)](xf.data() + t * ff, X8.data() + t * xs, d);
        gemm(out, GgmlType::Q8_0, n)(out.w.data(), out.ws, X8.data(), xs, Y.data(), vocab, d, 0, vocab, n);
      };
      auto best = [&](auto&& fn) {
        fn();
        double sec = 1e30;
        for (int i = 0; i < 5; ++i) {
          const double t0 = thread_seconds();
          fn();
          sec = std::min(sec, thread_seconds() - t0);
        }
        return sec * 1e3;
      };
      // The greedy route (Context::step_argmax's work on one thread): gemv_fast,
      // the screening and the exact rows it keeps.
      Matrix M;
      M.data = out.w.data();
      M.type = GgmlType::Q8_0;
      M.rows = vocab;
      M.cols = d;
      M.row_stride = out.ws;
      const float max_dw = max_block_scale_q8_0(M);
      std::vector<int64_t> kept;
      std::vector<RowMax> top(n);
      auto argmax_run = [&] {
        const size_t xs = row_bytes(x8, d);
        float err[kGemvBatchMax];
        for (int64_t t = 0; t < n; ++t) {
          tb->convert[act_slot(x8)](xf.data() + t * ff, X8.data() + t * xs, d);
          err[t] = gemv_fast_error(X8.data() + t * xs, d, max_dw);
        }
        argmax_rows(tb->gemv_fast[s8], tb->gemm[s8], M, X8.data(), xs, n, err, 0, vocab, Y.data(), vocab, kept,
                    top.data());
      };
      const double l = best(layers_run), o = best(out_run), a = tb->gemv_fast[s8] ? best(argmax_run) : 0.0;
      if (n == 1) base_l = l, base_o = o, base_a = a;
      std::printf("  %2lld | %7.3f (%6.3f) | %7.3f (%6.3f) | %7.3f (%6.3f)\n", (long long)n, l,
                  n > 1 ? (l - base_l) / (n - 1) : 0.0, o, n > 1 ? (o - base_o) / (n - 1) : 0.0, a,
                  n > 1 ? (a - base_a) / (n - 1) : 0.0);
      std::fflush(stdout);
    }
  }
}

}  // namespace harness
