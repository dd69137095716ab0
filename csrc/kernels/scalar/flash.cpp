// The reference of prompt-chunk attention (kernels/common/flash_attention.h)
// with one float per lane; the SIMD tables run the same template with wider
// lanes and give these bits.
#include <cmath>
#include <cstring>

#include "kernels/common/flash_attention.h"
#include "kernels/scalar/scalar.h"

namespace bluelm::kernels::scalar {
namespace {

struct Lane1 {
  static constexpr int W = 1, kB = 4, kJ = 4, kD = 4;
  using F = float;
  static F zero() { return 0.0f; }
  static F set1(float v) { return v; }
  static F load(const float* p) { return *p; }
  static void store(float* p, F v) { *p = v; }
  static F add(F a, F b) { return a + b; }
  static F sub(F a, F b) { return a - b; }
  static F mul(F a, F b) { return a * b; }
  static F div(F a, F b) { return a / b; }
  static F fmadd(F a, F b, F c) { return std::fma(a, b, c); }
  static F fnmadd(F a, F b, F c) { return std::fma(-a, b, c); }
  // as x86's maxps / minps: the second operand unless the first is larger (smaller)
  static F max(F a, F b) { return a > b ? a : b; }
  static F min(F a, F b) { return a < b ? a : b; }
  static F round(F a) { return std::nearbyint(a); }  // ties to even
  static F scale2n(F p, F n) {  // p * 2^n, n integral in [-126, 127]
    const uint32_t bits = static_cast<uint32_t>(static_cast<int32_t>(n) + 127) << 23;
    float e;
    std::memcpy(&e, &bits, 4);
    return p * e;
  }
  static F select_in(F pos, F lo, F hi, F x, F y) { return lo <= pos && pos <= hi ? x : y; }
  static F select_eq(F a, F b, F x, F y) { return a == b ? x : y; }
  static F cvt_i32(const int32_t* p) { return static_cast<float>(*p); }

  static void f16_to_f32(const uint16_t* src, float* dst, int64_t n) {
    for (int64_t i = 0; i < n; ++i) dst[i] = fp16_to_fp32(src[i]);
  }
  static void q8_0_to_f32(const BlockQ8_0* b, int64_t nb, float* dst) {
    for (int64_t k = 0; k < nb; ++k) {
      const float d = fp16_to_fp32(b[k].d);
      for (int i = 0; i < 32; ++i) dst[k * 32 + i] = d * b[k].qs[i];
    }
  }
  static void k_quants(const BlockQ8_0* b, int64_t nb, int8_t* dst) {
    for (int64_t k = 0; k < nb; ++k) std::memcpy(dst + k * 32, b[k].qs, 32);
  }
  // out[j][lane] = the exact dot of key j's 32 quants (rows ks bytes apart) with
  // the lane's ([group of 4][lane][4] bytes, GL lanes).
  template <int J, int B>
  static void dot_i8(const int8_t* k, int64_t ks, const int8_t* qb, int GL, const int32_t*, int32_t* out) {
    for (int j = 0; j < J; ++j)
      for (int lane = 0; lane < B * W; ++lane) {
        int32_t s = 0;
        for (int e = 0; e < 32; ++e) s += int32_t(qb[((e / 4) * GL + lane) * 4 + e % 4]) * k[j * ks + e];
        out[j * GL + lane] = s;
      }
  }
};

}  // namespace

void fill_flash(KernelTable& t) { set_flash_entries<Lane1>(t); }

}  // namespace bluelm::kernels::scalar

namespace bluelm::kernels {
size_t attend_chunk_work(int64_t head_dim) { return FlashWork(head_dim).total; }

namespace {
// ChunkKv's parts for n positions, in bytes, each 64-byte aligned.
struct ChunkKvParts {
  size_t k, kd, v;
  ChunkKvParts(int64_t head_dim, int64_t n) {
    const size_t hd = size_t(head_dim), np = size_t(n);
    k = flash_align(np * hd * 2);           // int16 keys
    kd = flash_align(np * (hd / 32) * 4);   // their block scales
    v = flash_align((np + 1) / 2 * hd * 4);  // bf16 pairs of values
  }
};
}  // namespace

size_t chunk_kv_bytes(int64_t head_dim, int64_t n) {
  const ChunkKvParts s(head_dim, n);
  return s.k + s.kd + s.v;
}

ChunkKv chunk_kv_layout(void* buf, int64_t head_dim, int64_t n) {
  const ChunkKvParts s(head_dim, n);
  char* p = static_cast<char*>(buf);
  return {reinterpret_cast<int16_t*>(p), reinterpret_cast<float*>(p + s.k), reinterpret_cast<uint32_t*>(p + s.k + s.kd)};
}
}  // namespace bluelm::kernels
