// Quantisers matching ggml's reference output without an importance matrix
// (see quantize.h). Every float operation below is one of ggml's, in its order:
// changing a product's grouping or fusing a multiply-add changes output bytes.
#include "core/quantize.h"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>

#include "core/errors.h"
#include "core/no_fp_contract.h"  // last: no FMA contraction below

namespace bluelm {
namespace {

constexpr float kGroupEps = 1e-15f;  // a group below this magnitude is all zero

// Round to nearest, ties to even, by adding 1.5 * 2^23 and reading the low
// mantissa bits (exact for |v| < 2^22; any input gives ggml's bits, never UB).
inline int round_nearest(float v) {
  const float shifted = v + 12582912.0f;
  int32_t bits;
  std::memcpy(&bits, &shifted, 4);
  return (bits & 0x007fffff) - 0x00400000;
}

// C's float -> int truncation where it is defined; 0 for NaN and out of range.
inline int trunc_int(float v) {
  return v > -2147483520.0f && v < 2147483520.0f ? static_cast<int>(v) : 0;
}

inline int clamp(int v, int lo, int hi) { return std::max(lo, std::min(hi, v)); }

// ---- 32-element blocks -------------------------------------------------------

void quantize_q5_0(const float* x, BlockQ5_0* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += QK) {
    float amax = 0.0f, max = 0.0f;  // the value of largest magnitude, first one wins
    for (int j = 0; j < QK; ++j) {
      if (amax < std::fabs(x[j])) {
        amax = std::fabs(x[j]);
        max = x[j];
      }
    }
    const float d = max / -16.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y[i].d = fp32_to_fp16(d);
    uint32_t qh = 0;
    for (int j = 0; j < QK / 2; ++j) {
      const float v0 = x[j] * id, v1 = x[j + QK / 2] * id;
      const int q0 = std::min(31, int(static_cast<int8_t>(trunc_int(v0 + 16.5f))));
      const int q1 = std::min(31, int(static_cast<int8_t>(trunc_int(v1 + 16.5f))));
      const uint8_t b0 = static_cast<uint8_t>(q0), b1 = static_cast<uint8_t>(q1);
      y[i].qs[j] = static_cast<uint8_t>((b0 & 0x0f) | ((b1 & 0x0f) << 4));
      qh |= uint32_t((b0 & 0x10) >> 4) << j;
      qh |= uint32_t((b1 & 0x10) >> 4) << (j + QK / 2);
    }
    std::memcpy(y[i].qh, &qh, 4);
  }
}

void quantize_q5_1(const float* x, BlockQ5_1* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += QK) {
    float lo = FLT_MAX, hi = -FLT_MAX;
    for (int j = 0; j < QK; ++j) {
      if (x[j] < lo) lo = x[j];
      if (x[j] > hi) hi = x[j];
    }
    const float d = (hi - lo) / 31.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y[i].d = fp32_to_fp16(d);
    y[i].m = fp32_to_fp16(lo);
    uint32_t qh = 0;
    for (int j = 0; j < QK / 2; ++j) {
      const float v0 = (x[j] - lo) * id, v1 = (x[j + QK / 2] - lo) * id;
      const uint8_t b0 = static_cast<uint8_t>(trunc_int(v0 + 0.5f));
      const uint8_t b1 = static_cast<uint8_t>(trunc_int(v1 + 0.5f));
      y[i].qs[j] = static_cast<uint8_t>((b0 & 0x0f) | ((b1 & 0x0f) << 4));
      qh |= uint32_t((b0 & 0x10) >> 4) << j;
      qh |= uint32_t((b1 & 0x10) >> 4) << (j + QK / 2);
    }
    std::memcpy(y[i].qh, &qh, 4);
  }
}

// ---- scale searches ------------------------------------------------------------

