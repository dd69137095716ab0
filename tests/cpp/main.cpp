// test_kernels: every kernel table this CPU can run, every op, checked against
// the scalar table (tests/cpp/harness.h).
//   test_kernels                test all runnable tables (or only $BLUELM_ISA when set)
//   test_kernels --active       print the table active() picks (ArgumentError -> exit 2)
//   test_kernels --bench [TYPE...]  single-thread LLM gemm figures, scalar vs each table
//   test_kernels --bench-vision the same for the vision int8 gemm and attention
//   test_kernels --bench-attention  prompt-chunk attention, old per-row path vs attend_chunk (and _bf16)
//   test_kernels --bench-steps      a speculative round's attention: attend per lane vs attend_steps
//   test_kernels --bench-decode [TYPE...]  one-token gemv from DRAM (GB/s vs the read probe) and L2
//                               (default Q4_0/Q4_K/Q5_K/Q6_K; Q2_K, Q3_K, IQ4_XS by name)
//   test_kernels --bench-batch  speculative verification matrices (SmolLM2 shapes) per token count
// Last line of a test run: "N passed, N failed"; exit status non-zero on failure.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "core/errors.h"
#include "harness.h"
#include "kernels/cpu_features.h"

using namespace bluelm;
using namespace bluelm::kernels;

namespace harness {

namespace {
int g_passed = 0, g_failed = 0, g_reported = 0;
}  // namespace

void check(bool ok, const std::string& what) {
  if (ok) {
    ++g_passed;
    return;
  }
  ++g_failed;
  if (g_reported++ < 40) std::printf("FAIL %s\n", what.c_str());
}
int failed() { return g_failed; }
int passed() { return g_passed; }

std::mt19937& rng() {
  static std::mt19937 r(12345);
  return r;
}
float normal() { return std::normal_distribution<float>(0.0f, 1.0f)(rng()); }
float uniform(float a, float b) { return std::uniform_real_distribution<float>(a, b)(rng()); }
int irand(int a, int b) { return std::uniform_int_distribution<int>(a, b)(rng()); }

bool mirrors_llamacpp_order(const KernelTable& isa) {
  return std::strcmp(isa.isa, "avx2") == 0 || std::strcmp(isa.isa, "avx512") == 0 ||
         std::strcmp(isa.isa, "avx512_bf16") == 0;
}

bool quantised(GgmlType t) { return type_info(uint32_t(t))->block_size > 1; }

}  // namespace harness

namespace {

using namespace harness;

// Every entry a model calls through must be set (attend_rows and the packed
// layouts are optional).
void test_complete(const KernelTable& isa) {
  bool ok = isa.attend && isa.swiglu && isa.geglu && isa.attend_chunk && isa.chunk_lanes > 0;
  for (int i = 0; i < W_COUNT; ++i) ok = ok && isa.gemm[i] && (isa.pack_rows[i] == 0 || isa.gemm_packed[i]);
  for (int i = 0; i < A_COUNT; ++i) ok = ok && isa.convert[i];
  const VisionKernels& v = isa.vision;
  ok = ok && v.softmax && v.gelu_tanh && v.layer_norm && v.i8_gemm && v.i8_quant && v.attention && v.attention_work;
  ok = ok && !v.i8_attention == !v.i8_attention_work;  // optional, as a pair
  check(ok, std::string(isa.isa) + " table has every entry");
}

void test_table(const KernelTable& isa) {
  const int before = failed();
  test_complete(isa);
  test_gemms(isa);
  test_attention(isa);
  test_flash(isa);
  test_vision(isa);
  test_kquants(isa);
  test_gemv_batch(isa);
  test_gemv_fast(isa);
  std::printf("%-13s %s\n", isa.isa, failed() == before ? "ok" : "FAILED");
  std::fflush(stdout);
}

const char* const kAllIsas[] = {"avx2", "avx512", "avx512_bf16", "neon", "neon_dotprod", "neon_i8mm"};

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
  if (mode == "--bench" || mode == "--bench-vision" || mode == "--bench-attention" || mode == "--bench-decode" ||
      mode == "--bench-batch" || mode == "--bench-steps") {
    std::vector<const KernelTable*> b{&scalar_table()};
    for (const KernelTable* t : tables)
      if (t != &scalar_table()) b.push_back(t);
    if (mode == "--bench") bench_gemm(b, std::vector<std::string>(argv + 2, argv + argc));
    else if (mode == "--bench-vision") bench_vision(b);
    else if (mode == "--bench-decode") bench_decode(b, std::vector<std::string>(argv + 2, argv + argc));
    else if (mode == "--bench-batch") bench_batch(b);
    else if (mode == "--bench-steps") bench_steps(b);
    else bench_attention(b);
    return 0;
  }
  test_quantisers();
  test_thread_pool();
  for (const KernelTable* t : tables) test_table(*t);
  std::printf("%d passed, %d failed\n", passed(), failed());
  return failed() ? 1 : 0;
}
