// Gemms (file layout and packed) and activation conversion of a table against
// the scalar one: quantised gemms bit for bit on x86 (llama.cpp's order), within
// 1e-5 of the products' magnitude on NEON (its own lane sums); conversions byte
// for byte everywhere.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>

#include "harness.h"
#include "kernels/repack.h"

using namespace bluelm;
using namespace bluelm::kernels;

namespace harness {
namespace {

const GgmlType kWeightTypes[] = {GgmlType::F32, GgmlType::F16, GgmlType::BF16,
                                 GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::Q4_1};

// sum |w_i * x_i| of the dequantised rows: the scale of the float rounding error.
double magnitude(GgmlType wt, const uint8_t* w, GgmlType xt, const uint8_t* x, int64_t K) {
  std::vector<float> a(K), b(K);
  dequantize_row(wt, w, a.data(), K);
  dequantize_row(xt, x, b.data(), K);
  double s = 0.0;
  for (int64_t k = 0; k < K; ++k) s += std::fabs(double(a[k]) * b[k]);
  if (wt == GgmlType::Q4_1) {  // the m * s term is not covered by a dequantised product
    const BlockQ4_1* wb = reinterpret_cast<const BlockQ4_1*>(w);
    const BlockQ8_1* xb = reinterpret_cast<const BlockQ8_1*>(x);
    for (int64_t i = 0; i < K / QK; ++i) s += std::fabs(fp16_to_fp32(wb[i].m) * fp16_to_fp32(xb[i].s));
  }
  return s;
}

void test_gemm(const KernelTable& isa, const KernelTable& ref, GgmlType wt, int64_t rows, int64_t K,
               int64_t n_tok, bool extreme) {
  const GgmlType xt = vec_dot_type(wt);
  const int ws_slot = weight_slot(wt), xs_slot = act_slot(xt);
  const size_t wbytes = row_bytes(wt, K), xbytes = row_bytes(xt, K);
  const size_t ws = wbytes + 32, xs = xbytes + 32;  // padded strides: kernels must use them
  const std::vector<uint8_t> W = make_weights(wt, rows, K, ws, extreme);
  const std::vector<float> xf = make_acts(n_tok, K, extreme);
  std::vector<uint8_t> X(n_tok * xs, 0x5A);
  for (int64_t t = 0; t < n_tok; ++t) ref.convert[xs_slot](xf.data() + t * K, X.data() + t * xs, K);

  const size_t ldy = rows + 3;
  std::vector<float> y_ref(n_tok * ldy, NAN), y(n_tok * ldy, NAN);
  ref.gemm[ws_slot](W.data(), ws, X.data(), xs, y_ref.data(), ldy, K, 0, rows, n_tok);
  // Two disjoint row ranges, as two pool threads would call it.
  const int64_t split = rows / 3;
  isa.gemm[ws_slot](W.data(), ws, X.data(), xs, y.data(), ldy, K, 0, split, n_tok);
  isa.gemm[ws_slot](W.data(), ws, X.data(), xs, y.data(), ldy, K, split, rows, n_tok);

  int bad = 0;
  double worst = 0.0;
  // x86 tables sum quantised dots in the scalar reference's (llama.cpp's) order: exact.
  const bool exact = quantised(wt) && mirrors_llamacpp_order(isa);
  const double rel = exact ? 0.0 : quantised(wt) ? 1e-5 : 1e-5 + 1e-8 * double(K);
  for (int64_t t = 0; t < n_tok; ++t) {
    for (int64_t r = 0; r < int64_t(ldy); ++r) {
      const float a = y[t * ldy + r], b = y_ref[t * ldy + r];
      if (r >= rows) {  // padding of Y must stay untouched
        if (!std::isnan(a)) ++bad;
        continue;
      }
      const double mag = magnitude(wt, W.data() + r * ws, xt, X.data() + t * xs, K);
      const double err = std::fabs(double(a) - b);
      if (exact ? std::memcmp(&a, &b, 4) != 0 : !(err <= rel * mag + 1e-30)) {
        ++bad;
        worst = std::fmax(worst, mag > 0 ? err / mag : err);
      }
    }
  }
  char what[200];
  std::snprintf(what, sizeof what, "%s gemm %s rows=%lld K=%lld n_tok=%lld%s: %d bad, worst rel %.3g",
                isa.isa, type_name(uint32_t(wt)), (long long)rows, (long long)K, (long long)n_tok,
                extreme ? " extreme" : "", bad, worst);
  check(bad == 0, what);
}

void test_convert(const KernelTable& isa, const KernelTable& ref, GgmlType at, int64_t K) {
  std::vector<float> x(K);
  const int64_t nb = (K + QK - 1) / QK;
  for (int64_t b = 0; b < nb; ++b) {
    const int kind = int(b % 6);
    for (int64_t j = b * QK; j < std::min<int64_t>(K, (b + 1) * QK); ++j) {
      float v = normal();
      if (kind == 1) v = 0.0f;                                     // all-zero block: d = 0
      if (kind == 2) v = (j % QK == 0) ? 127.0f : irand(-126, 126) + 0.5f;  // exact ties
      if (kind == 3) v *= 1e-6f;                                   // F16 subnormals
      if (kind == 4) v *= 3e4f;                                    // F16 overflow to inf
      if (kind == 5 && j % 7 == 0) v = -v * 50.0f;
      x[j] = v;
    }
  }
  const size_t bytes = row_bytes(at, K);
  std::vector<uint8_t> a(bytes + 16, 0x77), b(bytes + 16, 0x77);
  ref.convert[act_slot(at)](x.data(), b.data(), K);
  isa.convert[act_slot(at)](x.data(), a.data(), K);
  int first = -1;
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i] != b[i]) {
      first = int(i);
      break;
    }
  }
  char what[160];
  std::snprintf(what, sizeof what, "%s convert %s K=%lld: first differing byte %d", isa.isa,
                type_name(uint32_t(at)), (long long)K, first);
  check(first < 0, what);
}

}  // namespace

