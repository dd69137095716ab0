#include "llm/decoder.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <new>
#include <string>
#include <string_view>

#include "core/errors.h"
#include "llm/output_argmax.h"

namespace bluelm {

namespace {
constexpr int kMaxShared = 4;      // products per matmul_shared_input
constexpr int64_t kRowGrain = 16;  // rows per work unit; SIMD kernels tile by up to 16
constexpr int64_t kMinGrain = 4;   // the smallest unit: one row tile / packed group
// Decode: weight bytes a thread reads ahead of its next part while it waits
// between jobs (warm_next), within a Zen 4 core's 1 MiB L2. 1B Q4_K_M, 2
// threads, per-token times interleaved with no read-ahead (shared machine, fast
// VM state): 512 KiB 1.3-2.2% faster; 1 MiB and 256 KiB no better; prefetch
// hints instead of loads (96-512 KiB) no faster than none.
constexpr size_t kWarmBytes = size_t(512) << 10;
// run_products: the fewest weight bytes a thread takes at a time (whole row
// grains; ThreadPool::run_shared takes half of what is left, down to this), so
// a job's last pieces take a few microseconds while claims, each a gemm call
// that prepares its activation terms again, stay few.
constexpr size_t kTakeBytes = size_t(64) << 10;
constexpr int64_t kAttnRows = 4;   // query rows per attend_rows call (scratch: 4 x n_ctx per thread)
// Prompt chunks of an F16 cache that end within llama.cpp's first KV pad (256
// positions) keep llama.cpp's order, so short prompts stay bit-identical to it;
// every other prompt chunk goes to the flash kernel: attend_chunk_bf16 (K/V
// converted once per chunk by convert_chunk_kv, head_dim a multiple of 32) for a
// chunk ending past that pad where the table has one and the cache is F16 or
// Q8_0 (a faster order, within tests/test_long_prompt_fidelity.py's bounds of
// exact arithmetic), else attend_chunk (the scalar reference's bits).
constexpr int64_t kLlamaOrderMaxKv = 256;

// Rows per work unit: 16, or fewer for a small matrix so every thread gets some.
int64_t row_grain(int64_t rows, int n_threads) {
  int64_t g = kRowGrain;
  while (g > kMinGrain && rows < g * n_threads * 2) g /= 2;
  return g;
}

// The rows of n products laid end to end in whole grains (row_grain each),
// the units one pool job splits evenly (thread ith: units [total * ith / nth,
// total * (ith + 1) / nth)): matmul_shared_input's split, and with one product
// parallel_for's. warm_next reads ahead by the same split.
struct RowUnits {
  int n;
  int64_t begin[kMaxShared + 1] = {0};
  int64_t grain[kMaxShared] = {};
  RowUnits(const Matrix* const* Ws, int n_products, int n_threads) : n(n_products) {
    for (int i = 0; i < n; ++i) {
      grain[i] = row_grain(Ws[i]->rows, n_threads);
      begin[i + 1] = begin[i] + (Ws[i]->rows + grain[i] - 1) / grain[i];
    }
  }
  int64_t total() const { return begin[n]; }
  // The first row of product i's unit u (begin[i] <= u <= begin[i + 1]; past
  // its last row at its end).
  int64_t row(int i, int64_t u) const { return (u - begin[i]) * grain[i]; }
};

kernels::GemmFn gemm_for(const kernels::KernelTable& kt, const Matrix& W) {
  const int slot = kernels::weight_slot(W.type);
  return W.packed_rows ? kt.gemm_packed[slot] : kt.gemm[slot];
}

// Whether the table's gemm over m tokens gives every token the bits of a
// one-token call: the scalar reference computes each output on its own, and
// the x86 tables' quantised gemms equal it bit for bit for any token count
// (tests/cpp: mirrors_llamacpp_order). Float weights and the NEON tables may
// share sums across a tile of tokens, so eval_as_steps runs those token by token.
bool tokens_independent(const kernels::KernelTable& kt, GgmlType t) {
  const std::string_view isa = kt.isa;
  if (isa == "scalar") return true;
  const bool quantised = type_info(static_cast<uint32_t>(t))->block_size > 1;
  return quantised && isa.substr(0, 3) == "avx";
}
}  // namespace

Context::Context(std::shared_ptr<const LlmModel> model, int64_t n_ctx, int64_t n_batch,
                 int n_threads, GgmlType kv_type)
    : model_(std::move(model)),
      cfg_(model_->config()),
      kt_(kernels::active()),
      n_ctx_(n_ctx),
      n_batch_(n_batch),
      kv_type_(kv_type),
      pool_(n_threads) {
  if (n_ctx <= 0 || n_ctx > (int64_t(1) << 24)) throw ArgumentError("n_ctx must be between 1 and 16777216, got " + std::to_string(n_ctx));
  if (n_batch <= 0 || n_batch > 65536) throw ArgumentError("n_batch must be between 1 and 65536, got " + std::to_string(n_batch));
  if (kv_type != GgmlType::F32 && kv_type != GgmlType::F16 && kv_type != GgmlType::Q8_0) {
    throw ArgumentError("kv_type must be f32, f16 or q8_0");
  }
  if (kv_type == GgmlType::Q8_0 && cfg_.head_dim % QK != 0) {
    throw ArgumentError("kv_type q8_0 needs a head dimension that is a multiple of 32, got " + std::to_string(cfg_.head_dim));
  }
  n_batch_ = std::min(n_batch_, n_ctx_);
  const int64_t kv_dim = cfg_.n_head_kv * cfg_.head_dim;
  const int64_t q_dim = cfg_.n_head * cfg_.head_dim;
  kv_row_bytes_ = row_bytes(kv_type, kv_dim);
  kv_layer_bytes_ = static_cast<size_t>(n_ctx_) * kv_row_bytes_;
  const size_t kv_bytes = kv_layer_bytes_ * static_cast<size_t>(cfg_.n_layer);
  k_cache_.reset(static_cast<uint8_t*>(std::calloc(kv_bytes, 1)));
  v_cache_.reset(static_cast<uint8_t*>(std::calloc(kv_bytes, 1)));
  if (!k_cache_ || !v_cache_) throw std::bad_alloc();
  const int64_t B = n_batch_;
  x_.resize(B * cfg_.n_embd);
  h_.resize(B * cfg_.n_embd);
  q_.resize(B * q_dim);
  k_.resize(B * kv_dim);
  v_.resize(B * kv_dim);
  attn_.resize(B * q_dim);
  gate_.resize(B * cfg_.n_ff);
  up_.resize(B * cfg_.n_ff);
  const int64_t max_k = std::max({cfg_.n_embd, cfg_.n_ff, q_dim});
  act_.resize(static_cast<size_t>(B * max_k) * sizeof(float) + 64);
  for (int64_t l = 0; l < cfg_.n_layer; ++l) n_rope_sets_ = cfg_.is_swa(l) ? 2 : n_rope_sets_;
  rope_cos_.resize(n_rope_sets_ * B * cfg_.n_rot / 2);
  rope_sin_.resize(n_rope_sets_ * B * cfg_.n_rot / 2);
  rope_factors_ = model_->rope_factors(n_ctx_);
  scratch_.resize(static_cast<size_t>(pool_.size()) * kAttnRows * n_ctx_);
  flash_work_bytes_ = (kernels::attend_chunk_work(cfg_.head_dim) + 63) & ~size_t(63);
  flash_work_.resize(static_cast<size_t>(pool_.size()) * flash_work_bytes_ + 64);
}

void Context::truncate(int64_t n) {
  if (n < 0 || n > n_past_) throw ArgumentError("truncate position " + std::to_string(n) + " is outside [0, " + std::to_string(n_past_) + "]");
  n_past_ = n;
}

void Context::eval(const int32_t* tokens, int64_t n, bool logits_all) {
  if (n <= 0) throw ArgumentError("eval needs at least one token");
  if (n > n_ctx_ - n_past_) {
    throw ContextOverflowError(std::to_string(n) + " tokens do not fit in the context: " + std::to_string(n_past_) + " of n_ctx=" + std::to_string(n_ctx_) + " positions are used");
  }
  n_logit_rows_ = logits_all ? n : 1;
  logits_.resize(static_cast<size_t>(n_logit_rows_ * cfg_.n_vocab));
  for (int64_t i = 0; i < n; i += n_batch_) {
    const int64_t m = std::min(n_batch_, n - i);
    const bool last = i + m == n;
    float* out = logits_all ? logits_.data() + i * cfg_.n_vocab : (last ? logits_.data() : nullptr);
    forward_chunk(tokens + i, m, out, logits_all);
  }
}

void Context::eval_embeddings(const float* emb, int64_t n, bool logits_all) {
  if (n <= 0) throw ArgumentError("eval_embeddings needs at least one row");
  if (n > n_ctx_ - n_past_) {
    throw ContextOverflowError(std::to_string(n) + " embeddings do not fit in the context: " + std::to_string(n_past_) + " of n_ctx=" + std::to_string(n_ctx_) + " positions are used");
  }
  const int64_t d = cfg_.n_embd;
  n_logit_rows_ = logits_all ? n : 1;
  logits_.resize(static_cast<size_t>(n_logit_rows_ * cfg_.n_vocab));
  for (int64_t i = 0; i < n; i += n_batch_) {
    const int64_t m = std::min(n_batch_, n - i);
    const bool last = i + m == n;
    float* out = logits_all ? logits_.data() + i * cfg_.n_vocab : (last ? logits_.data() : nullptr);
    input_emb_ = emb + i * d;
    forward_chunk(nullptr, m, out, logits_all);
    input_emb_ = nullptr;
  }
}

void Context::eval_as_steps(const int32_t* tokens, int64_t n) {
  if (n <= 0 || n > n_batch_) throw ArgumentError("eval_as_steps takes 1 to n_batch=" + std::to_string(n_batch_) + " tokens, got " + std::to_string(n));
  if (n > n_ctx_ - n_past_) {
    throw ContextOverflowError(std::to_string(n) + " tokens do not fit in the context: " + std::to_string(n_past_) + " of n_ctx=" + std::to_string(n_ctx_) + " positions are used");
  }
  n_logit_rows_ = 0;
  step_rows_ = 0;
  logits_.resize(static_cast<size_t>(n * cfg_.n_vocab));
  as_steps_ = true;
  forward_chunk(tokens, n, nullptr, false);
  as_steps_ = false;
  step_rows_ = n;
}

void Context::step_logits(int64_t end) {
  if (end > step_rows_) throw ArgumentError("step_logits: row " + std::to_string(end) + " is past the last eval_as_steps");
  if (end <= n_logit_rows_) return;
  as_steps_ = true;  // the output matmul's rows too take the one-token route
  output_logits(n_logit_rows_, end - n_logit_rows_, logits_.data() + n_logit_rows_ * cfg_.n_vocab);
  as_steps_ = false;
  n_logit_rows_ = end;
}

bool Context::step_argmax(int64_t end, int32_t* tokens) {
  if (end > step_rows_) throw ArgumentError("step_argmax: row " + std::to_string(end) + " is past the last eval_as_steps");
  const Matrix& W = model_->output;
  const kernels::GemmFn fast = W.packed_rows ? nullptr : kt_.gemv_fast[kernels::weight_slot(W.type)];
  // (output_argmax.h's bound is Q8_0's)
  if (!fast || W.type != GgmlType::Q8_0 || end < 1 || end > kernels::kGemvBatchMax || cfg_.final_softcap > 0.0f)
    return false;
  if (out_max_dw_ < 0.0f) out_max_dw_ = max_block_scale_q8_0(W);
  const int64_t d = cfg_.n_embd, nv = cfg_.n_vocab;
  // The rows' activations as output_logits makes them.
  for (int64_t t = 0; t < end; ++t) rms_norm(x_.data(), model_->output_norm, t, t + 1, h_.data());
  const GgmlType vt = vec_dot_type(W.type);
  const size_t xs = row_bytes(vt, d);
  uint8_t* act = act_.data();
  for (int64_t t = 0; t < end; ++t) kt_.convert[kernels::act_slot(vt)](h_.data() + t * d, act + t * xs, d);
  float err[kernels::kGemvBatchMax];
  for (int64_t t = 0; t < end; ++t) err[t] = gemv_fast_error(act + t * xs, d, out_max_dw_);
  // Each thread: its rows (whole tiles of 16) by gemv_fast into logits_, then
  // per token its candidates, computed exactly into their own slots
  // (argmax_rows); the first of the threads' maxima, in row order, wins.
  n_logit_rows_ = 0;
  float* Y = logits_.data();
  const int nth = pool_.size();
  argmax_rows_.resize(static_cast<size_t>(nth));
  std::vector<RowMax> best(static_cast<size_t>(nth * end));
  std::atomic<bool> ok{true};
  const kernels::GemmFn gemm = gemm_for(kt_, W);
  const int64_t tiles = (W.rows + 15) / 16;
  pool_.run([&](int ith, int n) {
    const int64_t r0 = std::min(W.rows, tiles * ith / n * 16), r1 = std::min(W.rows, tiles * (ith + 1) / n * 16);
    if (!argmax_rows(fast, gemm, W, act, xs, end, err, r0, r1, Y, static_cast<size_t>(nv),
                     argmax_rows_[static_cast<size_t>(ith)], best.data() + ith * end))
      ok = false;
  });
  if (!ok) return false;
  for (int64_t t = 0; t < end; ++t) {
    RowMax m;
    for (int i = 0; i < nth; ++i) {  // threads in row order: the first maximum stays
      const RowMax& b = best[static_cast<size_t>(i * end + t)];
      if (b.row >= 0) m.take(b.value, b.row);
    }
    tokens[t] = static_cast<int32_t>(m.row);
  }
  return true;
}

void Context::prefill_embeddings(const float* emb, int64_t n, bool want_logits) {
  prefill_rows(nullptr, emb, n, want_logits);
}

void Context::prefill_tokens(const int32_t* tokens, int64_t n, bool want_logits) {
  prefill_rows(tokens, nullptr, n, want_logits);
}

void Context::prefill_rows(const int32_t* tokens, const float* emb, int64_t n, bool want_logits) {
  if (n <= 0) throw ArgumentError("prefill needs at least one row");
  if (n > n_ctx_ - n_past_) {
    throw ContextOverflowError(std::to_string(n) + " rows do not fit in the context: " + std::to_string(n_past_) + " of n_ctx=" + std::to_string(n_ctx_) + " positions are used");
  }
  const int64_t d = cfg_.n_embd;
  if (want_logits) logits_.resize(static_cast<size_t>(cfg_.n_vocab));
  n_logit_rows_ = 0;  // stale until the row that asks for logits is run
  for (int64_t i = 0; i < n; i += n_batch_) {
    const int64_t m = std::min(n_batch_, n - i);
    const bool last = i + m == n;
    input_emb_ = emb ? emb + i * d : nullptr;
    forward_chunk(tokens ? tokens + i : nullptr, m, want_logits && last ? logits_.data() : nullptr, false);
    input_emb_ = nullptr;
  }
  if (want_logits) n_logit_rows_ = 1;
}

kernels::GemmFn Context::rows_gemm(const Matrix& W, int64_t m) const {
  const kernels::GemmFn gemm = gemm_for(kt_, W);
  if (!as_steps_ || m < 2) return gemm;
  // A draft's rows: the table's small-batch gemv (the decode's arithmetic,
  // weights read once) where it has one, else a gemm whose tokens are
  // independent, else none (token by token: matmul_as_steps).
  const int slot = kernels::weight_slot(W.type);
  const kernels::GemmFn batch = W.packed_rows ? kt_.gemv_batch_packed[slot] : kt_.gemv_batch[slot];
  if (batch && m <= kernels::kGemvBatchMax) return batch;
  return tokens_independent(kt_, W.type) ? gemm : nullptr;
}

size_t Context::convert_rows(const Matrix& W, const float* X, int64_t m) {
  const GgmlType vt = vec_dot_type(W.type);
  const size_t xs = row_bytes(vt, W.cols);
  const kernels::ConvertRowFn convert = kt_.convert[kernels::act_slot(vt)];
  uint8_t* act = act_.data();
  const int64_t K = W.cols;
  for_rows(m, [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t) convert(X + t * K, act + t * xs, K);
  });
  return xs;
}

