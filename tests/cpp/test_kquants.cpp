// The Q5_0, Q5_1, IQ4_NL, Q2_K..Q6_K and IQ4_XS kernels of a table (harness.h),
// natively and under qemu-aarch64:
// - the scalar reference (run beside every table, so also under a forced
//   $BLUELM_ISA) against a double-precision dot of the dequantised
//   weights and activations, within (2 * n_blocks + 8) * 2^-24 * S, where S is
//   the sum of the magnitudes of the terms the kernel adds (kquants.h: the
//   sub-block scale and min terms apart), plus for Q5_1 the fp16 rounding of
//   the Q8_1 sum field (|m| * |s| * 2^-10 per block);
// - every other table against the scalar reference bit for bit (kquants.h's
//   order of arithmetic);
// - the Q8_K converter: every table equal to the reference, sums and
//   reconstruction error checked;
// - the quantisers: FNV-1a hashes of their blocks equal llama.cpp's for the
//   inputs of tests/data/record_quantize.py's lcg_rows() (so the bytes are
//   llama.cpp's on aarch64 too); once per run (test_quantisers).
#include <algorithm>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "core/block_formats.h"
#include "core/block_unpack.h"
#include "core/quantize.h"
#include "harness.h"

using namespace bluelm;
using namespace bluelm::kernels;

