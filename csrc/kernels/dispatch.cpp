// Chooses the kernel table for this process (the only global mutable state).
#include <cstdlib>
#include <cstring>
#include <string>

#include "core/errors.h"
#include "kernels/cpu_features.h"
#include "kernels/kernels.h"

namespace bluelm::kernels {

// Defined in the per-ISA files. Each builds its table on first call with code
// compiled for that ISA, so it may only be called once the CPU is known to run it.
#ifdef BLUELM_KERNELS_X86
const KernelTable* avx2_table();
const KernelTable* avx512_table();
#endif
#ifdef BLUELM_KERNELS_ARM
const KernelTable* neon_table();
const KernelTable* neon_dotprod_table();
const KernelTable* neon_i8mm_table();
#endif

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

int available(const KernelTable** out, int max) {
  int n = 0;
  auto add = [&](const KernelTable* t) {
    if (n < max) out[n++] = t;
  };
  add(&scalar_table());
  const CpuFeatures& f = cpu_features();
  (void)f;
#ifdef BLUELM_KERNELS_X86
  const bool avx2 = f.avx2 && f.fma && f.f16c;
  if (avx2) add(avx2_table());
  if (avx2 && f.avx512f && f.avx512bw && f.avx512vl && f.avx512vnni) add(avx512_table());
#endif
#ifdef BLUELM_KERNELS_ARM
  if (f.asimd) add(neon_table());
  if (f.asimd && f.dotprod) add(neon_dotprod_table());
  if (f.asimd && f.dotprod && f.i8mm) add(neon_i8mm_table());
#endif
  return n;
}

const KernelTable* by_name(const char* isa) {
  if (!isa) return nullptr;
  const KernelTable* tables[8];
  const int n = available(tables, 8);
  for (int i = 0; i < n; ++i) {
    if (std::strcmp(tables[i]->isa, isa) == 0) return tables[i];
  }
  return nullptr;
}

namespace {

const char* const kKnown[] = {"scalar", "avx2", "avx512", "neon", "neon_dotprod", "neon_i8mm"};

const KernelTable& choose() {
  const KernelTable* tables[8];
  const int n = available(tables, 8);
  const char* forced = std::getenv("BLUELM_ISA");
  if (forced && *forced) {
    if (const KernelTable* t = by_name(forced)) return *t;
    bool known = false;
    for (const char* k : kKnown) known = known || std::strcmp(k, forced) == 0;
    std::string have;
    for (int i = 0; i < n; ++i) have += std::string(i ? ", " : "") + tables[i]->isa;
    throw ArgumentError("BLUELM_ISA=" + std::string(forced) +
                        (known ? " is not supported by this CPU or build"
                               : " is not a known instruction set") +
                        "; this CPU supports: " + have + " (CPU features: " +
                        cpu_features_string() + ")");
  }
  return *tables[n - 1];
}

}  // namespace

const KernelTable& active() {
  // Magic static: thread-safe init; a throw leaves it uninitialised, so the
  // next call retries and throws the same error again.
  static const KernelTable& table = choose();
  return table;
}

}  // namespace bluelm::kernels