void Context::matmul(const Matrix& W, const float* X, int64_t m, float* Y) {
  matmul_converted(W, convert_rows(W, X, m), m, Y);
}

void Context::matmul_converted(const Matrix& W, size_t xs, int64_t m, float* Y) {
  const uint8_t* act = act_.data();
  const kernels::GemmFn gemm = rows_gemm(W, m);
  if (!gemm) return matmul_as_steps(W, act, xs, m, Y);
  if (m == 1) {  // decode: the split of matmul_shared_input
    const Matrix* Ws[] = {&W};
    float* Ys[] = {Y};
    return run_products(Ws, Ys, &gemm, 1, act, xs, m);
  }
  pool_.parallel_for(W.rows, row_grain(W.rows, pool_.size()), [&](int64_t r0, int64_t r1) {
    gemm(W.data, W.row_stride, act, xs, Y, W.rows, W.cols, r0, r1, m);
  });
}

void Context::run_products(const Matrix* const* Ws, float* const* Ys, const kernels::GemmFn* gemm, int n,
                           const uint8_t* act, size_t xs, int64_t m) {
  // The rows of all products laid end to end in whole grains; each thread
  // starts on its share of them (warm_next reads ahead by the same split) and
  // then helps with the others' (ThreadPool::run_shared). Rows come out the
  // same whichever thread runs them.
  const RowUnits units(Ws, n, pool_.size());
  size_t unit_bytes = 0;
  for (int i = 0; i < n; ++i) unit_bytes = std::max(unit_bytes, static_cast<size_t>(units.grain[i]) * Ws[i]->row_stride);
  const int64_t min_take = std::max<int64_t>(1, static_cast<int64_t>(kTakeBytes / std::max<size_t>(unit_bytes, 1)));
  pool_.run_shared(units.total(), min_take, [&](int64_t u0, int64_t u1, int) {
    for (int i = 0; i < n; ++i) {
      const int64_t a = std::max(u0, units.begin[i]), b = std::min(u1, units.begin[i + 1]);
      if (a >= b) continue;
      const Matrix& W = *Ws[i];
      gemm[i](W.data, W.row_stride, act, xs, Ys[i], W.rows, W.cols, units.row(i, a), std::min(W.rows, units.row(i, b)), m);
    }
  });
}

