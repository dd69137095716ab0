// K-quant matmul driver for instruction counting (benchmarks/bench_arm_kquant_insn.py):
// R times, quantise T activation rows of K floats to Q8_K and multiply them by
// an N x K matrix of TYPE (q4_k, q5_k or q6_k), one thread, through the active
// kernel table as the decoder calls it (convert, then gemm_packed on the
// table's load-time layout, or gemm on the file layout).
//   kquant_matmul TYPE K N T R       (BLUELM_ISA picks the table)
// Quant bytes are random, scales small positive fp16; the sum of the outputs
// is printed, so the work cannot be optimised away and tables that give the
// scalar reference's bits print the same checksum.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "core/block_formats.h"
#include "kernels/kernels.h"
#include "kernels/repack.h"

using namespace bluelm;

int main(int argc, char** argv) {
  if (argc != 6) {
    std::fprintf(stderr, "usage: %s q4_k|q5_k|q6_k K N T R\n", argv[0]);
    return 2;
  }
  const std::string name = argv[1];
  const GgmlType wt = name == "q4_k" ? GgmlType::Q4_K : name == "q5_k" ? GgmlType::Q5_K : GgmlType::Q6_K;
  if (name != "q4_k" && name != "q5_k" && name != "q6_k") {
    std::fprintf(stderr, "TYPE: q4_k, q5_k or q6_k\n");
    return 2;
  }
  const int64_t K = std::atoll(argv[2]), N = std::atoll(argv[3]), T = std::atoll(argv[4]);
  const int R = std::atoi(argv[5]);
  if (K <= 0 || K % QK_K != 0 || N <= 0 || N % 16 != 0 || T <= 0 || R < 0) {
    std::fprintf(stderr, "K must be a multiple of %d, N of 16; T >= 1, R >= 0\n", QK_K);
    return 2;
  }
  const kernels::KernelTable& kt = kernels::active();
  const int slot = kernels::weight_slot(wt);
  std::mt19937 rng(42);
  std::uniform_int_distribution<int> byte(0, 255);
  std::uniform_real_distribution<float> scale(0.001f, 0.02f), act(-1.0f, 1.0f);

  const size_t ws = row_bytes(wt, K);
  const size_t bb = type_info(uint32_t(wt))->block_bytes;
  std::vector<uint8_t> w(ws * N);
  for (uint8_t& q : w) q = static_cast<uint8_t>(byte(rng));
  for (size_t off = 0; off < w.size(); off += bb) {  // finite fp16 super-block scales
    const uint16_t d = fp32_to_fp16(scale(rng)), dmin = fp32_to_fp16(scale(rng));
    if (wt == GgmlType::Q6_K) {
      std::memcpy(&w[off + offsetof(BlockQ6_K, d)], &d, 2);
    } else {
      std::memcpy(&w[off], &d, 2);
      std::memcpy(&w[off + 2], &dmin, 2);
    }
  }
  const void* W = w.data();
  std::vector<uint8_t> packed;
  const int pack = kt.pack_rows[slot];
  if (pack > 0) {  // as the loader does for tables that repack (llm_weights.cpp)
    packed.resize(ws * N);
    if (kt.pack[slot]) kt.pack[slot](W, packed.data(), ws, N);
    else kernels::repack_rows(W, packed.data(), ws, bb, N, pack);
    W = packed.data();
  }
  const kernels::GemmFn gemm = pack > 0 ? kt.gemm_packed[slot] : kt.gemm[slot];
  const kernels::ConvertRowFn convert = kt.convert[kernels::act_slot(vec_dot_type(wt))];

  std::vector<float> x(static_cast<size_t>(T * K)), y(static_cast<size_t>(T * N));
  for (float& v : x) v = act(rng);
  const size_t xs = row_bytes(vec_dot_type(wt), K);
  std::vector<uint8_t> xq(xs * T);
  double sum = 0;
  for (int r = 0; r < R; ++r) {
    for (int64_t t = 0; t < T; ++t) convert(x.data() + t * K, xq.data() + t * xs, K);
    gemm(W, ws, xq.data(), xs, y.data(), static_cast<size_t>(N), K, 0, N, T);
    for (float v : y) sum += v;
  }
  std::printf("isa %s type %s K %lld N %lld T %lld R %d checksum %.9g\n", kt.isa, name.c_str(),
              static_cast<long long>(K), static_cast<long long>(N), static_cast<long long>(T), R, sum);
  return 0;
}
