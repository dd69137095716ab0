#include "vision/vision_encoder.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <string>

#include "core/errors.h"

namespace bluelm {

namespace {
constexpr int64_t kRowGrain = 16;   // weight rows per work unit
constexpr int64_t kI8Group = 16;    // int8 panels per work item (a multiple of 8: quarters are whole panel pairs)

size_t act_row_bytes(const VisionMatrix& m) { return row_bytes(vec_dot_type(m.type), m.k_pad); }
}  // namespace

VisionEncoder::VisionEncoder(const VisionConfig& c, const VisionWeights& w, int64_t max_batch, int n_threads)
    : c_(c), w_(w), kt_(kernels::active()), vk_(kt_.vision), pool_(n_threads), max_batch_(max_batch) {
  const int64_t N = c.n_tokens, C = c.n_embd, nt = max_batch * N;
  const int64_t in_dim = c.projector == ProjectorType::MlpDownsample ? 4 * C : C;
  const int64_t n_proj_tok = max_batch * c.n_out_tokens;
  x_.resize(nt * C);
  h_.resize(nt * C);
  q_.resize(nt * C);
  k_.resize(nt * C);
  v_.resize(nt * C);
  big_.resize(std::max({nt * c.n_ff, nt * w.patch_embd.k_pad, n_proj_tok * in_dim}));
  proj_.resize(std::max(n_proj_tok, nt) * c.proj_dim);
  size_t act = 0;
  std::vector<const VisionMatrix*> ms = {&w.patch_embd};
  if (w.mm0.data) ms.insert(ms.end(), {&w.mm0, &w.mm2});
  for (const VisionLayer& L : w.layers) ms.insert(ms.end(), {&L.wq, &L.wk, &L.wv, &L.wo, &L.up, &L.down});
  for (const VisionMatrix* m : ms) {
    act = std::max(act, m->i8.panels ? kernels::i8_act_stride(m->i8.kp) : act_row_bytes(*m));
    max_k_pad_ = std::max(max_k_pad_, m->k_pad);
  }
  act_.resize(act, static_cast<size_t>(std::max(nt, n_proj_tok)));
  size_t ln_row = 0;
  for (const VisionLayer& L : w.layers)
    if (all_i8(L)) ln_row = std::max({ln_row, kernels::i8_act_stride(L.wq.i8.kp), kernels::i8_act_stride(L.up.i8.kp)});
  if (ln_row) ln_act_.resize(ln_row, static_cast<size_t>(nt));
  pad_.resize(static_cast<size_t>(n_threads) * max_k_pad_);
  attn_floats_ = vk_.attention_work(N, c.head_dim);
  if (vk_.i8_attention) attn_floats_ = std::max(attn_floats_, vk_.i8_attention_work(N, c.head_dim));
  attn_work_.resize(static_cast<size_t>(n_threads) * attn_floats_);
}

void VisionEncoder::ActBuf::resize(size_t row_bytes, size_t rows) {
  q.resize(row_bytes * rows + 64);
  scale.resize(rows);
  zp.resize(rows);
}

kernels::I8Acts VisionEncoder::ActBuf::view(const VisionMatrix& W, int64_t m) {
  return {q.data(), kernels::i8_act_stride(W.i8.kp), scale.data(), zp.data(), m};
}

void VisionEncoder::quantize_rows(const VisionMatrix& W, const float* X, int64_t ldx, int64_t t0, int64_t t1) {
  const size_t xs = kernels::i8_act_stride(W.i8.kp);
  for (int64_t t = t0; t < t1; ++t)
    act_.scale[t] = vk_.i8_quant(X + t * ldx, W.k, W.i8.kp, act_.q.data() + t * xs, &act_.zp[t]);
}

kernels::I8Acts VisionEncoder::quantize(const VisionMatrix& W, const float* X, int64_t ldx, int64_t m) {
  pool_.parallel_for(m, 1, [&](int64_t b, int64_t e) { quantize_rows(W, X, ldx, b, e); });
  return act_.view(W, m);
}

kernels::I8Acts VisionEncoder::quantize_ln(const VisionMatrix& W, int64_t m, const VisionVector& w,
                                           const VisionVector& b, ActBuf& into) {
  pool_.run([&](int ith, int nth) { quantize_ln_rows(W, w, b, into, ith, m * ith / nth, m * (ith + 1) / nth); });
  return into.view(W, m);
}

void VisionEncoder::quantize_ln_rows(const VisionMatrix& W, const VisionVector& w, const VisionVector& b,
                                     ActBuf& into, int ith, int64_t t0, int64_t t1) {
  const int64_t C = c_.n_embd;
  const size_t xs = kernels::i8_act_stride(W.i8.kp);
  float* row = pad_.data() + static_cast<size_t>(ith) * max_k_pad_;
  for (int64_t t = t0; t < t1; ++t) {
    vk_.layer_norm(x_.data() + t * C, C, w.data, b.data, c_.eps, row);
    into.scale[t] = vk_.i8_quant(row, W.k, W.i8.kp, into.q.data() + t * xs, &into.zp[t]);
  }
}

void VisionEncoder::gemm_i8(const kernels::I8Acts& xa, std::initializer_list<I8Target> targets, I8Out out,
                            const ChunkDone& done) {
  // Work items (token chunk, target, group of kI8Group panels), chunk-major,
  // handed out one at a time: the threads share a chunk of activations that
  // stays in L2 while they sweep the panels, and on a shared machine a
  // descheduled thread leaves its items to the others instead of holding up
  // the job. Targets that read the same activations (Q, K and V) are one job:
  // one wait for the last item instead of three. Within an item the kernel
  // keeps a tile's tokens in L1 across the group's panels. The last chunk's
  // groups are a quarter as wide, so the thread that finishes first waits
  // less for the other's last item. Which thread computes an item does not
  // change its result. GELU is the gemm's epilogue where the table has one
  // (i8_gemm_gelu), else a pass over an item's outputs while they are in cache.
  auto groups_of = [&targets](int64_t width) {  // per target: the most any target has
    int64_t groups = 0;
    for (const I8Target& g : targets) {
      const int64_t panels = (g.W.rows + kernels::kI8Panel - 1) / kernels::kI8Panel;
      groups = std::max(groups, (panels + width - 1) / width);
    }
    return groups;
  };
  const int64_t n_targets = static_cast<int64_t>(targets.size());
  const int64_t groups = groups_of(kI8Group), tail_groups = groups_of(kI8Group / 4);
  const int64_t per_chunk = groups * n_targets;
  int64_t chunk = std::max<int64_t>(12, static_cast<int64_t>((384 * 1024) / xa.stride) / 12 * 12);
  const int64_t chunks = (xa.n + chunk - 1) / chunk;
  const int64_t n_items = (chunks - 1) * per_chunk + tail_groups * n_targets;
  // GELU in the gemm's epilogue where the table has it, else over each item's outputs.
  const kernels::I8GemmFn gemm = out == I8Out::StoreGelu && vk_.i8_gemm_gelu ? vk_.i8_gemm_gelu : vk_.i8_gemm;
  auto item = [&](int64_t i) {
    const bool tail = i >= (chunks - 1) * per_chunk;
    const int64_t j = tail ? i - (chunks - 1) * per_chunk : i % per_chunk;  // within its chunk
    const int64_t width = tail ? kI8Group / 4 : kI8Group, ng = tail ? tail_groups : groups;
    const I8Target& g = targets.begin()[j / ng];
    const VisionMatrix& W = g.W;
    const int64_t panels = (W.rows + kernels::kI8Panel - 1) / kernels::kI8Panel;
    const int64_t t0 = (tail ? chunks - 1 : i / per_chunk) * chunk, p0 = (j % ng) * width;
    if (p0 >= panels) return;  // a narrower target than the widest
    const kernels::I8Acts part{xa.q + t0 * xa.stride, xa.stride, xa.scale + t0, xa.zp + t0,
                              std::min(chunk, xa.n - t0)};
    const int64_t p1 = std::min(panels, p0 + width);
    gemm(W.i8, part, g.Y + t0 * W.rows, W.rows, g.bias.data, out == I8Out::Add, p0, p1);
    if (out == I8Out::StoreGelu && gemm != vk_.i8_gemm_gelu) {
      const int64_t r0 = p0 * kernels::kI8Panel, r1 = std::min(W.rows, p1 * kernels::kI8Panel);
      for (int64_t t = t0; t < t0 + part.n; ++t) vk_.gelu_tanh(g.Y + t * W.rows + r0, r1 - r0);
    }
  };
  std::atomic<int64_t> next{0};
  ChunkCounter finished(done ? chunks - 1 : 0, per_chunk);
  pool_.run([&](int ith, int) {
    for (int64_t i; (i = next.fetch_add(1, std::memory_order_relaxed)) < n_items;) {
      item(i);
      const int64_t c = i / per_chunk;
      if (done && c < chunks - 1 && finished.last(c)) done(ith, c * chunk, chunk);
    }
  });
  if (done) then_in_parallel(done, (chunks - 1) * chunk, xa.n);
}

VisionEncoder::ChunkCounter::ChunkCounter(int64_t chunks, int64_t items)
    : count_(chunks > 0 ? new std::atomic<int64_t>[chunks] : nullptr), items_(items) {
  for (int64_t c = 0; c < chunks; ++c) count_[c].store(0, std::memory_order_relaxed);
}

bool VisionEncoder::ChunkCounter::last(int64_t c) {
  return count_[c].fetch_add(1, std::memory_order_acq_rel) + 1 == items_;
}

void VisionEncoder::then_in_parallel(const ChunkDone& done, int64_t t0, int64_t t1) {
  pool_.run([&](int ith, int nth) {
    const int64_t b = t0 + (t1 - t0) * ith / nth, e = t0 + (t1 - t0) * (ith + 1) / nth;
    if (e > b) done(ith, b, e - b);
  });
}

void VisionEncoder::matmul_i8(const VisionMatrix& W, const float* X, int64_t ldx, int64_t m, float* Y,
                              const VisionVector& bias, I8Out out) {
  gemm_i8(quantize(W, X, ldx, m), {{W, Y, bias}}, out);
}

void VisionEncoder::matmul_add(const VisionMatrix& W, const float* X, int64_t ldx, int64_t m, float* Y,
                               const VisionVector& bias, float* tmp) {
  if (W.i8.panels) {
    matmul_i8(W, X, ldx, m, Y, bias, I8Out::Add);
    return;
  }
  matmul(W, X, ldx, m, tmp, bias);
  for (int64_t i = 0; i < m * W.rows; ++i) Y[i] += tmp[i];
}

void VisionEncoder::matmul(const VisionMatrix& W, const float* X, int64_t ldx, int64_t m, float* Y,
                           const VisionVector& bias) {
  if (W.i8.panels) {
    matmul_i8(W, X, ldx, m, Y, bias, I8Out::Store);
    return;
  }
  const GgmlType vt = vec_dot_type(W.type);
  const void* act = X;
  size_t xs = static_cast<size_t>(ldx) * sizeof(float);
  if (vt != GgmlType::F32 || W.k_pad != W.k) {
    xs = act_row_bytes(W);
    const kernels::ConvertRowFn convert = kt_.convert[kernels::act_slot(vt)];
    uint8_t* a = act_.q.data();
    pool_.run([&](int ith, int nth) {
      float* pad = pad_.data() + static_cast<size_t>(ith) * max_k_pad_;
      std::fill(pad + W.k, pad + W.k_pad, 0.0f);  // the weights' padded columns are zero too
      for (int64_t t = m * ith / nth; t < m * (ith + 1) / nth; ++t) {
        const float* row = X + t * ldx;
        if (W.k_pad != W.k) {
          std::memcpy(pad, row, sizeof(float) * W.k);
          row = pad;
        }
        convert(row, a + t * xs, W.k_pad);
      }
    });
    act = a;
  }
  const kernels::GemmFn gemm = kt_.gemm[kernels::weight_slot(W.type)];
  pool_.parallel_for(W.rows, kRowGrain, [&](int64_t r0, int64_t r1) {
    gemm(W.data, W.row_stride, act, xs, Y, W.rows, W.k_pad, r0, r1, m);
  });
  if (bias.data) {
    pool_.parallel_for(m, 1, [&](int64_t b, int64_t e) {
      for (int64_t t = b; t < e; ++t) {
        float* y = Y + t * W.rows;
        for (int64_t i = 0; i < W.rows; ++i) y[i] += bias.data[i];
      }
    });
  }
}

void VisionEncoder::layer_norm(const float* x, int64_t m, int64_t d, const VisionVector& w,
                               const VisionVector& b, float eps, float* y) {
  pool_.parallel_for(m, 1, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) vk_.layer_norm(x + t * d, d, w.data, b.data, eps, y + t * d);
  });
}