void Context::matmul_as_steps(const Matrix& W, const uint8_t* act, size_t xs, int64_t m, float* Y) {
  // The rows split as a one-token matmul splits them; within a thread's range,
  // blocks of kStepRows weight rows (on multiples of kStepRows, so every range
  // starts where a packed group does) serve all m tokens while in cache.
  constexpr int64_t kStepRows = 64;
  const kernels::GemmFn gemm = gemm_for(kt_, W);
  pool_.parallel_for(W.rows, row_grain(W.rows, pool_.size()), [&](int64_t r0, int64_t r1) {
    for (int64_t a = r0; a < r1;) {
      const int64_t b = std::min(r1, (a / kStepRows + 1) * kStepRows);
      for (int64_t t = 0; t < m; ++t) gemm(W.data, W.row_stride, act + t * xs, xs, Y + t * W.rows, W.rows, W.cols, a, b, 1);
      a = b;
    }
  });
}

void Context::matmul_shared_input(const Matrix* const* Ws, float* const* Ys, int n, const float* X,
                                  int64_t m) {
  // One activation conversion serves products whose types dot against the same
  // format (Q5_0 and Q8_0 both take Q8_0, as a llama-quantize Q4_K_M mixes them).
  bool same = true;
  for (int i = 1; i < n; ++i)
    same = same && vec_dot_type(Ws[i]->type) == vec_dot_type(Ws[0]->type) && Ws[i]->cols == Ws[0]->cols;
  // A draft's rows (inline_rows) share one job too where every product has a gemm for them.
  kernels::GemmFn gemm[kMaxShared];
  for (int i = 0; i < n; ++i) {
    gemm[i] = rows_gemm(*Ws[i], m);
    same = same && gemm[i];
  }
  if (!same) {
    for (int i = 0; i < n; ++i) matmul(*Ws[i], X, m, Ys[i]);
    return;
  }
  // One conversion (SmolLM2 pp512 converted 1.5x the rows it needed when each
  // product converted X again), then decode and a draft's rows take one job for
  // all products; a prompt a job per product (each long enough that its own job
  // costs nothing extra).
  const size_t xs = convert_rows(*Ws[0], X, m);
  if (inline_rows(m)) return run_products(Ws, Ys, gemm, n, act_.data(), xs, m);
  for (int i = 0; i < n; ++i) matmul_converted(*Ws[i], xs, m, Ys[i]);
}