namespace harness {
namespace {

const GgmlType kTypes[] = {GgmlType::Q5_0, GgmlType::Q5_1, GgmlType::IQ4_NL, GgmlType::Q2_K, GgmlType::Q3_K,
                           GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K, GgmlType::IQ4_XS};

bool super_block(GgmlType t) { return type_info(uint32_t(t))->block_size == QK_K; }

}  // namespace

bool kquant_type(GgmlType t) { return std::find(std::begin(kTypes), std::end(kTypes), t) != std::end(kTypes); }

// Weight rows: quantised from random rows of varied scale, or (`extreme`) random
// block bytes with moderate finite fp16 scales, so every level and sub-block
// scale of the format occurs, saturated ones included.
std::vector<uint8_t> kquant_weights(GgmlType t, int64_t rows, int64_t K, size_t stride, bool extreme) {
  std::vector<uint8_t> buf(rows * stride, 0xA5);
  const TypeInfo& ti = *type_info(uint32_t(t));
  std::vector<float> row(K);
  for (int64_t r = 0; r < rows; ++r) {
    uint8_t* w = buf.data() + r * stride;
    if (!extreme) {
      const float s = std::ldexp(1.0f, irand(-8, 2));
      for (auto& v : row) v = normal() * s + (irand(0, 9) == 0 ? 0.5f * s : 0.0f);
      quantize_rows(t, row.data(), w, 1, K);
      continue;
    }
    const int64_t nb = K / ti.block_size;
    for (int64_t b = 0; b < nb; ++b) {
      uint8_t* blk = w + b * ti.block_bytes;
      for (size_t i = 0; i < ti.block_bytes; ++i) blk[i] = uint8_t(irand(0, 255));
      for (uint8_t off : ti.scale_offsets) {
        if (off == 0xff) continue;
        const uint16_t h = fp32_to_fp16(std::ldexp(float(irand(1, 1000)), -16) * (irand(0, 1) ? 1 : -1));
        std::memcpy(blk + off, &h, 2);
      }
    }
  }
  return buf;
}

namespace {

// The double-precision dot of the dequantised rows and the magnitude S (header).
struct RefDot {
  double dot = 0.0, mag = 0.0, extra = 0.0;
};

RefDot reference_dot(GgmlType wt, const uint8_t* w, GgmlType xt, const uint8_t* x, int64_t K) {
  std::vector<float> a(K), b(K);
  dequantize_row(wt, w, a.data(), K);
  dequantize_row(xt, x, b.data(), K);
  RefDot r;
  for (int64_t k = 0; k < K; ++k) r.dot += double(a[k]) * b[k];
  if (super_block(wt)) {
    const size_t bb = type_info(uint32_t(wt))->block_bytes;
    UnpackedK u;
    for (int64_t i = 0; i < K / QK_K; ++i) {
      const uint8_t* blk = w + i * bb;
      switch (wt) {
        case GgmlType::Q2_K: unpack_block(*reinterpret_cast<const BlockQ2_K*>(blk), &u); break;
        case GgmlType::Q3_K: unpack_block(*reinterpret_cast<const BlockQ3_K*>(blk), &u); break;
        case GgmlType::Q4_K: unpack_block(*reinterpret_cast<const BlockQ4_K*>(blk), &u); break;
        case GgmlType::Q5_K: unpack_block(*reinterpret_cast<const BlockQ5_K*>(blk), &u); break;
        case GgmlType::Q6_K: unpack_block(*reinterpret_cast<const BlockQ6_K*>(blk), &u); break;
        default: unpack_block(*reinterpret_cast<const BlockIQ4_XS*>(blk), &u); break;
      }
      for (int e = 0; e < QK_K; ++e) {
        const int s = e / u.sub;
        const double xv = std::fabs(double(b[i * QK_K + e]));
        r.mag += (std::fabs(double(u.d) * u.sc[s] * u.q[e]) + std::fabs(double(u.dmin) * u.mn[s])) * xv;
      }
    }
  } else {
    for (int64_t k = 0; k < K; ++k) r.mag += std::fabs(double(a[k]) * b[k]);
  }
  if (wt == GgmlType::Q5_1) {  // m * s: s is fp16(d_x * sum qx), not the dequantised sum
    const BlockQ5_1* wb = reinterpret_cast<const BlockQ5_1*>(w);
    const BlockQ8_1* xb = reinterpret_cast<const BlockQ8_1*>(x);
    for (int64_t i = 0; i < K / QK; ++i) {
      const double ms = std::fabs(double(fp16_to_fp32(wb[i].m)) * fp16_to_fp32(xb[i].s));
      r.mag += ms;
      r.extra += ms * std::ldexp(1.0, -10);
    }
  }
  return r;
}

// The weights and activations of a gemm check.
enum class Fill {
  kQuantised,    // quantised random rows, normal activations
  kRandomBytes,  // kquant_weights' `extreme` rows, activations of +-1
  kSaturated,    // every quant and scale byte 0xff (each level its largest), activations all +1
                 // (tokens -127) or all -1 (+127): the largest sums, for the kernels' int16 runs
};

const char* fill_name(Fill f) {
  return f == Fill::kQuantised ? "" : f == Fill::kRandomBytes ? " extreme" : " saturated";
}

void test_kquant_gemm(const KernelTable& isa, const KernelTable& ref, GgmlType wt, int64_t rows, int64_t K,
               int64_t n_tok, Fill fill) {
  const GgmlType xt = vec_dot_type(wt);
  const int ws_slot = weight_slot(wt), xs_slot = act_slot(xt);
  const size_t ws = row_bytes(wt, K) + 48, xs = row_bytes(xt, K) + 16;  // padded strides
  std::vector<uint8_t> W = kquant_weights(wt, rows, K, ws, fill != Fill::kQuantised);
  std::vector<float> xf = make_acts(n_tok, K, fill != Fill::kQuantised);
  if (fill == Fill::kSaturated) {
    const TypeInfo& ti = *type_info(uint32_t(wt));
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t b = 0; b < K / ti.block_size; ++b) {
        uint8_t* blk = W.data() + r * ws + b * ti.block_bytes;
        for (size_t i = 0; i < ti.block_bytes; ++i) {
          const bool fp16 = std::any_of(std::begin(ti.scale_offsets), std::end(ti.scale_offsets),
                                        [&](uint8_t off) { return off != 0xff && (i == off || i == off + 1u); });
          if (!fp16) blk[i] = 0xff;
        }
      }
    }
    for (int64_t t = 0; t < n_tok; ++t) std::fill_n(xf.begin() + t * K, K, t % 2 ? -1.0f : 1.0f);
  }
  std::vector<uint8_t> X(n_tok * xs, 0x5A);
  for (int64_t t = 0; t < n_tok; ++t) ref.convert[xs_slot](xf.data() + t * K, X.data() + t * xs, K);

