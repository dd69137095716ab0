// The small-batch gemv of the AVX-512 table (KernelTable::gemv_batch*): 2 to
// 16 tokens against weights read once, each token through the one-token decode
// kernel's own tiles (q4_1_dtile.h), so every output has the bits of a
// one-token call by construction. A speculative round verifies its rows this
// way (llm/decoder.cpp, eval_as_steps).
#include <vector>

#include "kernels/avx512/avx512.h"
#include "kernels/avx512/q4_1_dtile.h"

namespace bluelm::kernels::avx512 {
namespace {

constexpr int kTokTile = 4;  // tokens per dtile call: 3 accumulators each, within 32 registers

// Packed Q4_1 (groups of 4 rows): per group of rows, the tokens 4 at a time.
void gemv_batch_q4_1_packed(const void* W, size_t ws, const void* X, size_t xs, float* Y, size_t ldy, int64_t K,
                            int64_t r0, int64_t r1, int64_t n_tok) {
  constexpr int P = 4;
  const char* w = static_cast<const char*>(W);
  const char* x = static_cast<const char*>(X);
  const int64_t nb = K / QK;
  std::vector<DecQ> dq(static_cast<size_t>(n_tok * nb));
  for (int64_t t = 0; t < n_tok; ++t) prep_dec(x + t * xs, nb, dq.data() + t * nb);
  for (int64_t r = r0; r < r1;) {
    if (r + P > r1 || r % P != 0) {  // a row outside whole groups: the decode's own route
      for (int64_t t = 0; t < n_tok; ++t) decode_q4_1_packed(w, ws, x + t * xs, xs, Y + t * ldy, ldy, K, r, r + 1);
      ++r;
      continue;
    }
    for (int64_t t0 = 0; t0 < n_tok; t0 += kTokTile) {
      const DecQ* px[kTokTile];
      float* y[kTokTile];
      const int T = static_cast<int>(n_tok - t0 < kTokTile ? n_tok - t0 : kTokTile);
      for (int i = 0; i < T; ++i) {
        px[i] = dq.data() + (t0 + i) * nb;
        y[i] = Y + (t0 + i) * ldy + r;
      }
      const char* g = w + r * ws;
      switch (T) {
        case 4: dtile<4>(g, px, nb, y); break;
        case 3: dtile<3>(g, px, nb, y); break;
        case 2: dtile<2>(g, px, nb, y); break;
        default: dtile<1>(g, px, nb, y); break;
      }
    }
    r += P;
  }
}

}  // namespace

void fill_gemv_batch(KernelTable& t) {
  // Only where the gemm_packed layout is the one dtile reads (fill_gemm: Q4_1 in groups of 4).
  if (t.pack_rows[W_Q4_1] == 4) t.gemv_batch_packed[W_Q4_1] = gemv_batch_q4_1_packed;
}

}  // namespace bluelm::kernels::avx512