void Context::warm_next(std::initializer_list<const Matrix*> Ws) {
  const int nth = pool_.size();
  if (nth < 2) return;
  const Matrix* const* W = Ws.begin();
  const int n = static_cast<int>(Ws.size());
  const RowUnits units(W, n, nth);
  warm_.resize(static_cast<size_t>(nth));
  for (int t = 0; t < nth; ++t) {
    // Thread t's first row: in the first product its units reach.
    const int64_t u = units.total() * t / nth;
    int i = 0;
    while (i + 1 < n && u >= units.begin[i + 1]) ++i;
    const int64_t r = std::min(W[i]->rows, units.row(i, u));
    const int64_t group = std::max(1, W[i]->packed_rows);
    // A packed part starts with its whole group; the span never leaves this matrix.
    const size_t off = static_cast<size_t>(r - r % group) * W[i]->row_stride;
    const size_t end = static_cast<size_t>(W[i]->rows) * W[i]->row_stride;
    warm_[static_cast<size_t>(t)] = {static_cast<const char*>(W[i]->data) + off, std::min(end - off, kWarmBytes)};
  }
  pool_.set_warm(warm_.data());
}

void Context::rms_norm(const float* x, const Vector& w, int64_t t0, int64_t t1, float* y) const {
  const int64_t d = w.n;
  for (int64_t t = t0; t < t1; ++t) {
    const float* xt = x + t * d;
    float* yt = y + t * d;
    double sum = 0.0;  // as ggml: accumulate squares in double
    for (int64_t i = 0; i < d; ++i) sum += static_cast<double>(xt[i] * xt[i]);
    const float scale = 1.0f / std::sqrt(static_cast<float>(sum / d) + cfg_.rms_eps);
    for (int64_t i = 0; i < d; ++i) yt[i] = (xt[i] * scale) * w.data[i];
  }
}

