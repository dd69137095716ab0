// Q4_0 matmul driver for instruction counting (benchmarks/bench_arm_insn.py):
// R times, quantise T activation rows of K floats to Q8_0 and multiply them by
// an N x K Q4_0 matrix, one thread, through the active kernel table (the path
// the decoder takes: convert, then gemm or gemm_packed over all rows).
//   q4_0_matmul K N T R       (BLUELM_ISA picks the table)
// Weights and activations are random; the sum of the outputs is printed so the
// work cannot be optimised away.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "core/block_formats.h"
#include "kernels/kernels.h"

using namespace bluelm;

int main(int argc, char** argv) {
  if (argc != 5) {
    std::fprintf(stderr, "usage: %s K N T R\n", argv[0]);
    return 2;
  }
  const int64_t K = std::atoll(argv[1]), N = std::atoll(argv[2]), T = std::atoll(argv[3]);
  const int R = std::atoi(argv[4]);
  if (K <= 0 || K % QK != 0 || N <= 0 || N % 16 != 0 || T <= 0 || R < 0) {
    std::fprintf(stderr, "K must be a multiple of %d, N of 16; T >= 1, R >= 0\n", QK);
    return 2;
  }
  const kernels::KernelTable& kt = kernels::active();
  std::mt19937 rng(42);
  std::uniform_int_distribution<int> byte(0, 255);
  std::uniform_real_distribution<float> scale(0.001f, 0.02f), act(-1.0f, 1.0f);

  const size_t ws = row_bytes(GgmlType::Q4_0, K);
  std::vector<BlockQ4_0> w(static_cast<size_t>(N * K / QK));
  for (BlockQ4_0& b : w) {
    b.d = fp32_to_fp16(scale(rng));
    for (uint8_t& q : b.qs) q = static_cast<uint8_t>(byte(rng));
  }
  const void* W = w.data();
  std::vector<uint8_t> packed;
  const int pack = kt.pack_rows[kernels::W_Q4_0];
  if (pack > 0) {  // as the loader does for tables that repack (llm_weights.cpp)
    packed.resize(ws * N);
    if (kt.pack[kernels::W_Q4_0]) kt.pack[kernels::W_Q4_0](W, packed.data(), ws, N);
    else kernels::repack_rows(W, packed.data(), ws, sizeof(BlockQ4_0), N, pack);
    W = packed.data();
  }
  const kernels::GemmFn gemm = pack > 0 ? kt.gemm_packed[kernels::W_Q4_0] : kt.gemm[kernels::W_Q4_0];
  const kernels::ConvertRowFn convert = kt.convert[kernels::act_slot(vec_dot_type(GgmlType::Q4_0))];

  std::vector<float> x(static_cast<size_t>(T * K)), y(static_cast<size_t>(T * N));
  for (float& v : x) v = act(rng);
  const size_t xs = row_bytes(vec_dot_type(GgmlType::Q4_0), K);
  std::vector<uint8_t> xq(xs * T);
  double sum = 0;
  for (int r = 0; r < R; ++r) {
    for (int64_t t = 0; t < T; ++t) convert(x.data() + t * K, xq.data() + t * xs, K);
    gemm(W, ws, xq.data(), xs, y.data(), static_cast<size_t>(N), K, 0, N, T);
    sum += y[static_cast<size_t>(r) % y.size()];
  }
  std::printf("isa %s K %lld N %lld T %lld R %d checksum %.6g\n", kt.isa, static_cast<long long>(K),
              static_cast<long long>(N), static_cast<long long>(T), R, sum);
  return 0;
}