  const size_t ldy = rows + 3;
  std::vector<float> y_ref(n_tok * ldy, NAN), y(n_tok * ldy, NAN);
  ref.gemm[ws_slot](W.data(), ws, X.data(), xs, y_ref.data(), ldy, K, 0, rows, n_tok);
  const int64_t split = rows / 3;  // two disjoint row ranges, as two pool threads
  isa.gemm[ws_slot](W.data(), ws, X.data(), xs, y.data(), ldy, K, 0, split, n_tok);
  isa.gemm[ws_slot](W.data(), ws, X.data(), xs, y.data(), ldy, K, split, rows, n_tok);

  const int64_t nb = K / type_info(uint32_t(wt))->block_size;
  int differ = 0, far = 0, pad = 0;
  double worst = 0.0;
  for (int64_t t = 0; t < n_tok; ++t) {
    for (int64_t r = 0; r < int64_t(ldy); ++r) {
      const float a = y[t * ldy + r], b = y_ref[t * ldy + r];
      if (r >= rows) {
        pad += !std::isnan(a) || !std::isnan(b);
        continue;
      }
      differ += std::memcmp(&a, &b, 4) != 0;
      const RefDot d = reference_dot(wt, W.data() + r * ws, xt, X.data() + t * xs, K);
      const double bound = double(2 * nb + 8) * std::ldexp(1.0, -24) * d.mag + d.extra;
      const double err = std::fabs(double(b) - d.dot);
      if (!(err <= bound)) {
        ++far;
        worst = std::fmax(worst, err / (bound > 0 ? bound : 1e-300));
      }
    }
  }
  char what[240];
  std::snprintf(what, sizeof what,
                "%s gemm %s rows=%lld K=%lld n_tok=%lld%s: %d differ from scalar, %d beyond the bound (worst %.3g x), %d padding writes",
                isa.isa, type_name(uint32_t(wt)), (long long)rows, (long long)K, (long long)n_tok,
                fill_name(fill), differ, far, worst, pad);
  check(differ == 0 && far == 0 && pad == 0, what);
}

void test_convert_q8_k(const KernelTable& isa, const KernelTable& ref, int64_t K) {
  std::vector<float> x(K);
  // Super-blocks of normals, zeros, halves (ties; led by 63 and 31.5, whose
  // product with iscale = -127/63 a fused multiply-add rounds to -63, the codec
  // to -64), tiny values, +-2 (the first of equal magnitudes decides the sign),
  // normals with a NaN.
  for (int64_t i = 0; i < K; ++i) {
    const int kind = int((i / QK_K) % 6);
    const int64_t e = i % QK_K;
    x[i] = kind == 1   ? 0.0f
           : kind == 2 ? (e == 0 ? 63.0f : e == 1 ? 31.5f : float(irand(-126, 126)) * 0.5f)
           : kind == 4 ? (irand(0, 1) ? 2.0f : -2.0f)
                       : normal() * (kind == 3 ? 1e-6f : 3.0f);
    if (kind == 5 && i % QK_K == 77) x[i] = std::nanf("");
  }
  const size_t bytes = row_bytes(GgmlType::Q8_K, K);
  std::vector<uint8_t> a(bytes + 8, 0x77), b(bytes + 8, 0x77);
  ref.convert[A_Q8_K](x.data(), b.data(), K);
  isa.convert[A_Q8_K](x.data(), a.data(), K);
  int bad = std::memcmp(a.data(), b.data(), a.size()) != 0;
  const BlockQ8_K* q = reinterpret_cast<const BlockQ8_K*>(b.data());
  for (int64_t i = 0; i < K / QK_K; ++i) {
    for (int j = 0; j < 16; ++j) {
      int s = 0;
      for (int l = 0; l < 16; ++l) s += q[i].qs[16 * j + l];
      bad += s != q[i].bsums[j];
    }
    for (int e = 0; e < QK_K; ++e) {
      if (std::isnan(x[i * QK_K + e])) continue;
      const double err = std::fabs(double(x[i * QK_K + e]) - double(q[i].d) * q[i].qs[e]);
      bad += !(err <= 0.5001 * std::fabs(double(q[i].d)) + 1e-30);
    }
  }
  char what[160];
  std::snprintf(what, sizeof what, "%s convert Q8_K K=%lld", isa.isa, (long long)K);
  check(bad == 0, what);
}