void VisionEncoder::patch_embed(const float* pixels, int64_t n) {
  const int64_t S = c_.image_size, P = c_.patch_size, G = c_.grid, N = c_.n_tokens, C = c_.n_embd;
  const int64_t K = w_.patch_embd.k;
  float* cols = big_.data();  // im2col rows: channel, kernel row, kernel column (the conv weight's order)
  pool_.parallel_for(n * N, 1, [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) {
      const int64_t img = r / N, py = (r % N) / G, px = r % G;
      const float* src = pixels + img * 3 * S * S;
      float* dst = cols + r * K;
      for (int64_t ch = 0; ch < 3; ++ch)
        for (int64_t ky = 0; ky < P; ++ky)
          std::memcpy(dst + (ch * P + ky) * P, src + (ch * S + py * P + ky) * S + px * P, sizeof(float) * P);
    }
  });
  matmul(w_.patch_embd, cols, K, n * N, x_.data(), w_.patch_bias);
  pool_.parallel_for(n * N, 1, [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) {
      const float* pe = w_.pos_embd.data + (r % N) * C;
      float* x = x_.data() + r * C;
      for (int64_t i = 0; i < C; ++i) x[i] += pe[i];
    }
  });
}

// Non-causal multi-head attention, one (image, head) per task, so an image's
// result never depends on which other images share its batch. The int8
// encoder takes the table's reduced-precision kernel where it has one.
void VisionEncoder::attention(int64_t n, bool int8, const ChunkDone& done) {
  const int64_t N = c_.n_tokens, C = c_.n_embd, hd = c_.head_dim, H = c_.n_head;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  const auto fn = int8 && vk_.i8_attention ? vk_.i8_attention : vk_.attention;
  std::atomic<int64_t> next{0};  // (image, head) tasks handed out one at a time, as gemm_i8's panels
  ChunkCounter finished(done ? n - 1 : 0, H);  // an image's rows are a chunk
  pool_.run([&](int ith, int) {
    float* work = attn_work_.data() + static_cast<size_t>(ith) * attn_floats_;
    for (int64_t task; (task = next.fetch_add(1, std::memory_order_relaxed)) < n * H;) {
      const int64_t off = (task / H) * N * C + (task % H) * hd;
      fn(q_.data() + off, k_.data() + off, v_.data() + off, C, N, hd, scale, h_.data() + off, work);
      const int64_t img = task / H;
      if (done && img < n - 1 && finished.last(img)) done(ith, img * N, N);
    }
  });
  if (done) then_in_parallel(done, (n - 1) * N, n * N);
}