// Affine fit x ~ scale * L + min with L in 0..nmax (min <= 0): start from the
// range, then try nstep + 1 slightly different inverse scales, each followed by
// a weighted least-squares solve of (scale, min); keep the one of least
// weighted error (squared, or absolute when `mad`). Returns the scale and sets
// *neg_min = -min. ggml's make_qkx2_quants.
float fit_scale_min(int n, int nmax, const float* x, const float* w, uint8_t* L, float* neg_min,
                    float rmin, float rdelta, int nstep, bool mad) {
  float lo = x[0], hi = x[0];
  float sum_w = w[0];
  float sum_x = sum_w * x[0];
  for (int i = 1; i < n; ++i) {
    if (x[i] < lo) lo = x[i];
    if (x[i] > hi) hi = x[i];
    sum_w += w[i];
    sum_x += w[i] * x[i];
  }
  if (lo > 0) lo = 0;
  if (hi == lo) {
    for (int i = 0; i < n; ++i) L[i] = 0;
    *neg_min = -lo;
    return 0.0f;
  }
  float iscale = static_cast<float>(nmax) / (hi - lo);
  float scale = 1 / iscale;
  float best_error = 0;
  for (int i = 0; i < n; ++i) {
    L[i] = static_cast<uint8_t>(clamp(round_nearest(iscale * (x[i] - lo)), 0, nmax));
    float diff = scale * L[i] + lo - x[i];
    diff = mad ? std::fabs(diff) : diff * diff;
    best_error += w[i] * diff;
  }
  if (nstep < 1) {
    *neg_min = -lo;
    return scale;
  }
  uint8_t trial[32];
  for (int step = 0; step <= nstep; ++step) {
    iscale = (rmin + rdelta * step + nmax) / (hi - lo);
    float sum_l = 0, sum_l2 = 0, sum_xl = 0;
    for (int i = 0; i < n; ++i) {
      const int l = clamp(round_nearest(iscale * (x[i] - lo)), 0, nmax);
      trial[i] = static_cast<uint8_t>(l);
      sum_l += w[i] * l;
      sum_l2 += w[i] * l * l;
      sum_xl += w[i] * l * x[i];
    }
    const float det = sum_w * sum_l2 - sum_l * sum_l;
    if (!(det > 0)) continue;
    float this_scale = (sum_w * sum_xl - sum_x * sum_l) / det;
    float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / det;
    if (this_min > 0) {
      this_min = 0;
      this_scale = sum_xl / sum_l2;
    }
    float err = 0;
    for (int i = 0; i < n; ++i) {
      float diff = this_scale * trial[i] + this_min - x[i];
      diff = mad ? std::fabs(diff) : diff * diff;
      err += w[i] * diff;
    }
    if (err < best_error) {
      std::memcpy(L, trial, static_cast<size_t>(n));
      best_error = err;
      scale = this_scale;
      lo = this_min;  // later steps measure from the new min, as ggml does
    }
  }
  *neg_min = -lo;
  return scale;
}

// The largest-magnitude value of n (the first on ties), and that magnitude.
inline float signed_max(const float* x, int n, float* amax_out) {
  float amax = 0, max = 0;
  for (int i = 0; i < n; ++i) {
    if (std::fabs(x[i]) > amax) {
      amax = std::fabs(x[i]);
      max = x[i];
    }
  }
  *amax_out = amax;
  return max;
}

