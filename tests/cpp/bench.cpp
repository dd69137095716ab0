// Single-thread figures, scalar against each table: test_kernels --bench [TYPES]
// (LLM gemms, TYPES e.g. Q2_K,IQ4_NL), --bench-vision (the int8 vision gemm and attention) and
// --bench-attention (prompt-chunk attention, the old per-row path against
// attend_chunk), --bench-steps (a speculative round's one-token attention:
// attend per lane against attend_steps).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <memory>
#include <string>
#include <vector>

#include "harness.h"
#include "core/bandwidth_probe.h"
#include "kernels/repack.h"

using namespace bluelm;
using namespace bluelm::kernels;

namespace harness {

double thread_seconds() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

namespace {

// Whether name is in the list; each entry may hold several names split by commas.
bool wanted(const std::vector<std::string>& only, const std::string& name) {
  for (const std::string& arg : only)
    if (("," + arg + ",").find("," + name + ",") != std::string::npos) return true;
  return false;
}

}  // namespace

void bench_gemm(const std::vector<const KernelTable*>& tables, const std::vector<std::string>& only) {
  struct Shape {
    int64_t K, rows, n_tok;
  };
  const std::vector<Shape> shapes = {{576, 1536, 1}, {2560, 6912, 1}, {576, 1536, 128}, {2560, 6912, 128}};
  // 256 | K; SmolLM2 ffn_down at last
  const std::vector<Shape> k_shapes = {{2048, 2048, 1}, {2048, 8192, 1}, {2048, 2048, 128}, {1536, 576, 512}};
  std::printf("single thread, best of 3 (thread CPU time); GFLOP/s = 2*K*rows*n_tok/time; weights GB/s for "
              "n_tok=1; [f]/[p]: the file / the table's repacked layout\n");
  for (GgmlType wt : {GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q8_0, GgmlType::F16, GgmlType::Q5_0,
                      GgmlType::Q5_1, GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K, GgmlType::Q2_K,
                      GgmlType::Q3_K, GgmlType::IQ4_XS, GgmlType::IQ4_NL}) {
    if (!only.empty() && !wanted(only, type_name(uint32_t(wt)))) continue;
    for (const Shape& s : type_info(uint32_t(wt))->block_size == QK_K ? k_shapes : shapes) {
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
        const int slot = weight_slot(wt), R = tb->pack_rows[slot];
        const bool packed = R > 0 && s.rows % R == 0;
        // Best of 3 trials of >= 0.15 s: the machine may be shared.
        auto gflops_of = [&](GemmFn f, const uint8_t* w) {
          f(w, ws, X.data(), xs, Y.data(), s.rows, s.K, 0, s.rows, s.n_tok);  // warm up
          double sec = 1e30;
          for (int trial = 0; trial < 3; ++trial) {
            int reps = 0;
            const double t0 = thread_seconds();
            double t1 = t0;
            while (reps < 1 || t1 - t0 < 0.15) {
              f(w, ws, X.data(), xs, Y.data(), s.rows, s.K, 0, s.rows, s.n_tok);
              ++reps;
              t1 = thread_seconds();
            }
            sec = std::fmin(sec, (t1 - t0) / reps);
          }
          return 2.0 * s.K * s.rows * s.n_tok / sec * 1e-9;
        };
        auto report = [&](const char* tag, double gflops) {
          if (!base) base = gflops;
          std::printf(" | %s%s %7.2f GF/s", tb->isa, tag, gflops);
          if (s.n_tok == 1) std::printf(" %5.1f GB/s", double(W.size()) * gflops / (2.0 * s.K * s.rows));
          if (tb != tables.front()) std::printf(" (x%.1f)", gflops / base);
        };
        if (packed) {  // as LlmModel::repack
          std::vector<uint8_t> P(W.size());
          if (tb->pack[slot]) tb->pack[slot](W.data(), P.data(), ws, s.rows);
          else repack_rows(W.data(), P.data(), ws, type_info(uint32_t(wt))->block_bytes, s.rows, R);
          report("[f]", gflops_of(tb->gemm[slot], W.data()));
          report("[p]", gflops_of(tb->gemm_packed[slot], P.data()));
        } else {
          report("", gflops_of(tb->gemm[slot], W.data()));
        }
      }
      std::printf("\n");
      std::fflush(stdout);
    }
  }
}


