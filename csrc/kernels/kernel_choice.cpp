#include "kernels/kernel_choice.h"

namespace bluelm::kernels {

const char* kernel_kind_name(KernelKind k) {
  switch (k) {
    case KernelKind::None: return "none";
    case KernelKind::Reference: return "scalar";
    case KernelKind::Fallback: return "scalar fallback";
    case KernelKind::Simd: return "simd";
  }
  return "none";
}

KernelKind kernel_kind(const KernelTable& t, GgmlType type) {
  const int slot = weight_slot(type);
  if (slot < 0 || !t.gemm[slot]) return KernelKind::None;
  const KernelTable& ref = scalar_table();
  if (&t == &ref) return KernelKind::Reference;
  return t.gemm[slot] == ref.gemm[slot] ? KernelKind::Fallback : KernelKind::Simd;
}

int pack_rows_for(const KernelTable& t, GgmlType type, int64_t rows) {
  const int slot = weight_slot(type);
  const int R = slot < 0 ? 0 : t.pack_rows[slot];
  if (R <= 0 || !t.gemm_packed[slot] || rows % R != 0) return 0;
  return R;
}

}  // namespace bluelm::kernels