// A repacked gemm must equal the same table's file-layout gemm bit for bit, for
// any split of the rows between threads (aligned to the groups or not).
void test_packed(const KernelTable& isa, GgmlType wt, int64_t groups, int64_t K, int64_t n_tok) {
  const int slot = weight_slot(wt);
  const int R = isa.pack_rows[slot];
  if (R <= 0) return;
  const int64_t rows = groups * R;
  const GgmlType xt = vec_dot_type(wt);
  const size_t ws = row_bytes(wt, K), xs = row_bytes(xt, K);
  const size_t bb = type_info(uint32_t(wt))->block_bytes;
  const std::vector<uint8_t> W = make_weights(wt, rows, K, ws, false);
  std::vector<uint8_t> P(W.size()), U(W.size());
  if (isa.pack[slot]) {
    isa.pack[slot](W.data(), P.data(), ws, rows);
    isa.unpack[slot](P.data(), U.data(), ws, rows);
  } else {
    repack_rows(W.data(), P.data(), ws, bb, rows, R);
    unpack_rows(P.data(), U.data(), ws, bb, rows, R);
  }
  check(U == W, std::string(isa.isa) + " unpack_rows(repack_rows(W)) == W");
  const std::vector<float> xf = make_acts(n_tok, K, false);
  std::vector<uint8_t> X(n_tok * xs);
  for (int64_t t = 0; t < n_tok; ++t) isa.convert[act_slot(xt)](xf.data() + t * K, X.data() + t * xs, K);
  std::vector<float> y0(n_tok * rows, NAN), y1(n_tok * rows, NAN), y2(n_tok * rows, NAN);
  isa.gemm[slot](W.data(), ws, X.data(), xs, y0.data(), rows, K, 0, rows, n_tok);
  const int64_t aligned = rows / 2 - (rows / 2) % R, odd = rows / 3;
  isa.gemm_packed[slot](P.data(), ws, X.data(), xs, y1.data(), rows, K, 0, aligned, n_tok);
  isa.gemm_packed[slot](P.data(), ws, X.data(), xs, y1.data(), rows, K, aligned, rows, n_tok);
  isa.gemm_packed[slot](P.data(), ws, X.data(), xs, y2.data(), rows, K, 0, odd, n_tok);
  isa.gemm_packed[slot](P.data(), ws, X.data(), xs, y2.data(), rows, K, odd, rows, n_tok);
  const size_t n = y0.size() * sizeof(float);
  char what[200];
  std::snprintf(what, sizeof what, "%s packed gemm %s rows=%lld K=%lld n_tok=%lld bit-identical",
                isa.isa, type_name(uint32_t(wt)), (long long)rows, (long long)K, (long long)n_tok);
  check(std::memcmp(y0.data(), y1.data(), n) == 0 && std::memcmp(y0.data(), y2.data(), n) == 0, what);
}