void Context::rope_table(const RopeParams& rp, int set, int64_t t0, int64_t t1) {
  // theta_i = p * base^(-2i/n_rot) by repeated products, as ggml computes it.
  const int64_t half = cfg_.n_rot / 2;
  const float theta_scale = std::pow(rp.freq_base, -2.0f / static_cast<float>(cfg_.n_rot));
  float* cs = rope_cos_.data() + set * n_batch_ * half;
  float* sn = rope_sin_.data() + set * n_batch_ * half;
  for (int64_t t = t0; t < t1; ++t) {
    float theta = static_cast<float>(n_past_ + t);
    for (int64_t i = 0; i < half; ++i) {
      const float ff_i = rope_factors_ ? rope_factors_[i] : 1.0f;
      const float th = rp.freq_scale * (theta / ff_i);
      cs[t * half + i] = std::cos(th) * rp.attn_factor;
      sn[t * half + i] = std::sin(th) * rp.attn_factor;
      theta *= theta_scale;
    }
  }
}

void Context::rope(float* x, int64_t t0, int64_t t1, int64_t n_heads, int set) const {
  const int64_t hd = cfg_.head_dim, half = cfg_.n_rot / 2;
  for (int64_t t = t0; t < t1; ++t) {
    const float* c = rope_cos_.data() + (set * n_batch_ + t) * half;
    const float* s = rope_sin_.data() + (set * n_batch_ + t) * half;
    for (int64_t h = 0; h < n_heads; ++h) {
      float* v = x + (t * n_heads + h) * hd;
      for (int64_t i = 0; i < half; ++i) {
        // Normal mode rotates adjacent pairs; NeoX rotates (i, i + n_rot/2).
        const int64_t a = cfg_.rope_mode == RopeMode::Normal ? 2 * i : i;
        const int64_t b = cfg_.rope_mode == RopeMode::Normal ? 2 * i + 1 : i + half;
        const float x0 = v[a], x1 = v[b];
        // one FMA each, with the other product rounded first, as ggml's CPU rope
        v[a] = std::fma(x0, c[i], -(x1 * s[i]));
        v[b] = std::fma(x0, s[i], x1 * c[i]);
      }
    }
  }
}

