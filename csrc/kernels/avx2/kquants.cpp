// AVX2 Q4_K, Q5_K and Q6_K: x86/kquant_tiles.h with 8 rows per ymm (the
// 4-element sums by vpmaddubsw + vpmaddwd, the min terms by vpmaddwd), on
// 8-row interleaved groups (kernels/kquant_pack.h) repacked at load, or the
// file layout interleaved per call. Bit-identical to the scalar reference.
#include "kernels/avx2/avx2.h"
#include "kernels/avx2/kquant_lanes.h"
#include "kernels/kquant_pack.h"
#include "kernels/x86/kquant_tiles.h"

namespace bluelm::kernels::avx2 {

void fill_kquants(KernelTable& t) {
  set_kquant_entries<K4Fmt<V8, false>, K4Fmt<V8, true>, K6Fmt<V8>, V8>(t);
}

}  // namespace bluelm::kernels::avx2