void test_gemms(const KernelTable& isa) {
  const KernelTable& ref = scalar_table();
  const int64_t q_ks[] = {32, 64, 576, 1152, 1536, 4320};
  const int64_t f_ks[] = {5, 32, 64, 576, 588, 1152, 1536, 4304};
  const int64_t toks[] = {1, 2, 3, 5, 12, 17, 64};  // 12: two token tiles of AVX-512's direct path
  const int64_t rows_list[] = {1, 5, 13, 19, 37};
  int pick = 0;
  for (GgmlType wt : kWeightTypes) {
    const bool q = quantised(wt);
    for (int64_t K : q ? std::vector<int64_t>(std::begin(q_ks), std::end(q_ks))
                       : std::vector<int64_t>(std::begin(f_ks), std::end(f_ks))) {
      for (int64_t n : toks) {
        int64_t rows = rows_list[pick++ % 5];
        if (n == 64 && K >= 1536) rows = std::min<int64_t>(rows, 13);  // keep qemu runs short
        test_gemm(isa, ref, wt, rows, K, n, false);
      }
      if (q) test_gemm(isa, ref, wt, 9, K, K <= 576 ? 5 : 1, true);
    }
  }
  for (GgmlType at : {GgmlType::Q8_0, GgmlType::Q8_1, GgmlType::F16, GgmlType::BF16, GgmlType::F32}) {
    for (int64_t K : {32, 64, 576, 1152, 1536, 4320}) test_convert(isa, ref, at, K);
    if (at == GgmlType::F16 || at == GgmlType::BF16 || at == GgmlType::F32)
      for (int64_t K : {1, 5, 588, 4304}) test_convert(isa, ref, at, K);
  }
  for (GgmlType wt : {GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q8_0, GgmlType::Q5_0, GgmlType::Q5_1})
    for (int64_t K : {32, 576, 1152, 4320})
      for (int64_t n : {1, 2, 3, 9, 17}) test_packed(isa, wt, n == 17 ? 3 : 9, K, n);
}

std::vector<uint8_t> make_weights(GgmlType t, int64_t rows, int64_t K, size_t stride, bool extreme) {
  if (kquant_type(t)) return kquant_weights(t, rows, K, stride, extreme);
  std::vector<uint8_t> buf(rows * stride, 0xA5);
  for (int64_t r = 0; r < rows; ++r) {
    uint8_t* row = buf.data() + r * stride;
    const int64_t nb = K / QK;
    switch (t) {
      case GgmlType::F32:
        for (int64_t k = 0; k < K; ++k) {
          const float v = normal();
          std::memcpy(row + 4 * k, &v, 4);
        }
        break;
      case GgmlType::F16:
      case GgmlType::BF16:
        for (int64_t k = 0; k < K; ++k) {
          const uint16_t h = t == GgmlType::F16 ? fp32_to_fp16(normal()) : fp32_to_bf16(normal());
          std::memcpy(row + 2 * k, &h, 2);
        }
        break;
      case GgmlType::Q4_0: {
        BlockQ4_0* b = reinterpret_cast<BlockQ4_0*>(row);
        for (int64_t i = 0; i < nb; ++i) {
          b[i].d = fp32_to_fp16(uniform(0.001f, 0.05f) * (irand(0, 1) ? 1 : -1));
          const int e = irand(0, 1) ? 0x00 : 0xff;
          for (int j = 0; j < QK / 2; ++j) b[i].qs[j] = uint8_t(extreme ? e : irand(0, 255));
        }
        break;
      }
      case GgmlType::Q4_1: {
        BlockQ4_1* b = reinterpret_cast<BlockQ4_1*>(row);
        for (int64_t i = 0; i < nb; ++i) {
          b[i].d = fp32_to_fp16(uniform(0.001f, 0.05f));
          b[i].m = fp32_to_fp16(uniform(-0.4f, 0.1f));
          const int e = irand(0, 1) ? 0x00 : 0xff;
          for (int j = 0; j < QK / 2; ++j) b[i].qs[j] = uint8_t(extreme ? e : irand(0, 255));
        }
        break;
      }
      case GgmlType::Q8_0: {
        BlockQ8_0* b = reinterpret_cast<BlockQ8_0*>(row);
        for (int64_t i = 0; i < nb; ++i) {
          b[i].d = fp32_to_fp16(uniform(0.0005f, 0.01f) * (irand(0, 1) ? 1 : -1));
          for (int j = 0; j < QK; ++j)
            b[i].qs[j] = int8_t(extreme ? (irand(0, 1) ? 127 : -128) : irand(-128, 127));
        }
        break;
      }
      default: break;
    }
  }
  return buf;
}

std::vector<float> make_acts(int64_t n, int64_t K, bool extreme) {
  std::vector<float> x(n * K);
  for (auto& v : x) {
    v = extreme ? (irand(0, 1) ? 1.0f : -1.0f) : normal();
    if (!extreme && irand(0, 200) == 0) v *= 30.0f;  // outliers as in real activations
  }
  return x;
}

}  // namespace harness