// --- the quantisers against llama.cpp ----------------------------------------------

std::vector<float> lcg_rows(int rows, int n) {
  uint64_t state = 0x9E3779B97F4A7C15ull;
  std::vector<float> out(size_t(rows) * n);
  for (int r = 0; r < rows; ++r) {
    for (int i = 0; i < n; ++i) {
      state = state * 6364136223846793005ull + 1442695040888963407ull;
      const int64_t u = int64_t(state >> 40);
      out[size_t(r) * n + i] = u % 16 == 0 ? 0.0f : std::ldexp(float(u - (int64_t(1) << 23)), -(23 + r % 13));
    }
  }
  return out;
}

uint64_t fnv1a64(const std::vector<uint8_t>& data) {
  uint64_t h = 0xCBF29CE484222325ull;
  for (uint8_t b : data) h = (h ^ b) * 0x100000001B3ull;
  return h;
}

}  // namespace

void test_quantisers() {
  const std::string path = std::string(BLUELM_TEST_DATA) + "/llamacpp_quantize_lcg.txt";
  std::ifstream in(path);
  check(bool(in), "open " + path);
  std::map<std::string, uint64_t> want;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream ls(line);
    std::string name, hex;
    ls >> name >> hex;
    want[name] = std::stoull(hex, nullptr, 16);
  }
  constexpr int kRows = 24, kN = 512;  // record_quantize.py's LCG_ROWS and N
  const std::vector<float> x = lcg_rows(kRows, kN);
  std::vector<GgmlType> types(std::begin(kTypes), std::end(kTypes));
  types.push_back(GgmlType::Q8_K);
  for (GgmlType t : types) {
    std::vector<uint8_t> out(row_bytes(t, kN) * kRows);
    quantize_rows(t, x.data(), out.data(), kRows, kN);
    const char* name = type_name(uint32_t(t));
    char what[160];
    std::snprintf(what, sizeof what, "quantise %s: FNV-1a %016" PRIx64 " vs llama.cpp's %016" PRIx64, name,
                  fnv1a64(out), want.count(name) ? want[name] : 0);
    check(want.count(name) && want[name] == fnv1a64(out), what);
  }
}

void test_kquants(const KernelTable& isa) {
  const KernelTable& ref = scalar_table();
  for (GgmlType t : kTypes) {
    check(isa.gemm[weight_slot(t)] != nullptr, std::string(isa.isa) + " has a " + type_name(uint32_t(t)) + " gemm");
    for (Fill fill : {Fill::kQuantised, Fill::kRandomBytes, Fill::kSaturated}) {
      if (super_block(t)) {
        test_kquant_gemm(isa, ref, t, 7, 512, 1, fill);
        test_kquant_gemm(isa, ref, t, 13, 1536, 3, fill);
        test_kquant_gemm(isa, ref, t, 5, 256, 17, fill);  // crosses the reference's 16-token tile
      } else {
        test_kquant_gemm(isa, ref, t, 7, 96, 1, fill);
        test_kquant_gemm(isa, ref, t, 13, 576, 3, fill);
        test_kquant_gemm(isa, ref, t, 5, 1536, 17, fill);
      }
    }
  }
  for (GgmlType t : kTypes) {  // the repacked layouts, where the table has one
    const int64_t K = super_block(t) ? 768 : 576;
    for (int64_t n : {1, 3, 6}) test_packed(isa, t, n == 6 ? 2 : 3, K, n);
  }
  check(isa.convert[A_Q8_K] != nullptr, std::string(isa.isa) + " has a Q8_K converter");
  test_convert_q8_k(isa, ref, 256);
  test_convert_q8_k(isa, ref, 2048);
}

}  // namespace harness