// Symmetric fit x ~ scale * l, l in -nmax..nmax-1, weights x^2: the inverse
// scale -nmax/max and 18 neighbours (nmax + 0.1 k), keeping the best
// sum(w x l)^2 / sum(w l^2). L gets l + nmax. ggml's make_qx_quants (rmse_type 1).
float fit_scale_sym(int n, int nmax, const float* x, int8_t* L) {
  float amax;
  const float max = signed_max(x, n, &amax);
  if (amax < kGroupEps) {
    for (int i = 0; i < n; ++i) L[i] = 0;
    return 0.0f;
  }
  float iscale = static_cast<float>(-nmax) / max;
  float sumlx = 0, suml2 = 0;
  for (int i = 0; i < n; ++i) {
    const int l = clamp(round_nearest(iscale * x[i]), -nmax, nmax - 1);
    L[i] = static_cast<int8_t>(l + nmax);
    const float w = x[i] * x[i];
    sumlx += w * x[i] * l;
    suml2 += w * l * l;
  }
  float scale = suml2 != 0 ? sumlx / suml2 : 0.0f;
  float best = scale * sumlx;
  for (int k = -9; k <= 9; ++k) {
    if (k == 0) continue;
    iscale = -(nmax + 0.1f * k) / max;
    sumlx = suml2 = 0;
    for (int i = 0; i < n; ++i) {
      const int l = clamp(round_nearest(iscale * x[i]), -nmax, nmax - 1);
      const float w = x[i] * x[i];
      sumlx += w * x[i] * l;
      suml2 += w * l * l;
    }
    if (suml2 > 0 && sumlx * sumlx > best * suml2) {
      for (int i = 0; i < n; ++i) L[i] = static_cast<int8_t>(nmax + clamp(round_nearest(iscale * x[i]), -nmax, nmax - 1));
      scale = sumlx / suml2;
      best = scale * sumlx;
    }
  }
  return scale;
}

// Symmetric 3-bit fit: start at -nmax/max, then up to 5 passes moving single
// levels while sum(w x l)^2 / sum(w l^2) grows (weights x^2). L gets l + nmax.
// ggml's make_q3_quants with do_rmse.
float fit_scale_q3(int n, int nmax, const float* x, int8_t* L) {
  float amax;
  const float max = signed_max(x, n, &amax);
  if (amax < kGroupEps) {
    for (int i = 0; i < n; ++i) L[i] = 0;
    return 0.0f;
  }
  const float iscale = static_cast<float>(-nmax) / max;
  float sumlx = 0, suml2 = 0;
  for (int i = 0; i < n; ++i) {
    const int l = clamp(round_nearest(iscale * x[i]), -nmax, nmax - 1);
    L[i] = static_cast<int8_t>(l);
    const float w = x[i] * x[i];
    sumlx += w * x[i] * l;
    suml2 += w * l * l;
  }
  for (int pass = 0; pass < 5; ++pass) {
    int changed = 0;
    for (int i = 0; i < n; ++i) {
      const float w = x[i] * x[i];
      float slx = sumlx - w * x[i] * L[i];
      if (!(slx > 0)) continue;
      float sl2 = suml2 - w * L[i] * L[i];
      const int l = clamp(round_nearest(x[i] * sl2 / slx), -nmax, nmax - 1);
      if (l == L[i]) continue;
      slx += w * x[i] * l;
      sl2 += w * l * l;
      if (sl2 > 0 && slx * slx * suml2 > sumlx * sumlx * sl2) {
        L[i] = static_cast<int8_t>(l);
        sumlx = slx;
        suml2 = sl2;
        ++changed;
      }
    }
    if (!changed) break;
  }
  for (int i = 0; i < n; ++i) L[i] = static_cast<int8_t>(L[i] + nmax);
  return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}

// ---- K-quants --------------------------------------------------------------------

// Bits 2g of byte l of each 32-byte group hold element 32g + l of each 128.
void pack_2bit(const uint8_t* L, uint8_t* qs) {
  for (int j = 0; j < QK_K; j += 128) {
    for (int l = 0; l < 32; ++l) {
      qs[j / 4 + l] = static_cast<uint8_t>(L[j + l] | (L[j + l + 32] << 2) | (L[j + l + 64] << 4) | (L[j + l + 96] << 6));
    }
  }
}