void VisionEncoder::block(const VisionLayer& L, int64_t n) {
  const int64_t C = c_.n_embd, F = c_.n_ff, m = n * c_.n_tokens;
  const bool int8 = L.wq.i8.panels && L.wk.i8.panels && L.wv.i8.panels;
  if (int8) {  // LayerNorm quantised row by row, once for Q, K and V
    const kernels::I8Acts a = quantize_ln(L.wq, m, L.ln1_w, L.ln1_b, act_);
    gemm_i8(a, {{L.wq, q_.data(), L.bq}, {L.wk, k_.data(), L.bk}, {L.wv, v_.data(), L.bv}}, I8Out::Store);
  } else {
    layer_norm(x_.data(), m, C, L.ln1_w, L.ln1_b, c_.eps, h_.data());
    matmul(L.wq, h_.data(), C, m, q_.data(), L.bq);
    matmul(L.wk, h_.data(), C, m, k_.data(), L.bk);
    matmul(L.wv, h_.data(), C, m, v_.data(), L.bv);
  }
  attention(n, int8);  // into h_
  matmul_add(L.wo, h_.data(), C, m, x_.data(), L.bo, q_.data());  // x += attention out

  float* f = big_.data();
  if (L.up.i8.panels) {
    gemm_i8(quantize_ln(L.up, m, L.ln2_w, L.ln2_b, act_), {{L.up, f, L.b_up}}, I8Out::StoreGelu);
  } else {
    layer_norm(x_.data(), m, C, L.ln2_w, L.ln2_b, c_.eps, h_.data());
    matmul(L.up, h_.data(), C, m, f, L.b_up);
    pool_.parallel_for(m, 1, [&](int64_t b, int64_t e) { vk_.gelu_tanh(f + b * F, (e - b) * F); });
  }
  matmul_add(L.down, f, F, m, x_.data(), L.b_down, q_.data());  // x += MLP out
}