// Decode from DRAM: one token through a matrix of about 150-210 MiB (well past
// any L3), single thread, thread CPU time, best of 5 sweeps; against one
// thread's read bandwidth (core/bandwidth_probe.h, wall time) measured between
// the sweeps. What the gemv of each type reaches of the memory ceiling a decode
// step is bound by, and (from L2) how far its own arithmetic is from that ceiling.
void bench_decode(const std::vector<const KernelTable*>& tables, const std::vector<std::string>& only) {
  const int64_t K = 4096, tile_rows = 2048, copies = 32;  // rows = 65536
  std::printf("single thread, one token, 65536 x 4096 weights (DRAM; and ~192 KiB of them from L2), "
              "thread CPU time, best of 5\n");
  for (GgmlType wt : {GgmlType::Q4_0, GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K, GgmlType::Q2_K,
                      GgmlType::Q3_K, GgmlType::IQ4_XS}) {
    // Without a list, the four of the Q4_0 and Q4_K_M files; Q2_K, Q3_K and IQ4_XS when named.
    const bool low_bit = wt == GgmlType::Q2_K || wt == GgmlType::Q3_K || wt == GgmlType::IQ4_XS;
    if (only.empty() ? low_bit : !wanted(only, type_name(uint32_t(wt)))) continue;
    const GgmlType xt = vec_dot_type(wt);
    const size_t ws = row_bytes(wt, K), xs = row_bytes(xt, K);
    const std::vector<uint8_t> tile = make_weights(wt, tile_rows, K, ws, false);
    const int64_t rows = tile_rows * copies;
    std::vector<uint8_t> W(tile.size() * copies);
    for (int64_t c = 0; c < copies; ++c) std::memcpy(W.data() + c * tile.size(), tile.data(), tile.size());
    const std::vector<float> xf = make_acts(1, K, false);
    std::vector<uint8_t> X(xs);
    scalar_table().convert[act_slot(xt)](xf.data(), X.data(), K);
    std::vector<float> Y(rows);
    std::printf("%-5s %6.1f MiB", type_name(uint32_t(wt)), double(W.size()) / (1 << 20));
    for (const KernelTable* tb : tables) {
      if (tb == &scalar_table()) continue;
      const int slot = weight_slot(wt), R = tb->pack_rows[slot];
      GemmFn f = tb->gemm[slot];
      // On huge pages, as the model's repacked weights (core/huge_pages.h).
      std::unique_ptr<uint8_t, HugeFree> P(static_cast<uint8_t*>(alloc_huge(W.size())));
      if (R > 0) {
        if (tb->pack[slot]) tb->pack[slot](W.data(), P.get(), ws, rows);
        else repack_rows(W.data(), P.get(), ws, type_info(uint32_t(wt))->block_bytes, rows, R);
        f = tb->gemm_packed[slot];
      } else {
        std::memcpy(P.get(), W.data(), W.size());
      }
      const uint8_t* w = P.get();
      double sec = 1e30, bw = 0.0;
      for (int trial = 0; trial < 5; ++trial) {
        const double t0 = thread_seconds();
        f(w, ws, X.data(), xs, Y.data(), rows, K, 0, rows, 1);
        sec = std::fmin(sec, thread_seconds() - t0);
        bw = std::fmax(bw, read_bandwidth(size_t(160) << 20, 1, 1));
      }
      const double gbs = double(W.size()) / sec * 1e-9;
      // The same kernel's compute ceiling: the first ~192 KiB of rows (whole
      // groups) again and again from L2.
      const int64_t l2_rows = std::max<int64_t>(std::max(R, 1), (int64_t(192) << 10) / int64_t(ws) / 16 * 16);
      constexpr int kL2Reps = 2000;
      double l2_sec = 1e30;
      for (int trial = 0; trial < 5; ++trial) {
        const double t0 = thread_seconds();
        for (int rep = 0; rep < kL2Reps; ++rep) f(w, ws, X.data(), xs, Y.data(), rows, K, 0, l2_rows, 1);
        l2_sec = std::fmin(l2_sec, thread_seconds() - t0);
      }
      std::printf(" | %s%s %5.1f GB/s (read probe %5.1f GB/s: %3.0f%%; from L2 %5.1f)", tb->isa, R > 0 ? "[p]" : "",
                  gbs, bw * 1e-9, 100.0 * gbs / (bw * 1e-9), double(l2_rows) * ws * kL2Reps / l2_sec * 1e-9);
    }
    std::printf("\n");
    std::fflush(stdout);
  }
}



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
    if (v.i8_attention) {
      std::vector<float> w8(v.i8_attention_work(n, hd));
      const double t1 = thread_seconds();
      for (int i = 0; i < reps; ++i) v.i8_attention(q.data(), k.data(), vv.data(), ld, n, hd, 0.1f, out.data(), w8.data());
      const double s8 = (thread_seconds() - t1) / reps;
      std::printf("%-12s i8_attention 729 x 72: %8.2f ms, %6.1f GMAC/s (QK and PV)\n", tb->isa, s8 * 1e3,
                  2.0 * n * n * hd / s8 * 1e-9);
    }
  }
}