void quantize_q2_k(const float* x, BlockQ2_K* y, int64_t nb) {
  uint8_t L[QK_K];
  float w[16], scales[16], mins[16];
  for (int64_t i = 0; i < nb; ++i, x += QK_K) {
    float max_scale = 0, max_min = 0;
    for (int j = 0; j < 16; ++j) {
      for (int l = 0; l < 16; ++l) w[l] = std::fabs(x[16 * j + l]);
      scales[j] = fit_scale_min(16, 3, x + 16 * j, w, L + 16 * j, &mins[j], -0.5f, 0.1f, 15, true);
      if (scales[j] > max_scale) max_scale = scales[j];
      if (mins[j] > max_min) max_min = mins[j];
    }
    if (max_scale > 0) {
      const float iscale = 15.0f / max_scale;
      for (int j = 0; j < 16; ++j) y[i].scales[j] = static_cast<uint8_t>(round_nearest(iscale * scales[j]));
      y[i].d = fp32_to_fp16(max_scale / 15.0f);
    } else {
      std::memset(y[i].scales, 0, sizeof y[i].scales);
      y[i].d = fp32_to_fp16(0.0f);
    }
    if (max_min > 0) {
      const float iscale = 15.0f / max_min;
      for (int j = 0; j < 16; ++j) y[i].scales[j] |= static_cast<uint8_t>(round_nearest(iscale * mins[j]) << 4);
      y[i].dmin = fp32_to_fp16(max_min / 15.0f);
    } else {
      y[i].dmin = fp32_to_fp16(0.0f);
    }
    // Requantise against the stored (rounded) scales; a zero scale keeps the fit's levels.
    for (int j = 0; j < 16; ++j) {
      const float d = fp16_to_fp32(y[i].d) * (y[i].scales[j] & 0x0f);
      if (d == 0) continue;
      const float dm = fp16_to_fp32(y[i].dmin) * (y[i].scales[j] >> 4);
      for (int l = 0; l < 16; ++l) L[16 * j + l] = static_cast<uint8_t>(clamp(round_nearest((x[16 * j + l] + dm) / d), 0, 3));
    }
    pack_2bit(L, y[i].qs);
  }
}

void quantize_q3_k(const float* x, BlockQ3_K* y, int64_t nb) {
  int8_t L[QK_K];
  float scales[16];
  for (int64_t i = 0; i < nb; ++i, x += QK_K) {
    float max_scale = 0, amax = 0;
    for (int j = 0; j < 16; ++j) {
      scales[j] = fit_scale_q3(16, 4, x + 16 * j, L + 16 * j);
      if (std::fabs(scales[j]) > amax) {
        amax = std::fabs(scales[j]);
        max_scale = scales[j];
      }
    }
    std::memset(y[i].scales, 0, 12);
    if (max_scale != 0) {
      const float iscale = -32.0f / max_scale;
      for (int j = 0; j < 16; ++j) {
        const int8_t r = static_cast<int8_t>(round_nearest(iscale * scales[j]));
        const int l = clamp(r, -32, 31) + 32;
        if (j < 8) y[i].scales[j] = static_cast<uint8_t>(l & 0x0f);
        else y[i].scales[j - 8] |= static_cast<uint8_t>((l & 0x0f) << 4);
        y[i].scales[j % 4 + 8] |= static_cast<uint8_t>((l >> 4) << (2 * (j / 4)));
      }
      y[i].d = fp32_to_fp16(1 / iscale);
    } else {
      y[i].d = fp32_to_fp16(0.0f);
    }
    int sc[16];
    unpack_q3_k_scales(y[i].scales, sc);
    for (int j = 0; j < 16; ++j) {
      const float d = fp16_to_fp32(y[i].d) * sc[j];
      if (d == 0) continue;
      for (int l = 0; l < 16; ++l) L[16 * j + l] = static_cast<int8_t>(clamp(round_nearest(x[16 * j + l] / d), -4, 3) + 4);
    }
    // Levels 4..7 set their high bit (bit e / 32 of hmask[e % 32]) and keep 0..3 low.
    std::memset(y[i].hmask, 0, sizeof y[i].hmask);
    uint8_t low[QK_K];
    for (int e = 0; e < QK_K; ++e) {
      int l = L[e];
      if (l > 3) {
        y[i].hmask[e % 32] |= static_cast<uint8_t>(1 << (e / 32));
        l -= 4;
      }
      low[e] = static_cast<uint8_t>(l);
    }
    pack_2bit(low, y[i].qs);
  }
}

