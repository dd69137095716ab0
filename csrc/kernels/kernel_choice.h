// Which kernel of a table multiplies a weight type: for `bluelm-cpp info` and
// for the loader's repacking decision (one rule for both).
#pragma once
#include <cstdint>

#include "kernels/kernels.h"

namespace bluelm::kernels {

enum class KernelKind {
  None,       // no kernel: the type cannot be multiplied
  Reference,  // the table is the scalar reference itself
  Fallback,   // a SIMD table without its own kernel for the type: the scalar reference runs
  Simd,       // the table's own kernel
};

const char* kernel_kind_name(KernelKind k);  // "none", "scalar", "scalar fallback", "simd"

// How table t multiplies a matrix of `rows` rows of type `type`.
KernelKind kernel_kind(const KernelTable& t, GgmlType type);

// Rows per interleaved group t repacks such a matrix into at load, 0 for none.
int pack_rows_for(const KernelTable& t, GgmlType type, int64_t rows);

}  // namespace bluelm::kernels
