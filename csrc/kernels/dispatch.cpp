// Builds the kernel tables this CPU runs and chooses one for the process (the
// only global mutable state).
#include <cstdlib>
#include <cstring>
#include <string>

#include "core/errors.h"
#include "kernels/cpu_features.h"
#include "kernels/kernels.h"
#include "kernels/scalar/scalar.h"
#ifdef BLUELM_KERNELS_X86
#include "kernels/avx2/avx2.h"
#include "kernels/avx512/avx512.h"
#include "kernels/avx512_bf16/avx512_bf16.h"
#endif
#ifdef BLUELM_KERNELS_ARM
#include "kernels/neon/neon.h"
#include "kernels/neon_dotprod/neon_dotprod.h"
#include "kernels/neon_i8mm/neon_i8mm.h"
#endif

namespace bluelm::kernels {

// Each ISA folder's header declares its parts: fill_*() functions that set, in
// the table of the ISA below it, the entries that folder has code for. They
// run code compiled for that ISA, so only once the CPU is known to run it.
int weight_slot(GgmlType t) {
  switch (t) {
    case GgmlType::F32: return W_F32;
    case GgmlType::F16: return W_F16;
    case GgmlType::BF16: return W_BF16;
    case GgmlType::Q8_0: return W_Q8_0;
    case GgmlType::Q4_0: return W_Q4_0;
    case GgmlType::Q4_1: return W_Q4_1;
    case GgmlType::Q5_0: return W_Q5_0;
    case GgmlType::Q5_1: return W_Q5_1;
    case GgmlType::IQ4_NL: return W_IQ4_NL;
    case GgmlType::Q2_K: return W_Q2_K;
    case GgmlType::Q3_K: return W_Q3_K;
    case GgmlType::Q4_K: return W_Q4_K;
    case GgmlType::Q5_K: return W_Q5_K;
    case GgmlType::Q6_K: return W_Q6_K;
    case GgmlType::IQ4_XS: return W_IQ4_XS;
    default: return -1;
  }
}

int act_slot(GgmlType t) {
  switch (t) {
    case GgmlType::F32: return A_F32;
    case GgmlType::F16: return A_F16;
    case GgmlType::BF16: return A_BF16;
    case GgmlType::Q8_0: return A_Q8_0;
    case GgmlType::Q8_1: return A_Q8_1;
    case GgmlType::Q8_K: return A_Q8_K;
    default: return -1;
  }
}

namespace {

using FillFn = void (*)(KernelTable& t);
constexpr int kMaxParts = 10;

// A table: the one it starts from, the parts that override entries of it
// (in order), and the CPU features it needs.
struct Isa {
  const char* name;
  const char* base;  // nullptr: an empty table
  FillFn parts[kMaxParts];
  bool (*runs)(const CpuFeatures& f);
};

// In order: every table after its base, best last.
const Isa kIsas[] = {
    {"scalar", nullptr,
     {scalar::fill_gemm, scalar::fill_attention, scalar::fill_vision, scalar::fill_i8, scalar::fill_kquants,
      scalar::fill_flash},
     [](const CpuFeatures&) { return true; }},
#ifdef BLUELM_KERNELS_X86
    {"avx2", "scalar",
     {avx2::fill_gemm, avx2::fill_convert, avx2::fill_attention, avx2::fill_vision, avx2::fill_i8,
      avx2::fill_kquants, avx2::fill_kquants_lowbit, avx2::fill_flash},
     [](const CpuFeatures& f) { return f.avx2 && f.fma && f.f16c; }},
    {"avx512", "avx2",
     {avx512::fill_gemm, avx512::fill_convert, avx512::fill_attention, avx512::fill_vision,
      avx512::fill_vision_attention, avx512::fill_i8, avx512::fill_kquants, avx512::fill_flash,
      avx512::fill_gemv_batch, avx512::fill_gemv_fast},
     [](const CpuFeatures& f) {
       return f.avx2 && f.fma && f.f16c && f.avx512f && f.avx512bw && f.avx512vl && f.avx512vnni;
     }},
    {"avx512_bf16", "avx512", {avx512_bf16::fill_vision_attention, avx512_bf16::fill_flash},
     [](const CpuFeatures& f) {
       return f.avx2 && f.fma && f.f16c && f.avx512f && f.avx512bw && f.avx512vl && f.avx512vnni && f.avx512bf16;
     }},
#endif
#ifdef BLUELM_KERNELS_ARM
    {"neon", "scalar",
     {neon::fill_gemm, neon::fill_convert, neon::fill_attention, neon::fill_vision, neon::fill_vision_attention,
      neon::fill_i8, neon::fill_flash},
     [](const CpuFeatures& f) { return f.asimd; }},
    {"neon_dotprod", "neon",
     {neon_dotprod::fill_gemm, neon_dotprod::fill_i8, neon_dotprod::fill_kquants, neon_dotprod::fill_flash},
     [](const CpuFeatures& f) { return f.asimd && f.dotprod; }},
    {"neon_i8mm", "neon_dotprod",
     {neon_i8mm::fill_gemm, neon_i8mm::fill_i8, neon_i8mm::fill_kquants},
     [](const CpuFeatures& f) { return f.asimd && f.dotprod && f.i8mm; }},
#endif
};
constexpr int kMaxTables = sizeof(kIsas) / sizeof(kIsas[0]);

// Every name BLUELM_ISA may give, on any target.
const char* const kKnown[] = {"scalar", "avx2", "avx512", "avx512_bf16", "neon", "neon_dotprod", "neon_i8mm"};

struct Registry {
  KernelTable table[kMaxTables];
  int n = 0;
  const KernelTable* find(const char* isa) const {
    for (int i = 0; i < n; ++i)
      if (std::strcmp(table[i].isa, isa) == 0) return &table[i];
    return nullptr;
  }
};

Registry build() {
  Registry r;
  const CpuFeatures& f = cpu_features();
  for (const Isa& isa : kIsas) {
    if (!isa.runs(f)) continue;
    KernelTable t{};
    if (isa.base) t = *r.find(isa.base);  // a CPU that runs a table runs its base
    t.isa = isa.name;
    for (FillFn fill : isa.parts)
      if (fill) fill(t);
    r.table[r.n++] = t;
  }
  return r;
}

const Registry& registry() {
  static const Registry r = build();  // magic static: built once, thread-safe
  return r;
}

}  // namespace

const KernelTable& scalar_table() { return registry().table[0]; }

int available(const KernelTable** out, int max) {
  const Registry& r = registry();
  int n = 0;
  for (int i = 0; i < r.n && n < max; ++i) out[n++] = &r.table[i];
  return n;
}

const KernelTable* by_name(const char* isa) { return isa ? registry().find(isa) : nullptr; }

namespace {

const KernelTable& choose() {
  const Registry& r = registry();
  const char* forced = std::getenv("BLUELM_ISA");
  if (forced && *forced) {
    if (const KernelTable* t = r.find(forced)) return *t;
    bool known = false;
    for (const char* k : kKnown) known = known || std::strcmp(k, forced) == 0;
    std::string have;
    for (int i = 0; i < r.n; ++i) have += std::string(i ? ", " : "") + r.table[i].isa;
    throw ArgumentError("BLUELM_ISA=" + std::string(forced) +
                        (known ? " is not supported by this CPU or build"
                               : " is not a known instruction set") +
                        "; this CPU supports: " + have + " (CPU features: " +
                        cpu_features_string() + ")");
  }
  return r.table[r.n - 1];
}

}  // namespace

const KernelTable& active() {
  // Magic static: thread-safe init; a throw leaves it uninitialised, so the
  // next call retries and throws the same error again.
  static const KernelTable& table = choose();
  return table;
}

}  // namespace bluelm::kernels
