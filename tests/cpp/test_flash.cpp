// Prompt-chunk attention (attend_chunk, kernels/common/flash_attention.h) over
// F32, F16 and INT8 (Q8_0) caches: every table gives the scalar reference's
// bits, whatever the lanes per call; a row's result does not depend on the
// chunk it came in; and the reference is within a stated bound of exact
// (double) attention: 2e-6 x max|V| with F32 / F16 caches (only float
// rounding), with the INT8 cache 2e-6 x max|V| against exact arithmetic on the
// query as the kernel rounds it (15 bits per block of 32) and 2e-4 x max|V|
// against the unrounded one.
//
// attend_chunk_bf16 (where a table has it; F16 and Q8_0 caches, head_dim a
// multiple of 32) computes the scores from integers of the query and the key
// per block of 32 (13 and 15 bits; with a Q8_0 cache 15 bits and its quants), each score within delta of the reference's
// (score_error), and rounds the weights and the values to bf16 (relative error
// 2^-9 each) for P.V, summed in F32, over the unrounded weights' sum:
// |out - reference| <= (2^-8 + 1e-5) x max|V| (1e-5 for the F32 sums in another
// order and the exp) plus (e^(2 delta) - 1) (1 + 2^-8 + 1e-5) x max|V| for the
// weights' scores, per lane; against exact attention that plus the reference's
// own bound. Its bits, too, must not depend on the lanes per call or the
// chunking.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "harness.h"

using namespace bluelm;
using namespace bluelm::kernels;

namespace harness {
namespace {

struct Case {
  GgmlType kv;
  int64_t hd, group, pos0, m, window;
  float softcap;
};

// One KV head of a cache with two heads per position (the second is read) and
// a chunk of m rows of `group` query heads.
struct Data {
  Case c;
  size_t stride;  // cache elements per position
  std::vector<uint8_t> K, V;
  std::vector<float> Kf, Vf;  // the second head's rows as floats
  std::vector<float> q;
  float vmax = 0.0f;

  explicit Data(const Case& cs) : c(cs) {
    const int64_t n = c.pos0 + c.m;
    stride = size_t(2 * c.hd + 32);
    const size_t rb = row_bytes(c.kv, int64_t(stride));
    K.resize(n * rb);
    V.resize(n * rb);
    Kf.resize(n * c.hd);
    Vf.resize(n * c.hd);
    std::vector<float> row(stride), back(stride);
    for (int64_t p = 0; p < n; ++p)
      for (int which = 0; which < 2; ++which) {
        // keys with a spread of norms, so softmaxes range from flat to peaked
        const float amp = which == 0 ? 1.0f + 2.0f * uniform(0.0f, 1.0f) : 1.0f;
        for (auto& x : row) x = normal() * amp;
        uint8_t* dst = (which == 0 ? K : V).data() + p * rb;
        if (c.kv == GgmlType::F32) std::memcpy(dst, row.data(), rb);
        else if (c.kv == GgmlType::F16)
          for (size_t i = 0; i < stride; ++i) reinterpret_cast<uint16_t*>(dst)[i] = fp32_to_fp16(row[i]);
        else quantize_row_q8_0_ref(row.data(), reinterpret_cast<BlockQ8_0*>(dst), int64_t(stride));
        dequantize_row(c.kv, dst, back.data(), int64_t(stride));
        float* f = (which == 0 ? Kf : Vf).data() + p * c.hd;
        std::copy(back.begin() + c.hd, back.begin() + 2 * c.hd, f);
      }
    for (float v : Vf) vmax = std::max(vmax, std::fabs(v));
    q.resize(size_t(c.m * c.group * c.hd + 8));
    for (auto& x : q) x = normal();
  }

  ChunkAttention args(float* out) const {
    ChunkAttention a{};
    const size_t off = row_bytes(c.kv, c.hd);  // the second head
    a.q = q.data();
    a.q_stride = size_t(c.group * c.hd);
    a.k = K.data() + off;
    a.v = V.data() + off;
    a.kv_type = c.kv;
    a.kv_stride = stride;
    a.head_dim = c.hd;
    a.n_group = c.group;
    a.pos0 = c.pos0;
    a.window = c.window;
    a.scale = 1.0f / std::sqrt(float(c.hd));
    a.softcap = c.softcap;
    a.out = out;
    a.out_stride = a.q_stride;
    return a;
  }

