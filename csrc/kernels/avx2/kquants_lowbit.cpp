// AVX2 Q2_K, Q3_K, IQ4_XS and IQ4_NL, each bit-identical to the scalar
// reference (kernels/scalar/kquants.h). The super-block types run
// x86/kquant_lowbit_tiles.h with 8 rows per ymm on 8-row interleaved groups
// (kernels/kquant_pack.h) repacked at load, or the file layout interleaved per
// call (common/kquant_driver.h); IQ4_NL runs Q4_0's tile (x86/tiles256.h) with
// the table's levels, in the file layout or 4-row packed groups.
#include "kernels/avx2/avx2.h"
#include "kernels/avx2/kquant_lanes.h"
#include "kernels/common/gemm_driver.h"
#include "kernels/x86/kquant_lowbit_tiles.h"
#include "kernels/x86/tiles256.h"

namespace bluelm::kernels::avx2 {

void fill_kquants_lowbit(KernelTable& t) {
  set_kquant_entry<K23Fmt<V8, false>, V8>(t);
  set_kquant_entry<K23Fmt<V8, true>, V8>(t);
  set_kquant_entry<IQ4XSFmt<V8>, V8>(t);
  constexpr int kGroup = 4;  // as Q4_0 (gemm.cpp): a row tile streams one interleaved group
  t.gemm[W_IQ4_NL] = gemm_tiles<Q4_0Tile<IQ4_NLLv>, 0>;
  t.gemm_packed[W_IQ4_NL] = gemm_tiles<Q4_0Tile<IQ4_NLLv>, kGroup>;
  t.pack_rows[W_IQ4_NL] = kGroup;
}

}  // namespace bluelm::kernels::avx2