void Context::attention(int layer, int64_t m) {
  const int64_t hd = cfg_.head_dim, kv_dim = cfg_.n_head_kv * hd, q_dim = cfg_.n_head * hd;
  const int64_t pos0 = n_past_;
  uint8_t* kc = k_cache_.get() + static_cast<size_t>(layer) * kv_layer_bytes_;
  uint8_t* vc = v_cache_.get() + static_cast<size_t>(layer) * kv_layer_bytes_;
  const kernels::ConvertRowFn to_kv = kt_.convert[kernels::act_slot(kv_type_)];
  for_rows(m, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      to_kv(k_.data() + t * kv_dim, kc + (pos0 + t) * kv_row_bytes_, kv_dim);
      to_kv(v_.data() + t * kv_dim, vc + (pos0 + t) * kv_row_bytes_, kv_dim);
    }
  });
  const int64_t group = cfg_.n_head / cfg_.n_head_kv;
  const float scale = cfg_.attn_scale, softcap = cfg_.attn_softcap;
  // A sliding-window layer's row at position p sees [p + 1 - n_swa, p].
  const int64_t window = cfg_.is_swa(layer) ? cfg_.n_swa : 0;
  const bool chunk = m > 1 && !as_steps_;  // eval_as_steps: every row in the one-token order
  if (chunk && !(kv_type_ == GgmlType::F16 && pos0 + m <= kLlamaOrderMaxKv)) {
    attention_chunk(kc, vc, m, window);
    return;
  }
  // llama.cpp's order. attend_rows (rows from one start) serves only chunks that
  // lie wholly inside the window, and never a soft-capped layer.
  const bool rows_ok = softcap == 0.0f && (window == 0 || pos0 + m <= window);
  if (chunk && kt_.attend_rows && rows_ok) {
    // Tasks of up to kAttnRows query rows of one head: K/V rows are read once per task.
    const int64_t blocks = (m + kAttnRows - 1) / kAttnRows, tasks = blocks * cfg_.n_head;
    pool_.run([&](int ith, int nth) {
      float* scratch = scratch_.data() + static_cast<size_t>(ith) * kAttnRows * n_ctx_;
      for (int64_t task = ith; task < tasks; task += nth) {
        const int64_t t0 = task / cfg_.n_head * kAttnRows, h = task % cfg_.n_head, kvh = h / group;
        const int64_t rows = std::min(kAttnRows, m - t0);
        const size_t off = row_bytes(kv_type_, kvh * hd);
        kt_.attend_rows(q_.data() + t0 * q_dim + h * hd, q_dim, kc + off, vc + off, kv_type_, kv_dim, hd,
                        pos0 + t0 + 1, rows, scale, scratch, attn_.data() + t0 * q_dim + h * hd, q_dim);
      }
    });
    return;
  }
  // A decode step too: attend_steps reads each K/V row once for a KV head's
  // whole group of query heads, with the bits of attend per head.
  if (!chunk && kt_.attend_steps) {
    attention_steps(kc, vc, m, window);
    return;
  }
  const int64_t tasks = m * cfg_.n_head;
  pool_.run([&](int ith, int nth) {
    float* scratch = scratch_.data() + static_cast<size_t>(ith) * kAttnRows * n_ctx_;
    for (int64_t task = ith; task < tasks; task += nth) {
      const int64_t t = task / cfg_.n_head, h = task % cfg_.n_head, kvh = h / group;
      const int64_t start = window ? std::max<int64_t>(0, pos0 + t + 1 - window) : 0;
      const size_t off = row_bytes(kv_type_, kvh * hd) + static_cast<size_t>(start) * kv_row_bytes_;
      kt_.attend(q_.data() + t * q_dim + h * hd, kc + off, vc + off, kv_type_, kv_dim, hd,
                 pos0 + t + 1 - start, scale, softcap, chunk, scratch, attn_.data() + t * q_dim + h * hd);
    }
  });
}

kernels::ChunkAttention Context::chunk_attention(int64_t window) {
  const int64_t hd = cfg_.head_dim;
  kernels::ChunkAttention a{};
  a.q = q_.data();
  a.q_stride = static_cast<size_t>(cfg_.n_head * hd);
  a.kv_type = kv_type_;
  a.kv_stride = static_cast<size_t>(cfg_.n_head_kv * hd);
  a.head_dim = hd;
  a.n_group = cfg_.n_head / cfg_.n_head_kv;
  a.pos0 = n_past_;
  a.window = window;
  a.scale = cfg_.attn_scale;
  a.softcap = cfg_.attn_softcap;
  a.out = attn_.data();
  a.out_stride = a.q_stride;
  return a;
}

void Context::attention_steps(const uint8_t* kc, const uint8_t* vc, int64_t m, int64_t window) {
  const int64_t hd = cfg_.head_dim, group = cfg_.n_head / cfg_.n_head_kv;
  const kernels::ChunkAttention a = chunk_attention(window);
  const size_t room = static_cast<size_t>(kernels::kStepLanes * (n_ctx_ + 16));
  if (step_scratch_.size() < pool_.size() * room) step_scratch_.resize(pool_.size() * room);
  // The lanes (KV head, row, head of the group) laid end to end, an even
  // share per thread, one call per KV head in it.
  const int64_t per_head = m * group, total = per_head * cfg_.n_head_kv;
  pool_.run([&](int ith, int nth) {
    float* scratch = step_scratch_.data() + ith * room;
    kernels::ChunkAttention h = a;
    for (int64_t i = total * ith / nth, end = total * (ith + 1) / nth; i < end;) {
      const int64_t kvh = i / per_head, stop = std::min(end, (kvh + 1) * per_head);
      const size_t off = row_bytes(kv_type_, kvh * hd);
      h.k = kc + off;
      h.v = vc + off;
      h.q = a.q + kvh * group * hd;
      h.out = a.out + kvh * group * hd;
      kt_.attend_steps(h, i - kvh * per_head, stop - kvh * per_head, scratch);
      i = stop;
    }
  });
}