  // The cache's positions [0, n) in attend_chunk_bf16's form, by t's converter;
  // the buffer starts as NaN, so a read of a position not converted shows.
  struct Converted {
    std::vector<float> buf;
    ChunkKv kv;
  };
  std::unique_ptr<Converted> convert(const KernelTable& t) const {
    const int64_t n = c.pos0 + c.m;
    auto cv = std::make_unique<Converted>();
    cv->buf.assign(chunk_kv_bytes(c.hd, n) / 4 + 16, NAN);
    void* base = reinterpret_cast<void*>((reinterpret_cast<uintptr_t>(cv->buf.data()) + 63) & ~uintptr_t(63));
    cv->kv = chunk_kv_layout(base, c.hd, n);
    ChunkAttention a = args(nullptr);
    for (int64_t p0 = 0; p0 < n; p0 += 38) t.convert_chunk_kv(a, p0, std::min(n, p0 + 38), cv->kv);
    return cv;
  }

  // Lanes [0, m * group) in calls of `per_call` lanes (of attend_chunk_bf16 when bf16).
  std::vector<float> run(const KernelTable& t, int64_t per_call, bool bf16 = false) const {
    const AttendChunkFn fn = bf16 ? t.attend_chunk_bf16 : t.attend_chunk;
    std::vector<float> out(q.size(), NAN);
    ChunkAttention a = args(out.data());
    const std::unique_ptr<Converted> cv = bf16 ? convert(t) : nullptr;
    if (cv) a.kv = &cv->kv;
    const size_t bytes = attend_chunk_work(c.hd);
    std::unique_ptr<uint8_t, decltype(&std::free)> work(static_cast<uint8_t*>(std::aligned_alloc(64, (bytes + 63) / 64 * 64)),
                                                        &std::free);
    const int64_t lanes = c.m * c.group;
    for (int64_t l0 = 0; l0 < lanes; l0 += per_call) fn(a, l0, std::min(lanes, l0 + per_call), work.get());
    return out;
  }

