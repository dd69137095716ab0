// Weight quantisers of the 5-bit, IQ4 and K-quant formats, and the Q8_K
// activation quantiser. Each gives the bytes ggml's quantiser gives without an
// importance matrix (what llama-quantize writes; ggml_quantize_chunk with
// imatrix = NULL): the same search over scales and mins, the same float
// operations in the same order, no fused multiply-adds. Written from the
// algorithms' description; tests/test_quantize.py holds them to recorded
// llama.cpp output bit for bit.
#pragma once
#include <cstddef>
#include <cstdint>

#include "core/block_formats.h"

namespace bluelm {

// True when quantize_rows can produce type t (the weight types above and Q8_K).
bool can_quantize(GgmlType t);

// Quantises n_rows rows of n_per_row floats (a multiple of t's block size) into
// rows of t's blocks laid end to end; returns the bytes written. Rows are
// independent, so any split of the rows gives the same bytes.
size_t quantize_rows(GgmlType t, const float* x, void* dst, int64_t n_rows, int64_t n_per_row);

// Q8_K: per 256 values, d = max / -127 of the value of largest magnitude, q =
// round(x / d) (ties to even), plus the 16 sums of 16 quants (ggml's
// quantize_row_q8_K_ref, which its x86 and ARM CPU code also use).
void quantize_row_q8_k(const float* x, BlockQ8_K* y, int64_t n);

}  // namespace bluelm