void Context::attention_chunk(const uint8_t* kc, const uint8_t* vc, int64_t m, int64_t window) {
  const int64_t hd = cfg_.head_dim, group = cfg_.n_head / cfg_.n_head_kv;
  const kernels::ChunkAttention a = chunk_attention(window);
  // Tasks of one KV head and chunk_lanes lanes (row, head of the group), the
  // ones that see the most keys first; threads take them one at a time.
  const int64_t lanes = m * group, per_head = (lanes + kt_.chunk_lanes - 1) / kt_.chunk_lanes;
  const int64_t tasks = per_head * cfg_.n_head_kv;
  const bool bf16 = kt_.attend_chunk_bf16 && kv_type_ != GgmlType::F32 && hd % 32 == 0 &&
                    n_past_ + m > kLlamaOrderMaxKv;
  const kernels::AttendChunkFn attend = bf16 ? kt_.attend_chunk_bf16 : kt_.attend_chunk;
  // the first position row 0 sees, made even (the kernel pairs keys at even positions)
  if (bf16) convert_chunk_kv(kc, vc, (window ? std::max<int64_t>(0, n_past_ + 1 - window) : 0) / 2 * 2, n_past_ + m);
  uint8_t* work0 = reinterpret_cast<uint8_t*>((reinterpret_cast<uintptr_t>(flash_work_.data()) + 63) & ~uintptr_t(63));
  std::atomic<int64_t> next{0};
  pool_.run([&](int ith, int) {
    void* work = work0 + static_cast<size_t>(ith) * flash_work_bytes_;
    kernels::ChunkAttention h = a;
    for (int64_t task = next++; task < tasks; task = next++) {
      const int64_t kvh = task % cfg_.n_head_kv, part = per_head - 1 - task / cfg_.n_head_kv;
      const size_t off = row_bytes(kv_type_, kvh * hd);
      h.k = kc + off;
      h.v = vc + off;
      h.q = a.q + kvh * group * hd;
      h.out = a.out + kvh * group * hd;
      h.kv = bf16 ? &chunk_kv_[kvh] : nullptr;
      const int64_t l0 = part * kt_.chunk_lanes;
      attend(h, l0, std::min(lanes, l0 + kt_.chunk_lanes), work);
    }
  });
}

void Context::convert_chunk_kv(const uint8_t* kc, const uint8_t* vc, int64_t first, int64_t n_kv) {
  const int64_t hd = cfg_.head_dim;
  if (chunk_kv_.empty()) {
    const size_t head_bytes = kernels::chunk_kv_bytes(hd, n_ctx_);
    chunk_kv_buf_.reset(static_cast<uint8_t*>(std::calloc(cfg_.n_head_kv * head_bytes + 64, 1)));
    if (!chunk_kv_buf_) throw std::bad_alloc();
    uint8_t* base = reinterpret_cast<uint8_t*>((reinterpret_cast<uintptr_t>(chunk_kv_buf_.get()) + 63) & ~uintptr_t(63));
    for (int64_t kvh = 0; kvh < cfg_.n_head_kv; ++kvh)
      chunk_kv_.push_back(kernels::chunk_kv_layout(base + kvh * head_bytes, hd, n_ctx_));
  }
  constexpr int64_t kBlock = 256;  // positions per task (even)
  const int64_t per_head = (n_kv - first + kBlock - 1) / kBlock, tasks = per_head * cfg_.n_head_kv;
  kernels::ChunkAttention a{};
  a.kv_type = kv_type_;
  a.kv_stride = static_cast<size_t>(cfg_.n_head_kv * hd);
  a.head_dim = hd;
  pool_.parallel_for(tasks, 1, [&](int64_t t0, int64_t t1) {
    kernels::ChunkAttention h = a;
    for (int64_t task = t0; task < t1; ++task) {
      const int64_t kvh = task / per_head, p0 = first + task % per_head * kBlock;
      const size_t off = row_bytes(kv_type_, kvh * hd);
      h.k = kc + off;
      h.v = vc + off;
      kt_.convert_chunk_kv(h, p0, std::min(n_kv, p0 + kBlock), chunk_kv_[kvh]);
    }
  });
}

void Context::softcap_logits(float* logits, int64_t rows) {
  const float cap = cfg_.final_softcap;
  const int64_t n = cfg_.n_vocab;
  for_rows(rows, [&](int64_t t0, int64_t t1) {
    for (int64_t i = t0 * n; i < t1 * n; ++i) logits[i] = std::tanh(logits[i] / cap) * cap;
  });
}