bool VisionEncoder::all_i8(const VisionLayer& L) {
  return L.wq.i8.panels && L.wk.i8.panels && L.wv.i8.panels && L.wo.i8.panels && L.up.i8.panels && L.down.i8.panels;
}

void VisionEncoder::block_i8(const VisionLayer& L, int64_t n, bool ln1, const VisionLayer* next) {
  const int64_t C = c_.n_embd, F = c_.n_ff, N = c_.n_tokens, m = n * N;
  float* f = big_.data();
  if (ln1) quantize_ln(L.wq, m, L.ln1_w, L.ln1_b, ln_act_);
  gemm_i8(ln_act_.view(L.wq, m), {{L.wq, q_.data(), L.bq}, {L.wk, k_.data(), L.bk}, {L.wv, v_.data(), L.bv}},
          I8Out::Store);
  attention(n, true, [&](int, int64_t t0, int64_t rows) { quantize_rows(L.wo, h_.data(), C, t0, t0 + rows); });
  gemm_i8(act_.view(L.wo, m), {{L.wo, x_.data(), L.bo}}, I8Out::Add, [&](int ith, int64_t t0, int64_t rows) {
    quantize_ln_rows(L.up, L.ln2_w, L.ln2_b, ln_act_, ith, t0, t0 + rows);
  });
  gemm_i8(ln_act_.view(L.up, m), {{L.up, f, L.b_up}}, I8Out::StoreGelu,
          [&](int, int64_t t0, int64_t rows) { quantize_rows(L.down, f, F, t0, t0 + rows); });
  ChunkDone ln1_next;
  if (next)
    ln1_next = [&](int ith, int64_t t0, int64_t rows) {
      quantize_ln_rows(next->wq, next->ln1_w, next->ln1_b, ln_act_, ith, t0, t0 + rows);
    };
  gemm_i8(act_.view(L.down, m), {{L.down, x_.data(), L.b_down}}, I8Out::Add, ln1_next);
}