// Q4_K / Q5_K share the fit: per sub-block of 32, weights rms(x) + |x|; the
// 8 scales and mins quantised to 6 bits against the largest of each.
template <int NMAX>
void fit_k_scales(const float* x, uint16_t* d_out, uint16_t* dmin_out, uint8_t* packed, uint8_t* L,
                  float rmin, int nstep) {
  float w[32], scales[8], mins[8];
  float max_scale = 0, max_min = 0;
  for (int j = 0; j < 8; ++j) {
    const float* xb = x + 32 * j;
    float sum_x2 = 0;
    for (int l = 0; l < 32; ++l) sum_x2 += xb[l] * xb[l];
    const float av_x = std::sqrt(sum_x2 / 32);
    for (int l = 0; l < 32; ++l) w[l] = av_x + std::fabs(xb[l]);
    scales[j] = fit_scale_min(32, NMAX, xb, w, L + 32 * j, &mins[j], rmin, 0.1f, nstep, false);
    if (scales[j] > max_scale) max_scale = scales[j];
    if (mins[j] > max_min) max_min = mins[j];
  }
  const float inv_scale = max_scale > 0 ? 63.0f / max_scale : 0.0f;
  const float inv_min = max_min > 0 ? 63.0f / max_min : 0.0f;
  for (int j = 0; j < 8; ++j) {
    const uint8_t ls = std::min<uint8_t>(63, static_cast<uint8_t>(round_nearest(inv_scale * scales[j])));
    const uint8_t lm = std::min<uint8_t>(63, static_cast<uint8_t>(round_nearest(inv_min * mins[j])));
    if (j < 4) {
      packed[j] = ls;
      packed[j + 4] = lm;
    } else {
      packed[j + 4] = static_cast<uint8_t>((ls & 0x0f) | ((lm & 0x0f) << 4));
      packed[j - 4] |= static_cast<uint8_t>((ls >> 4) << 6);
      packed[j] |= static_cast<uint8_t>((lm >> 4) << 6);
    }
  }
  *d_out = fp32_to_fp16(max_scale / 63.0f);
  *dmin_out = fp32_to_fp16(max_min / 63.0f);
  for (int j = 0; j < 8; ++j) {
    int sc, m;
    scale_min_k4(j, packed, &sc, &m);
    const float d = fp16_to_fp32(*d_out) * sc;
    if (d == 0) continue;
    const float dm = fp16_to_fp32(*dmin_out) * m;
    for (int l = 0; l < 32; ++l) L[32 * j + l] = static_cast<uint8_t>(clamp(round_nearest((x[32 * j + l] + dm) / d), 0, NMAX));
  }
}

void quantize_q4_k(const float* x, BlockQ4_K* y, int64_t nb) {
  uint8_t L[QK_K];
  for (int64_t i = 0; i < nb; ++i, x += QK_K) {
    std::memset(y[i].scales, 0, sizeof y[i].scales);
    fit_k_scales<15>(x, &y[i].d, &y[i].dmin, y[i].scales, L, -1.0f, 20);
    for (int c = 0; c < 4; ++c)
      for (int l = 0; l < 32; ++l) y[i].qs[32 * c + l] = static_cast<uint8_t>(L[64 * c + l] | (L[64 * c + l + 32] << 4));
  }
}