// One KV head's prompt chunk: the old per-row attention (attend_rows, or attend
// per row) against attend_chunk, single thread, CPU time.
void bench_attention(const std::vector<const KernelTable*>& tables) {
  struct Shape {
    GgmlType kv;
    int64_t hd, group, pos0, m;
  } shapes[] = {{GgmlType::F16, 64, 3, 896, 128},
                {GgmlType::F16, 128, 1, 896, 128},
                {GgmlType::Q8_0, 64, 3, 896, 128},
                {GgmlType::Q8_0, 128, 1, 1664, 128}};
  std::printf("single thread, CPU time; GFLOP/s = 4 * head_dim * (query, key) pairs seen / time\n");
  for (const Shape& s : shapes) {
    const int64_t n = s.pos0 + s.m, stride = s.hd;
    const size_t rb = row_bytes(s.kv, stride);
    std::vector<uint8_t> K(n * rb), V(n * rb);
    std::vector<float> row(stride);
    for (int64_t p = 0; p < n; ++p)
      for (auto* buf : {&K, &V}) {
        for (auto& x : row) x = normal();
        if (s.kv == GgmlType::F16)
          for (int64_t i = 0; i < stride; ++i) reinterpret_cast<uint16_t*>(buf->data() + p * rb)[i] = fp32_to_fp16(row[i]);
        else quantize_row_q8_0_ref(row.data(), reinterpret_cast<BlockQ8_0*>(buf->data() + p * rb), stride);
      }
    const int64_t qs = s.group * s.hd;
    std::vector<float> q(s.m * qs), out(s.m * qs), scratch(4 * n);
    for (auto& x : q) x = normal();
    std::vector<uint8_t> work(attend_chunk_work(s.hd) + 64), kv_buf(chunk_kv_bytes(s.hd, n) + 64);
    void* w = reinterpret_cast<void*>((reinterpret_cast<uintptr_t>(work.data()) + 63) & ~uintptr_t(63));
    const ChunkKv kv = chunk_kv_layout(reinterpret_cast<void*>((reinterpret_cast<uintptr_t>(kv_buf.data()) + 63) & ~uintptr_t(63)), s.hd, n);
    const float scale = 1.0f / std::sqrt(float(s.hd));
    const double flop = 4.0 * s.hd * s.group * (double(s.m) * s.pos0 + s.m * (s.m + 1) / 2.0);
    std::printf("%-5s head_dim %3lld group %lld rows %lld at %5lld:", type_name(uint32_t(s.kv)), (long long)s.hd,
                (long long)s.group, (long long)s.m, (long long)s.pos0);
    for (const KernelTable* tb : tables) {
      auto old_path = [&] {
        for (int64_t g = 0; g < s.group; ++g) {
          if (tb->attend_rows) {
            tb->attend_rows(q.data() + g * s.hd, qs, K.data(), V.data(), s.kv, stride, s.hd, s.pos0 + 1, s.m, scale,
                            scratch.data(), out.data() + g * s.hd, qs);
            continue;
          }
          for (int64_t t = 0; t < s.m; ++t)
            tb->attend(q.data() + t * qs + g * s.hd, K.data(), V.data(), s.kv, stride, s.hd, s.pos0 + t + 1, scale,
                       0.0f, true, scratch.data(), out.data() + t * qs + g * s.hd);
        }
      };
      auto flash = [&](AttendChunkFn fn) {
        ChunkAttention a{q.data(), size_t(qs), K.data(), V.data(), s.kv, size_t(stride), s.hd, s.group, s.pos0, 0,
                         scale, 0.0f, out.data(), size_t(qs), nullptr};
        if (fn == tb->attend_chunk_bf16) {  // its K/V conversion, once per chunk, is timed with it
          tb->convert_chunk_kv(a, 0, n, kv);
          a.kv = &kv;
        }
        for (int64_t l0 = 0; l0 < s.m * s.group; l0 += tb->chunk_lanes)
          fn(a, l0, std::min(s.m * s.group, l0 + tb->chunk_lanes), w);
      };
      // old path, flash (the reference's bits), flash in bf16 where the table has it
      const int n_paths = tb->attend_chunk_bf16 ? 3 : 2;
      auto path = [&](int which) {
        if (which == 0) old_path();
        else flash(which == 1 ? tb->attend_chunk : tb->attend_chunk_bf16);
      };
      double sec[3];
      for (int which = 0; which < n_paths; ++which) {
        const int reps = tb == tables.front() ? 1 : 3;
        path(which);
        const double t0 = thread_seconds();
        for (int r = 0; r < reps; ++r) path(which);
        sec[which] = (thread_seconds() - t0) / reps;
      }
      std::printf(" | %s old %6.1f, flash %6.1f", tb->isa, flop / sec[0] * 1e-9, flop / sec[1] * 1e-9);
      if (n_paths == 3) std::printf(", bf16 %6.1f", flop / sec[2] * 1e-9);
      std::printf(" GF/s");
      std::fflush(stdout);
    }
    std::printf("\n");
  }
}

