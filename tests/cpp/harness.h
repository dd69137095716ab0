// The kernel cross-check harness (tests/cpp): every op of every kernel table
// this CPU runs against the scalar table. One executable, test_kernels; a
// file per op family. Inputs come from one seeded generator, so a run is
// reproducible; the families run in a fixed order.
#pragma once
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "core/block_formats.h"
#include "kernels/kernels.h"

namespace harness {

using bluelm::GgmlType;
using bluelm::kernels::KernelTable;

// Counts a check; prints the first 40 failures.
void check(bool ok, const std::string& what);
int failed();
int passed();

std::mt19937& rng();
float normal();
float uniform(float a, float b);
int irand(int a, int b);

// x86 tables mirror the scalar reference's (llama.cpp's) order bit for bit.
bool mirrors_llamacpp_order(const KernelTable& isa);
bool quantised(GgmlType t);

// Random weight rows in type t; `extreme` saturates every quant (all 0/15, +-127/-128).
std::vector<uint8_t> make_weights(GgmlType t, int64_t rows, int64_t K, size_t stride, bool extreme);
// Activation rows as floats; `extreme` makes every quantised value +-127.
std::vector<float> make_acts(int64_t n, int64_t K, bool extreme);
// test_kquants.cpp: the types added with the K-quants (Q5_0 ... IQ4_XS), and
// their weights (make_weights defers to it): quantised random rows, or
// (`extreme`) random block bytes with finite scales.
bool kquant_type(GgmlType t);
std::vector<uint8_t> kquant_weights(GgmlType t, int64_t rows, int64_t K, size_t stride, bool extreme);

// test_gemm.cpp: a table's packed gemm of type wt (if it packs wt) against its
// file-layout gemm, bit for bit, for thread splits on and off the groups.
void test_packed(const KernelTable& isa, GgmlType wt, int64_t groups, int64_t K, int64_t n_tok);

// The op families (one file each). Each checks `isa` against the scalar table.
void test_gemms(const KernelTable& isa);      // test_gemm.cpp: gemm, gemm_packed, convert
void test_attention(const KernelTable& isa);  // test_attention.cpp: attend, attend_rows, swiglu
void test_flash(const KernelTable& isa);      // test_flash.cpp: attend_chunk
void test_vision(const KernelTable& isa);     // test_vision.cpp: the encoder's ops
void test_kquants(const KernelTable& isa);    // test_kquants.cpp: K-quant, Q5, IQ4 gemms, Q8_K convert
void test_gemv_batch(const KernelTable& isa);  // test_gemv_batch.cpp: the small-batch gemv
void test_gemv_fast(const KernelTable& isa);   // test_gemv_fast.cpp: gemv_fast's bound, the greedy screening
// test_kquants.cpp, once per run: the quantisers' bytes against llama.cpp's hashes.
void test_quantisers();
// test_thread_pool.cpp, once per run: ThreadPool::run_shared.
void test_thread_pool();

// bench.cpp: single-thread figures, scalar against each table.
// CPU time of this thread (the machine is shared: wall time counts other jobs).
double thread_seconds();
// only: type names to bench, each argument may hold several split by commas (empty: all); a repacked table's file-layout gemm
// is shown beside its packed one ([f], [p]).
void bench_gemm(const std::vector<const KernelTable*>& tables, const std::vector<std::string>& only);
void bench_vision(const std::vector<const KernelTable*>& tables);
void bench_attention(const std::vector<const KernelTable*>& tables);
void bench_steps(const std::vector<const KernelTable*>& tables);
void bench_decode(const std::vector<const KernelTable*>& tables, const std::vector<std::string>& only);
// bench_batch.cpp: the speculative verification's matrix work per token count (SmolLM2 shapes).
void bench_batch(const std::vector<const KernelTable*>& tables);

}  // namespace harness
