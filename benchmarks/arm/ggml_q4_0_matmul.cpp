// llama.cpp's (ggml's) Q4_0 matmul for instruction counting
// (benchmarks/bench_arm_insn.py, --llama-src): the same command line and work as
// q4_0_matmul.cpp (K N T R), written against ggml's public API and built by the
// script against ggml cross-compiled from a llama.cpp source tree; nothing of
// llama.cpp is in this repository. Weights go into the CPU backend's extra
// (repack) buffer type when it has one, as llama.cpp loads them ("norepack" as a
// fifth argument keeps ggml's plain layout). One thread, as ours.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>
#include "ggml.h"
#include "ggml-alloc.h"
#include "ggml-backend.h"
#include "ggml-cpu.h"

int main(int argc, char** argv) {
  if (argc != 5 && argc != 6) { fprintf(stderr, "usage: %s K N T R [norepack]\n", argv[0]); return 2; }
  const int64_t K = atoll(argv[1]), N = atoll(argv[2]), T = atoll(argv[3]);
  const int R = atoi(argv[4]);
  const bool repack = argc == 5;
  ggml_backend_t be = ggml_backend_cpu_init();
  ggml_backend_cpu_set_n_threads(be, 1);
  ggml_backend_dev_t dev = ggml_backend_get_device(be);
  ggml_backend_reg_t reg = ggml_backend_dev_backend_reg(dev);
  ggml_backend_buffer_type_t wbuft = ggml_backend_dev_buffer_type(dev);
  const char* wname = "CPU";
  auto get_extra = (ggml_backend_dev_get_extra_bufts_t)ggml_backend_reg_get_proc_address(reg, "ggml_backend_dev_get_extra_bufts");
  if (repack && get_extra) {
    ggml_backend_buffer_type_t* extra = get_extra(dev);
    if (extra && *extra) { wbuft = *extra; wname = ggml_backend_buft_name(wbuft); }
  }
  ggml_init_params wp = {ggml_tensor_overhead() * 4, nullptr, true};
  ggml_context* wctx = ggml_init(wp);
  ggml_tensor* a = ggml_new_tensor_2d(wctx, GGML_TYPE_Q4_0, K, N);
  ggml_backend_buffer_t wbuf = ggml_backend_alloc_ctx_tensors_from_buft(wctx, wbuft);
  ggml_backend_buffer_set_usage(wbuf, GGML_BACKEND_BUFFER_USAGE_WEIGHTS);

  ggml_init_params gp = {ggml_tensor_overhead() * 8 + ggml_graph_overhead(), nullptr, true};
  ggml_context* gctx = ggml_init(gp);
  ggml_tensor* b = ggml_new_tensor_2d(gctx, GGML_TYPE_F32, K, T);
  ggml_tensor* c = ggml_mul_mat(gctx, a, b);
  ggml_cgraph* gf = ggml_new_graph(gctx);
  ggml_build_forward_expand(gf, c);
  ggml_gallocr_t galloc = ggml_gallocr_new(ggml_backend_get_default_buffer_type(be));
  ggml_gallocr_alloc_graph(galloc, gf);

  std::mt19937 rng(42);
  std::uniform_int_distribution<int> byte(0, 255);
  std::uniform_real_distribution<float> scale(0.001f, 0.02f), act(-1.0f, 1.0f);
  std::vector<uint8_t> w(ggml_nbytes(a));
  for (size_t i = 0; i < w.size(); i += 18) {  // block_q4_0: fp16 d, 16 quant bytes
    ggml_fp16_t d = ggml_fp32_to_fp16(scale(rng));
    memcpy(&w[i], &d, 2);
    for (int j = 2; j < 18; ++j) w[i + j] = (uint8_t)byte(rng);
  }
  ggml_backend_tensor_set(a, w.data(), 0, w.size());
  std::vector<float> x(K * T);
  for (float& v : x) v = act(rng);
  ggml_backend_tensor_set(b, x.data(), 0, x.size() * 4);
  std::vector<float> y(N * T);
  double sum = 0;
  for (int r = 0; r < R; ++r) {
    ggml_backend_graph_compute(be, gf);
    ggml_backend_tensor_get(c, y.data(), 0, y.size() * 4);
    sum += y[r % y.size()];
  }
  printf("ggml weights %s K %lld N %lld T %lld R %d checksum %.6g\n", wname, (long long)K, (long long)N, (long long)T, R, sum);
  return 0;
}