void Context::forward_chunk(const int32_t* tokens, int64_t m, float* logits_out, bool all_rows) {
  const LlmModel& M = *model_;
  const LlmArch& A = *cfg_.traits;
  const int64_t d = cfg_.n_embd, kv_dim = cfg_.n_head_kv * cfg_.head_dim, q_dim = cfg_.n_head * cfg_.head_dim;
  const int64_t ff = cfg_.n_ff;
  // gemma multiplies token embeddings by sqrt(n_embd) (gemma2 image rows too)
  const float in_scale = input_emb_ && !A.embd_scale_inputs ? 1.0f : cfg_.embd_scale;
  step_rows_ = 0;  // x_ is about to change
  // One token: each stage tells the pool what the next one streams (warm_next).
  const bool decode = m == 1;
  if (!decode) pool_.set_warm(nullptr);

  for_rows(m, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      float* xt = x_.data() + t * d;
      if (input_emb_) std::copy(input_emb_ + t * d, input_emb_ + (t + 1) * d, xt);
      else dequantize_row(M.token_embd.type, M.token_embd.row(tokens[t]), xt, d);
      if (in_scale != 1.0f) {
        for (int64_t i = 0; i < d; ++i) xt[i] *= in_scale;
      }
    }
    rope_table(cfg_.rope, 0, t0, t1);
    if (n_rope_sets_ > 1) rope_table(cfg_.rope_swa, 1, t0, t1);
  });

  for (int64_t l = 0; l < cfg_.n_layer; ++l) {
    const LayerWeights& L = M.layers[l];
    const int set = cfg_.is_swa(l) ? 1 : 0;
    for_rows(m, [&](int64_t t0, int64_t t1) { rms_norm(x_.data(), L.attn_norm, t0, t1, h_.data()); });
    {
      const Matrix* W[] = {&L.wq, &L.wk, &L.wv};
      float* Y[] = {q_.data(), k_.data(), v_.data()};
      if (decode) warm_next({&L.wo});  // after q/k/v and after attention
      matmul_shared_input(W, Y, 3, h_.data(), m);
    }
    for_rows(m, [&](int64_t t0, int64_t t1) {
      if (L.bq.data) {
        for (int64_t t = t0; t < t1; ++t) {
          for (int64_t i = 0; i < q_dim; ++i) q_[t * q_dim + i] += L.bq.data[i];
          for (int64_t i = 0; i < kv_dim; ++i) k_[t * kv_dim + i] += L.bk.data[i];
          for (int64_t i = 0; i < kv_dim; ++i) v_[t * kv_dim + i] += L.bv.data[i];
        }
      }
      if (L.q_norm.data) {  // per head: each head is one row of head_dim values
        rms_norm(q_.data(), L.q_norm, t0 * cfg_.n_head, t1 * cfg_.n_head, q_.data());
        rms_norm(k_.data(), L.k_norm, t0 * cfg_.n_head_kv, t1 * cfg_.n_head_kv, k_.data());
      }
      rope(q_.data(), t0, t1, cfg_.n_head, set);
      rope(k_.data(), t0, t1, cfg_.n_head_kv, set);
    });
    attention(static_cast<int>(l), m);
    if (decode) warm_next({&L.w_gate, &L.w_up});
    matmul(L.wo, attn_.data(), m, h_.data());
    // (post-norm,) residual, then the FFN norm of the same rows.
    for_rows(m, [&](int64_t t0, int64_t t1) {
      if (L.attn_post_norm.data) rms_norm(h_.data(), L.attn_post_norm, t0, t1, h_.data());
      for (int64_t i = t0 * d; i < t1 * d; ++i) x_[i] += h_[i];
      rms_norm(x_.data(), L.ffn_norm, t0, t1, h_.data());
    });
    {
      const Matrix* W[] = {&L.w_gate, &L.w_up};
      float* Y[] = {gate_.data(), up_.data()};
      if (decode) warm_next({&L.w_down});
      matmul_shared_input(W, Y, 2, h_.data(), m);
    }
    // One kernel call per row: llama.cpp's vector exp runs over 8-wide groups of a row.
    const kernels::SwigluFn act = A.activation == FfnActivation::GeluTanh ? kt_.geglu : kt_.swiglu;
    auto act_rows = [&](int64_t b, int64_t e) {
      for (int64_t t = b; t < e; ++t) act(gate_.data() + t * ff, up_.data() + t * ff, gate_.data() + t * ff, ff);
    };
    if (inline_rows(m)) act_rows(0, m);
    else pool_.parallel_for(m, 1, act_rows);
    if (decode && l + 1 < cfg_.n_layer) warm_next({&M.layers[l + 1].wq, &M.layers[l + 1].wk, &M.layers[l + 1].wv});
    else if (decode) warm_next({&M.output});
    matmul(L.w_down, gate_.data(), m, h_.data());
    for_rows(m, [&](int64_t t0, int64_t t1) {
      if (L.ffn_post_norm.data) rms_norm(h_.data(), L.ffn_post_norm, t0, t1, h_.data());
      for (int64_t i = t0 * d; i < t1 * d; ++i) x_[i] += h_[i];
    });
  }
  n_past_ += m;

  if (!logits_out) return;
  output_logits(all_rows ? 0 : m - 1, all_rows ? m : 1, logits_out);
}

void Context::output_logits(int64_t first, int64_t rows, float* out) {
  const LlmModel& M = *model_;
  const int64_t d = cfg_.n_embd;
  for_rows(rows, [&](int64_t t0, int64_t t1) { rms_norm(x_.data() + first * d, M.output_norm, t0, t1, h_.data()); });
  // The next token starts with layer 0's q/k/v (sampling runs in between).
  if (rows == 1) warm_next({&M.layers[0].wq, &M.layers[0].wk, &M.layers[0].wv});
  matmul(M.output, h_.data(), rows, out);
  if (cfg_.final_softcap > 0.0f) softcap_logits(out, rows);
}

}  // namespace bluelm