  // Exact attention of lane (t, g) in double, on query qv (head_dim values).
  void exact(int64_t t, const float* qv, double* o) const {
    const int64_t pos = c.pos0 + t, lo = c.window ? std::max<int64_t>(0, pos + 1 - c.window) : 0;
    const double scale = double(1.0f / std::sqrt(float(c.hd)));  // the kernel's float scale
    std::vector<double> s(pos + 1 - lo);
    double mx = -1e300;
    for (int64_t j = lo; j <= pos; ++j) {
      double dot = 0.0;
      for (int64_t d = 0; d < c.hd; ++d) dot += double(qv[d]) * Kf[j * c.hd + d];
      double x = dot * scale;
      if (c.softcap > 0.0f) x = c.softcap * std::tanh(x / c.softcap);
      s[j - lo] = x;
      mx = std::max(mx, x);
    }
    double sum = 0.0;
    for (auto& x : s) sum += (x = std::exp(x - mx));
    for (int64_t d = 0; d < c.hd; ++d) {
      double acc = 0.0;
      for (int64_t j = lo; j <= pos; ++j) acc += s[j - lo] * Vf[j * c.hd + d];
      o[d] = acc / sum;
    }
  }
};

// The query as the INT8 path sees it: per block of 32, d = max|q| / 16383 and
// round(q / d) (ties to even), back to floats.
std::vector<float> q8_rounded(const float* q, int64_t hd) {
  std::vector<float> r(hd);
  for (int64_t b = 0; b < hd; b += 32) {
    float amax = 0.0f;
    for (int e = 0; e < 32; ++e) amax = std::max(amax, std::fabs(q[b + e]));
    const float d = amax / 16383.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
    for (int e = 0; e < 32; ++e) r[b + e] = std::nearbyint(q[b + e] * id) * d;
  }
  return r;
}

std::string describe(const KernelTable& t, const Case& c, bool bf16 = false) {
  char buf[200];
  std::snprintf(buf, sizeof buf, "%s attend_chunk%s %s hd=%lld group=%lld pos0=%lld m=%lld window=%lld softcap=%g",
                t.isa, bf16 ? "_bf16" : "", type_name(uint32_t(c.kv)), (long long)c.hd, (long long)c.group, (long long)c.pos0,
                (long long)c.m, (long long)c.window, double(c.softcap));
  return buf;
}

// The most attend_chunk_bf16's score of row t's query q can be off: per block of
// 32, query and key rounded to integers of d = max|x| / R (the query R = 4095,
// or 16383 with a Q8_0 cache; an F16 key R = 16383, a Q8_0 key is exact), each
// off by e = d / 2 at most, so the dot by sum |q| e_k + |k| e_q + 32 e_q e_k;
// plus 1e-6 of sum |q| |k| for the float sums of the blocks; times scale.
double score_error(const Data& data, int64_t t, const float* q) {
  const Case& c = data.c;
  const int64_t pos = c.pos0 + t, lo = c.window ? std::max<int64_t>(0, pos + 1 - c.window) : 0;
  const bool q8 = c.kv == GgmlType::Q8_0;
  const double q_step = 1.0 / (q8 ? 16383.0 : 4095.0), k_step = q8 ? 0.0 : 1.0 / 16383.0;
  double worst = 0.0;
  for (int64_t j = lo; j <= pos; ++j) {
    const float* k = data.Kf.data() + j * c.hd;
    double err = 0.0;
    for (int64_t b = 0; b < c.hd; b += 32) {
      double qmax = 0.0, kmax = 0.0, sq = 0.0, sk = 0.0, sqk = 0.0;
      for (int e = 0; e < 32; ++e) {
        qmax = std::max(qmax, std::fabs(double(q[b + e])));
        kmax = std::max(kmax, std::fabs(double(k[b + e])));
        sq += std::fabs(q[b + e]);
        sk += std::fabs(k[b + e]);
        sqk += std::fabs(double(q[b + e]) * k[b + e]);
      }
      const double eq = qmax * q_step / 2, ek = kmax * k_step / 2;
      err += sq * ek + sk * eq + 32 * eq * ek + 1e-6 * sqk;
    }
    worst = std::max(worst, err);
  }
  return worst / std::sqrt(double(c.hd));
}

// attend_chunk_bf16 against exact attention and the scalar reference `want`
// (the bound in the header comment); its bits in any lanes per call.
void test_bf16(const KernelTable& isa, const Case& c, const Data& data, const std::vector<float>& want) {
  const int64_t lanes = c.m * c.group;
  const std::vector<float> got = data.run(isa, isa.chunk_lanes, true);
  int differ = 0;
  for (int64_t per_call : {int64_t(5), lanes}) {
    const std::vector<float> again = data.run(isa, per_call, true);
    for (int64_t i = 0; i < lanes * c.hd; ++i) differ += std::memcmp(&got[i], &again[i], 4) != 0;
  }
  check(differ == 0, describe(isa, c, true) + ": " + std::to_string(differ) + " differ between lanes per call");
  const double ref_bound = (c.kv == GgmlType::Q8_0 ? 2e-4 : 2e-6), pv_bound = std::ldexp(1.0, -8) + 1e-5;
  double worst_exact = 0.0, worst_ref = 0.0, worst_margin = 0.0;
  std::vector<double> o(c.hd);
  for (int64_t t = 0; t < c.m; ++t)
    for (int64_t g = 0; g < c.group; ++g) {
      const size_t at = size_t(t * c.group * c.hd + g * c.hd);
      // each score within delta, so each weight within a factor e^(+-2 delta) (its sum too)
      const double delta = score_error(data, t, data.q.data() + at);
      const double bound = pv_bound + std::expm1(2.0 * delta) * (1.0 + pv_bound);
      data.exact(t, data.q.data() + at, o.data());
      for (int64_t d = 0; d < c.hd; ++d) {
        const double e = std::fabs(o[d] - got[at + d]) / data.vmax, r = std::fabs(double(want[at + d]) - got[at + d]) / data.vmax;
        worst_exact = std::max(worst_exact, e);
        worst_ref = std::max(worst_ref, r);
        worst_margin = std::max({worst_margin, r / bound, e / (bound + ref_bound)});
      }
    }
  char buf[200];
  std::snprintf(buf, sizeof buf, ": max|bf16 - exact| %.3g, |bf16 - ref| %.3g (x max|V|), worst share of its bound %.3g",
                worst_exact, worst_ref, worst_margin);
  check(worst_margin <= 1.0, describe(isa, c, true) + buf);
  if (std::getenv("BLUELM_FLASH_VERBOSE")) std::printf("%s%s\n", describe(isa, c, true).c_str(), buf);
}

void test_case(const KernelTable& isa, const KernelTable& ref, const Case& c) {
  const Data data(c);
  const int64_t lanes = c.m * c.group;
  const std::vector<float> want = data.run(ref, ref.chunk_lanes);
  int differ = 0;
  for (int64_t per_call : {isa.chunk_lanes, int64_t(5), lanes}) {
    const std::vector<float> got = data.run(isa, per_call);
    for (int64_t i = 0; i < lanes * c.hd; ++i) differ += std::memcmp(&got[i], &want[i], 4) != 0;
  }
  check(differ == 0, describe(isa, c) + ": " + std::to_string(differ) + " differ from scalar");
  if (isa.attend_chunk_bf16 && c.kv != GgmlType::F32 && c.hd % 32 == 0) test_bf16(isa, c, data, want);
  if (&isa != &ref) return;
  // The reference against exact attention.
  double worst = 0.0, worst_raw = 0.0;
  std::vector<double> o(c.hd);
  for (int64_t t = 0; t < c.m; ++t)
    for (int64_t g = 0; g < c.group; ++g) {
      const float* qv = data.q.data() + t * c.group * c.hd + g * c.hd;
      const float* got = want.data() + t * c.group * c.hd + g * c.hd;
      const std::vector<float> q8 = c.kv == GgmlType::Q8_0 ? q8_rounded(qv, c.hd) : std::vector<float>(qv, qv + c.hd);
      data.exact(t, q8.data(), o.data());
      for (int64_t d = 0; d < c.hd; ++d) worst = std::max(worst, std::fabs(o[d] - got[d]));
      data.exact(t, qv, o.data());
      for (int64_t d = 0; d < c.hd; ++d) worst_raw = std::max(worst_raw, std::fabs(o[d] - got[d]));
    }
  const double bound = 2e-6 * data.vmax, bound_raw = (c.kv == GgmlType::Q8_0 ? 2e-4 : 2e-6) * data.vmax;
  char buf[160];
  std::snprintf(buf, sizeof buf, ": max|ref - exact| %.3g (bound %.3g), unrounded query %.3g (bound %.3g)", worst,
                bound, worst_raw, bound_raw);
  check(worst <= bound && worst_raw <= bound_raw, describe(isa, c) + buf);
  if (std::getenv("BLUELM_FLASH_VERBOSE")) std::printf("%s%s\n", describe(isa, c).c_str(), buf);
}

// A row gives the same bits in any chunk: the last rows of a chunk again as a
// chunk of their own (a later pos0) and one row at a time.
void test_chunking(const KernelTable& isa, GgmlType kv, int64_t window, bool bf16 = false) {
  const Case big{kv, 64, 3, 70, 40, window, 0.0f};
  const Data data(big);
  const AttendChunkFn fn = bf16 ? isa.attend_chunk_bf16 : isa.attend_chunk;
  const std::vector<float> all = data.run(isa, isa.chunk_lanes, bf16);
  int differ = 0;
  for (int64_t r : {int64_t(13), int64_t(1)}) {
    // rows [m - r, m) of the same data, starting at position pos0 + m - r
    std::vector<float> out(data.q.size(), NAN);
    ChunkAttention a = data.args(out.data());
    const int64_t skip = big.m - r;
    a.q = data.q.data() + skip * a.q_stride;
    a.out = out.data() + skip * a.out_stride;
    a.pos0 = big.pos0 + skip;
    const auto cv = bf16 ? data.convert(isa) : nullptr;
    if (cv) a.kv = &cv->kv;
    const size_t bytes = attend_chunk_work(big.hd);
    std::vector<uint8_t> work(bytes + 64);
    void* w = reinterpret_cast<void*>((reinterpret_cast<uintptr_t>(work.data()) + 63) & ~uintptr_t(63));
    fn(a, 0, r * big.group, w);
    for (int64_t i = skip * a.q_stride; i < big.m * int64_t(a.q_stride); ++i) differ += std::memcmp(&out[i], &all[i], 4) != 0;
  }
  char buf[120];
  std::snprintf(buf, sizeof buf, "%s attend_chunk%s %s window=%lld: rows rerun in smaller chunks, %d differ", isa.isa,
                bf16 ? "_bf16" : "", type_name(uint32_t(kv)), (long long)window, differ);
  check(differ == 0, buf);
}

}  // namespace

void test_flash(const KernelTable& isa) {
  const KernelTable& ref = scalar_table();
  for (GgmlType kv : {GgmlType::F32, GgmlType::F16, GgmlType::Q8_0}) {
    for (int64_t hd : {32, 64, 96, 128, 256}) test_case(isa, ref, {kv, hd, 1, 0, 19, 0, 0.0f});
    if (kv != GgmlType::Q8_0) test_case(isa, ref, {kv, 72, 2, 5, 9, 0, 0.0f});  // head_dim not a multiple of 16
    test_case(isa, ref, {kv, 64, 3, 0, 70, 0, 0.0f});      // GQA, several key tiles from 0
    test_case(isa, ref, {kv, 128, 1, 150, 50, 0, 0.0f});   // a later chunk
    test_case(isa, ref, {kv, 64, 2, 60, 37, 0, 0.0f});     // a chunk crossing a tile boundary
    test_case(isa, ref, {kv, 64, 4, 200, 30, 100, 0.0f});  // sliding window inside the cache
    test_case(isa, ref, {kv, 64, 1, 20, 40, 33, 0.0f});    // window reached within the chunk
    test_case(isa, ref, {kv, 64, 2, 40, 25, 0, 5.0f});     // gemma2's soft-cap
    test_case(isa, ref, {kv, 128, 2, 90, 40, 64, 50.0f});  // both
    test_case(isa, ref, {kv, 64, 3, 700, 61, 0, 0.0f});    // a long prompt's chunk (odd tile ends)
    for (int64_t window : {0, 17}) {
      test_chunking(isa, kv, window);
      if (isa.attend_chunk_bf16 && kv != GgmlType::F32) test_chunking(isa, kv, window, true);
    }
  }
}

}  // namespace harness