void quantize_q5_k(const float* x, BlockQ5_K* y, int64_t nb) {
  uint8_t L[QK_K];
  for (int64_t i = 0; i < nb; ++i, x += QK_K) {
    std::memset(y[i].scales, 0, sizeof y[i].scales);
    fit_k_scales<31>(x, &y[i].d, &y[i].dmin, y[i].scales, L, -0.5f, 15);
    std::memset(y[i].qh, 0, sizeof y[i].qh);
    for (int c = 0; c < 4; ++c) {
      for (int l = 0; l < 32; ++l) {
        int a = L[64 * c + l], b = L[64 * c + l + 32];
        if (a > 15) {
          a -= 16;
          y[i].qh[l] |= static_cast<uint8_t>(1 << (2 * c));
        }
        if (b > 15) {
          b -= 16;
          y[i].qh[l] |= static_cast<uint8_t>(2 << (2 * c));
        }
        y[i].qs[32 * c + l] = static_cast<uint8_t>(a | (b << 4));
      }
    }
  }
}

void quantize_q6_k(const float* x, BlockQ6_K* y, int64_t nb) {
  int8_t L[QK_K];
  float scales[16];
  for (int64_t i = 0; i < nb; ++i, x += QK_K) {
    float max_scale = 0, max_abs = 0;
    for (int j = 0; j < 16; ++j) {
      scales[j] = fit_scale_sym(16, 32, x + 16 * j, L + 16 * j);
      if (std::fabs(scales[j]) > max_abs) {
        max_abs = std::fabs(scales[j]);
        max_scale = scales[j];
      }
    }
    if (max_abs < kGroupEps) {
      std::memset(&y[i], 0, sizeof y[i]);
      continue;
    }
    const float iscale = -128.0f / max_scale;
    y[i].d = fp32_to_fp16(1 / iscale);
    for (int j = 0; j < 16; ++j) y[i].scales[j] = static_cast<int8_t>(std::min(127, round_nearest(iscale * scales[j])));
    for (int j = 0; j < 16; ++j) {
      const float d = fp16_to_fp32(y[i].d) * y[i].scales[j];
      if (d == 0) continue;
      for (int l = 0; l < 16; ++l) L[16 * j + l] = static_cast<int8_t>(clamp(round_nearest(x[16 * j + l] / d), -32, 31) + 32);
    }
    // Per 128: element 32g + l -> nibble (g / 2) of ql[l + 32 * (g % 2)], bits 2g of qh[l].
    for (int h = 0; h < 2; ++h) {
      const int8_t* Lh = L + 128 * h;
      uint8_t* ql = y[i].ql + 64 * h;
      uint8_t* qh = y[i].qh + 32 * h;
      for (int l = 0; l < 32; ++l) {
        ql[l] = static_cast<uint8_t>((Lh[l] & 0x0f) | ((Lh[l + 64] & 0x0f) << 4));
        ql[l + 32] = static_cast<uint8_t>((Lh[l + 32] & 0x0f) | ((Lh[l + 96] & 0x0f) << 4));
        qh[l] = static_cast<uint8_t>((Lh[l] >> 4) | ((Lh[l + 32] >> 4) << 2) | ((Lh[l + 64] >> 4) << 4) | ((Lh[l + 96] >> 4) << 6));
      }
    }
  }
}

// ---- IQ4 -------------------------------------------------------------------------

constexpr float kLevels[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};
static_assert(kLevels[15] == kIQ4NLValues[15], "the IQ4 levels as floats");

// Index of the level nearest to v; on a tie the upper one, as ggml's binary
// search returns (its final test: v - lower < upper - v).
inline int nearest_level(float v) {
  if (v <= kLevels[0]) return 0;
  if (v >= kLevels[15] || v != v) return 15;  // NaN ends ggml's search at the top too
  int below = 0;  // levels 1..14 at or below v: the search's bracket, without branches
  for (int i = 1; i < 15; ++i) below += v >= kLevels[i];
  const int hi = below + 1;
  return v - kLevels[hi - 1] < kLevels[hi] - v ? hi - 1 : hi;
}