// F16 cache, head_dim 64: SmolLM2's shape (3 query heads per KV head, 3 KV
// heads) for a speculative round of m rows at pos0, and a Llama-3.2-1B decode
// step (4 per KV head, 8 KV heads, one row) after long prompts: one KV head's
// lanes, attend per lane (batched = false) against one attend_steps call,
// alternated 9 times, medians of CPU time.
void bench_steps(const std::vector<const KernelTable*>& tables) {
  struct Case {
    int64_t group, kv_heads, pos0, m;
  };
  std::vector<Case> cases;
  for (int64_t pos0 : {150, 300, 600})
    for (int64_t m : {3, 6, 9}) cases.push_back({3, 3, pos0, m});
  for (int64_t pos0 : {500, 2000}) cases.push_back({4, 8, pos0, 1});
  const int64_t hd = 64;
  std::printf("single thread, CPU time per round and KV head, medians of 9 alternated repeats\n");
  for (const KernelTable* tb : tables) {
    if (!tb->attend_steps) continue;
    for (const Case& c : cases) {
      const int64_t group = c.group, stride = c.kv_heads * hd, pos0 = c.pos0, m = c.m;
      const int64_t n = pos0 + m, lanes = m * group;
      std::vector<uint16_t> K(n * stride), V(n * stride);
      for (auto& x : K) x = fp32_to_fp16(normal());
      for (auto& x : V) x = fp32_to_fp16(normal());
      std::vector<float> q(m * group * hd), o1(q.size()), o2(q.size()), s1(n), s2(kStepLanes * (n + 16));
      for (auto& x : q) x = normal();
      const float scale = 0.125f;
      ChunkAttention a{q.data(), size_t(group * hd), K.data(), V.data(), GgmlType::F16, size_t(stride), hd, group,
                       pos0, 0, scale, 0.0f, o2.data(), size_t(group * hd), nullptr};
      auto per_lane = [&] {
        for (int64_t L = 0; L < lanes; ++L)
          tb->attend(q.data() + L * hd, K.data(), V.data(), GgmlType::F16, stride, hd, pos0 + L / group + 1, scale,
                     0.0f, false, s1.data(), o1.data() + L * hd);
      };
      auto steps = [&] { tb->attend_steps(a, 0, lanes, s2.data()); };
      std::vector<double> t1, t2;
      for (int r = 0; r < 9; ++r) {
        double t0 = thread_seconds();
        for (int i = 0; i < 20; ++i) per_lane();
        t1.push_back((thread_seconds() - t0) / 20);
        t0 = thread_seconds();
        for (int i = 0; i < 20; ++i) steps();
        t2.push_back((thread_seconds() - t0) / 20);
      }
      std::sort(t1.begin(), t1.end());
      std::sort(t2.begin(), t2.end());
      const bool same = std::memcmp(o1.data(), o2.data(), o1.size() * 4) == 0;
      std::printf("%s group %lld pos0 %4lld rows %lld: per lane %7.1f us, attend_steps %7.1f us, %.2fx%s\n",
                  tb->isa, (long long)group, (long long)pos0, (long long)m, t1[4] * 1e6, t2[4] * 1e6,
                  t1[4] / t2[4], same ? "" : " (DIFFER)");
      std::fflush(stdout);
    }
  }
}

}  // namespace harness