namespace {
void gelu_erf(float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] = 0.5f * x[i] * (1.0f + std::erf(x[i] * 0.70710678118654752f));
}
}  // namespace

// 2x2 merge in the contract's order (r0c0, r0c1, r1c0, r1c1), zero outside the
// grid, then LayerNorm -> Linear -> GELU(erf) -> Linear.
void VisionEncoder::project_downsample(int64_t n, float* out) {
  const int64_t G = c_.grid, OG = c_.out_grid, C = c_.n_embd, N = c_.n_tokens, T = c_.n_out_tokens;
  const int64_t D = c_.proj_dim, m = n * T, in = 4 * C;
  float* merged = big_.data();
  pool_.parallel_for(m, 1, [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) {
      const int64_t img = r / T, oy = (r % T) / OG, ox = r % OG;
      for (int64_t s = 0; s < 4; ++s) {
        const int64_t y = 2 * oy + s / 2, x = 2 * ox + s % 2;
        float* dst = merged + r * in + s * C;
        if (y < G && x < G) std::memcpy(dst, x_.data() + (img * N + y * G + x) * C, sizeof(float) * C);
        else std::fill(dst, dst + C, 0.0f);
      }
    }
  });
  layer_norm(merged, m, in, w_.mm_norm_w, w_.mm_norm_b, c_.projector_eps, merged);
  matmul(w_.mm0, merged, in, m, proj_.data(), w_.mm0_b);
  pool_.parallel_for(m, 1, [&](int64_t b, int64_t e) { gelu_erf(proj_.data() + b * D, (e - b) * D); });
  matmul(w_.mm2, proj_.data(), D, m, out, w_.mm2_b);
}

void VisionEncoder::project_mlp(int64_t n, float* out) {
  const int64_t C = c_.n_embd, D = c_.proj_dim, m = n * c_.n_tokens;
  matmul(w_.mm0, x_.data(), C, m, proj_.data(), w_.mm0_b);
  pool_.parallel_for(m, 1, [&](int64_t b, int64_t e) { gelu_erf(proj_.data() + b * D, (e - b) * D); });
  matmul(w_.mm2, proj_.data(), D, m, out, w_.mm2_b);
}

void VisionEncoder::run(const float* pixels, int64_t n, bool project, float* out) {
  // The scratch buffers hold max_batch_ patches.
  if (n < 1 || n > max_batch_)
    throw ArgumentError("VisionEncoder::run: " + std::to_string(n) + " patches, scratch for 1.." +
                        std::to_string(max_batch_));
  const int64_t m = n * c_.n_tokens, C = c_.n_embd;
  patch_embed(pixels, n);
  const std::vector<VisionLayer>& layers = w_.layers;
  for (size_t i = 0; i < layers.size(); ++i) {
    if (!all_i8(layers[i])) {
      block(layers[i], n);
      continue;
    }
    const bool ln1 = i == 0 || !all_i8(layers[i - 1]);
    block_i8(layers[i], n, ln1, i + 1 < layers.size() && all_i8(layers[i + 1]) ? &layers[i + 1] : nullptr);
  }
  if (w_.post_ln_w.data) layer_norm(x_.data(), m, C, w_.post_ln_w, w_.post_ln_b, c_.eps, x_.data());
  if (!project || c_.projector == ProjectorType::None) {
    std::memcpy(out, x_.data(), sizeof(float) * m * C);
  } else if (c_.projector == ProjectorType::MlpDownsample) {
    project_downsample(n, out);
  } else {
    project_mlp(n, out);
  }
}

}  // namespace bluelm