// sum(w q x) and sum(w q^2), w = x^2, of a group of 32 at inverse scale id, in
// element order (the levels first: they do not depend on the sums).
inline void iq4_sums(const float* x, float id, float* sumqx, float* sumq2) {
  float q[32];
  for (int j = 0; j < 32; ++j) q[j] = kLevels[nearest_level(id * x[j])];
  float a = 0, b = 0;
  for (int j = 0; j < 32; ++j) {
    const float w = x[j] * x[j];
    a += w * q[j] * x[j];
    b += w * q[j] * q[j];
  }
  *sumqx = a;
  *sumq2 = b;
}

// Scale of one group of 32 on the IQ4 grid: d = max/127, then 15 inverse scales
// (k - 127)/max, k = -7..7, each scored by sum(w q x)^2 / sum(w q^2) with
// weights x^2 (levels are not kept: the caller maps x again with the final scale).
float fit_iq4_group(const float* x) {
  float amax;
  const float max = signed_max(x, 32, &amax);
  if (amax < kGroupEps) return 0.0f;
  float d = -max / kIQ4NLValues[0];
  float sumqx, sumq2;
  iq4_sums(x, 1 / d, &sumqx, &sumq2);
  d = sumq2 > 0 ? sumqx / sumq2 : 0.0f;
  float best = d * sumqx;
  for (int k = -7; k <= 7; ++k) {
    iq4_sums(x, static_cast<float>(k + kIQ4NLValues[0]) / max, &sumqx, &sumq2);
    if (sumq2 > 0 && sumqx * sumqx > best * sumq2) {
      d = sumqx / sumq2;
      best = d * sumqx;
    }
  }
  return d;
}

// Element j of a group of 32: low nibble of byte j (j < 16), high nibble of j - 16.
void pack_nibbles32(const uint8_t* L, uint8_t* qs) {
  for (int j = 0; j < 16; ++j) qs[j] = static_cast<uint8_t>(L[j] | (L[16 + j] << 4));
}

void quantize_iq4_nl(const float* x, BlockIQ4_NL* y, int64_t nb) {
  uint8_t L[QK];
  for (int64_t i = 0; i < nb; ++i, x += QK) {
    const float d = fit_iq4_group(x);
    y[i].d = fp32_to_fp16(d);
    const float id = d != 0 ? 1 / d : 0;
    for (int j = 0; j < QK; ++j) L[j] = static_cast<uint8_t>(nearest_level(id * x[j]));
    pack_nibbles32(L, y[i].qs);
  }
}

void quantize_iq4_xs(const float* x, BlockIQ4_XS* y, int64_t nb) {
  float scales[8];
  uint8_t L[32];
  for (int64_t i = 0; i < nb; ++i, x += QK_K) {
    float max_scale = 0, amax_scale = 0;
    for (int j = 0; j < 8; ++j) {
      scales[j] = fit_iq4_group(x + 32 * j);
      if (std::fabs(scales[j]) > amax_scale) {
        amax_scale = std::fabs(scales[j]);
        max_scale = scales[j];
      }
    }
    // 6-bit sub-block scales (l - 32 in -32..31) of d = -max_scale / 32; the
    // levels are found with the unrounded d * l.
    const float d = -max_scale / 32;
    y[i].d = fp32_to_fp16(d);
    y[i].scales_h = 0;
    std::memset(y[i].scales_l, 0, sizeof y[i].scales_l);
    const float id = d != 0 ? 1 / d : 0.0f;
    for (int j = 0; j < 8; ++j) {
      const int l = clamp(round_nearest(id * scales[j]), -32, 31);
      const float dl = d * l;
      const float idl = dl != 0 ? 1 / dl : 0.0f;
      for (int e = 0; e < 32; ++e) L[e] = static_cast<uint8_t>(nearest_level(idl * x[32 * j + e]));
      pack_nibbles32(L, y[i].qs + 16 * j);
      const int u = l + 32;
      y[i].scales_l[j / 2] |= static_cast<uint8_t>((u & 0x0f) << (4 * (j % 2)));
      y[i].scales_h = static_cast<uint16_t>(y[i].scales_h | ((u >> 4) << (2 * j)));
    }
  }
}

}  // namespace

void quantize_row_q8_k(const float* x, BlockQ8_K* y, int64_t n) {
  for (int64_t i = 0; i < n / QK_K; ++i, x += QK_K) {
    float amax;
    const float max = signed_max(x, QK_K, &amax);
    if (amax == 0) {
      y[i].d = 0;
      std::memset(y[i].qs, 0, sizeof y[i].qs);
      std::memset(y[i].bsums, 0, sizeof y[i].bsums);
      continue;
    }
    const float iscale = -127.0f / max;
    for (int j = 0; j < QK_K; ++j) y[i].qs[j] = static_cast<int8_t>(std::min(127, round_nearest(iscale * x[j])));
    for (int j = 0; j < QK_K / 16; ++j) {
      int sum = 0;
      for (int l = 0; l < 16; ++l) sum += y[i].qs[16 * j + l];
      y[i].bsums[j] = static_cast<int16_t>(sum);
    }
    y[i].d = 1 / iscale;
  }
}

bool can_quantize(GgmlType t) {
  switch (t) {
    case GgmlType::Q5_0:
    case GgmlType::Q5_1:
    case GgmlType::Q2_K:
    case GgmlType::Q3_K:
    case GgmlType::Q4_K:
    case GgmlType::Q5_K:
    case GgmlType::Q6_K:
    case GgmlType::IQ4_NL:
    case GgmlType::IQ4_XS:
    case GgmlType::Q8_K: return true;
    default: return false;
  }
}

size_t quantize_rows(GgmlType t, const float* x, void* dst, int64_t n_rows, int64_t n_per_row) {
  const TypeInfo* ti = type_info(static_cast<uint32_t>(t));
  if (!ti || !can_quantize(t)) {
    throw ArgumentError(std::string("cannot quantise to ") + type_name(static_cast<uint32_t>(t)));
  }
  if (n_rows < 0 || n_per_row <= 0 || n_per_row % ti->block_size != 0) {
    throw ArgumentError(std::string("a row of ") + std::to_string(n_per_row) + " values is not a whole number of " +
                        ti->name + " blocks of " + std::to_string(ti->block_size));
  }
  // Every block depends only on its own values, so the rows run as one stream.
  const int64_t nb = n_rows * (n_per_row / ti->block_size);
  switch (t) {
    case GgmlType::Q5_0: quantize_q5_0(x, static_cast<BlockQ5_0*>(dst), nb); break;
    case GgmlType::Q5_1: quantize_q5_1(x, static_cast<BlockQ5_1*>(dst), nb); break;
    case GgmlType::Q2_K: quantize_q2_k(x, static_cast<BlockQ2_K*>(dst), nb); break;
    case GgmlType::Q3_K: quantize_q3_k(x, static_cast<BlockQ3_K*>(dst), nb); break;
    case GgmlType::Q4_K: quantize_q4_k(x, static_cast<BlockQ4_K*>(dst), nb); break;
    case GgmlType::Q5_K: quantize_q5_k(x, static_cast<BlockQ5_K*>(dst), nb); break;
    case GgmlType::Q6_K: quantize_q6_k(x, static_cast<BlockQ6_K*>(dst), nb); break;
    case GgmlType::IQ4_NL: quantize_iq4_nl(x, static_cast<BlockIQ4_NL*>(dst), nb); break;
    case GgmlType::IQ4_XS: quantize_iq4_xs(x, static_cast<BlockIQ4_XS*>(dst), nb); break;
    case GgmlType::Q8_K: quantize_row_q8_k(x, static_cast<BlockQ8_K*>(dst), nb * QK_K); break;
    default: break;
  }
  return static_cast<size_t>(nb) * ti->block_bytes;
}

}  // namespace bluelm
